//! The crate's metrics (feature `metrics`), through the `metrics` facade: the application
//! installs the exporter it wants. Every call site counts through this module and never
//! names the facade, so that without the feature each function here is empty and the hot
//! paths carry neither code nor `cfg` of their own.
//!
//! Every series is spelled once, in [`SERIES`]: its name, type, unit, help and the label
//! whose values are fixed. The counting below names a series through its entry, and
//! [`describe_metrics`] describes every entry and registers each fixed label value at zero,
//! so the two cannot drift. The names, labels and meanings are listed in the README
//! ("Operating it"). Every label takes one of a few fixed values, except the `topic` label,
//! which is only there when an application asks for it
//! ([`TopicsBuilder::metrics_per_topic`](crate::TopicsBuilder)).
//!
//! Counting per frame goes through handles resolved once per stream ([`Meters`]): asking
//! the facade for a metric by name hashes its key, which is fine once per append, reset or
//! refusal but not once per frame of every subscriber.

use std::time::Instant;

use crate::{RequestError, Transport};

/// When an event was appended, as stamped on it (with the feature only) so that the delay to
/// the frame that carries it can be measured with one clock read per frame.
pub(crate) type Stamp = Instant;

/// An enum whose variants are the values of one label, each value spelled once: `label()`
/// and `LABELS` (every value, registered at zero by [`describe_metrics`]) come from the same
/// list, so a new variant is registered as soon as it exists.
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $label:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every value of the label, in the order of the variants.
            #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
            const LABELS: &'static [&'static str] = &[$($label),+];

            /// This variant's value of the label.
            #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
            pub(crate) const fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }
    };
}

label_values! {
    /// Why a client hears that its position is lost (the `cause` of `eventstream_resets_total`).
    /// Carried from where a gap is decided to where it is handed out, so that a reset is
    /// counted once, when the client is told.
    enum GapCause {
        /// The cursor is older than the history held.
        Trimmed => "trimmed",
        /// The cursor is from another log instance (another epoch, another name).
        OtherEpoch => "other_epoch",
        /// The cursor is from a stream over other topics (or of one topic, on a request for
        /// several), so it cannot be placed in the requested ones.
        OtherTopics => "other_topics",
        /// A connected subscriber fell behind the history.
        FellBehind => "fell_behind",
        /// The backend lost entries (a stream deleted, recreated or rewound), or a loss on the
        /// way into the log was recorded ([`EventLog::record_gap`](crate::EventLog::record_gap)).
        BackendLost => "backend_lost",
    }
}

label_values! {
    /// Why a request was refused (the `reason` of `eventstream_refusals_total`).
    enum Refused {
        /// A topic or subscriber limit.
        Limit => "limit",
        /// The authorization hook.
        Auth => "auth",
        /// A malformed cursor, or one the log never issued.
        BadCursor => "bad_cursor",
        /// The log's backend (or a layered inner service) was unavailable.
        BackendUnavailable => "backend_unavailable",
    }
}

label_values! {
    /// How a long poll ended (the `outcome` of `eventstream_long_polls_total`).
    enum PollOutcome {
        /// Answered with events, or with a reset.
        Events => "events",
        /// Answered with nothing: the wait ran out (or the feed ended).
        TimedOut => "timed_out",
        /// Answered with nothing because shutdown began.
        Shutdown => "shutdown",
        /// The client went away before the answer.
        #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
        ClientLeft => "client_left",
    }
}

#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
pub(crate) const fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Sse => "sse",
        Transport::LongPoll => "long_poll",
    }
}

/// Every transport's label. (`Transport` is public and declared elsewhere; a variant added
/// to it fails to compile in [`transport_label`] until it has a label, and belongs here too.)
#[cfg(feature = "metrics")]
const TRANSPORT_LABELS: &[&str] = &[
    transport_label(Transport::Sse),
    transport_label(Transport::LongPoll),
];

