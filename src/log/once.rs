//! Appends a client may retry: an idempotency key makes a repeat of the same append within a
//! window return the original event's id instead of appending again.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Event, EventId};

/// How long a log remembers an idempotency key unless told otherwise: five minutes.
pub const DEFAULT_ONCE_WINDOW: Duration = Duration::from_secs(300);

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A client's idempotency key (the `Idempotency-Key` request header): 1 to 255 visible ASCII
/// characters, chosen by the client once per logical append and sent again with each retry.
///
/// ```
/// use tower_eventstream::IdempotencyKey;
///
/// let key = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap();
/// assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
/// assert!(IdempotencyKey::new("").is_err());
/// assert!(IdempotencyKey::new("two words").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Checks and takes a key. The draft standard writes the header as a quoted string
    /// (`"abc"`); the quotes are taken off.
    pub fn new(key: &str) -> Result<Self, InvalidIdempotencyKey> {
        let key = key
            .strip_prefix('"')
            .and_then(|key| key.strip_suffix('"'))
            .unwrap_or(key);
        if key.is_empty() {
            return Err(InvalidIdempotencyKey("the idempotency key is empty"));
        }
        if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(InvalidIdempotencyKey(
                "the idempotency key is longer than 255 bytes",
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidIdempotencyKey(
                "the idempotency key must be visible ASCII characters, without spaces",
            ));
        }
        Ok(IdempotencyKey(Arc::from(key)))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdempotencyKey").field(&&*self.0).finish()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an idempotency key was refused (answered `400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIdempotencyKey(&'static str);

impl fmt::Display for InvalidIdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidIdempotencyKey {}

/// What [`EventLog::append_once`](crate::EventLog::append_once) did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Appended {
    /// The event was appended: as stored, with its id.
    New(Event),
    /// The same key came with the same event within the window: nothing was appended; the
    /// first append's event id.
    Repeat(EventId),
}

impl Appended {
    /// The event's id: the new one, or the first append's.
    pub fn id(&self) -> Option<&EventId> {
        match self {
            Appended::New(event) => event.id(),
            Appended::Repeat(id) => Some(id),
        }
    }

    /// Whether this was a repeat (nothing appended).
    pub fn is_repeat(&self) -> bool {
        matches!(self, Appended::Repeat(_))
    }
}

/// How many idempotency keys a [`MemoryLog`](crate::MemoryLog) remembers at most: past it,
/// the oldest is forgotten before its window ends.
pub const DEFAULT_REMEMBERED_KEYS: usize = 10_000;

/// The idempotency keys a log in this process remembers: each with its event's fingerprint,
/// the id it was appended as, and when it is forgotten. Bounded: past `capacity` keys the
/// oldest goes first.
pub(crate) struct RememberedKeys {
    keys: HashMap<IdempotencyKey, Remembered>,
    /// In the order remembered (each key once; a key's window is fixed when remembered).
    order: VecDeque<IdempotencyKey>,
    capacity: usize,
}

struct Remembered {
    fingerprint: u64,
    id: EventId,
    until: Instant,
}

/// What a remembered key says of an append.
pub(crate) enum Seen {
    /// Not remembered: append.
    New,
    /// Remembered with the same event: this id.
    Repeat(EventId),
    /// Remembered with another event.
    Reused,
}

