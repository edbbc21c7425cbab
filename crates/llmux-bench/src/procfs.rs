//! CPU time and memory of process trees, read from `/proc`.
//!
//! A contender is named by its root pid(s); its workers (nginx, LiteLLM's uvicorn workers) are found as
//! descendants at every sample, so a respawned worker is still counted.

use std::collections::HashMap;
use std::fs;

/// Linux reports `utime`/`stime` in USER_HZ, which is 100 on every architecture llmux runs on.
pub const CLK_TCK: f64 = 100.0;

/// One reading of a process tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    /// user + system CPU time of every process in the tree, in clock ticks.
    pub cpu_ticks: u64,
    /// Sum of `VmRSS` (kB).
    pub rss_kb: u64,
    /// Sum of `VmHWM`, the per-process peak RSS (kB); an upper bound of the tree's peak.
    pub hwm_kb: u64,
    /// Number of processes in the tree.
    pub procs: usize,
}

impl Sample {
    /// CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        self.cpu_ticks as f64 / CLK_TCK
    }
}

struct Stat {
    ppid: u32,
    ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Stat { ppid, ticks: utime + stime })
}

/// `roots` and all their live descendants.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    if roots.is_empty() {
        return Vec::new();
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some(st) = stat(pid) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        if out.contains(&pid) {
            continue;
        }
        out.push(pid);
        if let Some(kids) = children.get(&pid) {
            todo.extend(kids);
        }
    }
    out
}

fn status_kb(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads the tree rooted at `roots` now.
pub fn sample(roots: &[u32]) -> Sample {
    let mut out = Sample::default();
    for pid in tree(roots) {
        let Some(st) = stat(pid) else { continue };
        out.cpu_ticks += st.ticks;
        out.procs += 1;
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            out.rss_kb += status_kb(&status, "VmRSS:");
            out.hwm_kb += status_kb(&status, "VmHWM:");
        }
    }
    out
}

/// Busy CPU time of the whole machine so far (all cores; user, nice, system, irq, softirq, steal), in
/// seconds, and the number of cores.
pub fn machine_busy_s() -> (f64, usize) {
    let Ok(text) = fs::read_to_string("/proc/stat") else { return (0.0, 1) };
    let cores = text.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count().max(1);
    let busy = text
        .lines()
        .next()
        .map(|l| {
            let f: Vec<u64> = l.split_ascii_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal
            [0usize, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum::<u64>()
        })
        .unwrap_or(0);
    (busy as f64 / CLK_TCK, cores)
}

/// CPU seconds this process (the load generator) has used so far.
pub fn self_cpu_s() -> f64 {
    stat(std::process::id()).map_or(0.0, |s| s.ticks as f64 / CLK_TCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_itself() {
        let me = std::process::id();
        assert!(tree(&[me]).contains(&me));
        let s = sample(&[me]);
        assert_eq!(s.procs, 1);
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(status_kb("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"), 1234);
        assert_eq!(status_kb("Name:\tx\n", "VmHWM:"), 0);
    }
}
