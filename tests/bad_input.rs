//! Bad input against the chat app over real TCP, on `axum::serve` (the suite is in
//! `tests/suites/bad_input.rs`; `tests/crate_server.rs` runs it on the crate's own server).

mod support;
mod suites {
    pub mod bad_input;
}

#[path = "../examples/chat/app.rs"]
mod app;

suites::bad_input::tests!(support::server::Serving::Axum);
