//! The process-wide limit on request bodies held while they arrive (see
//! `config::memory`): a request whose body did not come with its head takes room
//! for a whole head and body before it waits for the rest, and gives it back when
//! it is answered. Requests whose bodies came with their heads, nearly all of
//! them, never touch it, so the request path writes nothing shared.

use tokio::sync::{Semaphore, SemaphorePermit};

/// Room for buffered request bodies, shared by every worker.
///
/// The semaphore lives for the rest of the process (it is leaked once, when the
/// server is built), so a request refers to it by a plain reference: cloning an
/// `Arc` for every `POST /greet` would write its count, a line shared by every
/// worker, on every request.
#[derive(Debug, Clone, Copy)]
pub struct BodyBuffers {
    room: &'static Semaphore,
    limit: u64,
}

/// Room taken by one request; given back when dropped.
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] SemaphorePermit<'static>);

impl BodyBuffers {
    /// A limit of `limit` bytes, counted in KiB (a semaphore counts in `u32`).
    /// Call once per server: the room is never freed.
    pub fn new(limit: u64) -> Self {
        let kib = usize::try_from(limit >> 10)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            room: Box::leak(Box::new(Semaphore::new(kib))),
            limit,
        }
    }

    /// Takes room for `bytes`, or `None` when there is not that much left.
    pub fn try_hold(&self, bytes: usize) -> Option<Held> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        self.room.try_acquire_many(kib).ok().map(Held)
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        let total = self.limit >> 10;
        total.saturating_sub(self.room.available_permits() as u64) << 10
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_and_given_back() {
        let buffers = BodyBuffers::new(100 << 10);
        let a = buffers.try_hold(60 << 10).unwrap();
        assert_eq!(buffers.held(), 60 << 10);
        assert!(buffers.try_hold(41 << 10).is_none());
        let b = buffers.try_hold(40 << 10).unwrap();
        assert!(buffers.try_hold(1).is_none());
        drop(a);
        assert_eq!(buffers.held(), 40 << 10);
        drop(b);
        assert_eq!(buffers.held(), 0);
        assert_eq!(buffers.limit(), 100 << 10);
    }
}
