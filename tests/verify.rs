//! `verify` against a real kernel, in namespaces the tests create (tests/support
//! Topology: a host namespace with docker0, a container, IMDS behind the host, the agent
//! listening on 127.0.0.1:51679). Never run from the root namespace: always `--netns`.

mod support;

use std::time::{Duration, Instant};
use support::*;

/// What verify must leave exactly as it found: links, addresses, routes (both
/// families), named namespaces, and the rule set without counters.
fn host_state(t: &Topology) -> String {
    let ruleset = t.host.nft(&["-s", "list", "ruleset"]);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        links(&t.host.ip(&["-o", "link", "show"])),
        t.host.ip(&["-o", "addr", "show"]),
        t.host.ip(&["route", "show", "table", "all"]),
        t.host.ip(&["-6", "route", "show", "table", "all"]),
        sh("ip", &["netns", "list"])
            .lines()
            .filter(|l| l.contains(&t.host.name) || l.starts_with("ehn-verify"))
            .collect::<Vec<_>>()
            .join("\n"),
        ruleset
    )
}

/// Each link's index, name and master (its operational state moves on its own: a
/// bridge turns from UNKNOWN to UP when a port comes up).
fn links(ip_o_link: &str) -> String {
    ip_o_link
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let master = w.iter().position(|x| *x == "master").map(|i| w[i + 1]).unwrap_or("-");
            format!("{} {} {master}", w[0], w[1])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn applied() -> Topology {
    let t = Topology::new();
    let cfg = t.dir.default_config();
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    t
}

fn verify(t: &Topology, code: i32) -> Out {
    let before = host_state(t);
    let out = t.host.ehn(&["verify", "-c", &t.dir.default_config()]);
    out.expect_code(code);
    wait_same(t, &before);
    out
}

/// The state equals `before` (the kernel deletes a veth synchronously; allow a moment
/// for anything asynchronous all the same).
fn wait_same(t: &Topology, before: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = host_state(t);
        if now == before {
            return;
        }
        if Instant::now() > deadline {
            let d = similar::TextDiff::from_lines(before, &now).unified_diff().to_string();
            panic!("verify changed the host:\n{d}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_default_topology_passes_naming_our_rules_and_leaves_nothing() {
    let t = applied();
    let out = verify(&t, 0);
    let s = &out.stdout;
    for want in [
        "PASS container -> credentials endpoint",
        "the agent answered (via our credentials-dnat docker+)",
        "table ip ecs-hostnet chain prerouting rule credentials-dnat docker+: accept",
        "PASS container -> IMDS (IPv4)",
        "blocked by our imds-block-ipv4",
        "table inet ecs-hostnet chain forward rule imds-block-ipv4: drop",
        "PASS container -> IMDS (IPv6)",
        "blocked by our imds-block-ipv6",
        "PASS host -> credentials endpoint",
        "via our credentials-redirect",
        "4 of 4 probes passed",
        "table inet ecs-hostnet chain input policy accept",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}\n{}", out.stderr);
    }
    let json: serde_json::Value = serde_json::from_str(
        &t.host.ehn(&["verify", "-c", &t.dir.default_config(), "--format", "json"]).expect_code(0).stdout,
    )
    .unwrap();
    // Not an assertion on speed (BENCHMARKS-style measurement belongs to a benchmark):
    // printed for the report with --nocapture.
    eprintln!("verify elapsed_ms on the default topology: {}", json["elapsed_ms"]);
    assert_eq!(json["schema"], "ecs-hostnet.verify/v1");
    assert_eq!(json["passed"], true);
    assert_eq!(json["probes"].as_array().unwrap().len(), 4);
    assert_eq!(json["probes"][0]["connect"]["result"], "answered");
    assert_eq!(json["probes"][0]["path"][0]["rule_id"], "credentials-dnat docker+");
    assert_eq!(json["probes"][1]["probe"], "container-imds-ipv4");
    assert_eq!(json["probes"][1]["path"].as_array().unwrap().last().unwrap()["verdict"], "drop");
    // Our rules print as nft text, those with an anonymous set of interface patterns, a
    // limit or a log (the IMDS audit rules) included: never as bytecode.
    let ours: Vec<&serde_json::Value> = json["probes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["path"].as_array().unwrap())
        .filter(|s| s["table"] == "ecs-hostnet" && s["rule"].is_string())
        .collect();
    assert!(ours.iter().any(|s| s["rule_id"] == "imds-audit-ipv4"), "{json:#}");
    for s in ours {
        let rule = s["rule"].as_str().unwrap();
        assert!(!rule.contains("bytecode"), "{rule}");
    }
    let audit = json["probes"][1]["path"].as_array().unwrap().iter().find(|s| s["rule_id"] == "imds-audit-ipv4");
    let audit = audit.and_then(|s| s["rule"].as_str()).unwrap_or_default();
    assert!(audit.starts_with("iifname { ") && audit.contains(" limit rate ") && audit.contains(" log "), "{audit}");
}

#[test]
fn a_cis_style_input_drop_fails_naming_the_foreign_table_and_chain() {
    let t = applied();
    t.host.nft_load(
        &t.dir,
        "table inet cis {\n chain input { type filter hook input priority 0; policy drop; iif lo accept; ct state established,related accept; }\n}\n",
    );
    let out = verify(&t, 2);
    assert!(
        out.stdout.contains("FAIL container -> credentials endpoint")
            && out.stdout.contains("dropped by table inet cis chain input policy drop"),
        "{}",
        out.stdout
    );
    // The probe's neighbour solicitation is dropped at input: its IPv6 SYN never leaves,
    // so IMDS is unreachable over IPv6 and that passes, saying our rule was not exercised.
    assert!(
        out.stdout.contains(
            "PASS container -> IMDS (IPv6)"
        ) && out.stdout.contains(
            "IMDS unreachable: the SYN never reached nf_tables (no route or neighbour); imds-block-ipv6 not exercised"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("PASS container -> IMDS (IPv4)") && out.stdout.contains("blocked by our imds-block-ipv4"),
        "{}",
        out.stdout
    );
}

#[test]
fn imds_that_a_bare_namespace_cannot_route_passes_as_unreachable_only_with_our_rules() {
    // No route toward IMDS, forwarding off. Without our rules the IMDS probes fail all the
    // same (unreachable today, open after a route change) and the credentials probes fail;
    // after apply the IMDS probes pass as unreachable.
    let ns = Netns::new("bare");
    let dir = TempDir::new("bare");
    let cfg = dir.default_config();
    let imds_lines = |out: &Out| -> Vec<String> {
        ["IPv4", "IPv6"]
            .iter()
            .map(|family| {
                out.stdout
                    .lines()
                    .find(|l| l.contains(&format!("container -> IMDS ({family})")))
                    .unwrap_or_else(|| panic!("no IMDS ({family}) probe in:\n{}", out.stdout))
                    .to_string()
            })
            .collect()
    };
    let out = ns.ehn(&["verify", "-c", &cfg]);
    out.expect_code(2);
    for line in imds_lines(&out) {
        assert!(line.starts_with("FAIL") && line.contains("IMDS unreachable now, but our imds-block-ipv"), "{line}");
    }
    assert!(out.stdout.contains("FAIL container -> credentials endpoint"), "{}", out.stdout);

    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let out = ns.ehn(&["verify", "-c", &cfg]);
    for line in imds_lines(&out) {
        assert!(line.starts_with("PASS") && line.contains("IMDS unreachable"), "{line}\n{}", out.stdout);
    }
}

/// ecs-init's pre-start rules (aws/amazon-ecs-agent `ecs-init/exec/iptables/iptables.go`,
/// defaults), as tests/ecs_init.rs adds them: (ip6tables, table, -A/-I, chain, spec).
const ECS_INIT_RULES: &[(bool, &str, &str, &str, &str)] = &[
    (false, "nat", "-A", "PREROUTING", "-p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination 127.0.0.1:51679"),
    (
        false,
        "filter",
        "-I",
        "INPUT",
        "--dst 127.0.0.0/8 ! --src 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
    ),
    (false, "filter", "-I", "INPUT", "-p tcp --dport 51678 ! -i lo -j DROP"),
    (false, "filter", "-I", "INPUT", "-p tcp --dport 51678 -i docker0 -j ACCEPT"),
    (true, "filter", "-I", "INPUT", "-p tcp --dport 51678 ! -i lo -j DROP"),
    (true, "filter", "-I", "INPUT", "-p tcp --dport 51678 -i docker0 -j ACCEPT"),
    (false, "nat", "-A", "OUTPUT", "-p tcp -d 169.254.170.2 --dport 80 -j REDIRECT --to-ports 51679"),
];

#[test]
fn ecs_inits_own_dnat_to_the_agent_passes_naming_its_rule() {
    // A boot on an ECS-optimized AMI: our boot unit's apply, then ecs.service's ecs-init
    // pre-start (iptables-nft) makes `table ip nat`. Its chains register last at our NAT
    // priority (-100), so they run first (nf_hook_entries_grow puts a new hook before
    // those of equal priority) and bind the probes' connections: to where ours would.
    let t = applied();
    t.host.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    for (v6, table, op, chain, spec) in ECS_INIT_RULES {
        let prog = if *v6 { "ip6tables-nft" } else { "iptables-nft" };
        let mut args = vec!["-w", "-t", table, op, chain];
        args.extend(spec.split(' '));
        t.host.exec_ok(prog, &args);
    }
    let out = verify(&t, 0);
    let s = &out.stdout;
    for want in ["PASS container -> credentials endpoint", "PASS host -> credentials endpoint", "4 of 4 probes passed"]
    {
        assert!(s.contains(want), "missing {want:?} in:\n{s}\n{}", out.stderr);
    }
    // Each credentials probe names the rule that DNATed it and where to, as conntrack says,
    // unless our own rule bound it.
    for (label, chain) in
        [("container -> credentials endpoint", "PREROUTING"), ("host -> credentials endpoint", "OUTPUT")]
    {
        let line = s.lines().find(|l| l.contains(label)).unwrap();
        assert!(
            line.contains(&format!(
                ": DNATed to 127.0.0.1:51679, the agent endpoint as with our credentials-{}, by table ip nat chain {chain} rule handle",
                if chain == "OUTPUT" { "redirect" } else { "dnat" }
            )) || line.contains("(via our credentials-"),
            "{line}\n{s}"
        );
    }
    assert!(s.contains(", by table ip nat chain PREROUTING rule handle"), "ecs-init's DNAT binds first:\n{s}");
}

#[test]
fn a_stealing_dnat_fails_naming_its_rule() {
    let t = applied();
    t.host.nft_load(
        &t.dir,
        "table ip thief {\n chain pre { type nat hook prerouting priority -150; ip daddr 169.254.170.2 tcp dport 80 dnat to 198.51.100.2:80; }\n}\n",
    );
    let out = verify(&t, 2);
    assert!(
        out.stdout.contains("DNATed elsewhere by table ip thief chain pre rule handle")
            && out.stdout.contains("dnat to 198.51.100.2:80"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_deleted_imds_rule_fails_naming_imds() {
    let t = applied();
    let listing = t.host.nft(&["-a", "list", "chain", "inet", "ecs-hostnet", "forward"]);
    let handle = listing
        .lines()
        .find(|l| l.contains("\"imds-block-ipv4\""))
        .and_then(|l| l.rsplit("# handle ").next())
        .expect("our IMDS rule")
        .trim()
        .to_string();
    t.host.nft(&["delete", "rule", "inet", "ecs-hostnet", "forward", "handle", &handle]);
    let out = verify(&t, 2);
    assert!(
        out.stdout.contains("FAIL container -> IMDS (IPv4)")
            && out.stdout.contains("IMDS reachable: no drop (our imds-block-ipv4 rule is missing)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("PASS container -> IMDS (IPv6)"), "{}", out.stdout);
}

#[test]
fn a_killed_runs_trace_table_is_removed_by_the_next_run() {
    let t = applied();
    // What a run killed on a kernel without table flag owner leaves: its trace table,
    // named with a pid that no longer runs. (With the owner flag the kernel deletes it
    // with the killed process's socket: nothing is left at all, see the SIGKILL test.)
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    t.host.nft(&["add", "table", "inet", &format!("ecs-hostnet-verify-{dead}")]);
    let out = t.host.ehn(&["verify", "-c", &t.dir.default_config()]);
    out.expect_code(0);
    assert!(
        out.stdout.contains(&format!("cleaned up after a killed run: table inet ecs-hostnet-verify-{dead}")),
        "{}",
        out.stdout
    );
    assert!(!t.host.ruleset().contains("ecs-hostnet-verify"), "{}", t.host.ruleset());
}

#[test]
fn sigkill_mid_run_leaves_nothing_the_next_run_cannot_clean() {
    let t = applied();
    let before = host_state(&t);
    let mut seen_objects = false;
    // Kill at growing delays until a kill lands while the probe objects exist.
    for delay_us in (0..40).map(|i| 500 + i * 500) {
        let mut child = std::process::Command::new(bin())
            .args(["--netns", &t.host.name, "verify", "-c", &t.dir.default_config()])
            .env("ECS_HOSTNET_RUN_DIR", t.host.run_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_micros(delay_us);
        while Instant::now() < deadline {}
        let links = t.host.ip(&["-o", "link", "show"]);
        let table = t.host.ruleset().contains(&format!("ecs-hostnet-verify-{pid}"));
        let _ = child.kill();
        let _ = child.wait();
        if table || links.contains("dockerv") {
            seen_objects = true;
            break;
        }
    }
    assert!(seen_objects, "no kill landed while the probe's objects existed");
    t.host.ehn(&["verify", "-c", &t.dir.default_config()]).expect_code(0);
    wait_same(&t, &before);
}

/// A verify run by a test, killed and reaped in Drop if the test fails before it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to a verify once its probe veth exists, then wants exit 1, one stderr
/// line naming the signal, and the host as before. The veth is looked for in
/// `/proc/PID/net/dev` (the namespace verify entered; a read costs microseconds, so the
/// signal lands while the objects exist). A run can still pass its last look at the
/// signals, with everything removed, before the signal arrives (exit 0): then it is
/// tried again, a few times at most.
fn signalled_mid_run(sig: nix::sys::signal::Signal) {
    let t = applied();
    let before = host_state(&t);
    for _ in 0..5 {
        let child = std::process::Command::new(bin())
            .args(["--netns", &t.host.name, "verify", "-c", &t.dir.default_config()])
            .env("ECS_HOSTNET_RUN_DIR", t.host.run_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut run = Running(child);
        let pid = run.0.id() as i32;
        let dev = format!("/proc/{pid}/net/dev");
        let deadline = Instant::now() + Duration::from_secs(10);
        let signalled = loop {
            if std::fs::read_to_string(&dev).is_ok_and(|d| d.contains("dockerv")) {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
                break true;
            }
            if run.0.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
        };
        assert!(signalled, "verify ended (or hung for 10 s) without its probe veth ever showing");
        let status = loop {
            if let Some(st) = run.0.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "verify did not end within 10 s of {sig}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(run.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        wait_same(&t, &before);
        assert!(!t.host.ruleset().contains("ecs-hostnet-verify"), "{}", t.host.ruleset());
        match status.code() {
            Some(1) => {
                let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("configuration:")).collect();
                assert_eq!(lines.len(), 1, "one line saying so:\n{stderr}");
                assert!(
                    lines[0].contains(&format!("interrupted by {sig}; everything verify had made"))
                        && lines[0].contains("was removed"),
                    "{stderr}"
                );
                return;
            }
            Some(0) => eprintln!("verify finished before {sig} arrived; again"),
            _ => panic!("verify ended with {status} on {sig} (blocked signals must not kill it):\n{stderr}"),
        }
    }
    panic!("{sig} never landed before verify's last look at the signals in 5 runs");
}

#[test]
fn sigterm_mid_run_removes_everything_and_exits_1() {
    signalled_mid_run(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_mid_run_removes_everything_and_exits_1() {
    signalled_mid_run(nix::sys::signal::Signal::SIGINT);
}
