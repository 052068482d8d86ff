//! Persistence: `install` / `uninstall` into temporary roots, the installed boot unit
//! run in a fresh namespace topology (a simulated reboot), ecs.config edits, crash
//! safety under `kill -9`, and concurrent applies.
//!
//! Safety: every install/uninstall gets `--root <temp dir>`; every kernel command gets
//! `--netns <a namespace made here>` and `--root <temp dir>` (so the run directory, the
//! lock and any installed files are under the temp dir, never in /run, /etc or /var),
//! and runs under `unshare --net` so that a binary ignoring `--netns` could only touch
//! an empty throw-away namespace. Namespaces, listeners and temp dirs are removed in
//! Drop, also when a test fails.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::*;

// ---------------------------------------------------------------------------
// what install must write (written out here, independently of src/)
// ---------------------------------------------------------------------------

const BIN_PATH: &str = "usr/local/sbin/ecs-hostnet";
const CONFIG_PATH: &str = "etc/ecs-hostnet/config.toml";
const UNIT_PATH: &str = "etc/systemd/system/ecs-hostnet.service";
const WANTS_LINK: &str = "etc/systemd/system/sysinit.target.wants/ecs-hostnet.service";
const DROPIN_PATH: &str = "etc/systemd/system/ecs.service.d/ecs-hostnet.conf";
const NFT_DROPIN_PATH: &str = "etc/systemd/system/nftables.service.d/ecs-hostnet.conf";
const WATCH_UNIT_PATH: &str = "etc/systemd/system/ecs-hostnet-watch.service";
const WATCH_LINK: &str = "etc/systemd/system/multi-user.target.wants/ecs-hostnet-watch.service";
const ECS_CONFIG: &str = "etc/ecs/ecs.config";
const STATE_PATH: &str = "var/lib/ecs-hostnet/install.json";

const UNIT_TEXT: &str = "\
# Installed by `ecs-hostnet install`; `ecs-hostnet uninstall` removes it.
# After nftables.service and firewalld.service: ordering only (this unit never starts
# them), so their flush at boot comes before our apply. No cycle: firewalld.service is
# after basic.target, and this unit (DefaultDependencies=no) is not before sysinit.target.
[Unit]
Description=ECS task IAM role host networking (ecs-hostnet apply)
Documentation=file:///etc/ecs-hostnet/config.toml
DefaultDependencies=no
After=local-fs.target nftables.service firewalld.service
Wants=network-pre.target
Before=network-pre.target docker.service ecs.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
StandardInput=null
ExecStart=/usr/local/sbin/ecs-hostnet apply

[Install]
WantedBy=sysinit.target
";

const DROPIN_TEXT: &str = "\
# Installed by `ecs-hostnet install`: the ECS agent only starts once the host's
# network matches /etc/ecs-hostnet/config.toml. `ecs-hostnet uninstall` removes it.
[Unit]
After=ecs-hostnet.service

[Service]
ExecStartPre=/usr/local/sbin/ecs-hostnet apply
";

const NFT_DROPIN_TEXT: &str = "\
# Installed by `ecs-hostnet install`: nftables.service flushes every table when it
# starts, reloads and stops; ecs-hostnet applies its rule set again after each of them
# (a failure of ours, with `-`, never fails nftables.service; it is in the journal).
# `ecs-hostnet uninstall` removes it.
[Service]
ExecStartPost=-/usr/local/sbin/ecs-hostnet apply --kernel-only
ExecReload=-/usr/local/sbin/ecs-hostnet apply --kernel-only
ExecStopPost=-/usr/local/sbin/ecs-hostnet apply --kernel-only
";

const WATCH_UNIT_TEXT: &str = "\
# Installed by `ecs-hostnet install` (watch.enabled = true in /etc/ecs-hostnet/config.toml);
# `ecs-hostnet uninstall` removes it.
[Unit]
Description=ECS task IAM role host networking: repairs the rule set (ecs-hostnet watch)
Documentation=file:///etc/ecs-hostnet/config.toml
After=ecs-hostnet.service nftables.service firewalld.service

[Service]
Type=notify
ExecStart=/usr/local/sbin/ecs-hostnet watch
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
StandardInput=null
NoNewPrivileges=yes
ProtectHome=yes
PrivateTmp=yes
ProtectControlGroups=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
ProtectSystem=full
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_NETLINK AF_UNIX
RestrictNamespaces=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
";

/// The agent keys of the default `[agent]` section, in the order install appends them.
const KEYS_DEFAULT: &str =
    "ECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_AWSVPC_BLOCK_IMDS=true\n";

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn p(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `unshare --net -- BIN --root ROOT ARGS...`, with the run directory inside ROOT.
fn ehn_cmd_root(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", bin(), "--root", s(root)])
        .args(args)
        .env("ECS_HOSTNET_RUN_DIR", root.join("run/ecs-hostnet"));
    cmd
}

/// Runs the binary with `--root ROOT` (timeout 60 s).
fn ehn_root(root: &Path, args: &[&str]) -> Out {
    let mut out = run_cmd_with(&mut ehn_cmd_root(root, args), Duration::from_secs(60));
    out.cmdline = format!("{} --root {} {}", bin(), root.display(), args.join(" "));
    out
}

/// Runs the binary with `--root ROOT --netns NS`.
fn ehn_ns(root: &Path, ns: &Netns, args: &[&str]) -> Out {
    let mut v = vec!["--netns", ns.name.as_str()];
    v.extend_from_slice(args);
    ehn_root(root, &v)
}

/// A node of a directory tree, as far as install/uninstall may change it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32, uid: u32, gid: u32 },
    File { mode: u32, uid: u32, gid: u32, content: Vec<u8> },
    Link { target: PathBuf },
}

/// A node and the metadata that proves it was not rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamped {
    node: Node,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Every path under `root` (relative, `""` excluded) with its node and stamps.
fn snapshot(root: &Path) -> BTreeMap<String, Stamped> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Stamped>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = m.mode() & 0o7777;
            let node = if m.file_type().is_symlink() {
                Node::Link { target: std::fs::read_link(&path).unwrap() }
            } else if m.is_dir() {
                Node::Dir { mode, uid: m.uid(), gid: m.gid() }
            } else {
                Node::File { mode, uid: m.uid(), gid: m.gid(), content: std::fs::read(&path).unwrap() }
            };
            let is_dir = m.is_dir();
            out.insert(
                rel,
                Stamped { node, ino: m.ino(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) },
            );
            if is_dir {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The nodes of a snapshot (what must be equal after an uninstall).
fn nodes(root: &Path) -> BTreeMap<String, Node> {
    snapshot(root).into_iter().map(|(k, v)| (k, v.node)).collect()
}

/// A readable diff of two node maps (contents shortened).
fn node_diff(want: &BTreeMap<String, Node>, got: &BTreeMap<String, Node>) -> String {
    let show = |n: &Node| match n {
        Node::File { mode, uid, gid, content } => {
            let c = String::from_utf8_lossy(&content[..content.len().min(120)]).into_owned();
            format!("file {mode:o} {uid}:{gid} {} bytes {c:?}", content.len())
        }
        other => format!("{other:?}"),
    };
    let mut out = String::new();
    for (k, w) in want {
        match got.get(k) {
            None => out.push_str(&format!("  missing  {k}: {}\n", show(w))),
            Some(g) if g != w => {
                out.push_str(&format!("  changed  {k}:\n    want {}\n    got  {}\n", show(w), show(g)))
            }
            _ => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            out.push_str(&format!("  extra    {k}: {}\n", show(g)));
        }
    }
    out
}

#[track_caller]
fn assert_nodes_eq(stage: &str, want: &BTreeMap<String, Node>, got: &BTreeMap<String, Node>) {
    assert!(want == got, "{stage}: the tree differs:\n{}", node_diff(want, got));
}

fn write_mode(path: &Path, content: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode() & 0o7777
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// Names in the install's folders that look like temporary files.
fn temp_files(root: &Path) -> Vec<String> {
    snapshot(root)
        .into_keys()
        .filter(|k| k.rsplit('/').next().is_some_and(|n| n.starts_with('.') || n.ends_with(".tmp")))
        .collect()
}

/// The binary under test, as install must copy it.
fn test_binary() -> Vec<u8> {
    read(Path::new(bin()))
}

/// Lines of an install's stdout that are not `unchanged ...` (the final `Installed.`
/// line excepted).
fn changed_lines(out: &Out) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| !l.starts_with("unchanged ") && !l.starts_with("Installed."))
        .map(str::to_string)
        .collect()
}

/// xorshift64*: a small deterministic generator (the seed is printed).
struct Rng(u64);

impl Rng {
    fn from_time(label: &str) -> Rng {
        let seed = std::env::var("ECS_HOSTNET_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("{label}: random seed {seed} (set ECS_HOSTNET_TEST_SEED to repeat)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, max].
    fn below(&mut self, max: Duration) -> Duration {
        let us = max.as_micros() as u64;
        Duration::from_micros(if us == 0 { 0 } else { self.next() % (us + 1) })
    }
}

/// Starts `cmd` (no output), lets it run for `delay`, then SIGKILLs it unless it has
/// exited. Returns true when the process was still running when killed.
fn run_and_kill(cmd: &mut Command, delay: Duration) -> bool {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let deadline = Instant::now() + delay;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_micros(500)));
    }
    let killed = child.kill().is_ok();
    let st = child.wait().expect("wait");
    killed && st.code().is_none()
}

/// Median wall time of `n` uninterrupted runs of `make()`, each expected to exit 0.
fn median_run_time(n: usize, mut make: impl FnMut() -> Command) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let out = run_cmd_with(&mut make(), Duration::from_secs(60));
            assert!(out.ok(), "calibration run failed: {out}");
            t.elapsed()
        })
        .collect();
    v.sort();
    v[n / 2]
}

// ---------------------------------------------------------------------------
// 1. install: exact files, idempotence, systemd accepts the units
// ---------------------------------------------------------------------------

/// The tree install must leave in an empty root for configuration bytes `config`.
fn expected_tree(config: &[u8], ecs_config: &[u8]) -> BTreeMap<String, Node> {
    // 0755 whatever the umask (issue 12: it used to be 0777 & !umask).
    let dir = Node::Dir { mode: 0o755, uid: 0, gid: 0 };
    let file = |mode, content: &[u8]| Node::File { mode, uid: 0, gid: 0, content: content.to_vec() };
    let mut t = BTreeMap::new();
    for d in [
        "etc",
        "etc/ecs",
        "etc/ecs-hostnet",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/ecs.service.d",
        "etc/systemd/system/sysinit.target.wants",
        "etc/systemd/system/nftables.service.d",
        "etc/systemd/system/multi-user.target.wants",
        "usr",
        "usr/local",
        "usr/local/sbin",
        "var",
        "var/lib",
        "var/lib/ecs-hostnet",
    ] {
        t.insert(d.to_string(), dir.clone());
    }
    t.insert(BIN_PATH.into(), file(0o755, &test_binary()));
    t.insert(CONFIG_PATH.into(), file(0o644, config));
    t.insert(UNIT_PATH.into(), file(0o644, UNIT_TEXT.as_bytes()));
    t.insert(DROPIN_PATH.into(), file(0o644, DROPIN_TEXT.as_bytes()));
    t.insert(WANTS_LINK.into(), Node::Link { target: "/etc/systemd/system/ecs-hostnet.service".into() });
    t.insert(NFT_DROPIN_PATH.into(), file(0o644, NFT_DROPIN_TEXT.as_bytes()));
    t.insert(WATCH_UNIT_PATH.into(), file(0o644, WATCH_UNIT_TEXT.as_bytes()));
    t.insert(WATCH_LINK.into(), Node::Link { target: "/etc/systemd/system/ecs-hostnet-watch.service".into() });
    t.insert(ECS_CONFIG.into(), file(0o644, ecs_config));
    t
}

/// `systemd-analyze verify --root=ROOT UNITS...` (systemd 252: with --root the unit
/// search path and the executables named in ExecStart= are taken inside ROOT).
fn systemd_verify(root: &Path, units: &[&str]) -> Out {
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg(format!("--root={}", root.display())).args(units).env_remove("SYSTEMD_UNIT_PATH");
    run_cmd_with(&mut cmd, Duration::from_secs(30))
}

/// Verification passed: exit 0 and not a single warning.
fn verify_clean(o: &Out) -> bool {
    o.code == 0 && o.stderr.trim().is_empty()
}

/// Puts what `systemd-analyze verify` needs besides our files into `root`: the
/// distribution's units (sysinit.target, ...), an `ecs.service` like ecs-init's (so the
/// drop-in has a unit to attach to) and its executable.
fn add_systemd_fixtures(root: &Path) {
    let units = p(root, "usr/lib/systemd");
    std::fs::create_dir_all(&units).unwrap();
    sh("cp", &["-a", "/lib/systemd/system", s(&units)]);
    write_mode(
        &p(root, "usr/lib/systemd/system/ecs.service"),
        b"[Unit]\n\
          Description=Amazon Elastic Container Service - container agent\n\
          After=docker.service\n\
          \n\
          [Service]\n\
          Type=simple\n\
          Restart=on-failure\n\
          ExecStartPre=/usr/libexec/amazon-ecs-init pre-start\n\
          ExecStart=/usr/libexec/amazon-ecs-init start\n\
          ExecStop=/usr/libexec/amazon-ecs-init stop\n\
          \n\
          [Install]\n\
          WantedBy=multi-user.target\n",
        0o644,
    );
    write_mode(&p(root, "usr/libexec/amazon-ecs-init"), b"#!/bin/sh\nexit 0\n", 0o755);
    // The executables the watch unit and nftables.service (with our drop-in) name.
    write_mode(&p(root, "bin/kill"), b"#!/bin/sh\nexit 0\n", 0o755);
    write_mode(&p(root, "usr/sbin/nft"), b"#!/bin/sh\nexit 0\n", 0o755);
}

