//! Random numbers for ids: a seed from the operating system, then a fast per-thread
//! generator. Not for secrets; for ids that must not repeat across replicas.

use std::cell::Cell;

/// A random number from the operating system: std's `RandomState` is seeded from it,
/// and hashing nothing with a fresh one gives a random `u64` without a dependency.
pub fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A non-zero random number from this thread's xorshift64 generator, seeded once
/// per thread by [`os_seed`].
pub fn next_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(os_seed() | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // xorshift never reaches 0 from a non-zero state.
        s.set(x);
        x
    })
}

/// A random, non-zero 128-bit trace id (W3C Trace Context), big-endian bytes.
pub fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&next_u64().to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_zero_and_not_constant() {
        let a: Vec<u64> = (0..1000).map(|_| next_u64()).collect();
        assert!(a.iter().all(|&x| x != 0));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), a.len());
    }
}
