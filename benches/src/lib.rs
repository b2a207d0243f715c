//! Benchmarks and load tools for Flin; see docs/benchmarks.md.
//!
//! - [`load`]: the `flin-bench` load generator (`src/bin/flin-bench.rs`), for the binary
//!   protocol and RESP.
//! - [`crashtest`]: the crash-recovery harness behind `src/bin/flin-crashtest.rs` (and the
//!   short run in flin-server's test suite); see docs/reliability.md.
//! - [`clustertest`]: the real-process fault test of a 3-node cluster behind
//!   `src/bin/flin-clustertest.rs` (and its short run in flin-server's test suite).
//! - This file: shared helpers for the criterion benches (`benches/engine.rs`), the footprint
//!   binary (`src/bin/engine_footprint.rs`), flin-bench and the harness: deterministic keys and
//!   values, and a few readings from `/proc` so every figure is printed with the machine and the
//!   load it was taken under.

pub mod clustertest;
pub mod crashtest;
pub mod load;

/// Bytes in every benchmark key.
pub const KEY_BYTES: usize = 16;

/// splitmix64: a cheap bijective mixer, so keys are spread over the hash space and a walk over
/// `0..n` in a permuted order touches the index at random.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The 16-byte key number `i` (distinct for distinct `i`; costs a few ns, no allocation).
pub fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[..8].copy_from_slice(&mix(i).to_le_bytes());
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

/// A value of `len` bytes (contents do not matter to the engine; not all zero anyway).
pub fn value(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ 0x5a)
        .collect()
}

/// Position `i` of a permutation of `0..n` (`n` a power of two): an odd multiplier is a
/// bijection modulo a power of two, so the walk visits every key once per `n` steps in a
/// scattered order.
pub fn permuted(i: u64, n: u64) -> u64 {
    debug_assert!(n.is_power_of_two());
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15 | 1) & (n - 1)
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `RssAnon`, `RssFile`, ...), if present.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    status_bytes("/proc/self/status", field)
}

/// The same field of another process (`VmRSS`, `VmHWM`: the peak), e.g. a server under test.
pub fn process_status_bytes(pid: u32, field: &str) -> Option<u64> {
    status_bytes(&format!("/proc/{pid}/status"), field)
}

fn status_bytes(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// CPU time (user + system) process `pid` has used, in seconds, from `/proc/<pid>/stat`; `None`
/// if it cannot be read. flin-bench reads the server's before and after a run, so a figure on a
/// shared machine comes with what the server itself spent, which other users' load moves less
/// than wall-clock throughput.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let fields = stat_fields(pid)?;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    ticks_to_seconds(ticks)
}

/// CPU time (user + system) of process `pid` and of every process under it, running or exited,
/// in seconds; `None` if `pid` cannot be read. PostgreSQL serves each connection from a process
/// of its own, a child of the postmaster, so the postmaster's own figure leaves out nearly all
/// its work. An exited child that its parent has reaped is in the parent's cutime and cstime,
/// so each process counts its own time and its reaped children's; a difference of two readings
/// is what the tree spent between them. For a process without children (flin-server) it is
/// [`process_cpu_seconds`].
pub fn process_tree_cpu_seconds(pid: u32) -> Option<f64> {
    // (pid, parent, ticks with reaped children) of every process readable now.
    let mut processes: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(fields) = stat_fields(id) else {
            continue;
        };
        // ppid is field 4 (1 after the name); utime, stime, cutime, cstime fields 14 to 17.
        let parent = fields.get(1).and_then(|f| f.parse().ok());
        let ticks: Option<u64> = fields
            .get(11..15)
            .and_then(|times| times.iter().map(|t| t.parse::<u64>().ok()).sum());
        if let (Some(parent), Some(ticks)) = (parent, ticks) {
            processes.push((id, parent, ticks));
        }
    }
    if !processes.iter().any(|(id, _, _)| *id == pid) {
        return None;
    }
    let mut tree = vec![pid];
    let mut total = 0;
    while let Some(member) = tree.pop() {
        for (id, parent, ticks) in &processes {
            if *id == member {
                total += ticks;
            }
            if *parent == member && *id != member {
                tree.push(*id);
            }
        }
    }
    ticks_to_seconds(total)
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

fn ticks_to_seconds(ticks: u64) -> Option<f64> {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    #[allow(unsafe_code)]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// `nproc`, the CPU model and the load average, for the header of every report.
pub fn machine_line() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "nproc={cpus} cpu=\"{model}\" loadavg=\"{}\"",
        load_average()
    )
}

/// The first three fields of `/proc/loadavg` (1, 5 and 15 minute load).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_sized() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            assert!(seen.insert(key(i)));
        }
        assert_eq!(key(7).len(), KEY_BYTES);
    }

    #[test]
    fn permuted_is_a_permutation() {
        let n = 1 << 12;
        let mut seen = vec![false; n as usize];
        for i in 0..n {
            let j = permuted(i, n) as usize;
            assert!(!seen[j]);
            seen[j] = true;
        }
    }

    #[test]
    fn reads_own_cpu_time() {
        let spent = process_cpu_seconds(std::process::id()).unwrap();
        assert!(spent >= 0.0);
        assert_eq!(process_cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn reads_a_process_tree_cpu_time() {
        let own = process_cpu_seconds(std::process::id()).unwrap();
        let tree = process_tree_cpu_seconds(std::process::id()).unwrap();
        // The tree holds this process (read later, so no less) and anything under it.
        assert!(tree >= own, "{tree} < {own}");
        assert_eq!(process_tree_cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn reads_rss() {
        assert!(proc_status_bytes("VmRSS").unwrap_or(1) > 0);
        let own = process_status_bytes(std::process::id(), "VmHWM");
        assert!(own.unwrap_or(1) > 0);
        assert!(!machine_line().is_empty());
    }
}
