//! The servers compared, by name, with the paths each one serves.

use crate::client::PollStyle;

/// One of the servers under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Crate,
    CrateH1,
    CrateServer,
    Axum,
    Ceiling,
    Nchan,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Crate,
        Kind::CrateH1,
        Kind::CrateServer,
        Kind::Axum,
        Kind::Ceiling,
        Kind::Nchan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Crate => "crate",
            Kind::CrateH1 => "crate-h1",
            Kind::CrateServer => "crate-server",
            Kind::Axum => "axum",
            Kind::Ceiling => "ceiling",
            Kind::Nchan => "nchan",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn column(self) -> &'static str {
        match self {
            Kind::Crate => "crate (axum::serve)",
            Kind::CrateH1 => "crate (hyper h1)",
            Kind::CrateServer => "crate (own server)",
            Kind::Axum => "axum Sse",
            Kind::Ceiling => "ceiling",
            Kind::Nchan => "Nchan",
        }
    }

    pub fn sse_path(self) -> &'static str {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer => "/api/events",
            Kind::Axum => "/events",
            Kind::Ceiling | Kind::Nchan => "/sub",
        }
    }

    pub fn publish_path(self) -> &'static str {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer => "/api/messages",
            Kind::Axum => "/publish",
            Kind::Ceiling | Kind::Nchan => "/pub",
        }
    }

    pub fn long_poll(self) -> Option<(&'static str, PollStyle)> {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer => Some(("/api/events", PollStyle::Crate)),
            Kind::Ceiling => Some(("/lp", PollStyle::Ceiling)),
            Kind::Nchan => Some(("/lp", PollStyle::Nchan)),
            // axum has no long poll of its own.
            Kind::Axum => None,
        }
    }
}