#[test]
fn install_writes_exact_files_and_a_second_install_changes_nothing() {
    require_root();
    let dir = TempDir::new("inst1");
    let root = TempDir::new("root1");
    let root = root.path();
    // a non-default configuration with bytes of its own (comment, CRLF-free, no final
    // blank line) so "the -c file's bytes" is distinguishable from the default
    let cfg_text = "# site configuration, test 1\n[credentials]\nagent_port = 51680 # moved\n";
    let cfg = dir.write("site.toml", cfg_text);

    // an invalid configuration is refused before anything is written
    let bad = dir.write("bad.toml", "[credentials]\nagent_port = \"x\"\n");
    let refused = ehn_root(root, &["install", "-c", &bad]);
    assert_eq!(refused.code, 1, "{refused}");
    assert_nodes_eq("after a refused install", &BTreeMap::new(), &nodes(root));

    let first = ehn_root(root, &["install", "-c", &cfg]);
    first.expect_code(0);
    for want in [
        "wrote /var/lib/ecs-hostnet/install.json",
        "wrote /usr/local/sbin/ecs-hostnet",
        "wrote /etc/ecs-hostnet/config.toml",
        "wrote /etc/systemd/system/ecs-hostnet.service",
        "wrote /etc/systemd/system/ecs.service.d/ecs-hostnet.conf",
        "wrote /etc/systemd/system/nftables.service.d/ecs-hostnet.conf",
        "wrote /etc/systemd/system/ecs-hostnet-watch.service",
        "enabled /etc/systemd/system/ecs-hostnet.service",
        "enabled /etc/systemd/system/ecs-hostnet-watch.service",
        "updated /etc/ecs/ecs.config",
    ] {
        assert!(first.stdout.lines().any(|l| l.starts_with(want)), "install did not report {want:?}: {first}");
    }

    // every file, exactly
    let mut tree = nodes(root);
    let state = tree.remove(STATE_PATH).expect("install state written");
    let Node::File { mode, content, .. } = &state else { panic!("state is not a file: {state:?}") };
    assert_eq!(*mode, 0o600, "the install state holds the files' former contents: owner-only");
    let json: serde_json::Value = serde_json::from_slice(content).expect("install state is JSON");
    assert_eq!(json["schema"], "ecs-hostnet.install/v2");
    assert_nodes_eq("after the first install", &expected_tree(cfg_text.as_bytes(), KEYS_DEFAULT.as_bytes()), &tree);
    // systemd agrees that the unit is enabled
    let enabled = run_cmd(
        "systemctl",
        &[&format!("--root={}", root.display()), "is-enabled", "ecs-hostnet.service"],
        Duration::from_secs(20),
    );
    assert_eq!(enabled.stdout.trim(), "enabled", "{enabled}");
    let enabled = run_cmd(
        "systemctl",
        &[&format!("--root={}", root.display()), "is-enabled", "ecs-hostnet-watch.service"],
        Duration::from_secs(20),
    );
    assert_eq!(enabled.stdout.trim(), "enabled", "{enabled}");

    // a second install: everything unchanged, no file rewritten (same inode, mtime, ctime)
    let before = snapshot(root);
    std::thread::sleep(Duration::from_millis(30)); // past the kernel's timestamp granularity
    let second = ehn_root(root, &["install", "-c", &cfg]);
    second.expect_code(0);
    assert!(changed_lines(&second).is_empty(), "a second install must change nothing: {second}");
    let after = snapshot(root);
    for (k, b) in &before {
        let a = after.get(k).unwrap_or_else(|| panic!("{k} vanished in the second install"));
        assert_eq!(a, b, "{k} was rewritten (or touched) by the second install:\n{second}");
    }
    assert_eq!(before.len(), after.len(), "the second install added files: {:?}", after.keys().collect::<Vec<_>>());

    // a third install without -c takes the installed configuration: still nothing to do
    let third = ehn_root(root, &["install"]);
    third.expect_code(0);
    assert!(changed_lines(&third).is_empty(), "{third}");
    assert!(third.stderr.contains(&format!("configuration: {}", p(root, CONFIG_PATH).display())), "{third}");

    // systemd-analyze verify accepts the unit and the drop-in (in a copy with fixtures)
    let vroot = TempDir::new("verify");
    let vroot = vroot.path().join("r");
    sh("cp", &["-a", s(root), s(&vroot)]);
    add_systemd_fixtures(&vroot);
    let ok = systemd_verify(
        &vroot,
        &["ecs-hostnet.service", "ecs.service", "ecs-hostnet-watch.service", "nftables.service"],
    );
    assert!(verify_clean(&ok), "systemd-analyze verify must accept the installed units without a warning: {ok}");

    // ... and it does reject broken copies (so the check above can fail)
    let unit = p(&vroot, UNIT_PATH);
    let dropin = p(&vroot, DROPIN_PATH);
    let binary = p(&vroot, BIN_PATH);
    let breakages: Vec<(&str, &Path, String)> = vec![
        ("unit: relative ExecStart", &unit, UNIT_TEXT.replace("ExecStart=/usr/", "ExecStart=usr/")),
        (
            "unit: ExecStart binary missing",
            &unit,
            UNIT_TEXT.replace("sbin/ecs-hostnet apply", "sbin/ecs-hostnetd apply"),
        ),
        ("unit: misspelt key", &unit, UNIT_TEXT.replace("Type=oneshot", "Typ=oneshot")),
        ("unit: bad Type", &unit, UNIT_TEXT.replace("Type=oneshot", "Type=oneshot-ish")),
        ("unit: no [Service] section", &unit, UNIT_TEXT.replace("[Service]", "[Servcie]")),
        ("drop-in: relative ExecStartPre", &dropin, DROPIN_TEXT.replace("ExecStartPre=/usr/", "ExecStartPre=usr/")),
        ("drop-in: misspelt key", &dropin, DROPIN_TEXT.replace("After=", "Afer=")),
    ];
    for (what, path, text) in breakages {
        let good = read(path);
        std::fs::write(path, &text).unwrap();
        let units: &[&str] = if path == dropin.as_path() { &["ecs.service"] } else { &["ecs-hostnet.service"] };
        let o = systemd_verify(&vroot, units);
        std::fs::write(path, &good).unwrap();
        assert!(!verify_clean(&o), "{what}: systemd-analyze verify accepted a broken unit: {o}");
    }
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = systemd_verify(&vroot, &["ecs-hostnet.service"]);
    assert!(!verify_clean(&o), "binary not executable: verify passed: {o}");

    // uninstall leaves the root as it was: empty
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_nodes_eq("after uninstall", &BTreeMap::new(), &nodes(root));
    // and a second uninstall is a no-op
    let again = ehn_root(root, &["uninstall"]);
    again.expect_code(0);
    assert!(again.stdout.contains("nothing installed"), "{again}");
}

// ---------------------------------------------------------------------------
// 2. simulated reboot: the installed unit's command in a fresh topology
// ---------------------------------------------------------------------------

/// The command of `KEY=` in a unit file (one line, no quoting in our units).
fn unit_command(unit_text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = unit_text.lines().filter(|l| l.starts_with(&format!("{key}="))).collect();
    assert_eq!(lines.len(), 1, "want exactly one {key}= line in\n{unit_text}");
    let argv: Vec<String> = lines[0][key.len() + 1..].split_whitespace().map(str::to_string).collect();
    assert_eq!(
        argv.first().map(String::as_str),
        Some("/usr/local/sbin/ecs-hostnet"),
        "{key}= must run the installed binary: {lines:?}"
    );
    argv
}

/// Runs a unit's command as systemd would at boot, but with the binary inside `root`
/// and `--root ROOT --netns NS` added; the run directory is left to `--root`.
fn run_unit_command(root: &Path, argv: &[String], ns: &Netns) -> Out {
    let installed = root.join(argv[0].trim_start_matches('/'));
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"])
        .arg(&installed)
        .args(["--root", s(root), "--netns", ns.name.as_str()])
        .args(&argv[1..])
        .env_remove("ECS_HOSTNET_RUN_DIR");
    let mut out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    out.cmdline =
        format!("{} --root {} --netns {} {}", installed.display(), root.display(), ns.name, argv[1..].join(" "));
    out
}

#[test]
fn installed_boot_unit_applies_the_installed_configuration_in_a_fresh_namespace() {
    require_root();
    let dir = TempDir::new("reboot");
    let root = TempDir::new("root2");
    let root = root.path();
    let cfg = dir.write(
        "site.toml",
        "# installed by the reboot test\n\
         [containers]\n\
         interfaces = [\"docker+\", \"cni+\"]\n\
         [credentials]\n\
         agent_port = 51777\n\
         [agent]\n\
         awsvpc_block_imds = false\n",
    );
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    assert_eq!(
        read(&p(root, ECS_CONFIG)),
        b"ECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_AWSVPC_BLOCK_IMDS=false\n"
    );
    let unit = String::from_utf8(read(&p(root, UNIT_PATH))).unwrap();
    let dropin = String::from_utf8(read(&p(root, DROPIN_PATH))).unwrap();
    let exec_start = unit_command(&unit, "ExecStart");
    let exec_start_pre = unit_command(&dropin, "ExecStartPre");

    // "after the reboot": a fresh topology, nothing applied yet
    let t = Topology::new();
    let agent = Listener::spawn(&t.host.name, "127.0.0.1:51777", "agent-on-51777");
    let (c, n, h) = (&t.container, &t.neighbour, &t.host);
    assert_probes(
        "before the boot unit ran",
        &[
            probe("container credentials endpoint", c, "169.254.170.2:80", None),
            probe("container IMDS v4", c, "169.254.169.254:80", Some(IMDS_BODY)),
        ],
    );

    let boot = run_unit_command(root, &exec_start, h);
    boot.expect_code(0);
    assert!(
        boot.stderr.contains(&format!("configuration: {}", p(root, CONFIG_PATH).display())),
        "the boot unit must use the installed configuration: {boot}"
    );
    assert!(p(root, "run/ecs-hostnet/lock").exists(), "with --root the lock lives under ROOT/run/ecs-hostnet");

    let listed = h.ruleset();
    assert!(listed.contains("iifname \"cni*\""), "the extra container pattern is missing:\n{listed}");
    assert!(
        listed.contains("dnat to 127.0.0.1:51777"),
        "the agent port of the installed configuration is not used:\n{listed}"
    );
    assert_probes(
        "after the boot unit ran",
        &[
            probe("container credentials endpoint", c, "169.254.170.2:80", Some("agent-on-51777")),
            probe("host credentials endpoint (REDIRECT)", h, "169.254.170.2:80", Some("agent-on-51777")),
            probe("container IMDS v4", c, "169.254.169.254:80", None),
            probe("container IMDS v6", c, "[fd00:ec2::254]:80", None),
            probe("neighbour host 127.0.0.1 agent", n, "127.0.0.1:51777", None),
            probe("neighbour host 127.0.0.1 default port", n, "127.0.0.1:51679", None),
            probe("neighbour credentials endpoint", n, "169.254.170.2:80", None),
        ],
    );
    let check = ehn_ns(root, h, &["check"]);
    check.expect_code(0);
    assert!(check.stdout.contains("Converged"), "{check}");

    // the ecs-init hook (drop-in) then finds nothing to do
    let hook = run_unit_command(root, &exec_start_pre, h);
    hook.expect_code(0);
    assert!(hook.stdout.contains("No changes"), "{hook}");

    // drift of an installed file: check says so with a line diff, the hook repairs it
    let unit_path = p(root, UNIT_PATH);
    std::fs::write(&unit_path, UNIT_TEXT.replace("Type=oneshot", "Type=simple")).unwrap();
    std::fs::remove_file(p(root, WANTS_LINK)).unwrap();
    let drift = ehn_ns(root, h, &["check"]);
    drift.expect_code(2);
    for want in ["-Type=simple", "+Type=oneshot", "sysinit.target.wants/ecs-hostnet.service"] {
        assert!(drift.stdout.contains(want), "check does not show {want:?}: {drift}");
    }
    run_unit_command(root, &exec_start_pre, h).expect_code(0);
    assert_eq!(read(&unit_path), UNIT_TEXT.as_bytes(), "apply must repair the unit");
    assert_eq!(std::fs::read_link(p(root, WANTS_LINK)).unwrap(), Path::new("/etc/systemd/system/ecs-hostnet.service"));
    ehn_ns(root, h, &["check"]).expect_code(0);
    drop(agent);
}

