//! The JSON form of a publish (feature `json`): `{"event": <name>, "data": <value>}`.

/// The event name (if any) and the data of a JSON body `{"event": <name>, "data": <value>}`:
/// a string `data` is the text, any other value its compact JSON (members in their order,
/// numbers as written), a missing one empty data. Other members are ignored. `Err`: why the
/// body is not that object, for the client.
pub(super) fn event(body: &[u8]) -> Result<(Option<String>, String), String> {
    let parsed: Published = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not the JSON object {{\"event\": …, \"data\": …}}: {error}"))?;
    let data = match parsed.data {
        None => String::new(),
        Some(raw) if raw.get().starts_with('"') => serde_json::from_str::<String>(raw.get())
            .map_err(|error| format!("`data` is not a valid JSON string: {error}"))?,
        Some(raw) => compact(raw.get()),
    };
    Ok((parsed.event, data))
}

/// `{"event": …, "data": …}` as sent.
struct Published {
    event: Option<String>,
    data: Option<Box<serde_json::value::RawValue>>,
}

impl<'de> serde::Deserialize<'de> for Published {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PublishedVisitor)
    }
}

struct PublishedVisitor;

impl<'de> serde::de::Visitor<'de> for PublishedVisitor {
    type Value = Published;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with an optional \"event\" name and the \"data\"")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Published, A::Error> {
        use serde::de::Error;
        let mut published = Published {
            event: None,
            data: None,
        };
        while let Some(member) = map.next_key::<String>()? {
            match member.as_str() {
                "event" if published.event.is_some() => return Err(A::Error::duplicate_field("event")),
                "event" => published.event = map.next_value::<Option<String>>()?,
                "data" if published.data.is_some() => return Err(A::Error::duplicate_field("data")),
                "data" => published.data = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(published)
    }
}

/// Valid JSON text without the whitespace between its tokens.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_give_their_name_and_data() {
        let event = |body: &str| event(body.as_bytes());
        assert_eq!(
            event(r#"{"event":"a","data":"x\ny"}"#).unwrap(),
            (Some("a".into()), "x\ny".into())
        );
        assert_eq!(
            event(r#"{"data": {"b": [1, 2.50, "c d"], "a": null}}"#)
                .unwrap()
                .1,
            r#"{"b":[1,2.50,"c d"],"a":null}"#
        );
        assert_eq!(
            event(r#"{"data": 12, "other": {"x": 1}, "event": null}"#).unwrap(),
            (None, "12".into())
        );
        assert_eq!(event("{}").unwrap(), (None, String::new()));
        assert_eq!(event(r#"{"data":" \" { "}"#).unwrap().1, r#" " { "#);
        for bad in [
            "",
            "[]",
            "\"x\"",
            "{",
            r#"{"event": 1}"#,
            r#"{"data": 1, "data": 2}"#,
            r#"{"data": "\ud800"}"#,
            "{} x",
        ] {
            assert!(event(bad).is_err(), "{bad}");
        }
    }
}
