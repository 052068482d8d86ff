//! The boot path is strict and says why: the configuration `apply` reads as root must be
//! changeable by root alone (StrictModes), every precondition is checked before the kernel
//! is touched (a broken configuration or a masked unit leaves the live rule set as it is),
//! stderr lines carry syslog priorities when stderr is the journal, and the agent hook's
//! policy on error (`boot.agent_on_error`) is written into the hook.
//!
//! Safety: every kernel command gets `--netns <a namespace made here>` and runs under
//! `unshare --net`; installs go to temp roots with the run directory inside them.
//! Namespaces and temp dirs are removed in Drop, also when a test fails.

mod support;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const CONFIG_PATH: &str = "etc/ecs-hostnet/config.toml";
const DROPIN_PATH: &str = "etc/systemd/system/ecs.service.d/ecs-hostnet.conf";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// `unshare --net -- BIN --root ROOT --netns NS ARGS...` with the run directory in ROOT.
fn ehn_root_ns(root: &Path, ns: &Netns, args: &[&str]) -> Out {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", bin(), "--root", s(root), "--netns", ns.name.as_str()])
        .args(args)
        .env("ECS_HOSTNET_RUN_DIR", root.join("run/ecs-hostnet"));
    let mut out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    out.cmdline = format!("{} --root {} --netns {} {}", bin(), root.display(), ns.name, args.join(" "));
    out
}

/// `BIN --root ROOT ARGS...` (install and uninstall: files only, no kernel).
fn ehn_root(root: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(bin());
    cmd.args(["--root", s(root)]).args(args).env("ECS_HOSTNET_RUN_DIR", root.join("run/ecs-hostnet"));
    run_cmd_with(&mut cmd, Duration::from_secs(60))
}

/// Everything of the namespace a run could change: our tables with handles (a rule
/// deleted and added again gets a new handle), every route_localnet value, every route.
fn kernel_state(ns: &Netns) -> String {
    format!("{}\n{:?}\n{}", ns.ruleset_handles(), route_localnet_values(ns), ns.ip(&["route", "show", "table", "all"]))
}

/// A configuration that differs from the default in a rule (so applying it would change
/// a host converged to the default).
fn other_config_text() -> String {
    default_config_text().replace("agent_port = 51679", "agent_port = 51700")
}

/// The refusal of `file`: one line, exit 1, nothing on stdout, naming what is wrong and
/// the fix.
#[track_caller]
fn assert_refused(out: &Out, file: &str, what: &str, fix_target: &str) {
    out.expect_code(1);
    assert!(out.stdout.is_empty(), "a refused run prints no result: {out}");
    let want_start = format!("{file}: refused: ");
    let fix = format!("fix: chown root:root {fix_target} && chmod go-w {fix_target}");
    assert!(out.stderr.starts_with(&want_start), "stderr must start with {want_start:?}: {out}");
    assert!(out.stderr.contains(what), "stderr must say {what:?}: {out}");
    assert!(out.stderr.contains(&fix), "stderr must give the fix {fix:?}: {out}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
}

/// Issue test: a world-writable or foreign-owned configuration (and one in a folder others
/// can write to without the sticky bit, or behind a symlink another user owns in /tmp):
/// `apply` exits 1 naming the reason and the fix, and the kernel is unchanged: our rules,
/// route_localnet and routes read the same before and after. Each file would change the
/// live rule set if accepted, which the control at the end shows.
#[test]
fn a_configuration_others_could_change_is_refused_and_nothing_is_applied() {
    let ns = Netns::new("strict");
    let dir = TempDir::new("strict");
    let good = dir.default_config();
    ns.ehn(&["apply", "-c", &good]).expect_code(0);
    let before = kernel_state(&ns);
    let text = other_config_text();

    // 0666, root's
    let open = dir.write("open.toml", &text);
    chmod(Path::new(&open), 0o666);
    for cmd in ["apply", "plan", "check"] {
        let out = ns.ehn(&[cmd, "-c", &open]);
        assert_refused(&out, &open, "the file is writable by group or others (mode 0666)", &open);
    }
    assert_eq!(kernel_state(&ns), before, "a refused world-writable configuration changed the kernel");
    // Commands that apply nothing read it (as root too): nothing to protect there.
    ehn(&["validate", &open]).expect_code(0);
    ehn(&["render", "-c", &open]).expect_code(0);

    // 0644, owned by nobody
    let foreign = dir.write("foreign.toml", &text);
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let out = ns.ehn(&["apply", "-c", &foreign]);
    assert_refused(&out, &foreign, "the file is owned by uid 65534, not root", &foreign);
    assert_eq!(kernel_state(&ns), before, "a refused foreign-owned configuration changed the kernel");

    // a root-owned 0644 file in a folder anyone can write to (no sticky bit): replaceable
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    chmod(&loose, 0o777);
    let in_loose = loose.join("c.toml");
    write_readable(&in_loose, text.as_bytes());
    let out = ns.ehn(&["apply", "-c", s(&in_loose)]);
    assert_refused(&out, s(&in_loose), "writable by group or others without the sticky bit (mode 0777)", s(&loose));
    assert!(out.stderr.contains("another user could replace the configuration"), "{out}");
    assert_eq!(kernel_state(&ns), before, "a configuration in a world-writable folder changed the kernel");

    // the same folder with the sticky bit (like /tmp): others cannot replace root's file
    chmod(&loose, 0o1777);
    let sticky_ok = ns.ehn(&["plan", "-c", s(&in_loose)]);
    sticky_ok.expect_code(2);

    // a symlink owned by nobody in that sticky folder, to a good file: its owner could
    // point it elsewhere
    let link = loose.join("link.toml");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let out = ns.ehn(&["apply", "-c", s(&link)]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!("refused: the symlink {} on the way is owned by uid 65534", link.display())),
        "{out}"
    );
    assert_eq!(kernel_state(&ns), before, "a configuration behind a foreign symlink changed the kernel");

    // Control: the same content, made root's and 0644, is applied and changes the kernel
    // (so the comparisons above could see a change).
    chmod(Path::new(&open), 0o644);
    ns.ehn(&["apply", "-c", &open]).expect_code(0);
    assert_ne!(kernel_state(&ns), before, "the control apply changed nothing: the test could not see a change");
}

