//! Bad input: malformed configurations (issue test 6) and unknown namespaces
//! (issue test 7). A refused command changes nothing in the namespace.

mod support;

use support::*;

struct Bad {
    name: &'static str,
    text: std::borrow::Cow<'static, str>,
    /// Line the `FILE:LINE:COL:` prefix must point at; None for errors that
    /// involve several keys (only exit 1 and one line are required).
    line: Option<usize>,
}

/// `Bad` from a static text.
const fn b(name: &'static str, text: &'static str, line: Option<usize>) -> Bad {
    Bad { name, text: std::borrow::Cow::Borrowed(text), line }
}

/// Every refused configuration: the fixed table plus generated ones.
fn bad_cases() -> Vec<Bad> {
    let mut v: Vec<Bad> = BAD.iter().map(|c| b(c.0, c.1, c.2)).collect();
    // 1025 container patterns (at most 1024 are allowed), all on line 2
    let pats: Vec<String> = (0..1025).map(|i| format!("\"c{i}x+\"")).collect();
    v.push(Bad {
        name: "container-patterns-1025",
        text: format!("[containers]\ninterfaces = [{}]\n", pats.join(", ")).into(),
        line: Some(2),
    });
    // 1025 patterns, one per line: the error may point at the key or the
    // 1025th element, never past the array
    let pats: Vec<String> = (0..1025).map(|i| format!("  \"c{i}x+\",")).collect();
    v.push(Bad {
        name: "container-patterns-1025-multiline",
        text: format!("[containers]\ninterfaces = [\n{}\n]\n", pats.join("\n")).into(),
        line: None,
    });
    v
}

type BadRow = (&'static str, &'static str, Option<usize>);

