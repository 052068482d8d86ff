//! A REAL Docker daemon (Debian's docker.io) inside a test network namespace H:
//! containers on docker0 and on a user-defined network (a br-xxxx bridge) reach the fake
//! agent through 169.254.170.2 and not IMDS, across a daemon restart; Docker's own
//! iptables rules are the same set before `apply` and after `remove`; the root namespace's
//! rule sets do not change. With the watcher running in that namespace, a container's IMDS
//! attempt is an audit line naming the container (Docker's API socket), and `verify` passes
//! there leaving the rule set (counters aside), links and routes as they were.
//!
//! How dockerd runs in H (see the notes on hardened hosts and Docker):
//! `nsenter --net=/run/netns/H unshare --mount --propagation slave`, a fresh sysfs and the
//! cgroup hierarchies mounted again (ip netns exec would hide the v1 ones), private tmpfs
//! over /run and /opt, its own data root, exec root, pid file, socket, cgroup parent and a
//! config file with "deprecated-key-path". No registry: the image is a tarball holding
//! busybox-static, `docker import`ed. Everything the test starts is stopped by pid (the
//! daemon, then every process left in H or in the test's cgroup), and the cgroup removed.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The client of the docker.io package (another `docker` may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const BUSYBOX: &str = "/bin/busybox";
const IMAGE: &str = "ehn-busybox";

const UPLINK_V4: &str = "192.0.2.1";
const IMDS_NS_V4: &str = "192.0.2.2";
const UPLINK_V6: &str = "2001:db8:1::1";
const IMDS_NS_V6: &str = "2001:db8:1::2";
/// The user-defined network (IPv6 too: Docker 20.10 adds no ip6tables rules, the IMDS
/// namespace routes the subnet back to H).
const USER_NET_V4: &str = "172.30.0.0/16";
const USER_NET_V6: &str = "fd00:d0c:30::/64";

/// A dockerd in a namespace. Drop stops it and everything it started (by pid), and
/// removes its cgroup; its files live in `dir` (removed by the owner's TempDir).
struct Dockerd {
    netns: String,
    dir: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
}

