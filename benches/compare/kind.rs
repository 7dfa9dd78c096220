//! The servers compared, by name, with the paths each one serves.

use crate::client::PollStyle;

/// One of the servers under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Crate,
    CrateH1,
    CrateServer,
    /// `Crate` with a Prometheus recorder installed (bench built with the `metrics` feature).
    CrateMetrics,
    Axum,
    Ceiling,
    Nchan,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Crate,
        Kind::CrateH1,
        Kind::CrateServer,
        Kind::CrateMetrics,
        Kind::Axum,
        Kind::Ceiling,
        Kind::Nchan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Crate => "crate",
            Kind::CrateH1 => "crate-h1",
            Kind::CrateServer => "crate-server",
            Kind::CrateMetrics => "crate-metrics",
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
            Kind::CrateMetrics => "crate + metrics",
            Kind::Axum => "axum Sse",
            Kind::Ceiling => "ceiling",
            Kind::Nchan => "Nchan",
        }
    }

    pub fn sse_path(self) -> &'static str {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer | Kind::CrateMetrics => "/api/events",
            Kind::Axum => "/events",
            Kind::Ceiling | Kind::Nchan => "/sub",
        }
    }

    pub fn publish_path(self) -> &'static str {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer | Kind::CrateMetrics => "/api/messages",
            Kind::Axum => "/publish",
            Kind::Ceiling | Kind::Nchan => "/pub",
        }
    }

    pub fn long_poll(self) -> Option<(&'static str, PollStyle)> {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer | Kind::CrateMetrics => {
                Some(("/api/events", PollStyle::Crate))
            }
            Kind::Ceiling => Some(("/lp", PollStyle::Ceiling)),
            Kind::Nchan => Some(("/lp", PollStyle::Nchan)),
            // axum has no long poll of its own.
            Kind::Axum => None,
        }
    }

    /// Whether this build can run it: `crate-metrics` needs the `metrics` feature.
    pub fn built(self) -> bool {
        self != Kind::CrateMetrics || cfg!(feature = "metrics")
    }

    /// Whether it runs in the scenario `name`: `crate-metrics` only in fan-out, where it
    /// shows what the metrics cost beside `crate`.
    pub fn runs_in(self, name: &str) -> bool {
        self != Kind::CrateMetrics || name == "fanout"
    }
}
