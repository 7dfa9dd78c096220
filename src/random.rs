//! The crate's one source of randomness: unpredictable enough to tell log instances apart and
//! to spread clients' reconnects, not for anything secret.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A fresh pseudo-random number: a process-wide counter, seeded from the standard library's
/// per-process random hasher keys and the process id, run through a mixing function.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        AtomicU64::new(hasher.finish())
    });
    let mut x = counter.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A duration spread over half to one and a half times `base`, so that clients ended or
/// refused together do not all come back in the same instant.
pub(crate) fn jittered(base: Duration) -> Duration {
    base / 2 + base.mul_f64((random_u64() % 1000) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        let base = Duration::from_millis(1000);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(base)).collect();
        assert!(spread.iter().all(|d| *d >= base / 2 && *d < base * 3 / 2));
        assert!(spread.iter().any(|d| *d != spread[0]), "not constant");
    }
}
