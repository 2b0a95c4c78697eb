//! What every suite shares: start the real `adledger` binary on a loopback port on a
//! chosen backend, speak HTTP to it like a user with curl, run its CLI, kill it, restart it.
//!
//! Everything here is written from the HTTP contract (`docs/HTTP.md`) and the CLI
//! contract (`adledger serve --listen 127.0.0.1:0 --data-dir DIR [--deterministic SEED]`
//! prints exactly one line `adledger listening on http://<addr>` on stdout once bound),
//! never from the server's implementation.
//!
//! Rules the helper keeps so a test cannot hang or leak:
//! - all traffic goes to 127.0.0.1 only (the client ignores proxy variables);
//! - every wait is bounded (start-up, shutdown, each request);
//! - dropping a [`Server`] kills its process.
//!
//! - `aws`: the DynamoDB server the AWS variants run against, and a fresh ledger on it;
//! - `script`: the fixture command script and its golden journal tip.

// Not every helper is used by every suite yet; they are the suites' shared vocabulary.
#![allow(dead_code)]

pub mod aws;
pub mod fault_proxy;
pub mod identity;
pub mod script;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown (SIGTERM) may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for any single HTTP exchange (reads may wait up to 10 s for projections).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the server's stderr is kept for failure messages.
const STDERR_TAIL: usize = 64 * 1024;

/// The variable that names the binary under test instead of the one next to the tests.
pub const BIN_VAR: &str = "ADLEDGER_BIN";

/// The path of the binary under test: `ADLEDGER_BIN` when set, else `adledger` in the
/// target directory this test executable was built into (`target/<profile>/deps/e2e-…`
/// → `target/<profile>/adledger`). `CARGO_BIN_EXE_adledger` exists only for the tests
/// of the package that owns the binary, and a dev-dependency never builds a binary, so
/// `cargo test --workspace` (which builds it, for the server's own tests) or `cargo
/// build -p adledger` must have run. Panics with that fix when the binary is absent.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os(BIN_VAR).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{BIN_VAR}={} names no file; unset it to use the binary cargo built",
                path.display()
            );
            return path;
        }
        let exe = std::env::current_exe().expect("the path of this test executable");
        let profile_dir = exe
            .parent()
            .filter(|dir| dir.ends_with("deps"))
            .and_then(Path::parent)
            .unwrap_or_else(|| {
                panic!(
                    "this test executable ({}) is not in a cargo `target/<profile>/deps` \
                     directory; set {BIN_VAR} to the adledger binary to test",
                    exe.display()
                )
            });
        let path = profile_dir.join(format!("adledger{}", std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "the adledger binary is not built: {} is missing. Run `cargo build -p adledger` \
             (with the same profile and target directory as these tests) first, or run the \
             whole workspace with `cargo test --workspace`, which builds it; or set \
             {BIN_VAR} to the binary to test",
            path.display()
        );
        path
    })
}

/// Fails the test, saying why, unless it runs as root: `needs` says what for ("the
/// power-loss tests mount a FUSE file system"). Never a silent skip.
pub fn require_root(needs: &str) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    assert!(
        uid.split_whitespace().nth(1) == Some("0"),
        "{needs} and must run as root ({uid})"
    );
}

/// The `fixtures/` directory at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// The storage a server under test runs on. Suites that hold for every backend run
/// once per variant (see [`per_backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// sled and tantivy in the server's temporary data directory.
    Local,
    /// DynamoDB (the one named by `ADLEDGER_TEST_DYNAMODB_ENDPOINT`), a fresh table
    /// prefix per ledger, and tantivy in the data directory.
    Aws,
    /// Everything in the server process's memory (`--backend memory`): the same API with
    /// nothing stored, so only suites that never restart a server run on it.
    Memory,
}

impl Backend {
    /// The flags that select a fresh, empty ledger on this backend, for `serve` and every
    /// other subcommand (apart from `--data-dir`, which the helpers pass themselves). On
    /// AWS this runs `adledger aws init` on a table prefix no other test uses.
    pub async fn fresh_ledger(self, test: &str) -> Vec<String> {
        match self {
            Backend::Local => Vec::new(),
            Backend::Memory => vec!["--backend".to_string(), "memory".to_string()],
            Backend::Aws => {
                let endpoint = aws::endpoint();
                let prefix = aws::unique_prefix(test);
                aws::init(&endpoint, &prefix).await;
                aws::serve_args(&endpoint, &prefix)
            }
        }
    }
}