const BAD: &[BadRow] = &[
    // new refusals
    ("prefix-15-bytes", "[containers]\ninterfaces = [\"abcdefghijklmno+\"]\n", Some(2)),
    (
        "prefix-15-bytes-allowed",
        "[introspection_guard]\nallowed_interfaces = [\"lo\", \"abcdefghijklmno+\"]\n",
        Some(2),
    ),
    ("agent-unspecified", "[credentials]\nagent_address = \"0.0.0.0\"\n", Some(2)),
    ("agent-multicast", "[credentials]\n\nagent_address = \"224.0.0.1\"\n", Some(3)),
    ("agent-multicast-high", "[credentials]\nagent_address = \"239.255.255.250\"\n", Some(2)),
    ("overlap-prefix-exact", "[containers]\ninterfaces = [\"docker+\", \"docker0\"]\n", Some(2)),
    ("overlap-exact-prefix", "[containers]\ninterfaces = [\"docker0\", \"docker+\"]\n", Some(2)),
    ("overlap-prefix-prefix", "[containers]\ninterfaces = [\"br-+\", \"br-abc+\"]\n", Some(2)),
    ("overlap-multiline", "[containers]\ninterfaces = [\n  \"docker+\",\n  \"br-+\",\n  \"docker0\",\n]\n", Some(5)),
    ("bad-element-line-4", "[containers]\ninterfaces = [\n  \"docker+\",\n  \"dock/er\",\n  \"br-+\",\n]\n", Some(4)),
    (
        "bad-element-line-4-allowed",
        "[introspection_guard]\nallowed_interfaces = [\n  \"lo\",\n  \"a b\",\n  \"docker0\",\n]\n",
        Some(4),
    ),
    (
        "bad-element-line-4-route-localnet",
        "[route_localnet]\nenable = [\n  \"docker0\",\n  \"docker+\",\n  \"eth0\",\n]\n",
        Some(4),
    ),
    ("bad-element-line-4-type", "[containers]\ninterfaces = [\n  \"docker+\",\n  42,\n  \"br-+\",\n]\n", Some(4)),
    // earlier refusals
    ("unknown-key", "[credentials]\nenabled = true\nendpoint_prot = 80\n", Some(3)),
    ("unknown-section", "# comment\n[credential]\nenabled = true\n", Some(2)),
    ("unknown-top-level-key", "verbose = true\n", Some(1)),
    ("wrong-type-bool", "[credentials]\nenabled = \"yes\"\n", Some(2)),
    ("wrong-type-list", "[containers]\ninterfaces = \"docker+\"\n", Some(2)),
    ("wrong-type-port", "[credentials]\nagent_port = \"51679\"\n", Some(2)),
    ("bad-ipv4-octet", "[credentials]\nendpoint_address = \"169.254.170.256\"\n", Some(2)),
    ("bad-ipv4-short", "[credentials]\n\nagent_address = \"127.1\"\n", Some(3)),
    ("bad-ipv4-word", "[imds_block]\nipv4_address = \"imds\"\n", Some(2)),
    ("ipv6-in-ipv4-field", "[imds_block]\nipv4_address = \"fd00:ec2::254\"\n", Some(2)),
    ("ipv6-in-endpoint", "[credentials]\nendpoint_address = \"fd00:ec2::23\"\n", Some(2)),
    ("ipv4-in-ipv6-field", "[imds_block]\nipv6_address = \"169.254.169.254\"\n", Some(2)),
    ("port-0", "[credentials]\nendpoint_port = 0\n", Some(2)),
    ("port-70000", "[credentials]\nagent_port = 70000\n", Some(2)),
    ("port-negative", "[introspection_guard]\nport = -1\n", Some(2)),
    ("port-0-introspection", "[introspection_guard]\nport = 0\n", Some(2)),
    ("ifname-16-bytes", "[containers]\ninterfaces = [\"docker+\", \"abcdefghijklmnop\"]\n", Some(2)),
    (
        "ifname-16-bytes-allowed",
        "[introspection_guard]\nallowed_interfaces = [\"lo\", \"abcdefghijklmnop\"]\n",
        Some(2),
    ),
    ("ifname-slash", "[containers]\ninterfaces = [\"dock/er0\"]\n", Some(2)),
    ("ifname-space", "[containers]\ninterfaces = [\"dock er0\"]\n", Some(2)),
    ("ifname-empty", "[containers]\ninterfaces = [\"\"]\n", Some(2)),
    ("ifname-star", "[containers]\ninterfaces = [\"docker*\"]\n", Some(2)),
    ("ifname-quote", "[containers]\ninterfaces = [\"dock\\\"er\"]\n", Some(2)),
    ("ifname-route-localnet", "[route_localnet]\nenable = [\"docker0\", \"a/b\"]\n", Some(2)),
    ("route-localnet-word", "[route_localnet]\nenable = \"sometimes\"\n", Some(2)),
    ("guard-off-without-opt-out", "[localhost_guard]\nenabled = false\n", None),
    ("empty-container-interfaces", "[containers]\ninterfaces = []\n", None),
    ("toml-unclosed-table", "[credentials\nenabled = true\n", Some(1)),
    ("toml-missing-value", "[credentials]\nenabled = true\nagent_port =\n", Some(3)),
    ("toml-duplicate-key", "[credentials]\nenabled = true\nenabled = false\n", Some(3)),
    ("toml-unterminated-string", "[credentials]\nagent_address = \"127.0.0.1\n", Some(2)),
];

/// Check one refused command's output.
fn check_refusal(case: &Bad, path: &str, out: &Out, errors: &mut Vec<String>) {
    if out.code != 1 {
        errors.push(format!("{}: want exit 1: {out}", case.name));
        return;
    }
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        errors.push(format!("{}: want one line on stderr: {out}", case.name));
    }
    if let Some(want) = case.line {
        match file_line_col(&out.stderr, path) {
            Some((line, col)) if line == want && col >= 1 => {}
            Some((line, col)) => {
                errors.push(format!("{}: want {path}:{want}:COL:, got line {line} col {col}: {out}", case.name))
            }
            None => errors.push(format!("{}: stderr must have `{path}:{want}:COL: `: {out}", case.name)),
        }
    }
}

