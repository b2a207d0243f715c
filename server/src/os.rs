//! The few system calls the server makes beyond std's, outside signal handling: a thread's CPU
//! priority, and starting a file's writeback early. Both are hints: where one is refused or
//! not supported, nothing changes but timing.

use std::fs::File;

/// Raises the calling thread's nice value to `nice` (on Linux a nice value belongs to a
/// thread, not the process); a thread already at `nice` or above (the daemon started under
/// `nice`) stays where it is.
pub fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid, getpriority and setpriority take and return plain integers; no memory
    // is shared. (getpriority's -1 may also mean an error: then `nice` is set, as asked.)
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, nice.max(now));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Asks the kernel to start writing `file`'s dirty pages in `[offset, offset + len)` to disk
/// now, without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): a long sequential write
/// then reaches the disk in pieces as it goes, rather than all at its final fsync. Not a sync:
/// it promises nothing about durability.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for as long as `file` is borrowed; the call takes
        // integers only.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Nanoseconds on the clock leader leases are kept in: `CLOCK_BOOTTIME` on Linux, which,
/// unlike `Instant` (`CLOCK_MONOTONIC`), also counts the time the machine was suspended, so a
/// lease cannot outlive a suspend either. Only differences between two readings mean anything.
pub fn lease_clock_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `now` is, and reads nothing else.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
        assert_eq!(result, 0, "CLOCK_BOOTTIME is always there on Linux");
        now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(std::time::Instant::now);
        base.elapsed().as_nanos() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    /// This thread's nice value, as the kernel reports it (field 19 of its stat line; the
    /// command name, field 2, may hold spaces and ends at the last ')').
    #[test]
    fn the_lease_clock_moves_forward_by_at_least_the_time_slept() {
        let before = lease_clock_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let after = lease_clock_ns();
        assert!(after >= before + 20_000_000, "{before} -> {after}");
    }

    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lowered_thread_runs_at_the_nice_value_asked_and_the_others_do_not() {
        // Under `nice -n 15 cargo test` the thread stays at 15 rather than being raised.
        let before = own_nice();
        let lowered = std::thread::spawn(|| {
            lower_this_thread(10);
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 10.max(before));
        assert_eq!(own_nice(), before, "only the calling thread is lowered");
    }

    #[test]
    fn starting_writeback_leaves_the_bytes_as_written_whatever_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(dir.path().join("f"))
            .unwrap();
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        file.write_all(&bytes[..1 << 20]).unwrap();
        start_writeback(&file, 0, 1 << 20);
        file.write_all(&bytes[1 << 20..]).unwrap();
        start_writeback(&file, 1 << 20, 1 << 30); // past the end
        start_writeback(&file, 5, 0); // zero length: to the end of the file
        let mut read = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut read).unwrap();
        assert_eq!(read.len(), bytes.len());
        assert!(read == bytes);
    }
}
