//! The open client connections: each runs as a task counted here, for the
//! `http_connections_open` and `http_connections_total` metrics and for the drain,
//! which waits until none is left.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

/// Connection tasks, tracked from accept to close.
#[derive(Debug, Default)]
pub struct Connections {
    tasks: TaskTracker,
    /// Counted by [`Slot`], not read from `tasks`: the tracker forgets a task only
    /// after tokio drops its finished future, which is after the connection's
    /// permit is back and another connection may have been taken in.
    open: AtomicUsize,
    accepted: AtomicU64,
    parked: AtomicI64,
}

impl Connections {
    /// Counts a connection accepted and open; `permit` is its place under the
    /// connection cap. The returned slot goes with the connection's task: dropped,
    /// it counts the connection closed first and only then gives the permit back,
    /// so the open count never exceeds the cap.
    pub fn admit(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        Slot {
            connections: self.clone(),
            _permit: permit,
        }
    }

    /// Spawns a connection's task on the current tokio runtime, tracked for the
    /// drain. The task owns the connection's [`Slot`].
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Counts a connection as parked (idle, hyper's state released) until the
    /// returned guard is dropped.
    pub fn parked(self: &Arc<Self>) -> Parked {
        self.parked.fetch_add(1, Ordering::Relaxed);
        Parked(self.clone())
    }

    /// Connections parked now.
    pub fn parked_now(&self) -> i64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// Resolves once no connection is open. Meant for the drain, after the
    /// listeners have closed: connections spawned later are still waited for.
    pub async fn all_closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// An open connection's place: counted open until dropped, then (fields drop
/// after `drop` runs) its permit goes back to the cap.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A parked connection, counted until dropped.
#[derive(Debug)]
pub struct Parked(Arc<Connections>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Encodes the connection gauges on a scrape.
#[derive(Debug)]
pub(super) struct Collector(pub(super) Arc<Connections>);

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        super::single(
            &mut encoder,
            "http_connections_open",
            "Client connections currently open",
            &ConstGauge::new(self.0.open() as i64),
        )?;
        super::single(
            &mut encoder,
            "http_connections_parked",
            "Idle HTTP/1 connections parked: no hyper state held, waiting for bytes",
            &ConstGauge::new(self.0.parked_now()),
        )?;
        super::single(
            &mut encoder,
            "http_connections",
            "Client connections accepted since start",
            &ConstCounter::new(self.0.accepted()),
        )
    }
}