/// Issue test 6, part 1: on a fresh namespace, a bad configuration is refused
/// (exit 1, one line, FILE:LINE:COL) and nothing changes.
#[test]
fn bad_configs_are_refused_and_change_nothing() {
    let dir = TempDir::new("bad");
    let ns = Netns::new("bad");
    let mut errors = Vec::new();
    for case in &bad_cases() {
        let path = dir.write(&format!("{}.toml", case.name), &case.text);
        // --netns after the subcommand this time
        let out = ns.ehn_raw(&["apply", "--netns", &ns.name, "-c", &path]);
        check_refusal(case, &path, &out, &mut errors);
        let rs = ns.ruleset();
        if !rs.trim().is_empty() {
            errors.push(format!("{}: apply of a bad config left rules:\n{rs}", case.name));
            let _ = ns.exec("nft", &["flush", "ruleset"]);
        }
        let rl = ns.route_localnet();
        if rl != "0" {
            errors.push(format!("{}: apply of a bad config changed route_localnet to {rl}", case.name));
            ns.set_sysctl("net.ipv4.conf.all.route_localnet", "0");
        }
        for sub in ["plan", "check"] {
            let out = ns.ehn(&[sub, "-c", &path]);
            if out.code != 1 {
                errors.push(format!("{}: `{sub}` of a bad config: want exit 1: {out}", case.name));
            }
        }
        let out = ehn(&["render", "-c", &path]);
        if out.code != 1 {
            errors.push(format!("{}: `render` of a bad config: want exit 1: {out}", case.name));
        }
    }
    assert_eq!(ns.ruleset().trim(), "");
    assert!(errors.is_empty(), "{} problem(s):\n{}", errors.len(), errors.join("\n\n"));
}

/// Issue test 6, part 2: a bad configuration on a host that already has our
/// rules must not touch them.
#[test]
fn bad_configs_leave_applied_rules_alone() {
    let dir = TempDir::new("bad2");
    let ns = Netns::new("bad2");
    let good = dir.default_config();
    ns.ehn(&["apply", "-c", &good]).expect_code(0);
    let mut before = ns.ruleset_handles();
    let mut errors = Vec::new();
    for case in &bad_cases() {
        let path = dir.write(&format!("{}.toml", case.name), &case.text);
        let out = ns.ehn(&["apply", "-c", &path]);
        check_refusal(case, &path, &out, &mut errors);
        if ns.ruleset_handles() != before {
            errors.push(format!("{}: apply of a bad config changed the rules", case.name));
            ns.ehn(&["apply", "-c", &good]).expect_code(0);
            before = ns.ruleset_handles();
        }
        if ns.route_localnet() != "1" {
            errors.push(format!("{}: apply of a bad config changed route_localnet", case.name));
            ns.ehn(&["apply", "-c", &good]).expect_code(0);
        }
    }
    ns.ehn(&["check", "-c", &good]).expect_code(0);
    assert!(errors.is_empty(), "{} problem(s):\n{}", errors.len(), errors.join("\n\n"));
}

/// Issue test 6, part 3: `validate` needs no root and no kernel: run it as
/// an unprivileged user (nobody).
#[test]
fn validate_without_root() {
    let dir = TempDir::new("validate");
    let good = dir.default_config();
    let out = as_nobody(&["validate", "-c", &good]);
    out.expect_code(0);
    // also as root, and the other good configuration forms
    ehn(&["validate", "-c", &good]).expect_code(0);
    let empty = dir.write("empty.toml", "");
    as_nobody(&["validate", "-c", &empty]).expect_code(0);
    let opt_out = dir.write(
        "optout.toml",
        "[localhost_guard]\nenabled = false\ni_accept_that_route_localnet_exposes_localhost_services = true\n",
    );
    as_nobody(&["validate", "-c", &opt_out]).expect_code(0);
    let no_dnat = dir.write(
        "nodnat.toml",
        "[containers]\ninterfaces = []\n[credentials]\nenabled = false\n[imds_block]\nenabled = false\n\
         [route_localnet]\nenable = \"off\"\n[agent]\nenable_task_iam_role = false\nenable_task_iam_role_network_host = false\n",
    );
    as_nobody(&["validate", "-c", &no_dnat]).expect_code(0);

    let mut errors = Vec::new();
    for case in &bad_cases() {
        let path = dir.write(&format!("{}.toml", case.name), &case.text);
        let out = as_nobody(&["validate", "-c", &path]);
        check_refusal(case, &path, &out, &mut errors);
    }
    assert!(errors.is_empty(), "{} problem(s):\n{}", errors.len(), errors.join("\n\n"));
}

