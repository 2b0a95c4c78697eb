//! The PostgreSQL peer of the creates phase: durable appends of the same ~1 KB ad JSON to
//! an append-only event table with a unique `(stream_id, version)`, by `pgbench` with the
//! same number of clients — the model of an event store on PostgreSQL (Marten's
//! `mt_events`), with no HTTP, no hash chain and no read models.
//!
//! The cluster is private to the run: `initdb` in a temporary directory, the server
//! listening only on a unix socket in that directory, `fsync=on` and
//! `synchronous_commit=on` (checked with `SHOW` before measuring), stopped and removed
//! afterwards. PostgreSQL refuses to run as root, so when the bench is root every
//! PostgreSQL program runs as the `postgres` user through `runuser`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The table, its unique key and the statement each pgbench transaction runs.
const SCHEMA: &str = "\
CREATE TABLE ad_events (
    seq_id bigserial PRIMARY KEY,
    stream_id uuid NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    timestamp timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);";

/// The socket's port number (no TCP listener: only the file name depends on it).
const PORT: &str = "5432";
/// The unprivileged user PostgreSQL runs as when the bench is root.
const SERVER_USER: &str = "postgres";

/// What pgbench measured.
#[derive(Debug, Clone)]
pub struct Appends {
    /// Transactions (appends) per second, without connection set-up.
    pub tps: f64,
    /// Appends made.
    pub transactions: u64,
    /// pgbench's average latency, in milliseconds.
    pub latency_ms: Option<f64>,
    /// `SELECT version()`, and the durability settings in force.
    pub server: String,
}

/// Runs `clients` pgbench clients making `transactions` appends in all of `ad_json`, on
/// a private cluster made from the PostgreSQL programs in `bin` (found when `None`).
pub fn appends(
    bin: Option<&Path>,
    clients: u64,
    transactions: u64,
    ad_json: &str,
) -> Result<Appends, String> {
    let bin = match bin {
        Some(dir) => dir.to_path_buf(),
        None => find_bin().ok_or(
            "PostgreSQL is not installed (no initdb found in /usr/lib/postgresql/*/bin or on \
             PATH); see bench/README.md, or pass --pg-bin DIR",
        )?,
    };
    let cluster = Cluster::start(&bin)?;
    let measured = cluster.pgbench(clients, transactions, ad_json);
    let stopped = cluster.stop();
    let appends = measured?;
    stopped?;
    Ok(appends)
}

/// The newest `/usr/lib/postgresql/N/bin` (Debian's layout), else the directory of
/// `initdb` on `PATH`.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pgbench").is_file())
    })
}

/// A private cluster, stopped (if still running) when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    running: bool,
}

