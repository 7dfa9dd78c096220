//! The crate's one lock type.

use std::sync::{Mutex, MutexGuard};

/// A mutex that ignores poisoning, used for every lock in the crate: each update of what one
/// guards is a push, a pop, an insert, a removal or a reset, so a panic while holding it
/// cannot leave a half-update that matters to the next holder, and a panicking task must
/// not take every other stream down with it.
pub(crate) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Lock(Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
