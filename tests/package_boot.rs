//! The .deb in a real systemd: `dist/ecs-hostnet_*_amd64.deb` (made by `scripts/package`,
//! which `scripts/test` runs before the test suite) installed with dpkg inside a booted
//! Debian 12 image (tests/support/nspawn.rs), then the documented step, `ecs-hostnet
//! install`, a reboot, and `dpkg --purge`.
//!
//! Installed inside the booted container rather than into the rootfs before boot: the
//! maintainer scripts then run as on a host, with systemd as PID 1 (their
//! `systemctl daemon-reload`, and the prerm's `ecs-hostnet uninstall` that stops the watcher
//! and removes the live rule set).
//!
//! What it proves: the package enables, starts and applies nothing by itself; `install`
//! beside it copies no binary and writes no unit, enables the package's units (links into
//! /usr/lib/systemd/system) and after a reboot the rules are live, `ecs-hostnet check` exits
//! 0 and both units are active; `dpkg -r` with a damaged install state stops and leaves the
//! host as installed; `dpkg --purge` leaves no file of ecs-hostnet's anywhere in
//! the rootfs (the file lists before install and after purge are equal, the dpkg database,
//! logs, caches and systemd's own state excepted), ecs.config is as before, and after a
//! reboot there is no table of ours.
//!
//! Safety: as tests/systemd_boot.rs: the container runs in a test network namespace; boots,
//! cgroups, mounts and the rootfs are removed in Drop, also on panic.

#[path = "support/nspawn.rs"]
mod nspawn;
mod support;

use nspawn::{Boot, REBOOT_EXIT, Rootfs};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

/// ecs.config as the image has it before the package.
const ECS_CONFIG_BEFORE: &str = "ECS_CLUSTER=package-test\n";
/// The metrics textfile the test configures (node_exporter's usual folder).
const PROM: &str = "var/lib/node_exporter/textfile/ecs-hostnet.prom";
/// Where the .deb is put inside the image (left out when the file lists are compared).
const DEB_INSIDE: &str = "root/ecs-hostnet.deb";
/// Where the .rpm is put inside the image (the same).
const RPM_INSIDE: &str = "root/ecs-hostnet.rpm";

/// Whether this machine can boot a container (in CI a missing prerequisite fails).
fn can_boot() -> bool {
    require_root();
    match nspawn::prerequisites() {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI cannot run the package boot test: missing {e}"),
        Err(e) => {
            eprintln!("\n\n*** SKIPPED: this machine cannot boot a container (missing {e}); run scripts/setup ***\n\n");
            false
        }
    }
}

/// The package `scripts/package` wrote whose name ends in `.EXT` (`deb`, `rpm`). Missing:
/// the test fails and says what to run.
fn package(ext: &str) -> PathBuf {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let found: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect())
        .unwrap_or_default();
    assert_eq!(
        found.len(),
        1,
        "want exactly one .{ext} in {}: run `PROFILE=ci bash scripts/package` first (scripts/test does)",
        dist.display()
    );
    found.into_iter().next().unwrap()
}

