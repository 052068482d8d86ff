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
//! 0 and both units are active; `dpkg --purge` leaves no file of ecs-hostnet's anywhere in
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
/// Where the .deb is put inside the image (removed before the file lists are compared).
const DEB_INSIDE: &str = "root/ecs-hostnet.deb";

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

/// The .deb `scripts/package` wrote. Missing: the test fails and says what to run.
fn deb() -> PathBuf {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let found: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "deb")).collect())
        .unwrap_or_default();
    assert_eq!(
        found.len(),
        1,
        "want exactly one .deb in {}: run `PROFILE=ci bash scripts/package` first (scripts/test does)",
        dist.display()
    );
    found.into_iter().next().unwrap()
}

/// Every path of the rootfs but what dpkg, systemd, logs and caches keep for themselves (and
/// the .deb copied in): what the package and `install` could leave behind.
fn all_files(root: &Path) -> BTreeSet<String> {
    const SKIP: [&str; 9] =
        ["var/lib/dpkg", "var/lib/systemd", "var/log", "var/cache", "tmp", "var/tmp", "run", "proc", "sys"];
    fn walk(root: &Path, rel: &str, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if SKIP.contains(&r.as_str()) || r == DEB_INSIDE {
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

#[test]
fn the_deb_installs_enables_nothing_install_enables_its_units_and_purge_leaves_nothing() {
    if !can_boot() {
        return;
    }
    let deb = deb();
    // The .deb's binary is the tree's: same version line (version, commit, build date).
    let version = |p: &str| run_cmd(p, &["--version"], Duration::from_secs(10)).stdout;
    let dir = TempDir::new("pkgx");
    let x =
        run_cmd("dpkg-deb", &["-x", &deb.to_string_lossy(), &dir.path().to_string_lossy()], Duration::from_secs(60));
    assert!(x.ok(), "{x}");
    let packaged = dir.path().join("usr/sbin/ecs-hostnet");
    assert_eq!(version(&packaged.to_string_lossy()), version(bin()), "a stale {}: run scripts/package", deb.display());

    let ns = Netns::new("pkgb");
    let log = dir.path().join("console.log");
    let rootfs = Rootfs::extract();
    rootfs.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    rootfs.write("etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\n");
    rootfs.write("etc/ecs/ecs.config", ECS_CONFIG_BEFORE);
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

    // The metrics timer is enabled and waiting (its first run is 30 s after boot): its service,
    // started now as the timer starts it, passes its sandbox and writes the textfile, which the
    // reference parser reads.
    assert_eq!(prop(b, "ecs-hostnet-metrics.timer", "ActiveState"), "active");
    let run = b.sh("systemctl start ecs-hostnet-metrics.service");
    assert!(run.ok(), "the metrics service failed: {run}\n{}", b.sh("journalctl -u ecs-hostnet-metrics.service"));
    assert_eq!(prop(b, "ecs-hostnet-metrics.service", "Result"), "success");
    let parsed = parse_prometheus(&std::fs::read_to_string(rootfs.at(PROM)).expect("the textfile"));
    assert!(parsed.lines().any(|l| l == "SAMPLE ecs_hostnet_converged {} 1.0"), "{parsed}");

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
