//! Properties of the event encoding, the cursor parser and the memory log, checked on
//! generated input.

mod support;

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use support::sse::parse_sse;
use tower_eventstream::{
    CursorError, Delivery, Event, EventError, EventFeed, LastEventId, MemoryLog, MemorySubscription,
    ResumeOutcome, Subscription,
};

/// Text built from the pieces that matter to the SSE format (every line break, NUL,
/// spaces, colons, a BOM, multi-byte characters) and arbitrary characters.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\0".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        Just("é".to_owned()),
        Just("日本".to_owned()),
        Just("🦀".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("data: x".to_owned()),
        Just("id".to_owned()),
        "[a-z0-9]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

fn first_forbidden(text: &str) -> Option<char> {
    text.chars().find(|c| matches!(c, '\r' | '\n' | '\0'))
}

/// What a client reassembles from the data: every CRLF and lone CR becomes LF.
fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_event_is_refused_or_round_trips_through_a_spec_parser(
        id in prop::option::of(text()),
        name in prop::option::of(text()),
        data in prop::option::of(text()),
        retry in prop::option::of(any::<u64>()),
        comment in prop::option::of(text()),
    ) {
        let mut event = match &data {
            Some(data) => Event::new(data),
            None => Event::empty(),
        };
        if let Some(data) = &data {
            prop_assert_eq!(event.data(), normalised(data));
        }

        let mut id_set = None;
        if let Some(id) = &id {
            match (event.clone().with_id(id), first_forbidden(id)) {
                (Ok(with_id), None) => {
                    event = with_id;
                    id_set = Some(id.clone());
                }
                (Err(error), Some(found)) => prop_assert_eq!(error, EventError::InvalidId { found }),
                (result, forbidden) => {
                    prop_assert!(false, "id {:?}: {:?}, first forbidden character {:?}", id, result, forbidden)
                }
            }
        }

        let mut name_set = None;
        if let Some(name) = &name {
            let expected = if name.is_empty() {
                Some(EventError::EmptyName)
            } else {
                first_forbidden(name).map(|found| EventError::InvalidName { found })
            };
            match (event.clone().with_name(name), expected) {
                (Ok(with_name), None) => {
                    event = with_name;
                    name_set = Some(name.clone());
                }
                (Err(error), Some(expected)) => prop_assert_eq!(error, expected),
                (result, expected) => {
                    prop_assert!(false, "name {:?}: {:?}, expected {:?}", name, result, expected)
                }
            }
        }

        if let Some(millis) = retry {
            event = event.with_retry(Duration::from_millis(millis));
        }
        if let Some(comment) = &comment {
            event = event.with_comment(comment);
        }

        let wire = event.to_bytes();
        // It ends with the blank line that dispatches it (alone, for an empty event).
        prop_assert!(wire.ends_with(b"\n\n") || &wire[..] == b"\n", "{:?}", wire);
        let parsed = parse_sse(wire.clone());
        match &data {
            // Without data there is nothing to dispatch.
            None => prop_assert!(parsed.is_empty(), "{:?} dispatched {:?}", wire, parsed),
            Some(data) => {
                prop_assert_eq!(parsed.len(), 1, "{:?} dispatched {:?}", wire, parsed);
                let got = &parsed[0];
                prop_assert_eq!(&got.data, &normalised(data), "wire {:?}", wire);
                prop_assert_eq!(&got.event, name_set.as_deref().unwrap_or("message"), "wire {:?}", wire);
                prop_assert_eq!(&got.id, id_set.as_deref().unwrap_or(""), "wire {:?}", wire);
                prop_assert_eq!(got.retry, retry.map(Duration::from_millis), "wire {:?}", wire);
            }
        }
    }

    #[test]
    fn last_event_id_parse_never_panics_and_accepts_exactly_short_visible_ascii(
        raw in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(0x20u8..0x80, 0..300),
            "[!-~]{0,300}".prop_map(String::into_bytes),
        ],
        max_len in 0usize..400,
    ) {
        let result = LastEventId::parse_bytes(&raw, max_len);
        let acceptable = !raw.is_empty() && raw.len() <= max_len && raw.iter().all(u8::is_ascii_graphic);
        match result {
            Ok(cursor) => {
                prop_assert!(acceptable, "accepted {:?}", raw);
                prop_assert_eq!(cursor.as_str().as_bytes(), &raw[..]);
            }
            Err(error) => {
                prop_assert!(!acceptable, "refused {:?}: {}", raw, error);
                prop_assert!(!error.to_string().is_empty());
            }
        }
        if let Ok(text) = std::str::from_utf8(&raw) {
            let by_text = LastEventId::parse(text);
            let acceptable_by_default =
                !raw.is_empty() && raw.len() <= 256 && raw.iter().all(u8::is_ascii_graphic);
            prop_assert_eq!(by_text.is_ok(), acceptable_by_default);
        }
    }

    #[test]
    fn subscribing_with_any_cursor_is_ok_or_a_cursor_error_and_resumes_without_loss(
        history in 1usize..8,
        appended in 0u64..20,
        cursor in cursor_spec(),
    ) {
        let log = MemoryLog::builder().history(history).build();
        for seq in 1..=appended {
            log.push(Event::new(seq.to_string())).unwrap();
        }
        let first_held = appended.saturating_sub(history as u64) + 1;
        let text = cursor.render(log.epoch());
        let Ok(cursor) = LastEventId::parse(&text) else {
            return Ok(());
        };
        let expected = model(cursor.as_str(), log.epoch(), appended, first_held);
        match (log.subscribe_now(Some(&cursor)), expected) {
            (Err(error), None) => {
                prop_assert!(matches!(error, CursorError::Unknown { .. }), "{:?}", error);
                prop_assert_eq!(log.subscriber_count(), 0);
            }
            (Ok(mut subscription), Some(expected)) => {
                prop_assert_eq!(log.subscriber_count(), 1);
                let (outcome, from) = match expected {
                    Expected::Resumed { after } => (ResumeOutcome::Resumed, after + 1),
                    Expected::Gap => (ResumeOutcome::Gap, first_held),
                };
                prop_assert_eq!(subscription.outcome(), outcome);
                let got = drain(&mut subscription);
                let mut want: Vec<String> = (from..=appended).map(|seq| seq.to_string()).collect();
                if outcome == ResumeOutcome::Gap {
                    want.insert(0, "<reset>".to_owned());
                }
                prop_assert_eq!(data_of(&got), want, "cursor {}", cursor);

                // A reset's position resumes at the retained events, without a second reset.
                if let Some(Delivery::Gap(Some(position))) = got.first() {
                    let resumed = log.subscribe_now(Some(&LastEventId::parse(position.as_str()).unwrap()));
                    let mut resumed = resumed.expect("a reset position is a valid cursor");
                    prop_assert_eq!(resumed.outcome(), ResumeOutcome::Resumed);
                    let want: Vec<String> = (first_held..=appended).map(|seq| seq.to_string()).collect();
                    prop_assert_eq!(data_of(&drain(&mut resumed)), want);
                }

                // Live events follow without loss (read as they come: the history may hold one).
                for live in ["live 1", "live 2"] {
                    log.push(Event::new(live)).unwrap();
                    prop_assert_eq!(data_of(&drain(&mut subscription)), [live]);
                }
                drop(subscription);
            }
            (result, expected) => {
                prop_assert!(false, "cursor {}: got {:?}, expected {:?}", cursor, result.map(|s| s.outcome()), expected)
            }
        }
        prop_assert_eq!(log.subscriber_count(), 0);
    }

    #[test]
    fn a_subscriber_that_falls_behind_gets_a_reset_whose_position_resumes_without_loss(
        history in 1usize..6,
        before in 0u64..4,
        behind in 1u64..20,
    ) {
        let log = MemoryLog::builder().history(history).build();
        for seq in 1..=before {
            log.push(Event::new(seq.to_string())).unwrap();
        }
        let mut subscription = log.subscribe_now(None).unwrap();
        prop_assert!(drain(&mut subscription).is_empty());
        let appended = before + history as u64 + behind;
        for seq in before + 1..=appended {
            log.push(Event::new(seq.to_string())).unwrap();
        }
        let first_held = appended - history as u64 + 1;
        let got = drain(&mut subscription);
        let mut want: Vec<String> = (first_held..=appended).map(|seq| seq.to_string()).collect();
        want.insert(0, "<reset>".to_owned());
        prop_assert_eq!(data_of(&got), want);

        // The reset's position is "just before the events that follow": a client that
        // reconnects from it gets every retained event.
        let Some(Delivery::Gap(Some(position))) = got.first() else {
            return Err(TestCaseError::fail("the reset carries a position"));
        };
        let mut resumed = log
            .subscribe_now(Some(&LastEventId::parse(position.as_str()).unwrap()))
            .unwrap();
        let want: Vec<String> = (first_held..=appended).map(|seq| seq.to_string()).collect();
        prop_assert_eq!(data_of(&drain(&mut resumed)), want, "resuming from the reset position {}", position);
    }
}

