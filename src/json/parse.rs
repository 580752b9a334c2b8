//! Request bodies in: the `name` member of a JSON object, found without building
//! the document.
//!
//! Bodies are parsed with simd-json's tape API into per-thread scratch space
//! (`Buffers`, the tape, and a padded copy of the body) that is reused for every
//! request, so the parse itself allocates nothing once a worker has warmed up.
//! simd-json unescapes strings in place into that buffer, so the `name` it finds is
//! copied out: the one allocation of that path. Small bodies without escapes go
//! through serde_json instead, and the shape nearly every client sends through one
//! scan (see [`name_of`]); both borrow the name from the body.

use std::borrow::Cow;
use std::cell::RefCell;

use simd_json::{Buffers, Node, StaticNode, Tape, INPUT_PADDING};

/// What a request body says about `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameField<'a> {
    /// The body is an object whose (last) `name` member is a string: borrowed from
    /// the body on the scan and serde_json paths (unless serde_json had to
    /// unescape it), owned on the simd-json path.
    Str(Cow<'a, str>),
    /// The body is an object without a `name` member.
    Missing,
    /// `name` is `null`.
    Null,
    /// `name` is a number, boolean, array or object.
    NotString,
}

/// Why a body could not be read as a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not UTF-8 at all: reported separately because "invalid JSON" would mislead.
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    /// Syntax error; the offset is the parser's best position for it.
    #[error("invalid JSON at byte {0}")]
    Syntax(usize),
    /// The body is empty (or only white space).
    #[error("body is empty; expected a JSON object")]
    Empty,
    /// Well-formed JSON, but the top-level value is not an object.
    #[error("body must be a JSON object")]
    NotObject,
}

/// Reusable per-thread parse state.
struct Scratch {
    buffers: Buffers,
    /// Kept with a `'static` lifetime only while empty; see [`Tape::reset`].
    tape: Option<Tape<'static>>,
    /// The body followed by `INPUT_PADDING` bytes, as `fill_tape_padded` requires.
    input: Vec<u8>,
}

impl Scratch {
    fn new() -> Self {
        Self {
            buffers: Buffers::new(1024),
            tape: Some(Tape::null().reset()),
            input: Vec::with_capacity(1024 + INPUT_PADDING),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Parses `body` and finds its `name` member.
///
/// Duplicate `name` members: the last one wins, as in `JSON.parse`, Go's
/// `encoding/json` and `serde_json::Value`.
///
/// Three paths, chosen by a look at the bytes (measured in `benches/json.rs`, see
/// the README):
/// - the shape nearly every client sends, `{"name":"..."}` with nothing else in the
///   object and no escape in the string, is recognised by one scan
///   ([`simple_name`]);
/// - other small bodies without escapes (up to [`SMALL_BODY`] bytes, no `\`) go
///   through serde_json: on them simd-json's fixed cost (SIMD stages, tape) is
///   larger than serde_json's whole parse even with reused buffers;
/// - everything else goes through simd-json, which is faster on strings with
///   escapes and on bodies with many members; there, as on serde_json's path
///   when it unescapes, the name is one allocation.
///
/// All paths accept and reject the same documents (the property tests check each
/// against serde_json's own `Value`).
pub fn name_of(body: &[u8]) -> Result<NameField<'_>, JsonError> {
    if let Some(name) = simple_name(body) {
        Ok(NameField::Str(Cow::Borrowed(name)))
    } else if body.len() <= SMALL_BODY && !body.contains(&b'\\') {
        name_of_serde(body)
    } else {
        name_of_simd(body)
    }
}

/// JSON's insignificant white space (RFC 8259 section 2).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The name of a body that is exactly `{"name":"<text>"}` (white space allowed
/// between tokens), where `<text>` has no backslash and no control byte, which
/// JSON forbids raw, and is valid UTF-8; `None` for anything else, which the full
/// parsers then decide on. A valid document of that shape needs no unescaping, so
/// the name borrows from the body.
pub fn simple_name(b: &[u8]) -> Option<&str> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i..i + 6)? != b"\"name\"" {
        return None;
    }
    i = skip_ws(b, i + 6);
    if b.get(i) != Some(&b':') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = b
        .get(start..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    let end = start + len;
    if b[end] != b'"' {
        return None;
    }
    i = skip_ws(b, end + 1);
    if b.get(i) != Some(&b'}') || skip_ws(b, i + 1) != b.len() {
        return None;
    }
    std::str::from_utf8(&b[start..end]).ok()
}

/// Bodies up to this size are parsed with serde_json (see [`name_of`]). Small
/// enough that no body at or under it can nest deeper than serde_json's recursion
/// limit (128), so both parsers refuse exactly the same documents.
pub const SMALL_BODY: usize = 128;

/// The simd-json path of [`name_of`], for any size. The name is unescaped into
/// this thread's scratch buffer, which the next parse reuses, so it is returned
/// owned.
pub fn name_of_simd(body: &[u8]) -> Result<NameField<'static>, JsonError> {
    // A re-entrant call (which the server never makes) gets fresh scratch space
    // instead of a `BorrowMutError` panic.
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => parse_into(&mut scratch, body),
        Err(_) => parse_into(&mut Scratch::new(), body),
    })
}