impl Cluster {
    fn start(bin: &Path) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("adledger-bench-pg-")
            .tempdir()
            .map_err(|e| format!("postgres: cannot create a scratch directory: {e}"))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("postgres: cannot restrict {}: {e}", dir.path().display()))?;
        if running_as_root() {
            let (uid, gid) = server_user().ok_or(
                "postgres: the bench runs as root and PostgreSQL refuses to, but there is \
                 no `postgres` user in /etc/passwd to run it as",
            )?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                format!(
                    "postgres: cannot hand {} to postgres: {e}",
                    dir.path().display()
                )
            })?;
        }
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            running: false,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D".into(),
                data.clone().into(),
                "-U".into(),
                "postgres".into(),
                "-A".into(),
                "trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
        )?;
        let options = format!(
            "-c listen_addresses= -k {} -p {PORT} -c fsync=on -c synchronous_commit=on \
             -c full_page_writes=on -c max_connections=200",
            cluster.dir.path().display()
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D".into(),
                data.into(),
                "-l".into(),
                cluster.dir.path().join("server.log").into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "-o".into(),
                options.into(),
                "start".into(),
            ],
        )?;
        cluster.running = true;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn connection(&self) -> Vec<OsString> {
        vec![
            "-h".into(),
            self.dir.path().into(),
            "-p".into(),
            PORT.into(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    fn sql(&self, statement: &str) -> Result<String, String> {
        let mut args = self.connection();
        args.extend(
            [
                "-d",
                "postgres",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ]
            .map(OsString::from),
        );
        self.run("psql", &args)
    }

    fn pgbench(&self, clients: u64, transactions: u64, ad_json: &str) -> Result<Appends, String> {
        self.sql(SCHEMA)?;
        let settings = self.sql("SHOW fsync")? + "/" + &self.sql("SHOW synchronous_commit")?;
        if settings.split('/').any(|s| s.trim() != "on") {
            return Err(format!(
                "postgres: fsync/synchronous_commit are {settings}, not on/on"
            ));
        }
        let version = self.sql("SELECT version()")?;
        let script = self.dir.path().join("append.sql");
        // Dollar quoting: the JSON needs no escaping (it cannot contain `$ad$`).
        let statement = format!(
            "INSERT INTO ad_events (stream_id, version, type, data) \
             VALUES (gen_random_uuid(), 0, 'AdCreated', $ad${}$ad$::jsonb);\n",
            ad_json.replace("$ad$", "")
        );
        std::fs::write(&script, statement)
            .map_err(|e| format!("postgres: cannot write {}: {e}", script.display()))?;
        let clients = clients.max(1);
        let per_client = transactions.div_ceil(clients).max(1);
        let mut args = self.connection();
        args.extend(
            [
                "-n".to_string(),
                "-c".into(),
                clients.to_string(),
                "-j".into(),
                "2".into(),
                "-t".into(),
                per_client.to_string(),
                "-M".into(),
                "prepared".into(),
                "-f".into(),
                script.display().to_string(),
                "postgres".into(),
            ]
            .map(OsString::from),
        );
        let output = self.run("pgbench", &args)?;
        let mut appends = parse_pgbench(&output)?;
        let stored: u64 = self
            .sql("SELECT count(*) FROM ad_events")?
            .trim()
            .parse()
            .map_err(|e| format!("postgres: count(*) is not a number: {e}"))?;
        if stored != appends.transactions {
            return Err(format!(
                "postgres: pgbench reported {} appends but the table holds {stored}",
                appends.transactions
            ));
        }
        appends.server = format!("{}; fsync=on, synchronous_commit=on", version.trim());
        Ok(appends)
    }

    fn stop(mut self) -> Result<(), String> {
        self.running = false;
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D".into(),
                data.into(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "stop".into(),
            ],
        )
        .map(drop)
    }

    /// Runs PostgreSQL program `name` (as `postgres` when the bench is root); its stdout.
    fn run(&self, name: &str, args: &[OsString]) -> Result<String, String> {
        let program = self.bin.join(name);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVER_USER, "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("postgres: cannot run {}: {e}", program.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first: Vec<&str> = stderr.lines().take(6).collect();
            Err(format!(
                "postgres: {name} failed ({}): {}{}",
                output.status,
                first.join("\n  "),
                self.log_tail()
            ))
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail: Vec<String> = lines[lines.len().saturating_sub(6)..]
            .iter()
            .map(|line| line.chars().take(300).collect())
            .collect();
        let tail = tail.join("\n  ");
        if tail.is_empty() {
            String::new()
        } else {
            format!("\n  server log: {tail}")
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".into(),
                    data.into(),
                    "-m".into(),
                    "immediate".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            );
            // Let the postmaster's children exit before the directory goes.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is its effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of [`SERVER_USER`], from `/etc/passwd`.
fn server_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&passwd, SERVER_USER)
}

fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

/// Reads tps, transaction count and latency from pgbench's report.
fn parse_pgbench(output: &str) -> Result<Appends, String> {
    let value_after = |prefix: &str| {
        output.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(prefix)?;
            rest.split_whitespace().next().map(str::to_string)
        })
    };
    let tps = value_after("tps = ")
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or_else(|| format!("postgres: no `tps = ` in pgbench's output:\n{output}"))?;
    let transactions = value_after("number of transactions actually processed: ")
        .and_then(|t| t.split('/').next().and_then(|n| n.parse::<u64>().ok()))
        .ok_or_else(|| format!("postgres: no transaction count in pgbench's output:\n{output}"))?;
    let latency_ms = value_after("latency average = ").and_then(|t| t.parse().ok());
    if let Some(failed) = value_after("number of failed transactions: ")
        && failed != "0"
    {
        return Err(format!(
            "postgres: {failed} pgbench transactions failed:\n{output}"
        ));
    }
    Ok(Appends {
        tps,
        transactions,
        latency_ms,
        server: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
transaction type: append.sql
scaling factor: 1
query mode: prepared
number of clients: 64
number of threads: 2
maximum number of tries: 1
number of transactions per client: 100
number of transactions actually processed: 6400/6400
number of failed transactions: 0 (0.000%)
latency average = 7.513 ms
initial connection time = 40.123 ms
tps = 8518.463 (without initial connection time)
";

    #[test]
    fn finds_the_server_user() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
    }

    #[test]
    fn reads_pgbench_report() {
        let appends = parse_pgbench(REPORT).expect("report");
        assert!((appends.tps - 8518.463).abs() < 1e-9);
        assert_eq!(appends.transactions, 6400);
        assert_eq!(appends.latency_ms, Some(7.513));
        assert!(parse_pgbench("nothing").is_err());
        let failed = REPORT.replace("failed transactions: 0", "failed transactions: 3");
        assert!(parse_pgbench(&failed).is_err());
    }
}
