//! Per-thread output buffers: response bodies and generated request ids are written
//! into a shared chunk and split off as `Bytes`, so they cost no allocation of their
//! own. A chunk is freed when the last response cut from it is dropped.
//!
//! `BytesMut::split` hands out the written part and keeps the spare capacity; the
//! first split of a chunk turns it into a shared buffer (one small allocation per
//! chunk), later ones only bump a reference count.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Size of a fresh chunk: a few hundred responses.
const CHUNK: usize = 64 * 1024;

thread_local! {
    static OUT: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Something the JSON writer can append bytes to.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Runs `write` on a buffer with at least `max_len` bytes of spare capacity and
/// returns what it wrote. `write` must not write more than `max_len` bytes (it
/// would still work, at the cost of a reallocation).
pub fn write(max_len: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    OUT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.capacity() - buf.len() < max_len {
                *buf = BytesMut::with_capacity(CHUNK.max(max_len));
            }
            write(&mut buf);
            buf.split().freeze()
        }
        // Re-entrant use (never on the request path): a buffer of its own.
        Err(_) => {
            let mut buf = BytesMut::with_capacity(max_len);
            write(&mut buf);
            buf.freeze()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_independent_and_survive_new_chunks() {
        let a = write(5, |b| b.put(b"hello"));
        let b = write(5, |b| b.put(b"world"));
        let big = write(CHUNK * 2, |b| b.put(&vec![b'x'; CHUNK * 2]));
        let c = write(3, |b| b.put(b"end"));
        assert_eq!(&a[..], b"hello");
        assert_eq!(&b[..], b"world");
        assert_eq!(big.len(), CHUNK * 2);
        assert_eq!(&c[..], b"end");
    }

    #[test]
    fn nested_use_does_not_panic() {
        let outer = write(16, |b| {
            let inner = write(4, |i| i.put(b"in"));
            b.put(&inner);
            b.put(b"+out");
        });
        assert_eq!(&outer[..], b"in+out");
    }
}