/// Like [`per_backend`] for suites that restart or kill a server and look at what
/// survived: `local::name` and `aws::name` only (the in-memory backend keeps nothing).
macro_rules! per_durable_backend {
    ($($name:ident),+ $(,)?) => {
        /// The suite on the local backend.
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Local).await
                }
            )+
        }
        /// The suite on the AWS backend, against DynamoDB Local.
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Aws).await
                }
            )+
        }
    };
}
pub(crate) use per_durable_backend;

/// Turns `async fn name(backend: Backend)` test bodies of the calling module into one
/// test per backend: `local::name`, `aws::name` and `memory::name`. The AWS variants
/// fail, saying how to run them, when `ADLEDGER_TEST_DYNAMODB_ENDPOINT` is not set.
macro_rules! per_backend {
    ($($name:ident),+ $(,)?) => {
        $crate::support::per_durable_backend!($($name),+);
        /// The suite on the in-memory backend.
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Memory).await
                }
            )+
        }
    };
}
pub(crate) use per_backend;

/// Declares the tests of a suite that is about one backend's storage, as
/// `<suite>::local::<test>`, so `cargo test -p adledger-tests -- ::local::` runs every
/// test that needs no DynamoDB.
macro_rules! local_only {
    ($($name:ident),+ $(,)?) => {
        /// The suite, on the local backend only.
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name().await
                }
            )+
        }
    };
}
pub(crate) use local_only;

/// Declares the tests of a suite that is about the AWS backend only, as
/// `<suite>::aws::<test>` (on 4 worker threads: the two-process test drives two servers).
macro_rules! aws_only {
    ($($name:ident),+ $(,)?) => {
        /// The suite, on the AWS backend only (DynamoDB Local).
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name().await
                }
            )+
        }
    };
}
pub(crate) use aws_only;

/// A loopback-only HTTP client with a bounded timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        // The server closes a keep-alive connection that sends nothing for its header-read
        // timeout (10 s by default); a request sent on it just then is lost in the race
        // (a test idling 10 s saw "error sending request"). Never reuse one that old.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("build the HTTP client")
}

/// A running `adledger serve` process.
pub struct Server {
    /// The server process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    /// The data directory, kept across [`Server::restart`].
    pub data_dir: PathBuf,
    /// The client the request helpers use.
    pub client: reqwest::Client,
    /// The backend the server runs on.
    pub backend: Backend,
    /// The flags that name this server's ledger to other subcommands (`verify`, …), from
    /// [`Backend::fresh_ledger`]; empty on the local backend.
    pub ledger_args: Vec<String>,
    /// Extra arguments after `serve --listen .. --data-dir ..` (e.g. `--deterministic 42`).
    extra_args: Vec<String>,
    /// Extra environment variables of the process (e.g. an AWS endpoint for a sink).
    env: Vec<(String, String)>,
    /// The working directory of the process (so no stray config file in the developer's
    /// current directory is picked up), and the owner of the data directory when the
    /// helper created it.
    home: tempfile::TempDir,
    /// The tail of the current process's stderr.
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts a server on a fresh ledger of `backend` and a fresh temporary data directory.
    pub async fn start(backend: Backend) -> Server {
        Server::start_on(backend, &[]).await
    }

    /// Starts a server with `--deterministic SEED` on a fresh ledger of `backend`.
    pub async fn start_deterministic(backend: Backend, seed: u64) -> Server {
        Server::start_on(backend, &["--deterministic".to_string(), seed.to_string()]).await
    }

    /// Starts a server on a fresh ledger of `backend`, with extra `serve` arguments.
    pub async fn start_on(backend: Backend, extra_args: &[String]) -> Server {
        let ledger_args = backend.fresh_ledger("server").await;
        let mut args = ledger_args.clone();
        args.extend_from_slice(extra_args);
        let mut server = Server::start_with(None, &args).await;
        server.backend = backend;
        server.ledger_args = ledger_args;
        server
    }

