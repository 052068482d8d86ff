//! Files on a multi-user host and in image builds (issue 12): modes that do not depend on
//! the umask, a run directory and lock no other user can open or hold, `--root` that
//! never reaches outside its directory through the image's absolute symlinks, the
//! installed binary's mode and owner as drift, and the enablement symlink replaced
//! atomically.
//!
//! Safety: every install/uninstall gets `--root <temp dir>`; every kernel command gets
//! `--netns <a namespace made here>` and runs under `unshare --net`, with
//! `$ECS_HOSTNET_RUN_DIR` in a temp dir. The unprivileged processes are started with
//! `setpriv` as uid/gid 65534 and killed in Drop. Namespaces, processes and temp dirs are
//! removed in Drop, also when a test fails.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const BIN_PATH: &str = "usr/local/sbin/ecs-hostnet";
const CONFIG_PATH: &str = "etc/ecs-hostnet/config.toml";
const UNIT_PATH: &str = "etc/systemd/system/ecs-hostnet.service";
const WANTS_LINK: &str = "etc/systemd/system/sysinit.target.wants/ecs-hostnet.service";
const DROPIN_PATH: &str = "etc/systemd/system/ecs.service.d/ecs-hostnet.conf";
const ECS_CONFIG: &str = "etc/ecs/ecs.config";
const STATE_PATH: &str = "var/lib/ecs-hostnet/install.json";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `[sh -c 'umask 000 && exec "$@"' sh] unshare --net -- BIN ARGS...` with
/// `$ECS_HOSTNET_RUN_DIR=run_dir` (timeout 60 s).
fn ehn_umask(umask000: bool, run_dir: &Path, args: &[&str]) -> Out {
    let mut cmd = if umask000 {
        let mut c = Command::new("sh");
        c.args(["-c", "umask 000 && exec \"$@\"", "sh", "unshare"]);
        c
    } else {
        Command::new("unshare")
    };
    cmd.args(["--net", "--", bin()]).args(args).env("ECS_HOSTNET_RUN_DIR", run_dir);
    let mut out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    out.cmdline = format!(
        "{}ECS_HOSTNET_RUN_DIR={} {} {}",
        if umask000 { "(umask 000) " } else { "" },
        run_dir.display(),
        bin(),
        args.join(" ")
    );
    out
}

/// The binary with `--root ROOT ARGS...`, the run directory inside ROOT.
fn ehn_root(root: &Path, args: &[&str]) -> Out {
    let mut v = vec!["--root", s(root)];
    v.extend_from_slice(args);
    ehn_umask(false, &root.join("run/ecs-hostnet"), &v)
}

/// The binary with `--root ROOT --netns NS ARGS...`.
fn ehn_root_ns(root: &Path, ns: &Netns, args: &[&str]) -> Out {
    let mut v = vec!["--netns", ns.name.as_str()];
    v.extend_from_slice(args);
    ehn_root(root, &v)
}

/// `setpriv` as uid/gid 65534 without supplementary groups, then `prog args`.
fn as_nobody(prog: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([&format!("--reuid={NOBODY_UID}"), &format!("--regid={NOBODY_GID}"), "--clear-groups", "--", prog])
        .args(args)
        .env_clear()
        .env("PATH", PLAIN_PATH)
        .env("LC_ALL", "C");
    cmd
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).mode() & 0o7777
}

/// Every path under `dir` (relative, `dir` itself as `.`), with lstat's mode, uid and gid
/// and whether it is a symlink.
fn modes_under(dir: &Path) -> BTreeMap<String, (u32, u32, u32, bool)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        let rel = d.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        out.insert(rel, (m.mode() & 0o7777, m.uid(), m.gid(), m.file_type().is_symlink()));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// One node outside the root as it must stay: kind, mode, owner, content or link
/// target, and the stamps that a rewrite, a chmod/chown or a rename over it would change.
type Stamp = (String, u32, u32, u32, u64, u64, (i64, i64), (i64, i64));

