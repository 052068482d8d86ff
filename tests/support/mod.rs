//! Shared harness for the kernel-facing integration tests.
//!
//! Everything here creates its own network namespaces (named
//! `ehn-<pid>-<n>-<role>`), its own temp directories and its own listener
//! threads, and removes all of it in `Drop` (also when a test panics). Nothing
//! here touches the root namespace's firewall, sysctls or routes: every
//! packet, sysctl and nft command goes to a namespace created by this file.
//!
//! Addresses used (all inside our namespaces):
//!   docker0 bridge       172.17.0.0/16, fd00:d0c::/64
//!   host <-> imds link   198.51.100.0/24, 2001:db8:2::/64
//!   host <-> neighbour   192.0.2.0/24, 2001:db8:1::/64
//!   imds ns holds        169.254.169.254/32, fd00:ec2::254/128
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

// ---------------------------------------------------------------------------
// basics
// ---------------------------------------------------------------------------

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ecs-hostnet")
}

/// Kernel tests need root. They fail loudly (never skip) without it.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "these integration tests create network namespaces and must run as root (euid is {euid})");
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `ehn-<pid>-<n>-<role>`: unique across threads of this process and across
/// concurrently running test processes.
pub fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("ehn-{}-{}-{}", std::process::id(), n, role)
}

/// The embedded default configuration, as shipped in rules/default.toml.
pub fn default_config_text() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Result of running a command.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    /// Panics with the full command line and output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "`{}` exited {} (wanted {code})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        );
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// Run a program with a timeout (a hung child is killed and reported as
/// exit code -1 with a note on stderr). Never panics on a non-zero exit.
pub fn run_cmd(prog: &str, args: &[&str], timeout: Duration) -> Out {
    run_cmd_with(Command::new(prog).args(args), timeout)
}

