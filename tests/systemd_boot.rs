//! A real systemd boot: a Debian 12 image (mmdebstrap, cached under /var/tmp) booted with
//! systemd-nspawn in a test network namespace, ecs-hostnet installed into it from outside
//! with `install --root` (the binary under test). What it proves: the boot unit's order
//! (after nftables.service and firewalld.service, before network-pre.target, docker.service
//! and ecs.service, no ordering cycle), the nftables.service drop-in (start, restart, reload
//! and stop of nftables inside leave our rule set live and a neighbour out of 127.0.0.1),
//! the watch unit, and uninstall on the live system.
//!
//! Stand-ins in the image: `docker.service` and `ecs.service` (ordered like the real ones)
//! record whether `table inet ecs-hostnet` is live when they start (`nft list table`, nft
//! being the oracle); `firewalld.service` with Fedora's ordering (After=dbus.service,
//! Before= and Wants=network-pre.target, default dependencies).
//!
//! Safety: the container's network namespace is a test namespace (tests/support Netns),
//! with a veth to a neighbour namespace; nothing in the root namespace changes (checked
//! around a whole boot case). Boots, cgroups, mounts and rootfs are removed in Drop
//! (tests/support/nspawn.rs), also on panic; a killed run's leftovers are removed by the
//! next. Run alone: `cargo test --profile ci --test systemd_boot`.

#[path = "support/nspawn.rs"]
mod nspawn;
mod support;

use nspawn::{Boot, REBOOT_EXIT, Rootfs};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

/// The container's address on the link to the neighbour.
const HOST_V4: &str = "192.0.2.1";
/// The agent's credentials port, where a listener waits on 127.0.0.1 inside.
const CREDS: &str = "127.0.0.1:51679";

/// Whether this machine can boot a container. In CI (`CI` set) a missing prerequisite
/// fails the test; elsewhere the test is skipped with a loud message.
fn can_boot() -> bool {
    require_root();
    match nspawn::prerequisites() {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI cannot run the systemd boot tests: missing {e}"),
        Err(e) => {
            eprintln!("\n\n*** SKIPPED: this machine cannot boot a container (missing {e}); run scripts/setup ***\n\n");
            false
        }
    }
}

/// Whether the binary under test has the `watch` command.
fn watch_available() -> bool {
    run_cmd(bin(), &["watch", "--help"], Duration::from_secs(10)).ok()
}

