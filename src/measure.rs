//! The crate's metrics (feature `metrics`), through the `metrics` facade: the application
//! installs the exporter it wants. Every call site counts through this module and never
//! names the facade, so that without the feature each function here is empty and the hot
//! paths carry neither code nor `cfg` of their own.
//!
//! The names, labels and meanings are listed in the README ("Operating it"). Every label
//! takes one of a few fixed values, except the `topic` label, which is only there when an
//! application asks for it ([`TopicsBuilder::metrics_per_topic`](crate::TopicsBuilder)).
//!
//! Counting per frame goes through handles resolved once per stream ([`Meters`]): asking
//! the facade for a metric by name hashes its key, which is fine once per append, reset or
//! refusal but not once per frame of every subscriber.

use std::time::Instant;

use crate::{RequestError, Transport};

/// When an event was appended, as stamped on it (with the feature only) so that the delay to
/// the frame that carries it can be measured with one clock read per frame.
pub(crate) type Stamp = Instant;

/// Why a client hears that its position is lost (the `cause` of `eventstream_resets_total`).
/// Carried from where a gap is decided to where it is handed out, so that a reset is
/// counted once, when the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapCause {
    /// The cursor is older than the history held.
    Trimmed,
    /// The cursor is from another log instance (another epoch, another name).
    OtherEpoch,
    /// A connected subscriber fell behind the history.
    FellBehind,
    /// The cursor is from a stream over other topics (or of one topic, on a request for
    /// several), so it cannot be placed in the requested ones.
    OtherTopics,
    /// The backend lost entries (a stream deleted, recreated or rewound), or a loss on the
    /// way into the log was recorded ([`EventLog::record_gap`](crate::EventLog::record_gap)).
    BackendLost,
}

/// Why a request was refused (the `reason` of `eventstream_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A topic or subscriber limit.
    Limit,
    /// The authorization hook.
    Auth,
    /// A malformed cursor, or one the log never issued.
    BadCursor,
    /// The log's backend (or a layered inner service) was unavailable.
    BackendUnavailable,
}

/// How a long poll ended (the `outcome` of `eventstream_long_polls_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollOutcome {
    /// Answered with events, or with a reset.
    Events,
    /// Answered with nothing: the wait ran out (or the feed ended).
    TimedOut,
    /// Answered with nothing because shutdown began.
    Shutdown,
    /// The client went away before the answer.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    ClientLeft,
}

impl GapCause {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            GapCause::Trimmed => "trimmed",
            GapCause::OtherEpoch => "other_epoch",
            GapCause::OtherTopics => "other_topics",
            GapCause::FellBehind => "fell_behind",
            GapCause::BackendLost => "backend_lost",
        }
    }
}

impl Refused {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Refused::Limit => "limit",
            Refused::Auth => "auth",
            Refused::BadCursor => "bad_cursor",
            Refused::BackendUnavailable => "backend_unavailable",
        }
    }
}

impl PollOutcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            PollOutcome::Events => "events",
            PollOutcome::TimedOut => "timed_out",
            PollOutcome::Shutdown => "shutdown",
            PollOutcome::ClientLeft => "client_left",
        }
    }
}

#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
pub(crate) fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Sse => "sse",
        Transport::LongPoll => "long_poll",
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
    ::metrics::counter!("eventstream_events_appended_total").increment(events);
    #[cfg(not(feature = "metrics"))]
    let _ = events;
}

/// A client is told of a gap.
#[inline(always)]
pub(crate) fn reset(cause: GapCause) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("eventstream_resets_total", "cause" => cause.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = cause;
}

/// A request is answered with a refusal.
#[inline(always)]
pub(crate) fn refused(reason: Refused) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("eventstream_refusals_total", "reason" => reason.label()).increment(1);
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
    ::metrics::counter!("eventstream_long_polls_total", "outcome" => outcome.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// Topics came to life (`created > 0`) or went (`created < 0`) in a registry.
#[inline(always)]
pub(crate) fn topics(change: isize) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!("eventstream_topics").increment(change as f64);
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
        let mut labels = vec![::metrics::Label::new("transport", transport)];
        if let Some(topic) = topic {
            labels.push(::metrics::Label::new("topic", topic.to_owned()));
        }
        let meters = Meters {
            subscriptions: ::metrics::gauge!("eventstream_subscriptions", labels.clone()),
            delivered: ::metrics::counter!("eventstream_events_delivered_total", labels),
            bytes: ::metrics::counter!("eventstream_bytes_written_total", "transport" => transport),
            delay: ::metrics::histogram!("eventstream_append_to_write_seconds"),
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

#[cfg(any(feature = "metrics", feature = "tracing"))]
thread_local! {
    /// What the last copy of encoded bytes took: its event count and its first event's
    /// stamp. The copy happens inside the SSE body's own call to `poll_encoded`, on this
    /// thread, and the public `EventFeed::poll_encoded` returns bytes only, so this is how
    /// the body learns what its frame carries without a change to that trait.
    static COPIED: std::cell::Cell<(u64, Option<Stamp>)> = const { std::cell::Cell::new((0, None)) };
}

/// A log copied `events` encoded events into a frame, the first stamped `first`.
#[inline(always)]
pub(crate) fn note_copied(events: u64, first: Option<Stamp>) {
    // The metrics count the events and time the first; a stream's span counts them too.
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    COPIED.with(|copied| copied.set((events, first)));
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    let _ = (events, first);
}

/// What the last copy noted (and forgets it): `(0, None)` when none did.
#[inline(always)]
pub(crate) fn take_copied() -> (u64, Option<Stamp>) {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    return COPIED.with(|copied| copied.replace((0, None)));
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    (0, None)
}