impl Dockerd {
    fn new(netns: &Netns, dir: &Path) -> Dockerd {
        let dir = dir.join("docker");
        for d in ["data", "exec"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let key = dir.join("key.json");
        std::fs::write(dir.join("daemon.json"), format!("{{\"deprecated-key-path\": \"{}\"}}\n", key.display()))
            .unwrap();
        let cgroup_parent = unique_name("docker");
        let mut d = Dockerd { netns: netns.name.clone(), dir, cgroup_parent, child: None };
        d.start();
        d
    }

    fn sock(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "dockerd already running");
        // The cgroup hierarchies of the root mount namespace, mounted again over a fresh
        // tmpfs after the fresh sysfs (same hierarchies: a v1 mount of a controller is
        // the whole hierarchy).
        let mut script = String::from(
            "set -e\n\
             ctrls=$(awk '$3==\"cgroup\"{print $2\" \"$4}' /proc/self/mounts)\n\
             has2=$(awk '$3==\"cgroup2\"{print $2}' /proc/self/mounts)\n\
             umount -l /sys\n\
             mount -t sysfs sysfs /sys\n\
             mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup\n\
             echo \"$ctrls\" | while read -r dir opts; do\n\
               [ -n \"$dir\" ] || continue\n\
               o=$(echo \"$opts\" | tr ',' '\\n' | grep -v -E '^(rw|ro|relatime|nosuid|nodev|noexec)$' | paste -sd, -)\n\
               mkdir -p \"$dir\"; mount -t cgroup -o \"$o\" cgroup \"$dir\"\n\
             done\n\
             for d in $has2; do mkdir -p \"$d\"; mount -t cgroup2 cgroup2 \"$d\"; done\n\
             mount -t tmpfs -o mode=755 run /run\n\
             mount -t tmpfs -o mode=755 opt /opt\n",
        );
        script.push_str(&format!(
            "exec {DOCKERD} --data-root {d}/data --exec-root {d}/exec --pidfile {d}/docker.pid -H {sock} \
             --cgroup-parent {cg} --config-file {d}/daemon.json --storage-driver vfs\n",
            d = self.dir.display(),
            sock = self.sock(),
            cg = self.cgroup_parent,
        ));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(["unshare", "--mount", "--propagation", "slave", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn nsenter dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.docker(&["version"]).ok() {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!("dockerd did not come up ({exited:?}):\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM the daemon (it stops containerd and the containers), wait, then sweep.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    eprintln!("[docker] dockerd {pid} ignored SIGTERM; SIGKILL\n{}", self.log_tail());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.sweep();
    }

    /// Kill (by pid) every process left in H's network namespace or in our cgroup:
    /// containerd, shims, container processes. Never the test process itself.
    fn sweep(&self) {
        let Ok(ns_ino) = std::fs::metadata(format!("/run/netns/{}", self.netns)).map(|m| ino(&m)) else { return };
        let me = std::process::id().to_string();
        let marker = format!("/{}/", self.cgroup_parent);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut left = Vec::new();
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let pid = e.file_name().to_string_lossy().into_owned();
                if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                    continue;
                }
                let in_ns = std::fs::metadata(e.path().join("ns/net")).map(|m| ino(&m) == ns_ino).unwrap_or(false);
                let in_cg = std::fs::read_to_string(e.path().join("cgroup"))
                    .map(|c| c.lines().any(|l| l.contains(&marker) || l.ends_with(&marker[..marker.len() - 1])))
                    .unwrap_or(false);
                if in_ns || in_cg {
                    left.push(pid.parse::<i32>().unwrap());
                }
            }
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("[docker] processes still alive after SIGKILL: {left:?}");
                return;
            }
            for pid in left {
                // SAFETY: kill(2) has no memory preconditions; these pids are in our namespace/cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn remove_cgroup(&self) {
        fn rmdir_tree(p: &Path) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        rmdir_tree(&e.path());
                    }
                }
            }
            if let Err(e) = std::fs::remove_dir(p) {
                eprintln!("[docker] cannot remove cgroup {}: {e}", p.display());
            }
        }
        for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = e.path().join(&self.cgroup_parent);
            if p.is_dir() {
                rmdir_tree(&p);
            }
        }
    }

    fn docker(&self, args: &[&str]) -> Out {
        let sock = self.sock();
        let mut v = vec!["-H", sock.as_str()];
        v.extend_from_slice(args);
        run_cmd(DOCKER, &v, Duration::from_secs(30))
    }

    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.ok(), "docker command failed: {out}\n--- dockerd log ---\n{}", self.log_tail());
        out.stdout.trim().to_string()
    }

    /// A container that sleeps, restarted with the daemon, stopped within 1 s.
    fn run_container(&self, name: &str, network: &str) {
        self.docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--restart",
            "always",
            "--stop-timeout",
            "1",
            IMAGE,
            BUSYBOX,
            "sleep",
            "3600",
        ]);
    }

    fn wait_running(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.docker(&["inspect", "-f", "{{.State.Running}}", name]).stdout.trim() != "true" {
            assert!(Instant::now() < deadline, "container {name} not running after a restart\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `busybox wget` from inside a container (`wget -T` segfaults in busybox 1.35:
    /// `busybox timeout` bounds it). The body, or the failure.
    fn wget(&self, ctr: &str, url: &str) -> Result<String, String> {
        let out = self.docker(&["exec", ctr, BUSYBOX, "timeout", "3", BUSYBOX, "wget", "-q", "-O", "-", url]);
        if out.ok() { Ok(out.stdout) } else { Err(format!("{out}")) }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.docker(&["rm", "-f", "-v", "c-default", "c-user", "c-after"]);
        }
        self.stop();
        self.remove_cgroup();
    }
}

/// `ecs-hostnet --netns NS watch` (in a network namespace of its own until it enters NS),
/// its stderr in a file given as `$JOURNAL_STREAM`; killed in Drop.
struct Watcher {
    child: Child,
    stderr: PathBuf,
}

impl Watcher {
    fn start(ns: &Netns, config: &str, dir: &Path) -> Watcher {
        use std::os::unix::fs::MetadataExt;
        let stderr = dir.join("watch.stderr");
        let file = std::fs::File::create(&stderr).unwrap();
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
        let mut w = Watcher { child, stderr };
        w.wait_line("IMDS audit: receiving", Duration::from_secs(10));
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    #[track_caller]
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("watcher exited ({st}) while waiting for {needle:?}\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {timeout:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// What `verify` must leave as it found: each link's index, name and master, the routes of
/// both families, the rule set without counters.
fn host_state(h: &Netns) -> String {
    let links: Vec<String> = h
        .ip(&["-o", "link", "show"])
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let master = w.iter().position(|x| *x == "master").map(|i| w[i + 1]).unwrap_or("-");
            format!("{} {} {master}", w[0], w[1])
        })
        .collect();
    format!(
        "{}\n{}\n{}\n{}",
        links.join("\n"),
        h.ip(&["route", "show", "table", "all"]),
        h.ip(&["-6", "route", "show", "table", "all"]),
        normalize_counters(&h.nft(&["-s", "list", "ruleset"]))
    )
}

fn ino(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// `iptables-save` (or `ip6tables-save`) as a set of lines, without comments and counters.
fn iptables_set(prog: &str, netns: Option<&Netns>) -> BTreeSet<String> {
    let text = match netns {
        Some(ns) => ns.exec_ok(prog, &[]),
        None => sh(prog, &[]),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            // ":CHAIN POLICY [packets:bytes]"
            Some(_) => l.rsplit_once(" [").map_or(l, |(head, _)| head).to_string(),
            None => l.to_string(),
        })
        .collect()
}

fn root_snapshot() -> (String, BTreeSet<String>, BTreeSet<String>) {
    (
        normalize_counters(&sh("nft", &["list", "ruleset"])),
        iptables_set("iptables-save", None),
        iptables_set("ip6tables-save", None),
    )
}

/// Retry for up to `within`: the first answer decides (a blocked probe is retried only
/// while the container's IPv6 address may still be tentative).
fn probe_until(d: &Dockerd, ctr: &str, url: &str, want: Option<&str>, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let got = d.wget(ctr, url);
        let ok = match (&got, want) {
            (Ok(body), Some(w)) => body.trim() == w,
            (Err(_), None) => true,
            _ => false,
        };
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{ctr} -> {url}: want {want:?}, got {got:?}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A probe: container, URL, the body it must get (None: it must get nothing), retry window.
type Probe<'a> = (&'a str, &'a str, Option<&'a str>, Duration);

/// Run the probes of one stage in parallel (a blocked one waits out its 3 s timeout).
fn assert_all(stage: &str, d: &Dockerd, probes: &[Probe]) {
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let hs: Vec<_> =
            probes.iter().map(|&(c, url, want, t)| s.spawn(move || probe_until(d, c, url, want, t))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bad: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(bad.is_empty(), "{stage}:\n{}", bad.join("\n"));
}

const CREDS: &str = "http://169.254.170.2/";
const IMDS4: &str = "http://169.254.169.254/";
const IMDS6: &str = "http://[fd00:ec2::254]/";

/// For every container: the agent's answer at 169.254.170.2, no IMDS (v4; v6 for the
/// container on the IPv6 user-defined network).
fn assert_guarded(stage: &str, d: &Dockerd, ctrs: &[&str]) {
    let t = Duration::from_secs(3);
    let mut r: Vec<Probe> = Vec::new();
    for &c in ctrs {
        r.push((c, CREDS, Some(CREDS_BODY), t));
        r.push((c, IMDS4, None, Duration::ZERO));
        if c == "c-user" {
            r.push((c, IMDS6, None, Duration::ZERO));
        }
    }
    assert_all(stage, d, &r);
}

#[test]
fn real_dockerd_containers_get_the_agent_not_imds_across_a_daemon_restart() {
    require_root();
    for p in [DOCKER, DOCKERD, BUSYBOX] {
        assert!(Path::new(p).exists(), "{p} is missing: run scripts/setup (docker.io, busybox-static)");
    }
    let root_before = root_snapshot();

    let dir = TempDir::new("docker");
    let h = Netns::new("dhost");
    let imds = Netns::new("dimds");
    // H's uplink: the IMDS namespace, H's default gateway.
    h.ip(&["link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", &imds.name]);
    h.ip(&["addr", "add", &format!("{UPLINK_V4}/24"), "dev", "uplink0"]);
    h.ip(&["addr", "add", &format!("{UPLINK_V6}/64"), "dev", "uplink0", "nodad"]);
    h.ip(&["link", "set", "uplink0", "up"]);
    imds.ip(&["addr", "add", &format!("{IMDS_NS_V4}/24"), "dev", "eth0"]);
    imds.ip(&["addr", "add", &format!("{IMDS_NS_V6}/64"), "dev", "eth0", "nodad"]);
    imds.ip(&["link", "set", "eth0", "up"]);
    imds.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    imds.ip(&["addr", "add", "fd00:ec2::254/128", "dev", "lo", "nodad"]);
    imds.ip(&["route", "add", "default", "via", UPLINK_V4]);
    imds.ip(&["-6", "route", "add", "default", "via", UPLINK_V6]);
    h.ip(&["route", "add", "default", "via", IMDS_NS_V4]);
    h.ip(&["-6", "route", "add", "default", "via", IMDS_NS_V6]);
    h.set_sysctl("net.ipv6.conf.all.forwarding", "1");
    let _agent = Listener::spawn(&h.name, "127.0.0.1:51679", CREDS_BODY);
    let _imds4 = Listener::spawn(&imds.name, "169.254.169.254:80", IMDS_BODY);
    let _imds6 = Listener::spawn(&imds.name, "[fd00:ec2::254]:80", IMDS_BODY);

    // the image: a tarball holding busybox-static
    let img = dir.path().join("img");
    std::fs::create_dir_all(img.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, img.join("bin/busybox")).unwrap();
    let tar = dir.path().join("busybox.tar");
    sh("tar", &["-C", &img.to_string_lossy(), "-cf", &tar.to_string_lossy(), "."]);

    let mut d = Dockerd::new(&h, dir.path());
    d.docker_ok(&["import", &tar.to_string_lossy(), IMAGE]);
    d.docker_ok(&["network", "create", "--subnet", USER_NET_V4, "--ipv6", "--subnet", USER_NET_V6, "ehn-user"]);
    let user_net = d.docker_ok(&["network", "inspect", "-f", "{{.Id}}", "ehn-user"]);
    let br = format!("br-{}", &user_net[..12]);
    imds.ip(&["-6", "route", "add", USER_NET_V6, "via", UPLINK_V6]);
    d.run_container("c-default", "bridge");
    d.run_container("c-user", "ehn-user");
    assert!(h.ip(&["link", "show", "docker0"]).contains("docker0"));
    assert!(h.ip(&["link", "show", &br]).contains(&br), "the user-defined network's bridge is {br}");

    // Controls: before apply both containers reach IMDS (so "blocked" below means
    // something) and not the agent.
    let t = Duration::from_secs(5);
    assert_all(
        "before apply",
        &d,
        &[
            ("c-default", IMDS4, Some(IMDS_BODY), t),
            ("c-user", IMDS4, Some(IMDS_BODY), t),
            ("c-user", IMDS6, Some(IMDS_BODY), t),
            ("c-default", CREDS, None, Duration::ZERO),
            ("c-user", CREDS, None, Duration::ZERO),
        ],
    );
    let docker_v4 = iptables_set("iptables-save", Some(&h));
    let docker_v6 = iptables_set("ip6tables-save", Some(&h));
    assert!(docker_v4.iter().any(|l| l.contains(&br)), "Docker's rules for {br} are missing:\n{docker_v4:?}");

    // The default, with the audit asking this daemon's socket.
    let sock = d.sock();
    let cfg = dir.write(
        "config.toml",
        &default_config_text().replace("\"/var/run/docker.sock\"", &format!("\"{}\"", &sock["unix://".len()..])),
    );
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("docker.sock\"\n"), "{cfg}");
    h.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_guarded("after apply", &d, &["c-default", "c-user"]);
    // ... through OUR rules: the DNAT for both bridges and both IMDS drops counted packets.
    let listed = h.ruleset_handles();
    for (chain, needle) in [
        ("prerouting", "\"docker*\""),
        ("prerouting", "\"br-*\""),
        // the drops (their audit rules have the same match, then `limit`)
        ("forward", "ip daddr 169.254.169.254 counter"),
        ("forward", "ip6 daddr fd00:ec2::254 counter"),
    ] {
        let r = our_rule_matching(&h, chain, needle);
        assert!(!r.text.contains("counter packets 0 "), "no packet hit {chain} rule {needle}: {}\n{listed}", r.text);
    }
    assert_eq!(iptables_set("iptables-save", Some(&h)), docker_v4, "apply changed Docker's iptables rules");

    // The IMDS audit: with the watcher in H, c-default's attempt is a line naming it.
    let mut w = Watcher::start(&h, &cfg, dir.path());
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "c-default"]);
    assert!(d.wget("c-default", IMDS4).is_err(), "IMDS must stay blocked");
    let line =
        w.wait_line(&format!("(container {} \"c-default\" by source address)", &id[..12]), Duration::from_secs(5));
    // Docker turns br_netfilter on: the line names the container's host-side veth too.
    assert!(
        line.starts_with("<4>IMDS attempt blocked: ipv4 tcp 172.17.") && line.contains(" in on docker0 via veth"),
        "{line}"
    );
    // verify there: exit 0, and the host as it was (counters aside).
    let before = host_state(&h);
    let out = h.ehn(&["verify", "-c", &cfg]);
    assert_eq!(out.code, 0, "verify with the real Docker: {out}");
    assert_eq!(host_state(&h), before, "verify changed the host");
    drop(w);

    // Restart the daemon: the containers come back (--restart always), a new one starts.
    d.stop();
    d.start();
    d.wait_running("c-default");
    d.wait_running("c-user");
    d.run_container("c-after", "bridge");
    h.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_guarded("after a dockerd restart", &d, &["c-default", "c-user", "c-after"]);
    assert_eq!(
        iptables_set("iptables-save", Some(&h)),
        docker_v4,
        "Docker's rules after its restart (as a set) differ"
    );

    h.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(h.ruleset().lines().filter(|l| l.contains("ecs-hostnet")).count(), 0, "{}", h.ruleset());
    assert_eq!(iptables_set("iptables-save", Some(&h)), docker_v4, "Docker's iptables rules after remove");
    assert_eq!(iptables_set("ip6tables-save", Some(&h)), docker_v6, "Docker's ip6tables rules after remove");
    assert_all("after remove", &d, &[("c-after", IMDS4, Some(IMDS_BODY), t)]);

    drop(d);
    assert_eq!(root_snapshot(), root_before, "the root namespace's rule sets changed");
}