/// Values and file names under review cannot put terminal escape sequences or forged
/// lines into a CI log: control characters are escaped in every message.
#[test]
fn control_characters_in_configurations_are_escaped() {
    let dir = TempDir::new("escape");
    let cases = [
        ("enum", "[route_localnet]\nenable = \"a\\u001b[2Jb\"\n"),
        ("key", "[\"\\u001b[2J\"]\nx = 1\n"),
        ("address", "[credentials]\nagent_address = \"1.2.3.4\\u001b]0;t\\u0007\"\n"),
        ("forged-line", "[imds_block]\nipv6_address = \"::1\\nfake.toml:1:1: all good\"\n"),
    ];
    for (name, text) in cases {
        let path = dir.write(&format!("{name}.toml"), text);
        let good = dir.default_config();
        for out in [as_nobody(&["validate", &path]), as_nobody(&["diff", &good, &path])] {
            out.expect_code(1);
            assert!(
                !out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'),
                "{name}: raw control characters: {out}"
            );
            assert!(!out.stderr.lines().any(|l| l.starts_with("fake.toml")), "{name}: a forged line: {out}");
            assert!(out.stderr.lines().all(|l| l.starts_with(&path) || l.starts_with("ecs-hostnet:")), "{name}: {out}");
        }
    }
    // A file name with an escape sequence is shown escaped too.
    let odd = dir.write("x\u{1b}[31my.toml", "");
    let out = as_nobody(&["diff", &odd, &odd]);
    out.expect_code(0);
    assert!(!out.stdout.contains('\u{1b}') && !out.stderr.contains('\u{1b}'), "{out}");
}

fn as_nobody(args: &[&str]) -> Out {
    let mut v = vec!["--reuid=65534", "--regid=65534", "--clear-groups", bin()];
    v.extend_from_slice(args);
    run_cmd("setpriv", &v, std::time::Duration::from_secs(30))
}

/// A missing -c file is an error naming the file, for every subcommand.
#[test]
fn missing_config_file() {
    let dir = TempDir::new("nofile");
    let ns = Netns::new("nofile");
    let path = dir.path().join("does-not-exist.toml").to_string_lossy().into_owned();
    for sub in ["apply", "plan", "check", "remove"] {
        let out = ns.ehn(&[sub, "-c", &path]);
        out.expect_code(1);
        assert_one_line_error(&out);
        assert!(out.stderr.contains(&path), "error must name the file: {out}");
    }
    // render touches no namespace (with --netns it adds a note that it is ignored)
    let out = ehn(&["render", "-c", &path]);
    out.expect_code(1);
    assert_one_line_error(&out);
    assert!(out.stderr.contains(&path), "error must name the file: {out}");
    let out = ns.ehn(&["render", "-c", &path]);
    out.expect_code(1);
    assert!(out.stderr.contains(&path), "error must name the file: {out}");
    let out = ehn(&["validate", "-c", &path]);
    out.expect_code(1);
    assert!(out.stderr.contains(&path), "error must name the file: {out}");
    assert_eq!(ns.ruleset(), "");
    assert_eq!(ns.route_localnet(), "0");
}

/// Issue test 7: an unknown namespace (name or path) is exit 1 with a
/// one-line message naming it, for every kernel-facing subcommand, with
/// `--netns` before or after the subcommand.
#[test]
fn unknown_namespace() {
    // run from inside a sandbox namespace: a binary that fell back to its own
    // namespace would change the sandbox, not the host
    let sandbox = Netns::new("sandbox");
    let dir = TempDir::new("nons");
    let cfg = dir.default_config();
    let name = unique_name("missing");
    let path = format!("/run/netns/{}", unique_name("missing"));
    let proc_path = "/proc/4194305/ns/net"; // above the maximum pid_max
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    for target in [name.as_str(), path.as_str(), proc_path] {
        for sub in ["apply", "plan", "check", "remove"] {
            for before in [true, false] {
                let out = if before {
                    sandbox.ehn_inside(&["--netns", target, sub, "-c", &cfg])
                } else {
                    sandbox.ehn_inside(&[sub, "--netns", target, "-c", &cfg])
                };
                out.expect_code(1);
                assert_one_line_error(&out);
                assert!(out.stderr.contains(target), "error must name the namespace {target}: {out}");
            }
        }
    }
    assert_eq!(sandbox.ruleset(), "", "the binary acted on its own namespace");
    assert_eq!(sandbox.route_localnet(), "0", "the binary acted on its own namespace");
    // the lookup must not have created it
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    assert!(!std::path::Path::new(&path).exists());
}

