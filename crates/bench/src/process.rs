//! The server's memory and CPU time, as the kernel counts them: `VmRSS` in `/proc/PID/status`,
//! user and system time in `/proc/PID/stat`.

use std::io;

/// Resident set size of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

/// User plus system CPU time process `pid` has used, in seconds.
pub(crate) fn cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CPU times"))?;
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_sec <= 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ticks as f64 / per_sec as f64)
}

/// The `VmRSS` of a `/proc/PID/status` text, in KiB.
fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `utime + stime` of a `/proc/PID/stat` text, in clock ticks. They are its 14th and 15th
/// fields; the 2nd, the command name in parentheses, may hold spaces and parentheses itself.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   10640 kB\n"), Some(10640));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_secs(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn cpu_times_follow_the_last_parenthesis() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 2269 0 0 0 731 95 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(826));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
    }
}