    /// Starts a server on `data_dir` (a fresh temporary directory when `None`) with extra
    /// arguments after the standard ones (which select the local backend unless they
    /// say otherwise; [`Server::backend`] then says `Local`, so prefer [`Server::start_on`]).
    pub async fn start_with(data_dir: Option<PathBuf>, extra_args: &[String]) -> Server {
        Server::start_with_env(data_dir, extra_args, &[]).await
    }

    /// Like [`Server::start_with`], with extra environment variables for the process
    /// (kept across [`Server::restart`]).
    pub async fn start_with_env(
        data_dir: Option<PathBuf>,
        extra_args: &[String],
        env: &[(String, String)],
    ) -> Server {
        let home = tempfile::Builder::new()
            .prefix("adledger-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        let data_dir = data_dir.unwrap_or_else(|| home.path().join("data"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (child, base_url) = spawn(&data_dir, home.path(), extra_args, env, &stderr).await;
        Server {
            child,
            base_url,
            data_dir,
            client: client(),
            backend: match extra_args
                .windows(2)
                .find(|w| w[0] == "--backend")
                .map(|w| w[1].as_str())
            {
                Some("aws") => Backend::Aws,
                Some("memory") => Backend::Memory,
                _ => Backend::Local,
            },
            ledger_args: Vec::new(),
            extra_args: extra_args.to_vec(),
            env: env.to_vec(),
            home,
            stderr,
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child
            .id()
            .expect("the server process has not been reaped")
    }

    /// The full URL of `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        assert!(path_and_query.starts_with('/'), "path must start with /");
        format!("{}{}", self.base_url, path_and_query)
    }

    /// The captured tail of the server's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// SIGKILL, then reap the process (bounded).
    pub async fn kill_9(&mut self) {
        if self.child.try_wait().expect("poll the server").is_some() {
            return;
        }
        self.child.start_kill().expect("send SIGKILL");
        let status = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .expect("the server did not die within 30 s of SIGKILL")
            .expect("wait for the server");
        assert!(
            !status.success(),
            "a SIGKILLed server cannot exit 0: {status:?}"
        );
    }

    /// SIGTERM, wait (bounded) and assert the process exited 0.
    pub async fn stop(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the server") {
            panic!(
                "the server had already exited ({status:?}) before stop()\n--- stderr ---\n{}",
                self.stderr_tail()
            );
        }
        send_signal(self.pid(), "TERM");
        let status = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM\n--- stderr ---\n{}",
                    self.stderr_tail()
                );
            }
        };
        assert!(
            status.success(),
            "graceful shutdown (SIGTERM) must exit 0, got {status:?}\n--- stderr ---\n{}",
            self.stderr_tail()
        );
    }

    /// Kills the process if it still runs (SIGKILL) and starts a new one on the same
    /// data directory with the same arguments. The new process gets a new port.
    pub async fn restart(&mut self) {
        self.kill_9().await;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (child, base_url) = spawn(
            &self.data_dir,
            self.home.path(),
            &self.extra_args,
            &self.env,
            &stderr,
        )
        .await;
        self.child = child;
        self.base_url = base_url;
        self.stderr = stderr;
    }

    /// A request builder for `path_and_query` on this server.
    pub fn request(&self, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path_and_query))
    }

    /// Sends a request and reads the whole response. Panics (with the server's stderr)
    /// when no HTTP response arrives at all.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        match fetch(rb).await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "no HTTP response from the server: {e}\n--- stderr ---\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// GET `path_and_query`.
    pub async fn get(&self, path_and_query: &str) -> Resp {
        self.send(self.request(Method::GET, path_and_query)).await
    }

    /// POST a JSON value.
    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(json_body(self.request(Method::POST, path), body))
            .await
    }

    /// PATCH a JSON value.
    pub async fn patch_json(&self, path: &str, body: &Value) -> Resp {
        self.send(json_body(self.request(Method::PATCH, path), body))
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// Creates an ad and asserts 201; returns the ad.
    pub async fn create_ad(&self, publisher: &str, body: &Value) -> Value {
        let resp = self
            .post_json(&format!("/publisher/{publisher}/ad"), body)
            .await;
        resp.expect_status(StatusCode::CREATED);
        resp.json()
    }

    /// Lists all of a publisher's ads (one page of up to 1000).
    pub async fn list(&self, publisher: &str) -> Vec<Value> {
        let resp = self
            .get(&format!("/publisher/{publisher}/ad?limit=1000"))
            .await;
        resp.expect_status(StatusCode::OK);
        resp.json()
            .as_array()
            .unwrap_or_else(|| panic!("the list is not a JSON array: {}", resp.text))
            .clone()
    }

    /// Runs `adledger <args>` (not `serve`) to completion with a bounded timeout.
    pub async fn run_cli(args: &[&str]) -> std::process::Output {
        run_cli(args).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `kill_on_drop` is set too; this makes the intent explicit and immediate.
        let _ = self.child.start_kill();
    }
}