/// What a series is to the exporter.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One of the crate's series, the only place its name is spelled.
#[cfg(feature = "metrics")]
struct Series {
    name: &'static str,
    kind: Kind,
    unit: ::metrics::Unit,
    /// The exporter's help line: what it counts and what to do when it moves.
    help: &'static str,
    /// The label whose every value [`describe_metrics`] registers at zero, with those values;
    /// without one, the series itself. (The optional `topic` label is never registered.)
    label: Option<(&'static str, &'static [&'static str])>,
}

#[cfg(feature = "metrics")]
impl Series {
    /// The key of this series' fixed label.
    fn key(&self) -> &'static str {
        match self.label {
            Some((key, _)) => key,
            None => unreachable!("{} has no label", self.name),
        }
    }

    fn counter(&'static self) -> ::metrics::Counter {
        ::metrics::counter!(self.name)
    }

    fn counter_by(&'static self, value: &'static str) -> ::metrics::Counter {
        ::metrics::counter!(self.name, self.key() => value)
    }

    /// Describes this series, and registers it (each value of its label) at zero without
    /// changing a value already counted.
    fn describe(&'static self) {
        let (name, unit, help) = (self.name, self.unit, self.help);
        match self.kind {
            Kind::Counter => ::metrics::describe_counter!(name, unit, help),
            Kind::Gauge => ::metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => ::metrics::describe_histogram!(name, unit, help),
        }
        match self.label {
            None => self.register_at_zero(Vec::new()),
            Some((key, values)) => {
                for &value in values {
                    self.register_at_zero(vec![::metrics::Label::new(key, value)]);
                }
            }
        }
    }

    /// Registers the series of `labels` without changing its value: `increment(0)`, not
    /// `absolute(0)` or `set(0.0)`, so a late call keeps what is counted. A histogram is
    /// registered by asking for it (recording would add a sample).
    fn register_at_zero(&'static self, labels: Vec<::metrics::Label>) {
        match self.kind {
            Kind::Counter => ::metrics::counter!(self.name, labels).increment(0),
            Kind::Gauge => ::metrics::gauge!(self.name, labels).increment(0.0),
            Kind::Histogram => drop(::metrics::histogram!(self.name, labels)),
        }
    }
}

#[cfg(feature = "metrics")]
const TRANSPORT: Option<(&str, &[&str])> = Some(("transport", TRANSPORT_LABELS));

#[cfg(feature = "metrics")]
static SUBSCRIPTIONS: Series = Series {
    name: "eventstream_subscriptions",
    kind: Kind::Gauge,
    unit: ::metrics::Unit::Count,
    help: "Open SSE streams and waiting long polls; near the Topics subscriber limits new ones are refused (reason=limit).",
    label: TRANSPORT,
};

#[cfg(feature = "metrics")]
static TOPICS: Series = Series {
    name: "eventstream_topics",
    kind: Kind::Gauge,
    unit: ::metrics::Unit::Count,
    help: "Live topics of every Topics registry; near max_topics new topics are refused (reason=limit).",
    label: None,
};

#[cfg(feature = "metrics")]
static APPENDED: Series = Series {
    name: "eventstream_events_appended_total",
    kind: Kind::Counter,
    unit: ::metrics::Unit::Count,
    help: "Events appended by this process; flat while producers publish means appends fail (see the application's errors).",
    label: None,
};

#[cfg(feature = "metrics")]
static DELIVERED: Series = Series {
    name: "eventstream_events_delivered_total",
    kind: Kind::Counter,
    unit: ::metrics::Unit::Count,
    help: "Events written to clients (SSE frames, long-poll answers); far below appended times subscribers means clients lag or reset.",
    label: TRANSPORT,
};

#[cfg(feature = "metrics")]
static BYTES: Series = Series {
    name: "eventstream_bytes_written_total",
    kind: Kind::Counter,
    unit: ::metrics::Unit::Bytes,
    help: "Response body bytes of streams and polls, keep-alives included: the egress to plan bandwidth for.",
    label: TRANSPORT,
};

#[cfg(feature = "metrics")]
static RESETS: Series = Series {
    name: "eventstream_resets_total",
    kind: Kind::Counter,
    unit: ::metrics::Unit::Count,
    help: "Clients told their position is lost, by cause; trimmed or fell_behind rising means the history is too short for how far clients fall behind.",
    label: Some(("cause", GapCause::LABELS)),
};

#[cfg(feature = "metrics")]
static LONG_POLLS: Series = Series {
    name: "eventstream_long_polls_total",
    kind: Kind::Counter,
    unit: ::metrics::Unit::Count,
    help: "Long polls by how they ended; many client_left means a client or proxy timeout shorter than the server's max_wait.",
    label: Some(("outcome", PollOutcome::LABELS)),
};

#[cfg(feature = "metrics")]
static REFUSALS: Series = Series {
    name: "eventstream_refusals_total",
    kind: Kind::Counter,
    unit: ::metrics::Unit::Count,
    help: "Requests refused, by reason: limit (raise the Topics limits), auth (the authorization hook), bad_cursor (clients with foreign cursors), backend_unavailable (check the log's backend).",
    label: Some(("reason", Refused::LABELS)),
};

#[cfg(feature = "metrics")]
static DELAY: Series = Series {
    name: "eventstream_append_to_write_seconds",
    kind: Kind::Histogram,
    unit: ::metrics::Unit::Seconds,
    help: "Delay from an append to the write of the frame that carries the event; high quantiles mean slow clients, a busy runtime or a slow backend.",
    label: None,
};

/// Every series of the crate: what [`describe_metrics`] describes.
#[cfg(feature = "metrics")]
static SERIES: [&Series; 9] = [
    &SUBSCRIPTIONS,
    &TOPICS,
    &APPENDED,
    &DELIVERED,
    &BYTES,
    &RESETS,
    &LONG_POLLS,
    &REFUSALS,
    &DELAY,
];

/// Describes every `eventstream_*` series to the installed `metrics` recorder (its type,
/// unit and a help line) and registers each at zero, one series per value of its fixed
/// labels (`transport`, `cause`, `outcome`, `reason`), so that the first scrape of a fresh
/// instance already lists them all and `rate()` has a starting point.
///
/// Call it once, right after installing the recorder and before serving: describing and
/// registering go to the recorder installed at the time, and a call made before there is
/// one does nothing. A later or repeated call is harmless: every series is registered by
/// adding zero, so no value already counted changes. The optional `topic` label
/// ([`TopicsBuilder::metrics_per_topic`](crate::TopicsBuilder::metrics_per_topic)) is not
/// registered: its values are the application's topic keys, which appear with their streams.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
/// tower_eventstream::describe_metrics();
/// // `handle.render()` now lists every `eventstream_*` series, at zero; serve it at `/metrics`.
/// # let _ = handle;
/// # Ok(()) }
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    for series in SERIES {
        series.describe();
    }
}

