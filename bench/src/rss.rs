//! A running process's memory, read from `/proc/PID/status`.

/// Resident memory of a process now and at its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`, in bytes.
    pub now: u64,
    /// `VmHWM` (the peak since the process started), in bytes.
    pub peak: u64,
}

/// The memory of process `pid`; `None` if it is gone or `/proc` is not there.
pub fn of(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&status)
}

fn parse(status: &str) -> Option<Rss> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let kb = line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim();
            kb.parse::<u64>().ok().map(|kb| kb * 1024)
        })
    };
    Some(Rss {
        now: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_fields() {
        let status = "Name:\tadledger\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n";
        assert_eq!(
            parse(status),
            Some(Rss {
                now: 102_400 * 1024,
                peak: 204_800 * 1024
            })
        );
        assert_eq!(parse("Name:\tx\n"), None);
        let own = of(std::process::id()).expect("own /proc status");
        assert!(own.now > 0 && own.peak >= own.now);
    }
}