/// Sets a JSON body with `Content-Type: application/json`.
pub fn json_body(rb: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    rb.header("content-type", "application/json")
        .body(serde_json::to_vec(body).expect("serialize a JSON body"))
}

/// Runs `adledger <args>` to completion (60 s at most), capturing its output.
pub async fn run_cli(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    scrub_env(&mut cmd);
    let child = cmd.spawn().expect("spawn the adledger binary");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`adledger {}` did not finish within 60 s", args.join(" ")))
        .expect("run the adledger binary")
}

/// Asserts that `acked` (event ids in arrival order) covers `expected` in order without
/// ever skipping: each arrival is the next expected event or one already delivered (a
/// redelivery). Answers how many redeliveries there were.
pub fn assert_no_gap<T>(acked: &[T], expected: &[T]) -> usize
where
    T: Eq + std::hash::Hash + std::fmt::Debug,
{
    let index: std::collections::HashMap<&T, usize> =
        expected.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut delivered = 0usize; // the prefix of `expected` delivered so far
    let mut duplicates = 0usize;
    for id in acked {
        let at = *index
            .get(id)
            .unwrap_or_else(|| panic!("unexpected event {id:?}"));
        if at == delivered {
            delivered += 1;
        } else {
            assert!(
                at < delivered,
                "gap: {id:?} arrived before {:?}",
                expected[delivered]
            );
            duplicates += 1;
        }
    }
    assert_eq!(delivered, expected.len(), "not every event was delivered");
    duplicates
}

/// Serves `app` on a fresh loopback port for the rest of the test (a webhook receiver,
/// say); answers its base URL, `http://127.0.0.1:PORT`.
pub async fn serve_loopback(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("the bound address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Starts `adledger <args>` with no input and its output discarded, for a test that
/// interrupts it (kill -9, a power cut); killed if dropped.
pub fn spawn_cli_quiet<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> tokio::process::Child {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    scrub_env(&mut cmd);
    cmd.spawn().expect("spawn the adledger binary")
}

/// `--auth none` for a server on the AWS backend whose arguments choose no auth mode: the
/// AWS backend refuses to start without an explicit choice, and a loopback test rig is the
/// case `--auth none` exists for. Suites about identity pass their own `--auth`.
fn open_test_rig(args: &[String]) -> Vec<String> {
    let aws = args
        .windows(2)
        .any(|w| w[0] == "--backend" && w[1] == "aws");
    let chosen = args
        .iter()
        .any(|a| a == "--auth" || a.starts_with("--auth="));
    if aws && !chosen {
        vec!["--auth".to_string(), "none".to_string()]
    } else {
        Vec::new()
    }
}

/// Removes `ADLEDGER_*` variables (they would override the defaults the tests rely on),
/// so each run is hermetic.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ADLEDGER_") {
            cmd.env_remove(&key);
        }
    }
}

/// Sends `kill -s SIG pid` (the workspace forbids `unsafe`, so no direct `libc::kill`).
fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .expect("run kill(1)");
    assert!(
        status.success(),
        "kill -s {signal} {pid} failed: {status:?}"
    );
}

