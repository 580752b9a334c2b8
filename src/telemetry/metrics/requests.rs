//! Request counts and durations, written per thread and merged when scraped.
//!
//! Every thread that records requests gets a [`Shard`] of its own, found through a
//! thread-local and registered once with its [`Shards`]. A shard has one writer,
//! so a record is a load and a store per counter (no locked instruction), and no
//! cache line is written by two worker threads: on a many-core machine the line
//! would otherwise move between cores on every request. A scrape sums the shards.
//! `benches/contention.rs` measures it: the cost of a record from two threads at
//! once against one thread's.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};

use super::Metrics;
use crate::handler::Route;

/// A request method as the bounded `method` label: the standard methods, or
/// `OTHER`. One byte, so a request can carry it until it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(u8);

impl MethodLabel {
    pub fn of(m: &Method) -> Self {
        Self(match *m {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            _ => 7,
        })
    }

    pub fn as_str(self) -> &'static str {
        METHODS[self.0 as usize]
    }

    fn index(self) -> usize {
        self.0 as usize
    }
}

impl Metrics {
    /// Records one request into this thread's [`Shard`]: no lock,
    /// no allocation, no shared cache line written.
    pub fn record(&self, route: Route, method: MethodLabel, status: StatusCode, took: Duration) {
        self.requests.record(route, method, status, took);
    }
}

/// The `method` label values, by [`MethodLabel`] index.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// The `status` label values; the last (0) stands for every other code, `other`.
pub const STATUSES: [u16; 11] = [200, 400, 404, 405, 408, 413, 415, 431, 500, 503, 0];

/// Upper bounds of the duration histogram, in seconds: single microseconds (a greeting
/// takes a few, so the server's own percentiles must resolve them) up to seconds (a
/// slow client's body).
pub const BUCKETS: [f64; 22] = [
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`BUCKETS`] in nanoseconds.
const BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

fn status_index(s: StatusCode) -> usize {
    let code = s.as_u16();
    STATUSES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(STATUSES.len() - 1)
}

/// A counter with a single writer (its shard's thread) and any number of readers:
/// adding is a plain load and store, which readers see whole (never torn).
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    #[inline]
    fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Non-cumulative bucket counts (the last is +Inf) and the sum in nanoseconds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [Counter; BUCKETS.len() + 1],
    sum_ns: Counter,
}

impl Histogram {
    #[inline]
    fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BOUNDS_NS.len());
        self.buckets[i].add(1);
        self.sum_ns.add(ns);
    }
}

/// One thread's counts. Aligned to two cache lines so two shards never share one.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    counts: [[[Counter; STATUSES.len()]; METHODS.len()]; Route::ALL.len()],
    durations: [Histogram; Route::ALL.len()],
}

impl Shard {
    fn new() -> Self {
        Self {
            counts: Default::default(),
            durations: Default::default(),
        }
    }
}

/// Every shard of one set of metrics.
#[derive(Debug)]
pub(super) struct Shards {
    /// Tells this set's shards apart from another's in the thread-local list (tests
    /// run several servers in one process).
    id: u64,
    all: Mutex<Vec<Arc<Shard>>>,
}

thread_local! {
    /// This thread's shard of each set of metrics it has recorded into.
    static LOCAL: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

impl Shards {
    pub(super) fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            all: Mutex::new(Vec::new()),
        }
    }

    /// Records one request into this thread's shard: a few loads and stores, no
    /// lock, no allocation (after the thread's first request).
    #[inline]
    pub(super) fn record(
        &self,
        route: Route,
        method: MethodLabel,
        status: StatusCode,
        took: Duration,
    ) {
        let record = |shard: &Shard| {
            shard.counts[route as usize][method.index()][status_index(status)].add(1);
            shard.durations[route as usize].observe(took);
        };
        LOCAL.with(|local| {
            if let Ok(local) = local.try_borrow() {
                if let Some((_, shard)) = local.iter().find(|(id, _)| *id == self.id) {
                    return record(shard);
                }
            }
            record(&self.register(local));
        });
    }

    /// This thread's first record into this set: a shard of its own.
    #[cold]
    fn register(&self, local: &RefCell<Vec<(u64, Arc<Shard>)>>) -> Arc<Shard> {
        let shard = Arc::new(Shard::new());
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(shard.clone());
        if let Ok(mut local) = local.try_borrow_mut() {
            local.push((self.id, shard.clone()));
        }
        shard
    }

    /// The sum over every shard.
    pub(super) fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for shard in self.all.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for r in 0..Route::ALL.len() {
                for m in 0..METHODS.len() {
                    for s in 0..STATUSES.len() {
                        totals.counts[r][m][s] += shard.counts[r][m][s].get();
                    }
                }
                let (h, t) = (&shard.durations[r], &mut totals.durations[r]);
                for (b, bucket) in h.buckets.iter().enumerate() {
                    t.buckets[b] += bucket.get();
                }
                t.sum_ns += h.sum_ns.get();
            }
        }
        totals
    }
}

