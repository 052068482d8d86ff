//! Bad input: malformed configurations (issue test 6) and unknown namespaces
//! (issue test 7). A refused command changes nothing in the namespace.

mod support;

use support::*;

struct Bad {
    name: &'static str,
    text: &'static str,
    /// Line the `FILE:LINE:COL:` prefix must point at; None for errors that
    /// involve several keys (only exit 1 and one line are required).
    line: Option<usize>,
}

const BAD: &[Bad] = &[
    Bad { name: "unknown-key", text: "[credentials]\nenabled = true\nendpoint_prot = 80\n", line: Some(3) },
    Bad { name: "unknown-section", text: "# comment\n[credential]\nenabled = true\n", line: Some(2) },
    Bad { name: "unknown-top-level-key", text: "verbose = true\n", line: Some(1) },
    Bad { name: "wrong-type-bool", text: "[credentials]\nenabled = \"yes\"\n", line: Some(2) },
    Bad { name: "wrong-type-list", text: "[containers]\ninterfaces = \"docker+\"\n", line: Some(2) },
    Bad { name: "wrong-type-port", text: "[credentials]\nagent_port = \"51679\"\n", line: Some(2) },
    Bad { name: "bad-ipv4-octet", text: "[credentials]\nendpoint_address = \"169.254.170.256\"\n", line: Some(2) },
    Bad { name: "bad-ipv4-short", text: "[credentials]\n\nagent_address = \"127.1\"\n", line: Some(3) },
    Bad { name: "bad-ipv4-word", text: "[imds_block]\nipv4_address = \"imds\"\n", line: Some(2) },
    Bad { name: "ipv6-in-ipv4-field", text: "[imds_block]\nipv4_address = \"fd00:ec2::254\"\n", line: Some(2) },
    Bad { name: "ipv6-in-endpoint", text: "[credentials]\nendpoint_address = \"fd00:ec2::23\"\n", line: Some(2) },
    Bad { name: "ipv4-in-ipv6-field", text: "[imds_block]\nipv6_address = \"169.254.169.254\"\n", line: Some(2) },
    Bad { name: "port-0", text: "[credentials]\nendpoint_port = 0\n", line: Some(2) },
    Bad { name: "port-70000", text: "[credentials]\nagent_port = 70000\n", line: Some(2) },
    Bad { name: "port-negative", text: "[introspection_guard]\nport = -1\n", line: Some(2) },
    Bad { name: "port-0-introspection", text: "[introspection_guard]\nport = 0\n", line: Some(2) },
    Bad {
        name: "ifname-16-bytes",
        text: "[containers]\ninterfaces = [\"docker+\", \"abcdefghijklmnop\"]\n",
        line: Some(2),
    },
    Bad {
        name: "ifname-16-bytes-allowed",
        text: "[introspection_guard]\nallowed_interfaces = [\"lo\", \"abcdefghijklmnop\"]\n",
        line: Some(2),
    },
    Bad { name: "ifname-slash", text: "[containers]\ninterfaces = [\"dock/er0\"]\n", line: Some(2) },
    Bad { name: "ifname-space", text: "[containers]\ninterfaces = [\"dock er0\"]\n", line: Some(2) },
    Bad { name: "ifname-empty", text: "[containers]\ninterfaces = [\"\"]\n", line: Some(2) },
    Bad { name: "ifname-star", text: "[containers]\ninterfaces = [\"docker*\"]\n", line: Some(2) },
    Bad { name: "ifname-quote", text: "[containers]\ninterfaces = [\"dock\\\"er\"]\n", line: Some(2) },
    Bad {
        name: "ifname-route-localnet",
        text: "[route_localnet]\nenable = [\"docker0\", \"a/b\"]\n",
        line: Some(2),
    },
    Bad { name: "route-localnet-word", text: "[route_localnet]\nenable = \"sometimes\"\n", line: Some(2) },
    Bad { name: "guard-off-without-opt-out", text: "[localhost_guard]\nenabled = false\n", line: None },
    Bad { name: "empty-container-interfaces", text: "[containers]\ninterfaces = []\n", line: None },
    Bad { name: "toml-unclosed-table", text: "[credentials\nenabled = true\n", line: Some(1) },
    Bad { name: "toml-missing-value", text: "[credentials]\nenabled = true\nagent_port =\n", line: Some(3) },
    Bad { name: "toml-duplicate-key", text: "[credentials]\nenabled = true\nenabled = false\n", line: Some(3) },
    Bad { name: "toml-unterminated-string", text: "[credentials]\nagent_address = \"127.0.0.1\n", line: Some(2) },
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
    for case in BAD {
        let path = dir.write(&format!("{}.toml", case.name), case.text);
        // --netns after the subcommand this time
        let out = ehn(&["apply", "--netns", &ns.name, "-c", &path]);
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
    for case in BAD {
        let path = dir.write(&format!("{}.toml", case.name), case.text);
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
        "[containers]\ninterfaces = []\n[credentials]\nenabled = false\n[imds_block]\nenabled = false\n",
    );
    as_nobody(&["validate", "-c", &no_dnat]).expect_code(0);

    let mut errors = Vec::new();
    for case in BAD {
        let path = dir.write(&format!("{}.toml", case.name), case.text);
        let out = as_nobody(&["validate", "-c", &path]);
        check_refusal(case, &path, &out, &mut errors);
    }
    assert!(errors.is_empty(), "{} problem(s):\n{}", errors.len(), errors.join("\n\n"));
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
    for sub in ["apply", "plan", "check", "remove", "render"] {
        let out = ns.ehn(&[sub, "-c", &path]);
        out.expect_code(1);
        assert_one_line_error(&out);
        assert!(out.stderr.contains(&path), "error must name the file: {out}");
    }
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
