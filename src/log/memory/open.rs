//! Where a new subscriber of a [`MemoryLog`] starts: after its cursor, at the start
//! position, or at a gap.

use super::subscription::MemorySubscription;
use super::MemoryLog;
use crate::log::follower::Follower;
use crate::log::ring::Counted;
use crate::log::{ResumeOutcome, StartPosition};
use crate::measure::GapCause;
use crate::{CursorError, LastEventId};

impl MemoryLog {
    /// Subscribes without waiting (the [`EventLog::subscribe`](crate::EventLog::subscribe) future is ready at once).
    pub fn subscribe_now(&self, cursor: Option<&LastEventId>) -> Result<MemorySubscription, CursorError> {
        self.open(cursor, StartPosition::LiveEnd)
    }

    /// Subscribes after `cursor`, or at `start` without one.
    pub(super) fn open(
        &self,
        cursor: Option<&LastEventId>,
        start: StartPosition,
    ) -> Result<MemorySubscription, CursorError> {
        let parsed = cursor
            .map(|cursor| self.shared.ids.parse_cursor(cursor))
            .transpose()?;
        let held = self.current();
        let ring = &held.ring;
        let before_oldest = held.complete_after;
        let before = |seq: u64| match seq.checked_sub(1).and_then(|previous| ring.get(previous)) {
            Some(stored) => stored.position,
            None => before_oldest,
        };
        let mut skip_through = None;
        // Another instance's cursor, or one older than the history held.
        let cause = match parsed {
            Some(None) => GapCause::OtherEpoch,
            _ => GapCause::Trimmed,
        };
        let (outcome, next_seq, at) = match parsed {
            None => {
                let replay = match start {
                    StartPosition::LiveEnd => 0,
                    StartPosition::Oldest => ring.len(),
                    StartPosition::Last(events) => events.min(ring.len()),
                } as u64;
                let next_seq = ring.next_seq() - replay;
                (
                    ResumeOutcome::Fresh,
                    next_seq,
                    if replay == 0 {
                        held.newest
                    } else {
                        before(next_seq)
                    },
                )
            }
            Some(Some(seen)) if seen > held.newest => {
                if !self.shared.ids.keeps_source_ids() {
                    return Err(CursorError::Unknown {
                        reason: "the sequence is ahead of this log",
                    });
                }
                // The source has not brought it yet (it is replaying after a restart).
                skip_through = Some(seen);
                (ResumeOutcome::Resumed, ring.next_seq(), seen)
            }
            Some(Some(seen)) if seen >= before_oldest => {
                let next_seq = ring.first_seq_not(|stored| stored.position <= seen);
                (ResumeOutcome::Resumed, next_seq, seen)
            }
            // Another instance, or history no longer held.
            Some(_) => (ResumeOutcome::Gap, ring.first_seq(), before_oldest),
        };
        // A finished log read to its end: the subscription has nothing to deliver, ever.
        let at_end = held.finished && outcome != ResumeOutcome::Gap && next_seq == ring.next_seq();
        drop(held);
        // The first poll arms a fresh wake-up and then looks at the ring.
        let mut follower = Follower::new(self.shared.wake.notify(), next_seq, at);
        if outcome == ResumeOutcome::Gap {
            follower.gap_due(at, cause);
        }
        if let Some(seen) = skip_through {
            follower.skip_through(seen);
        }
        Ok(MemorySubscription::new(
            Counted::new(self.clone()),
            follower,
            outcome,
            at_end,
        ))
    }
}
