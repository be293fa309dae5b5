//! CPU time and resident memory of a process, read from `/proc`, and the swarm's own
//! open-file limit.

use std::time::Instant;

use serde::Serialize;

/// One reading of a process's CPU time and memory.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
}

/// Why a process could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} has no utime/stime fields where expected")]
    Stat { path: String },
    #[error("{path} has no VmRSS line")]
    Status { path: String },
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub fn sample(pid: u32) -> Result<ProcSample, ProcError> {
    let read = |name: &str| {
        let path = format!("/proc/{pid}/{name}");
        std::fs::read_to_string(&path)
            .map(|text| (text, path.clone()))
            .map_err(|source| ProcError::Read { path, source })
    };
    let (stat, stat_path) = read("stat")?;
    let (status, status_path) = read("status")?;
    Ok(ProcSample {
        at: Instant::now(),
        cpu_ticks: parse_stat_cpu_ticks(&stat).ok_or(ProcError::Stat { path: stat_path })?,
        rss_bytes: parse_status_rss_kib(&status).ok_or(ProcError::Status { path: status_path })?
            * 1024,
    })
}

/// utime + stime from the text of `/proc/PID/stat` (fields 14 and 15). The command
/// name in parentheses may hold spaces and parentheses, so fields are counted after
/// its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; utime is field 14.
    let mut fields = after_name.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS` value in KiB from the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Machine-wide CPU time from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineCpu {
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

/// Reads `/proc/stat`.
pub fn machine_cpu() -> Result<MachineCpu, ProcError> {
    let path = "/proc/stat";
    let text = std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_machine_cpu(&text).ok_or(ProcError::Stat {
        path: path.to_owned(),
    })
}

/// Parses the `cpu` line: user nice system idle iowait irq softirq steal; busy is all but idle and iowait.
pub fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    Some(MachineCpu {
        busy_ticks: total - fields[3] - fields[4],
        total_ticks: total,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`), from the process's auxiliary vector.
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// The open-file limit before and after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpenFilesLimit {
    pub soft_before: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl OpenFilesLimit {
    /// Whether `needed` descriptors fit under the soft limit (`None`: unlimited).
    pub fn allows(&self, needed: u64) -> bool {
        self.soft.is_none_or(|soft| soft >= needed)
    }
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; failures leave it as it was.
pub fn raise_open_files_limit() -> OpenFilesLimit {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    let soft = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => getrlimit(Resource::Nofile).current,
        Err(_) => before.current,
    };
    OpenFilesLimit {
        soft_before: before.current,
        soft,
        hard: before.maximum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (web (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1234 5000000 300 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("12 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn machine_cpu_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(
            parse_machine_cpu(stat),
            Some(MachineCpu {
                busy_ticks: 160,
                total_ticks: 1180
            })
        );
        assert_eq!(parse_machine_cpu("intr 1 2 3\n"), None);
        assert!(machine_cpu().unwrap().total_ticks > 0);
    }

    #[test]
    fn rss_is_read_from_the_vmrss_line() {
        let status = "Name:\tsonicforge\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss_kib(status), Some(51_234));
        assert_eq!(parse_status_rss_kib("Name:\tkthread\n"), None);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let sample = sample(std::process::id()).unwrap();
        assert!(sample.rss_bytes > 0);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn missing_process_is_an_error_naming_the_file() {
        match sample(u32::MAX) {
            Err(ProcError::Read { path, .. }) => {
                assert_eq!(path, format!("/proc/{}/stat", u32::MAX))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn raised_limit_reaches_the_hard_limit() {
        let limit = raise_open_files_limit();
        assert_eq!(limit.soft, limit.hard);
        assert!(limit.allows(16));
    }
}