/// Every node under `dir` with its [`Stamp`] (content hashed).
fn stamps(dir: &Path) -> BTreeMap<String, Stamp> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&d).unwrap().display())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                stack.push(e.path());
            }
            "dir".to_string()
        } else {
            let content = std::fs::read(&d).unwrap();
            format!("file {} bytes fnv {:016x}", content.len(), fnv1a(&String::from_utf8_lossy(&content)))
        };
        out.insert(
            d.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
            (
                what,
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.ino(),
                m.size(),
                (m.mtime(), m.mtime_nsec()),
                (m.ctime(), m.ctime_nsec()),
            ),
        );
    }
    out
}

#[track_caller]
fn assert_stamps_eq(stage: &str, want: &BTreeMap<String, Stamp>, got: &BTreeMap<String, Stamp>) {
    let mut diff = String::new();
    for k in want.keys().chain(got.keys().filter(|k| !want.contains_key(*k))) {
        if want.get(k) != got.get(k) {
            diff.push_str(&format!("  {k}:\n    before {:?}\n    after  {:?}\n", want.get(k), got.get(k)));
        }
    }
    assert!(diff.is_empty(), "{stage}: something outside the root changed:\n{diff}");
}

/// A child process killed (and reaped) in Drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether someone holds a `flock` on `path`: a non-blocking try from here fails (a
/// successful try is released at once).
fn lock_is_held(path: &Path) -> bool {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_released_on_drop) => false,
        Err((_, e)) => {
            assert_eq!(e, nix::errno::Errno::EWOULDBLOCK, "flock {}", path.display());
            true
        }
    }
}

