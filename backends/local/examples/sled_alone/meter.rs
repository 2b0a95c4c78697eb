//! What each measurement reports: wall time, this process's CPU time (every thread,
//! sled's own included) and its peak RSS since the measurement started.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

/// A measurement under way.
pub struct Meter {
    started: Instant,
    cpu: (f64, f64),
    rss_kb: u64,
}

/// What one measurement cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub seconds: f64,
    pub user: f64,
    pub system: f64,
    /// Peak RSS since [`Meter::start`], kB (the whole process's if the kernel cannot
    /// reset the peak).
    pub peak_kb: u64,
    /// RSS when it started, kB.
    pub start_kb: u64,
}

impl Meter {
    /// Starts measuring; resets the process's peak RSS to its current RSS, so that the
    /// peak read at the end is this measurement's.
    pub fn start() -> Meter {
        // "5" resets VmHWM (Linux 4.0 and later); without it the peak is the process's.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Meter {
            started: Instant::now(),
            cpu: cpu_seconds(),
            rss_kb: status_kb("VmRSS:"),
        }
    }

    pub fn stop(&self) -> Cost {
        let (user, system) = cpu_seconds();
        Cost {
            seconds: self.started.elapsed().as_secs_f64(),
            user: user - self.cpu.0,
            system: system - self.cpu.1,
            peak_kb: status_kb("VmHWM:"),
            start_kb: self.rss_kb,
        }
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s wall, {:.2}+{:.2} s CPU, peak RSS {:.0} MB (+{:.0} MB)",
            self.seconds,
            self.user,
            self.system,
            self.peak_kb as f64 / 1024.0,
            self.peak_kb.saturating_sub(self.start_kb) as f64 / 1024.0
        )
    }
}

/// User and system CPU seconds of this process (`/proc/self/stat` fields 14 and 15, in
/// ticks of 10 ms).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // Field 3 is the first after the name: field n is at index n - 3.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user / 100.0, system / 100.0),
        _ => (0.0, 0.0),
    }
}

/// A `kB` line of `/proc/self/status`.
pub fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)
                    .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or_default()
}

/// Allocated bytes of every file under `dir`.
pub fn allocated(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            allocated(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

/// A scratch directory beside `data_dir` (the same file system), removed when dropped.
pub fn scratch_beside(data_dir: &Path) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("sled-alone-")
        .tempdir_in(data_dir.parent().unwrap_or(Path::new(".")))
}
