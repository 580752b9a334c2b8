//! Response bodies out: JSON string escaping with the service's rules.
//!
//! [`write_escaped`] appends a string with RFC 8259's escapes plus `<`, `>`, `&`,
//! U+2028 and U+2029 as `\uXXXX`, so a body is safe to embed in HTML (the same set
//! Go's `encoding/json` escapes). All other non-ASCII characters are written as UTF-8.

use crate::arena::Sink;
use crate::ids::hex::DIGITS as HEX;

/// For each ASCII byte, the escape it needs: 0 for none, `u` for `\u00XX`, or the
/// character after the backslash for the short forms.
static ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'<' as usize] = b'u';
    t[b'>' as usize] = b'u';
    t[b'&' as usize] = b'u';
    t
};

/// True if `byte` starts something [`write_escaped`] must rewrite.
#[inline]
fn needs_attention(byte: u8) -> bool {
    // 0xE2 leads U+2028/U+2029 in UTF-8; every other byte >= 0x80 is copied as is.
    (byte < 0x80 && ESCAPE[byte as usize] != 0) || byte == 0xE2
}

/// The largest number of bytes [`write_escaped`] can produce for `s`: six per
/// escaped byte (`\u003c`), which also covers U+2028 (three bytes become six).
pub fn max_escaped_len(s: &str) -> usize {
    s.len() * 6
}

/// Appends `s` to `out` as the inside of a JSON string, HTML-safe.
pub fn write_escaped(out: &mut impl Sink, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !needs_attention(b) {
            i += 1;
            continue;
        }
        if b == 0xE2 {
            // U+2028 is E2 80 A8, U+2029 is E2 80 A9; `s` is valid UTF-8, so a lead
            // byte 0xE2 is always followed by two continuation bytes.
            let tail = (bytes.get(i + 1), bytes.get(i + 2));
            if let (Some(0x80), Some(&last @ (0xA8 | 0xA9))) = tail {
                out.put(&bytes[start..i]);
                out.put(if last == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                i += 3;
                start = i;
            } else {
                i += 1;
            }
            continue;
        }
        out.put(&bytes[start..i]);
        match ESCAPE[b as usize] {
            b'u' => out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xF) as usize],
            ]),
            short => out.put(&[b'\\', short]),
        }
        i += 1;
        start = i;
    }
    out.put(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_per_the_rules() {
        assert_eq!(escaped("John"), "John");
        assert_eq!(escaped("a\"b\\c"), r#"a\"b\\c"#);
        assert_eq!(escaped("<&>"), r"\u003c\u0026\u003e");
        assert_eq!(escaped("\u{2028}\u{2029}"), r"\u2028\u2029");
        assert_eq!(escaped("\n\r\t\u{8}\u{c}\u{1}"), r"\n\r\t\b\f\u0001");
        assert_eq!(
            escaped("é日本😀\u{2027}\u{202a}"),
            "é日本😀\u{2027}\u{202a}"
        );
    }

    #[test]
    fn escaped_len_bound_holds() {
        for s in ["<<<<", "\u{2028}", "\u{1}\u{1}", "日本"] {
            assert!(escaped(s).len() <= max_escaped_len(s));
        }
    }
}