/// Waits up to 10 s until `path` is locked by someone.
#[track_caller]
fn wait_until_held(path: &Path, who: &mut Child) {
    let start = Instant::now();
    while !lock_is_held(path) {
        assert!(who.try_wait().unwrap().is_none(), "the lock holder exited before it held {}", path.display());
        assert!(start.elapsed() < Duration::from_secs(10), "{} was never locked", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `apply` in `ns` with `run_dir` and the default configuration; returns it and
/// how long it took.
fn timed_apply(ns: &Netns, cfg: &str) -> (Out, Duration) {
    let t = Instant::now();
    let out = ns.ehn(&["apply", "-c", cfg]);
    (out, t.elapsed())
}

// ---------------------------------------------------------------------------
// 1. modes do not depend on the umask
// ---------------------------------------------------------------------------

#[test]
fn install_and_apply_under_umask_000_leave_nothing_group_or_world_writable() {
    require_root();
    let dir = TempDir::new("umask");
    let cfg = dir.default_config();

    // The wrapper really runs with umask 000: a plain mkdir and touch through it are
    // 0777 and 0666 (so the checks below can fail).
    let probe = dir.path().join("probe");
    let mut control = Command::new("sh");
    control.args(["-c", "umask 000 && mkdir -p \"$1/d\" && : > \"$1/f\"", "sh", s(&probe)]);
    assert!(run_cmd_with(&mut control, Duration::from_secs(10)).ok());
    assert_eq!(mode_of(&probe.join("d")), 0o777, "umask 000 did not take effect in the wrapper");
    assert_eq!(mode_of(&probe.join("f")), 0o666);

    let root_dir = TempDir::new("umask-root");
    let root = root_dir.path();
    // An ecs.config that install only edits: its mode (0600) is kept.
    std::fs::create_dir_all(root.join("etc/ecs")).unwrap();
    std::fs::write(root.join(ECS_CONFIG), "ECS_CLUSTER=umask\n").unwrap();
    std::fs::set_permissions(root.join(ECS_CONFIG), std::fs::Permissions::from_mode(0o600)).unwrap();
    let run_parent = TempDir::new("umask-run");
    let run_dir = run_parent.path().join("run/ecs-hostnet");

    ehn_umask(true, &run_dir, &["--root", s(root), "install", "-c", &cfg]).expect_code(0);
    let ns = Netns::new("umask");
    let apply = ehn_umask(true, &run_dir, &["--root", s(root), "--netns", &ns.name, "apply", "-c", &cfg]);
    apply.expect_code(0);
    assert!(ns.ruleset().contains("table inet ecs-hostnet"), "apply did not apply: {apply}");
    ehn_umask(false, &run_dir, &["--root", s(root), "--netns", &ns.name, "check", "-c", &cfg]).expect_code(0);

    let mut bad = Vec::new();
    for (base, tree) in [(root, modes_under(root)), (run_parent.path(), modes_under(run_parent.path()))] {
        for (rel, (mode, uid, gid, link)) in tree {
            if !link && mode & 0o022 != 0 {
                bad.push(format!("{}/{rel}: mode {mode:04o} {uid}:{gid}", base.display()));
            }
        }
    }
    assert!(bad.is_empty(), "group- or world-writable after install and apply under umask 000:\n{}", bad.join("\n"));

    // ... and each has exactly its mode.
    let want: Vec<(PathBuf, u32)> = vec![
        (root.join("etc"), 0o755),
        (root.join("etc/ecs-hostnet"), 0o755),
        (root.join("etc/systemd/system/ecs.service.d"), 0o755),
        (root.join("etc/systemd/system/sysinit.target.wants"), 0o755),
        (root.join("usr/local/sbin"), 0o755),
        (root.join("var/lib/ecs-hostnet"), 0o755),
        (root.join(BIN_PATH), 0o755),
        (root.join(CONFIG_PATH), 0o644),
        (root.join(UNIT_PATH), 0o644),
        (root.join(DROPIN_PATH), 0o644),
        (root.join(STATE_PATH), 0o600),
        (root.join(ECS_CONFIG), 0o600),
        (run_parent.path().join("run"), 0o755),
        (run_dir.clone(), 0o700),
        (run_dir.join("lock"), 0o600),
        (run_dir.join("route_localnet"), 0o700),
    ];
    for (p, m) in want {
        assert_eq!(mode_of(&p), m, "mode of {}", p.display());
        assert_eq!(std::fs::symlink_metadata(&p).unwrap().uid(), 0, "owner of {}", p.display());
    }
    let records: Vec<_> = std::fs::read_dir(run_dir.join("route_localnet")).unwrap().flatten().collect();
    assert_eq!(records.len(), 1, "one saved route_localnet record: {records:?}");
    assert_eq!(mode_of(&records[0].path()), 0o600, "{}", records[0].path().display());
    assert_eq!(std::fs::read_to_string(root.join(ECS_CONFIG)).unwrap().lines().next(), Some("ECS_CLUSTER=umask"));
}

// ---------------------------------------------------------------------------
// 2. the run directory and the lock are root's
// ---------------------------------------------------------------------------

#[test]
fn an_unprivileged_user_cannot_open_the_lock_or_make_apply_wait() {
    require_root();
    let dir = TempDir::new("nobody-lock");
    let cfg = dir.default_config();
    let ns = Netns::new("nobodylock");
    let run = ns.run_dir().to_path_buf();
    assert_eq!(mode_of(&run), 0o755, "the harness's run directory starts 0755 (an older layout)");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(mode_of(&run), 0o700, "apply makes the run directory root-only");

    // uid 65534 can open nothing in it: not the lock, not a record, not the folder.
    let lock = run.join("lock");
    let files: Vec<PathBuf> = modes_under(&run).into_keys().filter(|k| k != ".").map(|k| run.join(k)).collect();
    assert!(files.contains(&lock) && files.iter().any(|f| f.starts_with(run.join("route_localnet/"))), "{files:?}");
    for f in &files {
        let o = run_cmd_with(&mut as_nobody("cat", &[s(f)]), Duration::from_secs(10));
        assert!(!o.ok() && o.stderr.contains("Permission denied"), "uid 65534 could read {}: {o}", f.display());
    }
    let o = run_cmd_with(&mut as_nobody("flock", &["--nonblock", s(&lock), "true"]), Duration::from_secs(10));
    assert!(!o.ok() && o.stderr.contains("Permission denied"), "uid 65534 could lock {}: {o}", lock.display());
    let o = run_cmd_with(&mut as_nobody("ls", &[s(&run)]), Duration::from_secs(10));
    assert!(!o.ok(), "uid 65534 could list {}: {o}", run.display());

    // While uid 65534 tries to hold the lock, apply (with work to do) is not delayed.
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    let holder = as_nobody("flock", &[s(&lock), "sleep", "30"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let _holder = Reaped(holder.unwrap());
    let (out, took) = timed_apply(&ns, &cfg);
    out.expect_code(0);
    assert!(took < Duration::from_secs(5), "apply took {took:?} while uid 65534 tried to hold the lock: {out}");

    // Control: a holder that is root IS waited for (so the timing above can fail).
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    let mut root_holder = Command::new("flock").args([s(&lock), "sleep", "2"]).spawn().unwrap();
    wait_until_held(&lock, &mut root_holder);
    let _root_holder = Reaped(root_holder);
    let (out, took) = timed_apply(&ns, &cfg);
    out.expect_code(0);
    assert!(took >= Duration::from_millis(1500), "apply did not wait for root's lock ({took:?}): {out}");
}

#[test]
fn a_lock_another_user_opened_under_an_older_layout_does_not_make_apply_wait() {
    require_root();
    let dir = TempDir::new("old-lock");
    let cfg = dir.default_config();
    for holder_kind in ["nobody", "nobody, lock taker gone", "root"] {
        let holder_is_root = holder_kind == "root";
        let ns = Netns::new("oldlock");
        let run = ns.run_dir().to_path_buf();
        // What an older ecs-hostnet left: a 0755 run directory and a 0644 lock file.
        let lock = run.join("lock");
        std::fs::write(&lock, "").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        let old_ino = std::fs::metadata(&lock).unwrap().ino();
        let mut orphan = None;
        let mut holder = match holder_kind {
            "root" => Command::new("flock").args([s(&lock), "sleep", "3"]).stdout(Stdio::null()).spawn().unwrap(),
            // uid 65534 opens it (it can: 0644 in a 0755 folder) and holds it.
            "nobody" => {
                as_nobody("flock", &["--shared", s(&lock), "sleep", "60"]).stdout(Stdio::null()).spawn().unwrap()
            }
            // flock(1) takes the lock on an inherited descriptor and exits, the shell
            // exits, a background child keeps the descriptor: /proc/locks names a pid
            // that is gone. Our child is a stand-in that only waits (it holds nothing).
            _ => {
                let script = format!("exec 9<{}; flock -x 9; sleep 30 >/dev/null 2>&1 & echo $!", s(&lock));
                let o = as_nobody("sh", &["-c", &script]).stderr(Stdio::null()).output().unwrap();
                assert!(o.status.success(), "{o:?}");
                let pid: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
                orphan = Some(KillOnDrop(pid));
                assert!(lock_is_held(&lock), "the orphaned descriptor must hold the lock");
                Command::new("sleep").arg("60").spawn().unwrap()
            }
        };
        wait_until_held(&lock, &mut holder);
        let mut holder = Reaped(holder);
        let (out, took) = timed_apply(&ns, &cfg);
        out.expect_code(0);
        if holder_is_root {
            assert!(took >= Duration::from_millis(2000), "a root holder must be waited for ({took:?}): {out}");
            continue;
        }
        assert!(took < Duration::from_secs(5), "apply waited {took:?} for uid 65534's lock ({holder_kind}): {out}");
        assert!(holder.0.try_wait().unwrap().is_none(), "the holder must still hold the old lock");
        let m = std::fs::metadata(&lock).unwrap();
        assert_ne!(m.ino(), old_ino, "the lock file held by uid 65534 is set aside, not reused");
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, 0));
        assert_eq!(mode_of(&run), 0o700);
        // and the new lock works between two ecs-hostnet runs as before
        ns.ehn(&["check", "-c", &cfg]).expect_code(0);
        drop(orphan);
    }
}

/// Kills process `.0` when dropped (a holder that is not our child).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}

#[test]
fn a_run_directory_of_another_user_or_a_symlink_is_refused_before_the_kernel() {
    require_root();
    let dir = TempDir::new("foreign-run");
    let cfg = dir.default_config();
    let ns = Netns::new("foreignrun");
    let parent = TempDir::new("foreign-run-parent");
    let run = parent.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(NOBODY_UID), Some(NOBODY_GID)).unwrap();
    let o = ehn_umask(false, &run, &["--netns", &ns.name, "apply", "-c", &cfg]);
    o.expect_code(1);
    assert!(o.stderr.contains(&format!("{} is owned by uid 65534, not by root", run.display())), "{o}");
    assert!(o.stderr.contains("rm -r"), "the message says what to do: {o}");
    assert_eq!(ns.ruleset(), "", "nothing may be applied: {o}");
    assert_eq!(ns.route_localnet(), "0");

    let link = parent.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let o = ehn_umask(false, &link, &["--netns", &ns.name, "apply", "-c", &cfg]);
    o.expect_code(1);
    assert!(o.stderr.contains(&format!("{} is not a folder", link.display())), "{o}");
    assert_eq!(ns.ruleset(), "");
}

// ---------------------------------------------------------------------------
// 3. --root never reaches outside its directory
// ---------------------------------------------------------------------------

#[test]
fn root_with_absolute_symlinks_pointing_outside_never_changes_the_outside() {
    require_root();
    let dir = TempDir::new("escape");
    let cfg = dir.default_config();
    let outside = TempDir::new("escape-outside");
    let o = outside.path();
    // What the build host has where the image's links point.
    for (rel, text, mode) in [
        ("ecs/ecs.config", "ECS_CLUSTER=build-host\nECS_ENABLE_TASK_IAM_ROLE=false\n", 0o644),
        ("sbin/ecs-hostnet", "#!/bin/sh\necho the build host's own binary\n", 0o755),
        ("sbin/other-tool", "#!/bin/sh\n", 0o755),
        ("state/install.json", "{\"schema\": \"the build host's own state\"}\n", 0o600),
        ("systemd/ecs-hostnet.service", "[Unit]\nDescription=the build host's unit\n", 0o644),
        ("systemd/sysinit.target.wants/keep.service", "[Unit]\n", 0o644),
        ("cfg/config.toml", "# the build host's configuration\n", 0o644),
    ] {
        let p = o.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = stamps(o);

    // The image: /etc/ecs, /usr/local/sbin, /var/lib/ecs-hostnet and /etc/systemd/system
    // are absolute links to those folders; /etc/ecs-hostnet a relative one with more
    // `..` than the root is deep.
    let root_dir = TempDir::new("escape-root");
    let root = root_dir.path();
    for d in ["etc/systemd", "usr/local", "var/lib"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, to) in [
        ("etc/ecs", o.join("ecs")),
        ("usr/local/sbin", o.join("sbin")),
        ("var/lib/ecs-hostnet", o.join("state")),
        ("etc/systemd/system", o.join("systemd")),
    ] {
        std::os::unix::fs::symlink(&to, root.join(link)).unwrap();
    }
    let up = "../".repeat(root.components().count() + 3);
    std::os::unix::fs::symlink(
        format!("{up}{}/cfg", o.strip_prefix("/").unwrap().display()),
        root.join("etc/ecs-hostnet"),
    )
    .unwrap();
    let image_before = stamps(root);

    let ns = Netns::new("escape");
    let install = ehn_root(root, &["install", "-c", &cfg]);
    install.expect_code(0);
    assert_stamps_eq("after install", &before, &stamps(o));

    // Where the files went: where each link leads, taken inside the root.
    let inside = root.join(o.strip_prefix("/").unwrap());
    let keys =
        "ECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_AWSVPC_BLOCK_IMDS=true\n";
    assert_eq!(
        std::fs::read_to_string(inside.join("ecs/ecs.config")).unwrap(),
        keys,
        "ecs.config was read and written inside the root (the build host's keys are not in it)"
    );
    assert_eq!(std::fs::read(inside.join("sbin/ecs-hostnet")).unwrap(), std::fs::read(bin()).unwrap());
    assert_eq!(mode_of(&inside.join("sbin/ecs-hostnet")), 0o755);
    assert!(std::fs::read_to_string(inside.join("state/install.json")).unwrap().contains("ecs-hostnet.install/"));
    assert!(std::fs::read_to_string(inside.join("systemd/ecs-hostnet.service")).unwrap().contains("ExecStart="));
    assert_eq!(
        std::fs::read_link(inside.join("systemd/sysinit.target.wants/ecs-hostnet.service")).unwrap(),
        Path::new("/etc/systemd/system/ecs-hostnet.service")
    );
    assert_eq!(std::fs::read(inside.join("cfg/config.toml")).unwrap(), std::fs::read(&cfg).unwrap());
    // Without -c, install reads the installed configuration inside the root (through the
    // relative link), not the build host's.
    let again = ehn_root(root, &["install"]);
    again.expect_code(0);
    let source = again.stderr.lines().find(|l| l.starts_with("configuration: ")).unwrap_or_default().to_string();
    assert!(source.starts_with(&format!("configuration: {}/", root.display())), "{again}");
    assert_eq!(std::fs::read(inside.join("cfg/config.toml")).unwrap(), std::fs::read(&cfg).unwrap(), "{again}");
    assert_stamps_eq("after install without -c", &before, &stamps(o));

    // plan, check and apply read (and repair) inside the root too.
    ehn_root_ns(root, &ns, &["plan", "-c", &cfg]).expect_code(2);
    ehn_root_ns(root, &ns, &["apply", "-c", &cfg]).expect_code(0);
    std::fs::remove_file(inside.join("systemd/ecs.service.d/ecs-hostnet.conf")).unwrap();
    let check = ehn_root_ns(root, &ns, &["check", "-c", &cfg]);
    check.expect_code(2);
    assert!(check.stdout.contains("file /etc/systemd/system/ecs.service.d/ecs-hostnet.conf"), "{check}");
    ehn_root_ns(root, &ns, &["apply", "-c", &cfg]).expect_code(0);
    assert!(inside.join("systemd/ecs.service.d/ecs-hostnet.conf").exists());
    ehn_root_ns(root, &ns, &["check", "-c", &cfg]).expect_code(0);
    assert_stamps_eq("after plan, apply and check", &before, &stamps(o));

    // uninstall removes what install made, inside the root, and leaves the image as it was.
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_stamps_eq("after uninstall", &before, &stamps(o));
    let mut image_after = stamps(root);
    image_after.retain(|k, _| !k.starts_with("run"));
    let image_paths = |m: &BTreeMap<String, Stamp>| -> Vec<(String, String)> {
        m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    };
    assert_eq!(image_paths(&image_before), image_paths(&image_after), "uninstall leaves the image's tree as it was");
}

// ---------------------------------------------------------------------------
// 4. the installed binary: 0755 root:root, a wrong mode or owner is drift
// ---------------------------------------------------------------------------

#[test]
fn the_binary_ends_up_0755_root_and_a_wrong_mode_or_owner_is_drift() {
    require_root();
    let dir = TempDir::new("binmode");
    let cfg = dir.default_config();
    for (mode, uid) in [(0o644, 0), (0o666, NOBODY_UID)] {
        let root_dir = TempDir::new("binmode-root");
        let root = root_dir.path();
        let bin_path = root.join(BIN_PATH);
        std::fs::create_dir_all(bin_path.parent().unwrap()).unwrap();
        std::fs::write(&bin_path, "#!/bin/sh\necho an older copy\n").unwrap();
        std::fs::set_permissions(&bin_path, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&bin_path, Some(uid), Some(uid)).unwrap();
        let before = stamps(&bin_path);

        ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
        let m = std::fs::metadata(&bin_path).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0), "install over a {mode:04o} {uid} file");
        assert_eq!(std::fs::read(&bin_path).unwrap(), std::fs::read(bin()).unwrap());

        let ns = Netns::new("binmode");
        ehn_root_ns(root, &ns, &["apply", "-c", &cfg]).expect_code(0);
        ehn_root_ns(root, &ns, &["check", "-c", &cfg]).expect_code(0);
        for (how, want) in [("chmod", "mode 0644 owner 0:0"), ("chown", "mode 0755 owner 65534:65534")] {
            if how == "chmod" {
                std::fs::set_permissions(&bin_path, std::fs::Permissions::from_mode(0o644)).unwrap();
            } else {
                std::os::unix::fs::chown(&bin_path, Some(NOBODY_UID), Some(NOBODY_GID)).unwrap();
            }
            for cmd in ["check", "plan"] {
                let o = ehn_root_ns(root, &ns, &[cmd, "-c", &cfg]);
                o.expect_code(2);
                let line = o.stdout.lines().find(|l| l.contains("file /usr/local/sbin/ecs-hostnet"));
                assert!(line.is_some_and(|l| l.contains(want)), "{cmd} after {how}: {o}");
            }
            let applied = ehn_root_ns(root, &ns, &["apply", "-c", &cfg]);
            applied.expect_code(0);
            assert!(applied.stdout.contains("file /usr/local/sbin/ecs-hostnet"), "{applied}");
            let m = std::fs::metadata(&bin_path).unwrap();
            assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0), "apply after {how}");
            ehn_root_ns(root, &ns, &["check", "-c", &cfg]).expect_code(0);
        }

        // The old binary's content is not kept (megabytes in the state, read at every
        // boot): uninstall leaves the installed binary in place, 0755 root, and says so.
        let _ = before;
        let u = ehn_root(root, &["uninstall"]);
        u.expect_code(0);
        assert!(u.stdout.contains("left /usr/local/sbin/ecs-hostnet in place"), "{u}");
        let m = std::fs::metadata(&bin_path).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o755, 0, 0),
            "after uninstall over a {mode:04o} {uid} file"
        );
        assert_eq!(std::fs::read(&bin_path).unwrap(), std::fs::read(bin()).unwrap());
    }
}

