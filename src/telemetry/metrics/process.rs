//! Process metrics in the names every Prometheus client library uses
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), read on each
//! scrape through the `procfs` crate (which knows the kernel's clock tick and page
//! size). Linux only; elsewhere the collector exports nothing.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::single;

/// Encodes the process metrics on a scrape.
#[derive(Debug)]
pub(super) struct Collector;

/// What one scrape reads about this process.
struct Sample {
    resident_bytes: u64,
    cpu_seconds: f64,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

#[cfg(target_os = "linux")]
fn sample() -> Option<Sample> {
    use procfs::process::{LimitValue, Process};
    use procfs::WithCurrentSystemInfo;

    let me = Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let max_fds = me
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            LimitValue::Value(n) => Some(n),
            LimitValue::Unlimited => None,
        });
    let boot = procfs::boot_time_secs().ok().map(|b| b as f64);
    Some(Sample {
        resident_bytes: stat.rss_bytes().get(),
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        open_fds: me.fd_count().ok(),
        max_fds,
        start_time_seconds: boot.map(|b| b + stat.starttime as f64 / ticks),
    })
}

#[cfg(not(target_os = "linux"))]
fn sample() -> Option<Sample> {
    None
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else { return Ok(()) };
        let e = &mut encoder;
        let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        single(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            &gauge(s.resident_bytes),
        )?;
        single(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            &ConstCounter::new(s.cpu_seconds),
        )?;
        if let Some(fds) = s.open_fds {
            let fds = gauge(fds as u64);
            single(
                e,
                "process_open_fds",
                "Number of open file descriptors",
                &fds,
            )?;
        }
        if let Some(max) = s.max_fds {
            let help = "Maximum number of open file descriptors";
            single(e, "process_max_fds", help, &gauge(max))?;
        }
        if let Some(start) = s.start_time_seconds {
            let help = "Start time of the process since the Unix epoch in seconds";
            single(
                e,
                "process_start_time_seconds",
                help,
                &ConstGauge::new(start),
            )?;
        }
        Ok(())
    }
}
