//! The properties of the `cursor_parsing` fuzz target (fuzz/), as proptest tests in the
//! normal suite: reading the cursor, the wait and the transport from request parts built
//! from arbitrary headers and query strings. (Event round trips, `LastEventId::parse_bytes`
//! and `MemoryLog::subscribe_now` with arbitrary cursors are in `tests/properties.rs`.)

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use proptest::prelude::*;
use tower_eventstream::{CursorError, LastEventId, RequestError, StreamConfig, StreamRequest, Transport};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Percent-encodes every byte.
fn encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,25}",
        "-[0-9]{1,5}",
        "[0-9a-f]{8}-[0-9]{1,4}",
        "[!-~]{0,20}".prop_map(|s| s.replace(['&', '#'], "")),
        "[a-zA-Z0-9%+._~=-]{0,16}",
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| encode_all(&b)),
        Just("%zz".to_owned()),
        Just("%+1".to_owned()),
        Just("%4".to_owned()),
        Just("sse".to_owned()),
        Just("poll".to_owned()),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    let key = prop_oneof![
        Just("lastEventId"),
        Just("timeout"),
        Just("transport"),
        Just("lasteventid"),
        Just("x"),
    ];
    prop::option::of(
        prop::collection::vec((key, prop::option::of(query_value())), 0..4).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key}={value}"),
                    None => key.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&")
        }),
    )
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[!-~]{1,30}".prop_map(String::into_bytes),
        "[0-9a-f]{8}-[0-9]{1,3}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..20),
        "[ -~]{0,300}".prop_map(String::into_bytes),
    ]
}

fn accept() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("text/event-stream".to_owned()),
        Just("application/json".to_owned()),
        Just("text/html, TEXT/EVENT-STREAM;q=0.9".to_owned()),
        Just("*/*".to_owned()),
        "[ -~]{0,30}",
    ])
}

/// Request parts, or `None` when `http` refuses the input (a header value with a control
/// character, a query that is not URI text): such requests never reach the service.
fn parts(headers: &[Vec<u8>], query: &Option<String>, accept: &Option<String>) -> Option<(Parts, usize)> {
    let mut builder = http::Request::builder();
    let mut added = 0;
    for value in headers {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            builder = builder.header("last-event-id", value);
            added += 1;
        }
    }
    if let Some(accept) = accept {
        let value = http::HeaderValue::from_str(accept).ok()?;
        builder = builder.header("accept", value);
    }
    let uri = match query {
        Some(query) => format!("/events?{query}"),
        None => "/events".to_owned(),
    };
    let request = builder.uri(uri).body(()).ok()?;
    Some((request.into_parts().0, added))
}

/// The first value of `name` in the query, decoded by [`model_decode`]. `Some(Err(()))` when
/// its percent-encoding is broken.
fn reference_param(query: Option<&str>, name: &str) -> Option<Result<Vec<u8>, ()>> {
    let value = query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })?;
    Some(model_decode(value))
}

/// The model of the crate's query decoding, written apart from it: the value is cut at every
/// `%`; each piece after the first must begin with two hex digits, the byte they name, and
/// `+` anywhere else is a space (as in `application/x-www-form-urlencoded`). Where that
/// standard keeps a `%` that is not followed by two hex digits, the crate refuses the value.
fn model_decode(value: &str) -> Result<Vec<u8>, ()> {
    let plus_as_space = |text: &str| text.replace('+', " ").into_bytes();
    let mut pieces = value.split('%');
    let mut out = plus_as_space(pieces.next().unwrap_or_default());
    for piece in pieces {
        let (hex, rest) = piece.split_at_checked(2).ok_or(())?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
        out.extend(plus_as_space(rest));
    }
    Ok(out)
}

#[test]
fn the_model_decoder_follows_the_documented_rules() {
    let cases: [(&str, Result<&[u8], ()>); 10] = [
        ("", Ok(b"")),
        ("plain-1", Ok(b"plain-1")),
        ("%41%62+c", Ok(b"Ab c")),
        ("a%2Bb%2bc", Ok(b"a+b+c")),
        ("%e2%9C%93", Ok("\u{2713}".as_bytes())),
        ("%zz", Err(())),
        ("%4", Err(())),
        ("ab%", Err(())),
        ("%+1", Err(())),
        ("%\u{e9}1", Err(())),
    ];
    for (encoded, decoded) in cases {
        assert_eq!(
            model_decode(encoded).as_deref().map_err(|_| ()),
            decoded,
            "{encoded:?}"
        );
    }
}

fn acceptable(bytes: &[u8], max_len: usize) -> bool {
    !bytes.is_empty() && bytes.len() <= max_len && bytes.iter().all(u8::is_ascii_graphic)
}

/// What `LastEventId::from_request_parts` must answer: `Ok(Some(bytes))`, `Ok(None)`, or
/// `Err(None)` for "refused, for any reason" / `Err(Some(e))` for that exact error.
fn expected_cursor(parts: &Parts, max_len: usize) -> Result<Option<Vec<u8>>, Option<CursorError>> {
    let mut values = parts.headers.get_all("last-event-id").iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(Some(CursorError::Repeated));
        }
        // An empty header (what an EventSource that has seen no id sends) counts as absent.
        if !value.is_empty() {
            return match acceptable(value.as_bytes(), max_len) {
                true => Ok(Some(value.as_bytes().to_vec())),
                false => Err(None),
            };
        }
    }
    match reference_param(parts.uri.query(), "lastEventId") {
        None => Ok(None),
        Some(Ok(value)) if value.is_empty() => Ok(None),
        Some(Ok(value)) if acceptable(&value, max_len) => Ok(Some(value)),
        Some(_) => Err(None),
    }
}

