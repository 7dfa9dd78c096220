//! The chat page in real browsers (Chromium and Firefox ESR), served by hyper-util (the suite
//! is in `tests/suites/browser.rs`; `tests/crate_server.rs` runs it on the crate's own server).

mod support;
mod suites {
    // rustfmt looks for this file's modules in `tests/browser/` (the scenarios' folder), rustc
    // in `tests/suites/`: from either, this path names the suite.
    #[path = "../suites/browser.rs"]
    pub mod browser;
}

#[path = "../examples/chat/app.rs"]
mod app;

suites::browser::tests!(support::server::Serving::HyperUtil);
