//! Property tests: the renderer always produces JSON that decodes to the greeting
//! and never contains raw HTML-significant characters; the simd-json parser agrees
//! with serde_json on which bodies are valid and on the name it extracts.

use greeting_service::domain::greet::{self, GreetError, Name};
use greeting_service::json::parse::{self as json, JsonError, NameField};
use proptest::prelude::*;
use serde_json::Value;

/// What serde_json says the body's `name` is (duplicate keys: last wins).
fn reference(body: &[u8]) -> Result<Option<Result<String, &'static str>>, ()> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ())?;
    let Value::Object(map) = v else {
        return Ok(None);
    };
    Ok(Some(match map.get("name") {
        None => Err("missing"),
        Some(Value::Null) => Err("null"),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("not a string"),
    }))
}

type Parser = fn(&[u8]) -> Result<NameField<'_>, JsonError>;

/// Every parsing path, each on every body whatever its size, and the dispatcher
/// that picks one (with the scan for the simple shape in front).
const PATHS: [(&str, Parser); 3] = [
    ("simd-json", |b| json::name_of_simd(b)),
    ("serde_json", json::name_of_serde),
    ("name_of", json::name_of),
];

fn ours(path: Parser, body: &[u8]) -> Result<Option<Result<String, &'static str>>, ()> {
    match path(body) {
        Ok(NameField::Str(s)) => Ok(Some(Ok(s.into_owned()))),
        Ok(NameField::Missing) => Ok(Some(Err("missing"))),
        Ok(NameField::Null) => Ok(Some(Err("null"))),
        Ok(NameField::NotString) => Ok(Some(Err("not a string"))),
        Err(JsonError::NotObject) => Ok(None),
        Err(_) => Err(()),
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (prop_oneof![Just("name".to_owned()), any::<String>()], inner),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Valid documents (serialized values, sometimes pretty or with a forced `name`)
/// and broken ones (truncated or with a byte replaced).
fn doc() -> impl Strategy<Value = Vec<u8>> {
    (json_value(), any::<Option<String>>(), any::<bool>()).prop_map(|(v, name, pretty)| {
        let v = match (v, name) {
            (Value::Object(mut m), Some(n)) => {
                m.insert("name".into(), Value::String(n));
                Value::Object(m)
            }
            (v, _) => v,
        };
        if pretty {
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            serde_json::to_vec(&v).unwrap()
        }
    })
}

/// JSON white space, sometimes none.
fn ws() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just(' '), Just('\t'), Just('\n'), Just('\r')],
        0..3,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Bodies of (nearly) the shape clients send, `{"name":"..."}`, with white space
/// around the tokens and any bytes inside the string: quotes, backslashes,
/// control bytes and invalid UTF-8 included.
fn simple() -> impl Strategy<Value = Vec<u8>> {
    let inner = prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    (prop::collection::vec(ws(), 6), inner).prop_map(|(w, inner)| {
        let mut out = format!("{}{{{}\"name\"{}:{}\"", w[0], w[1], w[2], w[3]).into_bytes();
        out.extend_from_slice(&inner);
        out.extend_from_slice(format!("\"{}}}{}", w[4], w[5]).as_bytes());
        out
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => simple(),
        4 => doc(),
        1 => (doc(), any::<prop::sample::Index>()).prop_map(|(d, i)| {
            let cut = i.index(d.len() + 1);
            d[..cut].to_vec()
        }),
        1 => (doc(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut d, i, b)| {
            if !d.is_empty() {
                let at = i.index(d.len());
                d[at] = b;
            }
            d
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rendered_greeting_round_trips_and_is_html_safe(name in any::<String>()) {
        let out = greet::render_str(&name);
        let text = std::str::from_utf8(&out).unwrap();
        let v: Value = serde_json::from_str(text).unwrap();
        prop_assert_eq!(v["message"].as_str().unwrap(), format!("Hello, {name}!"));
        prop_assert_eq!(v.as_object().unwrap().len(), 1);
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            prop_assert!(!text.contains(bad));
        }
        prop_assert!(!text.chars().any(|c| (c as u32) < 0x20));
    }

    #[test]
    fn both_parsers_agree_with_serde_json_value(body in body()) {
        for (name, path) in PATHS {
            prop_assert_eq!(
                ours(path, &body),
                reference(&body),
                "{} on {:?}",
                name,
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn greet_never_panics_and_succeeds_exactly_for_valid_names(body in body()) {
        let result = greet::greet(&body, 256);
        match reference(&body) {
            Ok(Some(Ok(name))) => match Name::parse(&name, 256) {
                Ok(n) => {
                    let out = result.unwrap();
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    prop_assert_eq!(v["message"].as_str().unwrap(), format!("Hello, {}!", n.as_str()));
                }
                Err(e) => prop_assert_eq!(result.unwrap_err(), e),
            },
            Ok(Some(Err(_))) | Ok(None) | Err(()) => prop_assert!(result.is_err()),
        }
    }

    #[test]
    fn valid_names_are_trimmed_bounded_and_control_free(raw in any::<String>()) {
        match Name::parse(&raw, 256) {
            Ok(n) => {
                let s = n.as_str();
                prop_assert_eq!(s, raw.trim());
                prop_assert!((1..=256).contains(&s.chars().count()));
                prop_assert!(!s.chars().any(|c| c.is_control()));
            }
            Err(GreetError::NameEmpty) => prop_assert!(raw.trim().is_empty()),
            Err(GreetError::NameTooLong(256)) => prop_assert!(raw.trim().chars().count() > 256),
            Err(GreetError::NameControl) => prop_assert!(raw.trim().chars().any(|c| c.is_control())),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }
}
