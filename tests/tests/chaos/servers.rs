//! The chaos test's own servers, so that killing them disturbs no other test: a private
//! Postgres cluster, a private NATS server with JetStream, and the services as OS processes of
//! the workspace's binaries (so `kill -9` is real).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// What the chaos test needs from the machine, or why it cannot run.
pub fn missing_binaries() -> Option<String> {
    let mut missing = Vec::new();
    for tool in ["initdb", "pg_ctl"] {
        if !Path::new(PG_BIN).join(tool).exists() {
            missing.push(format!("{PG_BIN}/{tool}"));
        }
    }
    for tool in ["nats-server", "runuser"] {
        if which(tool).is_none() {
            missing.push(tool.to_owned());
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.exists())
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A log file for a child's output in `dir`, appended to across restarts.
fn log_file(dir: &Path, name: &str) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("a log file")
}

/// How many lines of process `name`'s log contain `needle`.
pub fn log_lines_with(dir: &Path, name: &str, needle: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}.log")))
        .map(|log| log.lines().filter(|line| line.contains(needle)).count())
        .unwrap_or(0)
}

/// The test's scratch directory, removed when dropped (unless the test failed, for the logs).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("loyalty-chaos-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("chaos: logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A private Postgres 15 cluster, run as the `postgres` user.
pub struct Postgres {
    data: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn init(scratch: &Path) -> Self {
        let data = scratch.join("pg");
        std::fs::create_dir_all(&data).expect("the cluster's directory");
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data));
        run(as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        let port = free_port();
        let settings = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 200\n",
            data.display()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("writing postgresql.conf");
        let postgres = Self { data, port };
        postgres.start();
        postgres
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the cluster and returns once it accepts connections (after crash recovery).
    pub fn start(&self) {
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-w", "-t", "60", "start"]));
    }

    /// A crash: every server process stops at once, without a checkpoint.
    pub fn crash(&self) {
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn as_postgres(tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(tool))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A child process the test kills and restarts.
pub struct Process {
    name: String,
    command: Box<dyn Fn() -> Command + Send>,
    logs: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn new(name: &str, logs: &Path, command: impl Fn() -> Command + Send + 'static) -> Self {
        Self {
            name: name.to_owned(),
            command: Box::new(command),
            logs: logs.to_owned(),
            child: None,
        }
    }

    pub fn start(&mut self) {
        let mut command = (self.command)();
        command
            .stdout(log_file(&self.logs, &self.name))
            .stderr(log_file(&self.logs, &self.name));
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", self.name));
        self.child = Some(child);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process ended by itself (not killed by the test); restarts it then.
    pub fn exited_by_itself(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(format!("{} exited by itself ({status})", self.name))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private NATS server with JetStream on disk.
pub fn nats_server(scratch: &Path, port: u16) -> Process {
    let store = scratch.join("nats");
    let binary = which("nats-server").expect("nats-server");
    Process::new("nats-server", scratch, move || {
        let mut command = Command::new(&binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store);
        command
    })
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_listening(port: u16, timeout: Duration) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            started.elapsed() < timeout,
            "nothing listens on {port} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `url` answers 200.
pub async fn wait_ok(http: &reqwest::Client, url: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(started.elapsed() < timeout, "{url} not OK after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The workspace's debug binary `bin` of package `package`, built when missing.
/// `scripts/test.sh` builds every target of the workspace before it runs the tests, so they are
/// current there (run `cargo build --workspace --all-targets` first when running this test
/// alone); building them from here every time would rebuild dependencies with other features.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let path = target.join("debug").join(bin);
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "--quiet", "-p", package, "--bin", bin]));
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}