/// A cursor to try; the log's epoch is only known once the log exists.
#[derive(Debug, Clone)]
enum CursorSpec {
    /// `<this log's epoch>-<seq>`
    Own(String),
    /// `<epoch>-<seq>` with another epoch.
    Other(String, String),
    /// Anything.
    Raw(String),
}

impl CursorSpec {
    fn render(&self, epoch: &str) -> String {
        match self {
            CursorSpec::Own(seq) => format!("{epoch}-{seq}"),
            CursorSpec::Other(epoch, seq) => format!("{epoch}-{seq}"),
            CursorSpec::Raw(text) => text.clone(),
        }
    }
}

fn cursor_spec() -> impl Strategy<Value = CursorSpec> {
    let seq = prop_oneof![
        (0u64..25).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{0,24}",
        "[0-9a-z+-]{0,6}",
    ];
    prop_oneof![
        4 => seq.clone().prop_map(CursorSpec::Own),
        2 => ("[0-9a-f]{8}", seq.clone()).prop_map(|(epoch, seq)| CursorSpec::Other(epoch, seq)),
        1 => ("[0-9a-fA-Z]{0,10}", seq).prop_map(|(epoch, seq)| CursorSpec::Other(epoch, seq)),
        1 => "[!-~]{0,30}".prop_map(CursorSpec::Raw),
        1 => text().prop_map(CursorSpec::Raw),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Resumed { after: u64 },
    Gap,
}

/// What the documented id format (`<8 lowercase hex digits>-<decimal sequence>`) implies for
/// a log of `appended` events holding those from `first_held` on; `None`: refused.
fn model(cursor: &str, epoch: &str, appended: u64, first_held: u64) -> Option<Expected> {
    let (cursor_epoch, seq) = cursor.split_once('-')?;
    let epoch_ok = cursor_epoch.len() == 8
        && cursor_epoch
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    // Leading zeros are a spelling no instance issues.
    let canonical = seq.len() == 1 || !seq.starts_with('0');
    if !epoch_ok || seq.is_empty() || !canonical || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: u64 = seq.parse().ok()?;
    if cursor_epoch != epoch {
        return Some(Expected::Gap);
    }
    if seq > appended {
        return None;
    }
    Some(if seq + 1 < first_held {
        Expected::Gap
    } else {
        Expected::Resumed { after: seq }
    })
}

/// Everything the subscription delivers without waiting.
fn drain(subscription: &mut MemorySubscription) -> Vec<Delivery> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match Pin::new(&mut *subscription).poll_delivery(&mut cx) {
            Poll::Ready(Some(Ok(delivery))) => out.push(delivery),
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => panic!("a memory subscription never ends"),
            Poll::Pending => return out,
        }
    }
}

fn data_of(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| match delivery {
            Delivery::Event(event) => event.data().to_owned(),
            Delivery::Gap(_) => "<reset>".to_owned(),
            _ => "<checkpoint>".to_owned(),
        })
        .collect()
}
