//! [`Watch`]: what an operator sees of one SSE stream or long poll, kept by its body or
//! future: the subscription gauge and the per-frame counters (feature `metrics`), and one
//! `tracing` span (feature `tracing`) that closes with what was delivered and why it ended.
//!
//! It is a guard: whatever ends the stream or poll (an answer, the client going away, a
//! panic unwinding through the body), dropping it takes the gauge back down and reports the
//! end. Without either feature it holds nothing and every method is empty.

use crate::measure::{PollOutcome, Stamp};
use crate::Transport;

/// How a stream or poll started relative to the client's cursor (the span's `resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// No cursor.
    Fresh,
    /// A cursor, and no gap before the first event (so far).
    Resumed,
    /// The client heard of a gap before any event.
    Gap,
}

impl Resume {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Resume::Fresh => "fresh",
            Resume::Resumed => "resumed",
            Resume::Gap => "gap",
        }
    }
}

/// Why a stream or poll ended (the close event's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Dropped unfinished: the client went away (or the server dropped the connection).
    #[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
    ClientLeft,
    /// [`StreamConfig::max_connection_age`](crate::StreamConfig::max_connection_age).
    MaxAge,
    /// Shutdown began.
    Shutdown,
    /// The source failed.
    Error,
    /// The source ended (an access that expired, a stream that ran out).
    SourceEnded,
    /// A long poll answered.
    Answered(PollOutcome),
}

impl Ending {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Ending::ClientLeft => "client_left",
            Ending::MaxAge => "max_age",
            Ending::Shutdown => "shutdown",
            Ending::Error => "error",
            Ending::SourceEnded => "source_ended",
            Ending::Answered(outcome) => outcome.label(),
        }
    }
}

/// The operator's view of one stream or poll; see the module docs.
pub(crate) struct Watch {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    state: State,
}

#[cfg(any(feature = "metrics", feature = "tracing"))]
struct State {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // only the poll count needs it
    transport: Transport,
    events: u64,
    ending: Ending,
    resume: Resume,
    #[cfg(feature = "metrics")]
    meters: crate::measure::Meters,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Watch {
    /// A stream or poll of `transport` starts serving; `topic` labels its metrics when the
    /// application asked for per-topic labels.
    pub(crate) fn open(transport: Transport, resume: Resume, topic: Option<&str>) -> Self {
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        {
            let _ = (transport, resume, topic);
            Watch {}
        }
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            #[cfg(not(feature = "metrics"))]
            let _ = topic;
            Watch {
                state: State {
                    transport,
                    events: 0,
                    ending: Ending::ClientLeft,
                    resume,
                    #[cfg(feature = "metrics")]
                    meters: crate::measure::Meters::open(transport, topic),
                    #[cfg(feature = "tracing")]
                    span: tracing::debug_span!(
                        "event_stream",
                        transport = crate::measure::transport_label(transport),
                        resume = resume.label(),
                    ),
                },
            }
        }
    }

    /// A frame (or a long-poll answer) went out: `events` events in `bytes` bytes, the first
    /// event stamped `first` when it was appended.
    #[inline]
    pub(crate) fn wrote(&mut self, events: u64, bytes: usize, first: Option<Stamp>) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            self.state.events += events;
            #[cfg(feature = "metrics")]
            self.state.meters.frame(events, bytes as u64, first);
            #[cfg(not(feature = "metrics"))]
            let _ = (bytes, first);
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = (events, bytes, first);
    }

    /// The client is told of a gap: before any event, that is how its resume went.
    #[inline]
    pub(crate) fn gap(&mut self) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        if self.state.events == 0 && self.state.resume != Resume::Gap {
            self.state.resume = Resume::Gap;
            #[cfg(feature = "tracing")]
            self.state.span.record("resume", Resume::Gap.label());
        }
    }

    /// Why it ends, when it ends for another reason than the client leaving.
    #[inline]
    pub(crate) fn ending(&mut self, ending: Ending) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            self.state.ending = ending;
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = ending;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        {
            let state = &self.state;
            #[cfg(feature = "metrics")]
            {
                state.meters.close();
                if state.transport == Transport::LongPoll {
                    let outcome = match state.ending {
                        Ending::Answered(outcome) => outcome,
                        _ => PollOutcome::ClientLeft,
                    };
                    crate::measure::long_poll(outcome);
                }
            }
            #[cfg(feature = "tracing")]
            tracing::debug!(
                parent: &state.span,
                events = state.events,
                reason = state.ending.label(),
                "event stream closed"
            );
            #[cfg(not(feature = "tracing"))]
            let _ = state.events;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without either feature a stream carries nothing for the operator: no field, no cost.
    #[test]
    fn without_features_a_watch_is_nothing() {
        let size = std::mem::size_of::<Watch>();
        if cfg!(any(feature = "metrics", feature = "tracing")) {
            assert!(size > 0);
        } else {
            assert_eq!(size, 0);
        }
        let mut watch = Watch::open(Transport::Sse, Resume::Fresh, None);
        watch.gap();
        watch.wrote(1, 10, None);
        watch.ending(Ending::MaxAge);
    }
}
