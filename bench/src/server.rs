//! The `adledger` server the bench starts, and stops.
//!
//! `adledger serve --listen 127.0.0.1:0 --data-dir DIR --backend local` is started with
//! every `ADLEDGER_*` variable removed from its environment, so the bench always
//! measures the same configuration whatever the caller's shell holds. Its one stdout
//! line, `adledger listening on http://ADDR`, gives the port; its stderr (one log line
//! per request at the default `RUST_LOG`) goes to a file in a scratch directory, whose
//! tail is shown when anything goes wrong. The child is killed if the bench drops it
//! without stopping it (any early error); [`ServerProcess::stop`] sends SIGTERM and
//! requires exit code 0 within a timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::target;

/// Lines of the server's log shown after a failure.
const LOG_TAIL_LINES: usize = 20;

/// A running `adledger serve` child process.
#[derive(Debug)]
pub struct ServerProcess {
    /// Declared before `scratch`: the child is killed (if still running) before its
    /// data directory is removed.
    child: Child,
    pid: u32,
    addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    scratch: TempDir,
}

/// The default server binary: `adledger` beside the bench's own executable.
pub fn default_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the bench's own executable: {e}"))?;
    Ok(exe.with_file_name("adledger"))
}

impl ServerProcess {
    /// Starts `binary` on `127.0.0.1:0` with `data_dir` (a fresh scratch directory when
    /// `None`) and waits up to `startup_timeout` for it to announce its address.
    pub async fn start(
        binary: &Path,
        data_dir: Option<&Path>,
        startup_timeout: Duration,
    ) -> Result<ServerProcess, String> {
        ServerProcess::start_with(binary, data_dir, startup_timeout, &[]).await
    }

    /// [`start`](ServerProcess::start) with more `serve` flags (the feed phase's admin
    /// token).
    pub async fn start_with(
        binary: &Path,
        data_dir: Option<&Path>,
        startup_timeout: Duration,
        extra: &[&str],
    ) -> Result<ServerProcess, String> {
        if !binary.is_file() {
            return Err(format!(
                "the server binary {} does not exist; build it with \
                 `cargo build --release -p adledger` (or pass --server-bin PATH, or \
                 --url to drive a running server)",
                binary.display()
            ));
        }
        let scratch = tempfile::Builder::new()
            .prefix("adledger-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
        let data_dir = match data_dir {
            Some(dir) => dir.to_path_buf(),
            None => scratch.path().join("data"),
        };
        let log_path = scratch.path().join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;

        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--backend",
                "local",
                "--data-dir",
            ])
            .arg(&data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ADLEDGER_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = child
            .id()
            .ok_or("the server exited before its process id could be read")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the server's stdout was not captured")?;
        let mut lines = BufReader::new(stdout).lines();

        let announced = tokio::time::timeout(startup_timeout, lines.next_line()).await;
        let failure = match announced {
            Ok(Ok(Some(line))) => match target::announced_addr(&line) {
                Ok(addr) => {
                    // Nothing more is expected on stdout; drain it so the server can
                    // never block on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(ServerProcess {
                        child,
                        pid,
                        addr,
                        data_dir,
                        log_path,
                        scratch,
                    });
                }
                Err(e) => e,
            },
            Ok(Ok(None)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                match status {
                    Ok(Ok(status)) => {
                        format!("the server exited ({status}) before announcing its address")
                    }
                    _ => "the server closed its stdout before announcing its address".into(),
                }
            }
            Ok(Err(e)) => format!("cannot read the server's stdout: {e}"),
            Err(_) => format!(
                "the server did not announce its address within {}s",
                startup_timeout.as_secs()
            ),
        };
        let _ = child.kill().await;
        Err(format!("{failure}\n{}", tail(&log_path, LOG_TAIL_LINES)))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The data directory the server was given.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The last lines of the server's stderr, for an error message.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path, LOG_TAIL_LINES)
    }

    /// Sends SIGTERM and waits up to `timeout` for exit code 0; kills the server if it
    /// does not exit in time. The scratch directory is removed either way.
    pub async fn stop(mut self, timeout: Duration) -> Result<(), String> {
        let result = self.terminate(timeout).await;
        let result = result.map_err(|e| format!("{e}\n{}", self.log_tail()));
        drop(self.child);
        drop(self.scratch);
        result
    }

    /// Kills the server at once (after an early error).
    pub async fn abort(mut self) {
        let _ = self.child.kill().await;
    }

    async fn terminate(&mut self, timeout: Duration) -> Result<(), String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!(
                "the server had already exited ({status}) before the bench stopped it"
            ));
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdin(Stdio::null())
            .status()
            .await
            .map_err(|e| format!("cannot run `kill -TERM {}`: {e}", self.pid))?;
        if !sent.success() {
            let _ = self.child.kill().await;
            return Err(format!("`kill -TERM {}` failed ({sent})", self.pid));
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => exited_cleanly(status),
            Ok(Err(e)) => Err(format!("cannot wait for the server to exit: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "the server did not exit within {}s of SIGTERM; killed it",
                    timeout.as_secs()
                ))
            }
        }
    }
}

fn exited_cleanly(status: ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the server exited with {status} after SIGTERM, not 0"
        ))
    }
}

/// The last `lines` lines of the log at `path` (read from its last 64 KiB), for an
/// error message.
fn tail(path: &Path, lines: usize) -> String {
    match read_end(path, 64 * 1024) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            // The log lives in the scratch directory, removed when the bench stops, so
            // its path is not worth printing.
            let mut out = String::from("last lines of the server's stderr:");
            for line in &all[start..] {
                out.push_str("\n  ");
                out.push_str(line);
            }
            out
        }
        Err(e) => format!("(the server's stderr log cannot be read: {e})"),
    }
}

/// At most the last `limit` bytes of the file at `path`.
fn read_end(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        let out = tail(&path, 3);
        assert!(out.ends_with("\n  line 97\n  line 98\n  line 99"), "{out}");
        assert!(tail(&dir.path().join("missing"), 3).contains("cannot be read"));
    }

    #[tokio::test]
    async fn a_missing_binary_says_how_to_build_it() {
        let error = ServerProcess::start(
            Path::new("/nonexistent/adledger"),
            None,
            Duration::from_secs(1),
        )
        .await
        .expect_err("missing binary");
        assert!(
            error.contains("cargo build --release -p adledger"),
            "{error}"
        );
    }
}