/// A command that runs the binary under test gets `LD_LIBRARY_PATH` =
/// `$ECS_HOSTNET_TEST_LIBNFTNL_DIR` when that is set (scripts/libnftnl-compat: another
/// libnftnl.so.11 for ecs-hostnet only; nft, ip and the test itself keep the system's).
pub fn with_test_libnftnl(cmd: &mut Command) -> &mut Command {
    if let Some(dir) = std::env::var_os("ECS_HOSTNET_TEST_LIBNFTNL_DIR")
        && (cmd.get_program() == bin() || cmd.get_args().any(|a| a == bin()))
    {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    cmd
}

/// Runs `cmd` (see [`run_cmd`], [`with_test_libnftnl`]).
pub fn run_cmd_with(cmd: &mut Command, timeout: Duration) -> Out {
    with_test_libnftnl(cmd);
    let cmdline = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    );
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{cmdline}`: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {
                if start.elapsed() > timeout {
                    let _ = child.kill();
                    timed_out = true;
                    break child.wait().ok();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break None,
        }
    };
    let stdout = String::from_utf8_lossy(&to.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&te.join().unwrap_or_default()).into_owned();
    if timed_out {
        stderr.push_str(&format!("\n[harness: killed after {timeout:?}]"));
    }
    let code = if timed_out { -1 } else { status.and_then(|s| s.code()).unwrap_or(-1) };
    Out { code, stdout, stderr, cmdline }
}

/// Run a helper command (ip, nft, iptables-nft, ...) and panic unless it succeeds.
#[track_caller]
pub fn sh(prog: &str, args: &[&str]) -> String {
    let out = run_cmd(prog, args, Duration::from_secs(20));
    assert!(out.ok(), "helper command failed: {out}");
    out.stdout
}

/// Run the binary under test (timeout 60 s) in a throw-away network
/// namespace of its own (`unshare --net`): a binary that ignored `--netns`
/// would change that empty namespace (and the test would fail), never the
/// root namespace of the machine running the tests.
///
/// `$ECS_HOSTNET_RUN_DIR` (the binary's lock and saved records) is a fresh
/// temp directory removed after the call, so nothing is ever left in
/// /run/ecs-hostnet. Use [`Netns::ehn`] / [`Netns::ehn_raw`] for anything
/// that targets a namespace: those share the namespace's run directory (and
/// so its lock) across calls.
pub fn ehn(args: &[&str]) -> Out {
    let run = TempDir::new("run");
    ehn_with_run_dir(run.path(), args)
}

/// Like [`ehn`] with `$ECS_HOSTNET_RUN_DIR` set to `run_dir`.
pub fn ehn_with_run_dir(run_dir: &Path, args: &[&str]) -> Out {
    ehn_cmd(run_dir, &[], args)
}

/// `unshare --net -- [WRAP...] BIN ARGS...` with `$ECS_HOSTNET_RUN_DIR=run_dir`
/// (WRAP is e.g. `setarch x86_64 --uname-2.6`), timeout 60 s.
pub fn ehn_cmd(run_dir: &Path, wrap: &[&str], args: &[&str]) -> Out {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"]).args(wrap).arg(bin()).args(args).env("ECS_HOSTNET_RUN_DIR", run_dir);
    let mut out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    out.cmdline = format!(
        "ECS_HOSTNET_RUN_DIR={} {}{} {}",
        run_dir.display(),
        wrap.iter().map(|w| format!("{w} ")).collect::<String>(),
        bin(),
        args.join(" ")
    );
    out
}

/// `setarch $(uname -m) --uname-2.6`: uname(2) then reports a 2.6 kernel, so
/// nftnl takes its pre-6.10 path (no ACK requested for batch begin/end).
pub fn uname26_wrap() -> Vec<String> {
    let machine = sh("uname", &["-m"]).trim().to_string();
    vec!["setarch".into(), machine, "--uname-2.6".into()]
}

// ---------------------------------------------------------------------------
// temp dir
// ---------------------------------------------------------------------------

/// A temp directory removed (recursively) in Drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(role: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(role));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        // world-readable so that `validate` can be run as an unprivileged user
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Write `name` (mode 0644) and return its path as a String.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.path.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p.to_string_lossy().into_owned()
    }
    /// A copy of rules/default.toml.
    pub fn default_config(&self) -> String {
        self.write("default.toml", &default_config_text())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("[harness] cannot remove {}: {e}", self.path.display());
        }
    }
}

// ---------------------------------------------------------------------------
// namespaces
// ---------------------------------------------------------------------------

static STALE: Once = Once::new();

/// Delete namespaces left behind by test processes that no longer exist
/// (e.g. killed with SIGKILL, so their Drop never ran). Only names of the
/// form `ehn-<pid>-...` whose pid is gone are touched.
fn remove_stale_namespaces() {
    STALE.call_once(|| {
        let Ok(rd) = std::fs::read_dir("/run/netns") else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("ehn-") else { continue };
            let Some(pid) = rest.split('-').next() else { continue };
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if !Path::new("/proc").join(pid).exists() {
                let _ = run_cmd("ip", &["netns", "del", &name], Duration::from_secs(10));
            }
        }
    });
}

/// A named network namespace (under /run/netns), deleted in Drop, with its
/// own run directory for the binary (`$ECS_HOSTNET_RUN_DIR`: lock file and
/// saved route_localnet records), removed in Drop after the namespace.
pub struct Netns {
    pub name: String,
    run_dir: TempDir,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        require_root();
        remove_stale_namespaces();
        let name = unique_name(role);
        let run_dir = TempDir::new(&format!("{role}-run"));
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name, run_dir };
        // No IPv6 duplicate address detection: a link-local address that is
        // still tentative (~2 s after link up) makes the first forwarded IPv6
        // connections fail. Interfaces created later inherit "default".
        for k in ["default", "all"] {
            ns.set_sysctl(&format!("net.ipv6.conf.{k}.accept_dad"), "0");
            ns.set_sysctl(&format!("net.ipv6.conf.{k}.dad_transmits"), "0");
        }
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The `$ECS_HOSTNET_RUN_DIR` every binary invocation for this namespace gets.
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// `ip -n NAME ARGS...`, panics on failure.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        sh("ip", &v)
    }

    /// `ip netns exec NAME PROG ARGS...`, not checked.
    pub fn exec(&self, prog: &str, args: &[&str]) -> Out {
        let mut v = vec!["netns", "exec", self.name.as_str(), prog];
        v.extend_from_slice(args);
        run_cmd("ip", &v, Duration::from_secs(20))
    }

    /// `ip netns exec NAME PROG ARGS...`, panics on failure, returns stdout.
    #[track_caller]
    pub fn exec_ok(&self, prog: &str, args: &[&str]) -> String {
        let out = self.exec(prog, args);
        assert!(out.ok(), "helper command failed: {out}");
        out.stdout
    }

    /// `nft ARGS` inside the namespace; panics on failure.
    #[track_caller]
    pub fn nft(&self, args: &[&str]) -> String {
        self.exec_ok("nft", args)
    }

    /// `nft list ruleset` inside the namespace.
    pub fn ruleset(&self) -> String {
        self.nft(&["list", "ruleset"])
    }

    /// `nft -a list ruleset` inside the namespace.
    pub fn ruleset_handles(&self) -> String {
        self.nft(&["-a", "list", "ruleset"])
    }

    /// Load an nft script with `nft -f` inside the namespace.
    #[track_caller]
    pub fn nft_load(&self, dir: &TempDir, script: &str) {
        let f = dir.write(&format!("{}.nft", unique_name("script")), script);
        self.nft(&["-f", &f]);
    }

    /// Run `f` on a fresh thread that has joined this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.name, f)
    }

    /// Read a sysctl (dotted name) in this namespace via /proc/sys.
    pub fn sysctl(&self, key: &str) -> String {
        let p = sysctl_path(key);
        self.run(move || {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
        })
    }

    /// Write a sysctl (dotted name) in this namespace via /proc/sys.
    pub fn set_sysctl(&self, key: &str, val: &str) {
        let p = sysctl_path(key);
        let val = val.to_string();
        self.run(move || std::fs::write(&p, val.as_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", p.display())))
    }

    pub fn route_localnet(&self) -> String {
        self.sysctl("net.ipv4.conf.all.route_localnet")
    }

    /// Run the binary as a process INSIDE this namespace (no `--netns`), so
    /// that a binary that wrongly acts on its own namespace hits this one and
    /// not the root namespace.
    pub fn ehn_inside(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name.as_str(), bin()]).args(args).env("ECS_HOSTNET_RUN_DIR", self.run_dir());
        run_cmd_with(&mut cmd, Duration::from_secs(60))
    }

    /// Run the binary with `--netns NAME` followed by `args`.
    pub fn ehn(&self, args: &[&str]) -> Out {
        let mut v = vec!["--netns", self.name.as_str()];
        v.extend_from_slice(args);
        self.ehn_raw(&v)
    }

    /// Run the binary with exactly `args` (which target this namespace some
    /// other way, e.g. `--netns /proc/PID/ns/net` or `apply --netns NAME`)
    /// and this namespace's run directory.
    pub fn ehn_raw(&self, args: &[&str]) -> Out {
        ehn_with_run_dir(self.run_dir(), args)
    }

    /// `ehn(args)` under `setarch $(uname -m) --uname-2.6` (nftnl's pre-6.10 path).
    pub fn ehn_uname26(&self, args: &[&str]) -> Out {
        let mut v = vec!["--netns", self.name.as_str()];
        v.extend_from_slice(args);
        let wrap = uname26_wrap();
        let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
        ehn_cmd(self.run_dir(), &wrap, &v)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = run_cmd("ip", &["netns", "del", &self.name], Duration::from_secs(20));
        if !out.ok() {
            eprintln!("[harness] cannot delete namespace {}: {out}", self.name);
        }
    }
}

/// `net.ipv4.conf.all.route_localnet` -> /proc/sys/net/ipv4/conf/all/route_localnet
pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Run `f` on a new thread that first does setns(2) into /run/netns/NAME.
/// Sockets and /proc/sys files opened by `f` belong to that namespace.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    let h = std::thread::spawn(move || {
        enter_netns(&path);
        f()
    });
    match h.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// setns(2) the CURRENT thread into the namespace at `path`.
pub fn enter_netns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    setns(&f, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

// ---------------------------------------------------------------------------
// HTTP listeners and clients (Rust threads inside namespaces)
// ---------------------------------------------------------------------------

/// An HTTP/1.0 server on one address inside a namespace, answering every
/// request with a fixed body. Stopped and joined in Drop.
pub struct Listener {
    pub addr: SocketAddr,
    pub ns: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn spawn(ns: &str, addr: &str, body: &str) -> Listener {
        let addr: SocketAddr = addr.parse().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let path = format!("/run/netns/{ns}");
        let body = body.to_string();
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            enter_netns(&path);
            let l = match bind_listener(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(format!("bind {addr}: {e}")));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            serve(l, &body, &stop2);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = handle.join();
                panic!("listener in {ns}: {e}");
            }
            Err(_) => panic!("listener in {ns} on {addr} did not start"),
        }
        Listener { addr, ns: ns.to_string(), stop, handle: Some(handle) }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dom = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(dom, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // so that 0.0.0.0:P and [::]:P can both be bound
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(64)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn serve(l: TcpListener, body: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((mut c, _peer)) => {
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let deadline = Instant::now() + Duration::from_secs(1);
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = c.write_all(resp.as_bytes());
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Connect from inside namespace `ns` to `addr` (connect timeout 1 s), send
/// `GET / HTTP/1.0` and return the response body, or the error.
pub fn http_get(ns: &str, addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().expect("client address");
    in_netns(ns, move || http_get_here(addr))
}

/// The client part of `http_get`, on the current thread's namespace.
pub fn http_get_here(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("send to {addr}: {e}"))?;
    let mut v = Vec::new();
    s.read_to_end(&mut v).map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&v).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_string()),
        _ => Err(format!("bad HTTP response from {addr}: {text:?}")),
    }
}

/// One reachability expectation: from namespace `ns` to `addr`, expecting the
/// body `Some(body)` or a failure (`None`).
#[derive(Clone, Debug)]
pub struct Probe {
    pub label: String,
    pub ns: String,
    pub addr: String,
    pub want: Option<String>,
}

pub fn probe(label: &str, ns: &Netns, addr: &str, want: Option<&str>) -> Probe {
    Probe { label: label.to_string(), ns: ns.name.clone(), addr: addr.to_string(), want: want.map(str::to_string) }
}

/// Run all probes concurrently; panic with a table of every mismatch.
#[track_caller]
pub fn assert_probes(stage: &str, probes: &[Probe]) {
    let handles: Vec<_> =
        probes.iter().cloned().map(|p| std::thread::spawn(move || http_get(&p.ns, &p.addr))).collect();
    let mut report = String::new();
    let mut bad = 0;
    for (p, h) in probes.iter().zip(handles) {
        let got = h.join().unwrap_or_else(|_| Err("client thread panicked".into()));
        let ok = match (&p.want, &got) {
            (Some(w), Ok(b)) => w == b,
            (None, Err(_)) => true,
            _ => false,
        };
        if !ok {
            bad += 1;
        }
        report.push_str(&format!(
            "  [{}] {:<55} want {:<28} got {:?}\n",
            if ok { " ok " } else { "FAIL" },
            format!("{} -> {}", p.label, p.addr),
            match &p.want {
                Some(w) => format!("body {w:?}"),
                None => "failure".to_string(),
            },
            got
        ));
    }
    eprintln!("reachability {stage}:\n{report}");
    assert!(bad == 0, "{bad} reachability expectation(s) failed {stage}:\n{report}");
}

// ---------------------------------------------------------------------------
// raw packets and UDP sinks
// ---------------------------------------------------------------------------

/// A UDP socket bound to `addr` inside namespace `ns` (the socket stays in
/// that namespace; it can be read from any thread). Closed in Drop.
pub fn udp_bind(ns: &Netns, addr: &str) -> std::net::UdpSocket {
    let addr: SocketAddr = addr.parse().expect("udp address");
    ns.run(move || {
        let s = std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind udp {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    })
}

/// Datagrams that arrive on `sock` within `wait` (payload, sender).
pub fn udp_drain(sock: &std::net::UdpSocket, wait: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            got.push((buf[..n].to_vec(), from));
        }
    }
    got
}

fn csum16(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    for w in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A hand-built IPv4 + UDP datagram (both checksums filled in).
pub fn ipv4_udp_packet(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum16(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let mut c = csum16(&[&pseudo, &udp]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    ip
}

/// Send `packet` (a complete IPv4 datagram, header included) from namespace
/// `ns` through a raw `IPPROTO_RAW` socket; the kernel routes it by the
/// destination address in the header and sends the header as written (so
/// the source address can be anything, e.g. a spoofed 127.0.0.2).
pub fn send_raw_ipv4(ns: &Netns, packet: Vec<u8>) {
    use socket2::{Domain, Protocol, Socket, Type};
    ns.run(move || {
        let dst = std::net::Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
            .unwrap_or_else(|e| panic!("raw socket: {e}"));
        let to: SocketAddr = SocketAddr::new(dst.into(), 0);
        let n = s.send_to(&packet, &to.into()).unwrap_or_else(|e| panic!("send raw packet to {dst}: {e}"));
        assert_eq!(n, packet.len());
    })
}

/// From `from`, send `count` spoofed UDP datagrams `src:sport -> dst:dport`
/// (10 ms apart) and return what `sink` received within 500 ms after.
pub fn spoofed_udp_received(
    from: &Netns,
    sink: &std::net::UdpSocket,
    src: std::net::Ipv4Addr,
    sport: u16,
    count: usize,
) -> Vec<(Vec<u8>, SocketAddr)> {
    let local = sink.local_addr().unwrap();
    let std::net::IpAddr::V4(dst) = local.ip() else { panic!("IPv4 sink wanted") };
    udp_drain(sink, Duration::from_millis(1)); // nothing stale
    for i in 0..count {
        let payload = format!("spoofed-{sport}-{i}");
        send_raw_ipv4(from, ipv4_udp_packet(src, dst, sport, local.port(), payload.as_bytes()));
        std::thread::sleep(Duration::from_millis(10));
    }
    udp_drain(sink, Duration::from_millis(500))
}

// ---------------------------------------------------------------------------
// topology
// ---------------------------------------------------------------------------

pub const CREDS_BODY: &str = "credentials-listener";
pub const INTRO_BODY: &str = "introspection";
pub const IMDS_BODY: &str = "imds";

/// host ns with docker0 + container ns + imds ns (behind the host) + neighbour
/// ns (on the host's uplink), with listeners. Everything is removed in Drop,
/// listeners first, then namespaces, then the temp dir.
pub struct Topology {
    listeners: Vec<Listener>,
    /// extra namespaces (e.g. a second container), dropped with the others
    pub extra: Vec<Netns>,
    pub host: Netns,
    pub container: Netns,
    pub imds: Netns,
    pub neighbour: Netns,
    pub dir: TempDir,
}

pub const HOST_UPLINK: &str = "uplink0"; // host side of the host<->neighbour link
pub const HOST_UPLINK_V4: &str = "192.0.2.1";
pub const HOST_UPLINK_V6: &str = "2001:db8:1::1";
pub const NEIGHBOUR_V4: &str = "192.0.2.2";
pub const NEIGHBOUR_V6: &str = "2001:db8:1::2";
pub const DOCKER0_V4: &str = "172.17.0.1";
pub const DOCKER0_V6: &str = "fd00:d0c::1";
pub const CONTAINER_V4: &str = "172.17.0.2";
pub const CONTAINER_V6: &str = "fd00:d0c::2";

impl Topology {
    pub fn new() -> Topology {
        require_root();
        // Fields are filled one by one: if any step panics, the namespaces
        // created so far are dropped (and deleted) by unwinding.
        let host = Netns::new("host");
        let container = Netns::new("ctr");
        let imds = Netns::new("imds");
        let neighbour = Netns::new("nbr");
        let dir = TempDir::new("dir");
        let mut t = Topology { listeners: Vec::new(), extra: Vec::new(), host, container, imds, neighbour, dir };
        t.wire();
        t.wait_no_tentative();
        t.start_listeners();
        t
    }

    fn wire(&mut self) {
        let (h, c, i, n) = (&self.host, &self.container, &self.imds, &self.neighbour);
        h.set_sysctl("net.ipv4.ip_forward", "1");
        h.set_sysctl("net.ipv6.conf.all.forwarding", "1");

        // docker0 bridge + container on it
        h.ip(&["link", "add", "docker0", "type", "bridge"]);
        h.ip(&["addr", "add", "172.17.0.1/16", "dev", "docker0"]);
        h.ip(&["addr", "add", "fd00:d0c::1/64", "dev", "docker0", "nodad"]);
        h.ip(&["link", "set", "docker0", "up"]);
        h.ip(&["link", "add", "vethc0", "type", "veth", "peer", "name", "eth0", "netns", &c.name]);
        h.ip(&["link", "set", "vethc0", "master", "docker0", "up"]);
        c.ip(&["addr", "add", "172.17.0.2/16", "dev", "eth0"]);
        c.ip(&["addr", "add", "fd00:d0c::2/64", "dev", "eth0", "nodad"]);
        c.ip(&["link", "set", "eth0", "up"]);
        c.ip(&["route", "add", "default", "via", "172.17.0.1"]);
        c.ip(&["-6", "route", "add", "default", "via", "fd00:d0c::1"]);

        // imds behind the host
        h.ip(&["link", "add", "imds0", "type", "veth", "peer", "name", "eth0", "netns", &i.name]);
        h.ip(&["addr", "add", "198.51.100.1/24", "dev", "imds0"]);
        h.ip(&["addr", "add", "2001:db8:2::1/64", "dev", "imds0", "nodad"]);
        h.ip(&["link", "set", "imds0", "up"]);
        i.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
        i.ip(&["addr", "add", "2001:db8:2::2/64", "dev", "eth0", "nodad"]);
        i.ip(&["link", "set", "eth0", "up"]);
        i.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
        i.ip(&["addr", "add", "fd00:ec2::254/128", "dev", "lo", "nodad"]);
        i.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        i.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"]);
        h.ip(&["route", "add", "169.254.169.254/32", "via", "198.51.100.2"]);
        h.ip(&["-6", "route", "add", "fd00:ec2::254/128", "via", "2001:db8:2::2"]);

        // neighbour on the uplink; it is also the host's default gateway (a
        // host-mode task's packet to 169.254.170.2 needs a route before the
        // output-hook REDIRECT is reached, as on a real instance)
        h.ip(&["link", "add", HOST_UPLINK, "type", "veth", "peer", "name", "eth0", "netns", &n.name]);
        h.ip(&["addr", "add", "192.0.2.1/24", "dev", HOST_UPLINK]);
        h.ip(&["addr", "add", "2001:db8:1::1/64", "dev", HOST_UPLINK, "nodad"]);
        h.ip(&["link", "set", HOST_UPLINK, "up"]);
        n.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        n.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"]);
        n.ip(&["link", "set", "eth0", "up"]);
        h.ip(&["route", "add", "default", "via", NEIGHBOUR_V4]);
        h.ip(&["-6", "route", "add", "default", "via", NEIGHBOUR_V6]);
        // the attacker: 127.0.0.1 and 169.254.170.2 routed via the host.
        // Its own lo addresses must go (else 127.0.0.1 is local), and it needs
        // route_localnet itself: without it the host's replies (source
        // 127.0.0.1) are dropped as martians on arrival here.
        n.ip(&["addr", "flush", "dev", "lo"]);
        n.ip(&["route", "add", "127.0.0.1/32", "via", HOST_UPLINK_V4]);
        n.ip(&["route", "add", "169.254.170.2/32", "via", HOST_UPLINK_V4]);
        n.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    }

    /// Wait (up to 5 s) until no namespace has a tentative IPv6 address.
    fn wait_no_tentative(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for ns in [&self.host, &self.container, &self.imds, &self.neighbour] {
            loop {
                let t = ns.ip(&["-6", "addr", "show", "tentative"]);
                if t.trim().is_empty() {
                    break;
                }
                assert!(Instant::now() < deadline, "tentative IPv6 addresses in {}:\n{t}", ns.name);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn start_listeners(&mut self) {
        let h = self.host.name.clone();
        let i = self.imds.name.clone();
        self.listeners.push(Listener::spawn(&h, "127.0.0.1:51679", CREDS_BODY));
        self.listeners.push(Listener::spawn(&h, "0.0.0.0:51678", INTRO_BODY));
        self.listeners.push(Listener::spawn(&h, "[::]:51678", INTRO_BODY));
        self.listeners.push(Listener::spawn(&i, "169.254.169.254:80", IMDS_BODY));
        self.listeners.push(Listener::spawn(&i, "[fd00:ec2::254]:80", IMDS_BODY));
    }

    /// Add a second container on docker0 (172.17.0.N/16, fd00:d0c::N/64)
    /// that routes 127.0.0.1 to the host (its own lo flushed, route_localnet
    /// on): the CVE-2020-8558 attacker, from the bridge side. Returns the
    /// index in `extra`.
    pub fn add_localhost_attacker_container(&mut self, n: u8) -> usize {
        let ns = Netns::new("evil");
        let veth = format!("vethc{n}");
        self.host.ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name]);
        self.host.ip(&["link", "set", &veth, "master", "docker0", "up"]);
        ns.ip(&["addr", "add", &format!("172.17.0.{n}/16"), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("fd00:d0c::{n}/64"), "dev", "eth0", "nodad"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", DOCKER0_V4]);
        ns.ip(&["addr", "flush", "dev", "lo"]);
        ns.ip(&["route", "add", "127.0.0.1/32", "via", DOCKER0_V4]);
        ns.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
        self.extra.push(ns);
        self.extra.len() - 1
    }

    /// Names of all namespaces of this topology.
    pub fn namespaces(&self) -> Vec<String> {
        vec![self.host.name.clone(), self.container.name.clone(), self.imds.name.clone(), self.neighbour.name.clone()]
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // listeners hold threads inside the namespaces: stop them first
        self.listeners.clear();
        self.extra.clear();
        // the namespaces and the temp dir are dropped after this, as fields
    }
}

// ---------------------------------------------------------------------------
// nft ruleset text helpers
// ---------------------------------------------------------------------------

/// Split `nft list ruleset` output into top-level table blocks, keyed by
/// "FAMILY NAME" (e.g. "ip ecs-hostnet"), each the exact text of the block.
pub fn tables(ruleset: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(String, String)> = None;
    for line in ruleset.lines() {
        if let Some(rest) = line.strip_prefix("table ") {
            let rest = rest.split(" # handle ").next().unwrap_or(rest);
            let key = rest.trim_end_matches('{').trim().to_string();
            cur = Some((key, format!("{line}\n")));
            continue;
        }
        if let Some((_, text)) = cur.as_mut() {
            text.push_str(line);
            text.push('\n');
            if line == "}" {
                let (k, t) = cur.take().unwrap();
                out.insert(k, t);
            }
        }
    }
    out
}

/// Ruleset text without our two tables (what must never change).
pub fn foreign_tables(ruleset: &str) -> BTreeMap<String, String> {
    let mut t = tables(ruleset);
    t.remove("ip ecs-hostnet");
    t.remove("inet ecs-hostnet");
    t
}

/// One rule as listed by `nft -a list ruleset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// the rule text without ` # handle N`
    pub text: String,
    pub handle: Option<u64>,
    pub comment: Option<String>,
}

