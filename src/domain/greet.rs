//! The greeting itself: from a request body to the response body.
//!
//! `parse → validate → render`, with each step's failure a [`GreetError`] variant that
//! [`crate::domain::problem`] turns into a 400. A [`Name`] can only be built by
//! [`Name::parse`], so holding one means the name rules were checked.

use bytes::Bytes;

use crate::arena::{self, Sink};
use crate::json::{self, JsonError, NameField};

/// A trimmed name of 1..=`max_chars` Unicode scalar values with no control characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a>(&'a str);

/// Every way a body can fail to yield a greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GreetError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("name is required")]
    NameMissing,
    #[error("name must not be null")]
    NameNull,
    #[error("name must be a string")]
    NameNotString,
    #[error("name must not be empty")]
    NameEmpty,
    #[error("name is longer than {0} characters")]
    NameTooLong(usize),
    #[error("name must not contain control characters")]
    NameControl,
}

/// U+0000–U+001F and U+007F–U+009F, the control characters the rules refuse.
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

impl<'a> Name<'a> {
    /// Trims white space (Unicode `White_Space`) and checks length and characters.
    pub fn parse(raw: &'a str, max_chars: usize) -> Result<Self, GreetError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(GreetError::NameEmpty);
        }
        // A byte length within the limit bounds the char count too: skip the count
        // for the common short name.
        if name.len() > max_chars && name.chars().count() > max_chars {
            return Err(GreetError::NameTooLong(max_chars));
        }
        if name.chars().any(is_control) {
            return Err(GreetError::NameControl);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

const PREFIX: &[u8] = br#"{"message":"Hello, "#;
const SUFFIX: &[u8] = br#"!"}"#;

/// Writes `{"message":"Hello, <name>!"}` straight into the thread's output buffer
/// (see [`crate::arena`]): no allocation of its own.
pub fn render(name: Name<'_>) -> Bytes {
    arena::write(max_rendered_len(name.0), |out| {
        out.put(PREFIX);
        json::write_escaped(out, name.0);
        out.put(SUFFIX);
    })
}

/// The longest greeting `name` can render to (every byte escaped): the room the
/// output buffer reserves, so writing never reallocates.
fn max_rendered_len(name: &str) -> usize {
    PREFIX.len() + json::max_escaped_len(name) + SUFFIX.len()
}

/// Renders any string without validation (for tests and benches of the escaper).
pub fn render_str(name: &str) -> Bytes {
    render(Name(name))
}

/// The whole body-to-body step: parse, validate, render.
pub fn greet(body: &[u8], max_chars: usize) -> Result<Bytes, GreetError> {
    let raw = match json::name_of(body)? {
        NameField::Str(raw) => raw,
        NameField::Missing => return Err(GreetError::NameMissing),
        NameField::Null => return Err(GreetError::NameNull),
        NameField::NotString => return Err(GreetError::NameNotString),
    };
    Ok(render(Name::parse(&raw, max_chars)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> String {
        String::from_utf8(greet(body.as_bytes(), 256).unwrap().to_vec()).unwrap()
    }

    fn err(body: &str) -> GreetError {
        greet(body.as_bytes(), 256).unwrap_err()
    }

    #[test]
    fn greets() {
        assert_eq!(ok(r#"{"name":"John"}"#), r#"{"message":"Hello, John!"}"#);
        assert_eq!(
            ok(r#"{"name":"  John \n"}"#),
            r#"{"message":"Hello, John!"}"#
        );
        assert_eq!(
            ok(r#"{"name":"<b>"}"#),
            r#"{"message":"Hello, \u003cb\u003e!"}"#
        );
        assert_eq!(ok(r#"{"name":"日本"}"#), r#"{"message":"Hello, 日本!"}"#);
    }

    #[test]
    fn validates() {
        assert_eq!(err("{}"), GreetError::NameMissing);
        assert_eq!(err(r#"{"name":null}"#), GreetError::NameNull);
        assert_eq!(err(r#"{"name":7}"#), GreetError::NameNotString);
        assert_eq!(err(r#"{"name":" \t "}"#), GreetError::NameEmpty);
        assert_eq!(err(r#"{"name":"a\u0000b"}"#), GreetError::NameControl);
        assert_eq!(err(r#"{"name":"a\u0085b"}"#), GreetError::NameControl);
        assert_eq!(err(r#"{"name":"a\u007fb"}"#), GreetError::NameControl);
        assert_eq!(err("[]"), GreetError::Json(JsonError::NotObject));
    }

    #[test]
    fn the_reserved_room_holds_the_worst_case_exactly() {
        // `<` escapes to `\u003c`, six bytes for one: the worst case fills the
        // room to the byte; anything else leaves some over.
        for name in ["<", "<<<<", "&>'", "John", "日本", "\u{2028}"] {
            let rendered = render_str(name).len();
            assert!(rendered <= max_rendered_len(name), "{name:?}");
        }
        let worst = "<".repeat(100);
        assert_eq!(render_str(&worst).len(), max_rendered_len(&worst));
    }

    #[test]
    fn length_counts_scalar_values_not_bytes() {
        let at_limit = format!(r#"{{"name":"{}"}}"#, "é".repeat(256));
        assert!(greet(at_limit.as_bytes(), 256).is_ok());
        let over = format!(r#"{{"name":"{}"}}"#, "é".repeat(257));
        assert_eq!(err(&over), GreetError::NameTooLong(256));
        let ascii_over = format!(r#"{{"name":"{}"}}"#, "a".repeat(257));
        assert_eq!(err(&ascii_over), GreetError::NameTooLong(256));
        assert_eq!(
            GreetError::NameTooLong(256).to_string(),
            "name is longer than 256 characters"
        );
    }
}