/// Run the binary with stdout on /dev/full (every write fails with ENOSPC).
fn to_dev_full(ns: Option<&Netns>, args: &[&str]) -> Out {
    let run = TempDir::new("full-run");
    let run_dir = ns.map(|n| n.run_dir().to_path_buf()).unwrap_or_else(|| run.path().to_path_buf());
    let mut v: Vec<&str> = Vec::new();
    if let Some(n) = ns {
        v.extend(["--netns", n.name.as_str()]);
    }
    v.extend_from_slice(args);
    let cmdline = format!("{} {} > /dev/full", bin(), v.join(" "));
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
    let out = std::process::Command::new("unshare")
        .args(["--net", "--", bin()])
        .args(&v)
        .env("ECS_HOSTNET_RUN_DIR", &run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("spawn");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline,
    }
}

/// stdout that cannot be written is an error (exit 1 with a message), not
/// a panic (exit 101).
#[test]
fn unwritable_stdout_is_an_error_not_a_panic() {
    let dir = TempDir::new("full");
    let cfg = dir.default_config();
    let ns = Netns::new("full");

    for args in [&["render", "-c", cfg.as_str()][..], &["render", "--format", "json", "-c", &cfg]] {
        let out = to_dev_full(None, args);
        out.expect_code(1);
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
    // apply with changes to report, then converged
    for round in ["changes", "converged"] {
        let out = to_dev_full(Some(&ns), &["apply", "-c", &cfg]);
        out.expect_code(1);
        assert!(!out.stderr.contains("panicked"), "{round}: {out}");
        assert!(!out.stderr.trim().is_empty(), "{round}: exit 1 without a message: {out}");
    }
    // the first apply did its work before failing to report it
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);

    // the other commands: never a panic
    let mut codes = Vec::new();
    for args in
        [&["plan", "-c", cfg.as_str()][..], &["check", "-c", &cfg], &["remove", "-c", &cfg], &["remove", "-c", &cfg]]
    {
        let out = to_dev_full(Some(&ns), args);
        assert!(out.code != 101 && !out.stderr.contains("panicked"), "{out}");
        codes.push(format!("{} -> {}", args[0], out.code));
    }
    let out = to_dev_full(None, &["validate", "-c", &cfg]);
    assert!(out.code != 101 && !out.stderr.contains("panicked"), "{out}");
    codes.push(format!("validate -> {}", out.code));
    eprintln!("exit codes with stdout on /dev/full: {codes:?}");
    assert_eq!(ns.ruleset(), "", "remove did its work");
    assert_eq!(ns.route_localnet(), "0");
}

/// `--version` (and `-V`) print `ecs-hostnet 0.2.0 (commit C, built YYYY-MM-DD)` on stdout,
/// exit 0; in a git checkout C is this checkout's `git rev-parse --short=12 HEAD` (with
/// `-dirty` when tracked files changed), so a binary never claims another commit.
#[test]
fn version_names_the_commit_and_build_date() {
    for flag in ["--version", "-V"] {
        let out = ehn(&[flag]);
        out.expect_code(0);
        let line = out.stdout.trim_end();
        let rest = line
            .strip_prefix(concat!("ecs-hostnet ", env!("CARGO_PKG_VERSION"), " (commit "))
            .unwrap_or_else(|| panic!("{flag}: {line:?}"));
        let (commit, date) =
            rest.strip_suffix(')').and_then(|r| r.split_once(", built ")).unwrap_or_else(|| panic!("{flag}: {line:?}"));
        let d = date.as_bytes();
        assert!(
            d.len() == 10 && d[4] == b'-' && d[7] == b'-' && date.replace('-', "").bytes().all(|b| b.is_ascii_digit()),
            "{flag}: build date {date:?} is not YYYY-MM-DD"
        );
        let manifest = env!("CARGO_MANIFEST_DIR");
        let head =
            run_cmd("git", &["-C", manifest, "rev-parse", "--short=12", "HEAD"], std::time::Duration::from_secs(10));
        if head.ok() {
            let head = head.stdout.trim();
            assert!(
                commit == head || commit == format!("{head}-dirty"),
                "{flag}: commit {commit:?}, checkout at {head}"
            );
        } else {
            assert!(!commit.is_empty() && !commit.contains(' '), "{flag}: commit {commit:?}");
        }
    }
}