impl Rule {
    /// The rule text without the `comment "..."` part and counter values.
    pub fn body(&self) -> String {
        let mut t = self.text.clone();
        if let Some(i) = t.find(" comment \"") {
            t.truncate(i);
        }
        normalize_counters(&t)
    }
}

/// `counter packets 12 bytes 720` -> `counter`
pub fn normalize_counters(s: &str) -> String {
    let toks: Vec<&str> = s.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == "counter" && i + 4 < toks.len() && toks[i + 1] == "packets" {
            out.push("counter");
            i += 5;
            continue;
        }
        out.push(toks[i]);
        i += 1;
    }
    out.join(" ")
}

/// Parse the rules out of `nft [-a] list ruleset` output.
pub fn rules(ruleset: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    let (mut fam, mut tab, mut chain) = (String::new(), String::new(), String::new());
    for raw in ruleset.lines() {
        let line = raw.trim();
        if let Some(rest) = raw.strip_prefix("table ") {
            let rest = rest.split(" # handle ").next().unwrap_or(rest);
            let mut it = rest.trim_end_matches('{').split_whitespace();
            fam = it.next().unwrap_or("").to_string();
            tab = it.next().unwrap_or("").to_string();
            chain.clear();
            continue;
        }
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
            continue;
        }
        if line == "}" {
            chain.clear();
            continue;
        }
        if chain.is_empty() || line.is_empty() || line.starts_with("type ") {
            continue;
        }
        let (text, handle) = match line.rsplit_once(" # handle ") {
            Some((t, h)) => (t.to_string(), h.trim().parse().ok()),
            None => (line.to_string(), None),
        };
        let comment = text.find(" comment \"").map(|i| {
            let rest = &text[i + " comment \"".len()..];
            rest[..rest.rfind('"').unwrap_or(rest.len())].to_string()
        });
        out.push(Rule { family: fam.clone(), table: tab.clone(), chain: chain.clone(), text, handle, comment });
    }
    out
}