fn parse_into(scratch: &mut Scratch, body: &[u8]) -> Result<NameField<'static>, JsonError> {
    let Scratch {
        buffers,
        tape,
        input,
    } = scratch;
    input.clear();
    input.extend_from_slice(body);
    input.resize(body.len() + INPUT_PADDING, 0);

    let mut local: Tape<'_> = tape.take().unwrap_or_else(Tape::null).reset();
    let parsed = simd_json::fill_tape_padded(input, body.len(), buffers, &mut local);
    let result = match parsed {
        Ok(()) => find_name(&local.0),
        Err(e) => Err(classify_error(body, e.index())),
    };
    *tape = Some(local.reset());
    result
}

/// Turns simd-json's error into one a client can act on.
#[cold]
fn classify_error(body: &[u8], index: usize) -> JsonError {
    // simd-json validates UTF-8 over the whole input before it parses, so a body
    // with invalid UTF-8 anywhere is reported as such.
    if std::str::from_utf8(body).is_err() {
        return JsonError::InvalidUtf8;
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return JsonError::Empty;
    }
    // simd-json's index is where a stage noticed, not always where the error is
    // (a bad escape reports 0); serde_json's position is exact. Only bodies that
    // failed pay for the second look.
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => classify_serde_error(body, &e),
        Ok(_) => JsonError::Syntax(index.min(body.len())),
    }
}

/// Walks the top-level object on the tape; only the name found is copied.
fn find_name(tape: &[Node<'_>]) -> Result<NameField<'static>, JsonError> {
    let Some(Node::Object { len, .. }) = tape.first() else {
        return Err(JsonError::NotObject);
    };
    let mut found = None;
    let mut i = 1;
    for _ in 0..*len {
        let key = tape.get(i);
        let value = tape.get(i + 1);
        i += 1 + node_width(value);
        if let (Some(Node::String("name")), Some(value)) = (key, value) {
            found = Some(value);
        }
    }
    Ok(match found {
        None => NameField::Missing,
        Some(Node::String(s)) => NameField::Str(Cow::Owned((*s).to_owned())),
        Some(Node::Static(StaticNode::Null)) => NameField::Null,
        Some(_) => NameField::NotString,
    })
}

/// How many tape nodes a value occupies, so unknown members are skipped in O(1).
fn node_width(node: Option<&Node<'_>>) -> usize {
    match node {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        Some(_) => 1,
        None => 0,
    }
}

/// The serde_json path of [`name_of`], for any size. `name` is borrowed from
/// `body` unless it contains escapes, in which case serde_json unescapes it into
/// a `String` (only then does a parse allocate).
pub fn name_of_serde(body: &[u8]) -> Result<NameField<'_>, JsonError> {
    match serde_json::from_slice::<TopLevel<'_>>(body) {
        Ok(TopLevel::NotObject) => Err(JsonError::NotObject),
        Ok(TopLevel::Object(field)) => Ok(field),
        Err(e) => Err(classify_serde_error(body, &e)),
    }
}

#[cold]
fn classify_serde_error(body: &[u8], e: &serde_json::Error) -> JsonError {
    if std::str::from_utf8(body).is_err() {
        return JsonError::InvalidUtf8;
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return JsonError::Empty;
    }
    // serde_json reports a 1-based line and column; turn them into a byte offset.
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    JsonError::Syntax((line_start + e.column().saturating_sub(1)).min(body.len()))
}

/// What serde_json found at the top level.
enum TopLevel<'a> {
    Object(NameField<'a>),
    NotObject,
}