/// The README: "The configuration is `-c FILE`, else /etc/ecs-hostnet/config.toml". A
/// person who edits the installed configuration and runs `apply` must get a converged
/// host (`check` 0 right after) that keeps their edit, also at the next boot.
#[test]
fn editing_the_installed_configuration_then_apply_converges_and_keeps_the_edit() {
    let ns = Netns::new("edit");
    let root = TempDir::new("editroot");
    let root = root.path();
    ehn_root(root, &["install"]).expect_code(0);
    let cfg_path = p(root, CONFIG_PATH);
    let edited = String::from_utf8(read(&cfg_path)).unwrap().replace("agent_port = 51679", "agent_port = 51700");
    assert!(edited.contains("agent_port = 51700"));
    std::fs::write(&cfg_path, &edited).unwrap();

    let apply = ehn_ns(root, &ns, &["apply"]);
    apply.expect_code(0);
    let check = ehn_ns(root, &ns, &["check"]);
    let listed = ns.ruleset();
    let on_disk = String::from_utf8(read(&cfg_path)).unwrap();
    let mut problems = Vec::new();
    if check.code != 0 {
        problems.push(format!("`check` right after a successful `apply` is not 0:\n{check}"));
    }
    if on_disk != edited {
        problems.push(format!(
            "apply rewrote the edited configuration (agent_port now {:?})",
            on_disk.lines().find(|l| l.starts_with("agent_port"))
        ));
    }
    // the next boot: the unit's apply in a fresh namespace must use the edited file
    let fresh = Netns::new("edit-boot");
    let unit = String::from_utf8(read(&p(root, UNIT_PATH))).unwrap();
    run_unit_command(root, &unit_command(&unit, "ExecStart"), &fresh).expect_code(0);
    let booted = fresh.ruleset();
    if !booted.contains("redirect to :51700") {
        problems.push(format!("after the next boot the rule set does not use the edited port:\n{booted}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- apply ---\n{apply}\n--- rule set after apply ---\n{listed}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 3. ecs.config edits
// ---------------------------------------------------------------------------

struct EcsCase {
    name: &'static str,
    /// /etc/ecs exists before install (with this mode)
    dir: Option<u32>,
    /// ecs.config before install: bytes, mode, uid, gid
    file: Option<(&'static [u8], u32, u32, u32)>,
    /// the [agent] part of the configuration (appended to an otherwise default file)
    agent: &'static str,
    /// ecs.config after install (`None`: must not exist)
    want: Option<&'static [u8]>,
}

fn ecs_cases() -> Vec<EcsCase> {
    let k = KEYS_DEFAULT.as_bytes();
    let leak = |v: String| -> &'static [u8] { Box::leak(v.into_bytes().into_boxed_slice()) };
    vec![
        EcsCase { name: "absent folder", dir: None, file: None, agent: "", want: Some(k) },
        EcsCase { name: "absent file", dir: Some(0o755), file: None, agent: "", want: Some(k) },
        EcsCase { name: "empty", dir: Some(0o755), file: Some((b"", 0o644, 0, 0)), agent: "", want: Some(k) },
        EcsCase {
            name: "other keys",
            dir: Some(0o755),
            file: Some((b"ECS_CLUSTER=prod\nECS_LOGLEVEL=info\n", 0o644, 0, 0)),
            agent: "",
            want: Some(leak(format!("ECS_CLUSTER=prod\nECS_LOGLEVEL=info\n{KEYS_DEFAULT}"))),
        },
        EcsCase {
            name: "our key with another value",
            dir: Some(0o755),
            file: Some((b"ECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=false\nECS_LOGLEVEL=info\n", 0o644, 0, 0)),
            agent: "",
            want: Some(b"ECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_LOGLEVEL=info\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_AWSVPC_BLOCK_IMDS=true\n"),
        },
        EcsCase {
            name: "our key twice (the last one wins, one copy left)",
            dir: Some(0o755),
            file: Some((b"ECS_AWSVPC_BLOCK_IMDS=false\nECS_CLUSTER=prod\nECS_AWSVPC_BLOCK_IMDS=no\n", 0o644, 0, 0)),
            agent: "",
            want: Some(b"ECS_CLUSTER=prod\nECS_AWSVPC_BLOCK_IMDS=true\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\n"),
        },
        EcsCase {
            name: "comments and blank lines",
            dir: Some(0o755),
            file: Some((b"# ECS_ENABLE_TASK_IAM_ROLE=false\n; ECS_AWSVPC_BLOCK_IMDS=false\n\nECS_CLUSTER=prod\n", 0o644, 0, 0)),
            agent: "",
            want: Some(leak(format!("# ECS_ENABLE_TASK_IAM_ROLE=false\n; ECS_AWSVPC_BLOCK_IMDS=false\n\nECS_CLUSTER=prod\n{KEYS_DEFAULT}"))),
        },
        EcsCase {
            name: "CRLF",
            dir: Some(0o755),
            file: Some((b"ECS_CLUSTER=prod\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\n", 0o644, 0, 0)),
            agent: "",
            want: Some(b"ECS_CLUSTER=prod\r\nECS_ENABLE_TASK_IAM_ROLE=true\r\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\r\nECS_AWSVPC_BLOCK_IMDS=true\r\n"),
        },
        EcsCase {
            name: "no final newline",
            dir: Some(0o755),
            file: Some((b"ECS_CLUSTER=prod", 0o644, 0, 0)),
            agent: "",
            want: Some(leak(format!("ECS_CLUSTER=prod\n{KEYS_DEFAULT}"))),
        },
        EcsCase {
            name: "no final newline, our key last",
            dir: Some(0o755),
            file: Some((b"ECS_CLUSTER=prod\nECS_AWSVPC_BLOCK_IMDS=false", 0o644, 0, 0)),
            agent: "",
            want: Some(b"ECS_CLUSTER=prod\nECS_AWSVPC_BLOCK_IMDS=true\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\n"),
        },
        EcsCase {
            name: "already right (nothing to write)",
            dir: Some(0o755),
            file: Some((KEYS_DEFAULT.as_bytes(), 0o644, 0, 0)),
            agent: "",
            want: Some(k),
        },
        EcsCase {
            // root writes into a 0555 folder anyway (CAP_DAC_OVERRIDE); the folder keeps its mode
            name: "read-only folder",
            dir: Some(0o555),
            file: Some((b"ECS_CLUSTER=prod\n", 0o644, 0, 0)),
            agent: "",
            want: Some(leak(format!("ECS_CLUSTER=prod\n{KEYS_DEFAULT}"))),
        },
        EcsCase {
            name: "mode 0600 and owner 1234:1234 kept",
            dir: Some(0o750),
            file: Some((b"ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA={\"secret\":1}\n", 0o600, 1234, 1234)),
            agent: "",
            want: Some(leak(format!("ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA={{\"secret\":1}}\n{KEYS_DEFAULT}"))),
        },
        EcsCase {
            name: "non-default agent values",
            dir: Some(0o755),
            file: Some((b"ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_CLUSTER=prod\n", 0o644, 0, 0)),
            agent: "[agent]\nenable_task_iam_role_network_host = false\nawsvpc_block_imds = false\n",
            want: Some(b"ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=false\nECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_AWSVPC_BLOCK_IMDS=false\n"),
        },
        EcsCase {
            name: "manage_ecs_config = false leaves the file alone",
            dir: Some(0o755),
            file: Some((b"ECS_ENABLE_TASK_IAM_ROLE=false\n", 0o644, 0, 0)),
            agent: "[agent]\nmanage_ecs_config = false\n",
            want: Some(b"ECS_ENABLE_TASK_IAM_ROLE=false\n"),
        },
        EcsCase {
            name: "manage_ecs_config = false, no folder: none made",
            dir: None,
            file: None,
            agent: "[agent]\nmanage_ecs_config = false\n",
            want: None,
        },
    ]
}

#[test]
fn ecs_config_edits_are_exact_and_uninstall_puts_back_the_original() {
    require_root();
    let dir = TempDir::new("ecscfg");
    let mut failures = Vec::new();
    for (i, case) in ecs_cases().into_iter().enumerate() {
        let root = TempDir::new(&format!("ecsroot{i}"));
        let root = root.path();
        let ecs_dir = p(root, "etc/ecs");
        let ecs = p(root, ECS_CONFIG);
        if let Some(m) = case.dir {
            std::fs::create_dir_all(&ecs_dir).unwrap();
            if let Some((bytes, mode, uid, gid)) = case.file {
                write_mode(&ecs, bytes, mode);
                std::os::unix::fs::chown(&ecs, Some(uid), Some(gid)).unwrap();
            }
            std::fs::set_permissions(&ecs_dir, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let original = nodes(root);
        let cfg = dir.write(&format!("case{i}.toml"), &format!("# case {i}\n{}", case.agent));

        let mut problems = Vec::new();
        let out = ehn_root(root, &["install", "-c", &cfg]);
        if !out.ok() {
            failures.push(format!("[{}] install failed: {out}", case.name));
            continue;
        }
        let got = std::fs::read(&ecs).ok();
        if got.as_deref() != case.want {
            problems.push(format!(
                "ecs.config after install:\n      want {}\n      got  {}",
                case.want.map(show).unwrap_or("(absent)".into()),
                got.as_deref().map(show).unwrap_or("(absent)".into())
            ));
        }
        if let (Some(_), Some((_, mode, uid, gid))) = (&got, case.file) {
            let m = std::fs::metadata(&ecs).unwrap();
            if (m.mode() & 0o7777, m.uid(), m.gid()) != (mode, uid, gid) {
                problems.push(format!(
                    "mode/owner {:o} {}:{} became {:o} {}:{}",
                    mode,
                    uid,
                    gid,
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ));
            }
        } else if got.is_some() && mode_of(&ecs) != 0o644 {
            problems.push(format!("a new ecs.config must be 0644, is {:o}", mode_of(&ecs)));
        }
        if let Some(m) = case.dir
            && mode_of(&ecs_dir) != m
        {
            problems.push(format!("/etc/ecs mode {m:o} became {:o}", mode_of(&ecs_dir)));
        }
        if case.dir.is_none() && case.want.is_none() && ecs_dir.exists() {
            problems.push("/etc/ecs was created although ecs.config is not managed".into());
        }
        let temps = temp_files(root);
        if !temps.is_empty() {
            problems.push(format!("temporary files left: {temps:?}"));
        }
        // idempotent
        let again = ehn_root(root, &["install", "-c", &cfg]);
        if !again.ok() || !changed_lines(&again).is_empty() {
            problems.push(format!("second install changed something: {again}"));
        }
        // uninstall: the tree as before, byte for byte (absent file/folder absent again)
        let un = ehn_root(root, &["uninstall"]);
        if !un.ok() {
            problems.push(format!("uninstall failed: {un}"));
        } else {
            let now = nodes(root);
            if now != original {
                problems.push(format!("after uninstall the tree differs:\n{}", node_diff(&original, &now)));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("[{}]\n    {}", case.name, problems.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// Edits made to ecs.config after install are kept by uninstall: only our keys go back.
#[test]
fn ecs_config_edited_after_install_keeps_the_edits_on_uninstall() {
    require_root();
    let dir = TempDir::new("ecsedit");
    let root = TempDir::new("ecseditroot");
    let root = root.path();
    let ecs = p(root, ECS_CONFIG);
    write_mode(&ecs, b"A=1\nECS_ENABLE_TASK_IAM_ROLE=false\n", 0o644);
    let cfg = dir.default_config();
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    assert_eq!(
        show(&read(&ecs)),
        show(b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_AWSVPC_BLOCK_IMDS=true\n")
    );
    let mut edited = read(&ecs);
    edited.extend_from_slice(b"ECS_CLUSTER=added-later\n");
    std::fs::write(&ecs, &edited).unwrap();
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(
        show(&read(&ecs)),
        show(b"A=1\nECS_ENABLE_TASK_IAM_ROLE=false\nECS_CLUSTER=added-later\n"),
        "uninstall must put our keys back and keep the later edit"
    );
}

/// systemd's EnvironmentFile= parser ends a line at a lone `\r` and reads a quoted value
/// on across lines: on such an ecs.config a line-by-line edit would record (and rewrite)
/// a line that is not our key's, a secret included. Install refuses it and writes
/// nothing; a CRLF file still works.
#[test]
fn ecs_config_with_a_lone_cr_or_a_multiline_value_is_refused_and_nothing_is_written() {
    require_root();
    let dir = TempDir::new("ecscr");
    let cfg = dir.default_config();
    for (name, text) in [
        ("lone CR", &b"ECS_ENABLE_TASK_IAM_ROLE=false\rECS_ENGINE_AUTH_DATA=SECRET\n"[..]),
        ("quoted value spanning lines", b"ECS_ENGINE_AUTH_DATA=\"SECRET\nECS_ENABLE_TASK_IAM_ROLE=false\"\n"),
    ] {
        let root = TempDir::new("ecscrroot");
        let root = root.path();
        let ecs = p(root, ECS_CONFIG);
        write_mode(&ecs, text, 0o644);
        let before = nodes_but_run(root);
        let out = ehn_root(root, &["install", "-c", &cfg]);
        assert_eq!(out.code, 1, "{name}: install must refuse: {out}");
        assert!(
            out.stderr.contains(s(&ecs)) && out.stderr.contains("line 1") && out.stderr.contains("line ends"),
            "{name}: the error must name the file, the line and the fix: {out}"
        );
        assert!(!out.stderr.contains("SECRET") && !out.stdout.contains("SECRET"), "{name}: secret shown: {out}");
        assert_nodes_eq(name, &before, &nodes_but_run(root));
        assert!(!p(root, "var/lib/ecs-hostnet/install.json").exists(), "{name}: no install.json");
    }
    let root = TempDir::new("ecscrlfroot");
    let root = root.path();
    let ecs = p(root, ECS_CONFIG);
    write_mode(&ecs, b"ECS_CLUSTER=prod\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\n", 0o644);
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(show(&read(&ecs)), show(b"ECS_CLUSTER=prod\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\n"));
}

/// Uninstall's last line says what happened to the rule set: removed, or none was live.
#[test]
fn uninstall_summary_says_whether_a_rule_set_was_removed() {
    require_root();
    let dir = TempDir::new("unsum");
    let cfg = dir.default_config();
    for applied in [false, true] {
        let ns = Netns::new("unsum");
        let root = TempDir::new("unsumroot");
        let root = root.path();
        ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
        if applied {
            ehn_ns(root, &ns, &["apply"]).expect_code(0);
        }
        let out = ehn_ns(root, &ns, &["uninstall"]);
        out.expect_code(0);
        let last = out.stdout.lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("Uninstalled ecs-hostnet"), "{out}");
        assert_eq!(last.contains("its rule set was removed from"), applied, "applied {applied}: {out}");
        assert_eq!(last.contains("had no live rule set to remove"), !applied, "applied {applied}: {out}");
    }
}

/// Without CAP_DAC_OVERRIDE a read-only /etc/ecs cannot be written: install fails with
/// one clear line naming the folder, ecs.config is untouched (no partial file, no temp
/// file), and once the folder is writable a second install finishes the job.
#[test]
fn ecs_config_in_an_unwritable_folder_fails_cleanly() {
    require_root();
    let dir = TempDir::new("rofold");
    let root = TempDir::new("roroot");
    let root = root.path();
    let ecs_dir = p(root, "etc/ecs");
    let ecs = p(root, ECS_CONFIG);
    write_mode(&ecs, b"ECS_CLUSTER=prod\n", 0o644);
    std::fs::set_permissions(&ecs_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let cfg = dir.default_config();
    let out = without_dac_override(&["--root", s(root), "install", "-c", &cfg]);
    assert_eq!(out.code, 1, "install into a read-only /etc/ecs without CAP_DAC_OVERRIDE must fail: {out}");
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("ecs-hostnet:")).collect();
    assert_eq!(errors.len(), 1, "one error line wanted: {out}");
    assert!(
        errors[0].contains("/etc/ecs") && errors[0].contains("Permission denied"),
        "the error must name the folder and the cause: {out}"
    );
    assert_eq!(read(&ecs), b"ECS_CLUSTER=prod\n", "ecs.config must be untouched");
    assert_eq!(temp_files(root), Vec::<String>::new(), "no temporary file may be left");
    std::fs::set_permissions(&ecs_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    assert_eq!(read(&ecs), format!("ECS_CLUSTER=prod\n{KEYS_DEFAULT}").as_bytes());
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(read(&ecs), b"ECS_CLUSTER=prod\n");
}

// ---------------------------------------------------------------------------
// 3b. what install keeps (no secret), and how install and uninstall end
// ---------------------------------------------------------------------------

/// [`nodes`] without the run directory (`run/`, where `ECS_HOSTNET_RUN_DIR` points: the
/// lock and saved records of the kernel commands, not install's).
fn nodes_but_run(root: &Path) -> BTreeMap<String, Node> {
    nodes(root).into_iter().filter(|(k, _)| k != "run" && !k.starts_with("run/")).collect()
}

/// The registry credentials of the tests' ecs.config (`c2VjcmV0` is base64 of "secret").
const AUTH_VALUE: &str = r#"{"https://index.docker.io/v1/":{"auth":"c2VjcmV0"}}"#;

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Byte strings that betray `secret` in a file: the text itself, its JSON-escaped form,
/// its hex (both cases), and its base64 as it appears inside the base64 of any text
/// holding it, at each of the three alignments (the characters fixed by the secret's
/// own bytes).
fn betrayals(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("plain".to_string(), secret.to_vec())];
    let escaped = serde_json::to_string(&String::from_utf8_lossy(secret)).unwrap();
    out.push(("JSON-escaped".into(), escaped.trim_matches('"').as_bytes().to_vec()));
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone().into_bytes()));
    out.push(("HEX".into(), hex.to_uppercase().into_bytes()));
    for pad in 0..3usize {
        let mut t = vec![b'x'; pad];
        t.extend_from_slice(secret);
        let enc = b64(&t);
        let (skip, keep) = (if pad == 0 { 0 } else { 4 }, t.len() / 3 * 4);
        out.push((format!("base64 at offset {pad}"), enc.as_bytes()[skip..keep].to_vec()));
    }
    out
}

/// Every regular file under `root` but `except` (relative paths) that holds one of the
/// betrayals of one of `secrets`: `path: what (secret)`.
fn files_betraying(root: &Path, secrets: &[&str], except: &[&str]) -> Vec<String> {
    let needles: Vec<(String, Vec<u8>)> = secrets
        .iter()
        .flat_map(|s| betrayals(s.as_bytes()).into_iter().map(move |(how, n)| (format!("{how} of {s:?}"), n)))
        .collect();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if m.is_dir() {
                stack.push(path);
            } else if m.is_file() && !except.contains(&rel.as_str()) {
                // (only regular files: an overlay's whiteouts are devices)
                let content = read(&path);
                for (what, n) in &needles {
                    if content.windows(n.len()).any(|w| w == &n[..]) {
                        found.push(format!("{rel}: {what}"));
                    }
                }
            }
        }
    }
    found.sort();
    found
}

/// The secrets the scans look for: the whole value, the inner token, and the decoded
/// password.
const SECRETS: [&str; 3] = [AUTH_VALUE, "c2VjcmV0", "ECS_ENGINE_AUTH_DATA"];

/// A pre-existing ecs.config with registry credentials: after install, no file under the
/// root (the state, the units, the configuration, the binary...) holds them in any
/// encoding; ecs.config itself still does (which proves the scan finds them); uninstall
/// gives the file back byte for byte, mode and owner included. In the layouts where a
/// copy was needed before: a duplicate key of ours, CRLF, no final newline.
#[test]
fn install_keeps_no_copy_of_registry_credentials_and_uninstall_restores_ecs_config_byte_for_byte() {
    require_root();
    let dir = TempDir::new("secret");
    let cfg = dir.default_config();
    let auth = format!("ECS_ENGINE_AUTH_DATA={AUTH_VALUE}");
    let cases: Vec<(&str, String)> = vec![
        ("LF", format!("ECS_CLUSTER=prod\n{auth}\nECS_ENGINE_AUTH_TYPE=dockercfg\n")),
        (
            "CRLF, our key twice",
            format!("ECS_AWSVPC_BLOCK_IMDS=false\r\nECS_CLUSTER=prod\r\n{auth}\r\nECS_AWSVPC_BLOCK_IMDS=no\r\n"),
        ),
        ("no final newline, secret last", format!("ECS_CLUSTER=prod\n ECS_ENABLE_TASK_IAM_ROLE = false\n{auth}")),
    ];
    for (name, before) in cases {
        let root = TempDir::new("secretroot");
        let root = root.path();
        write_mode(&p(root, ECS_CONFIG), before.as_bytes(), 0o600);
        std::os::unix::fs::chown(p(root, ECS_CONFIG), Some(1234), Some(1234)).unwrap();
        let original = nodes(root);
        ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
        let state = read(&p(root, STATE_PATH));
        assert!(!state.is_empty(), "{name}: no install state");
        let leaks = files_betraying(root, &SECRETS, &[ECS_CONFIG]);
        assert!(leaks.is_empty(), "[{name}] files install wrote hold the credentials:\n{}", leaks.join("\n"));
        let in_ecs = files_betraying(root, &SECRETS, &[]);
        assert!(
            in_ecs.iter().any(|l| l.starts_with(&format!("{ECS_CONFIG}: plain"))),
            "[{name}] the scan does not even find the credentials in ecs.config: {in_ecs:?}"
        );
        ehn_root(root, &["uninstall"]).expect_code(0);
        assert_nodes_eq(&format!("[{name}] after uninstall"), &original, &nodes(root));
    }
}

/// Credentials rotated after install stay rotated: uninstall puts back only our keys.
#[test]
fn a_secret_rotated_after_install_is_not_resurrected_by_uninstall() {
    require_root();
    let dir = TempDir::new("rotate");
    let cfg = dir.default_config();
    let root = TempDir::new("rotateroot");
    let root = root.path();
    let before = format!("ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA={AUTH_VALUE}\nECS_ENABLE_TASK_IAM_ROLE=false\n");
    write_mode(&p(root, ECS_CONFIG), before.as_bytes(), 0o600);
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    let rotated = AUTH_VALUE.replace("c2VjcmV0", "cm90YXRlZA==");
    let installed = String::from_utf8(read(&p(root, ECS_CONFIG))).unwrap();
    assert!(installed.contains(AUTH_VALUE), "{installed}");
    std::fs::write(p(root, ECS_CONFIG), installed.replace(AUTH_VALUE, &rotated)).unwrap();
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(
        show(&read(&p(root, ECS_CONFIG))),
        show(format!("ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA={rotated}\nECS_ENABLE_TASK_IAM_ROLE=false\n").as_bytes()),
        "uninstall must keep the rotated secret and put back only ECS_ENABLE_TASK_IAM_ROLE"
    );
}

/// A binary already at the install path (an earlier copy someone put there): install
/// replaces it and keeps none of its bytes in the state (megabytes apply would read at
/// every boot); uninstall leaves the installed binary there, says so, and its last line
/// says the binary stays.
#[test]
fn a_binary_that_was_there_before_install_is_not_copied_and_stays_after_uninstall() {
    require_root();
    let dir = TempDir::new("oldbin");
    let cfg = dir.default_config();
    let root = TempDir::new("oldbinroot");
    let root = root.path();
    let old = b"\x7fELF an older ecs-hostnet build 0123456789abcdef";
    write_mode(&p(root, BIN_PATH), old, 0o755);
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    let state = String::from_utf8(read(&p(root, STATE_PATH))).unwrap();
    for (what, n) in betrayals(old) {
        assert!(!state.as_bytes().windows(n.len()).any(|w| w == &n[..]), "the old binary ({what}) is in the state");
    }
    let un = ehn_root(root, &["uninstall"]);
    un.expect_code(0);
    assert!(un.stdout.contains("left /usr/local/sbin/ecs-hostnet in place: a file was there before install"), "{un}");
    assert!(un.stdout.contains("(the binary stays: one was there before install)"), "{un}");
    assert_eq!(read(&p(root, BIN_PATH)), test_binary(), "uninstall must leave the installed binary");
    assert_eq!(mode_of(&p(root, BIN_PATH)), 0o755);
}

/// What ecs-hostnet 0.1 wrote as install.json (schema v1) for the current install in
/// `root`: the files and folders as recorded now, plus whole base64 copies of ecs.config
/// before (`before`) and after (`written`) install.
fn v1_state(root: &Path, ecs_before: &[u8]) -> String {
    let v2: serde_json::Value = serde_json::from_slice(&read(&p(root, STATE_PATH))).unwrap();
    let written = read(&p(root, ECS_CONFIG));
    let keys_before: serde_json::Map<String, serde_json::Value> =
        ["ECS_ENABLE_TASK_IAM_ROLE", "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "ECS_AWSVPC_BLOCK_IMDS"]
            .iter()
            .map(|k| {
                let v = String::from_utf8_lossy(ecs_before)
                    .lines()
                    .rev()
                    .filter_map(|l| {
                        l.trim().strip_prefix(k)?.trim_start().strip_prefix('=').map(|v| v.trim().to_string())
                    })
                    .next();
                (k.to_string(), v.map_or(serde_json::Value::Null, serde_json::Value::String))
            })
            .collect();
    let doc = serde_json::json!({
        "schema": "ecs-hostnet.install/v1",
        "files": v2["files"],
        "wants_link": v2["wants_link"],
        "ecs_config": {"before": b64(ecs_before), "keys_before": keys_before, "written": b64(&written)},
        "created_dirs": v2["created_dirs"],
    });
    serde_json::to_string_pretty(&doc).unwrap() + "\n"
}

/// An install made by the previous version (its install.json of schema v1, with base64
/// copies of ecs.config, written here by hand): the next install, apply or uninstall
/// rewrites it without the copies (schema v2), and uninstall still gives ecs.config back
/// byte for byte. `check` only reads it (no rewrite).
#[test]
fn a_v1_install_state_loses_its_copies_at_the_next_command_and_uninstall_still_restores() {
    require_root();
    let dir = TempDir::new("migrate");
    let cfg = dir.default_config();
    let before = format!(
        "ECS_AWSVPC_BLOCK_IMDS=false\r\nECS_CLUSTER=prod\r\nECS_ENGINE_AUTH_DATA={AUTH_VALUE}\r\nECS_AWSVPC_BLOCK_IMDS=no"
    );
    for next in ["install", "apply", "uninstall"] {
        let ns = Netns::new("migrate");
        let root = TempDir::new("migrateroot");
        let root = root.path();
        write_mode(&p(root, ECS_CONFIG), before.as_bytes(), 0o640);
        let original = nodes(root);
        ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
        std::fs::write(p(root, STATE_PATH), v1_state(root, before.as_bytes())).unwrap();
        let planted = files_betraying(root, &SECRETS, &[ECS_CONFIG]);
        assert!(
            planted.iter().any(|l| l.starts_with(STATE_PATH) && l.contains("base64")),
            "the scan does not find the v1 copy: {planted:?}"
        );
        let state_before_check = read(&p(root, STATE_PATH));
        ehn_ns(root, &ns, &["check"]).expect_code(2); // the rule set is not applied yet
        assert_eq!(read(&p(root, STATE_PATH)), state_before_check, "check rewrote the state");
        match next {
            "install" => {
                ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
            }
            "apply" => {
                ehn_ns(root, &ns, &["apply"]).expect_code(0);
            }
            _ => {
                let un = ehn_root(root, &["uninstall"]);
                un.expect_code(0);
                assert!(un.stdout.contains("rewrote /var/lib/ecs-hostnet/install.json without its copies"), "{un}");
            }
        }
        if next != "uninstall" {
            let leaks = files_betraying(root, &SECRETS, &[ECS_CONFIG]);
            assert!(leaks.is_empty(), "after {next}: still kept:\n{}", leaks.join("\n"));
            let v: serde_json::Value = serde_json::from_slice(&read(&p(root, STATE_PATH))).unwrap();
            assert_eq!(v["schema"], "ecs-hostnet.install/v2", "after {next}");
            assert_eq!(mode_of(&p(root, STATE_PATH)), 0o600);
            if next == "apply" {
                ehn_ns(root, &ns, &["remove"]).expect_code(0);
            }
            ehn_root(root, &["uninstall"]).expect_code(0);
        }
        assert_nodes_eq(&format!("v1 state, {next}, uninstall"), &original, &nodes_but_run(root));
    }
}

/// `watch.enabled = false`: install writes no watch unit and no link; an install with it
/// true then false removes the unit and link the first one wrote (the install state no
/// longer lists them, and `check` sees no drift); uninstall leaves the root empty.
#[test]
fn watch_enabled_false_installs_no_watch_unit_and_removes_one_installed_before() {
    require_root();
    let dir = TempDir::new("watchoff");
    let on = dir.default_config();
    let text = default_config_text();
    let at = text.find("[watch]").expect("[watch] in rules/default.toml");
    let off_text = format!("{}{}", &text[..at], text[at..].replacen("enabled = true", "enabled = false", 1));
    let off = dir.write("off.toml", &off_text);
    let lists_watch = |root: &Path| String::from_utf8(read(&p(root, STATE_PATH))).unwrap().contains(WATCH_UNIT_PATH);

    // off from the start: neither the unit nor its link, the rest as usual
    let root = TempDir::new("watchoffroot");
    let root = root.path();
    ehn_root(root, &["install", "-c", &off]).expect_code(0);
    assert!(!p(root, WATCH_UNIT_PATH).exists() && std::fs::symlink_metadata(p(root, WATCH_LINK)).is_err());
    assert_eq!(
        read(&p(root, NFT_DROPIN_PATH)),
        NFT_DROPIN_TEXT.as_bytes(),
        "the drop-in covers hosts without a watcher"
    );
    assert!(!lists_watch(root));
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_nodes_eq("off: after uninstall", &BTreeMap::new(), &nodes(root));

    // on, then off: the second install takes back what the first wrote for the watcher
    ehn_root(root, &["install", "-c", &on]).expect_code(0);
    assert_eq!(read(&p(root, WATCH_UNIT_PATH)), WATCH_UNIT_TEXT.as_bytes());
    assert!(lists_watch(root));
    let second = ehn_root(root, &["install", "-c", &off]);
    second.expect_code(0);
    for want in ["disabled ecs-hostnet-watch.service", "removed /etc/systemd/system/ecs-hostnet-watch.service"] {
        assert!(second.stdout.contains(want), "{want:?} missing: {second}");
    }
    assert!(!p(root, WATCH_UNIT_PATH).exists() && std::fs::symlink_metadata(p(root, WATCH_LINK)).is_err());
    assert!(!lists_watch(root), "the state still lists the watch unit");
    let mut want = expected_tree(off_text.as_bytes(), KEYS_DEFAULT.as_bytes());
    want.remove(WATCH_UNIT_PATH);
    want.remove(WATCH_LINK);
    let mut tree = nodes(root);
    tree.remove(STATE_PATH);
    assert_nodes_eq("on then off", &want, &tree);
    // on again: both back
    ehn_root(root, &["install", "-c", &on]).expect_code(0);
    assert_eq!(
        std::fs::read_link(p(root, WATCH_LINK)).unwrap(),
        Path::new("/etc/systemd/system/ecs-hostnet-watch.service")
    );
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_nodes_eq("after uninstall", &BTreeMap::new(), &nodes(root));
}

const METRICS_SERVICE_PATH: &str = "etc/systemd/system/ecs-hostnet-metrics.service";
const METRICS_TIMER_PATH: &str = "etc/systemd/system/ecs-hostnet-metrics.timer";
const METRICS_LINK: &str = "etc/systemd/system/timers.target.wants/ecs-hostnet-metrics.timer";

/// The metrics timer is enabled iff `metrics.textfile` is set, in both layouts: from a
/// tarball install writes the service and timer (the texts `generate-units --local` makes)
/// and links the timer into timers.target.wants; beside the package it writes no unit and
/// links the package's timer. An install with the textfile unset takes back what an earlier
/// one made; uninstall leaves the root as it was (the package's files untouched).
#[test]
fn the_metrics_timer_is_enabled_iff_a_textfile_is_set() {
    require_root();
    let dir = TempDir::new("metrics");
    let off = dir.default_config();
    let text = default_config_text();
    let at = text.find("[metrics]").expect("[metrics] in rules/default.toml");
    let prom = "/var/lib/node_exporter/textfile/ecs-hostnet.prom";
    let on_text =
        format!("{}{}", &text[..at], text[at..].replacen("textfile = \"\"", &format!("textfile = \"{prom}\""), 1));
    assert_ne!(on_text, text);
    let on = dir.write("on.toml", &on_text);
    let local_units = dir.path().join("units");
    run_cmd(bin(), &["generate-units", "--local", s(&local_units)], Duration::from_secs(10)).expect_code(0);
    let link = |root: &Path| std::fs::read_link(p(root, METRICS_LINK)).ok();

    // From a tarball: off, on, off, on, uninstall.
    let root = TempDir::new("metricsroot");
    let root = root.path();
    ehn_root(root, &["install", "-c", &off]).expect_code(0);
    for f in [METRICS_SERVICE_PATH, METRICS_TIMER_PATH, METRICS_LINK] {
        assert!(std::fs::symlink_metadata(p(root, f)).is_err(), "{f} without a textfile");
    }
    let out = ehn_root(root, &["install", "-c", &on]);
    out.expect_code(0);
    for (f, name) in
        [(METRICS_SERVICE_PATH, "ecs-hostnet-metrics.service"), (METRICS_TIMER_PATH, "ecs-hostnet-metrics.timer")]
    {
        assert_eq!(show(&read(&p(root, f))), show(&read(&local_units.join(name))), "{f}");
        assert_eq!(mode_of(&p(root, f)), 0o644);
    }
    assert_eq!(link(root), Some(PathBuf::from("/etc/systemd/system/ecs-hostnet-metrics.timer")), "{out}");
    let off_again = ehn_root(root, &["install", "-c", &off]);
    off_again.expect_code(0);
    assert!(off_again.stdout.contains("disabled ecs-hostnet-metrics.timer"), "{off_again}");
    for f in [METRICS_SERVICE_PATH, METRICS_TIMER_PATH, METRICS_LINK] {
        assert!(std::fs::symlink_metadata(p(root, f)).is_err(), "{f} stayed after the textfile was unset: {off_again}");
    }
    assert!(!String::from_utf8(read(&p(root, STATE_PATH))).unwrap().contains("metrics"), "the state still lists it");
    ehn_root(root, &["install", "-c", &on]).expect_code(0);
    assert!(link(root).is_some());
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_nodes_eq("tarball: after uninstall", &BTreeMap::new(), &nodes(root));

    // Beside the package: its timer is linked, no unit is written.
    let root = TempDir::new("metricspkg");
    let root = root.path();
    fake_package(root);
    let before = nodes(root);
    let pkg = package_files(root);
    ehn_root(root, &["install", "-c", &off]).expect_code(0);
    assert_eq!(link(root), None, "enabled without a textfile");
    ehn_root(root, &["install", "-c", &on]).expect_code(0);
    assert_eq!(link(root), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet-metrics.timer")));
    for f in [METRICS_SERVICE_PATH, METRICS_TIMER_PATH] {
        assert!(!p(root, f).exists(), "install beside the package wrote {f}");
    }
    assert!(String::from_utf8(read(&p(root, STATE_PATH))).unwrap().contains("\"metrics_link\": true"));
    ehn_root(root, &["install", "-c", &off]).expect_code(0);
    assert_eq!(link(root), None, "still enabled after the textfile was unset");
    ehn_root(root, &["install", "-c", &on]).expect_code(0);
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(link(root), None);
    assert_eq!(package_files(root).keys().collect::<Vec<_>>(), pkg.keys().collect::<Vec<_>>());
    let mut after = nodes(root);
    after.retain(|k, _| !k.starts_with("run"));
    // The conffile: `install -c` wrote another configuration over it, and uninstall keeps an
    // installed configuration (the package's conffile) as it is; the rest is as before.
    after.remove(CONFIG_PATH);
    let mut before = before;
    before.remove(CONFIG_PATH);
    assert_nodes_eq("package: after uninstall", &before, &after);
}

/// A stand-in for systemctl, first in PATH: appends each call to `log`, with whether
/// the binary and the drop-in exist at that moment (what a real daemon-reload would
/// load) and whether our rule set is live in its network namespace (so the order of a
/// watcher's stop and the rule set's removal shows), and answers `is-active` with
/// `active_exit`.
fn fake_systemctl(dir: &Path, log: &Path, active_exit: u8) -> PathBuf {
    let bin_dir = dir.join("fakebin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let script = format!(
        "#!/bin/sh\n\
         b=absent; [ -e /{BIN_PATH} ] && b=present\n\
         d=absent; [ -e /{DROPIN_PATH} ] && d=present\n\
         r=absent; nft list table inet ecs-hostnet >/dev/null 2>&1 && r=live\n\
         echo \"systemctl $* binary=$b dropin=$d rules=$r\" >> {log}\n\
         case \"$1\" in is-active) exit {active_exit};; esac\n\
         exit 0\n",
        log = log.display()
    );
    write_mode(&bin_dir.join("systemctl"), script.as_bytes(), 0o755);
    bin_dir
}

fn path_with(first: &Path) -> String {
    format!("{}:{}", first.display(), std::env::var("PATH").unwrap_or_default())
}

/// With `--root` (an image being built) install and uninstall run no systemctl at all,
/// and say so, even on a machine run by systemd: they run in a private mount namespace
/// whose /run is a tmpfs holding /run/systemd/system (the machine's own /run is not
/// touched), with the recorder first in PATH. (The recorder does record: the
/// running-system test below sees its calls.)
#[test]
fn install_and_uninstall_under_root_run_no_systemctl() {
    require_root();
    let dir = TempDir::new("nosysctl");
    let cfg = dir.default_config();
    let root = TempDir::new("nosysctlroot");
    let root = root.path();
    write_mode(&p(root, ECS_CONFIG), b"ECS_CLUSTER=prod\n", 0o644);
    let log = dir.path().join("systemctl.log");
    let fake = fake_systemctl(dir.path(), &log, 0);
    for args in [vec!["install", "-c", cfg.as_str()], vec!["uninstall"]] {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--net", "--", "sh", "-ec"])
            .arg("mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/system; exec \"$@\"")
            .args(["sh", bin(), "--root", s(root)])
            .args(&args)
            .env("PATH", path_with(&fake))
            .env("ECS_HOSTNET_RUN_DIR", root.join("run/ecs-hostnet"));
        let out = run_cmd_with(&mut cmd, Duration::from_secs(60));
        out.expect_code(0);
        assert!(out.stdout.contains("no systemctl run (--root)"), "{out}");
        assert!(!out.stdout.contains("daemon-reload)") && !out.stdout.contains("restart ecs"), "{out}");
        if args[0] == "uninstall" {
            assert!(out.stdout.contains("no kernel was touched (--root)"), "{out}");
            assert!(!out.stdout.contains("`ecs-hostnet"), "uninstall suggests the binary it deleted: {out}");
        }
    }
    assert!(!log.exists(), "systemctl ran under --root: {}", std::fs::read_to_string(&log).unwrap_or_default());
}

/// The running system (no `--root`), made safe: a private mount namespace (and network
/// namespace, `unshare --mount --net`) in which /etc, /usr and /var are overlays whose
/// writes land in a temp dir, and /run is an empty tmpfs holding /run/systemd/system (so
/// ecs-hostnet sees a systemd-run system, as sd_booted(3) tests). systemctl is the
/// recorder, first in PATH. The script stops before running anything unless every path
/// ecs-hostnet writes is on an overlay. When the namespace's last process exits, its
/// mounts go; the temp dir is removed in Drop.
///
/// install then runs `systemctl daemon-reload`, (re)starts the watch unit and says that
/// the running agent must be restarted for the new keys; uninstall stops the watch unit
/// first (while the rule set is live), removes the live rule set, then the files, then
/// reloads systemd (the binary and the hook are gone by then, so systemd no longer
/// names them), and never suggests the binary it deleted.
#[test]
fn on_a_running_system_install_and_uninstall_reload_systemd_and_uninstall_removes_the_rule_set() {
    require_root();
    let t = TempDir::new("sysroot");
    let t = t.path();
    let log = t.join("systemctl.log");
    let fake = fake_systemctl(t, &log, 0);
    let before = format!("ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA={AUTH_VALUE}\n");
    write_mode(&t.join("ecs.config.before"), before.as_bytes(), 0o600);
    write_mode(&t.join("site.toml"), default_config_text().as_bytes(), 0o644);
    let real_before: Vec<bool> =
        [BIN_PATH, DROPIN_PATH, STATE_PATH, ECS_CONFIG].iter().map(|r| Path::new("/").join(r).exists()).collect();
    let script = format!(
        r#"set -eu
T={t}
for d in etc usr var; do
  mkdir -p $T/ov/$d/up $T/ov/$d/work
  mount -t overlay overlay -o lowerdir=/$d,upperdir=$T/ov/$d/up,workdir=$T/ov/$d/work /$d
done
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
for p in /etc /etc/systemd/system /usr/local/sbin /var/lib; do
  [ "$(stat -f -c %T $p)" = overlayfs ] || {{ echo "$p is not on the overlay" >&2; exit 90; }}
done
mkdir -p /etc/ecs && cp -p $T/ecs.config.before /etc/ecs/ecs.config
export PATH={path} ECS_HOSTNET_RUN_DIR=$T/rundir
step() {{ name=$1; shift; set +e; "$@" >$T/$name.out 2>$T/$name.err; echo $? >$T/$name.rc; set -e; }}
step install {bin} install -c $T/site.toml
step apply {bin} apply
nft list ruleset >$T/ruleset.applied
cat /proc/sys/net/ipv4/conf/all/route_localnet >$T/rl.applied
step uninstall {bin} uninstall
nft list ruleset >$T/ruleset.after
cat /proc/sys/net/ipv4/conf/all/route_localnet >$T/rl.after
cp -p /etc/ecs/ecs.config $T/ecs.config.after
ls -A /{bin_path} /{state} >$T/left 2>&1 || true
"#,
        t = t.display(),
        path = path_with(&fake),
        bin = bin(),
        bin_path = BIN_PATH,
        state = STATE_PATH,
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--net", "--", "sh", "-c", &script]);
    let out = run_cmd_with(&mut cmd, Duration::from_secs(120));
    out.expect_code(0);
    let f = |name: &str| std::fs::read_to_string(t.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{out}"));
    let step = |name: &str| {
        format!(
            "--- {name} exit {}\n{}{}",
            f(&format!("{name}.rc")).trim(),
            f(&format!("{name}.out")),
            f(&format!("{name}.err"))
        )
    };
    for s in ["install", "apply", "uninstall"] {
        assert_eq!(f(&format!("{s}.rc")).trim(), "0", "{}", step(s));
    }
    let (install, uninstall) = (f("install.out"), f("uninstall.out"));
    let calls: Vec<String> = f("systemctl.log").lines().map(str::to_string).collect();
    assert_eq!(
        calls,
        [
            "systemctl daemon-reload binary=present dropin=present rules=absent",
            "systemctl restart ecs-hostnet-watch.service binary=present dropin=present rules=absent",
            "systemctl is-active --quiet ecs.service binary=present dropin=present rules=absent",
            // the watcher stops first, while the rule set is still live (else it would
            // repair the removal)
            "systemctl stop ecs-hostnet-watch.service binary=present dropin=present rules=live",
            "systemctl daemon-reload binary=absent dropin=absent rules=absent",
            "systemctl is-active --quiet ecs.service binary=absent dropin=absent rules=absent",
        ],
        "{}\n{}",
        step("install"),
        step("uninstall")
    );
    assert!(install.contains("reloaded systemd's units (systemctl daemon-reload)"), "{}", step("install"));
    assert!(install.contains("run `systemctl restart ecs`"), "{}", step("install"));
    assert!(f("ruleset.applied").contains("table inet ecs-hostnet") && f("rl.applied").trim() == "1");
    let at =
        |needle: &str| uninstall.find(needle).unwrap_or_else(|| panic!("{needle:?} missing: {}", step("uninstall")));
    assert!(at("Removed:") < at("removed /usr/local/sbin/ecs-hostnet"), "{}", step("uninstall"));
    assert!(at("removed /usr/local/sbin/ecs-hostnet") < at("reloaded systemd's units"), "{}", step("uninstall"));
    assert!(!uninstall.contains("`ecs-hostnet"), "uninstall suggests the binary it deleted: {}", step("uninstall"));
    assert!(!f("ruleset.after").contains("ecs-hostnet") && f("rl.after").trim() == "0", "{}", f("ruleset.after"));
    assert_eq!(show(&read(&t.join("ecs.config.after"))), show(before.as_bytes()));
    assert!(f("left").contains("No such file"), "{}", f("left"));
    let leaks = files_betraying(&t.join("ov"), &SECRETS, &["etc/up/ecs/ecs.config"]);
    assert!(leaks.is_empty(), "{leaks:?}");
    let real_after: Vec<bool> =
        [BIN_PATH, DROPIN_PATH, STATE_PATH, ECS_CONFIG].iter().map(|r| Path::new("/").join(r).exists()).collect();
    assert_eq!(real_before, real_after, "the machine's own files changed");
}

/// `setpriv` without CAP_NET_ADMIN: nf_tables refuses every request.
fn without_net_admin(run_dir: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--", bin()])
        .args(args)
        .env("ECS_HOSTNET_RUN_DIR", run_dir);
    run_cmd_with(&mut cmd, Duration::from_secs(60))
}

/// `uninstall --netns NS` removes the live rule set there (route_localnet back to what
/// it was) before it deletes the binary; when it cannot (no CAP_NET_ADMIN: the kernel
/// refuses), nothing at all is uninstalled, the message says so and what to run (the
/// binary it names is still there).
#[test]
fn uninstall_removes_the_live_rule_set_first_or_uninstalls_nothing() {
    require_root();
    let dir = TempDir::new("unrules");
    let cfg = dir.default_config();
    let ns = Netns::new("unrules");
    let root = TempDir::new("unrulesroot");
    let root = root.path();
    write_mode(&p(root, ECS_CONFIG), b"ECS_CLUSTER=prod\n", 0o644);
    let original = nodes(root);
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    ehn_ns(root, &ns, &["apply"]).expect_code(0);
    let live = ns.ruleset();
    assert!(live.contains("table inet ecs-hostnet") && ns.route_localnet() == "1", "{live}");
    let installed = nodes_but_run(root);

    let refused =
        without_net_admin(&root.join("run/ecs-hostnet"), &["--root", s(root), "--netns", &ns.name, "uninstall"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains("nothing was uninstalled") && refused.stderr.contains("`ecs-hostnet uninstall` again"),
        "{refused}"
    );
    assert_nodes_eq("after a refused uninstall", &installed, &nodes_but_run(root));
    assert_eq!(ns.ruleset(), live, "a refused uninstall changed the rule set");

    let un = ehn_ns(root, &ns, &["uninstall"]);
    un.expect_code(0);
    let at = |needle: &str| un.stdout.find(needle).unwrap_or_else(|| panic!("{needle:?} not in {un}"));
    assert!(at("Removed:") < at("removed /usr/local/sbin/ecs-hostnet"), "rule set after the binary: {un}");
    assert!(!un.stdout.contains("`ecs-hostnet"), "uninstall suggests the binary it deleted: {un}");
    assert!(!ns.ruleset().contains("ecs-hostnet"), "{}", ns.ruleset());
    assert_eq!(ns.route_localnet(), "0", "route_localnet not put back");
    assert_nodes_eq("after uninstall", &original, &nodes_but_run(root));
}

// ---------------------------------------------------------------------------
// 4. crash safety
// ---------------------------------------------------------------------------

/// Each managed file is wholly one of the allowed contents.
fn check_install_files(root: &Path, configs: &[&[u8]], ecs_configs: &[&[u8]], binary: &[u8]) -> Vec<String> {
    let mut bad = Vec::new();
    let mut one_of = |rel: &str, allowed: &[&[u8]]| {
        let path = p(root, rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                let got = read(&path);
                if !allowed.iter().any(|a| *a == &got[..]) {
                    bad.push(format!(
                        "{rel}: neither old nor new content ({} bytes): {}",
                        got.len(),
                        show(&got[..got.len().min(200)])
                    ));
                }
            }
            Ok(m) => bad.push(format!("{rel}: not a regular file: {:?}", m.file_type())),
            Err(e) => bad.push(format!("{rel}: {e}")),
        }
    };
    one_of(CONFIG_PATH, configs);
    one_of(UNIT_PATH, &[UNIT_TEXT.as_bytes()]);
    one_of(DROPIN_PATH, &[DROPIN_TEXT.as_bytes()]);
    one_of(NFT_DROPIN_PATH, &[NFT_DROPIN_TEXT.as_bytes()]);
    one_of(WATCH_UNIT_PATH, &[WATCH_UNIT_TEXT.as_bytes()]);
    one_of(BIN_PATH, &[binary]);
    one_of(ECS_CONFIG, ecs_configs);
    match std::fs::read_link(p(root, WANTS_LINK)) {
        Ok(t) if t == Path::new("/etc/systemd/system/ecs-hostnet.service") => {}
        other => bad.push(format!("{WANTS_LINK}: {other:?}")),
    }
    match std::fs::read_link(p(root, WATCH_LINK)) {
        Ok(t) if t == Path::new("/etc/systemd/system/ecs-hostnet-watch.service") => {}
        other => bad.push(format!("{WATCH_LINK}: {other:?}")),
    }
    match std::fs::read(p(root, STATE_PATH)).map(|b| serde_json::from_slice::<serde_json::Value>(&b)) {
        Ok(Ok(v)) if v["schema"] == "ecs-hostnet.install/v2" => {}
        other => bad.push(format!("{STATE_PATH}: not a whole install state: {other:?}")),
    }
    bad
}

/// `install -c A` / `-c B` alternately, SIGKILLed at random moments: every managed file
/// stays wholly old or wholly new, and the next install converges.
#[test]
fn install_killed_at_random_moments_leaves_each_file_old_or_new() {
    require_root();
    let dir = TempDir::new("kinst");
    let root = TempDir::new("kinstroot");
    let root = root.path();
    let a_text = format!("# A\n{}", default_config_text());
    let b_text =
        "# B\n[credentials]\nagent_port = 51690\n[agent]\nenable_task_iam_role_network_host = false\n".to_string();
    let a = dir.write("a.toml", &a_text);
    let b = dir.write("b.toml", &b_text);
    write_mode(&p(root, ECS_CONFIG), b"ECS_CLUSTER=prod\n", 0o640);
    let ecs_a = format!("ECS_CLUSTER=prod\n{KEYS_DEFAULT}");
    let ecs_b = "ECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=false\nECS_AWSVPC_BLOCK_IMDS=true\n";
    let binary = test_binary();
    let configs: [&[u8]; 2] = [a_text.as_bytes(), b_text.as_bytes()];
    let ecs_configs: [&[u8]; 2] = [ecs_a.as_bytes(), ecs_b.as_bytes()];

    ehn_root(root, &["install", "-c", &a]).expect_code(0);
    // how long a switching install takes, to kill inside it
    let mut flip = false;
    let d = median_run_time(5, || {
        flip = !flip;
        let mut c = ehn_cmd_root(root, &["install", "-c", if flip { &b } else { &a }]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    });
    ehn_root(root, &["install", "-c", &a]).expect_code(0);
    let max_delay = (d * 6 / 5).clamp(Duration::from_millis(1), Duration::from_millis(20));
    let mut rng = Rng::from_time("install crash test");
    let start = Instant::now();
    let (mut rounds, mut killed, mut partial) = (0, 0, 0);
    let mut current = 0usize; // index of the converged configuration
    while rounds < 200 && start.elapsed() < Duration::from_secs(12) {
        rounds += 1;
        let target = 1 - current;
        let path = if target == 0 { &a } else { &b };
        let was_killed = run_and_kill(&mut ehn_cmd_root(root, &["install", "-c", path]), rng.below(max_delay));
        killed += usize::from(was_killed);
        let bad = check_install_files(root, &configs, &ecs_configs, &binary);
        assert!(bad.is_empty(), "round {rounds} (killed: {was_killed}): partial files:\n{}", bad.join("\n"));
        let cfg_now = read(&p(root, CONFIG_PATH));
        let ecs_now = read(&p(root, ECS_CONFIG));
        if (cfg_now == configs[target]) != (ecs_now == ecs_configs[target]) {
            partial += 1; // killed between the two writes
        }
        // the next install converges, and the one after it has nothing to do
        let fin = ehn_root(root, &["install", "-c", path]);
        assert!(fin.ok(), "round {rounds}: install after the kill failed: {fin}");
        let again = ehn_root(root, &["install", "-c", path]);
        assert!(again.ok() && changed_lines(&again).is_empty(), "round {rounds}: install did not converge: {again}");
        assert_eq!(read(&p(root, CONFIG_PATH)), configs[target], "round {rounds}");
        assert_eq!(show(&read(&p(root, ECS_CONFIG))), show(ecs_configs[target]), "round {rounds}");
        assert_eq!(mode_of(&p(root, ECS_CONFIG)), 0o640, "round {rounds}: ecs.config lost its mode");
        current = target;
    }
    let leftovers = temp_files(root);
    eprintln!(
        "install crash test: {rounds} rounds in {:?}, {killed} killed while running (kill window {max_delay:?}, median run {d:?}), {partial} left config and ecs.config from different installs; {} temporary files left behind: {:?}",
        start.elapsed(),
        leftovers.len(),
        leftovers.iter().take(5).collect::<Vec<_>>()
    );
    assert!(rounds >= 50, "too few rounds ({rounds}) to mean anything");
    assert!(
        killed * 4 >= rounds,
        "only {killed} of {rounds} installs were killed while running: the test did not test"
    );
}

/// The doc of src/install.rs promises that "an interrupted install or uninstall can
/// always be finished or undone by running either command again". A first install
/// SIGKILLed at a random moment, followed by (install and) uninstall, must leave the
/// root exactly as it was; so must an uninstall SIGKILLed at a random moment and run
/// again.
#[test]
fn interrupted_install_or_uninstall_is_undone_by_running_uninstall() {
    require_root();
    let dir = TempDir::new("undo");
    let cfg = dir.default_config();
    let binary = test_binary();
    // a starting root with an ecs.config that is not in install's canonical form
    // (duplicate key, blanks around '='): only a byte-exact restore gives it back
    let fixture = |root: &Path| {
        write_mode(&p(root, ECS_CONFIG), ODD_ECS_CONFIG, 0o644);
    };
    // how long a first install and an uninstall take (fresh roots), to kill inside them
    let cal: Vec<TempDir> = (0..3)
        .map(|_| {
            let r = TempDir::new("undocal");
            fixture(r.path());
            r
        })
        .collect();
    let quiet = |mut c: Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let mut it = cal.iter();
    let d_inst = median_run_time(3, || quiet(ehn_cmd_root(it.next().unwrap().path(), &["install", "-c", &cfg])));
    let mut it = cal.iter();
    let d_un = median_run_time(3, || quiet(ehn_cmd_root(it.next().unwrap().path(), &["uninstall"])));
    drop(cal);
    let mut rng = Rng::from_time("interrupted install/uninstall");
    let start = Instant::now();
    let mut failures = Vec::new();
    let (mut rounds, mut killed) = (0, 0);
    while rounds < 60 && start.elapsed() < Duration::from_secs(8) {
        rounds += 1;
        let root = TempDir::new("undoroot");
        let root = root.path();
        fixture(root);
        let original = nodes(root);
        let mode = rounds % 3;
        let what = match mode {
            0 => {
                killed += usize::from(run_and_kill(
                    &mut ehn_cmd_root(root, &["install", "-c", &cfg]),
                    rng.below(d_inst * 6 / 5),
                ));
                ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
                let bad = check_install_files(root, &[default_config_text().as_bytes()], &[
                    b"ECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_AWSVPC_BLOCK_IMDS=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\n",
                ], &binary);
                assert!(
                    bad.is_empty(),
                    "round {rounds}: install after a killed install did not finish the job:\n{}",
                    bad.join("\n")
                );
                ehn_root(root, &["uninstall"]).expect_code(0);
                "install killed, install, uninstall"
            }
            1 => {
                killed += usize::from(run_and_kill(
                    &mut ehn_cmd_root(root, &["install", "-c", &cfg]),
                    rng.below(d_inst * 6 / 5),
                ));
                ehn_root(root, &["uninstall"]).expect_code(0);
                "install killed, uninstall"
            }
            _ => {
                ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
                killed += usize::from(run_and_kill(&mut ehn_cmd_root(root, &["uninstall"]), rng.below(d_un * 6 / 5)));
                ehn_root(root, &["uninstall"]).expect_code(0);
                "install, uninstall killed, uninstall"
            }
        };
        let now = nodes(root);
        if now != original {
            failures.push((what, rounds, node_diff(&original, &now)));
        }
    }
    eprintln!(
        "interrupted install/uninstall: {rounds} rounds, {killed} killed while running, {} left the root changed",
        failures.len()
    );
    assert!(rounds >= 20, "too few rounds ({rounds})");
    // one example per kind of damage
    let mut kinds: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (what, round, diff) in &failures {
        let mut kind: Vec<&str> = Vec::new();
        if diff.contains("etc/ecs/ecs.config") {
            kind.push("ecs.config not restored byte for byte");
        }
        if diff.contains("  extra ") {
            kind.push("files/folders left behind");
        }
        let e = kinds.entry(format!("{what}: {}", kind.join(" + "))).or_insert((0, format!("round {round}:\n{diff}")));
        e.0 += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {rounds} rounds did not get the root back:\n{}",
        failures.len(),
        kinds.iter().map(|(k, (n, ex))| format!("- {n} x {k}; e.g. {ex}")).collect::<Vec<_>>().join("\n")
    );
}

/// A crash at a precise point: RLIMIT_FSIZE kills install (SIGXFSZ) in the middle of
/// writing the binary's temporary copy. The managed name is never partial; install
/// then finishes the job; uninstall must then leave the root exactly as it was (no
/// temporary file, no folder install created).
#[test]
fn install_killed_while_writing_leaves_nothing_behind_after_uninstall() {
    require_root();
    let root = TempDir::new("fsize");
    let root = root.path();
    write_mode(&p(root, ECS_CONFIG), b"ECS_CLUSTER=prod\n", 0o644);
    let original = nodes(root);
    let mut cmd = Command::new("prlimit");
    cmd.args(["--fsize=100000", "--core=0", "--", "unshare", "--net", "--", bin(), "--root", s(root), "install"]);
    let out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.code, -1, "install must have been killed by SIGXFSZ while writing the binary: {out}");
    assert!(!p(root, BIN_PATH).exists(), "a partial binary is visible under the managed name");
    let debris = temp_files(root);
    assert!(!debris.is_empty(), "the crash left no temporary file: the test did not crash where intended");
    ehn_root(root, &["install"]).expect_code(0);
    assert_eq!(read(&p(root, BIN_PATH)), test_binary());
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_nodes_eq("install killed while writing, install, uninstall", &original, &nodes(root));
}

/// ecs.config that is not in install's canonical form (a duplicate key, blanks around
/// '='): what uninstall must give back byte for byte.
const ODD_ECS_CONFIG: &[u8] =
    b"ECS_AWSVPC_BLOCK_IMDS=false\nECS_CLUSTER=prod\n ECS_ENABLE_TASK_IAM_ROLE = false\nECS_AWSVPC_BLOCK_IMDS=false\n";

/// `setpriv` without CAP_DAC_OVERRIDE: root then obeys folder modes.
fn without_dac_override(args: &[&str]) -> Out {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
        "--",
        "unshare",
        "--net",
        "--",
        bin(),
    ])
    .args(args);
    run_cmd_with(&mut cmd, Duration::from_secs(60))
}

/// An install that stopped before it wrote ecs.config (here: a read-only /etc/ecs
/// without CAP_DAC_OVERRIDE), then uninstall: ecs.config was never changed, so it must
/// be left exactly as it is.
#[test]
fn uninstall_after_an_install_that_stopped_before_ecs_config_keeps_it_byte_for_byte() {
    require_root();
    let root = TempDir::new("stopinst");
    let root = root.path();
    write_mode(&p(root, ECS_CONFIG), ODD_ECS_CONFIG, 0o644);
    std::fs::set_permissions(p(root, "etc/ecs"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let original = nodes(root);
    let out = without_dac_override(&["--root", s(root), "install"]);
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(show(&read(&p(root, ECS_CONFIG))), show(ODD_ECS_CONFIG), "the failed install changed ecs.config");
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(
        show(&read(&p(root, ECS_CONFIG))),
        show(ODD_ECS_CONFIG),
        "uninstall rewrote an ecs.config that install never changed"
    );
    assert_nodes_eq("failed install, uninstall", &original, &nodes(root));
}

/// An uninstall that stopped after it had put ecs.config back (here: a folder where the
/// boot unit was, which no check of writable folders foresees: the unit cannot be
/// unlinked), then uninstall again: ecs.config must stay the original bytes. (A read-only
/// folder no longer stops uninstall part-way: it is refused before anything changes, see
/// `uninstall_with_a_read_only_folder_changes_nothing_not_even_the_rule_set`.)
#[test]
fn uninstall_run_again_after_a_failed_uninstall_keeps_ecs_config_byte_for_byte() {
    require_root();
    let root = TempDir::new("stopun");
    let root = root.path();
    write_mode(&p(root, ECS_CONFIG), ODD_ECS_CONFIG, 0o644);
    let original = nodes(root);
    ehn_root(root, &["install"]).expect_code(0);
    let unit = p(root, UNIT_PATH);
    std::fs::remove_file(&unit).unwrap();
    std::fs::create_dir(&unit).unwrap();
    let out = ehn_root(root, &["uninstall"]);
    std::fs::remove_dir(&unit).unwrap();
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("uninstall stopped part-way") && out.stderr.contains("`ecs-hostnet apply`"), "{out}");
    assert_eq!(
        show(&read(&p(root, ECS_CONFIG))),
        show(ODD_ECS_CONFIG),
        "the first uninstall should have restored ecs.config"
    );
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(
        show(&read(&p(root, ECS_CONFIG))),
        show(ODD_ECS_CONFIG),
        "the second uninstall rewrote the restored ecs.config"
    );
    assert_nodes_eq("failed uninstall, uninstall", &original, &nodes(root));
}

/// Our two tables as text, counters zeroed out.
fn our_signature(ns: &Netns) -> String {
    let rs = ns.ruleset();
    let t = tables(&rs);
    assert!(foreign_tables(&rs).is_empty(), "a foreign table appeared:\n{rs}");
    ["ip ecs-hostnet", "inet ecs-hostnet"]
        .iter()
        .filter_map(|k| t.get(*k))
        .flat_map(|text| text.lines().map(normalize_counters).collect::<Vec<_>>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn route_localnet_pair(ns: &Netns) -> (String, String) {
    (ns.sysctl("net.ipv4.conf.all.route_localnet"), ns.sysctl("net.ipv4.conf.docker0.route_localnet"))
}

/// A namespace with a docker0 bridge (for per-interface route_localnet) and two
/// configurations that differ in rules, sysctls and the route_localnet record.
struct KernelFixture {
    ns: Netns,
    _dir: TempDir,
    root: TempDir,
    cfgs: [String; 2],
}

impl KernelFixture {
    fn new(role: &str) -> KernelFixture {
        let ns = Netns::new(role);
        ns.ip(&["link", "add", "docker0", "type", "bridge"]);
        ns.ip(&["link", "set", "docker0", "up"]);
        let dir = TempDir::new(&format!("{role}-cfg"));
        let root = TempDir::new(&format!("{role}-root"));
        let a = dir.default_config();
        let b =
            dir.write("b.toml", "[containers]\ninterfaces = [\"docker+\"]\n[route_localnet]\nenable = [\"docker0\"]\n");
        KernelFixture { ns, _dir: dir, root, cfgs: [a, b] }
    }
    fn root(&self) -> &Path {
        self.root.path()
    }
}

/// `apply -c A` / `-c B` alternately, SIGKILLed at random moments: the rule set is
/// always the previous or the complete new one, route_localnet is never 1 without the
/// localhost guard, the next apply converges, and remove still restores route_localnet.
#[test]
fn apply_killed_at_random_moments_leaves_the_old_or_the_new_rule_set() {
    let f = KernelFixture::new("kapply");
    let (ns, root) = (&f.ns, f.root());
    assert_eq!(route_localnet_pair(ns), ("0".into(), "0".into()));
    // the converged states of both configurations
    let mut sig = Vec::new();
    let mut rln = Vec::new();
    for c in &f.cfgs {
        ehn_ns(root, ns, &["apply", "-c", c]).expect_code(0);
        sig.push(our_signature(ns));
        rln.push(route_localnet_pair(ns));
    }
    assert_ne!(sig[0], sig[1]);
    assert_eq!(rln, [("1".to_string(), "0".to_string()), ("0".to_string(), "1".to_string())]);
    let mut flip = true;
    let d = median_run_time(5, || {
        flip = !flip;
        let mut c = ehn_cmd_root(root, &["--netns", &ns.name, "apply", "-c", &f.cfgs[usize::from(flip)]]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    });
    // converged on A again
    ehn_ns(root, ns, &["apply", "-c", &f.cfgs[0]]).expect_code(0);
    assert_eq!(our_signature(ns), sig[0]);

    let max_delay = (d * 6 / 5).clamp(Duration::from_millis(1), Duration::from_millis(20));
    let mut rng = Rng::from_time("apply crash test");
    let start = Instant::now();
    let (mut rounds, mut killed, mut switched) = (0, 0, 0);
    let mut current = 0usize;
    while rounds < 100 && start.elapsed() < Duration::from_secs(12) {
        rounds += 1;
        let target = 1 - current;
        let cfg = &f.cfgs[target];
        let was_killed =
            run_and_kill(&mut ehn_cmd_root(root, &["--netns", &ns.name, "apply", "-c", cfg]), rng.below(max_delay));
        killed += usize::from(was_killed);
        let now = our_signature(ns);
        assert!(
            now == sig[current] || now == sig[target],
            "round {rounds} (killed: {was_killed}): the rule set is neither the old nor the new one:\n{now}\n--- old ---\n{}\n--- new ---\n{}",
            sig[current],
            sig[target]
        );
        switched += usize::from(now == sig[target]);
        let (all, docker0) = route_localnet_pair(ns);
        if all == "1" || docker0 == "1" {
            assert!(
                now.contains("localhost-guard"),
                "round {rounds}: route_localnet on (all={all}, docker0={docker0}) without the localhost guard:\n{now}"
            );
        }
        let fin = ehn_ns(root, ns, &["apply", "-c", cfg]);
        assert!(fin.ok(), "round {rounds}: apply after the kill failed: {fin}");
        let chk = ehn_ns(root, ns, &["check", "-c", cfg]);
        assert!(chk.code == 0, "round {rounds}: not converged after apply: {chk}");
        assert_eq!(our_signature(ns), sig[target], "round {rounds}");
        assert_eq!(route_localnet_pair(ns), rln[target], "round {rounds}");
        current = target;
    }
    eprintln!(
        "apply crash test: {rounds} rounds in {:?}, {killed} killed while running (window {max_delay:?}, median run {d:?}), {switched} had already switched",
        start.elapsed()
    );
    assert!(rounds >= 40, "too few rounds ({rounds})");
    assert!(killed * 4 >= rounds, "only {killed} of {rounds} applies were killed while running: the test did not test");
    // the record of the original values survived every kill
    ehn_ns(root, ns, &["remove", "-c", &f.cfgs[0]]).expect_code(0);
    assert_eq!(ns.ruleset().trim(), "", "remove leaves no rules");
    assert_eq!(
        route_localnet_pair(ns),
        ("0".into(), "0".into()),
        "remove must restore the values found before the first apply"
    );
}

// ---------------------------------------------------------------------------
// 5. concurrency
// ---------------------------------------------------------------------------

/// Starts every command at the same moment (one thread each, behind a barrier).
fn start_together(cmds: Vec<Command>) -> Vec<std::thread::JoinHandle<Out>> {
    let barrier = Arc::new(Barrier::new(cmds.len()));
    cmds.into_iter()
        .map(|mut cmd| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                run_cmd_with(&mut cmd, Duration::from_secs(60))
            })
        })
        .collect()
}

/// Exit 0 with nothing on stderr but the configuration line, or exit 1 because the
/// lock was busy.
fn clean_run(o: &Out) -> bool {
    let stray = o.stderr.lines().any(|l| !l.starts_with("configuration: "));
    (o.code == 0 && !stray) || (o.code == 1 && o.stderr.contains("another ecs-hostnet"))
}

/// Makes the installed files and the rule set drift.
fn make_drift(root: &Path, ns: &Netns, kernel: bool) {
    std::fs::write(p(root, UNIT_PATH), "[Unit]\nDescription=edited\n").unwrap();
    let _ = std::fs::remove_file(p(root, WANTS_LINK));
    std::fs::write(p(root, ECS_CONFIG), b"ECS_ENABLE_TASK_IAM_ROLE=false\n").unwrap();
    if kernel {
        ns.nft(&["flush", "chain", "inet", "ecs-hostnet", "input"]);
    }
}

/// Six applies at once on one namespace (and one installed root whose files have
/// drifted), ten rounds: each exits 0 (or 1 with the lock message), nothing but the
/// configuration line on stderr, and the end state is converged. They wait for the
/// lock while someone holds it. Applies and removes at once end in one of the two
/// clean states, never with route_localnet on and no guard.
#[test]
fn concurrent_applies_converge_without_errors() {
    let f = KernelFixture::new("conc");
    let (ns, root) = (&f.ns, f.root());
    // installed files to repair concurrently (the agent keys are the same in A and B)
    ehn_root(root, &["install", "-c", &f.cfgs[0]]).expect_code(0);
    let installed = nodes(root);
    let files_now =
        || -> BTreeMap<String, Node> { nodes(root).into_iter().filter(|(k, _)| !k.starts_with("run")).collect() };
    let mut sig = Vec::new();
    let mut rln = Vec::new();
    for c in &f.cfgs {
        ehn_ns(root, ns, &["apply", "-c", c]).expect_code(0);
        sig.push(our_signature(ns));
        rln.push(route_localnet_pair(ns));
    }
    let applies = |n: usize, cfg: &str| -> Vec<Command> {
        (0..n).map(|_| ehn_cmd_root(root, &["--netns", &ns.name, "apply", "-c", cfg])).collect()
    };

    // the lock: while the test holds ROOT/run/ecs-hostnet/lock, no apply gets through
    make_drift(root, ns, true);
    let lock_path = p(root, "run/ecs-hostnet/lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    // SAFETY: flock(2) on the descriptor of `lock`, open while `lock` lives.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
    let handles = start_together(applies(6, &f.cfgs[0]));
    std::thread::sleep(Duration::from_millis(700));
    let finished = handles.iter().filter(|h| h.is_finished()).count();
    let during = our_signature(ns);
    drop(lock);
    let outs: Vec<Out> = handles.into_iter().map(|h| h.join().expect("runner")).collect();
    assert_eq!(finished, 0, "applies finished while the lock was held: {outs:#?}");
    assert_ne!(during, sig[0], "the rule set was repaired while the lock was held");
    for o in &outs {
        assert!(o.code == 0 && clean_run(o), "after the lock was released: {o}");
    }
    ehn_ns(root, ns, &["check", "-c", &f.cfgs[0]]).expect_code(0);

    let mut problems = Vec::new();
    for round in 0..10 {
        let target = round % 2;
        make_drift(root, ns, round % 3 == 0);
        for o in start_together(applies(6, &f.cfgs[target])).into_iter().map(|h| h.join().expect("runner")) {
            if !clean_run(&o) {
                problems.push(format!("round {round}: {o}"));
            }
        }
        let chk = ehn_ns(root, ns, &["check", "-c", &f.cfgs[target]]);
        if chk.code != 0 {
            problems.push(format!("round {round}: not converged: {chk}"));
        }
        if our_signature(ns) != sig[target] {
            problems.push(format!("round {round}: rule set is not that of the configuration:\n{}", ns.ruleset()));
        }
        let now = files_now();
        if now != installed {
            problems.push(format!("round {round}: installed files not repaired:\n{}", node_diff(&installed, &now)));
        }
        if problems.len() > 5 {
            break;
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));

    // applies and removes at once: all succeed, and the end is one of the two clean states
    let (mut ended_applied, mut ended_removed) = (0, 0);
    for round in 0..6 {
        let cfg = &f.cfgs[round % 2];
        let mut cmds = applies(3, cfg);
        cmds.extend((0..3).map(|_| ehn_cmd_root(root, &["--netns", &ns.name, "remove", "-c", cfg])));
        for o in start_together(cmds).into_iter().map(|h| h.join().expect("runner")) {
            if !clean_run(&o) {
                problems.push(format!("apply/remove round {round}: {o}"));
            }
        }
        let now = our_signature(ns);
        let pair = route_localnet_pair(ns);
        if now.is_empty() {
            ended_removed += 1;
            if pair != ("0".to_string(), "0".to_string()) {
                problems.push(format!("apply/remove round {round}: no rules but route_localnet is {pair:?}"));
            }
        } else {
            ended_applied += 1;
            if now != sig[round % 2] || pair != rln[round % 2] {
                problems.push(format!(
                    "apply/remove round {round}: neither applied nor removed: route_localnet {pair:?}\n{}",
                    ns.ruleset()
                ));
            }
        }
        ehn_ns(root, ns, &["apply", "-c", cfg]).expect_code(0);
    }
    eprintln!("apply/remove at once: {ended_applied} rounds ended applied, {ended_removed} removed");
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    ehn_ns(root, ns, &["remove", "-c", &f.cfgs[0]]).expect_code(0);
    assert_eq!(ns.ruleset().trim(), "");
    assert_eq!(route_localnet_pair(ns), ("0".into(), "0".into()));
}

// ---------------------------------------------------------------------------
// 6. a configuration that existed before install
// ---------------------------------------------------------------------------

#[test]
fn uninstall_restores_files_that_existed_before_install() {
    require_root();
    let dir = TempDir::new("preexist");
    let a = dir.write("a.toml", "# A\n[credentials]\nagent_port = 51681\n");
    let b = dir.write("b.toml", "# B\n[credentials]\nagent_port = 51682\n");
    let theirs = b"# hand-written before ecs-hostnet was installed\n[credentials]\nagent_port = 51680\n";
    let setup = |root: &Path| {
        write_mode(&p(root, CONFIG_PATH), theirs, 0o640);
        std::os::unix::fs::chown(p(root, CONFIG_PATH), Some(1234), Some(1234)).unwrap();
        // someone else's drop-in for ecs.service, in the folder install also uses
        write_mode(&p(root, "etc/systemd/system/ecs.service.d/10-site.conf"), b"[Service]\nEnvironment=X=1\n", 0o644);
    };
    // (label, the install commands before uninstall)
    let variants: [(&str, Vec<Vec<&str>>); 3] = [
        ("install -c A", vec![vec!["install", "-c", &a]]),
        ("install (their configuration)", vec![vec!["install"]]),
        ("install -c A, then install -c B", vec![vec!["install", "-c", &a], vec!["install", "-c", &b]]),
    ];
    for (label, installs) in variants {
        let root = TempDir::new("preroot");
        let root = root.path();
        setup(root);
        if installs[0].len() == 1 {
            // Installing the configuration already there, which uid 1234 owns, would
            // install one that boot refuses (StrictModes, issue 12): install refuses it,
            // says why, and changes nothing; made root's, it installs.
            let before = nodes(root);
            let refused = ehn_root(root, &installs[0]);
            refused.expect_code(1);
            assert!(refused.stderr.contains("refused: the file is owned by uid 1234, not root"), "{label}: {refused}");
            assert_nodes_eq(&format!("{label}: refused install"), &before, &nodes(root));
            std::os::unix::fs::chown(p(root, CONFIG_PATH), Some(0), Some(0)).unwrap();
        }
        let original = nodes(root);
        let mut last = None;
        for args in &installs {
            ehn_root(root, args).expect_code(0);
            last = args.get(2).copied();
        }
        let want_cfg = match last {
            Some(path) => read(Path::new(path)),
            None => theirs.to_vec(),
        };
        assert_eq!(show(&read(&p(root, CONFIG_PATH))), show(&want_cfg), "{label}: installed configuration");
        assert_eq!(read(&p(root, DROPIN_PATH)), DROPIN_TEXT.as_bytes(), "{label}");
        let un = ehn_root(root, &["uninstall"]);
        un.expect_code(0);
        assert!(p(root, CONFIG_PATH).exists(), "{label}: uninstall deleted a configuration it did not create: {un}");
        assert_nodes_eq(&format!("{label}: after uninstall"), &original, &nodes(root));
    }
}

// ---------------------------------------------------------------------------
// beside the package (.deb/.rpm): its binary and units, faked by placing files
// ---------------------------------------------------------------------------

const PKG_BIN: &str = "usr/sbin/ecs-hostnet";
const PKG_UNIT: &str = "usr/lib/systemd/system/ecs-hostnet.service";
const PKG_WATCH_UNIT: &str = "usr/lib/systemd/system/ecs-hostnet-watch.service";
const PKG_METRICS_SERVICE: &str = "usr/lib/systemd/system/ecs-hostnet-metrics.service";
const PKG_METRICS_TIMER: &str = "usr/lib/systemd/system/ecs-hostnet-metrics.timer";

/// Lays out what the package installs under `root`: a binary at /usr/sbin (any bytes: the
/// install must not read or replace it), the units the binary generates for the package
/// (`generate-units`), and the default configuration as the conffile.
fn fake_package(root: &Path) {
    write_mode(&p(root, PKG_BIN), b"\x7fELF the package's binary", 0o755);
    let units = p(root, "usr/lib/systemd/system");
    run_cmd(bin(), &["generate-units", s(&units)], Duration::from_secs(10)).expect_code(0);
    write_mode(&p(root, CONFIG_PATH), default_config_text().as_bytes(), 0o644);
}

/// The package's files with their stamps (ino, mtime, ctime: proof they were not rewritten).
fn package_files(root: &Path) -> BTreeMap<String, Stamped> {
    let mut snap = snapshot(root);
    let pkg = [PKG_BIN, PKG_UNIT, PKG_WATCH_UNIT, PKG_METRICS_SERVICE, PKG_METRICS_TIMER, CONFIG_PATH];
    snap.retain(|k, _| pkg.contains(&k.as_str()));
    assert_eq!(snap.len(), pkg.len(), "{:?}", snap.keys());
    snap
}

#[test]
fn beside_the_package_install_copies_nothing_enables_its_units_and_uninstall_leaves_its_files() {
    require_root();
    let root_dir = TempDir::new("pkgroot");
    let root = root_dir.path();
    fake_package(root);
    write_mode(&p(root, ECS_CONFIG), b"ECS_CLUSTER=prod\n", 0o644);
    let before = nodes(root);
    let pkg = package_files(root);
    // The package's units are install's texts, running /usr/sbin/ecs-hostnet.
    let unit = String::from_utf8(read(&p(root, PKG_UNIT))).unwrap();
    let body = |t: &str| t.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&unit), body(&UNIT_TEXT.replace("/usr/local/sbin/", "/usr/sbin/")));

    let out = ehn_root(root, &["install"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("/usr/sbin/ecs-hostnet and the units in /usr/lib/systemd/system are the package's"),
        "{out}"
    );
    for own in [BIN_PATH, UNIT_PATH, WATCH_UNIT_PATH] {
        assert!(std::fs::symlink_metadata(p(root, own)).is_err(), "install beside the package wrote {own}");
    }
    assert_eq!(package_files(root), pkg, "install rewrote a file of the package's");
    let link = |rel| std::fs::read_link(p(root, rel)).ok();
    assert_eq!(link(WANTS_LINK), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet.service")));
    assert_eq!(link(WATCH_LINK), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet-watch.service")));
    let pkg_text = |t: &str| t.replace("/usr/local/sbin/", "/usr/sbin/").into_bytes();
    assert_eq!(show(&read(&p(root, DROPIN_PATH))), show(&pkg_text(DROPIN_TEXT)));
    assert_eq!(show(&read(&p(root, NFT_DROPIN_PATH))), show(&pkg_text(NFT_DROPIN_TEXT)));
    assert_eq!(read(&p(root, ECS_CONFIG)), [&b"ECS_CLUSTER=prod\n"[..], KEYS_DEFAULT.as_bytes()].concat());
    let state = String::from_utf8(read(&p(root, STATE_PATH))).unwrap();
    assert!(state.contains("\"package\": true") && !state.contains(PKG_BIN) && !state.contains(PKG_UNIT), "{state}");
    // A second install changes nothing.
    let again = ehn_root(root, &["install"]);
    again.expect_code(0);
    assert!(changed_lines(&again).iter().all(|l| l.contains("are the package's")), "{again}");

    // Drift of the package layout: a deleted drop-in and a deleted link are found and
    // repaired (the link to the package's unit), then check is clean.
    let ns = Netns::new("pkgdrift");
    ehn_ns(root, &ns, &["apply"]).expect_code(0);
    ehn_ns(root, &ns, &["check"]).expect_code(0);
    std::fs::remove_file(p(root, DROPIN_PATH)).unwrap();
    std::fs::remove_file(p(root, WANTS_LINK)).unwrap();
    let drift = ehn_ns(root, &ns, &["check"]);
    assert_ne!(drift.code, 0, "{drift}");
    for want in ["/etc/systemd/system/ecs.service.d/ecs-hostnet.conf", "/usr/lib/systemd/system/ecs-hostnet.service"] {
        assert!(drift.stdout.contains(want), "{want} not in {drift}");
    }
    ehn_ns(root, &ns, &["apply"]).expect_code(0);
    assert_eq!(link(WANTS_LINK), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet.service")));
    assert_eq!(show(&read(&p(root, DROPIN_PATH))), show(&pkg_text(DROPIN_TEXT)));
    ehn_ns(root, &ns, &["check"]).expect_code(0);

    // Uninstall: what install wrote goes, the package's files stay untouched.
    ehn_ns(root, &ns, &["uninstall"]).expect_code(0);
    assert_eq!(package_files(root), pkg, "uninstall touched a file of the package's");
    let mut after = nodes(root);
    after.retain(|k, _| !k.starts_with("run"));
    assert_nodes_eq("beside the package, after uninstall", &before, &after);
}

#[test]
fn a_tarball_install_moves_to_the_package_units_once_the_package_is_there() {
    require_root();
    let root_dir = TempDir::new("pkgmove");
    let root = root_dir.path();
    ehn_root(root, &["install"]).expect_code(0);
    assert_eq!(read(&p(root, UNIT_PATH)), UNIT_TEXT.as_bytes());
    // The package arrives (its conffile is the configuration install wrote: the default).
    fake_package(root);
    let before_second = package_files(root);
    let out = ehn_root(root, &["install"]);
    out.expect_code(0);
    for own in [BIN_PATH, UNIT_PATH, WATCH_UNIT_PATH] {
        assert!(std::fs::symlink_metadata(p(root, own)).is_err(), "{own} of the tarball install stayed: {out}");
    }
    let link = |rel| std::fs::read_link(p(root, rel)).ok();
    assert_eq!(link(WANTS_LINK), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet.service")), "{out}");
    assert_eq!(link(WATCH_LINK), Some(PathBuf::from("/usr/lib/systemd/system/ecs-hostnet-watch.service")), "{out}");
    assert!(read(&p(root, DROPIN_PATH)).ends_with(b"ExecStartPre=/usr/sbin/ecs-hostnet apply\n"));
    ehn_root(root, &["uninstall"]).expect_code(0);
    assert_eq!(package_files(root).keys().collect::<Vec<_>>(), before_second.keys().collect::<Vec<_>>());
    // Only the package's files are left (and the folders they are in).
    let mut left: Vec<String> = nodes(root)
        .into_iter()
        .filter(|(_, n)| !matches!(n, Node::Dir { .. }))
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("run"))
        .collect();
    left.sort();
    let mut want = vec![PKG_BIN, PKG_UNIT, PKG_WATCH_UNIT, PKG_METRICS_SERVICE, PKG_METRICS_TIMER, CONFIG_PATH];
    want.sort();
    assert_eq!(left, want);
}

/// An edit of the installed configuration made after install is the operator's: uninstall
/// keeps the file as edited and says so (before, it put back the file as it was before
/// install, which for a package's conffile threw the edit away on `dpkg -r`).
#[test]
fn uninstall_keeps_a_configuration_edited_since_install() {
    let dir = TempDir::new("keepcfg");
    let root = dir.path().to_path_buf();
    ehn_root(&root, &["install"]).expect_code(0);
    let cfg = p(&root, "etc/ecs-hostnet/config.toml");
    let edited =
        String::from_utf8(read(&cfg)).unwrap().replace("agent_on_error = \"block\"", "agent_on_error = \"start\"");
    std::fs::write(&cfg, &edited).unwrap();
    let out = ehn_root(&root, &["uninstall"]);
    out.expect_code(0);
    assert!(out.stdout.contains("kept /etc/ecs-hostnet/config.toml: edited since install"), "{out}");
    assert_eq!(String::from_utf8(read(&cfg)).unwrap(), edited, "the edit survives uninstall");
    assert!(!p(&root, "etc/systemd/system/ecs-hostnet.service").exists(), "the rest is removed");
}

// ---------------------------------------------------------------------------
// 6. removal of the package: `uninstall --package-removal` (its prerm and %preun)
// ---------------------------------------------------------------------------

/// `uninstall --package-removal` under `--root` (no kernel is touched).
fn package_removal(root: &Path) -> Out {
    ehn_root(root, &["uninstall", "--package-removal"])
}

/// The package's prerm and %preun ask the binary, whose parser reads install.json: with no
/// state (the package alone) and with a tarball install's state (the package arrived after
/// it, `install` not run again) nothing is changed and exit 0; a state beside the package,
/// even spelled `"package":true` (valid JSON the old `grep '"package": true'` missed), is
/// uninstalled and leaves the package's files; a state it cannot read (truncated, empty,
/// not JSON, an unknown schema) fails with a message naming the file and saying the package
/// is not removed, and changes nothing; once the file is good again the removal uninstalls.
#[test]
fn package_removal_uninstalls_only_an_install_beside_the_package_and_stops_on_a_state_it_cannot_read() {
    require_root();
    // The package alone: nothing installed.
    let alone = TempDir::new("rmalone");
    fake_package(alone.path());
    let before = nodes(alone.path());
    let out = package_removal(alone.path());
    out.expect_code(0);
    assert!(out.stdout.contains("nothing installed"), "{out}");
    assert_nodes_eq("the package alone", &before, &nodes_but_run(alone.path()));

    // A tarball install, then the package: the tarball's binary, units and state stay.
    let tarball = TempDir::new("rmtarball");
    ehn_root(tarball.path(), &["install"]).expect_code(0);
    fake_package(tarball.path());
    let before = nodes_but_run(tarball.path());
    let out = package_removal(tarball.path());
    out.expect_code(0);
    assert!(out.stdout.contains("a tarball install's") && out.stdout.contains("not the package's"), "{out}");
    assert_nodes_eq("a tarball install beside the package", &before, &nodes_but_run(tarball.path()));
    assert!(p(tarball.path(), BIN_PATH).is_file() && p(tarball.path(), STATE_PATH).is_file());

    // Beside the package, the state compact (`"package":true`).
    let dir = TempDir::new("rmpkg");
    let root = dir.path();
    fake_package(root);
    let clean = nodes(root);
    let pkg = package_files(root);
    ehn_root(root, &["install"]).expect_code(0);
    let good = read(&p(root, STATE_PATH));
    let value: serde_json::Value = serde_json::from_slice(&good).unwrap();
    assert_eq!(value["package"], serde_json::Value::Bool(true), "the state beside the package");
    let compact = serde_json::to_vec(&value).unwrap();
    assert!(String::from_utf8_lossy(&compact).contains("\"package\":true"), "no compact \"package\":true");

    // Unreadable states: refused, nothing changed.
    for (what, bad) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not JSON", b"\x00\x01 not json".to_vec()),
        ("an unknown schema", br#"{"schema": "ecs-hostnet.install/v9", "package": true}"#.to_vec()),
    ] {
        write_mode(&p(root, STATE_PATH), &bad, 0o600);
        let installed = nodes_but_run(root);
        let out = package_removal(root);
        assert_eq!(out.code, 1, "{what}: {out}");
        assert!(
            out.stderr.contains("the package is not removed")
                && out.stderr.contains("/var/lib/ecs-hostnet/install.json")
                && out.stderr.contains("remove the package again"),
            "{what}: {out}"
        );
        assert_nodes_eq(&format!("{what} state"), &installed, &nodes_but_run(root));
    }

    write_mode(&p(root, STATE_PATH), &compact, 0o600);
    let out = package_removal(root);
    out.expect_code(0);
    assert!(out.stdout.contains("Uninstalled ecs-hostnet"), "{out}");
    assert_eq!(package_files(root), pkg, "the removal touched a file of the package's");
    assert_nodes_eq("beside the package, after the removal", &clean, &nodes_but_run(root));
}

/// `ARGS` (the binary's) in a mount namespace of its own in which `ro` is a read-only bind
/// mount of itself: the folder is read-only for that run only (also for root with every
/// capability: `EROFS`), and the mount goes with the namespace when the run ends.
fn with_read_only(ro: &Path, run_dir: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
        .args(["sh", s(ro), "unshare", "--net", "--", bin()])
        .args(args)
        .env("ECS_HOSTNET_RUN_DIR", run_dir);
    run_cmd_with(&mut cmd, Duration::from_secs(60))
}

/// Uninstall checks every folder it will write in before it changes anything: with
/// /etc/ecs read-only (a read-only bind mount, the reviewer's case) it fails naming the
/// folder and the cause, and the rule set, route_localnet and every file are as they were
/// (before, it had removed the rule set and put route_localnet back to 0 first, leaving the
/// agent with task roles and no IMDS block). Writable again, uninstall finishes.
#[test]
fn uninstall_with_a_read_only_folder_changes_nothing_not_even_the_rule_set() {
    require_root();
    let dir = TempDir::new("unro");
    let cfg = dir.default_config();
    let ns = Netns::new("unro");
    let root = TempDir::new("unroroot");
    let root = root.path();
    write_mode(&p(root, ECS_CONFIG), b"ECS_CLUSTER=prod\n", 0o644);
    let original = nodes(root);
    ehn_root(root, &["install", "-c", &cfg]).expect_code(0);
    ehn_ns(root, &ns, &["apply"]).expect_code(0);
    let live = ns.ruleset();
    assert!(live.contains("table inet ecs-hostnet") && ns.route_localnet() == "1", "{live}");
    let installed = nodes_but_run(root);

    let args = ["--root", s(root), "--netns", &ns.name, "uninstall"];
    let refused = with_read_only(&p(root, "etc/ecs"), &root.join("run/ecs-hostnet"), &args);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains("/etc/ecs cannot be written (Read-only file system")
            && refused.stderr.contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(ns.ruleset(), live, "an uninstall that could not write /etc/ecs changed the rule set");
    assert_eq!(ns.route_localnet(), "1", "an uninstall that could not write /etc/ecs put route_localnet back");
    assert_nodes_eq("after a refused uninstall", &installed, &nodes_but_run(root));

    ehn_ns(root, &ns, &["uninstall"]).expect_code(0);
    assert!(!ns.ruleset().contains("ecs-hostnet"), "{}", ns.ruleset());
    assert_eq!(ns.route_localnet(), "0");
    assert_nodes_eq("after uninstall", &original, &nodes_but_run(root));
}
