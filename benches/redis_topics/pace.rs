//! Appending at a fixed rate: the `i`-th append is due at `i / rate` seconds (sent at once
//! when behind), to a topic picked by a seeded xorshift, with a bounded number in flight.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// Appends in flight at once.
const IN_FLIGHT: usize = 1024;

/// Runs `append(index)` `rate * seconds` times at `rate` per second, `index` drawn below
/// `topics`; returns how many answered `true` and `false`, and how long it took.
pub async fn at_rate<F>(
    rate: u64,
    seconds: u64,
    topics: usize,
    seed: u64,
    mut append: impl FnMut(usize) -> F,
) -> ([u64; 2], Duration)
where
    F: Future<Output = bool> + Send + 'static,
{
    let (mut random, mut in_flight, mut done) = (seed | 1, JoinSet::new(), [0u64; 2]);
    let mut count =
        |answer: Option<Result<bool, _>>| done[usize::from(!matches!(answer, Some(Ok(true))))] += 1;
    let started = Instant::now();
    for i in 0..rate * seconds {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        while in_flight.len() >= IN_FLIGHT {
            count(in_flight.join_next().await);
        }
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        in_flight.spawn(append((random % topics as u64) as usize));
    }
    while let Some(answer) = in_flight.join_next().await {
        count(Some(answer));
    }
    (done, started.elapsed())
}