async fn spawn(
    data_dir: &Path,
    cwd: &Path,
    extra_args: &[String],
    env: &[(String, String)],
    stderr_buf: &Arc<Mutex<Vec<u8>>>,
) -> (Child, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra_args)
        .args(open_test_rig(extra_args))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    scrub_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().expect("spawn `adledger serve`");

    // Keep a bounded tail of stderr for failure messages; drain it forever so the server
    // never blocks on a full pipe.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let tail = Arc::clone(stderr_buf);
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut buf = tail.lock().expect("stderr lock");
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > STDERR_TAIL {
                        let excess = buf.len() - STDERR_TAIL;
                        buf.drain(..excess);
                    }
                }
            }
        }
    });

    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let base_url = loop {
        let next = tokio::time::timeout_at(deadline, lines.next_line()).await;
        let line = match next {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                let why = match next {
                    Err(_) => format!("no `listening on` line within {START_TIMEOUT:?}"),
                    _ => "stdout closed before a `listening on` line".to_string(),
                };
                let _ = child.start_kill();
                let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => format!("unknown ({e})"),
                    Err(_) => "still running 5 s after SIGKILL".to_string(),
                };
                // Give the stderr drain a moment to collect the last bytes (bounded).
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "`adledger serve` failed to start: {why}\nexit: {status}\n\
                     --- stdout ---\n{}\n--- stderr ---\n{}",
                    seen.join("\n"),
                    String::from_utf8_lossy(&stderr_buf.lock().expect("stderr lock"))
                );
            }
        };
        if let Some(url) = line.strip_prefix("adledger listening on ") {
            let url = url.trim().trim_end_matches('/').to_string();
            assert!(
                url.starts_with("http://127.0.0.1:"),
                "the server must listen on 127.0.0.1 as asked, printed {line:?}"
            );
            assert!(
                seen.is_empty(),
                "the `listening on` line must be the only stdout line; before it came {seen:?}"
            );
            break url;
        }
        seen.push(line);
        assert!(
            seen.len() < 100,
            "too many stdout lines without `listening on`: {seen:?}"
        );
    };
    // Drain (and ignore) anything else on stdout so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base_url)
}

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body, as text (lossy for non-UTF-8).
    pub text: String,
}