/// Our rules only (the two ecs-hostnet tables).
pub fn our_rules(ruleset: &str) -> Vec<Rule> {
    rules(ruleset)
        .into_iter()
        .filter(|r| r.table == "ecs-hostnet" && (r.family == "ip" || r.family == "inet"))
        .collect()
}

/// A hand-written rule set with the semantics the binary must produce for the
/// default configuration (used to prove the harness can tell right from
/// wrong independently of the binary).
pub const REFERENCE_RULES: &str = r#"table ip ecs-hostnet {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "docker*" ip daddr 169.254.170.2 tcp dport 80 counter dnat to 127.0.0.1:51679 comment "ref-dnat-docker"
		iifname "br-*" ip daddr 169.254.170.2 tcp dport 80 counter dnat to 127.0.0.1:51679 comment "ref-dnat-br"
		iifname "ecs-bridge" ip daddr 169.254.170.2 tcp dport 80 counter dnat to 127.0.0.1:51679 comment "ref-dnat-ecs-bridge"
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr 169.254.170.2 tcp dport 80 counter redirect to :51679 comment "ref-redirect"
	}
}
table inet ecs-hostnet {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname != "lo" iifname != { "docker*", "br-*", "ecs-bridge" } ip daddr 127.0.0.0/8 counter drop comment "ref-localhost-guard-uplink"
		iifname != "lo" ip daddr 127.0.0.0/8 ct state & (established|related) == 0 ct status & dnat == 0 counter drop comment "ref-localhost-guard"
		iifname != "lo" iifname != "docker0" tcp dport 51678 counter drop comment "ref-introspection"
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname { "docker*", "br-*", "ecs-bridge" } ip daddr 169.254.169.254 limit rate 10/second burst 10 packets counter log prefix "imds-audit-ipv4" group 1254 snaplen 128 comment "ref-audit4"
		iifname { "docker*", "br-*", "ecs-bridge" } ip daddr 169.254.169.254 counter drop comment "ref-imds4"
		iifname { "docker*", "br-*", "ecs-bridge" } ip6 daddr fd00:ec2::254 limit rate 10/second burst 10 packets counter log prefix "imds-audit-ipv6" group 1254 snaplen 128 comment "ref-audit6"
		iifname { "docker*", "br-*", "ecs-bridge" } ip6 daddr fd00:ec2::254 counter drop comment "ref-imds6"
	}
}
"#;

