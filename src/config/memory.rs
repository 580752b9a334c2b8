//! One memory budget, from which the connection cap and the process-wide limit on
//! buffered request bodies follow, so that what clients can make the process hold
//! is bounded in aggregate, not only per connection.
//!
//! The budget is `MEMORY_BUDGET` when set, else the cgroup's memory limit (a
//! container's), else 1 GiB. From it:
//!
//! - [`BASE`] (32 MiB) for the process itself: runtime, code, allocator, metrics;
//! - three quarters of the rest for connections, each counted at its worst case,
//!   [`PER_CONNECTION`] (72 KiB: a request head of up to 64 KiB in hyper's read
//!   buffer, the write buffer and the connection's state; HTTP/2's receive windows
//!   are set to fit in it too), which gives the default `MAX_CONNECTIONS`, at most
//!   10,000;
//! - a quarter for request bodies that do not come with their head: each such
//!   request holds room for a whole head and body while it waits, and past the
//!   limit gets 503 with `Retry-After` instead of growing the process.
//!
//! Idle connections cost far less than the worst case (about 3 KiB parked), so the
//! cap is conservative; an operator who knows the traffic raises `MAX_CONNECTIONS`
//! or the budget.

use std::path::Path;

/// Memory set aside for the process itself.
pub const BASE: u64 = 32 << 20;

/// A connection at its worst: a 64 KiB head in hyper's read buffer, plus its write
/// buffer and state.
pub const PER_CONNECTION: u64 = 72 << 10;

/// The default budget without a setting or a cgroup limit.
pub const DEFAULT_BUDGET: u64 = 1 << 30;

/// The smallest budget accepted: the base and room for some connections.
pub const MIN_BUDGET: u64 = 64 << 20;

/// The connection cap's upper bound (the documented default).
pub const MAX_CONNECTIONS: usize = 10_000;

/// Where the budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Setting,
    Cgroup,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Setting => "MEMORY_BUDGET",
            Self::Cgroup => "cgroup limit",
            Self::Default => "default",
        }
    }
}

/// The budget and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub budget: u64,
    pub source: Source,
    /// The default for `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// The most request-body bytes held at once for requests whose bodies are
    /// still arriving.
    pub body_buffers: u64,
}

impl Plan {
    /// The plan for `budget` bytes (at least [`MIN_BUDGET`]).
    pub fn for_budget(budget: u64, source: Source) -> Self {
        let spare = budget.saturating_sub(BASE);
        let connections = (spare / 4 * 3 / PER_CONNECTION) as usize;
        Self {
            budget,
            source,
            max_connections: connections.clamp(1, MAX_CONNECTIONS),
            body_buffers: spare / 4,
        }
    }

    /// The plan for a setting (if any), else a cgroup limit, else the default.
    pub fn resolve(setting: Option<u64>, cgroup: Option<u64>) -> Self {
        match (setting, cgroup) {
            (Some(bytes), _) => Self::for_budget(bytes, Source::Setting),
            (None, Some(bytes)) => Self::for_budget(bytes.max(MIN_BUDGET), Source::Cgroup),
            (None, None) => Self::for_budget(DEFAULT_BUDGET, Source::Default),
        }
    }
}

/// The memory limit of the cgroup this process runs in, if it has one: the
/// process's own cgroup directory (from `/proc/self/cgroup`) or, inside a
/// container's cgroup namespace, the root of `/sys/fs/cgroup`.
pub fn own_cgroup_limit() -> Option<u64> {
    let root = Path::new("/sys/fs/cgroup");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let path = path.unwrap_or("/").trim_start_matches('/');
        match controllers {
            Some("") => dirs.push(root.join(path)),
            Some(list) if list.split(',').any(|c| c == "memory") => {
                dirs.push(root.join("memory").join(path));
            }
            _ => {}
        }
    }
    dirs.push(root.to_path_buf());
    dirs.push(root.join("memory"));
    dirs.iter().find_map(|dir| cgroup_limit(dir))
}

/// The memory limit in one cgroup directory: v2 `memory.max` (`max` when none) or
/// v1 `memory.limit_in_bytes` (a huge number when none).
pub fn cgroup_limit(dir: &Path) -> Option<u64> {
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let value = read("memory.max").or_else(|| read("memory.limit_in_bytes"))?;
    let bytes: u64 = value.trim().parse().ok()?;
    // v1 reports "no limit" as a page-rounded i64::MAX.
    (bytes < 1 << 60).then_some(bytes)
}

/// Sizes with units: `268435456`, `256MiB`, `256Mi`, `256M` (binary), `1GiB`,
/// `512kB`/`500MB` (decimal).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a size such as 256MiB or 1GiB".to_owned())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "Ki" | "KiB" | "k" => 1 << 10,
        "M" | "Mi" | "MiB" => 1 << 20,
        "G" | "Gi" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    let bytes = n.checked_mul(scale).ok_or_else(|| "too large".to_owned())?;
    if bytes < MIN_BUDGET {
        return Err(format!("must be at least {}MiB", MIN_BUDGET >> 20));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_gives_the_documented_connection_cap() {
        let plan = Plan::for_budget(DEFAULT_BUDGET, Source::Default);
        assert_eq!(plan.max_connections, 10_000);
        assert_eq!(plan.body_buffers, (DEFAULT_BUDGET - BASE) / 4);
    }

    #[test]
    fn a_256_mib_container_gets_a_cap_that_fits_it() {
        let plan = Plan::for_budget(256 << 20, Source::Cgroup);
        assert_eq!(plan.max_connections, 2389);
        assert_eq!(plan.body_buffers, 56 << 20);
        // Worst cases together stay within the budget.
        let worst = BASE + plan.max_connections as u64 * PER_CONNECTION + plan.body_buffers;
        assert!(worst <= plan.budget, "{worst} > {}", plan.budget);
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256Mi"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size(&(128u64 << 20).to_string()), Ok(128 << 20));
        assert!(parse_size("1MiB").is_err(), "below the minimum");
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn cgroup_limits_are_read_from_v2_and_v1_files() {
        let dir = std::env::temp_dir().join(format!("gs-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(cgroup_limit(&dir), None);
        std::fs::write(dir.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit(&dir), None, "v1's no-limit value");
        std::fs::write(dir.join("memory.limit_in_bytes"), "268435456\n").unwrap();
        assert_eq!(cgroup_limit(&dir), Some(256 << 20));
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(&dir), None, "v2's no-limit value wins over v1");
        std::fs::write(dir.join("memory.max"), "536870912\n").unwrap();
        assert_eq!(cgroup_limit(&dir), Some(512 << 20));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_setting_wins_over_a_cgroup_limit_which_wins_over_the_default() {
        let plan = Plan::resolve(Some(128 << 20), Some(512 << 20));
        assert_eq!((plan.source, plan.budget), (Source::Setting, 128 << 20));
        let plan = Plan::resolve(None, Some(512 << 20));
        assert_eq!((plan.source, plan.budget), (Source::Cgroup, 512 << 20));
        let plan = Plan::resolve(None, Some(16 << 20));
        assert_eq!(plan.budget, MIN_BUDGET, "a tiny cgroup still runs");
        let plan = Plan::resolve(None, None);
        assert_eq!(
            (plan.source, plan.budget),
            (Source::Default, DEFAULT_BUDGET)
        );
    }
}