/// Sends a request and reads the whole response.
pub async fn fetch(rb: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
    let resp = rb.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await?;
    Ok(Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

impl Resp {
    /// Panics with the body when the status is not `expected`.
    pub fn expect_status(&self, expected: StatusCode) -> &Resp {
        assert_eq!(
            self.status, expected,
            "unexpected status; body: {}\nheaders: {:?}",
            self.text, self.headers
        );
        self
    }

    /// The body parsed as JSON (numbers keep their exact text: serde_json's
    /// `arbitrary_precision` is on in this workspace).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}); status {}; body: {:?}",
                self.status, self.text
            )
        })
    }

    /// A header as a string, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is visible ASCII").to_string())
    }

    /// A header that must be present.
    pub fn must_header(&self, name: &str) -> String {
        self.header(name).unwrap_or_else(|| {
            panic!(
                "missing header `{name}` (status {}); headers: {:?}",
                self.status, self.headers
            )
        })
    }

    /// Asserts `Content-Type` is `application/json` (parameters such as charset allowed).
    pub fn assert_json_content_type(&self) {
        let ct = self.must_header("content-type");
        assert!(
            media_type(&ct) == "application/json",
            "Content-Type must be application/json, got {ct:?}"
        );
    }

    /// Asserts a non-empty `x-request-id` header and returns it.
    pub fn request_id(&self) -> String {
        let id = self.must_header("x-request-id");
        assert!(!id.trim().is_empty(), "x-request-id is empty");
        id
    }

    /// The `X-Ledger-Sequence` header of a write, as a number.
    pub fn ledger_sequence(&self) -> u64 {
        let raw = self.must_header("x-ledger-sequence");
        raw.trim()
            .parse()
            .unwrap_or_else(|_| panic!("X-Ledger-Sequence is not a number: {raw:?}"))
    }

    /// Asserts an RFC 9457 problem document with `status` and returns it: the status
    /// code, `Content-Type: application/problem+json`, the `status` member, a non-empty
    /// `detail` and `title`, and (when present) `requestId` equal to `x-request-id`.
    pub fn expect_problem(&self, status: StatusCode) -> Value {
        self.expect_status(status);
        let ct = self.must_header("content-type");
        assert_eq!(
            media_type(&ct),
            "application/problem+json",
            "an error must be application/problem+json (status {status}); body: {}",
            self.text
        );
        let body = self.json();
        assert_eq!(
            body["status"].as_u64(),
            Some(u64::from(status.as_u16())),
            "problem `status` member must equal the HTTP status; body: {body}"
        );
        let detail = body["detail"].as_str().unwrap_or("");
        assert!(
            !detail.trim().is_empty(),
            "problem `detail` must be a non-empty sentence; body: {body}"
        );
        let title = body["title"].as_str().unwrap_or("");
        assert!(
            !title.trim().is_empty(),
            "problem `title` missing; body: {body}"
        );
        if let (Some(in_body), Some(in_header)) =
            (body["requestId"].as_str(), self.header("x-request-id"))
        {
            assert_eq!(
                in_body, in_header,
                "problem `requestId` must be the response's x-request-id"
            );
        }
        body
    }

    /// Asserts a 422 problem naming `field`.
    pub fn expect_invalid_field(&self, field: &str) -> Value {
        let body = self.expect_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body["field"].as_str(),
            Some(field),
            "422 must name the invalid field `{field}`; body: {body}"
        );
        body
    }

    /// The raw JSON text of the first value of member `key` in the body (no parsing
    /// into a float): e.g. `19.99` for `{"price": 19.99}`.
    pub fn raw_member(&self, key: &str) -> Option<String> {
        raw_member(&self.text, key)
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The raw text of the scalar value of the first member named `key` in JSON `text`.
pub fn raw_member(text: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let start = text.find(&needle)? + needle.len();
    let rest = text[start..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// All raw texts of the scalar values of members named `key` in JSON `text`.
pub fn raw_members(text: &str, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\"");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let after = from + pos + needle.len();
        if let Some(v) = raw_member(&text[from + pos..], key) {
            out.push(v);
        }
        from = after;
    }
    out
}

/// Whether `s` looks like a ULID: 26 characters of Crockford base32, first one ≤ '7'.
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.chars()
            .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c)))
        && s.as_bytes()[0] <= b'7'
}

/// Parses an RFC 3339 time, panicking with context.
pub fn parse_time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("not an RFC 3339 time: {s:?} ({e})"))
        .with_timezone(&chrono::Utc)
}

/// Formats a time as RFC 3339 with milliseconds and `Z`.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The target of a `Link: <…>; rel="next"` header, if any.
pub fn next_link(link: Option<&str>) -> Option<String> {
    let link = link?;
    for part in link.split(',') {
        let part = part.trim();
        let (target, params) = part.strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

/// A small deterministic PRNG (xorshift64*) for generated inputs, so a failure
/// reproduces from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is mapped to a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The seed README's create body, byte for byte (its curl `--data-raw`).
pub const SEED_CREATE_BODY: &str = r#"{
  "adTitle": "awesome title",
  "adDescription": "awesome description",
  "price": 10,
  "currency": "",
  "category": "awesome category",
  "tags": [
      "awesome",
      "category"
  ]
}"#;

/// The seed README's update body, byte for byte (its curl `--data-raw`).
pub const SEED_UPDATE_BODY: &str = r#"{
  "adTitle": "awesome title",
  "adDescription": "awesome description",
  "price": 150,
  "currency": "",
  "category": "awesome category",
  "tags": [
      "awesome",
      "category"
  ]
}"#;

/// [`SEED_CREATE_BODY`] as a JSON value.
pub fn seed_create_body() -> Value {
    serde_json::from_str(SEED_CREATE_BODY).expect("seed create body")
}

/// A run's seed: the number in the environment variable `var`, or one from the clock.
/// Printed either way with the line that replays it, so a failure seen once can be rerun.
pub fn seed_from_env(var: &str, what: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{what} seed: {seed} (rerun with {var}={seed})");
    seed
}