/// What must be reachable before the binary has run (or after `remove`).
pub fn probes_before_apply(t: &Topology) -> Vec<Probe> {
    let (h, c, n) = (&t.host, &t.container, &t.neighbour);
    vec![
        probe("container IMDS v4", c, "169.254.169.254:80", Some(IMDS_BODY)),
        probe("container IMDS v6", c, "[fd00:ec2::254]:80", Some(IMDS_BODY)),
        probe("container credentials endpoint", c, "169.254.170.2:80", None),
        probe("container introspection v4", c, "172.17.0.1:51678", Some(INTRO_BODY)),
        probe("container introspection v6", c, "[fd00:d0c::1]:51678", Some(INTRO_BODY)),
        probe("host agent port", h, "127.0.0.1:51679", Some(CREDS_BODY)),
        probe("host credentials endpoint", h, "169.254.170.2:80", None),
        probe("neighbour host 127.0.0.1", n, "127.0.0.1:51679", None),
        probe("neighbour credentials endpoint", n, "169.254.170.2:80", None),
        probe("neighbour introspection v4", n, "192.0.2.1:51678", Some(INTRO_BODY)),
        probe("neighbour introspection v6", n, "[2001:db8:1::1]:51678", Some(INTRO_BODY)),
    ]
}

/// What must (not) be reachable once the default configuration is applied.
pub fn probes_after_apply(t: &Topology) -> Vec<Probe> {
    let (h, c, n) = (&t.host, &t.container, &t.neighbour);
    vec![
        probe("container credentials endpoint", c, "169.254.170.2:80", Some(CREDS_BODY)),
        probe("host credentials endpoint", h, "169.254.170.2:80", Some(CREDS_BODY)),
        probe("host agent port", h, "127.0.0.1:51679", Some(CREDS_BODY)),
        probe("container IMDS v4", c, "169.254.169.254:80", None),
        probe("container IMDS v6", c, "[fd00:ec2::254]:80", None),
        probe("neighbour host 127.0.0.1", n, "127.0.0.1:51679", None),
        probe("neighbour credentials endpoint", n, "169.254.170.2:80", None),
        probe("neighbour introspection v4", n, "192.0.2.1:51678", None),
        probe("neighbour introspection v6", n, "[2001:db8:1::1]:51678", None),
        probe("container introspection v4", c, "172.17.0.1:51678", Some(INTRO_BODY)),
        probe("container introspection v6", c, "[fd00:d0c::1]:51678", Some(INTRO_BODY)),
        probe("host introspection", h, "127.0.0.1:51678", Some(INTRO_BODY)),
    ]
}

