//! The chat, SSE, long-poll, bad-input and browser suites once more, every server they start being
//! `tower_eventstream::server::Server` instead of `axum::serve` (see
//! `common::on_crate_server`): the lean HTTP/1.1 path answers their `GET`s and `HEAD`s,
//! hyper the rest. Behaviour particular to that server is tested in `tests/server.rs`.
#![cfg(feature = "server")]
// Each suite brings its own copy of the shared helpers, as it does when built alone.
#![allow(clippy::duplicate_mod)]

#[path = "bad_input.rs"]
mod bad_input;
#[path = "browser.rs"]
mod browser;
#[path = "chat.rs"]
mod chat;
#[path = "long_poll.rs"]
mod long_poll;
#[path = "sse.rs"]
mod sse;