/// Every path of the rootfs but what dpkg, rpm, systemd, logs and caches keep for
/// themselves (and the package copied in): what the package and `install` could leave behind.
fn all_files(root: &Path) -> BTreeSet<String> {
    const SKIP: [&str; 14] = [
        "var/lib/dpkg",
        // Debian's rpm keeps its database in ~/.rpmdb (it is not the system's package
        // manager there); elsewhere /var/lib/rpm or /usr/lib/sysimage/rpm.
        "root/.rpmdb",
        "var/lib/rpm",
        "usr/lib/sysimage/rpm",
        "var/lib/systemd",
        "var/log",
        "var/cache",
        "tmp",
        "var/tmp",
        "run",
        "proc",
        "sys",
        DEB_INSIDE,
        RPM_INSIDE,
    ];
    fn walk(root: &Path, rel: &str, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if SKIP.contains(&r.as_str()) {
                continue;
            }
            out.insert(r.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &r, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, "", &mut out);
    out
}

/// Our tables are in the kernel of the container (nft is the oracle).
fn tables_live(b: &Boot) -> bool {
    b.sh("nft list table inet ecs-hostnet >/dev/null && nft list table ip ecs-hostnet >/dev/null").ok()
}

/// A unit's property from `systemctl show`.
fn prop(b: &Boot, unit: &str, p: &str) -> String {
    b.sh_ok(&format!("systemctl show -P {p} {unit}")).trim().to_string()
}

/// What a Docker host's network namespace has and a bare test namespace lacks: an uplink
/// with default routes (`eth0`, a veth whose peer is in the returned namespace, which
/// forwards nothing) and forwarding on (Docker turns it on). Without them a container's SYN
/// to IMDS is never routed, so `verify` could not see our IMDS block drop it.
fn docker_host_network(ns: &Netns) -> Netns {
    let peer = Netns::new("pkgu");
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "uplink0", "netns", &peer.name]);
    peer.ip(&["link", "set", "uplink0", "up"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.ip(&["addr", "add", "192.0.2.10/24", "dev", "eth0"]);
    ns.ip(&["-6", "addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad"]);
    ns.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", "eth0"]);
    ns.ip(&["-6", "route", "add", "default", "via", "2001:db8::1", "dev", "eth0"]);
    ns.set_sysctl("net.ipv4.ip_forward", "1");
    ns.set_sysctl("net.ipv6.conf.all.forwarding", "1");
    peer
}

/// The watcher's journal lines of this boot.
fn watcher_journal(b: &Boot) -> String {
    b.sh_ok("journalctl -b -u ecs-hostnet-watch.service --no-pager -o cat")
}

/// `ecs-hostnet verify` on the booted host, the watcher running: exit 0, and the watcher
/// did not take verify's temporary objects (its veth, named like a container interface,
/// and its trace table) for drift: no line of its own while verify ran and settled, and the
/// rule set (counters aside) as before.
fn verify_beside_the_watcher(b: &Boot) {
    let ruleset = || b.sh_ok("nft -s list ruleset");
    let (rules_before, journal_before) = (ruleset(), watcher_journal(b));
    let out = b.sh("ecs-hostnet verify");
    assert!(out.ok(), "verify on the booted host: {out}");
    for want in ["4 of 4 probes passed", "blocked by our imds-block-ipv4", "blocked by our imds-block-ipv6"] {
        assert!(out.stdout.contains(want), "missing {want:?}: {out}");
    }
    // The watcher wakes at once on the link and nf_tables notifications and checks (a
    // repair outside a backoff episode is not delayed): one second is ample for its line.
    std::thread::sleep(Duration::from_secs(1));
    let journal = watcher_journal(b);
    let new_lines = journal.strip_prefix(journal_before.as_str()).unwrap_or(&journal);
    assert!(new_lines.trim().is_empty(), "the watcher reacted to verify:\n{new_lines}");
    assert_eq!(ruleset(), rules_before, "the rule set after verify");
}

/// The ECS agent's unit, standing in (not enabled): what matters is that it starts, running
/// the ExecStartPre of the drop-in `ecs-hostnet install` writes.
const ECS_STANDIN: &str = "[Unit]\nDescription=stand-in for ecs.service\n\
    [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n";

/// `dpkg -r` with a damaged install.json (truncated): the prerm's `ecs-hostnet uninstall
/// --package-removal` cannot read it, so the removal stops with the message and the host is
/// as installed (the package and its binary there, the ecs.service drop-in in place, the
/// rules live): never a drop-in naming a deleted binary (203/EXEC at the agent's next
/// start). Once the file is good again `check` exits 0 and the agent's stand-in restarts
/// through the drop-in's `ecs-hostnet apply`.
fn damaged_state_stops_the_removal(b: &Boot, rootfs: &Rootfs) {
    let state = rootfs.at("var/lib/ecs-hostnet/install.json");
    let good = std::fs::read(&state).expect("install.json");
    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    let out = b.sh("dpkg -r ecs-hostnet 2>&1");
    assert!(!out.ok(), "dpkg -r with a truncated install.json succeeded: {out}");
    assert!(
        out.stdout.contains("the package is not removed") && out.stdout.contains("/var/lib/ecs-hostnet/install.json"),
        "{out}"
    );
    assert_eq!(b.sh_ok("dpkg-query -W -f '${db:Status-Status}' ecs-hostnet"), "installed");
    for f in ["usr/sbin/ecs-hostnet", "etc/systemd/system/ecs.service.d/ecs-hostnet.conf"] {
        assert!(rootfs.at(f).is_file(), "{f} is gone after the failed removal");
    }
    assert!(tables_live(b), "the failed removal removed the rule set");
    std::fs::write(&state, &good).unwrap();
    let check = b.sh("ecs-hostnet check");
    assert!(check.ok(), "check once install.json is good again: {check}");
    let restart = b.sh("systemctl restart ecs.service 2>&1");
    assert!(restart.ok(), "the agent's stand-in: {restart}\n{}", b.sh("journalctl -u ecs.service --no-pager -o cat"));
}

#[test]
fn the_deb_installs_enables_nothing_install_enables_its_units_and_purge_leaves_nothing() {
    if !can_boot() {
        return;
    }
    let deb = package("deb");
    // The .deb's binary is the tree's: same version line (version, commit, build date).
    let version = |p: &str| run_cmd(p, &["--version"], Duration::from_secs(10)).stdout;
    let dir = TempDir::new("pkgx");
    let x =
        run_cmd("dpkg-deb", &["-x", &deb.to_string_lossy(), &dir.path().to_string_lossy()], Duration::from_secs(60));
    assert!(x.ok(), "{x}");
    let packaged = dir.path().join("usr/sbin/ecs-hostnet");
    assert_eq!(version(&packaged.to_string_lossy()), version(bin()), "a stale {}: run scripts/package", deb.display());

    let ns = Netns::new("pkgb");
    let _uplink = docker_host_network(&ns);
    let log = dir.path().join("console.log");
    let rootfs = Rootfs::extract();
    rootfs.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    rootfs.write("etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\n");
    rootfs.write("etc/ecs/ecs.config", ECS_CONFIG_BEFORE);
    rootfs.write("etc/systemd/system/ecs.service", ECS_STANDIN);
    std::fs::copy(&deb, rootfs.at(DEB_INSIDE)).expect("copy the .deb into the image");

    let mut boot = Boot::start(&rootfs, &ns, &log);
    let b = &boot;
    // After the first boot: what a boot itself makes is not the package's.
    let before = all_files(rootfs.path());
    let out = b.sh(&format!("dpkg -i /{DEB_INSIDE} 2>&1"));
    assert!(out.ok(), "dpkg -i: {out}");
    // The package alone: units known, not enabled, nothing applied, ecs.config untouched.
    assert_eq!(prop(b, "ecs-hostnet.service", "UnitFileState"), "disabled");
    assert_eq!(prop(b, "ecs-hostnet-watch.service", "UnitFileState"), "disabled");
    assert_eq!(prop(b, "ecs-hostnet-metrics.timer", "UnitFileState"), "disabled");
    assert!(!tables_live(b), "the package applied a rule set by itself");
    assert_eq!(std::fs::read_to_string(rootfs.at("etc/ecs/ecs.config")).unwrap(), ECS_CONFIG_BEFORE);

    // The documented step, with the metrics textfile set in the package's conffile (README,
    // "Metrics"): install then enables the package's metrics timer too.
    let conf = rootfs.at("etc/ecs-hostnet/config.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    let set = text.replacen("textfile = \"\"", &format!("textfile = \"/{PROM}\""), 1);
    assert_ne!(set, text, "no `textfile = \"\"` in the packaged configuration");
    std::fs::write(&conf, set).unwrap();
    let out = b.sh("ecs-hostnet install");
    assert!(out.ok(), "ecs-hostnet install: {out}");
    assert!(out.stdout.contains("are the package's"), "{out}");
    for own in ["usr/local/sbin/ecs-hostnet", "etc/systemd/system/ecs-hostnet.service"] {
        assert!(!rootfs.at(own).exists(), "install beside the package wrote {own}");
    }
    let link = std::fs::read_link(rootfs.at("etc/systemd/system/sysinit.target.wants/ecs-hostnet.service"));
    assert_eq!(link.ok(), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet.service")));
    let keys = std::fs::read_to_string(rootfs.at("etc/ecs/ecs.config")).unwrap();
    assert!(keys.contains("ECS_ENABLE_TASK_IAM_ROLE=true"), "{keys}");

    let code = boot.reboot();
    assert_eq!(code, REBOOT_EXIT, "systemd-nspawn's exit after `systemctl reboot`");
    boot = Boot::start(&rootfs, &ns, &log);
    let b = &boot;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(tables_live(b) && prop(b, "ecs-hostnet-watch.service", "ActiveState") == "active") {
        assert!(Instant::now() < deadline, "after a reboot: tables live {}", tables_live(b));
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = b.sh("ecs-hostnet check");
    assert!(check.ok(), "check after the reboot: {check}");
    assert_eq!(prop(b, "ecs-hostnet.service", "ActiveState"), "active");
    assert!(prop(b, "ecs-hostnet.service", "ExecStart").contains("path=/usr/sbin/ecs-hostnet"));
    verify_beside_the_watcher(b);

    // The metrics timer is enabled and waiting (its first run is 30 s after boot): its service,
    // started now as the timer starts it, passes its sandbox and writes the textfile, which the
    // reference parser reads.
    assert_eq!(prop(b, "ecs-hostnet-metrics.timer", "ActiveState"), "active");
    let run = b.sh("systemctl start ecs-hostnet-metrics.service");
    assert!(run.ok(), "the metrics service failed: {run}\n{}", b.sh("journalctl -u ecs-hostnet-metrics.service"));
    assert_eq!(prop(b, "ecs-hostnet-metrics.service", "Result"), "success");
    let parsed = parse_prometheus(&std::fs::read_to_string(rootfs.at(PROM)).expect("the textfile"));
    assert!(parsed.lines().any(|l| l == "SAMPLE ecs_hostnet_converged {} 1.0"), "{parsed}");

    damaged_state_stops_the_removal(b, &rootfs);

    let out = b.sh("dpkg --purge ecs-hostnet 2>&1");
    assert!(out.ok(), "dpkg --purge: {out}");
    assert!(!tables_live(b), "the rule set outlived the purge");
    assert_eq!(std::fs::read_to_string(rootfs.at("etc/ecs/ecs.config")).unwrap(), ECS_CONFIG_BEFORE);
    // The exposition is the monitoring's, not the package's: the purge (which stopped the timer)
    // leaves it, so it is not part of the file lists compared.
    std::fs::remove_dir_all(rootfs.at("var/lib/node_exporter")).unwrap();
    let after = all_files(rootfs.path());
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    assert!(added.is_empty() && removed.is_empty(), "after purge, added: {added:?}; removed: {removed:?}");

    let code = boot.reboot();
    assert_eq!(code, REBOOT_EXIT);
    boot = Boot::start(&rootfs, &ns, &log);
    let tables = boot.sh_ok("nft list tables");
    assert!(!tables.contains("ecs-hostnet"), "after purge and a reboot:\n{tables}");
    assert_eq!(boot.poweroff(), 0);
}

/// The .rpm (Amazon Linux 2023's package) in the same booted Debian 12 image, with Debian's
/// `rpm` tool installed in the image (its own image tarball: tests/support/nspawn.rs
/// `extract_with`). `rpm -i --nodeps`: the .rpm's requirements (libnftnl, libmnl, libc,
/// /bin/sh) are there, but installed by dpkg, so rpm's own (empty) database does not know
/// them. Inside the booted container, so the scriptlets run beside a running systemd as on
/// a host.
///
/// What it proves, as the README promises for the .rpm ("They do not enable or start the
/// units: run `ecs-hostnet install`"): `rpm -i` enables, starts and applies nothing;
/// `install` enables the package's units; after a reboot the rules are live, `check` exits 0
/// and both units are active; `rpm -e` (its %preun runs `ecs-hostnet uninstall`) leaves no
/// file of ecs-hostnet's (the file lists before `rpm -i` and after `rpm -e` are equal: the
/// configuration was not modified, so rpm keeps no .rpmsave), no table of ours live, and
/// ecs.config as before.
#[test]
fn the_rpm_installs_enables_nothing_install_enables_its_units_and_erase_leaves_nothing() {
    if !can_boot() {
        return;
    }
    let rpm = package("rpm");
    let ns = Netns::new("rpmb");
    let dir = TempDir::new("rpmx");
    let log = dir.path().join("console.log");
    let rootfs = Rootfs::extract_with(&["rpm"]);
    rootfs.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    rootfs.write("etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\n");
    rootfs.write("etc/ecs/ecs.config", ECS_CONFIG_BEFORE);
    std::fs::copy(&rpm, rootfs.at(RPM_INSIDE)).expect("copy the .rpm into the image");

    let mut boot = Boot::start(&rootfs, &ns, &log);
    let b = &boot;
    let before = all_files(rootfs.path());
    let out = b.sh(&format!("rpm -i --nodeps /{RPM_INSIDE} 2>&1"));
    assert!(out.ok(), "rpm -i: {out}");
    // The .rpm's binary is the tree's: same version line (version, commit, build date).
    let version = run_cmd(bin(), &["--version"], Duration::from_secs(10)).stdout;
    assert_eq!(b.sh_ok("/usr/sbin/ecs-hostnet --version"), version, "a stale {}: run scripts/package", rpm.display());
    assert_eq!(prop(b, "ecs-hostnet.service", "UnitFileState"), "disabled");
    assert_eq!(prop(b, "ecs-hostnet-watch.service", "UnitFileState"), "disabled");
    assert!(!tables_live(b), "the package applied a rule set by itself");
    assert_eq!(std::fs::read_to_string(rootfs.at("etc/ecs/ecs.config")).unwrap(), ECS_CONFIG_BEFORE);

    let out = b.sh("ecs-hostnet install");
    assert!(out.ok(), "ecs-hostnet install: {out}");
    let link = std::fs::read_link(rootfs.at("etc/systemd/system/sysinit.target.wants/ecs-hostnet.service"));
    assert_eq!(link.ok(), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet.service")));

    assert_eq!(boot.reboot(), REBOOT_EXIT);
    boot = Boot::start(&rootfs, &ns, &log);
    let b = &boot;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(tables_live(b) && prop(b, "ecs-hostnet-watch.service", "ActiveState") == "active") {
        assert!(Instant::now() < deadline, "after a reboot: tables live {}", tables_live(b));
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = b.sh("ecs-hostnet check");
    assert!(check.ok(), "check after the reboot: {check}");
    assert_eq!(prop(b, "ecs-hostnet.service", "ActiveState"), "active");

    let out = b.sh("rpm -e ecs-hostnet 2>&1");
    assert!(out.ok(), "rpm -e: {out}");
    assert!(!tables_live(b), "the rule set outlived the erase");
    assert_eq!(prop(b, "ecs-hostnet-watch.service", "ActiveState"), "inactive");
    assert_eq!(std::fs::read_to_string(rootfs.at("etc/ecs/ecs.config")).unwrap(), ECS_CONFIG_BEFORE);
    // Fedora's and AL2023's `filesystem` package owns /usr/share/licenses and the zsh and fish
    // completion folders, so the .rpm does not (Fedora's guidelines); this Debian image has no
    // such package, and rpm leaves the folders it created for our files. Only those may be left.
    const FILESYSTEM_OWNS: [&str; 5] = [
        "usr/share/licenses",
        "usr/share/zsh",
        "usr/share/zsh/site-functions",
        "usr/share/fish",
        "usr/share/fish/vendor_completions.d",
    ];
    let after = all_files(rootfs.path());
    let added: Vec<&String> = after.difference(&before).filter(|p| !FILESYSTEM_OWNS.contains(&p.as_str())).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    assert!(added.is_empty() && removed.is_empty(), "after rpm -e, added: {added:?}; removed: {removed:?}");
    assert_eq!(boot.poweroff(), 0);
}