/// Request counts and durations summed over the shards, for one scrape.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) counts: [[[u64; STATUSES.len()]; METHODS.len()]; Route::ALL.len()],
    pub(super) durations: [HistogramTotals; Route::ALL.len()],
}

#[derive(Debug, Default)]
pub(super) struct HistogramTotals {
    pub(super) buckets: [u64; BUCKETS.len() + 1],
    pub(super) sum_ns: u64,
}

impl HistogramTotals {
    /// Per-bucket (not cumulative) counts with their upper bounds, total count and
    /// sum in seconds: the shape `prometheus-client`'s encoder takes.
    pub(super) fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n))
            .collect();
        let count = self.buckets.iter().sum();
        (buckets, count, self.sum_ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_buckets_in_nanoseconds() {
        for (s, ns) in BUCKETS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    /// The per-core design's claim, checked without a clock: two threads recording
    /// at once each write a shard of their own (no count lands in the other's),
    /// and no two shards share a cache line (128 bytes: a pair of lines, which
    /// adjacent-line prefetchers fetch together). `benches/contention.rs` measures
    /// what the claim is worth in time.
    #[test]
    fn each_thread_records_into_its_own_shard_on_its_own_lines() {
        assert_eq!(std::mem::align_of::<Shard>(), 128);
        assert_eq!(std::mem::size_of::<Shard>() % 128, 0);
        let shards = Arc::new(Shards::new());
        let post = MethodLabel::of(&http::Method::POST);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = [(StatusCode::OK, 1000), (StatusCode::NOT_FOUND, 700)]
            .into_iter()
            .map(|(status, n)| {
                let (shards, barrier) = (shards.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..n {
                        shards.record(Route::Greet, post, status, Duration::from_micros(3));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = shards.all.lock().unwrap();
        assert_eq!(all.len(), 2, "one shard per recording thread");
        let cell = |shard: &Shard, status| {
            shard.counts[Route::Greet as usize][post.index()][status_index(status)].get()
        };
        let mut seen: Vec<(u64, u64)> = all
            .iter()
            .map(|s| (cell(s, StatusCode::OK), cell(s, StatusCode::NOT_FOUND)))
            .collect();
        seen.sort();
        assert_eq!(seen, [(0, 700), (1000, 0)]);
        let lines = |s: &Arc<Shard>| {
            let start = Arc::as_ptr(s) as usize;
            (
                start / 128,
                (start + std::mem::size_of::<Shard>() - 1) / 128,
            )
        };
        let (a, b) = (lines(&all[0]), lines(&all[1]));
        assert!(a.1 < b.0 || b.1 < a.0, "shards share a line: {a:?} {b:?}");
    }

    #[test]
    fn histogram_buckets_count_each_observation_once() {
        let shards = Shards::new();
        let post = MethodLabel::of(&http::Method::POST);
        for d in [
            Duration::from_micros(1),
            Duration::from_micros(5),
            Duration::from_micros(30),
            Duration::from_secs(60),
        ] {
            shards.record(Route::Greet, post, StatusCode::OK, d);
        }
        let totals = shards.totals();
        let (buckets, count, sum) = totals.durations[Route::Greet as usize].snapshot();
        assert_eq!(count, 4);
        // Upper bounds are inclusive, as Prometheus' `le` says.
        assert_eq!(buckets[0], (0.000001, 1));
        assert_eq!(buckets[1], (0.0000025, 0));
        assert_eq!(buckets[2], (0.000005, 1));
        assert_eq!(buckets[5], (0.00005, 1));
        assert_eq!(buckets.last().unwrap().1, 1);
        assert!(buckets.last().unwrap().0.is_infinite());
        assert!((sum - 60.000036).abs() < 1e-9);
    }

    #[test]
    fn threads_record_into_their_own_shards_and_the_scrape_sums_them() {
        let shards = Arc::new(Shards::new());
        let post = MethodLabel::of(&http::Method::POST);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let shards = shards.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        shards.record(Route::Greet, post, StatusCode::OK, Duration::ZERO);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(shards.all.lock().unwrap().len(), 4);
        let totals = shards.totals();
        assert_eq!(totals.counts[Route::Greet as usize][post.index()][0], 4000);
        // Another set of metrics on the same thread has shards of its own.
        let other = Shards::new();
        other.record(Route::Greet, post, StatusCode::OK, Duration::ZERO);
        assert_eq!(
            shards.totals().counts[Route::Greet as usize][post.index()][0],
            4000
        );
        assert_eq!(
            other.totals().counts[Route::Greet as usize][post.index()][0],
            1
        );
    }
}
