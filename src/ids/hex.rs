//! Lowercase hexadecimal: request ids, trace and span ids, JSON `\u00XX` escapes.

/// The sixteen digits, in order.
pub const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `n` as sixteen lowercase hex digits, most significant first.
#[inline]
pub fn u64_digits(n: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// True for a non-empty string of lowercase hex digits.
pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_round_trip() {
        assert_eq!(&u64_digits(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&u64_digits(0), b"0000000000000000");
        assert_eq!(&u64_digits(u64::MAX), b"ffffffffffffffff");
        assert!(is_lower_hex("00ff"));
        assert!(!is_lower_hex("00FF"));
        assert!(!is_lower_hex(""));
    }
}
