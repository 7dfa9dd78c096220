//! The builder's settings, as the family, its reader and its trimming read them.

use std::time::Duration;

/// The builder's settings, for each log of the family.
pub(super) struct Settings {
    pub(super) max_len: Option<usize>,
    pub(super) max_age: Option<Duration>,
    pub(super) window: usize,
    pub(super) command_timeout: Duration,
    pub(super) connect_timeout: Duration,
}
