//! The floor: what a bare `XADD` to the same topics at the same rate costs Redis, with no end
//! check and no notice (so no reader hears of it but by reading in turn). What the crate's
//! append adds to it is the price of finishing streams and of hearing of entries at once.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::table::info;
use crate::{must, PREFIX};

/// Appends in flight at once, as in the crate's phases.
const IN_FLIGHT: usize = 1024;

/// Redis µs per `XADD` by `INFO commandstats` and by `INFO cpu`, appending `rate` per second
/// for `seconds` to random keys among `names`.
pub async fn raw_xadd(
    connection: &mut redis::aio::MultiplexedConnection,
    names: &[String],
    rate: u64,
    seconds: u64,
) -> (f64, f64) {
    let (before, cpu_before) = info(connection).await;
    let (mut random, mut in_flight, mut sent) = (0x9e37_79b9_u64, JoinSet::new(), 0u64);
    let started = Instant::now();
    for i in 0..rate * seconds {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        while in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await;
        }
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let key = format!("{PREFIX}{}", names[(random % names.len() as u64) as usize]);
        let mut connection = connection.clone();
        in_flight.spawn(async move {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(10_000)
                .arg("*")
                .arg("data")
                .arg("floor");
            must(xadd.query_async::<redis::Value>(&mut connection).await, "XADD");
        });
        sent += 1;
    }
    while in_flight.join_next().await.is_some() {}
    let (after, cpu_after) = info(connection).await;
    let spent: u64 = after
        .iter()
        .map(|(name, (us, _))| us - before.get(name).map_or(0, |b| b.0))
        .sum();
    let per = |x: f64| x / sent.max(1) as f64;
    (per(spent as f64), per(cpu_after - cpu_before))
}