/// The rule (from `nft -a list ruleset`) whose comment is `id`.
#[track_caller]
pub fn rule_by_comment(ns: &Netns, id: &str) -> Rule {
    let listed = ns.ruleset_handles();
    rules(&listed)
        .into_iter()
        .find(|r| r.comment.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no rule with comment {id:?} in\n{listed}"))
}

/// The only one of our rules in `chain` whose text contains `needle`.
#[track_caller]
pub fn our_rule_matching(ns: &Netns, chain: &str, needle: &str) -> Rule {
    let listed = ns.ruleset_handles();
    let v: Vec<Rule> = our_rules(&listed).into_iter().filter(|r| r.chain == chain && r.text.contains(needle)).collect();
    assert_eq!(v.len(), 1, "want exactly one rule in chain {chain} containing {needle:?}:\n{listed}");
    v.into_iter().next().unwrap()
}

/// Chain headers (`type ... hook ... priority ...; policy ...;`) by
/// "family table chain".
pub fn chain_headers(ruleset: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let (mut fam, mut tab, mut chain) = (String::new(), String::new(), String::new());
    for raw in ruleset.lines() {
        let line = raw.trim();
        if let Some(rest) = raw.strip_prefix("table ") {
            let rest = rest.split(" # handle ").next().unwrap_or(rest);
            let mut it = rest.trim_end_matches('{').split_whitespace();
            fam = it.next().unwrap_or("").to_string();
            tab = it.next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
        } else if line.starts_with("type ") {
            out.insert(format!("{fam} {tab} {chain}"), line.to_string());
        }
    }
    out
}

/// Multiset of rule bodies (comment and counter values stripped), per
/// "family table chain", sorted.
pub fn bodies_by_chain(rs: &[Rule]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rs {
        out.entry(format!("{} {} {}", r.family, r.table, r.chain)).or_default().push(r.body());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Assert that stderr is exactly one non-empty line.
#[track_caller]
pub fn assert_one_line_error(out: &Out) {
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want exactly one line on stderr: {out}");
}

/// Find `FILE:LINE:COL: message` in stderr (possibly after a program-name
/// prefix such as `ecs-hostnet: `) for the given FILE; returns (line, col).
pub fn file_line_col(stderr: &str, file: &str) -> Option<(usize, usize)> {
    let at = stderr.find(&format!("{file}:"))?;
    let rest = &stderr[at + file.len() + 1..];
    let mut it = rest.splitn(3, ':');
    let line = it.next()?.trim().parse().ok()?;
    let col = it.next()?.trim().parse().ok()?;
    let msg = it.next()?;
    if msg.trim().is_empty() {
        return None;
    }
    Some((line, col))
}

// ---------------------------------------------------------------------------
// awsvpc tasks, more bridges, many namespaces (tests/awsvpc.rs)
// ---------------------------------------------------------------------------

/// Addresses of an extra bridge on the host and of the one container on it.
#[derive(Clone, Copy, Debug)]
pub struct BridgeAddrs {
    /// The host's address on the bridge (e.g. "169.254.172.1") and the prefix length.
    pub host_v4: &'static str,
    pub v4_len: u8,
    /// The container's address on the bridge.
    pub ctr_v4: &'static str,
    /// The host's IPv6 address on the bridge (a /64) and the container's.
    pub host_v6: &'static str,
    pub ctr_v6: &'static str,
}

/// `ecs-bridge` as the ECS agent makes it for awsvpc tasks (169.254.172.0/22), with an
/// IPv6 prefix of our own (fd00:ecb::/64) so the task has an IPv6 path to IMDS too.
pub const ECS_BRIDGE: BridgeAddrs = BridgeAddrs {
    host_v4: "169.254.172.1",
    v4_len: 22,
    ctr_v4: "169.254.172.2",
    host_v6: "fd00:ecb::1",
    ctr_v6: "fd00:ecb::2",
};

impl Topology {
    /// Add a bridge `bridge` on the host (addresses `a.host_*`) and a new container
    /// namespace on it through a veth (`eth0` inside, `a.ctr_*`, IPv4 and IPv6 default
    /// routes via the bridge). Returns the container's index in `extra`.
    pub fn add_bridge_with_container(&mut self, bridge: &str, role: &str, a: BridgeAddrs) -> usize {
        let ns = Netns::new(role);
        let h = &self.host;
        if !h.ip(&["-o", "link", "show"]).contains(&format!(": {bridge}:")) {
            h.ip(&["link", "add", bridge, "type", "bridge"]);
            h.ip(&["addr", "add", &format!("{}/{}", a.host_v4, a.v4_len), "dev", bridge]);
            h.ip(&["addr", "add", &format!("{}/64", a.host_v6), "dev", bridge, "nodad"]);
            h.ip(&["link", "set", bridge, "up"]);
        }
        let veth = format!("veth{}", self.extra.len() + 10);
        h.ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name]);
        h.ip(&["link", "set", &veth, "master", bridge, "up"]);
        ns.ip(&["addr", "add", &format!("{}/{}", a.ctr_v4, a.v4_len), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("{}/64", a.ctr_v6), "dev", "eth0", "nodad"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", a.host_v4]);
        ns.ip(&["-6", "route", "add", "default", "via", a.host_v6]);
        self.extra.push(ns);
        self.extra.len() - 1
    }

    /// Another HTTP listener in one of this topology's namespaces, stopped in Drop.
    pub fn add_listener(&mut self, ns: &Netns, addr: &str, body: &str) {
        self.listeners.push(Listener::spawn(&ns.name, addr, body));
    }
}

/// One TCP connect from inside `ns` to `addr` with `timeout`: how long it took and the
/// local address of the connection (or the error).
pub fn tcp_connect_timed(ns: &Netns, addr: &str, timeout: Duration) -> (Duration, std::io::Result<SocketAddr>) {
    let addr: SocketAddr = addr.parse().expect("connect address");
    ns.run(move || {
        let start = Instant::now();
        let r = TcpStream::connect_timeout(&addr, timeout).and_then(|s| s.local_addr());
        (start.elapsed(), r)
    })
}

/// Asserts that a TCP connect from `ns` to `addr` fails AT ONCE (within `within`) with
/// one of `errnos` (a route says no), not after a timeout (a firewall drop).
#[track_caller]
pub fn assert_connect_refused_at_once(label: &str, ns: &Netns, addr: &str, within: Duration, errnos: &[i32]) {
    let (took, r) = tcp_connect_timed(ns, addr, Duration::from_secs(1));
    match r {
        Ok(local) => panic!("{label}: connect {addr} from {} succeeded (local {local}); it must fail at once", ns.name),
        Err(e) => {
            assert!(
                took < within && e.raw_os_error().is_some_and(|n| errnos.contains(&n)),
                "{label}: connect {addr} from {} failed after {took:?} with {e} (errno {:?}); want one of errno {errnos:?} within {within:?}",
                ns.name,
                e.raw_os_error()
            );
        }
    }
}

/// Like [`ehn_with_run_dir`] with a timeout of our choosing (a hung child is killed and
/// reported as exit code -1).
pub fn ehn_with_run_dir_timeout(run_dir: &Path, args: &[&str], timeout: Duration) -> Out {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"]).arg(bin()).args(args).env("ECS_HOSTNET_RUN_DIR", run_dir);
    let mut out = run_cmd_with(&mut cmd, timeout);
    out.cmdline = format!("ECS_HOSTNET_RUN_DIR={} {} {}", run_dir.display(), bin(), args.join(" "));
    out
}

/// Many bare network namespaces (`ehn-<pid>-<n>-<role>`), made with one `ip -batch`
/// (a loop of `netns add` inside one process) and deleted in Drop the same way (also on
/// panic). lo stays down, as in a namespace a CNI plugin has not set up yet.
pub struct NetnsSet {
    pub names: Vec<String>,
}

impl NetnsSet {
    pub fn new(role: &str, n: usize) -> NetnsSet {
        require_root();
        remove_stale_namespaces();
        let names: Vec<String> = (0..n).map(|_| unique_name(role)).collect();
        // Filled before the command runs: whatever it made is deleted in Drop.
        let set = NetnsSet { names };
        let script: String = set.names.iter().map(|n| format!("netns add {n}\n")).collect();
        let out = ip_batch(&script);
        assert!(out.ok(), "creating {n} namespaces failed: {out}");
        set
    }

    /// `/run/netns/NAME` of each.
    pub fn paths(&self) -> Vec<String> {
        self.names.iter().map(|n| format!("/run/netns/{n}")).collect()
    }
}

impl Drop for NetnsSet {
    fn drop(&mut self) {
        let script: String = self
            .names
            .iter()
            .filter(|n| Path::new("/run/netns").join(n).exists())
            .map(|n| format!("netns del {n}\n"))
            .collect();
        if script.is_empty() {
            return;
        }
        let out = ip_batch(&script);
        if !out.ok() {
            eprintln!("[harness] cannot delete all namespaces of a set: {out}");
        }
    }
}

/// `ip -force -batch FILE` with `script` (one ip command per line, without `ip`).
pub fn ip_batch(script: &str) -> Out {
    let dir = TempDir::new("ipbatch");
    let f = dir.write("batch", script);
    run_cmd("ip", &["-force", "-batch", &f], Duration::from_secs(60))
}

/// A folder of symlinks `<prefix>NNN -> target` (for `task --netns-dir`), in `dir`.
pub fn symlink_dir(dir: &TempDir, prefix: &str, targets: &[String]) -> Vec<String> {
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let link = dir.path().join(format!("{prefix}{i:03}"));
            std::os::unix::fs::symlink(t, &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
            link.to_string_lossy().into_owned()
        })
        .collect()
}

/// The per-namespace lines of `ecs-hostnet task ...` (`PATH: what`), by path, and the
/// summary line (`N namespace(s): ...`).
pub fn task_lines(stdout: &str) -> (BTreeMap<String, String>, String) {
    let mut by_path = BTreeMap::new();
    let mut summary = String::new();
    for l in stdout.lines() {
        if l.contains(" namespace(s): ") && !l.starts_with('/') {
            summary = l.to_string();
        } else if let Some((p, what)) = l.split_once(": ") {
            assert!(by_path.insert(p.to_string(), what.to_string()).is_none(), "two lines for {p}:\n{stdout}");
        }
    }
    (by_path, summary)
}

/// `ip -n NAME [-6] route show table all` lines that mention `needle`.
pub fn route_lines(ns_name: &str, ipv6: bool, needle: &str) -> Vec<String> {
    let mut args = vec!["-n", ns_name];
    if ipv6 {
        args.push("-6");
    }
    args.extend_from_slice(&["route", "show", "table", "all"]);
    sh("ip", &args).lines().filter(|l| l.contains(needle)).map(|l| l.trim().to_string()).collect()
}

// ---------------------------------------------------------------------------
// an unprivileged user (tests/golden.rs, tests/snapshot.rs)
// ---------------------------------------------------------------------------

/// The user and group the commands that need no privileges run as when the tests run as root.
pub const NOBODY_UID: u32 = 65534;
pub const NOBODY_GID: u32 = 65534;

/// PATH of the commands run by [`Unprivileged`] (which starts them with an empty environment).
pub const PLAIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a copy of the binary without privileges: as uid/gid 65534 with no supplementary
/// groups when the tests run as root (std's `CommandExt::uid` drops the supplementary groups
/// when it changes the uid as root), else as the current user.
///
/// The copy (mode 0755) lives in a fresh temp directory (mode 0755) removed in Drop, so an
/// unprivileged user can run it whatever the permissions of `target/`. Every command starts
/// with an empty environment but `PATH`, `LC_ALL=C` and `$ECS_HOSTNET_RUN_DIR` (a directory
/// inside the temp directory that only root could write to). `new` checks once, with
/// `sh -c 'id -u; id -g; id -G'` under the same settings, that the user really is 65534.
pub struct Unprivileged {
    dir: TempDir,
    bin: PathBuf,
    run_dir: PathBuf,
    /// true when commands are switched to uid/gid 65534
    pub as_nobody: bool,
}

impl Unprivileged {
    pub fn new(role: &str) -> Unprivileged {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new(role);
        let copy = dir.path().join("ecs-hostnet");
        std::fs::copy(bin(), &copy).unwrap_or_else(|e| panic!("copy {} to {}: {e}", bin(), copy.display()));
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let as_nobody = unsafe { libc::geteuid() } == 0;
        let u = Unprivileged { dir, bin: copy, run_dir, as_nobody };
        u.assert_identity();
        u
    }

    /// The temp directory (world-readable) that holds the copy of the binary.
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// The copy of the binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `$ECS_HOSTNET_RUN_DIR` of every command run here.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The uid the commands run as.
    pub fn uid(&self) -> u32 {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if self.as_nobody { NOBODY_UID } else { unsafe { libc::geteuid() } }
    }

    /// A command for `prog` in `cwd`, unprivileged (see the type's documentation).
    pub fn command(&self, prog: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(prog);
        cmd.current_dir(cwd)
            .env_clear()
            .env("PATH", PLAIN_PATH)
            .env("LC_ALL", "C")
            .env("ECS_HOSTNET_RUN_DIR", &self.run_dir);
        if self.as_nobody {
            cmd.uid(NOBODY_UID).gid(NOBODY_GID);
        }
        cmd
    }

    /// Run `cmd` (from [`Unprivileged::command`]) with a timeout of 60 s; the command line
    /// in the result says who ran it and where.
    pub fn run(&self, cmd: &mut Command) -> Out {
        let cwd = cmd.get_current_dir().map(|p| p.display().to_string()).unwrap_or_default();
        let envs: String = cmd
            .get_envs()
            .filter(|(k, _)| *k != "PATH" && *k != "LC_ALL")
            .filter_map(|(k, v)| Some(format!("{}={} ", k.to_string_lossy(), v?.to_string_lossy())))
            .collect();
        let mut out = run_cmd_with(cmd, Duration::from_secs(60));
        out.cmdline = format!("(uid {}, in {cwd}) {envs}{}", self.uid(), out.cmdline);
        out
    }

    /// The binary with `args`, run in `cwd`.
    pub fn ehn(&self, cwd: &Path, args: &[&str]) -> Out {
        self.ehn_env(cwd, &[], args)
    }

    /// The binary with `args` and more environment variables, run in `cwd`.
    pub fn ehn_env(&self, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
        let mut cmd = self.command(&self.bin, cwd);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.run(&mut cmd)
    }

    /// A fresh sub-directory of the temp directory (mode 0755, owned by root).
    pub fn subdir(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A fresh sub-directory of the temp directory that the unprivileged user owns (mode 0755).
    pub fn owned_subdir(&self, name: &str) -> PathBuf {
        let p = self.subdir(name);
        if self.as_nobody {
            std::os::unix::fs::chown(&p, Some(NOBODY_UID), Some(NOBODY_GID))
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        }
        p
    }

    /// Panics unless a command made by [`Unprivileged::command`] runs as the expected user
    /// (65534 with no other group when the tests run as root).
    pub fn assert_identity(&self) {
        let mut cmd = self.command("sh", self.dir.path());
        cmd.args(["-c", "id -u; id -g; id -G"]);
        let out = self.run(&mut cmd);
        out.expect_code(0);
        let got: Vec<&str> = out.stdout.lines().map(str::trim).collect();
        let uid = self.uid().to_string();
        if self.as_nobody {
            let want = [NOBODY_UID.to_string(), NOBODY_GID.to_string(), NOBODY_GID.to_string()];
            assert_eq!(got, want, "the unprivileged commands must run as uid/gid 65534 without other groups: {out}");
        } else {
            assert_eq!(got.first().copied(), Some(uid.as_str()), "{out}");
        }
    }
}

/// Write `text` to `path` with mode 0644 (readable by the unprivileged user).
pub fn write_readable(path: &Path, text: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A unified diff of two texts for failure messages (ESC shown as `\e`).
pub fn unified_diff(want_label: &str, want: &str, got_label: &str, got: &str) -> String {
    let (want, got) = (want.replace('\x1b', "\\e"), got.replace('\x1b', "\\e"));
    similar::TextDiff::from_lines(&want, &got)
        .unified_diff()
        .context_radius(3)
        .header(want_label, got_label)
        .to_string()
}

/// `text` without ANSI SGR sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// campaigns (tests/campaigns.rs): seeded randomness, SIGKILL at a moment, state views
// ---------------------------------------------------------------------------

/// xorshift64*: a small deterministic generator for kill moments and random choices
/// (the seed is printed by whoever uses it, so a run can be repeated).
#[derive(Clone, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator for `seed` (0 is replaced, xorshift would stay at 0).
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Uniform in `[0, max]`, in whole microseconds.
    pub fn upto(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
    /// One element of `v` (which must not be empty).
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// FNV-1a of `s`: mixes a campaign's name into a shared seed.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Starts `cmd` (stdin, stdout and stderr to /dev/null), lets it run for `delay`, then
/// sends it SIGKILL unless it has exited, and reaps it. `Some(code)`: it exited by itself
/// before the kill (`-1` for a signal); `None`: it was killed while running.
pub fn spawn_then_sigkill(cmd: &mut Command, delay: Duration) -> Option<i32> {
    let mut child = with_test_libnftnl(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + delay;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st.code().unwrap_or(-1));
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_micros(200)));
    }
    let _ = child.kill();
    let st = child.wait().expect("wait for a killed child");
    // It may have exited between the last look and the kill.
    st.code()
}

/// `net.ipv4.conf.<name>.route_localnet` of every entry (`all`, `default`, each interface)
/// of the namespace, by name.
pub fn route_localnet_values(ns: &Netns) -> BTreeMap<String, String> {
    ns.run(|| {
        let mut m = BTreeMap::new();
        for e in std::fs::read_dir("/proc/sys/net/ipv4/conf").expect("list /proc/sys/net/ipv4/conf").flatten() {
            if let Ok(v) = std::fs::read_to_string(e.path().join("route_localnet")) {
                m.insert(e.file_name().to_string_lossy().into_owned(), v.trim().to_string());
            }
        }
        m
    })
}

/// Our two tables of an `nft list ruleset` listing (ip first), counter values zeroed out
/// and blanks collapsed: equal for equal rule sets whatever the handles and counters.
pub fn our_tables_signature(ruleset: &str) -> String {
    let t = tables(ruleset);
    ["ip ecs-hostnet", "inet ecs-hostnet"]
        .iter()
        .filter_map(|k| t.get(*k))
        .flat_map(|text| text.lines().map(normalize_counters).collect::<Vec<_>>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the listing holds a live localhost guard: the rule in `table inet ecs-hostnet`,
/// which is not dormant.
pub fn localhost_guard_listed(ruleset: &str) -> bool {
    tables(ruleset)
        .get("inet ecs-hostnet")
        .is_some_and(|t| t.contains("comment \"localhost-guard\"") && !t.contains("flags dormant"))
}

/// Temporary files under `dir` (recursively): names that start with `.` and end with
/// `.tmp` (ecs-hostnet's `.NAME.ecs-hostnet.tmp` and `.PID.tmp`), relative to `dir`.
pub fn temp_files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// An IPv6-only host namespace and its peer: 2001:db8:3::1/64 on a veth to the peer
/// (2001:db8:3::2), an IPv6 default route via the peer, no IPv4 address but lo's and no
/// IPv4 route. `role` names both. (host, peer)
#[allow(dead_code)]
pub fn ipv6_only_pair(role: &str) -> (Netns, Netns) {
    let host = Netns::new(role);
    let peer = Netns::new(&format!("{role}peer"));
    host.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name]);
    host.ip(&["addr", "add", "2001:db8:3::1/64", "dev", "eth0", "nodad"]);
    host.ip(&["link", "set", "eth0", "up"]);
    peer.ip(&["addr", "add", "2001:db8:3::2/64", "dev", "eth0", "nodad"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    host.ip(&["-6", "route", "add", "default", "via", "2001:db8:3::2"]);
    assert_eq!(host.ip(&["-4", "route", "show"]).trim(), "", "no IPv4 route");
    (host, peer)
}

/// A Prometheus exposition parsed by the reference client's parser
/// (`prometheus_client.parser.text_string_to_metric_families`, the package
/// python3-prometheus-client that scripts/setup installs): one `FAMILY NAME TYPE` line per
/// family, then `SAMPLE NAME {labels} VALUE` lines (labels as JSON, sorted keys). Panics with
/// the parser's error if it refuses the text.
pub fn parse_prometheus(text: &str) -> String {
    const PY: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print("FAMILY", f.name, f.type)
    for s in f.samples:
        print("SAMPLE", s.name, json.dumps(s.labels, sort_keys=True), s.value)
"#;
    // The distribution's interpreter, which python3-prometheus-client installs for, not a
    // python3 found first on PATH (pyenv).
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
