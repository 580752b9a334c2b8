//! Identifiers: the request id every response carries (`X-Request-Id`), and the
//! random and hex helpers the trace context's ids are made with.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::HeaderValue;

use crate::arena::{self, Sink};

pub mod random;

/// A client's `X-Request-Id` is kept if it is 1 to 128 visible ASCII characters.
pub fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// 16 hex digits: a random per-process start, plus a block of 2^40 ids per thread,
/// plus that thread's counter. Unique within the process (a thread would need a
/// trillion requests to reach the next block; blocks do not meet before 2^24
/// threads), unlikely to repeat across replicas, and no counter is shared between
/// threads, so generating one writes no cache line another core also writes.
pub fn fresh_request_id() -> HeaderValue {
    static START: OnceLock<u64> = OnceLock::new();
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NEXT: Cell<u64> = Cell::new(
            START
                .get_or_init(random::os_seed)
                .wrapping_add(THREADS.fetch_add(1, Ordering::Relaxed) << 40),
        );
    }
    let n = NEXT.with(|next| {
        let n = next.get();
        next.set(n.wrapping_add(1));
        n
    });
    let digits = hex::u64_digits(n);
    // Cut from the per-thread output buffer: no allocation per id.
    let id = arena::write(digits.len(), |out| out.put(&digits));
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

pub mod hex {
    //! Lowercase hexadecimal: request ids, trace and span ids, JSON `\u00XX` escapes.

    /// The sixteen digits, in order.
    pub const DIGITS: &[u8; 16] = b"0123456789abcdef";

    /// `n` as sixteen lowercase hex digits, most significant first.
    ///
    /// Eight digits at a time in one `u64` rather than a table lookup per digit
    /// (every response's request id is made with it). Callgrind, per request: 73
    /// instructions the digit-by-digit way, at most 43 this way (inlined with no
    /// line of its own, so counted in the module's compiler glue); the before and
    /// after tables of `perf/results/2026-12-08-walk.md`.
    #[inline]
    pub fn u64_digits(n: u64) -> [u8; 16] {
        let (high, low) = (eight_digits((n >> 32) as u32), eight_digits(n as u32));
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&high);
        out[8..].copy_from_slice(&low);
        out
    }

    /// `x` as eight lowercase hex digits: each nibble spread into a byte of its
    /// own (nibble k into byte k), then each byte 0-15 turned into its digit.
    fn eight_digits(x: u32) -> [u8; 8] {
        let x = u64::from(x);
        let x = (x | x << 16) & 0x0000_ffff_0000_ffff;
        let x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
        let x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
        // 1 in each byte that is 10 or more: those become letters, 'a' - '0' - 10
        // = 39 further on. No byte carries into the next (at most 15 + 6).
        let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
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

        proptest::proptest! {
            #[test]
            fn digits_are_the_formatted_number(n: u64) {
                let expected = format!("{n:016x}");
                proptest::prop_assert_eq!(&u64_digits(n)[..], expected.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(is_valid_request_id(b"abc-123"));
        assert!(is_valid_request_id(&[b'x'; 128]));
        assert!(!is_valid_request_id(&[b'x'; 129]));
        assert!(!is_valid_request_id(b""));
        assert!(!is_valid_request_id(b"has space"));
        assert!(!is_valid_request_id("é".as_bytes()));
        let a = fresh_request_id();
        let b = fresh_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        // Threads draw from blocks of their own: no repeats across them either.
        let ids: Vec<HeaderValue> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..1000).map(|_| fresh_request_id()).collect::<Vec<_>>())
            })
            .flat_map(|t| t.join().unwrap())
            .collect();
        let mut unique = ids.clone();
        unique.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
