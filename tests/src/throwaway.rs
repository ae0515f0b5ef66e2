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
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    /// Arguments after the common ones (a replica's `--replicaof`, TLS files).
    extra: Vec<String>,
    /// Serves TLS only, on `port` (`--port 0 --tls-port port`).
    tls: bool,
}

/// The files of a `redis-server` that serves TLS.
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

impl ThrowawayRedis {
    pub fn start() -> Self {
        Self::start_with(Vec::new(), false)
    }

    /// A replica of the server on `master_port` (asynchronous replication, as in production).
    pub fn replica_of(master_port: u16) -> Self {
        Self::start_with(
            vec!["--replicaof".into(), "127.0.0.1".into(), master_port.to_string()],
            false,
        )
    }

    /// A server that speaks only TLS, with `files`; clients need no certificate of their own.
    /// `None` when this redis-server was built without TLS.
    pub fn start_tls(files: &TlsFiles<'_>) -> Option<Self> {
        let mut extra = Vec::new();
        for (flag, path) in [
            ("--tls-cert-file", files.cert),
            ("--tls-key-file", files.key),
            ("--tls-ca-cert-file", files.ca),
        ] {
            extra.push(flag.to_owned());
            extra.push(path.display().to_string());
        }
        extra.extend(["--tls-auth-clients".to_owned(), "no".to_owned()]);
        let mut me = Self::start_with(extra, true);
        let exited = me.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
        (!exited).then_some(me)
    }

