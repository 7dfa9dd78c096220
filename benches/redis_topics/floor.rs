//! The floor: what a bare `XADD` to the same topics at the same rate costs Redis, with no end
//! check and no notice (so no reader hears of it but by reading in turn). What the crate's
//! append adds to it is the price of finishing streams and of hearing of entries at once.

use crate::pace::at_rate;
use crate::table::info;
use crate::PREFIX;

/// Redis µs per `XADD` by `INFO commandstats` and by `INFO cpu`, appending `rate` per second
/// for `seconds` to random keys among `names`.
pub async fn raw_xadd(
    connection: &mut redis::aio::MultiplexedConnection,
    names: &[String],
    rate: u64,
    seconds: u64,
) -> (f64, f64) {
    let (before, cpu_before) = info(connection).await;
    let xadd = |index: usize| {
        let (mut connection, key) = (connection.clone(), format!("{PREFIX}{}", names[index]));
        async move {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(10_000)
                .arg("*")
                .arg("data")
                .arg("floor");
            xadd.query_async::<redis::Value>(&mut connection).await.is_ok()
        }
    };
    let ([sent, failed], _) = at_rate(rate, seconds, names.len(), 0x9e37_79b9, xadd).await;
    assert_eq!(failed, 0, "bare XADDs failed");
    let (after, cpu_after) = info(connection).await;
    let spent: u64 = after
        .iter()
        .map(|(name, (us, _))| us - before.get(name).map_or(0, |b| b.0))
        .sum();
    let per = |x: f64| x / sent.max(1) as f64;
    (per(spent as f64), per(cpu_after - cpu_before))
}