/// The boot path: the boot unit and the agent hook run `apply` with no `-c`, reading
/// /etc/ecs-hostnet/config.toml (here under `--root`). A broken one (invalid TOML, a
/// dangling symlink, world-writable, foreign-owned) never removes or changes the live rule
/// set, and each says why.
#[test]
fn a_broken_configuration_at_boot_leaves_the_live_rule_set() {
    let ns = Netns::new("bootbroken");
    let root = TempDir::new("bootbroken");
    let root = root.path();
    let src = TempDir::new("bootbroken-src");
    let live_cfg = src.write("live.toml", &other_config_text());
    ehn_root(root, &["install", "-c", &live_cfg]).expect_code(0);
    ehn_root_ns(root, &ns, &["apply"]).expect_code(0);
    let before = kernel_state(&ns);
    assert!(before.contains("redirect to :51700"), "the installed configuration is live:\n{before}");
    let cfg = root.join(CONFIG_PATH);
    let shown = s(&cfg).to_string();
    let installed = std::fs::read(&cfg).unwrap();

    let mut problems = Vec::new();
    let attempt = |label: &str, want: &str, problems: &mut Vec<String>| {
        let out = ehn_root_ns(root, &ns, &["apply"]);
        if out.code != 1 || !out.stdout.is_empty() || !out.stderr.contains(want) {
            problems.push(format!("{label}: want exit 1, no stdout and {want:?} on stderr:\n{out}"));
        }
        if kernel_state(&ns) != before {
            problems.push(format!("{label}: the live rule set changed:\n{}", kernel_state(&ns)));
        }
    };

    std::fs::write(&cfg, "[credentials\nagent_port = 1\n").unwrap();
    attempt("invalid TOML", &format!("{shown}:1:13: "), &mut problems);

    std::fs::remove_file(&cfg).unwrap();
    std::os::unix::fs::symlink("/nonexistent/ecs-hostnet.toml", &cfg).unwrap();
    attempt("dangling symlink", "a symlink to /nonexistent/ecs-hostnet.toml, which does not exist", &mut problems);

    std::fs::remove_file(&cfg).unwrap();
    write_readable(&cfg, &installed);
    chmod(&cfg, 0o666);
    attempt("world-writable", "refused: the file is writable by group or others (mode 0666)", &mut problems);

    chmod(&cfg, 0o644);
    std::os::unix::fs::chown(&cfg, Some(65534), None).unwrap();
    attempt("foreign-owned", "refused: the file is owned by uid 65534, not root", &mut problems);

    chmod(cfg.parent().unwrap(), 0o777);
    std::os::unix::fs::chown(&cfg, Some(0), None).unwrap();
    attempt("world-writable folder", "its folder", &mut problems);
    chmod(cfg.parent().unwrap(), 0o755);

    // Repaired, it applies again and the host stays converged.
    ehn_root_ns(root, &ns, &["apply"]).expect_code(0);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert_eq!(kernel_state(&ns), before, "the repaired configuration is the one that was live");
}

