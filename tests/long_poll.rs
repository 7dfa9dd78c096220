//! The long-poll and short-poll transport over real TCP, on `axum::serve` (the suite is in
//! `tests/suites/long_poll.rs`; `tests/crate_server.rs` runs it on the crate's own server).

mod support;
mod suites {
    pub mod long_poll;
    pub mod refusals;
}

suites::long_poll::tests!(support::server::Serving::Axum);
