//! The IMDS audit against a real kernel, in namespaces these tests make: a container-like
//! namespace on a veth under docker0 sends TCP SYNs to IMDS (IPv4 and IPv6); the watcher
//! (`unshare --net -- ecs-hostnet --netns HOST watch`, its stderr read as the journal would
//! read it, each line with its `<priority>`) writes one warning line per attempt, no more
//! lines than the audit rules' limit allows, and `status` counts them. The watcher is killed
//! in Drop, also when a test fails; the namespaces go with the topology.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A running watcher with its stderr in a file given as `$JOURNAL_STREAM` (so each line
/// carries its syslog priority, `<4>` for warning).
struct Watcher {
    child: Child,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Watcher {
    fn start(ns: &Netns, config: &str) -> Watcher {
        let dir = TempDir::new("audit-log");
        let stderr = dir.path().join("stderr");
        let file = std::fs::File::create(&stderr).unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().unwrap();
        let child = Command::new("unshare")
            .args(["--net", "--", bin(), "--netns", &ns.name, "watch", "-c", config])
            .env("ECS_HOSTNET_RUN_DIR", ns.run_dir())
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn the watcher");
        let mut w = Watcher { child, stderr, _dir: dir };
        w.wait_for("the audit group bound", Duration::from_secs(10), |l| l.contains("IMDS audit: receiving"));
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The audit lines so far (priority warning).
    fn audit_lines(&self) -> Vec<String> {
        self.log().lines().filter(|l| l.starts_with("<4>IMDS attempt blocked: ")).map(String::from).collect()
    }

    #[track_caller]
    fn wait_for(&mut self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(&self.log()) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("watcher exited ({st}) while waiting for {what}\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {what} within {timeout:?}\n--- watcher ---\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `n` audit lines are there, then a little longer to see that no more come.
    #[track_caller]
    fn lines_settled(&mut self, n: usize) -> Vec<String> {
        self.wait_for(&format!("{n} audit lines"), Duration::from_secs(5), |l| {
            l.lines().filter(|l| l.starts_with("<4>IMDS attempt blocked: ")).count() >= n
        });
        std::thread::sleep(Duration::from_millis(300));
        self.audit_lines()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The default configuration with `[audit]` keys replaced (`docker_socket` off: no Docker here).
fn config(t: &Topology, rate: u32, burst: u32) -> String {
    let text = default_config_text()
        .replace("rate_per_second = 10\n", &format!("rate_per_second = {rate}\n"))
        .replace("burst = 10\n", &format!("burst = {burst}\n"))
        .replace("docker_socket = \"/var/run/docker.sock\"\n", "docker_socket = \"\"\n");
    assert!(text.contains(&format!("rate_per_second = {rate}\n")) && text.contains("docker_socket = \"\"\n"));
    t.dir.write("audit.toml", &text)
}

/// `n` TCP SYNs from `ns` to `to`, each from its own socket (non-blocking connects: one SYN
/// each), the first from source port `first_port`; the sockets are closed after 200 ms,
/// before any retransmission (1 s). Returns how long the sending took.
fn syns(ns: &Netns, from: &str, first_port: u16, to: &str, n: u16) -> Duration {
    let from: std::net::IpAddr = from.parse().unwrap();
    let to: SocketAddr = to.parse().unwrap();
    ns.run(move || {
        use socket2::{Domain, Socket, Type};
        let mut socks = Vec::new();
        let start = Instant::now();
        for i in 0..n {
            let s = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(from, first_port + i).into()).unwrap();
            s.set_nonblocking(true).unwrap();
            let r = s.connect(&to.into());
            assert!(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS)), "{r:?}");
            socks.push(s);
        }
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        took
    })
}

/// br_netfilter hands the bridge's packets to the IP hooks in the host namespace, as
/// Docker sets it (`net.bridge.bridge-nf-call-iptables` / `-ip6tables` = 1): the log then
/// carries the bridge port (`NFULA_IFINDEX_PHYSINDEV`). Set here so the lines are the same
/// whatever a new namespace's default.
fn docker_like_bridge(t: &Topology) {
    for key in ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"] {
        assert!(
            t.host.run(move || support::sysctl_path(key).exists()),
            "{key}: br_netfilter is not loaded on this machine (modprobe br_netfilter)"
        );
        t.host.set_sysctl(key, "1");
    }
}

/// `status --format json` of the host namespace.
fn status_json(t: &Topology, cfg: &str) -> serde_json::Value {
    let out = t.host.ehn(&["status", "-c", cfg, "--format", "json"]);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn rule_packets(doc: &serde_json::Value, id: &str) -> u64 {
    doc["rules"].as_array().unwrap().iter().find(|r| r["rule"] == id).and_then(|r| r["packets"].as_u64()).unwrap()
}

#[test]
fn a_containers_imds_attempt_is_one_warning_line_per_family_and_status_counts_them() {
    let t = Topology::new();
    let cfg = config(&t, 10, 10);
    docker_like_bridge(&t);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let mut w = Watcher::start(&t.host, &cfg);

    syns(&t.container, CONTAINER_V4, 40312, "169.254.169.254:80", 1);
    let lines = w.lines_settled(1);
    assert_eq!(
        lines,
        ["<4>IMDS attempt blocked: ipv4 tcp 172.17.0.2:40312 -> 169.254.169.254:80 in on docker0 via vethc0"],
        "{}",
        w.log()
    );
    syns(&t.container, CONTAINER_V6, 40313, "[fd00:ec2::254]:80", 1);
    let lines = w.lines_settled(2);
    assert_eq!(
        lines[1],
        "<4>IMDS attempt blocked: ipv6 tcp [fd00:d0c::2]:40313 -> [fd00:ec2::254]:80 in on docker0 via vethc0",
        "{}",
        w.log()
    );
    assert_eq!(lines.len(), 2, "{}", w.log());

    let doc = status_json(&t, &cfg);
    let state = &doc["watch"]["state"];
    assert_eq!((state["audit_lines"].as_u64(), state["audit_packets"].as_u64()), (Some(2), Some(2)), "{doc:#}");
    assert_eq!(state["audit_group"].as_u64(), Some(1254));
    assert!(state["last_audit"].as_str().unwrap().contains("[fd00:d0c::2]:40313"), "{doc:#}");
    // Each audit rule's counter saw its one packet; each drop counted its attempt.
    for id in ["imds-audit-ipv4", "imds-audit-ipv6", "imds-block-ipv4", "imds-block-ipv6"] {
        assert_eq!(rule_packets(&doc, id), 1, "{id}: {doc:#}");
    }
    let prom = t.host.ehn(&["status", "-c", &cfg, "--format", "prometheus"]).stdout;
    for want in ["ecs_hostnet_imds_audit_lines_total 2\n", "# TYPE ecs_hostnet_imds_audit_lines_total counter\n"] {
        assert!(prom.contains(want), "{want} in {prom}");
    }
    let text = t.host.ehn(&["status", "-c", &cfg]).stdout;
    assert!(text.contains("nfnetlink_log group 1254: 2 lines (2 packets"), "{text}");
}

#[test]
fn a_flood_of_attempts_gives_no_more_lines_than_the_limit_allows_and_the_drop_counts_all() {
    // A small bucket, so that the bound is well below the 30 attempts.
    let (rate, burst) = (2u32, 3u32);
    let t = Topology::new();
    let cfg = config(&t, rate, burst);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let mut w = Watcher::start(&t.host, &cfg);

    let took = syns(&t.container, CONTAINER_V4, 41000, "169.254.169.254:80", 30);
    assert!(took < Duration::from_secs(1), "30 attempts within a second: {took:?}");
    // The token bucket starts full (burst) and refills at `rate` per second.
    let bound = burst as usize + (f64::from(rate) * took.as_secs_f64()).ceil() as usize;
    let lines = w.lines_settled(1);
    assert!(lines.len() <= bound, "{} lines, at most {bound} allowed ({took:?}):\n{}", lines.len(), w.log());
    assert!(lines.iter().all(|l| l.contains("ipv4 tcp 172.17.0.2:41")), "{lines:?}");
    let doc = status_json(&t, &cfg);
    assert_eq!(rule_packets(&doc, "imds-block-ipv4"), 30, "the drop counts every attempt: {doc:#}");
    assert_eq!(rule_packets(&doc, "imds-audit-ipv4") as usize, lines.len(), "{doc:#}");
    assert_eq!(doc["watch"]["state"]["audit_lines"].as_u64(), Some(lines.len() as u64), "{doc:#}");
}

/// `verify`'s IMDS probes arrive like a container's and are dropped, but they are the
/// operator's own check: the watcher writes no line for them (so the README's alert does not
/// fire on every verify), while the audit rule still saw them and a container's attempt right
/// after is reported as before.
#[test]
fn verifys_own_probes_get_no_audit_line_and_a_containers_attempt_still_does() {
    let t = Topology::new();
    let cfg = config(&t, 10, 10);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let mut w = Watcher::start(&t.host, &cfg);

    for _ in 0..3 {
        let out = t.host.ehn(&["verify", "-c", &cfg]);
        out.expect_code(0);
        assert!(out.stdout.contains("blocked by our imds-block-ipv4"), "{out}");
    }
    // A watcher that reads the probes' packets only after verify is gone (its trace table
    // and veth removed): stopped during the run, continued after it.
    let pid = w.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let out = t.host.ehn(&["verify", "-c", &cfg]);
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    out.expect_code(0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.audit_lines().is_empty(), "verify's probes were reported:\n{}", w.log());
    let doc = status_json(&t, &cfg);
    // Proof that the probes did reach the audit rules (the watcher chose to stay silent).
    for id in ["imds-audit-ipv4", "imds-audit-ipv6"] {
        assert_eq!(rule_packets(&doc, id), 4, "{id}: {doc:#}");
    }
    assert_eq!(doc["watch"]["state"]["audit_lines"].as_u64(), Some(0), "{doc:#}");

    syns(&t.container, CONTAINER_V4, 42000, "169.254.169.254:80", 1);
    let lines = w.lines_settled(1);
    assert_eq!(lines.len(), 1, "{}", w.log());
    assert!(lines[0].contains("172.17.0.2:42000"), "{lines:?}");
}

/// Time from `nft flush ruleset` in `ns` until the watcher has put the localhost guard back
/// (polled with `nft list`, a few ms a round).
fn flush_and_time_repair(ns: &Netns) -> Duration {
    ns.exec("nft", &["flush", "ruleset"]);
    let start = Instant::now();
    loop {
        let out = ns.exec("nft", &["list", "table", "inet", "ecs-hostnet"]);
        if out.ok() && out.stdout.contains("\"localhost-guard\"") {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no repair within 5 s");
    }
}

/// Security: a container's IMDS attempt makes the watcher ask Docker about its address;
/// a Docker API socket that accepts and never answers must not hold the watcher's repair of
/// a rule set flushed right after (the localhost guard gone with route_localnet on). The
/// repair after the attempt is timed against a control without one; Docker's timeout is
/// 300 ms, so a repair waiting on it takes longer than the bound.
#[test]
fn a_hung_docker_socket_never_delays_the_repair_after_an_attempt() {
    let t = Topology::new();
    let hung = t.dir.path().join("hung-docker.sock");
    // Accepts (the kernel's backlog) and never answers; closed with the test.
    let _server = std::os::unix::net::UnixListener::bind(&hung).unwrap();
    let text = std::fs::read_to_string(config(&t, 10, 10))
        .unwrap()
        .replace("docker_socket = \"\"\n", &format!("docker_socket = \"{}\"\n", hung.display()));
    let cfg = t.dir.write("audit-hung.toml", &text);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let mut w = Watcher::start(&t.host, &cfg);

    let control = flush_and_time_repair(&t.host);
    w.wait_for("the control's repair line", Duration::from_secs(5), |l| l.contains("repaired in"));
    // One SYN, sent as connect() returns (the socket closes at once: no retransmission).
    t.container.run(|| {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&"172.17.0.2:43000".parse::<SocketAddr>().unwrap().into()).unwrap();
        s.set_nonblocking(true).unwrap();
        let r = s.connect(&"169.254.169.254:80".parse::<SocketAddr>().unwrap().into());
        assert!(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS)), "{r:?}");
    });
    std::thread::sleep(Duration::from_millis(20));
    let after_attempt = flush_and_time_repair(&t.host);
    eprintln!("repair after a flush: control {control:?}, 20 ms after an attempt {after_attempt:?}");
    assert!(
        after_attempt < Duration::from_millis(150),
        "the repair waited ({after_attempt:?}, control {control:?}) for the hung Docker socket:\n{}",
        w.log()
    );
    // The attempt is still reported: without the container once Docker's lookup times out.
    let lines = w.lines_settled(1);
    assert!(lines.iter().any(|l| l.contains("172.17.0.2:43000")), "{}", w.log());
    assert!(w.log().contains("audit lines name the address only until Docker answers"), "{}", w.log());
}

/// A container with CAP_NET_RAW can send from another container's address: the line's
/// address (and a container Docker would name by it) is then the other one's, but the
/// bridge port (`via vethc0`) is the real sender's host-side veth, which it cannot forge.
#[test]
fn a_spoofed_source_address_still_names_the_real_senders_bridge_port() {
    let mut t = Topology::new();
    let cfg = config(&t, 10, 10);
    docker_like_bridge(&t);
    t.add_localhost_attacker_container(3);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let mut w = Watcher::start(&t.host, &cfg);

    // From the container on vethc0, a datagram with the source of the one on vethc3.
    let spoofed = ipv4_udp_packet("172.17.0.3".parse().unwrap(), "169.254.169.254".parse().unwrap(), 44000, 80, b"x");
    send_raw_ipv4(&t.container, spoofed);
    let lines = w.lines_settled(1);
    assert_eq!(
        lines,
        ["<4>IMDS attempt blocked: ipv4 udp 172.17.0.3:44000 -> 169.254.169.254:80 in on docker0 via vethc0"],
        "{}",
        w.log()
    );
}