/// Issue test: with units masked, `apply` either converges or changes nothing and says why.
/// `ecs.service` masked (a symlink to /dev/null; ecs-hostnet does not manage that file):
/// it converges. The hook, the boot unit or the hook's folder masked (files apply would
/// have to repair): exit 1 before the kernel is touched, naming the path and the fix.
#[test]
fn masked_units_apply_converges_or_changes_nothing_and_says_why() {
    let mut problems = Vec::new();
    let cases: [(&str, &str, bool); 4] = [
        ("ecs.service", "etc/systemd/system/ecs.service", true),
        ("the hook", DROPIN_PATH, false),
        ("the boot unit", "etc/systemd/system/ecs-hostnet.service", false),
        ("the hook's folder", "etc/systemd/system/ecs.service.d", false),
    ];
    for (label, rel, converges) in cases {
        let ns = Netns::new("masked");
        let root = TempDir::new("masked");
        let root = root.path();
        ehn_root(root, &["install"]).expect_code(0);
        let masked = root.join(rel);
        if masked.is_dir() {
            std::fs::remove_dir_all(&masked).unwrap();
        } else if masked.exists() {
            std::fs::remove_file(&masked).unwrap();
        }
        std::os::unix::fs::symlink("/dev/null", &masked).unwrap();
        let before = kernel_state(&ns);
        let out = ehn_root_ns(root, &ns, &["apply"]);
        if converges {
            if out.code != 0 {
                problems.push(format!("{label} masked: apply must converge:\n{out}"));
            }
            let check = ehn_root_ns(root, &ns, &["check"]);
            if check.code != 0 {
                problems.push(format!("{label} masked: check after apply must be 0:\n{check}"));
            }
        } else {
            let said = out.stderr.contains("nothing was applied")
                && out.stderr.contains(s(&masked))
                && out.stderr.contains("/dev/null")
                && out.stderr.contains("unmask or remove it");
            if out.code != 1 || !out.stdout.is_empty() || !said {
                problems.push(format!(
                    "{label} masked: want exit 1, no stdout, and a message naming {} and /dev/null:\n{out}",
                    masked.display()
                ));
            }
            if kernel_state(&ns) != before {
                problems.push(format!("{label} masked: the kernel changed:\n{}", kernel_state(&ns)));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Under `--root`, an installed file replaced with an absolute symlink whose target is
/// the build host's file (missing inside the root) is refused before the kernel is
/// touched: the write resolves inside the root and would fail after the batch committed.
#[test]
fn a_file_linked_to_a_target_missing_inside_the_root_is_refused_before_the_kernel() {
    let ns = Netns::new("rootlink");
    let root = TempDir::new("rootlink");
    let root = root.path();
    ehn_root(root, &["install"]).expect_code(0);
    let unit = root.join("etc/systemd/system/ecs-hostnet.service");
    std::fs::remove_file(&unit).unwrap();
    assert!(Path::new("/etc/hostname").is_file() && !root.join("etc/hostname").exists());
    std::os::unix::fs::symlink("/etc/hostname", &unit).unwrap();
    let before = kernel_state(&ns);
    let out = ehn_root_ns(root, &ns, &["apply"]);
    assert_eq!(out.code, 1, "apply must refuse: {out}");
    assert!(
        out.stderr.contains("nothing was applied")
            && out.stderr.contains(s(&unit))
            && out.stderr.contains("/etc/hostname"),
        "the message must name the path and its target: {out}"
    );
    assert_eq!(kernel_state(&ns), before, "the kernel must not change: {out}");
}

/// Runs `args` (under `unshare --net`) with stderr on a pipe this test reads and
/// `JOURNAL_STREAM` set to `journal`: `Some(None)` for the pipe's own `DEV:INO`,
/// `Some(Some(text))` for that text, `None` to leave it unset. Returns exit code and stderr.
fn run_with_stderr_pipe(args: &[&str], run_dir: &Path, journal: Option<Option<&str>>) -> (i32, String) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let st = nix::sys::stat::fstat(&writer).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", bin()])
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env("ECS_HOSTNET_RUN_DIR", run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer));
    match journal {
        Some(None) => {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino));
        }
        Some(Some(text)) => {
            cmd.env("JOURNAL_STREAM", text);
        }
        None => {}
    }
    let mut child = cmd.spawn().unwrap();
    // Our copy of the write end goes with `cmd`, so the read ends when the child exits.
    drop(cmd);
    let t = std::thread::spawn(move || {
        let mut v = String::new();
        reader.read_to_string(&mut v).unwrap();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`{}` hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code().unwrap_or(-1), t.join().unwrap())
}

/// Messages carry syslog priorities when stderr is the journal: with `JOURNAL_STREAM`
/// naming the pipe stderr is (as systemd sets it for a unit), every stderr line starts with
/// `<3>` (errors), `<5>` (notes) or `<6>` (information). With a wrong value or none,
/// stderr is byte for byte the same without them.
#[test]
fn stderr_lines_carry_priorities_only_when_stderr_is_the_journal() {
    let ns = Netns::new("journal");
    let dir = TempDir::new("journal");
    let good = dir.default_config();
    let bad = dir.write("bad.toml", "[credentials]\nagent_port = 0\nenabled = \"yes\"\n");
    let open = dir.write("open.toml", &default_config_text());
    chmod(Path::new(&open), 0o666);
    let runs: Vec<(&str, Vec<&str>, i32, Vec<&str>)> = vec![
        (
            "validate: two errors, then a count",
            vec!["validate", &bad, &good],
            1,
            vec![
                "<3>{bad}:2:14: ",
                "<3>{bad}:3:11: ",
                "<5>ecs-hostnet: note: {good}: containers.interfaces has prefix patterns",
                "<6>2 file(s): 1 valid, 1 invalid.",
            ],
        ),
        ("a note", vec!["--netns", "x", "render", "-c", &good], 0, vec!["<5>ecs-hostnet: note: --netns is ignored"]),
        ("apply refused at boot", vec!["--netns", &ns.name, "apply", "-c", &open], 1, vec!["<3>{open}: refused: "]),
        ("apply", vec!["--netns", &ns.name, "apply", "-c", &good], 0, vec!["<6>configuration: {good}; network"]),
        ("a usage error", vec!["--no-such-flag"], 1, vec!["<3>error: unexpected argument '--no-such-flag'"]),
    ];
    let mut problems = Vec::new();
    for (label, args, code, want) in &runs {
        let (c, journal) = run_with_stderr_pipe(args, ns.run_dir(), Some(None));
        let want: Vec<String> =
            want.iter().map(|w| w.replace("{bad}", &bad).replace("{open}", &open).replace("{good}", &good)).collect();
        if c != *code {
            problems.push(format!("{label}: exit {c}, want {code}:\n{journal}"));
        }
        if journal.is_empty() || !journal.lines().all(|l| ["<3>", "<5>", "<6>"].iter().any(|p| l.starts_with(p))) {
            problems.push(format!("{label}: a stderr line without a priority in the journal:\n{journal}"));
        }
        for (i, w) in want.iter().enumerate() {
            let found = journal.lines().position(|l| l.starts_with(w.as_str()));
            if found.is_none() || (want.len() > 1 && found != Some(i)) {
                problems.push(format!("{label}: line {i} must start with {w:?}:\n{journal}"));
            }
        }
        let (_, plain) = run_with_stderr_pipe(args, ns.run_dir(), None);
        let (_, wrong) = run_with_stderr_pipe(args, ns.run_dir(), Some(Some("1:2")));
        let (_, garbage) = run_with_stderr_pipe(args, ns.run_dir(), Some(Some("journal")));
        let unprefixed =
            |l: &str| ["<3>", "<5>", "<6>"].iter().find_map(|p| l.strip_prefix(p)).unwrap_or(l).to_string();
        let stripped: String = journal.lines().map(|l| format!("{}\n", unprefixed(l))).collect();
        if plain != stripped {
            problems.push(format!(
                "{label}: without JOURNAL_STREAM stderr must be the journal text without the prefixes:\n{}",
                unified_diff("want", &stripped, "got", &plain)
            ));
        }
        if wrong != plain || garbage != plain {
            problems.push(format!(
                "{label}: a JOURNAL_STREAM naming another stream must change nothing:\n{wrong}\n{garbage}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The hook's first command, as systemd reads `ExecStartPre=` (a leading `-` means a
/// failure is ignored).
fn hook_command(root: &Path) -> (bool, Vec<String>) {
    let text = std::fs::read_to_string(root.join(DROPIN_PATH)).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("ExecStartPre=")).expect("an ExecStartPre= line");
    let (ignore, cmd) = match line.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    (ignore, cmd.split_whitespace().map(str::to_string).collect())
}

/// `boot.agent_on_error`: "block" (the default) writes `ExecStartPre=BIN apply` (a failed
/// apply fails the agent's start), "start" writes `ExecStartPre=-BIN apply` (systemd
/// ignores the failure; the error still reaches stderr and the rule set is untouched).
/// A configuration whose choice differs from the installed hook is drift that apply
/// repairs; `diff` shows it.
#[test]
fn the_agent_hook_follows_agent_on_error() {
    let ns = Netns::new("hook");
    let root_dir = TempDir::new("hook");
    let root = root_dir.path();
    let src = TempDir::new("hook-src");
    let block = src.default_config();
    let start = src.write(
        "start.toml",
        &format!("{}\n", default_config_text().replace("agent_on_error = \"block\"", "agent_on_error = \"start\"")),
    );
    assert!(std::fs::read_to_string(&start).unwrap().contains("agent_on_error = \"start\""));

    ehn_root(root, &["install", "-c", &block]).expect_code(0);
    let (ignore, argv) = hook_command(root);
    assert!(!ignore, "\"block\": a failed apply must fail the agent's start");
    assert_eq!(argv, ["/usr/local/sbin/ecs-hostnet", "apply"]);

    ehn_root(root, &["install", "-c", &start]).expect_code(0);
    let (ignore, argv) = hook_command(root);
    assert!(ignore, "\"start\": systemd must ignore a failed apply (ExecStartPre=-...)");
    assert_eq!(argv, ["/usr/local/sbin/ecs-hostnet", "apply"]);
    let text = std::fs::read_to_string(root.join(DROPIN_PATH)).unwrap();
    assert!(text.contains("agent_on_error = \"start\""), "the hook says why it ignores failures:\n{text}");
    // The hook's apply on a host where it fails: exit 1 with the reason (systemd starts
    // the agent anyway), and the live rule set is untouched.
    ehn_root_ns(root, &ns, &["apply"]).expect_code(0);
    let before = kernel_state(&ns);
    std::fs::write(root.join(CONFIG_PATH), "[boot]\nagent_on_error = \"start\"\n[credentials]\nagent_port = 0\n")
        .unwrap();
    let out = ehn_root_ns(root, &ns, &["apply"]);
    out.expect_code(1);
    assert!(out.stderr.contains("port 0 is out of range"), "{out}");
    assert_eq!(kernel_state(&ns), before);

    // The installed configuration edited back to "block": the hook differs from it.
    std::fs::write(root.join(CONFIG_PATH), default_config_text()).unwrap();
    let check = ehn_root_ns(root, &ns, &["check"]);
    check.expect_code(2);
    assert!(check.stdout.contains("ecs.service.d/ecs-hostnet.conf  # differs from the configuration"), "{check}");
    assert!(check.stdout.contains("-ExecStartPre=-/usr/local/sbin/ecs-hostnet apply"), "{check}");
    assert!(check.stdout.contains("+ExecStartPre=/usr/local/sbin/ecs-hostnet apply"), "{check}");
    ehn_root_ns(root, &ns, &["apply"]).expect_code(0);
    assert_eq!(hook_command(root), (false, vec!["/usr/local/sbin/ecs-hostnet".to_string(), "apply".to_string()]));
    ehn_root_ns(root, &ns, &["check"]).expect_code(0);

    let diff = ehn(&["diff", &block, &start]);
    diff.expect_code(2);
    assert!(diff.stdout.contains("+ExecStartPre=-/usr/local/sbin/ecs-hostnet apply"), "{diff}");
}

/// A precondition of the kernel part: route_localnet must be writable before the batch
/// is sent (else the rules would go live and route_localnet stay off). With `/proc/sys`
/// read-only (a bind mount in a private mount namespace of the command alone), apply
/// exits 1 saying so, and the namespace has no rule, route or sysctl of ours; the control
/// without the read-only mount converges.
#[test]
fn a_read_only_proc_sys_stops_apply_before_the_kernel_is_touched() {
    let ns = Netns::new("rosys");
    let before = kernel_state(&ns);
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!("mount --bind -o ro /proc/sys /proc/sys && exec {} --netns {} apply", bin(), ns.name))
        .env("ECS_HOSTNET_RUN_DIR", ns.run_dir());
    let out = run_cmd_with(&mut cmd, Duration::from_secs(60));
    out.expect_code(1);
    assert!(
        out.stderr.contains("nothing was applied: route_localnet cannot be set here: cannot write 1 to /proc/sys/net/ipv4/conf/all/route_localnet: Read-only file system"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(kernel_state(&ns), before, "apply changed the namespace although it could not set route_localnet");
    ns.ehn(&["apply"]).expect_code(0);
    assert_ne!(kernel_state(&ns), before, "the control apply changed nothing: the test could not see a change");
}