/// Everything of the root namespace a boot could change.
fn root_namespace_state() -> String {
    let cmd = |p: &str, a: &[&str]| run_cmd(p, a, Duration::from_secs(20)).stdout;
    let localnet = cmd("sh", &["-c", "grep -H . /proc/sys/net/ipv4/conf/*/route_localnet"]);
    format!(
        "{}\n{}\n{}\n{}\n{localnet}",
        cmd("nft", &["list", "ruleset"]),
        cmd("ip", &["route", "show", "table", "all"]),
        cmd("ip", &["-6", "route", "show", "table", "all"]),
        cmd("ip", &["-o", "link", "show"])
            .lines()
            .map(|l| l.split(" link/").next().unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

const DOCKER_STANDIN: &str = "[Unit]\n\
    Description=stand-in for docker.service: records whether our tables are live at its start\n\
    After=network-online.target firewalld.service containerd.service\n\
    Wants=network-online.target\n\
    [Service]\n\
    Type=oneshot\n\
    RemainAfterExit=yes\n\
    ExecStart=/bin/sh -c 'mkdir -p /var/lib/standins; if nft list table inet ecs-hostnet >/dev/null 2>&1; then echo live; else echo missing; fi >> /var/lib/standins/docker'\n\
    [Install]\n\
    WantedBy=multi-user.target\n";

const ECS_STANDIN: &str = "[Unit]\n\
    Description=stand-in for ecs.service (ordered like the ECS AMI's)\n\
    After=docker.service\n\
    Wants=docker.service\n\
    [Service]\n\
    Type=oneshot\n\
    RemainAfterExit=yes\n\
    ExecStart=/bin/sh -c 'mkdir -p /var/lib/standins; if nft list table inet ecs-hostnet >/dev/null 2>&1; then echo live; else echo missing; fi >> /var/lib/standins/ecs'\n\
    [Install]\n\
    WantedBy=multi-user.target\n";

/// firewalld.service's relations on Fedora (ordering and wants), doing nothing.
const FIREWALLD_STANDIN: &str = "[Unit]\n\
    Description=stand-in with firewalld.service's ordering (Fedora)\n\
    Before=network-pre.target\n\
    Wants=network-pre.target\n\
    After=dbus.service\n\
    After=polkit.service\n\
    Conflicts=iptables.service ip6tables.service ebtables.service ipset.service\n\
    [Service]\n\
    Type=oneshot\n\
    RemainAfterExit=yes\n\
    ExecStart=/bin/true\n\
    [Install]\n\
    WantedBy=multi-user.target\n";

/// ecs.config as the image has it before install: a line of its own.
const ECS_CONFIG_BEFORE: &str = "ECS_CLUSTER=boot-test\n";

/// One test's machine: a rootfs with ecs-hostnet installed, its network namespace wired to
/// a neighbour that routes 127.0.0.1 to it, a listener on 127.0.0.1:51679 inside.
/// Fields drop in order: the boot first (its processes), then the rootfs, the listener,
/// the namespaces, the temp dir with the console log.
struct World {
    boot: Option<Boot>,
    rootfs: Rootfs,
    _listener: Option<Listener>,
    nbr: Netns,
    ns: Netns,
    _dir: TempDir,
    log: PathBuf,
    /// Files of the rootfs before install (see [`file_set`]).
    files_before: BTreeSet<String>,
    boots: usize,
}

impl World {
    /// A rootfs with the stand-ins, ecs-hostnet installed from outside with `watch.enabled`
    /// = `watch`, and `extra` run on it before the install.
    fn new(watch: bool, extra: impl FnOnce(&Rootfs)) -> World {
        let dir = TempDir::new("sysd");
        let log = dir.path().join("console.log");
        let ns = Netns::new("sysd");
        let nbr = Netns::new("nbr");
        ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &nbr.name]);
        ns.ip(&["addr", "add", &format!("{HOST_V4}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        nbr.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        nbr.ip(&["link", "set", "eth0", "up"]);
        // The neighbour sends to 127.0.0.1 through the machine (its own lo addresses gone,
        // route_localnet on so that the answers from 127.0.0.1 are not martians here).
        nbr.ip(&["addr", "flush", "dev", "lo"]);
        nbr.ip(&["route", "add", "127.0.0.1/32", "via", HOST_V4]);
        nbr.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
        let listener = Some(Listener::spawn(&ns.name, CREDS, CREDS_BODY));

        let rootfs = Rootfs::extract();
        // A machine id: not a first boot (which would apply presets and enable units).
        rootfs.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        // The container shares the host's boot id: a journal of its own, in memory.
        rootfs.write("etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\n");
        rootfs.write("etc/systemd/system/docker.service", DOCKER_STANDIN);
        rootfs.write("etc/systemd/system/ecs.service", ECS_STANDIN);
        rootfs.write("etc/systemd/system/firewalld.service", FIREWALLD_STANDIN);
        for u in ["docker.service", "ecs.service"] {
            rootfs
                .link(&format!("etc/systemd/system/multi-user.target.wants/{u}"), &format!("/etc/systemd/system/{u}"));
        }
        rootfs.write("etc/ecs/ecs.config", ECS_CONFIG_BEFORE);
        extra(&rootfs);
        let files_before = file_set(rootfs.path());

        let text = default_config_text();
        let at = text.find("[watch]").expect("[watch] in rules/default.toml");
        let config =
            format!("{}{}", &text[..at], text[at..].replacen("enabled = true", &format!("enabled = {watch}"), 1));
        let cfg = dir.write("config.toml", &config);
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["--root", &rootfs.path().to_string_lossy(), "install", "-c", &cfg]);
        let out = run_cmd_with(&mut cmd, Duration::from_secs(60));
        assert!(out.ok(), "install into the rootfs: {out}");
        World { boot: None, rootfs, _listener: listener, nbr, ns, _dir: dir, log, files_before, boots: 0 }
    }

    fn boot(&mut self) -> &Boot {
        assert!(self.boot.is_none(), "already booted");
        self.boot = Some(Boot::start(&self.rootfs, &self.ns, &self.log));
        self.boots += 1;
        self.b()
    }

    fn b(&self) -> &Boot {
        self.boot.as_ref().expect("booted")
    }

    fn reboot(&mut self) {
        let code = self.boot.take().expect("booted").reboot();
        assert_eq!(code, REBOOT_EXIT, "systemd-nspawn's exit after `systemctl reboot`");
        self.boot();
    }

    fn poweroff(&mut self) {
        let code = self.boot.take().expect("booted").poweroff();
        assert_eq!(code, 0, "systemd-nspawn's exit after `systemctl poweroff`");
    }

    /// Whether the neighbour gets the listener's answer from 127.0.0.1:51679 inside.
    fn neighbour_reaches_localhost(&self) -> bool {
        http_get(&self.nbr.name, CREDS).is_ok_and(|b| b == CREDS_BODY)
    }

    /// What the docker and ecs stand-ins recorded, one line per start.
    fn standins(&self) -> (Vec<String>, Vec<String>) {
        let read = |n: &str| {
            std::fs::read_to_string(self.rootfs.at(&format!("var/lib/standins/{n}")))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        };
        (read("docker"), read("ecs"))
    }
}

/// Both of our tables are in the kernel (nft lists them).
fn tables_live(b: &Boot) -> bool {
    b.sh("nft list table inet ecs-hostnet >/dev/null && nft list table ip ecs-hostnet >/dev/null").ok()
}

/// Our tables are live and `ecs-hostnet check` exits 0 inside, within `wait` (a repair
/// by the drop-in has run when systemctl returns; the watcher's may take a moment).
#[track_caller]
fn assert_converged(b: &Boot, label: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let check = b.sh("ecs-hostnet check");
        if tables_live(b) && check.ok() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{label}: tables live: {}; {check}\nnft list tables:\n{}",
                tables_live(b),
                b.sh("nft list tables").stdout
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A unit's property from `systemctl show`.
fn prop(b: &Boot, unit: &str, p: &str) -> String {
    b.sh_ok(&format!("systemctl show -P {p} {unit}")).trim().to_string()
}

/// A unit's activation time (monotonic µs), nonzero.
#[track_caller]
fn activated(b: &Boot, unit: &str) -> u64 {
    let v: u64 = prop(b, unit, "ActiveEnterTimestampMonotonic").parse().expect("a number");
    assert!(v > 0, "{unit} never became active");
    v
}

/// No boot of this machine logged an ordering cycle (systemd breaks one by deleting a job
/// and says so at priority warning or error).
#[track_caller]
fn assert_no_ordering_cycle(b: &Boot) {
    let out = b.sh_ok("journalctl -b --no-pager -o cat | grep -i -E 'ordering cycle|to break ordering' || true");
    assert!(out.trim().is_empty(), "an ordering cycle at boot:\n{out}");
}

/// `systemd-analyze verify` of every unit and drop-in we write (a drop-in is verified with
/// the unit it extends), clean: no output at all. `--man=no`: the image has no man pages
/// for Documentation=man: links (nftables.service has one).
#[track_caller]
fn assert_units_verify(b: &Boot, watch: bool) {
    let mut units = vec!["/etc/systemd/system/ecs-hostnet.service", "ecs.service", "nftables.service"];
    if watch {
        units.push("/etc/systemd/system/ecs-hostnet-watch.service");
    }
    let out = b.sh(&format!("systemd-analyze verify --man=no {} 2>&1", units.join(" ")));
    assert!(out.ok() && out.stdout.trim().is_empty(), "systemd-analyze verify is not clean: {out}");
}

/// The files a boot leaves and install or uninstall could touch: every path under /etc,
/// /usr/local and /var/lib, except what systemd itself keeps (var/lib/systemd) and the
/// stand-ins' records.
fn file_set(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else { return };
        for e in rd.flatten() {
            let r = format!("{rel}/{}", e.file_name().to_string_lossy());
            if ["var/lib/systemd", "var/lib/standins"].contains(&r.as_str()) {
                continue;
            }
            out.insert(r.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &r, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for top in ["etc", "usr/local", "var/lib"] {
        walk(root, top, &mut out);
    }
    out
}

/// (a) and (f): a plain boot applies before network-pre.target, Docker and the agent;
/// then a boot with a firewalld-shaped unit enabled: ours after it, still before
/// network-pre.target; no ordering cycle; every unit we write verifies clean; the root
/// namespace unchanged by all of it.
#[test]
fn a_real_boot_applies_before_the_network_docker_and_the_agent_with_or_without_firewalld() {
    if !can_boot() {
        return;
    }
    let root_before = root_namespace_state();
    {
        let watch = watch_available();
        let mut w = World::new(watch, |_| {});
        let b = w.boot();
        assert_eq!(prop(b, "ecs-hostnet.service", "ActiveState"), "active");
        assert_converged(b, "plain boot", Duration::ZERO);
        let ours = activated(b, "ecs-hostnet.service");
        let pre = activated(b, "network-pre.target");
        assert!(ours <= pre, "ecs-hostnet.service active at {ours} µs, network-pre.target at {pre} µs");
        assert!(activated(b, "docker.service") >= ours && activated(b, "ecs.service") >= ours);
        if watch {
            assert_eq!(prop(b, "ecs-hostnet-watch.service", "ActiveState"), "active");
        }
        assert_no_ordering_cycle(b);
        assert_units_verify(b, watch);
        assert_eq!(w.standins(), (vec!["live".to_string()], vec!["live".to_string()]), "docker, ecs at their start");

        // The firewalld-shaped unit enabled: its default dependencies put it after
        // basic.target, and ours after it, with no cycle.
        let code = w.boot.take().unwrap().reboot();
        assert_eq!(code, REBOOT_EXIT);
        w.rootfs.link(
            "etc/systemd/system/multi-user.target.wants/firewalld.service",
            "/etc/systemd/system/firewalld.service",
        );
        let b = w.boot();
        assert_eq!(prop(b, "firewalld.service", "ActiveState"), "active");
        assert_converged(b, "boot with firewalld", Duration::ZERO);
        let (fw, ours, pre) = (
            activated(b, "firewalld.service"),
            activated(b, "ecs-hostnet.service"),
            activated(b, "network-pre.target"),
        );
        assert!(fw <= ours && ours <= pre, "firewalld {fw}, ecs-hostnet {ours}, network-pre.target {pre} (µs)");
        assert_no_ordering_cycle(b);
        assert_units_verify(b, watch);
        let (docker, ecs) = w.standins();
        assert_eq!((docker.len(), ecs.len()), (2, 2), "{docker:?} {ecs:?}");
        assert!(docker.iter().chain(&ecs).all(|l| l == "live"), "docker {docker:?}, ecs {ecs:?}");
        w.poweroff();
    }
    assert_eq!(root_namespace_state(), root_before, "the root namespace changed");
}

/// Puts nftables.service in the image enabled (WantedBy=sysinit.target, as
/// `systemctl enable` does) with Debian's default /etc/nftables.conf and a slow start.
fn enable_slow_nftables(r: &Rootfs) {
    r.link("etc/systemd/system/sysinit.target.wants/nftables.service", "/lib/systemd/system/nftables.service");
    r.write("etc/systemd/system/nftables.service.d/slow.conf", "[Service]\nExecStartPre=/bin/sleep 1\n");
    assert!(r.at("etc/nftables.conf").exists(), "Debian's default /etc/nftables.conf");
}

/// Restart, reload and stop of nftables.service inside: after each, our tables are back,
/// check exits 0 and the neighbour cannot reach 127.0.0.1:51679 (it can while the rule set
/// is flushed: the probe can fail).
fn nftables_commands_leave_the_rule_set(w: &World, wait: Duration) {
    let b = w.b();
    assert!(!w.neighbour_reaches_localhost(), "the guard is live: the neighbour must not reach {CREDS}");
    for cmd in ["restart", "reload", "stop", "start"] {
        b.sh_ok(&format!("systemctl {cmd} nftables.service"));
        assert_converged(b, &format!("after systemctl {cmd} nftables"), wait);
        assert!(!w.neighbour_reaches_localhost(), "after systemctl {cmd} nftables the neighbour reaches {CREDS}");
    }
    assert_eq!(prop(b, "nftables.service", "ActiveState"), "active");
}

/// (b), (c) without the watcher, (e): nftables.service enabled with a slow start, over 3
/// boots: our tables live and check 0 each time, Docker and the agent started after them;
/// restart, reload and stop of nftables repaired by the drop-in alone (watch.enabled =
/// false); then uninstall on the live system and a reboot leave nothing of ecs-hostnet and
/// ecs.config as it was.
#[test]
fn nftables_service_at_boot_and_its_restarts_keep_the_rule_set_then_uninstall_leaves_nothing() {
    if !can_boot() {
        return;
    }
    let mut w = World::new(false, enable_slow_nftables);
    w.boot();
    for n in 1..=3 {
        let b = w.b();
        assert_eq!(prop(b, "nftables.service", "ActiveState"), "active", "boot {n}");
        assert_eq!(prop(b, "ecs-hostnet.service", "ActiveState"), "active", "boot {n}");
        assert_converged(b, &format!("boot {n} with a slow nftables.service"), Duration::ZERO);
        assert!(activated(b, "ecs-hostnet.service") >= activated(b, "nftables.service"), "boot {n}");
        assert_no_ordering_cycle(b);
        if n < 3 {
            w.reboot();
        }
    }
    let (docker, ecs) = w.standins();
    assert_eq!((docker.len(), ecs.len()), (3, 3), "{docker:?} {ecs:?}");
    assert!(docker.iter().chain(&ecs).all(|l| l == "live"), "docker {docker:?}, ecs {ecs:?}");
    assert_units_verify(w.b(), false);

    // The probe can fail: with the rule set flushed and route_localnet on, the neighbour
    // reaches the listener.
    w.b().sh_ok("nft flush ruleset");
    assert!(w.neighbour_reaches_localhost(), "control: with no guard the neighbour should reach {CREDS}");
    w.b().sh_ok("ecs-hostnet apply");
    nftables_commands_leave_the_rule_set(&w, Duration::ZERO);

    // A drifted installed file under /etc, which nftables.service's sandbox
    // (ProtectSystem=full) cannot repair, does not keep the drop-in from restoring the rule
    // set (it applies --kernel-only); the next full apply repairs the file.
    let hook = w.rootfs.at("etc/systemd/system/ecs.service.d/ecs-hostnet.conf");
    let hook_text = std::fs::read_to_string(&hook).unwrap();
    std::fs::write(&hook, format!("{hook_text}# edited by hand\n")).unwrap();
    w.b().sh_ok("systemctl restart nftables.service");
    assert!(tables_live(w.b()), "a drifted file kept the drop-in from restoring the rule set");
    assert!(!w.neighbour_reaches_localhost(), "with a drifted file the neighbour reaches {CREDS}");
    w.b().sh_ok("ecs-hostnet apply");
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), hook_text, "apply repairs the hook");

    // (e) uninstall on the live system, then a reboot.
    let out = w.b().sh("ecs-hostnet uninstall");
    assert!(out.ok(), "{out}");
    assert!(!tables_live(w.b()), "uninstall left our tables");
    w.reboot();
    let b = w.b();
    let tables = b.sh_ok("nft list tables");
    assert!(!tables.contains("ecs-hostnet"), "after uninstall and a reboot:\n{tables}");
    assert!(!b.sh("systemctl cat ecs-hostnet.service").ok(), "the boot unit is still known");
    assert_eq!(std::fs::read_to_string(w.rootfs.at("etc/ecs/ecs.config")).unwrap(), ECS_CONFIG_BEFORE);
    let after = file_set(w.rootfs.path());
    let added: Vec<&String> = after.difference(&w.files_before).collect();
    let removed: Vec<&String> = w.files_before.difference(&after).collect();
    assert!(added.iter().all(|p| !p.contains("ecs-hostnet")), "left behind: {added:?}");
    assert!(removed.is_empty(), "uninstall removed what was there before: {removed:?}");
    assert!(added.is_empty(), "files that were not there before install: {added:?}");
    w.poweroff();
}

/// (c) with the watcher and (d): ecs-hostnet-watch.service active; `nft flush ruleset`
/// inside is repaired within seconds with the watcher's journal line at priority warning;
/// restart, reload and stop of nftables leave the rule set; under the unit's hardening the
/// watcher still sets route_localnet and takes its lock; `systemctl reload` keeps it up.
#[test]
fn the_watch_unit_repairs_a_flush_and_nftables_restarts_inside_a_real_systemd() {
    if !can_boot() {
        return;
    }
    if !watch_available() {
        eprintln!(
            "\n\n*** UNVERIFIED: the binary under test has no `watch` command yet; the watch unit's boot case did not run ***\n\n"
        );
        return;
    }
    let mut w = World::new(true, enable_slow_nftables);
    w.boot();
    let b = w.b();
    assert_eq!(prop(b, "ecs-hostnet-watch.service", "ActiveState"), "active");
    assert_converged(b, "boot with the watcher", Duration::ZERO);
    // The watcher's lines at priority warning (4) only.
    let warnings = || b.sh_ok("journalctl -u ecs-hostnet-watch.service -p warning..warning -o cat --no-pager");
    assert!(!warnings().contains("repaired in"), "a repair before the flush:\n{}", warnings());
    b.sh_ok("nft flush ruleset");
    assert_converged(b, "after nft flush ruleset (the watcher)", Duration::from_secs(5));
    assert!(!w.neighbour_reaches_localhost(), "after the watcher's repair the neighbour reaches {CREDS}");
    // Its repair line names what changed (journald may store it a moment after the repair).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = warnings();
    while !lines.contains("repaired in") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        lines = warnings();
    }
    assert!(
        lines.lines().any(|l| l.starts_with("repaired in") && l.contains("table inet ecs-hostnet was deleted")),
        "no repair line at priority warning naming the deleted table:\n{lines}\nthe unit's journal:\n{}",
        b.sh("journalctl -u ecs-hostnet-watch.service -o cat --no-pager").stdout
    );
    nftables_commands_leave_the_rule_set(&w, Duration::from_secs(5));
    assert_eq!(prop(w.b(), "ecs-hostnet-watch.service", "ActiveState"), "active");

    // The unit's hardening leaves what the watcher needs: converging at its start writes
    // route_localnet under /proc/sys/net and takes the lock in /run/ecs-hostnet.
    let b = w.b();
    b.sh_ok("sysctl -q -w net.ipv4.conf.all.route_localnet=0");
    b.sh_ok("systemctl restart ecs-hostnet-watch.service");
    assert_eq!(b.sh_ok("cat /proc/sys/net/ipv4/conf/all/route_localnet").trim(), "1", "the watcher did not set it");
    assert!(b.sh("test -e /run/ecs-hostnet").ok(), "no run directory /run/ecs-hostnet");
    // SIGHUP (systemctl reload) reloads the configuration; the watcher stays.
    b.sh_ok("systemctl reload ecs-hostnet-watch.service");
    assert_eq!(prop(b, "ecs-hostnet-watch.service", "ActiveState"), "active");
    assert_converged(b, "after the watcher's reload", Duration::ZERO);
    assert_no_ordering_cycle(w.b());
    assert_units_verify(w.b(), true);
    w.poweroff();
}
