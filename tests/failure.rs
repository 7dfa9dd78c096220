//! The failure rule over real TCP, on `axum::serve` (the suite is in `tests/suites/failure.rs`;
//! `tests/crate_server.rs` runs it on the crate's own server).

mod support;
mod suites {
    pub mod failure;
}

suites::failure::tests!(support::server::Serving::Axum);
