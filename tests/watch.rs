//! `ecs-hostnet watch` against a real kernel, in namespaces these tests make: repairs after
//! flushes and edits, no repair loop with another apply, backoff against a writer in a tight
//! loop, route_localnet on a new interface, the "auto" endpoint route, the fail-safe, SIGTERM
//! and `remove`. The watcher runs as `unshare --net -- ecs-hostnet --netns NS watch` (a
//! watcher that ignored --netns would act on an empty namespace of its own) and is killed in
//! Drop, also when a test fails.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A running watcher; its stderr goes to a file whose device and inode are given as
/// `$JOURNAL_STREAM`, so each line carries its syslog priority (`<4>repaired ...`).
struct Watcher {
    child: Child,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Watcher {
    /// Starts the watcher for `ns` with configuration `config` and waits until it is
    /// ready (its "watching" line).
    fn start(ns: &Netns, config: &str) -> Watcher {
        Watcher::start_with(ns, &["--netns", &ns.name, "watch", "-c", config])
    }

    /// [`Watcher::start`] with the binary's arguments `args` (after `unshare --net --`).
    fn start_with(ns: &Netns, args: &[&str]) -> Watcher {
        let dir = TempDir::new("watch-log");
        let stderr = dir.path().join("stderr");
        let file = std::fs::File::create(&stderr).unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().unwrap();
        let child = Command::new("unshare")
            .args(["--net", "--", bin()])
            .args(args)
            .env("ECS_HOSTNET_RUN_DIR", ns.run_dir())
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn the watcher");
        let mut w = Watcher { child, stderr, _dir: dir };
        w.wait_for("ready", Duration::from_secs(10), |w| w.log().contains("watching"));
        w
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Lines of the log at priority `p` (`<p>` prefix).
    fn lines_at(&self, p: u8, needle: &str) -> Vec<String> {
        let prefix = format!("<{p}>");
        self.log().lines().filter(|l| l.starts_with(&prefix) && l.contains(needle)).map(String::from).collect()
    }

    /// utime + stime in clock ticks (/proc/PID/stat fields 14 and 15).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Polls `cond` every 10 ms up to `timeout`; panics with the log if it never holds or
    /// the watcher exited.
    #[track_caller]
    fn wait_for(&mut self, what: &str, timeout: Duration, cond: impl Fn(&Watcher) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("watcher exited ({st}) while waiting for {what}\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {what} within {timeout:?}\n--- watcher ---\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` and waits (up to 5 s) for the exit.
    fn signal_and_wait(&mut self, sig: &str) -> ExitStatus {
        sh("kill", &[&format!("-{sig}"), &self.pid().to_string()]);
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "watcher did not exit\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
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

/// Whether both localhost guard rules and the credentials DNAT are listed in `ns`.
fn guard_live(ns: &Netns) -> bool {
    let out = ns.exec("nft", &["list", "ruleset"]);
    out.ok()
        && out.stdout.contains("\"localhost-guard\"")
        && out.stdout.contains("\"localhost-guard-uplink\"")
        && out.stdout.contains("table ip ecs-hostnet")
}

/// Our rules' bodies by chain, as `nft list ruleset` shows them.
fn our_bodies(ns: &Netns) -> std::collections::BTreeMap<String, Vec<String>> {
    bodies_by_chain(&our_rules(&ns.ruleset()))
}

#[test]
fn forty_flushes_are_each_repaired_without_duplicates_and_traffic_stays_right() {
    let t = Topology::new();
    let cfg = t.dir.default_config();
    // The rule set of a fresh apply, to compare with after the flushes.
    let fresh = Netns::new("fresh");
    fresh.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let want = our_bodies(&fresh);
    let mut w = Watcher::start(&t.host, &cfg);
    assert!(guard_live(&t.host), "the first converge made the rule set");
    // A flush every 250 ms: fewer than the watcher's backoff threshold (more than 5
    // repairs within 1 s), so each is repaired at once.
    for i in 0..40 {
        let next = Instant::now() + Duration::from_millis(250);
        t.host.nft(&["flush", "ruleset"]);
        w.wait_for(&format!("repair {i}"), Duration::from_secs(5), |_| guard_live(&t.host));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    w.wait_for("40 repair lines", Duration::from_secs(5), |w| w.lines_at(4, "repaired in").len() >= 40);
    assert_eq!(our_bodies(&t.host), want, "the same rules as a fresh apply: nothing duplicated");
    assert_eq!(t.host.route_localnet(), "1");
    t.host.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_probes("after 40 flushes repaired by watch", &probes_after_apply(&t));
    let repaired = w.lines_at(4, "repaired in");
    assert!(
        repaired.iter().all(|l| l.contains("table inet ecs-hostnet was deleted") && l.contains("(by nft[")),
        "each line names what changed and who: {repaired:#?}"
    );
    assert!(w.lines_at(3, "").is_empty(), "no error line:\n{}", w.log());
}

#[test]
fn a_deleted_chain_a_deleted_rule_and_an_edited_rule_are_each_repaired() {
    let ns = Netns::new("edits");
    let dir = TempDir::new("edits");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    let want = our_bodies(&ns);
    let converged = |ns: &Netns| our_bodies(ns) == want;

    ns.nft(&["delete", "chain", "inet", "ecs-hostnet", "forward"]);
    w.wait_for("the forward chain back", Duration::from_secs(5), |_| converged(&ns));

    let guard = rule_by_comment(&ns, "localhost-guard");
    ns.nft(&["delete", "rule", "inet", "ecs-hostnet", "input", "handle", &guard.handle.unwrap().to_string()]);
    w.wait_for("the guard rule back", Duration::from_secs(5), |_| converged(&ns));

    // An edit: one of ours replaced by a rule that accepts instead.
    let guard = rule_by_comment(&ns, "localhost-guard");
    let handle = guard.handle.unwrap().to_string();
    ns.nft(&[
        "replace",
        "rule",
        "inet",
        "ecs-hostnet",
        "input",
        "handle",
        &handle,
        "ip",
        "daddr",
        "127.0.0.0/8",
        "accept",
    ]);
    w.wait_for("the edited rule put right", Duration::from_secs(5), |_| converged(&ns));

    w.wait_for("three repair lines", Duration::from_secs(5), |w| w.lines_at(4, "repaired in").len() == 3);
    let lines = w.lines_at(4, "repaired in");
    assert!(lines[0].contains("chain inet ecs-hostnet forward was deleted"), "{lines:#?}");
    assert!(lines[1].contains("1 rule was deleted from chain inet ecs-hostnet input"), "{lines:#?}");
    assert!(lines[2].contains("chain inet ecs-hostnet input"), "{lines:#?}");
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
}

#[test]
fn another_apply_that_leaves_the_host_converged_makes_no_repair() {
    let ns = Netns::new("noloop");
    let dir = TempDir::new("noloop");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    // The watcher is stopped while the rule set is flushed and another process applies
    // it again; resumed, it sees both transactions (ours touched) and must write nothing.
    sh("kill", &["-STOP", &w.pid().to_string()]);
    ns.nft(&["flush", "ruleset"]);
    let applied = ns.ehn(&["apply", "-c", &cfg]);
    sh("kill", &["-CONT", &w.pid().to_string()]);
    applied.expect_code(0);
    let handles = ns.ruleset_handles();
    // The checks run within milliseconds; give them ample time, then compare.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ns.ruleset_handles(), handles, "the watcher wrote nothing");
    assert!(w.lines_at(4, "repaired").is_empty(), "no repair line:\n{}", w.log());
    // And the watcher's own repair does not trigger another one.
    ns.nft(&["flush", "ruleset"]);
    w.wait_for("a repair", Duration::from_secs(5), |_| guard_live(&ns));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.lines_at(4, "repaired").len(), 1, "one repair, no loop:\n{}", w.log());
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
}

#[test]
fn a_writer_deleting_our_table_in_a_tight_loop_meets_backoff_not_a_busy_loop() {
    let ns = Netns::new("fight");
    let dir = TempDir::new("fight");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    let before = w.cpu_ticks();
    // The writer: `nft delete table` as fast as a shell can run it, for 3 s.
    let writer = ns.exec(
        "sh",
        &["-c", "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do nft delete table inet ecs-hostnet 2>/dev/null; done; true"],
    );
    assert!(writer.ok(), "{writer}");
    let ticks = w.cpu_ticks() - before;
    let hz = 100; // USER_HZ: /proc/PID/stat counts clock ticks of 1/100 s
    assert!(ticks < 3 * hz / 2, "the watcher used {ticks} ticks of CPU over ~3 s of fighting (a busy loop?)");
    let stopped = Instant::now();
    w.wait_for("convergence after the writer stopped", Duration::from_secs(5), |_| ns.ehn(&["check", "-c", &cfg]).ok());
    eprintln!("converged {:?} after the writer stopped; {ticks} ticks", stopped.elapsed());
    w.wait_for("the end of the episode", Duration::from_secs(5), |w| !w.lines_at(5, "stopped undoing").is_empty());
    let started = w.lines_at(3, "keeps undoing");
    assert_eq!(started.len(), 1, "one err line for the episode:\n{}", w.log());
    assert!(started[0].contains("nft["), "it names the writer: {started:?}");
    assert_eq!(w.lines_at(5, "stopped undoing").len(), 1, "one notice at its end:\n{}", w.log());
    assert!(w.lines_at(3, "").len() <= 3, "a bounded number of err lines:\n{}", w.log());
    assert!(w.child.try_wait().unwrap().is_none(), "the watcher stays up");
}

#[test]
fn a_new_ecs_bridge_gets_route_localnet_under_a_per_interface_configuration() {
    let ns = Netns::new("bridge");
    let dir = TempDir::new("bridge");
    let cfg = dir.write("per-if.toml", "[route_localnet]\nenable = [\"docker0\", \"ecs-bridge\"]\n");
    ns.ip(&["link", "add", "docker0", "type", "bridge"]);
    let mut w = Watcher::start(&ns, &cfg);
    assert_eq!(ns.sysctl("net.ipv4.conf.docker0.route_localnet"), "1");
    assert_eq!(ns.route_localnet(), "0", "only the interfaces named");
    ns.ip(&["link", "add", "ecs-bridge", "type", "bridge"]);
    w.wait_for("route_localnet on ecs-bridge", Duration::from_secs(5), |_| {
        ns.sysctl("net.ipv4.conf.ecs-bridge.route_localnet") == "1"
    });
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    // Routine on every ECS host (the agent makes ecs-bridge): info, not a warning.
    w.wait_for("the info line", Duration::from_secs(5), |w| !w.lines_at(6, "interface ecs-bridge appeared").is_empty());
    assert!(w.lines_at(4, "").is_empty(), "no warning:\n{}", w.log());
    // An interface the configuration does not name is left alone.
    ns.ip(&["link", "add", "other0", "type", "bridge"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ns.sysctl("net.ipv4.conf.other0.route_localnet"), "0");
}

#[test]
fn the_auto_endpoint_route_follows_the_ipv4_default_route() {
    let ns = Netns::new("auto");
    let dir = TempDir::new("auto");
    let cfg = dir.default_config();
    ns.ip(&["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink0"]);
    ns.ip(&["link", "set", "uplink0", "up"]);
    ns.ip(&["link", "set", "uplink1", "up"]);
    let endpoint = |ns: &Netns| ns.ip(&["route", "show", "169.254.170.2/32"]).contains("dev lo");
    let mut w = Watcher::start(&ns, &cfg);
    assert!(endpoint(&ns), "no default route: the endpoint route is there");
    ns.ip(&["route", "add", "default", "via", "192.0.2.2"]);
    w.wait_for("the endpoint route deleted", Duration::from_secs(5), |_| !endpoint(&ns));
    ns.ip(&["route", "del", "default"]);
    w.wait_for("the endpoint route back", Duration::from_secs(5), |_| endpoint(&ns));
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    // Following the default route is routine: info lines, no warning.
    w.wait_for("two info lines", Duration::from_secs(5), |w| w.lines_at(6, "an IPv4 default route was").len() == 2);
    assert!(w.lines_at(4, "").is_empty(), "no warning:\n{}", w.log());
}

#[test]
fn the_endpoint_route_deleted_or_dropped_with_lo_is_put_back() {
    let ns = Netns::new("eproute");
    let dir = TempDir::new("eproute");
    let cfg = dir.default_config();
    let endpoint = |ns: &Netns| ns.ip(&["route", "show", "169.254.170.2/32"]).contains("dev lo");
    let mut w = Watcher::start(&ns, &cfg);
    assert!(endpoint(&ns), "no default route: the auto endpoint route is there");
    ns.ip(&["route", "del", "169.254.170.2", "dev", "lo"]);
    w.wait_for("the deleted endpoint route back", Duration::from_secs(5), |_| endpoint(&ns));
    w.wait_for("a warning naming it", Duration::from_secs(5), |w| {
        !w.lines_at(4, "a route to the endpoint was deleted").is_empty()
    });
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    // lo down deletes the routes through it; lo up again must bring the endpoint route back.
    ns.ip(&["link", "set", "lo", "down"]);
    ns.ip(&["link", "set", "lo", "up"]);
    w.wait_for("the endpoint route back after lo came up", Duration::from_secs(5), |_| endpoint(&ns));
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
}

/// A process holding the run directory's lock (as an apply would), killed in Drop.
struct LockHolder(Child);

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_repair_that_cannot_be_made_puts_route_localnet_back_until_it_can() {
    let ns = Netns::new("failsafe");
    let dir = TempDir::new("failsafe");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    assert_eq!(ns.route_localnet(), "1");
    // Another root process holds the lock longer than a repair waits for it.
    let ready = dir.path().join("locked");
    let lock = ns.run_dir().join("lock");
    let holder = LockHolder(
        Command::new("flock")
            .args(["-x", lock.to_str().unwrap(), "sh", "-c", &format!("touch {}; sleep 4", ready.display())])
            .spawn()
            .expect("flock(1)"),
    );
    w.wait_for("the lock held", Duration::from_secs(5), |_| ready.exists());
    ns.nft(&["flush", "ruleset"]);
    // At once, not after the repair gave up waiting for the lock (2 s).
    w.wait_for("route_localnet back to its recorded 0", Duration::from_millis(500), |_| ns.route_localnet() == "0");
    assert!(!guard_live(&ns));
    w.wait_for("the fail-safe's err line", Duration::from_secs(1), |w| {
        !w.lines_at(3, "another ecs-hostnet run holds the lock").is_empty()
    });
    assert_eq!(
        w.lines_at(3, "went back to its recorded value: net.ipv4.conf.all.route_localnet=0").len(),
        1,
        "{}",
        w.log()
    );
    drop(holder);
    w.wait_for("the repair once the lock is free", Duration::from_secs(8), |_| {
        guard_live(&ns) && ns.route_localnet() == "1"
    });
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    w.wait_for("the release notice", Duration::from_secs(5), |w| !w.lines_at(5, "fail-safe is released").is_empty());
}

#[test]
fn sigterm_exits_0_and_leaves_the_rule_set_and_no_lock() {
    let ns = Netns::new("term");
    let dir = TempDir::new("term");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    let handles = ns.ruleset_handles();
    // `watch-<inode>.pid` and the state file `watch-<inode>.json` for `status`.
    let pid_files = || {
        let mut names: Vec<String> = std::fs::read_dir(ns.run_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("watch-"))
            .map(|n| n.rsplit_once('.').map_or(n.clone(), |(_, ext)| ext.to_string()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(pid_files(), ["json", "pid"], "a pid file and a state file while it runs");
    // A second watcher of the same namespace refuses to start.
    let second = ns.ehn(&["watch", "-c", &cfg]);
    second.expect_code(1);
    assert!(second.stderr.contains(&format!("ecs-hostnet watch (pid {}) already serves", w.pid())), "{second}");
    let st = w.signal_and_wait("TERM");
    assert_eq!(st.code(), Some(0), "{}", w.log());
    assert_eq!(ns.ruleset_handles(), handles, "the rule set is untouched");
    assert!(pid_files().is_empty(), "the pid and state files are removed: {:?}", pid_files());
    let lock = ns.run_dir().join("lock");
    run_cmd("flock", &["-n", "-x", lock.to_str().unwrap(), "true"], Duration::from_secs(5)).expect_code(0);
    assert_eq!(w.lines_at(6, "stopping on SIGTERM; leaving the rule set as it is").len(), 1, "{}", w.log());
}

#[test]
fn remove_stops_the_watcher_and_what_it_removed_stays_removed() {
    let ns = Netns::new("remove");
    let dir = TempDir::new("remove");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    let out = ns.ehn(&["remove", "-c", &cfg]);
    out.expect_code(0);
    assert!(
        out.stderr.contains(&format!("stopped ecs-hostnet watch (pid {}): remove is not repaired", w.pid())),
        "{out}"
    );
    assert_eq!(w.wait_exit().code(), Some(0), "{}", w.log());
    std::thread::sleep(Duration::from_secs(1));
    assert!(!ns.ruleset().contains("ecs-hostnet"), "{}", ns.ruleset());
    assert_eq!(ns.route_localnet(), "0");
    // With no watcher, remove says nothing about one.
    let again = ns.ehn(&["remove", "-c", &cfg]);
    again.expect_code(0);
    assert!(!again.stderr.contains("stopped"), "{again}");
}

#[test]
fn a_bad_configuration_stops_the_start_with_exit_1_and_nothing_applied() {
    let ns = Netns::new("badcfg");
    let dir = TempDir::new("badcfg");
    let cfg = dir.write("bad.toml", "[credentials]\nendpoint_port = \"eighty\"\n");
    let out = ns.ehn(&["watch", "-c", &cfg]);
    out.expect_code(1);
    assert!(out.stderr.contains("bad.toml:2:"), "a located error: {out}");
    assert!(!ns.ruleset().contains("ecs-hostnet"), "nothing applied");
}

#[test]
fn sighup_reloads_the_configuration_and_a_bad_one_keeps_the_old() {
    let ns = Netns::new("reload");
    let dir = TempDir::new("reload");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    dir.write("default.toml", "[credentials\n");
    sh("kill", &["-HUP", &w.pid().to_string()]);
    w.wait_for("the reload refused", Duration::from_secs(5), |w| {
        !w.lines_at(3, "the previous one stays in force").is_empty()
    });
    assert!(w.child.try_wait().unwrap().is_none(), "still running");
    dir.write("default.toml", "[credentials]\nendpoint_port = 8080\n");
    sh("kill", &["-HUP", &w.pid().to_string()]);
    w.wait_for("the new configuration applied", Duration::from_secs(5), |_| ns.ehn(&["check", "-c", &cfg]).ok());
    assert!(ns.ruleset().contains("dport 8080"), "{}", ns.ruleset());
    assert_eq!(w.lines_at(6, "configuration reloaded").len(), 1, "{}", w.log());
}

/// Samples, inside `ns` every 20 ms for `secs` seconds, route_localnet (all) before and
/// after listing our table, and whether the localhost guard is listed: three digits per
/// sample (`110`: on before and after a listing without the guard; reading it on both
/// sides keeps a change during the listing from counting).
fn sample_guard(ns: &Netns, secs: u32) -> std::thread::JoinHandle<Out> {
    let name = ns.name.clone();
    let script = format!(
        "end=$(($(date +%s) + {secs})); while [ $(date +%s) -lt $end ]; do \
         a=$(cat /proc/sys/net/ipv4/conf/all/route_localnet); \
         g=$(nft list table inet ecs-hostnet 2>/dev/null | grep -c '\"localhost-guard\"'); \
         b=$(cat /proc/sys/net/ipv4/conf/all/route_localnet); \
         echo \"$a$b$g\"; sleep 0.02; done"
    );
    std::thread::spawn(move || run_cmd("ip", &["netns", "exec", &name, "sh", "-c", &script], Duration::from_secs(30)))
}

/// `nft delete table inet ecs-hostnet` as fast as a shell runs it, for `secs` seconds.
fn table_deleter(ns: &Netns, secs: u32) -> std::thread::JoinHandle<Out> {
    let name = ns.name.clone();
    let script = format!(
        "end=$(($(date +%s) + {secs})); while [ $(date +%s) -lt $end ]; do \
         nft delete table inet ecs-hostnet 2>/dev/null; done; true"
    );
    std::thread::spawn(move || run_cmd("ip", &["netns", "exec", &name, "sh", "-c", &script], Duration::from_secs(30)))
}

#[test]
fn while_a_writer_keeps_deleting_our_table_the_neighbour_never_reaches_the_agent() {
    let t = Topology::new();
    let cfg = t.dir.default_config();
    // ecs-init's DNAT of the credentials endpoint to the agent (iptables-nft: its own table).
    let dnat = "-t nat -A PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination 127.0.0.1:51679";
    t.host.exec_ok("iptables-nft", &dnat.split(' ').collect::<Vec<_>>());
    let mut w = Watcher::start(&t.host, &cfg);
    let secs = 3;
    let writer = table_deleter(&t.host, secs);
    let sampler = sample_guard(&t.host, secs);
    // The neighbour (routing 169.254.170.2 to the host) tries the endpoint every 50 ms,
    // each connect given 100 ms: a SYN that is dropped never answers.
    let nbr = t.neighbour.name.clone();
    let prober = std::thread::spawn(move || {
        in_netns(&nbr, move || {
            let addr: std::net::SocketAddr = "169.254.170.2:80".parse().unwrap();
            let end = Instant::now() + Duration::from_secs(u64::from(secs));
            let (mut tried, mut reached) = (0, 0);
            while Instant::now() < end {
                tried += 1;
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                    reached += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (tried, reached)
        })
    });
    let (tried, reached) = prober.join().unwrap();
    let samples = sampler.join().unwrap();
    assert!(writer.join().unwrap().ok());
    let samples: Vec<&str> = samples.stdout.lines().collect();
    let mut run = 0;
    let mut longest = 0;
    for s in &samples {
        run = if *s == "110" { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    eprintln!(
        "{} samples, longest run with route_localnet=1 and no guard: {longest}; neighbour reached the agent {reached} of {tried}",
        samples.len()
    );
    assert!(samples.len() >= 20, "sampled too rarely: {samples:?}");
    assert!(longest < 3, "route_localnet=1 with the guard missing for {longest} samples in a row:\n{}", w.log());
    assert!(tried >= 10 && reached <= 3, "the neighbour reached the agent {reached} of {tried} times\n{}", w.log());
    w.wait_for("convergence after the writer stopped", Duration::from_secs(5), |_| {
        t.host.ehn(&["check", "-c", &cfg]).ok()
    });
    assert_eq!(t.host.route_localnet(), "1");
    let engaged = w.lines_at(3, "went back to its recorded value");
    assert!((1..=3).contains(&engaged.len()), "the fail-safe engaged, one line per episode:\n{}", w.log());
    w.wait_for("each engagement released", Duration::from_secs(5), |w| {
        w.lines_at(5, "fail-safe is released").len() == engaged.len()
    });
}

#[test]
fn an_apply_of_a_changed_configuration_is_followed_not_reverted() {
    let ns = Netns::new("follow");
    let dir = TempDir::new("follow");
    let cfg = dir.default_config();
    let new = dir.write("new.toml", "[credentials]\nendpoint_port = 8080\n");
    let mut w = Watcher::start(&ns, &cfg);
    ns.ehn(&["apply", "-c", &new]).expect_code(0);
    std::thread::sleep(Duration::from_secs(1));
    ns.ehn(&["check", "-c", &new]).expect_code(0);
    assert!(w.lines_at(4, "repaired").is_empty(), "the apply was not reverted:\n{}", w.log());
    assert_eq!(w.lines_at(6, &format!("following the configuration applied since: {new}")).len(), 1, "{}", w.log());
    // A later flush is repaired to the configuration applied last.
    ns.nft(&["flush", "ruleset"]);
    w.wait_for("the repair", Duration::from_secs(5), |w| !w.lines_at(4, "repaired in").is_empty());
    ns.ehn(&["check", "-c", &new]).expect_code(0);
    // remove forgets it (and stops the watcher).
    ns.ehn(&["remove", "-c", &new]).expect_code(0);
    let records = std::fs::read_dir(ns.run_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("applied-"));
    assert_eq!(records.count(), 0, "remove deleted the record");
}

#[test]
fn an_edited_system_configuration_applied_without_c_is_followed() {
    let ns = Netns::new("follow-root");
    let root = TempDir::new("follow-root");
    let etc = root.path().join("etc/ecs-hostnet");
    std::fs::create_dir_all(&etc).unwrap();
    let cfg = etc.join("config.toml");
    std::fs::write(&cfg, default_config_text()).unwrap();
    let r = root.path().to_str().unwrap();
    let mut w = Watcher::start_with(&ns, &["--root", r, "--netns", &ns.name, "watch"]);
    std::fs::write(&cfg, "[credentials]\nendpoint_port = 8080\n").unwrap();
    ns.ehn_raw(&["--root", r, "--netns", &ns.name, "apply", "--kernel-only"]).expect_code(0);
    std::thread::sleep(Duration::from_secs(1));
    ns.ehn_raw(&["--root", r, "--netns", &ns.name, "check"]).expect_code(0);
    assert!(w.lines_at(4, "repaired").is_empty(), "the apply was not reverted:\n{}", w.log());
    ns.nft(&["flush", "ruleset"]);
    w.wait_for("the repair", Duration::from_secs(5), |w| !w.lines_at(4, "repaired in").is_empty());
    ns.ehn_raw(&["--root", r, "--netns", &ns.name, "check"]).expect_code(0);
    assert!(ns.ruleset().contains("dport 8080"), "{}", ns.ruleset());
}

#[test]
fn a_repair_failing_for_the_same_reason_is_one_err_line_then_one_notice_when_it_succeeds() {
    let ns = Netns::new("owner");
    let dir = TempDir::new("owner");
    let cfg = dir.default_config();
    let mut w = Watcher::start(&ns, &cfg);
    // Our table re-created by another process with the `owner` flag: only that process
    // may change it, so each repair fails until it exits (and the kernel drops the table).
    // One line, one transaction: a watcher repairing between a delete and an add would
    // leave nothing to fail.
    let script = format!(
        "(echo 'delete table inet ecs-hostnet; add table inet ecs-hostnet {{ flags owner; }}'; sleep 4) \
         | ip netns exec {} nft -i >/dev/null",
        ns.name
    );
    let held = run_cmd("sh", &["-c", &script], Duration::from_secs(20));
    assert!(held.ok(), "{held}");
    w.wait_for("the repair once the owner exited", Duration::from_secs(5), |_| ns.ehn(&["check", "-c", &cfg]).ok());
    w.wait_for("the notice", Duration::from_secs(5), |w| !w.lines_at(5, "repairs succeed again").is_empty());
    let failed = w.lines_at(3, "repair failed after");
    assert_eq!(failed.len(), 1, "one err line for the episode:\n{}", w.log());
    let notice = &w.lines_at(5, "repairs succeed again")[0];
    let n: u32 = notice.split("after ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(n >= 2, "several attempts failed, reported once: {notice}\n{}", w.log());
}
