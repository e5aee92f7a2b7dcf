//! What /proc says: resident memory of a process, CPU time by process family during a
//! cell, the machine-wide busy share, and the machine itself.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Linux reports CPU times in USER_HZ ticks, 100 per second on every mainstream kernel.
const TICKS_PER_SEC: f64 = 100.0;

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// (comm, utime + stime ticks) of one process (all its threads); kernel threads get the
/// comm `[kernel]`.
fn stat(pid: u32) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    // Fields after the comm start at field 3 (state); utime and stime are fields 14, 15.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let comm = if pid == 2 || ppid == 2 { "[kernel]".to_string() } else { comm };
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Names the processes we know by pid; the rest are grouped by what they are.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    pub by_pid: HashMap<u32, &'static str>,
}

impl Labels {
    fn label(&self, pid: u32, comm: &str) -> &'static str {
        if let Some(l) = self.by_pid.get(&pid) {
            return l;
        }
        match comm {
            "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => "rabbitmq",
            "redis-server" => "redis",
            c if c.starts_with("postgres") => "postgres",
            "[kernel]" => "kernel",
            _ => "other",
        }
    }
}

/// CPU ticks of every process plus the machine's /proc/stat counters.
#[derive(Clone, Debug, Default)]
pub struct CpuSnapshot {
    per_pid: HashMap<u32, (String, u64)>,
    busy: u64,
    total: u64,
}

pub fn snapshot() -> CpuSnapshot {
    let mut per_pid = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(s) = stat(pid) {
                per_pid.insert(pid, s);
            }
        }
    }
    let (busy, total) = machine_ticks().unwrap_or((0, 0));
    CpuSnapshot { per_pid, busy, total }
}

fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is already in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU seconds by label between two snapshots, and the machine's busy share (0–1).
#[derive(Clone, Debug, Default)]
pub struct CpuUsage {
    pub seconds: BTreeMap<&'static str, f64>,
    pub machine_busy: f64,
}

pub fn usage(before: &CpuSnapshot, after: &CpuSnapshot, labels: &Labels) -> CpuUsage {
    let mut seconds: BTreeMap<&'static str, f64> = BTreeMap::new();
    for (pid, (comm, ticks)) in &after.per_pid {
        let prev = match before.per_pid.get(pid) {
            Some((c, t)) if c == comm => *t,
            _ => 0,
        };
        let delta = ticks.saturating_sub(prev);
        if delta > 0 {
            *seconds.entry(labels.label(*pid, comm)).or_default() += delta as f64 / TICKS_PER_SEC;
        }
    }
    let total = after.total.saturating_sub(before.total);
    let busy = after.busy.saturating_sub(before.busy);
    CpuUsage { seconds, machine_busy: if total == 0 { 0.0 } else { busy as f64 / total as f64 } }
}

/// nproc, CPU model, kernel, memory: for the report's header.
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_gib: f64,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mem_total_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model,
        kernel,
        mem_total_gib,
    }
}

/// The pid in `<dir>/<name>.pid`, when that process is alive.
pub fn pid_file(dir: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.pid"))).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// `<dir>/worker-*.pid`, sorted by name.
pub fn worker_pids(dir: &Path) -> Vec<(String, u32)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.starts_with("worker") && n.ends_with(".pid"))
                .map(|n| n.trim_end_matches(".pid").to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.into_iter().filter_map(|n| pid_file(dir, &n).map(|p| (n, p))).collect()
}
