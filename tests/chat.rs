//! The chat example's HTTP contract, over real TCP, on `axum::serve` (the suite is in
//! `tests/suites/chat.rs`; `tests/crate_server.rs` runs it on the crate's own server).

mod support;
mod suites {
    pub mod chat;
}

#[path = "../examples/chat/app.rs"]
mod app;

suites::chat::tests!(support::server::Serving::Axum);
