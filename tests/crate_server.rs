//! The chat, SSE, long-poll, bad-input, failure and browser suites (`tests/suites/`) once more, on
//! `tower_eventstream::server::Server` instead of the server their own test files run them
//! on: the lean HTTP/1.1 path answers their `GET`s and `HEAD`s, hyper the rest. Behaviour
//! particular to that server is tested in `tests/server.rs`.
#![cfg(feature = "server")]

mod support;
mod suites {
    pub mod bad_input;
    pub mod browser;
    pub mod chat;
    pub mod failure;
    pub mod long_poll;
    pub mod refusals;
    pub mod sse;
}

#[path = "../examples/chat/app.rs"]
mod app;

use support::server::Serving;

mod bad_input {
    crate::suites::bad_input::tests!(crate::Serving::CrateServer);
}

mod browser {
    crate::suites::browser::tests!(crate::Serving::CrateServer);
}

mod chat {
    crate::suites::chat::tests!(crate::Serving::CrateServer);
}

mod failure {
    crate::suites::failure::tests!(crate::Serving::CrateServer);
}

mod long_poll {
    crate::suites::long_poll::tests!(crate::Serving::CrateServer);
}

mod sse {
    crate::suites::sse::tests!(crate::Serving::CrateServer);
}