impl RememberedKeys {
    pub(crate) fn new(capacity: usize) -> Self {
        RememberedKeys {
            keys: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// What `key` with an event of `fingerprint` is, at `now`.
    pub(crate) fn check(&mut self, key: &IdempotencyKey, fingerprint: u64, now: Instant) -> Seen {
        self.forget_expired(now);
        match self.keys.get(key) {
            None => Seen::New,
            Some(seen) if seen.fingerprint == fingerprint => Seen::Repeat(seen.id.clone()),
            Some(_) => Seen::Reused,
        }
    }

    /// Remembers `key` until `now + window`.
    pub(crate) fn remember(
        &mut self,
        key: IdempotencyKey,
        fingerprint: u64,
        id: EventId,
        now: Instant,
        window: Duration,
    ) {
        while self.keys.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.keys.remove(&oldest);
        }
        let until = now + window;
        if self
            .keys
            .insert(
                key.clone(),
                Remembered {
                    fingerprint,
                    id,
                    until,
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
    }

    /// Forgets the keys whose window has ended, oldest first (a key remembered later with a
    /// shorter window waits behind older ones: forgotten a little late, never early).
    fn forget_expired(&mut self, now: Instant) {
        while let Some(oldest) = self.order.front() {
            match self.keys.get(oldest) {
                Some(seen) if seen.until > now => break,
                _ => {
                    if let Some(oldest) = self.order.pop_front() {
                        self.keys.remove(&oldest);
                    }
                }
            }
        }
    }
}

/// The fingerprint an idempotency key is remembered with: what the event says (its name,
/// data, retry and comment), so that the same key with another event is told apart. FNV-1a
/// over a framed encoding: the same on every platform and in every process, as a check shared
/// through Redis needs (not a defence against a client forging collisions with its own key).
pub(crate) fn fingerprint(event: &Event) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &byte in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    eat(event.name().unwrap_or_default().as_bytes());
    eat(&[u8::from(event.name().is_some())]);
    eat(event.data().as_bytes());
    let retry = event.retry().map_or(u64::MAX, |retry| retry.as_millis() as u64);
    eat(&retry.to_le_bytes());
    eat(event.comment().unwrap_or_default().as_bytes());
    eat(&[u8::from(event.comment().is_some())]);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_quotes_taken_off() {
        assert_eq!(IdempotencyKey::new("\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(IdempotencyKey::new("a-b_c.1").unwrap().as_str(), "a-b_c.1");
        for bad in ["", "\"\"", "a b", "é", "a\u{7f}", &"x".repeat(256)] {
            assert!(IdempotencyKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::new(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn the_fingerprint_tells_events_apart_and_is_stable() {
        let plain = Event::new("hello");
        assert_eq!(fingerprint(&plain), fingerprint(&Event::new("hello")));
        assert_ne!(fingerprint(&plain), fingerprint(&Event::new("hello!")));
        let named = Event::new("hello").with_name("message").unwrap();
        assert_ne!(fingerprint(&plain), fingerprint(&named));
        // Framed: moving bytes between fields changes it.
        let a = Event::new("bc").with_name("a").unwrap();
        let b = Event::new("c").with_name("ab").unwrap();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // The same in every process, build and platform (Redis shares it between instances):
        // pinned to the value FNV-1a gives for this framing, computed independently.
        assert_eq!(format!("{:016x}", fingerprint(&plain)), "5365223d65d78d72");
    }

    #[test]
    fn remembered_keys_expire_and_are_bounded() {
        let id = |n: u64| EventId::new(format!("1-{n}")).unwrap();
        let key = |k: &str| IdempotencyKey::new(k).unwrap();
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let mut keys = RememberedKeys::new(2);
        assert!(matches!(keys.check(&key("a"), 7, now), Seen::New));
        keys.remember(key("a"), 7, id(1), now, window);
        assert!(matches!(keys.check(&key("a"), 7, now), Seen::Repeat(found) if found == id(1)));
        assert!(matches!(keys.check(&key("a"), 8, now), Seen::Reused));
        // Past the window: forgotten.
        assert!(matches!(keys.check(&key("a"), 7, now + window), Seen::New));
        // Past the capacity: the oldest goes first.
        keys.remember(key("b"), 1, id(2), now, window);
        keys.remember(key("c"), 1, id(3), now, window);
        keys.remember(key("d"), 1, id(4), now, window);
        assert!(matches!(keys.check(&key("b"), 1, now), Seen::New));
        assert!(matches!(keys.check(&key("d"), 1, now), Seen::Repeat(_)));
    }
}