mod serde_impl {
    //! Visitors that walk a document without building it. Unknown members and
    //! non-object documents are skipped with [`Skip`], not serde's `Skip`:
    //! serde_json skips an ignored number without checking its range, while
    //! simd-json (and serde_json's own `Value`) refuse `1e400`; `Skip` goes through
    //! `deserialize_any`, so numbers are parsed and both paths agree.

    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    use super::{NameField, TopLevel};

    /// Visitor methods that answer every listed scalar with the same value.
    macro_rules! scalars_give {
        ($value:expr; $($method:ident($ty:ty)),*) => {
            $(fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> {
                Ok($value)
            })*
        };
    }

    impl<'de> Deserialize<'de> for TopLevel<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(TopVisitor)
        }
    }

    struct TopVisitor;

    impl<'de> Visitor<'de> for TopVisitor {
        type Value = TopLevel<'de>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        scalars_give!(
            TopLevel::NotObject;
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64),
            visit_str(&str)
        );

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(TopLevel::NotObject)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq).map(|()| TopLevel::NotObject)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut name = NameField::Missing;
            while let Some(IsName(is_name)) = map.next_key::<IsName>()? {
                if is_name {
                    name = map.next_value::<NameField<'de>>()?;
                } else {
                    map.next_value::<Skip>()?;
                }
            }
            Ok(TopLevel::Object(name))
        }
    }

    /// Any JSON value, validated and dropped.
    struct Skip;

    impl<'de> Deserialize<'de> for Skip {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(SkipVisitor)
        }
    }

    struct SkipVisitor;

    impl<'de> Visitor<'de> for SkipVisitor {
        type Value = Skip;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        scalars_give!(
            Skip;
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64),
            visit_str(&str)
        );

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Skip)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq).map(|()| Skip)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map).map(|()| Skip)
        }
    }

    fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(())
    }

    fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(())
    }

    /// A member name, compared with `"name"` without keeping (or allocating) it.
    struct IsName(bool);

    impl<'de> Deserialize<'de> for IsName {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(IsNameVisitor)
        }
    }

    struct IsNameVisitor;

    impl<'de> Visitor<'de> for IsNameVisitor {
        type Value = IsName;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a member name")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<IsName, E> {
            Ok(IsName(key == "name"))
        }
    }

    impl<'de> Deserialize<'de> for NameField<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(NameVisitor)
        }
    }

    struct NameVisitor;

    impl<'de> Visitor<'de> for NameVisitor {
        type Value = NameField<'de>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        scalars_give!(
            NameField::NotString;
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64)
        );

        fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(NameField::Str(Cow::Borrowed(s)))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(NameField::Str(Cow::Owned(s.to_owned())))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(NameField::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq).map(|()| NameField::NotString)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map).map(|()| NameField::NotString)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both parsers; they must agree, except on the offset of a syntax error.
    fn both<R: PartialEq + std::fmt::Debug>(
        body: &[u8],
        f: impl Fn(Result<NameField<'_>, JsonError>) -> R,
    ) -> R {
        let simd = f(name_of_simd(body));
        let serde = f(name_of_serde(body));
        let syntax = |r: &R| format!("{r:?}").contains("Syntax");
        if !(syntax(&simd) && syntax(&serde)) {
            assert_eq!(
                simd,
                serde,
                "paths disagree on {:?}",
                String::from_utf8_lossy(body)
            );
        }
        simd
    }

    fn name_str(body: &str) -> Result<Option<String>, JsonError> {
        both(body.as_bytes(), |r| {
            r.map(|f| match f {
                NameField::Str(s) => Some(s.into_owned()),
                _ => None,
            })
        })
    }

    #[test]
    fn extracts_name_and_skips_nested_unknown_fields() {
        let body = r#"{"a":{"name":"inner","b":[1,{"name":2}]},"name":"John","c":[[],{}]}"#;
        assert_eq!(name_str(body), Ok(Some("John".into())));
    }

    #[test]
    fn unescapes() {
        assert_eq!(
            name_str(r#"{"name":"a\"b\\c\u00e9\ud83d\ude00"}"#),
            Ok(Some("a\"b\\cé😀".into()))
        );
    }

    #[test]
    fn numbers_beyond_64_bits_are_accepted_as_serde_json_does() {
        let body = r#"{"big":11477770431750055370162176,"neg":-1e300,"tiny":1e-400,"name":"N"}"#;
        assert_eq!(name_str(body), Ok(Some("N".into())));
        // Beyond f64: refused, as serde_json does (RFC 8259 allows the limit).
        assert!(matches!(
            name_str(r#"{"x":1e400,"name":"N"}"#),
            Err(JsonError::Syntax(_))
        ));
        assert!(serde_json::from_str::<serde_json::Value>(r#"{"x":1e400}"#).is_err());
        // The largest double, written with one digit too many, still rounds to it:
        // accepted by both paths whatever the body's size (serde_json parses
        // floats exactly with its float_roundtrip feature).
        let edge = r#"{"name":"x","n":1.7976931348623158e308}"#;
        assert_eq!(name_str(edge), Ok(Some("x".into())));
        let padded = format!(
            r#"{{"name":"x","n":1.7976931348623158e308,"pad":"{}"}}"#,
            "p".repeat(200)
        );
        assert_eq!(name_str(&padded), Ok(Some("x".into())));
    }

    #[test]
    fn the_simple_shape_is_recognised_and_nothing_else() {
        assert_eq!(simple_name(br#"{"name":"John"}"#), Some("John"));
        assert_eq!(simple_name(b" {\t\"name\" :\r\n\"J o\" } \n"), Some("J o"));
        assert_eq!(simple_name(br#"{"name":""}"#), Some(""));
        assert_eq!(
            simple_name("{\"name\":\"Zoë 日本\"}".as_bytes()),
            Some("Zoë 日本")
        );
        for other in [
            &br#"{"name":"a\"b"}"#[..],
            br#"{"name":"a","x":1}"#,
            br#"{"x":1,"name":"a"}"#,
            br#"{"name":"a"} x"#,
            br#"{"name":"a"}}"#,
            br#"{"name":1}"#,
            br#"{"nam\u0065":"a"}"#,
            br#"{"name":"a"#,
            b"{\"name\":\"a\x01\"}",
            b"{\"name\":\"\xff\"}",
            br#"["name","a"]"#,
            b"",
        ] {
            assert_eq!(
                simple_name(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn errors_point_at_the_byte_that_is_wrong() {
        // A lone surrogate is not a Unicode scalar value: refused, at its escape.
        assert_eq!(name_str(r#"{"name":"\ud800"}"#), Err(JsonError::Syntax(15)));
        let long = format!(r#"{{"pad":"{}","name":"\ud800"}}"#, "p".repeat(200));
        assert!(matches!(name_str(&long), Err(JsonError::Syntax(n)) if n > 200));
        // serde_json counts lines and columns: the offset adds up the lines before
        // it, so it lands on the wrong byte on any line.
        for (body, wrong) in [
            ("{\n \"name\": ?}", '?'),
            ("{\n\n  \"name\":\n ?}", '?'),
            ("{\"a\":1,\n\"name\":\"x\"\n,}", '}'),
        ] {
            let at = body.rfind(wrong).unwrap();
            assert_eq!(
                name_of_serde(body.as_bytes()).map(|_| ()),
                Err(JsonError::Syntax(at)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn last_duplicate_wins() {
        assert_eq!(name_str(r#"{"name":"a","name":"b"}"#), Ok(Some("b".into())));
    }

    #[test]
    fn classifies_name_kinds() {
        let kind = |b: &str| both(b.as_bytes(), |r| r.map(|f| format!("{f:?}")));
        assert_eq!(kind("{}").unwrap(), "Missing");
        assert_eq!(kind(r#"{"name":null}"#).unwrap(), "Null");
        assert_eq!(kind(r#"{"name":1}"#).unwrap(), "NotString");
        assert_eq!(kind(r#"{"name":["x"]}"#).unwrap(), "NotString");
    }

    #[test]
    fn reports_errors() {
        assert_eq!(name_str("[]"), Err(JsonError::NotObject));
        assert_eq!(name_str(r#""John""#), Err(JsonError::NotObject));
        assert_eq!(name_str(""), Err(JsonError::Empty));
        assert_eq!(name_str("   "), Err(JsonError::Empty));
        assert!(matches!(
            name_str(r#"{"name":"x""#),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(
            name_str(r#"{"name":"x"} x"#),
            Err(JsonError::Syntax(_))
        ));
        assert_eq!(
            both(b"{\"name\":\"\xff\"}", |r| r.map(|_| ())),
            Err(JsonError::InvalidUtf8)
        );
    }

    #[test]
    fn scratch_is_reused_across_sizes() {
        let big = format!(r#"{{"pad":"{}","name":"Big"}}"#, "x".repeat(20_000));
        assert_eq!(name_str(&big), Ok(Some("Big".into())));
        assert_eq!(name_str(r#"{"name":"Small"}"#), Ok(Some("Small".into())));
    }
}