// ---------------------------------------------------------------------------
// 5. the enablement symlink is replaced atomically
// ---------------------------------------------------------------------------

/// The link, file and rename system calls of `args` run under `strace -f`.
fn traced(root: &Path, ns: Option<&Netns>, args: &[&str]) -> (Out, String) {
    let trace_dir = TempDir::new("trace");
    let trace = trace_dir.path().join("trace");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-s", "256", "-o", s(&trace)])
        .args(["-e", "trace=unlink,unlinkat,symlink,symlinkat,rename,renameat,renameat2"])
        .args(["unshare", "--net", "--", bin(), "--root", s(root)]);
    if let Some(ns) = ns {
        cmd.args(["--netns", &ns.name]);
    }
    cmd.args(args).env("ECS_HOSTNET_RUN_DIR", root.join("run/ecs-hostnet"));
    let out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    (out, text)
}

#[test]
fn the_enablement_symlink_is_replaced_atomically() {
    require_root();
    let dir = TempDir::new("atomic-link");
    let cfg = dir.default_config();
    let root_dir = TempDir::new("atomic-link-root");
    let root = root_dir.path();
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    let ns = Netns::new("atomiclink");
    let link = root.join(WANTS_LINK);
    for (what, args) in [("apply", vec!["apply", "-c", cfg.as_str()]), ("install", vec!["install", "-c", cfg.as_str()])]
    {
        // Someone points the link elsewhere; apply (a repair) and install put it back.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/etc/systemd/system/other.service", &link).unwrap();
        let (out, trace) = traced(root, (what == "apply").then_some(&ns), &args);
        out.expect_code(0);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/etc/systemd/system/ecs-hostnet.service"), "{out}");
        let calls: Vec<&str> = trace.lines().collect();
        // The link is never removed (there would be a moment without it) ...
        let removed: Vec<&&str> = calls
            .iter()
            .filter(|l| {
                l.contains("unlink")
                    && (l.contains("\"ecs-hostnet.service\"")
                        || l.contains("/sysinit.target.wants/ecs-hostnet.service\""))
            })
            .collect();
        assert!(
            removed.is_empty(),
            "{what} removed the link before making it again:\n{}",
            removed.iter().map(|l| **l).collect::<Vec<_>>().join("\n")
        );
        // ... it is made under a temporary name and renamed over the old one.
        let made = calls.iter().position(|l| {
            l.contains("symlink")
                && l.contains("\"/etc/systemd/system/ecs-hostnet.service\"")
                && l.contains(".ecs-hostnet.service.ecs-hostnet.tmp\"")
        });
        let renamed = calls.iter().position(|l| {
            l.contains("rename")
                && l.contains(".ecs-hostnet.service.ecs-hostnet.tmp\", ")
                && l.contains(", \"ecs-hostnet.service\"")
                && l.ends_with(" = 0")
        });
        assert!(
            made.is_some() && renamed.is_some() && made < renamed,
            "{what}: want symlinkat(TARGET, .., TEMP) then renameat(.., TEMP, .., \"ecs-hostnet.service\"):\n{trace}"
        );
    }
}
