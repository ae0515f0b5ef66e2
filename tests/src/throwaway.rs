//! Throwaway Redis and Postgres servers on free ports, for tests that stop, flush or cut them:
//! those must never touch the shared servers other tests are using.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} did not come up within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of this test's own.
pub struct ThrowawayRedis {
    pub(crate) port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl ThrowawayRedis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut me = Self { port: free_port(), child: None, dir };
        me.launch();
        me
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (Debian package redis-server)");
        self.child = Some(child);
        let url = self.url();
        wait_until("redis-server", Duration::from_secs(10), || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Postgres cluster of this test's own (initdb + pg_ctl from the Debian packages).
pub struct ThrowawayPostgres {
    pub(crate) port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// libfaketime's offset of the server's clock from this host's, if any.
    clock_offset: Option<String>,
    _dir: TempDir,
}

impl ThrowawayPostgres {
    pub fn start() -> Self {
        Self::start_with_clock(None)
    }

    /// A cluster whose clock runs `offset` (libfaketime's syntax: `+1h`, `-90m`, ...) away from
    /// this host's, as a database server's clock may: `now()` there is not `Utc::now()` here.
    /// Needs the Debian package faketime.
    pub fn start_with_clock_offset(offset: &str) -> Self {
        Self::start_with_clock(Some(offset.to_owned()))
    }

    fn start_with_clock(clock_offset: Option<String>) -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        as_postgres_owner(dir.path());
        let status = postgres_command(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let me = Self { port: free_port(), bin, data, clock_offset, _dir: dir };
        me.pg_ctl_start();
        me
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=60",
            self.port,
            self.data.display()
        );
        let mut pg_ctl = postgres_command(&self.bin.join("pg_ctl"));
        if let Some(offset) = &self.clock_offset {
            // The server inherits them from pg_ctl. Monotonic clocks stay real: only the wall
            // clock, which `now()` reads, is meant to differ.
            pg_ctl
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let status = pg_ctl
            .args(["-w", "-t", "30", "-l"])
            .arg(self.data.join("log"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(status.success(), "pg_ctl start failed");
    }

    /// A URL to its `postgres` database (use as an admin URL for [`crate::TestDb::empty_on`]).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (connections are cut, as in a crash).
    pub fn stop(&self) {
        let _ = postgres_command(&self.bin.join("pg_ctl"))
            .args(["-w", "-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn start_again(&self) {
        self.pg_ctl_start();
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postgres_bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .expect("initdb not found: install the Debian package postgresql")
}

fn libfaketime() -> PathBuf {
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
        .iter()
        .map(|dir| Path::new(dir).join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .expect("libfaketime not found: install the Debian package faketime")
}

/// initdb and the server refuse to run as root: as root, run them as `postgres`.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_command(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn as_postgres_owner(dir: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of the throwaway cluster failed");
    }
}