    fn start_with(extra: Vec<String>, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut me = Self { port: free_port(), child: None, dir, extra, tls };
        me.launch();
        me
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let ports: [&str; 4] = if self.tls {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--tls-port", "0"]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (Debian package redis-server)");
        self.child = Some(child);
        if self.tls {
            // The test's own TLS client is what is under test: here, only the port (or the
            // server's exit: a redis-server built without TLS refuses `--tls-port`).
            let address = format!("127.0.0.1:{}", self.port);
            let child = self.child.as_mut().expect("just spawned");
            wait_until("redis-server (TLS)", Duration::from_secs(10), || {
                !matches!(child.try_wait(), Ok(None))
                    || std::net::TcpStream::connect(&address).is_ok()
            });
        } else {
            wait_until("redis-server", Duration::from_secs(10), || ping(self.port));
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
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

    /// Freezes the server (`SIGSTOP`): it keeps its connections and answers nothing, as a
    /// hung or cut-off host does, until [`Self::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        send_signal(signal, self.child.as_ref().expect("the server runs").id());
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

/// A Redis Sentinel (`redis-server --sentinel`) of this test's own, watching one master as
/// service `service`. Sentinel rewrites its configuration file, so it gets one in a directory
/// of its own.
pub struct ThrowawaySentinel {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl ThrowawaySentinel {
    /// Quorum 2; the master is thought down after `down_after` without an answer.
    pub fn start(
        master_port: u16,
        service: &str,
        down_after: Duration,
        failover_timeout: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {service} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {service} {down}\n\
                 sentinel failover-timeout {service} {failover}\n\
                 sentinel parallel-syncs {service} 1\n",
                dir = dir.path().display(),
                down = down_after.as_millis(),
                failover = failover_timeout.as_millis(),
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (Debian package redis-server)");
        wait_until("redis sentinel", Duration::from_secs(10), || ping(port));
        Self { port, child, _dir: dir }
    }

    /// `SENTINEL <args…>` (or any command) against this Sentinel.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?.get_connection()?;
        cmd.query(&mut conn)
    }
}

impl Drop for ThrowawaySentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay to `127.0.0.1:upstream` that can be cut at once: every relayed connection is
/// dropped and new ones are refused. Put between a replica and its master, cutting it is a
/// replication link that stops short of the master's last writes.
pub struct Relay {
    pub port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Where a movable relay sends new connections, and what silences the old ones.
    moves:
        Option<(std::sync::Arc<std::sync::atomic::AtomicU16>, std::sync::Arc<tokio::sync::Notify>)>,
}

impl Relay {
    /// Starts relaying (call inside a Tokio runtime).
    pub async fn start(upstream: u16) -> Self {
        Self::start_slow_to_connect(upstream, std::time::Duration::ZERO).await
    }

    /// A relay that loses one reply: the first request whose bytes hold `marker` reaches the
    /// server, whose answer is thrown away and the client's connection reset, as when a
    /// connection dies between a command's run and its reply. Everything else passes.
    pub async fn start_losing_one_reply(upstream: u16, marker: Vec<u8>) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles = tasks.clone();
        let armed = Arc::new(AtomicBool::new(true));
        let marker: Arc<[u8]> = marker.into();
        let accept = tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                let (armed, marker) = (armed.clone(), marker.clone());
                let connection = tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (mut down_read, mut down_write) = downstream.into_split();
                    let (mut up_read, mut up_write) = up.into_split();
                    let losing = Arc::new(AtomicBool::new(false));
                    let requests = {
                        let losing = losing.clone();
                        async move {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = down_read.read(&mut buf).await.unwrap_or(0);
                                if n == 0 {
                                    return;
                                }
                                let sent = &buf[..n];
                                if sent.windows(marker.len()).any(|w| *w == *marker)
                                    && armed.swap(false, Ordering::SeqCst)
                                {
                                    losing.store(true, Ordering::SeqCst);
                                }
                                if up_write.write_all(sent).await.is_err() {
                                    return;
                                }
                            }
                        }
                    };
                    let replies = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = up_read.read(&mut buf).await.unwrap_or(0);
                            if n == 0 || losing.load(Ordering::SeqCst) {
                                // Dropping both halves closes the client's side.
                                return;
                            }
                            if down_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        () = requests => {}
                        () = replies => {}
                    }
                });
                handles.lock().expect("relay tasks").push(connection.abort_handle());
            }
        });
        tasks.lock().expect("relay tasks").push(accept.abort_handle());
        Self { port, tasks, moves: None }
    }

    /// A relay that takes `delay` to put each new connection through (a server slow to accept:
    /// a storm of TLS handshakes on a freshly promoted primary, a lost SYN); then relays.
    pub async fn start_slow_to_connect(upstream: u16, delay: std::time::Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut downstream, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut up).await;
                    }
                });
                handles.lock().expect("relay tasks").push(connection.abort_handle());
            }
        });
        tasks.lock().expect("relay tasks").push(accept.abort_handle());
        Self { port, tasks, moves: None }
    }

    /// A relay that stands for a DNS name moved to another server while the old one went
    /// silent (an ElastiCache primary endpoint after its node was lost): after
    /// [`Relay::move_silently`], connections made before relay nothing more, in either direction,
    /// yet stay open, and new ones reach the new upstream.
    pub async fn start_movable(upstream: u16) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU16, Ordering};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let target = Arc::new(AtomicU16::new(upstream));
        let silenced = Arc::new(tokio::sync::Notify::new());
        let handles = tasks.clone();
        let (to, silence) = (target.clone(), silenced.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut downstream, _)) = listener.accept().await {
                let upstream = to.load(Ordering::SeqCst);
                let silence = silence.clone();
                let connection = tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let silenced = silence.notified();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut downstream, &mut up) => return,
                        () = silenced => {}
                    }
                    // Held open, unread and unanswered, until the relay is dropped.
                    std::future::pending::<()>().await;
                    drop((downstream, up));
                });
                handles.lock().expect("relay tasks").push(connection.abort_handle());
            }
        });
        tasks.lock().expect("relay tasks").push(accept.abort_handle());
        Self { port, tasks, moves: Some((target, silenced)) }
    }

    /// Points new connections at `upstream` and silences every connection made before.
    pub fn move_silently(&self, upstream: u16) {
        let (target, silenced) = self.moves.as_ref().expect("a relay made by start_movable");
        target.store(upstream, std::sync::atomic::Ordering::SeqCst);
        silenced.notify_waiters();
    }

    /// Drops every relayed connection and the listener: nothing more passes, ever.
    pub fn cut(&self) {
        for task in self.tasks.lock().expect("relay tasks").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A Postgres cluster of this test's own (initdb + pg_ctl from the Debian packages).
pub struct ThrowawayPostgres {
    pub(crate) port: u16,
    /// The address it listens on: loopback, or its namespace's end of a [`Netns`].
    host: String,
    /// The network namespace it runs in, if not this host's.
    netns: Option<String>,
    bin: PathBuf,
    data: PathBuf,
    /// libfaketime's offset of the server's clock from this host's, if any.
    clock_offset: Option<String>,
    /// Server settings beyond the defaults below (`-c name=value`).
    settings: Vec<String>,
    _dir: TempDir,
}

impl ThrowawayPostgres {
    pub fn start() -> Self {
        Self::start_with_clock(None)
    }

    /// A cluster with these server settings (`name=value`) on top of the usual ones.
    pub fn start_with_settings(settings: &[&str]) -> Self {
        Self::start_with(None, settings.iter().map(|s| format!("-c {s}")).collect())
    }

    /// A cluster whose clock runs `offset` (libfaketime's syntax: `+1h`, `-90m`, ...) away from
    /// this host's, as a database server's clock may: `now()` there is not `Utc::now()` here.
    /// Needs the Debian package faketime.
    pub fn start_with_clock_offset(offset: &str) -> Self {
        Self::start_with_clock(Some(offset.to_owned()))
    }

    fn start_with_clock(clock_offset: Option<String>) -> Self {
        Self::start_with(clock_offset, Vec::new())
    }

    /// A cluster inside `netns`, listening on its address there: a host of its own, whose link
    /// [`Netns::cut`] can cut.
    pub fn start_in(netns: &Netns) -> Self {
        Self::start_at(netns.inside.clone(), Some(netns.name.clone()), None, Vec::new())
    }

    fn start_with(clock_offset: Option<String>, settings: Vec<String>) -> Self {
        Self::start_at("127.0.0.1".to_owned(), None, clock_offset, settings)
    }

    fn start_at(
        host: String,
        netns: Option<String>,
        clock_offset: Option<String>,
        settings: Vec<String>,
    ) -> Self {
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
        if netns.is_some() {
            // initdb lets in loopback only; the test connects from the other end of the link.
            let hba = data.join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            rules.push_str("host all all 10.213.0.0/16 trust\n");
            std::fs::write(&hba, rules).expect("pg_hba.conf");
        }
        let me =
            Self { port: free_port(), host, netns, bin, data, clock_offset, settings, _dir: dir };
        me.pg_ctl_start();
        me
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses={} -k {} -c fsync=off -c max_connections=60 {}",
            self.port,
            self.host,
            self.data.display(),
            self.settings.join(" ")
        );
        let mut pg_ctl = self.in_netns(postgres_command(&self.bin.join("pg_ctl")));
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
        format!("postgres://postgres@{}:{}/postgres", self.host, self.port)
    }

    /// Stops the server at once (connections are cut, as in a crash).
    pub fn stop(&self) {
        let _ = self
            .in_netns(postgres_command(&self.bin.join("pg_ctl")))
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

    /// Freezes the server (`SIGSTOP` to the postmaster, then to each of its processes): its
    /// kernel still accepts connections and acknowledges every byte, and nothing answers, as
    /// with a hung or paused host, until [`Self::resume`].
    pub fn pause(&self) {
        let postmaster = self.postmaster_pid();
        send_signal("-STOP", postmaster);
        for child in children_of(postmaster) {
            send_signal("-STOP", child);
        }
    }

    /// Lets a [`Self::pause`]d server go on, its processes first.
    pub fn resume(&self) {
        wake(self.postmaster_pid());
    }

    /// `command`, run inside the cluster's network namespace if it has one.
    fn in_netns(&self, command: Command) -> Command {
        let Some(netns) = &self.netns else { return command };
        let mut inside = Command::new("ip");
        inside.args(["netns", "exec", netns]).arg(command.get_program()).args(command.get_args());
        inside
    }

    fn postmaster_pid(&self) -> u32 {
        self.running_postmaster().expect("the postmaster's pid")
    }

    /// The postmaster's pid, from its pid file, if it runs.
    fn running_postmaster(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }
}

/// Continues a postmaster's processes, then the postmaster. Whatever `kill` says is left:
/// continuing a process that runs does nothing, and one may have exited since it was listed.
fn wake(postmaster: u32) {
    for pid in children_of(postmaster).into_iter().chain([postmaster]) {
        let _ = Command::new("kill").args(["-CONT", &pid.to_string()]).status();
    }
}

/// The processes whose parent is `parent` (a postmaster's are its backends and helpers).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `stat`'s fourth field is the parent; the second, the name, is in parentheses and
            // may hold spaces, so the fields are counted after its closing one.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

fn send_signal(signal: &str, pid: u32) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        // A test that failed while the server was paused: a stopped postmaster would not stop.
        if let Some(postmaster) = self.running_postmaster() {
            wake(postmaster);
        }
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

/// libfaketime's library, for `LD_PRELOAD` (the Debian package faketime).
pub fn libfaketime() -> PathBuf {
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

/// A network namespace joined to this host's by a veth pair with an address at each end. A
/// server inside it is a host of its own, whose link [`Self::cut`] takes down: packets to it
/// then vanish without a reset or an error, as when a host is lost with its zone, which no
/// server on loopback can show. Needs root and `ip` (iproute2).
pub struct Netns {
    name: String,
    /// The namespace's end of the pair, and this host's.
    link: String,
    outside: String,
    /// The address of the namespace's end.
    pub inside: String,
}

impl Netns {
    /// A new namespace, or `None` where this process may not make one (not root, no `ip`).
    pub fn create() -> Option<Self> {
        // Names of the whole process id (at most 7 digits: "pmcA" and it fit the 15 bytes of an
        // interface name), so one run never takes another's for a leftover of its own.
        let tag = std::process::id();
        let subnet = 1 + tag % 250;
        let me = Self {
            name: format!("pmc-test-{tag}"),
            link: format!("pmcB{tag}"),
            outside: format!("pmcA{tag}"),
            inside: format!("10.213.{subnet}.2"),
        };
        // One left by a process of the same id that died before its drop.
        me.remove();
        let outside = me.outside.clone();
        let (cidr_out, cidr_in) = (format!("10.213.{subnet}.1/30"), format!("{}/30", me.inside));
        let steps: [&[&str]; 7] = [
            &["netns", "add", &me.name],
            &["link", "add", &outside, "type", "veth", "peer", "name", &me.link],
            &["link", "set", &me.link, "netns", &me.name],
            &["addr", "add", &cidr_out, "dev", &outside],
            &["link", "set", &outside, "up"],
            &["-n", &me.name, "addr", "add", &cidr_in, "dev", &me.link],
            &["-n", &me.name, "link", "set", &me.link, "up"],
        ];
        for step in steps {
            let done = Command::new("ip").args(step).stderr(Stdio::null()).status();
            if !done.is_ok_and(|s| s.success()) {
                return None;
            }
        }
        Some(me)
    }

    /// Takes the namespace's end of the link down: what is sent to it is dropped, unanswered.
    /// The other end keeps its neighbour entry for it, as a host lost at once would leave it:
    /// otherwise address resolution fails within seconds and a connect ends with "no route to
    /// host", a reset of sorts that a lost host does not give.
    pub fn cut(&self) {
        let shown = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", &self.link])
            .output()
            .expect("run ip");
        let text = String::from_utf8_lossy(&shown.stdout).into_owned();
        let mac = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .expect("the link's address");
        let status = Command::new("ip")
            .args(["neigh", "replace", &self.inside, "lladdr", mac])
            .args(["dev", &self.outside, "nud", "permanent"])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip neigh replace");
        let status = Command::new("ip")
            .args(["-n", &self.name, "link", "set", &self.link, "down"])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip link set down");
    }

    fn remove(&self) {
        // Deleting the namespace deletes the pair, unless its end was never moved in.
        for args in [["netns", "del", &self.name], ["link", "del", &self.outside]] {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}