/// The time to stamp on an event being appended: only with the feature (one clock read per
/// append), so that without it nothing is read and nothing stored.
#[inline(always)]
pub(crate) fn append_stamp() -> Option<Stamp> {
    #[cfg(feature = "metrics")]
    return Some(Instant::now());
    #[cfg(not(feature = "metrics"))]
    None
}

/// `events` were appended by this process.
#[inline(always)]
pub(crate) fn appended(events: u64) {
    #[cfg(feature = "metrics")]
    APPENDED.counter().increment(events);
    #[cfg(not(feature = "metrics"))]
    let _ = events;
}

/// A client is told of a gap.
#[inline(always)]
pub(crate) fn reset(cause: GapCause) {
    #[cfg(feature = "metrics")]
    RESETS.counter_by(cause.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = cause;
}

/// A request is answered with a refusal.
#[inline(always)]
pub(crate) fn refused(reason: Refused) {
    #[cfg(feature = "metrics")]
    REFUSALS.counter_by(reason.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// A request is answered `400` for `error`: counted when the cursor was the fault (a bad
/// `timeout` or `transport` is none of the counted reasons).
#[inline(always)]
pub(crate) fn refused_request(error: &RequestError) {
    if let RequestError::Cursor(_) = error {
        refused(Refused::BadCursor);
    }
}

/// A long poll ended.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[inline(always)]
pub(crate) fn long_poll(outcome: PollOutcome) {
    #[cfg(feature = "metrics")]
    LONG_POLLS.counter_by(outcome.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// Topics came to life (`created > 0`) or went (`created < 0`) in a registry.
#[inline(always)]
pub(crate) fn topics(change: isize) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(TOPICS.name).increment(change as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = change;
}

/// The handles one stream or long poll counts through, resolved when it opens.
#[cfg(feature = "metrics")]
pub(crate) struct Meters {
    subscriptions: ::metrics::Gauge,
    delivered: ::metrics::Counter,
    bytes: ::metrics::Counter,
    delay: ::metrics::Histogram,
}

#[cfg(feature = "metrics")]
impl Meters {
    /// Opens a subscription of `transport` (with its `topic` label when the application
    /// asked for one): the gauge goes up until [`close`](Meters::close).
    pub(crate) fn open(transport: Transport, topic: Option<&str>) -> Self {
        let transport = transport_label(transport);
        let mut labels = vec![::metrics::Label::new(SUBSCRIPTIONS.key(), transport)];
        if let Some(topic) = topic {
            labels.push(::metrics::Label::new("topic", topic.to_owned()));
        }
        let meters = Meters {
            subscriptions: ::metrics::gauge!(SUBSCRIPTIONS.name, labels.clone()),
            delivered: ::metrics::counter!(DELIVERED.name, labels),
            bytes: BYTES.counter_by(transport),
            delay: ::metrics::histogram!(DELAY.name),
        };
        meters.subscriptions.increment(1.0);
        meters
    }

    /// A frame went out with `events` events and `bytes` bytes; `first` is the append stamp
    /// of its first event, the only one whose delay is measured (one clock read per frame).
    pub(crate) fn frame(&self, events: u64, bytes: u64, first: Option<Stamp>) {
        if events > 0 {
            self.delivered.increment(events);
        }
        if bytes > 0 {
            self.bytes.increment(bytes);
        }
        if let Some(appended) = first {
            self.delay.record(appended.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn close(&self) {
        self.subscriptions.decrement(1.0);
    }
}
