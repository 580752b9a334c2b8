//! RFC 9457 problem details: the one place where an error becomes a response.
//!
//! Every error the service sends is
//! `{"type":"about:blank","title":"<reason phrase>","status":<code>,"detail":"<rule>"}`
//! with `Content-Type: application/problem+json`. `detail` names the rule that failed,
//! is fixed text with at most one number in it (a limit or a byte offset), so it never
//! echoes the input, and is written through the JSON escaper all the same.

use std::fmt;

use bytes::Bytes;
use http::StatusCode;

use crate::arena::{self, Sink};
use crate::domain::greet::GreetError;
use crate::handler::{Answer, Kind};
use crate::json::{self, JsonError};

/// An error response waiting to be rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    detail: Detail,
}

/// The `detail` text: fixed, or fixed around one number. Never a `String`, so an
/// error response allocates no more than a success does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Text(&'static str),
    /// `before`, then `number` in decimal, then `after`.
    Number {
        before: &'static str,
        number: usize,
        after: &'static str,
    },
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Text(text) => f.write_str(text),
            Self::Number {
                before,
                number,
                after,
            } => write!(f, "{before}{number}{after}"),
        }
    }
}

/// `n` in decimal without allocating; returns the buffer and where the digits start.
fn decimal(mut n: usize) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return (digits, start);
        }
    }
}

impl Problem {
    pub const fn new(status: StatusCode, detail: Detail) -> Self {
        Self { status, detail }
    }

    const fn text(status: StatusCode, text: &'static str) -> Self {
        Self::new(status, Detail::Text(text))
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> Detail {
        self.detail
    }

    /// The JSON body, written into the thread's output buffer.
    pub fn body(&self) -> Bytes {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let detail_len = match self.detail {
            Detail::Text(text) => json::max_escaped_len(text),
            Detail::Number { before, after, .. } => {
                json::max_escaped_len(before) + 20 + json::max_escaped_len(after)
            }
        };
        arena::write(80 + json::max_escaped_len(title) + detail_len, |out| {
            out.put(br#"{"type":"about:blank","title":""#);
            json::write_escaped(out, title);
            out.put(br#"","status":"#);
            out.put(self.status.as_str().as_bytes());
            out.put(br#","detail":""#);
            match self.detail {
                Detail::Text(text) => json::write_escaped(out, text),
                Detail::Number {
                    before,
                    number,
                    after,
                } => {
                    json::write_escaped(out, before);
                    let (digits, start) = decimal(number);
                    out.put(&digits[start..]);
                    json::write_escaped(out, after);
                }
            }
            out.put(br#""}"#);
        })
    }

    /// The answer: the middleware adds the headers every response carries.
    pub fn into_answer(self) -> Answer {
        Answer::new(self.status, Kind::Problem, self.body())
    }

    pub const fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "no route for this path")
    }

    /// 405 for `/greet`; the caller adds `Allow: POST`.
    pub const fn post_only() -> Self {
        Self::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; use POST",
        )
    }

    /// 405 for the probes and `/metrics`; the caller adds `Allow: GET, HEAD`.
    pub const fn get_only() -> Self {
        Self::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; use GET or HEAD",
        )
    }

    pub const fn unsupported_media_type() -> Self {
        Self::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )
    }

    pub const fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Detail::Number {
                before: "body is larger than ",
                number: limit,
                after: " bytes",
            },
        )
    }

    pub const fn body_timeout() -> Self {
        Self::text(
            StatusCode::REQUEST_TIMEOUT,
            "request body was not received in time",
        )
    }

    /// 503: the process holds as much room for arriving bodies as its memory
    /// budget allows; the caller adds `Retry-After`.
    pub const fn busy() -> Self {
        Self::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at its memory budget for request bodies; retry shortly",
        )
    }

    pub const fn bad_body() -> Self {
        Self::text(StatusCode::BAD_REQUEST, "request body could not be read")
    }

    pub const fn internal() -> Self {
        Self::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<GreetError> for Problem {
    /// The same words as the error's `Display` (a test keeps them equal), without
    /// formatting a `String`.
    fn from(e: GreetError) -> Self {
        let detail = match e {
            GreetError::Json(JsonError::InvalidUtf8) => Detail::Text("body is not valid UTF-8"),
            GreetError::Json(JsonError::Empty) => {
                Detail::Text("body is empty; expected a JSON object")
            }
            GreetError::Json(JsonError::NotObject) => Detail::Text("body must be a JSON object"),
            GreetError::Json(JsonError::Syntax(at)) => Detail::Number {
                before: "invalid JSON at byte ",
                number: at,
                after: "",
            },
            GreetError::NameMissing => Detail::Text("name is required"),
            GreetError::NameNull => Detail::Text("name must not be null"),
            GreetError::NameNotString => Detail::Text("name must be a string"),
            GreetError::NameEmpty => Detail::Text("name must not be empty"),
            GreetError::NameTooLong(max) => Detail::Number {
                before: "name is longer than ",
                number: max,
                after: " characters",
            },
            GreetError::NameControl => Detail::Text("name must not contain control characters"),
        };
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_body() {
        let p = Problem::from(GreetError::NameMissing);
        assert_eq!(
            String::from_utf8(p.body().to_vec()).unwrap(),
            r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"name is required"}"#
        );
    }

    #[test]
    fn details_match_the_error_text() {
        for e in [
            GreetError::NameMissing,
            GreetError::NameNull,
            GreetError::NameNotString,
            GreetError::NameEmpty,
            GreetError::NameControl,
            GreetError::NameTooLong(256),
            GreetError::Json(JsonError::InvalidUtf8),
            GreetError::Json(JsonError::Empty),
            GreetError::Json(JsonError::NotObject),
            GreetError::Json(JsonError::Syntax(17)),
            GreetError::Json(JsonError::Syntax(0)),
        ] {
            let body: serde_json::Value = serde_json::from_slice(&Problem::from(e).body()).unwrap();
            assert_eq!(body["detail"], e.to_string());
            assert_eq!(Problem::from(e).detail().to_string(), e.to_string());
        }
    }

    #[test]
    fn numbers_render_in_decimal() {
        for n in [0, 7, 10, 16384, usize::MAX] {
            let body: serde_json::Value =
                serde_json::from_slice(&Problem::payload_too_large(n).body()).unwrap();
            assert_eq!(body["detail"], format!("body is larger than {n} bytes"));
            assert_eq!(body["status"], 413);
            assert_eq!(body["title"], "Payload Too Large");
        }
    }

    #[test]
    fn detail_is_escaped() {
        let p = Problem::new(StatusCode::BAD_REQUEST, Detail::Text("a \"quoted\" <tag>"));
        let v: serde_json::Value = serde_json::from_slice(&p.body()).unwrap();
        assert_eq!(v["detail"], "a \"quoted\" <tag>");
        assert_eq!(v["status"], 400);
        assert_eq!(v["title"], "Bad Request");
    }
}
