//! Wall time and peak memory of a child process (`adledger export`, `import`, …).
//!
//! The peak is the child's `VmHWM` (its high-water mark of resident memory) read from
//! `/proc/PID/status` every [`POLL`] while it runs; the last reading before it exits is
//! its peak up to then, so a peak reached only in its final milliseconds could be
//! missed. (`getrusage(RUSAGE_CHILDREN)` would be exact, but it reports the largest of
//! every child waited for, the server included, and needs `unsafe` or another crate
//! whose features would rebuild half the workspace.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::rss;

/// How often the child's memory is read.
const POLL: Duration = Duration::from_millis(10);

/// What running a command cost, and what it printed.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From spawning the command to its exit.
    pub wall: Duration,
    /// The command's peak resident set size, in bytes.
    pub max_rss: u64,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Whether it exited 0.
    pub success: bool,
}

/// Runs `program args` (without the caller's `ADLEDGER_*` variables) and measures it.
pub fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Result<Measured, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("cannot create a scratch dir: {e}"))?;
    let (out_path, err_path) = (scratch.path().join("stdout"), scratch.path().join("stderr"));
    let file = |path: &Path| {
        std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
    };
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ADLEDGER_") {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let mut max_rss = 0;
    let status = loop {
        if let Some(rss) = rss::of(child.id()) {
            max_rss = max_rss.max(rss.peak);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("cannot wait for {}: {e}", program.display())),
        }
    };
    let wall = started.elapsed();
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    Ok(Measured {
        wall,
        max_rss,
        stdout: read(&out_path),
        stderr: read(&err_path),
        success: status.success(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child() {
        let measured = run(
            Path::new("/bin/sh"),
            &[
                std::ffi::OsStr::new("-c"),
                std::ffi::OsStr::new("sleep 0.1; echo done"),
            ],
        )
        .expect("measured");
        assert!(measured.success);
        assert_eq!(measured.stdout.trim(), "done");
        assert!(measured.wall >= Duration::from_millis(100));
        assert!(measured.max_rss > 0);
    }
}
