//! W3C Trace Context (`traceparent`): keep the caller's trace id, answer with a new
//! child span id, so our hop shows up in the caller's trace.
//!
//! `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; ids must be
//! lowercase hex and not all zeros; version `ff` is invalid. An invalid header is
//! ignored, as the specification asks.

use bytes::Bytes;
use http::HeaderValue;

use crate::ids::{hex, random};

/// A valid incoming `traceparent`, borrowed from the request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    trace_id: &'a str,
    parent_id: &'a str,
    flags: &'a str,
}

fn all_zeros(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

impl<'a> TraceParent<'a> {
    pub fn parse(value: &'a HeaderValue) -> Option<Self> {
        let s = value.to_str().ok()?;
        let mut parts = s.split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; later versions may append more.
        if version.len() != 2 || !hex::is_lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let valid = trace_id.len() == 32
            && parent_id.len() == 16
            && flags.len() == 2
            && hex::is_lower_hex(trace_id)
            && hex::is_lower_hex(parent_id)
            && hex::is_lower_hex(flags)
            && !all_zeros(trace_id)
            && !all_zeros(parent_id);
        valid.then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn trace_id(&self) -> &'a str {
        self.trace_id
    }

    /// The caller's span id: our span's parent.
    pub fn parent_id(&self) -> &'a str {
        self.parent_id
    }

    pub fn flags(&self) -> &'a str {
        self.flags
    }

    /// `00-<trace id>-<new span id>-<flags>` for the response.
    pub fn child(&self) -> HeaderValue {
        self.child_with(random::next_u64())
    }

    /// `00-<trace id>-<span_id>-<flags>`: our hop, with the span id our span has.
    pub fn child_with(&self, span_id: u64) -> HeaderValue {
        let mut out = Vec::with_capacity(55);
        out.extend_from_slice(b"00-");
        out.extend_from_slice(self.trace_id.as_bytes());
        out.push(b'-');
        out.extend_from_slice(&hex::u64_digits(span_id));
        out.push(b'-');
        out.extend_from_slice(self.flags.as_bytes());
        HeaderValue::from_maybe_shared(Bytes::from(out)).unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_makes_a_child() {
        let v = HeaderValue::from_static(VALID);
        let tp = TraceParent::parse(&v).unwrap();
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = tp.child();
        let child = child.to_str().unwrap();
        assert_eq!(child.len(), 55);
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(&child[36..52], "00f067aa0ba902b7");
        assert!(TraceParent::parse(&HeaderValue::from_str(child).unwrap()).is_some());
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(
                TraceParent::parse(&HeaderValue::from_str(bad).unwrap()).is_none(),
                "{bad}"
            );
        }
        let future = HeaderValue::from_static(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        );
        assert!(TraceParent::parse(&future).is_some());
    }
}
