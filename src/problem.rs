//! RFC 9457 problem details: the one place where an error becomes a response.
//!
//! Every error the service sends is
//! `{"type":"about:blank","title":"<reason phrase>","status":<code>,"detail":"<rule>"}`
//! with `Content-Type: application/problem+json`. `detail` names the rule that failed
//! and is always written through the JSON escaper, so it can never break the body.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::arena::{self, Sink};

use crate::greet::GreetError;
use crate::json;
use crate::routes::{Body, Response};

pub static PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// An error response waiting to be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    detail: std::borrow::Cow<'static, str>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The JSON body, written into the thread's output buffer.
    pub fn body(&self) -> Bytes {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let max = 80 + json::max_escaped_len(title) + json::max_escaped_len(&self.detail);
        arena::write(max, |out| {
            out.put(br#"{"type":"about:blank","title":""#);
            json::write_escaped(out, title);
            out.put(br#"","status":"#);
            // A status code is always three digits.
            let code = self.status.as_u16();
            out.put(&[
                b'0' + (code / 100) as u8,
                b'0' + (code / 10 % 10) as u8,
                b'0' + (code % 10) as u8,
            ]);
            out.put(br#","detail":""#);
            json::write_escaped(out, &self.detail);
            out.put(br#""}"#);
        })
    }

    /// The full response; the server adds the headers every response carries.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::new(self.body()));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, PROBLEM_JSON.clone());
        response
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no route for this path")
    }

    /// 405; the caller adds `Allow`.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method not allowed; use {allow}"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {limit} bytes"),
        )
    }

    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request body was not received in time",
        )
    }

    pub fn bad_body() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "request body could not be read")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<GreetError> for Problem {
    fn from(e: GreetError) -> Self {
        // Most details are fixed text: borrow it instead of formatting a String.
        let detail: std::borrow::Cow<'static, str> = match e.static_detail() {
            Some(text) => text.into(),
            None => {
                // One allocation of the right size, not a String grown while writing.
                let mut text = String::with_capacity(48);
                let _ = write!(text, "{e}");
                text.into()
            }
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
    fn static_details_match_the_display_text() {
        use crate::json::JsonError;
        for e in [
            GreetError::NameMissing,
            GreetError::NameNull,
            GreetError::NameNotString,
            GreetError::NameEmpty,
            GreetError::NameControl,
            GreetError::Json(JsonError::InvalidUtf8),
            GreetError::Json(JsonError::Empty),
            GreetError::Json(JsonError::NotObject),
        ] {
            assert_eq!(e.static_detail(), Some(e.to_string().as_str()));
        }
        assert_eq!(GreetError::NameTooLong(3).static_detail(), None);
        assert_eq!(GreetError::Json(JsonError::Syntax(1)).static_detail(), None);
    }

    #[test]
    fn detail_is_escaped() {
        let p = Problem::new(StatusCode::BAD_REQUEST, "a \"quoted\" <tag>");
        let v: serde_json::Value = serde_json::from_slice(&p.body()).unwrap();
        assert_eq!(v["detail"], "a \"quoted\" <tag>");
        assert_eq!(v["status"], 400);
        assert_eq!(v["title"], "Bad Request");
    }
}