/// A cursor (visible ASCII) written in a query the way a client might: a letter, digit or
/// one of `-._~` as itself or as `%XX`, in upper- or lower-case hex; any other byte as `%XX`.
fn encoded_cursor() -> impl Strategy<Value = (Vec<u8>, String)> {
    prop::collection::vec((0x21u8..0x7f, 0u8..3), 1..40).prop_map(|bytes| {
        let cursor: Vec<u8> = bytes.iter().map(|(byte, _)| *byte).collect();
        let encoded = bytes
            .iter()
            .map(|&(byte, how)| match how {
                0 if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => char::from(byte).to_string(),
                0 | 1 => format!("%{byte:02X}"),
                _ => format!("%{byte:02x}"),
            })
            .collect();
        (cursor, encoded)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_percent_encoded_query_cursor_decodes_to_its_bytes((cursor, encoded) in encoded_cursor()) {
        let uri = format!("/events?lastEventId={encoded}");
        let parts = http::Request::builder().uri(&uri).body(()).expect("a valid URI").into_parts().0;
        let got = LastEventId::from_request_parts(&parts, 256);
        let got = got.map(|cursor| cursor.map(|c| c.as_str().as_bytes().to_vec()));
        prop_assert_eq!(got, Ok(Some(cursor)), "{}", uri);
    }

    #[test]
    fn the_cursor_of_a_request_is_the_single_header_else_the_strictly_decoded_query(
        headers in prop::collection::vec(header_value(), 0..3),
        query in query(),
        max_len in prop_oneof![Just(256usize), 0usize..64],
    ) {
        let Some((parts, _)) = parts(&headers, &query, &None) else {
            return Ok(());
        };
        let got = LastEventId::from_request_parts(&parts, max_len);
        match (expected_cursor(&parts, max_len), &got) {
            (Ok(None), Ok(None)) => {}
            (Ok(Some(bytes)), Ok(Some(cursor))) => {
                prop_assert_eq!(cursor.as_str().as_bytes(), &bytes[..]);
            }
            (Err(None), Err(error)) => prop_assert!(!error.to_string().is_empty()),
            (Err(Some(expected)), Err(error)) => prop_assert_eq!(&expected, error),
            (expected, got) => {
                prop_assert!(false, "{:?}: expected {:?}, got {:?}", parts, expected, got)
            }
        }
    }

    #[test]
    fn a_request_parses_to_the_documented_transport_cursor_and_clamped_wait(
        headers in prop::collection::vec(header_value(), 0..2),
        query in query(),
        accept in accept(),
        max_wait_ms in 0u64..100_000,
        head in any::<bool>(),
    ) {
        let Some((mut parts, _)) = parts(&headers, &query, &accept) else {
            return Ok(());
        };
        if head {
            parts.method = http::Method::HEAD;
        }
        let max_wait = Duration::from_millis(max_wait_ms);
        let config = Arc::new(StreamConfig::default().max_wait(max_wait));
        let got = StreamRequest::from_parts(&parts, config);
        let query = parts.uri.query();

        // The transport: the query overrides, else Accept decides.
        let transport = match reference_param(query, "transport") {
            Some(Ok(value)) if value == b"sse" => Ok(Transport::Sse),
            Some(Ok(value)) if value == b"poll" => Ok(Transport::LongPoll),
            Some(_) => Err(()),
            None => {
                let sse = parts.headers.get_all("accept").iter().any(|value| {
                    value.to_str().is_ok_and(|text| {
                        text.split(',').any(|item| {
                            item.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/event-stream")
                        })
                    })
                });
                Ok(if sse { Transport::Sse } else { Transport::LongPoll })
            }
        };
        // The wait: a whole number of milliseconds, clamped; absent means the maximum.
        let wait = match reference_param(query, "timeout") {
            None => Ok(max_wait),
            Some(Ok(raw)) if !raw.is_empty() && raw.len() <= 64 && raw.iter().all(u8::is_ascii_digit) => {
                let millis = std::str::from_utf8(&raw).unwrap().parse::<u64>().unwrap_or(u64::MAX);
                Ok(Duration::from_millis(millis).min(max_wait))
            }
            Some(_) => Err(()),
        };
        let cursor = expected_cursor(&parts, tower_eventstream::DEFAULT_MAX_CURSOR_LEN);

        match got {
            Ok(request) => {
                prop_assert_eq!(Ok(request.transport()), transport);
                prop_assert_eq!(Ok(request.wait()), wait);
                prop_assert!(request.wait() <= max_wait);
                let bytes = request.cursor().map(|c| c.as_str().as_bytes().to_vec());
                prop_assert_eq!(Ok(bytes), cursor.map_err(|_| ()));
            }
            Err(RequestError::Transport) => prop_assert!(transport.is_err()),
            Err(RequestError::Timeout) => {
                // Checked in this order: transport, cursor, wait.
                prop_assert!(transport.is_ok() && cursor.is_ok());
                prop_assert!(wait.is_err(), "timeout refused: {:?}", query);
            }
            Err(RequestError::Cursor(_)) => {
                prop_assert!(transport.is_ok());
                prop_assert!(cursor.is_err(), "cursor refused: {:?}", parts);
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
