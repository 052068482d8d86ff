//! The rule set the binary keeps in the kernel: its shape, idempotency,
//! foreign state, drift, the nft oracle, and removal. Each test uses fresh,
//! bare namespaces (no traffic needed).

mod support;

use std::collections::BTreeSet;

use support::*;

/// Number of rules the default configuration must produce: a DNAT per container pattern
/// (3), the REDIRECT, per IMDS family an audit rule and a drop (the patterns in sets), 3
/// guards (localhost from other interfaces, localhost from container interfaces,
/// introspection).
const DEFAULT_RULES: usize = 3 + 1 + 4 + 3;

#[track_caller]
fn assert_unique_ids(listed: &str) -> Vec<Rule> {
    let ours = our_rules(listed);
    let mut seen = BTreeSet::new();
    for r in &ours {
        let id = r.comment.clone().unwrap_or_else(|| panic!("rule without comment id: {r:?}\n{listed}"));
        assert!(!id.is_empty(), "empty comment id: {r:?}");
        assert!(seen.insert(id.clone()), "comment id {id:?} used twice:\n{listed}");
    }
    ours
}

/// The applied default rule set is the documented one: exactly the two
/// tables, chain types/hooks/priorities, and rule bodies equal to the
/// canonical listing of a hand-written reference (comments aside).
#[test]
fn default_ruleset_matches_the_contract() {
    let ns = Netns::new("shape");
    let reference = Netns::new("shaperef");
    let dir = TempDir::new("shape");
    let cfg = dir.default_config();
    reference.nft_load(&dir, REFERENCE_RULES);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);

    let got = ns.ruleset();
    let want = reference.ruleset();
    assert_eq!(
        tables(&got).keys().cloned().collect::<Vec<_>>(),
        vec!["inet ecs-hostnet".to_string(), "ip ecs-hostnet".to_string()],
        "exactly our two tables:\n{got}"
    );
    assert_eq!(chain_headers(&got), chain_headers(&want), "chains:\n{got}");
    let ours = assert_unique_ids(&got);
    assert_eq!(ours.len(), DEFAULT_RULES, "{got}");
    assert_eq!(
        bodies_by_chain(&ours),
        bodies_by_chain(&our_rules(&want)),
        "rule bodies (comments aside) differ from the contract.\n--- applied ---\n{got}\n--- reference ---\n{want}"
    );
    assert_eq!(ns.route_localnet(), "1");
}

/// Issue test 2: three applies leave one copy of every rule; the second and
/// third change nothing (same handles); check and plan say converged.
#[test]
fn apply_is_idempotent() {
    let ns = Netns::new("idem");
    let dir = TempDir::new("idem");
    let cfg = dir.default_config();

    ns.ehn(&["plan", "-c", &cfg]).expect_code(2);
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);

    let mut first = None;
    for i in 1..=3 {
        ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
        let listed = ns.ruleset_handles();
        let ours = assert_unique_ids(&listed);
        assert_eq!(ours.len(), DEFAULT_RULES, "after apply #{i}:\n{listed}");
        assert!(ours.iter().all(|r| r.handle.is_some()));
        match &first {
            None => first = Some(listed),
            Some(f) => assert_eq!(&listed, f, "apply #{i} changed the rule set (handles)"),
        }
        ns.ehn(&["check", "-c", &cfg]).expect_code(0);
        ns.ehn(&["plan", "-c", &cfg]).expect_code(0);
        assert_eq!(ns.route_localnet(), "1");
    }
}

/// Issue test 3: foreign tables (iptables-nft's `ip filter` with DOCKER-USER,
/// a user nft table) are byte-identical before/after apply and after remove.
#[test]
fn foreign_state_is_untouched() {
    let ns = Netns::new("foreign");
    let dir = TempDir::new("foreign");
    let cfg = dir.default_config();

    ns.exec_ok("iptables-nft", &["-N", "DOCKER-USER"]);
    ns.exec_ok("iptables-nft", &["-A", "DOCKER-USER", "-j", "RETURN"]);
    ns.exec_ok("iptables-nft", &["-A", "FORWARD", "-j", "DOCKER-USER"]);
    ns.exec_ok("iptables-nft", &["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    ns.exec_ok(
        "iptables-nft",
        &["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE"],
    );
    ns.exec_ok("ip6tables-nft", &["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    ns.nft_load(
        &dir,
        r#"table inet user {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 counter accept comment "user rule"
	}
}
table ip ecs-hostnet-user {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 192.0.2.80 tcp dport 80 counter dnat to 192.0.2.81:8080
	}
}
"#,
    );
    let before = ns.ruleset();
    let before_handles = ns.ruleset_handles();
    let ipt_before = iptables_save(&ns);
    assert!(before.contains("DOCKER-USER"), "{before}");

    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    let after = ns.ruleset();
    assert_eq!(foreign_tables(&after), tables(&before), "apply changed foreign tables");
    assert_eq!(
        foreign_tables(&ns.ruleset_handles()),
        tables(&before_handles),
        "apply changed foreign tables (handles)"
    );
    assert_eq!(iptables_save(&ns), ipt_before, "iptables-nft's view changed after apply");
    assert!(tables(&after).contains_key("ip ecs-hostnet"), "{after}");
    assert!(tables(&after).contains_key("inet ecs-hostnet"), "{after}");

    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    let removed = ns.ruleset();
    assert_eq!(removed, before, "after remove the ruleset must be exactly the foreign one");
    assert_eq!(ns.ruleset_handles(), before_handles);
    assert_eq!(iptables_save(&ns), ipt_before, "iptables-nft's view changed after remove");
    for k in tables(&removed).keys() {
        assert!(k.split_whitespace().nth(1) != Some("ecs-hostnet"), "table {k} left after remove");
    }
}

/// iptables-nft-save and ip6tables-nft-save output without the timestamp
/// comments; also asserts that iptables-nft has no complaint (stderr).
fn iptables_save(ns: &Netns) -> String {
    let mut s = String::new();
    for prog in ["iptables-nft-save", "ip6tables-nft-save"] {
        let out = ns.exec(prog, &[]);
        assert!(out.ok() && out.stderr.trim().is_empty(), "{out}");
        for l in out.stdout.lines().filter(|l| !l.starts_with('#')) {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// Issue test 4: a deleted rule and an altered rule are drift: check exits 2
/// and plan names the rule (comment id); apply fixes it.
#[test]
fn drift_is_detected_named_and_fixed() {
    let ns = Netns::new("drift");
    let dir = TempDir::new("drift");
    let cfg = dir.default_config();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    let converged = our_rules(&ns.ruleset());

    // 1. delete the REDIRECT rule
    let r = our_rule_matching(&ns, "output", "redirect");
    let id = r.comment.clone().unwrap();
    ns.nft(&["delete", "rule", "ip", "ecs-hostnet", "output", "handle", &r.handle.unwrap().to_string()]);
    let drifted = ns.ruleset_handles();
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    assert_plan_names(&ns, &cfg, &id);
    assert_eq!(ns.ruleset_handles(), drifted, "check and plan must not change anything");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(our_rules(&ns.ruleset()).len(), DEFAULT_RULES);

    // 2. alter the introspection guard (other port, same comment)
    let r = our_rule_matching(&ns, "input", "dport 51678");
    let id = r.comment.clone().unwrap();
    let altered = r.text.replace("dport 51678", "dport 51677");
    replace_rule(&ns, &dir, &r, &altered);
    assert!(ns.ruleset().contains("dport 51677"));
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    assert_plan_names(&ns, &cfg, &id);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert!(!ns.ruleset().contains("dport 51677"), "{}", ns.ruleset());

    // 3. alter a DNAT target port
    let r = our_rule_matching(&ns, "prerouting", "\"docker*\"");
    let id = r.comment.clone().unwrap();
    let altered = r.text.replace("127.0.0.1:51679", "127.0.0.1:51680");
    assert_ne!(altered, r.text);
    replace_rule(&ns, &dir, &r, &altered);
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    assert_plan_names(&ns, &cfg, &id);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);

    // 4. alter the IMDS v6 block's address
    // (the drop: its audit rule has the same match, then `limit`)
    let r = our_rule_matching(&ns, "forward", "ip6 daddr fd00:ec2::254 counter");
    let id = r.comment.clone().unwrap();
    // nft 1.0.6 crashes replacing a rule with an interval set ("BUG: unhandled op 2"),
    // so the altered rule, which keeps our id, matches one interface name.
    let altered = format!("iifname \"docker*\" ip6 daddr fd00:ec2::253 counter drop comment \"{id}\"");
    assert_ne!(altered, r.text);
    replace_rule(&ns, &dir, &r, &altered);
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    assert_plan_names(&ns, &cfg, &id);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);

    let fixed = our_rules(&ns.ruleset());
    assert_eq!(bodies_by_chain(&fixed), bodies_by_chain(&converged), "apply restored every rule");
}

/// Other kinds of drift: a foreign rule inside our table, a deleted chain,
/// a deleted table, route_localnet turned off behind our back.
#[test]
fn other_drift_is_detected_and_fixed() {
    let ns = Netns::new("drift2");
    let dir = TempDir::new("drift2");
    let cfg = dir.default_config();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let converged = ns.ruleset();

    // a rule that is not ours, inside our table
    ns.nft(&[
        "add",
        "rule",
        "inet",
        "ecs-hostnet",
        "input",
        "tcp",
        "dport",
        "9999",
        "accept",
        "comment",
        "\"intruder\"",
    ]);
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    ns.ehn(&["plan", "-c", &cfg]).expect_code(2);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert!(!ns.ruleset().contains("intruder"), "apply must remove rules it does not own from its table");
    assert_eq!(ns.ruleset(), converged);

    // a chain deleted
    ns.nft(&["flush", "chain", "inet", "ecs-hostnet", "forward"]);
    ns.nft(&["delete", "chain", "inet", "ecs-hostnet", "forward"]);
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset(), converged);

    // a whole table deleted
    ns.nft(&["delete", "table", "ip", "ecs-hostnet"]);
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    // (a re-created table is listed last: compare table by table)
    assert_eq!(tables(&ns.ruleset()), tables(&converged));

    // a base chain's policy changed
    ns.nft(&["chain", "inet", "ecs-hostnet", "forward", "{ policy drop; }"]);
    assert!(ns.ruleset().contains("policy drop"));
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(tables(&ns.ruleset()), tables(&converged));

    // route_localnet reset
    ns.set_sysctl("net.ipv4.conf.all.route_localnet", "0");
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    let plan = ns.ehn(&["plan", "-c", &cfg]);
    plan.expect_code(2);
    assert!(plan.stdout.contains("route_localnet"), "plan must name route_localnet: {plan}");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1");
}

#[track_caller]
fn assert_plan_names(ns: &Netns, cfg: &str, id: &str) {
    let plan = ns.ehn(&["plan", "-c", cfg]);
    plan.expect_code(2);
    assert!(plan.stdout.contains(id), "plan output must name the drifted rule {id:?}: {plan}");
}

/// `nft replace rule` with the new text (which keeps the comment).
fn replace_rule(ns: &Netns, dir: &TempDir, r: &Rule, text: &str) {
    let script = format!(
        "replace rule {} {} {} handle {} {}\n",
        r.family,
        r.table,
        r.chain,
        r.handle.unwrap(),
        normalize_counters(text)
    );
    ns.nft_load(dir, &script);
}

/// Issue test 5: `render --format nft` loaded with `nft -f` in one fresh
/// namespace lists exactly like `apply` in another.
#[test]
fn render_is_an_oracle_for_apply() {
    let dir = TempDir::new("oracle");
    let configs = [
        ("default", default_config_text()),
        (
            "variant",
            r#"[containers]
interfaces = ["docker0", "br-+", "cni+"]

[route_localnet]
enable = ["docker0"]

[credentials]
endpoint_port = 8080
agent_address = "127.0.0.2"
agent_port = 51680

[introspection_guard]
port = 51600
allowed_interfaces = ["lo", "docker0", "ecs-bridge"]

[imds_block]
block_ipv6 = false
"#
            .to_string(),
        ),
        (
            "minimal",
            r#"[credentials]
enabled = false
[imds_block]
enabled = false
[introspection_guard]
enabled = false
[route_localnet]
enable = "off"
[agent]
enable_task_iam_role = false
enable_task_iam_role_network_host = false
"#
            .to_string(),
        ),
    ];
    // render runs inside a sandbox namespace, which it must not touch
    let sandbox = Netns::new("orcl-s");
    for (name, text) in configs {
        let cfg = dir.write(&format!("{name}.toml"), &text);
        let render = sandbox.ehn_inside(&["render", "--format", "nft", "-c", &cfg]);
        render.expect_code(0);
        let loaded = Netns::new("orcl-f");
        let applied = Netns::new("orcl-a");
        let script = dir.write(&format!("{name}.nft"), &render.stdout);
        let out = loaded.exec("nft", &["-f", &script]);
        assert!(out.ok(), "nft -f rejects the rendered script of {name}: {out}\n--- script ---\n{}", render.stdout);
        applied.ehn(&["apply", "-c", &cfg]).expect_code(0);
        assert_eq!(
            applied.ruleset(),
            loaded.ruleset(),
            "config {name}: apply (left) and nft -f of render (right) differ"
        );
        // render does not touch any namespace: the json form is valid JSON
        let json = sandbox.ehn_inside(&["render", "--format", "json", "-c", &cfg]);
        json.expect_code(0);
        serde_json::from_str::<serde_json::Value>(&json.stdout)
            .unwrap_or_else(|e| panic!("render --format json of {name} is not JSON: {e}\n{}", json.stdout));
    }
    assert_eq!(sandbox.ruleset(), "", "render changed the namespace it ran in");
    assert_eq!(sandbox.route_localnet(), "0", "render changed the namespace it ran in");
}

/// remove after apply leaves an empty ruleset and route_localnet back to 0;
/// remove is idempotent; check/plan then report work to do.
#[test]
fn remove_restores_a_fresh_namespace() {
    let ns = Netns::new("remove");
    let dir = TempDir::new("remove");
    let cfg = dir.default_config();

    // remove when nothing was ever applied
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset().trim(), "");
    assert_eq!(ns.route_localnet(), "0");

    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1");
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset(), "", "remove leaves nft list ruleset empty");
    assert_eq!(ns.route_localnet(), "0", "remove restores route_localnet");
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset(), "");
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    ns.ehn(&["plan", "-c", &cfg]).expect_code(2);

    // and it can be applied again
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset(), "");
    assert_eq!(ns.route_localnet(), "0");
}

/// remove puts back the value found before the first change: 1 stays 1.
/// Turning route_localnet "off" in the configuration restores the old value.
#[test]
fn route_localnet_prior_value_is_restored() {
    let dir = TempDir::new("rln");
    let cfg = dir.default_config();
    // ("off" is refused while the credentials DNAT targets 127.0.0.1)
    // (and the agent keys are refused while nothing serves the credentials)
    let off = dir.write(
        "off.toml",
        "[route_localnet]\nenable = \"off\"\n\n[credentials]\nenabled = false\n\n\
         [agent]\nenable_task_iam_role = false\nenable_task_iam_role_network_host = false\n",
    );

    let ns = Netns::new("rln1");
    ns.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1");
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1", "value found before apply was 1");
    assert_eq!(ns.ruleset(), "");

    let ns = Netns::new("rln0");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    // a second apply must not record the value it set itself as "the original"
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1");
    ns.ehn(&["apply", "-c", &off]).expect_code(0);
    assert_eq!(ns.route_localnet(), "0", "enable = \"off\" restores the value found before");
    ns.ehn(&["check", "-c", &off]).expect_code(0);
    ns.ehn(&["remove", "-c", &off]).expect_code(0);
    assert_eq!(ns.route_localnet(), "0");
    assert_eq!(ns.ruleset(), "");
}

/// `--netns` also takes a path: /run/netns/NAME and /proc/PID/ns/net of a
/// process inside the namespace.
#[test]
fn netns_by_path() {
    let ns = Netns::new("bypath");
    let dir = TempDir::new("bypath");
    let cfg = dir.default_config();
    let by_run = ns.path();
    ns.ehn_raw(&["--netns", &by_run, "apply", "-c", &cfg]).expect_code(0);
    assert_eq!(our_rules(&ns.ruleset()).len(), DEFAULT_RULES);
    assert_eq!(ns.route_localnet(), "1");

    // a process living in the namespace
    let mut child =
        std::process::Command::new("ip").args(["netns", "exec", &ns.name, "sleep", "30"]).spawn().expect("spawn sleep");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    // wait until the exec happened (its netns differs from ours)
    let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        if comm.trim() == "sleep" && theirs.as_ref() != Some(&mine) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sleep did not start in {}", ns.name);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _guard = Kill(child);
    let by_proc = format!("/proc/{pid}/ns/net");
    ns.ehn_raw(&["check", "--netns", &by_proc, "-c", &cfg]).expect_code(0);
    ns.ehn_raw(&["--netns", &by_proc, "remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset(), "");
    assert_eq!(ns.route_localnet(), "0");
}

/// Hundreds of rules in one transaction (the fact sheet: naive batching
/// breaks past ~480 rules): 500 container patterns -> 500 DNAT rules, two
/// IMDS rules, their two audit rules and an uplink guard whose sets hold 1001 elements
/// each, 508 rules in all.
#[test]
fn large_ruleset() {
    let ns = Netns::new("large");
    let oracle = Netns::new("largeo");
    let dir = TempDir::new("large");
    let pats: Vec<String> = (0..500).map(|i| format!("\"c{i}x+\"")).collect();
    let cfg = dir.write("large.toml", &format!("[containers]\ninterfaces = [{}]\n", pats.join(", ")));
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let listed = ns.ruleset();
    assert_eq!(our_rules(&listed).len(), 500 + 8);
    assert_unique_ids(&listed);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    let before = ns.ruleset_handles();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset_handles(), before);

    let render = ehn(&["render", "--format", "nft", "-c", &cfg]);
    render.expect_code(0);
    let script = dir.write("large.nft", &render.stdout);
    oracle.nft(&["-f", &script]);
    assert_eq!(oracle.ruleset(), listed);

    // back to the default: 600 rules removed, 9 added, in one go
    let small = dir.default_config();
    ns.ehn(&["apply", "-c", &small]).expect_code(0);
    ns.ehn(&["check", "-c", &small]).expect_code(0);
    assert_eq!(our_rules(&ns.ruleset()).len(), DEFAULT_RULES);
    ns.ehn(&["remove", "-c", &small]).expect_code(0);
    assert_eq!(ns.ruleset(), "");
}

/// Several applies racing on one fresh namespace: all succeed, and the
/// result is one copy of every rule.
#[test]
fn concurrent_applies_converge_to_one_copy() {
    let ns = Netns::new("race");
    let dir = TempDir::new("race");
    let cfg = dir.default_config();
    let name = ns.name.clone();
    let run = ns.run_dir().to_path_buf();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (name, cfg, run) = (name.clone(), cfg.clone(), run.clone());
            std::thread::spawn(move || ehn_with_run_dir(&run, &["--netns", &name, "apply", "-c", &cfg]))
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect_code(0);
    }
    let listed = ns.ruleset();
    assert_eq!(tables(&listed).len(), 2, "{listed}");
    assert_eq!(assert_unique_ids(&listed).len(), DEFAULT_RULES, "{listed}");
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1");
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "0", "the value found before the race was 0");
}

/// route_localnet on a listed interface that does not exist yet: apply
/// succeeds (reported, skipped); once the interface appears check reports
/// drift and apply sets it; remove restores it.
#[test]
fn route_localnet_interface_appearing_later() {
    let ns = Netns::new("later");
    let dir = TempDir::new("later");
    let cfg = dir.write("later.toml", "[route_localnet]\nenable = [\"docker0\"]\n");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "0");

    ns.ip(&["link", "add", "docker0", "type", "bridge"]);
    assert_eq!(ns.sysctl("net.ipv4.conf.docker0.route_localnet"), "0");
    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.sysctl("net.ipv4.conf.docker0.route_localnet"), "1");
    assert_eq!(ns.route_localnet(), "0");

    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.sysctl("net.ipv4.conf.docker0.route_localnet"), "0");
    assert_eq!(ns.ruleset(), "");
}

/// Tables named ecs-hostnet in OTHER families (ip6, bridge, netdev) are not
/// ours: apply and remove leave them exactly as they are.
#[test]
fn same_name_in_other_families_is_not_ours() {
    let ns = Netns::new("samename");
    let dir = TempDir::new("samename");
    let cfg = dir.default_config();
    ns.nft_load(
        &dir,
        r#"table ip6 ecs-hostnet {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 counter accept comment "localhost-guard"
	}
}
table bridge ecs-hostnet {
	chain forward {
		type filter hook forward priority filter; policy accept;
		counter
	}
}
table netdev ecs-hostnet {
}
"#,
    );
    let before = ns.ruleset_handles();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(foreign_tables(&ns.ruleset_handles()), tables(&before));
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset_handles(), before);
}

/// A converged apply sends no batch at all: `nft monitor` in the namespace
/// (an independent listener on the nf_tables event group) sees no event
/// during the second apply, while it does see the first one.
#[test]
fn converged_apply_sends_no_batch() {
    let ns = Netns::new("quiet");
    let dir = TempDir::new("quiet");
    let cfg = dir.default_config();
    let monitor = |label: &str| -> String {
        let log = dir.path().join(format!("monitor-{label}.log"));
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "nft", "monitor", "ruleset"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn nft monitor");
        // Give nft time to subscribe before the apply.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = ns.ehn(&["apply", "-c", &cfg]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = child.kill();
        let _ = child.wait();
        out.expect_code(0);
        std::fs::read_to_string(&log).unwrap()
    };
    let first = monitor("first");
    assert!(first.contains("add rule ip ecs-hostnet prerouting"), "monitor saw no events of the first apply:\n{first}");
    let second = monitor("second");
    assert_eq!(second, "", "a converged apply changed the rule set");
}

/// Someone sets our table dormant (every rule switched off while still
/// listed): check reports drift, apply restores a live table.
#[test]
fn dormant_table_is_drift() {
    let ns = Netns::new("dormant");
    let dir = TempDir::new("dormant");
    let cfg = dir.default_config();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.nft(&["add", "table", "inet", "ecs-hostnet", "{ flags dormant; }"]);
    assert!(ns.ruleset().contains("flags dormant"));
    let out = ns.ehn(&["check", "-c", &cfg]);
    out.expect_code(2);
    assert!(out.stdout.contains("dormant"), "check does not say why:\n{out}");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert!(!ns.ruleset().contains("flags dormant"));
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
}

// ---------------------------------------------------------------------------
// the run directory: lock and saved route_localnet record
// ---------------------------------------------------------------------------

/// An exclusive flock(2) on a file, held by the test until dropped.
struct HeldLock {
    _file: std::fs::File,
}

fn hold_lock(path: &std::path::Path) -> HeldLock {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: flock(2) on the descriptor of `f`, open while `f` lives.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "cannot lock {}: {}", path.display(), std::io::Error::last_os_error());
    HeldLock { _file: f }
}

/// Runs `f` on a thread; returns its handle and start time.
fn spawn_timed<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<(T, std::time::Duration)> {
    std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        let v = f();
        (v, t0.elapsed())
    })
}

/// A second caller waits while apply/remove's lock is held, and proceeds
/// once it is released.
#[test]
fn lock_makes_apply_and_remove_wait() {
    let ns = Netns::new("lockw");
    let dir = TempDir::new("lockw");
    let cfg = dir.default_config();
    let lock = hold_lock(&ns.run_dir().join("lock"));
    let (name, run, c) = (ns.name.clone(), ns.run_dir().to_path_buf(), cfg.clone());
    let h = spawn_timed(move || ehn_with_run_dir(&run, &["--netns", &name, "apply", "-c", &c]));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(!h.is_finished(), "apply did not wait for the lock");
    assert_eq!(ns.ruleset(), "", "apply changed the rule set while another holder had the lock");
    assert_eq!(ns.route_localnet(), "0");
    drop(lock);
    let (out, took) = h.join().unwrap();
    out.expect_code(0);
    assert!(took >= std::time::Duration::from_millis(1400), "{took:?}");
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);

    let lock = hold_lock(&ns.run_dir().join("lock"));
    let (name, run, c) = (ns.name.clone(), ns.run_dir().to_path_buf(), cfg.clone());
    let h = spawn_timed(move || ehn_with_run_dir(&run, &["--netns", &name, "remove", "-c", &c]));
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(!h.is_finished(), "remove did not wait for the lock");
    assert_eq!(our_rules(&ns.ruleset()).len(), DEFAULT_RULES);
    drop(lock);
    h.join().unwrap().0.expect_code(0);
    assert_eq!(ns.ruleset(), "");
    assert_eq!(ns.route_localnet(), "0");
}

/// A lock held for longer than 30 s: apply and remove give up with exit 1
/// and a message naming "another ecs-hostnet", and change nothing.
#[test]
fn lock_held_too_long_is_an_error() {
    let ns = Netns::new("lockt");
    let dir = TempDir::new("lockt");
    let cfg = dir.default_config();
    let _lock = hold_lock(&ns.run_dir().join("lock"));
    let handles: Vec<_> = ["apply", "remove"]
        .into_iter()
        .map(|sub| {
            let (name, run, c) = (ns.name.clone(), ns.run_dir().to_path_buf(), cfg.clone());
            spawn_timed(move || ehn_with_run_dir(&run, &["--netns", &name, sub, "-c", &c]))
        })
        .collect();
    for h in handles {
        let (out, took) = h.join().unwrap();
        out.expect_code(1);
        assert!(out.stderr.contains("another ecs-hostnet"), "{out}");
        // one error line (after the `configuration: ...` line every command prints)
        let errs: Vec<&str> =
            out.stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("configuration: ")).collect();
        assert_eq!(errs.len(), 1, "want one error line: {out}");
        assert!(took >= std::time::Duration::from_secs(29), "gave up after {took:?}: {out}");
        assert!(took < std::time::Duration::from_secs(45), "waited {took:?}: {out}");
    }
    assert_eq!(ns.ruleset(), "");
    assert_eq!(ns.route_localnet(), "0");
}

/// Files under `<run dir>/route_localnet/`.
fn saved_records(run_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(run_dir.join("route_localnet")) {
        Ok(rd) => {
            let mut v: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect();
            v.sort();
            v
        }
        Err(_) => vec![],
    }
}

/// The value of route_localnet found before ecs-hostnet first set it
/// survives someone deleting our tables (`nft flush ruleset`, or `nft delete
/// table inet ecs-hostnet`): apply (0 -> 1), lose the table, apply, remove
/// => 0 again. The saved copy lives under $ECS_HOSTNET_RUN_DIR/route_localnet/.
#[test]
fn route_localnet_record_survives_a_lost_table() {
    let dir = TempDir::new("lost");
    let cfg = dir.default_config();
    let lose: [&[&str]; 2] = [&["flush", "ruleset"], &["delete", "table", "inet", "ecs-hostnet"]];
    for how in lose {
        let ns = Netns::new("lost");
        ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
        assert_eq!(ns.route_localnet(), "1");
        let files = saved_records(ns.run_dir());
        assert_eq!(files.len(), 1, "one saved record under {}/route_localnet: {files:?}", ns.run_dir().display());
        ns.nft(how);
        assert!(!ns.ruleset().contains("table inet ecs-hostnet"));
        assert_eq!(ns.route_localnet(), "1", "nft does not touch the sysctl");
        ns.ehn(&["check", "-c", &cfg]).expect_code(2);
        let plan = ns.ehn(&["plan", "-c", &cfg]);
        plan.expect_code(2);
        assert!(plan.stdout.contains("no localhost guard is live"), "plan must say the guard is gone: {plan}");
        assert!(!plan.stdout.contains("no earlier value is recorded"), "the saved record was not used: {plan}");
        ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
        ns.ehn(&["check", "-c", &cfg]).expect_code(0);
        assert_eq!(ns.route_localnet(), "1");
        ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
        assert_eq!(ns.route_localnet(), "0", "after `nft {}`, remove must restore the 0 found first", how.join(" "));
        assert_eq!(ns.ruleset(), "");

        // the record ends with remove: a later first apply records afresh
        ns.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
        ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
        ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
        assert_eq!(ns.route_localnet(), "1", "value found before this apply was 1 (a stale saved record was used)");
    }
}

/// The saved record is per network namespace: two namespaces sharing one
/// run directory keep their own original values.
#[test]
fn saved_record_is_per_namespace() {
    let dir = TempDir::new("pern");
    let shared = TempDir::new("pern-run");
    let cfg = dir.default_config();
    let one = Netns::new("pern1");
    let zero = Netns::new("pern0");
    one.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    let run = |ns: &Netns, sub: &str| ehn_with_run_dir(shared.path(), &["--netns", &ns.name, sub, "-c", &cfg]);
    for ns in [&one, &zero] {
        run(ns, "apply").expect_code(0);
        assert_eq!(ns.route_localnet(), "1");
    }
    assert_eq!(saved_records(shared.path()).len(), 2, "{:?}", saved_records(shared.path()));
    for ns in [&one, &zero] {
        ns.nft(&["flush", "ruleset"]);
    }
    for ns in [&one, &zero] {
        run(ns, "apply").expect_code(0);
    }
    for ns in [&zero, &one] {
        run(ns, "remove").expect_code(0);
        assert_eq!(ns.ruleset(), "");
    }
    assert_eq!(one.route_localnet(), "1", "namespace whose original value was 1");
    assert_eq!(zero.route_localnet(), "0", "namespace whose original value was 0");
}

// ---------------------------------------------------------------------------
// concurrency
// ---------------------------------------------------------------------------

/// `rounds` rounds of `n` parallel applies on one namespace (remove between
/// rounds), optionally under `setarch --uname-2.6`. `shared_lock`: every
/// process uses the namespace's run directory (they serialise on the lock);
/// otherwise each has its own, so the batches really race in the kernel
/// (the rule-set generation in the batch must make the losers re-plan).
fn racing_applies(role: &str, uname26: bool, shared_lock: bool, n: usize, rounds: usize) {
    let ns = Netns::new(role);
    let dir = TempDir::new(role);
    // Without the lock only the nf_tables part is transactional (the batch
    // carries the rule-set generation): leave the endpoint route out there.
    let cfg = if shared_lock {
        dir.default_config()
    } else {
        dir.write("noroute.toml", "[credentials]\nendpoint_route_via_lo = \"never\"\n")
    };
    let wrap: Vec<String> = if uname26 { uname26_wrap() } else { vec![] };
    for round in 1..=rounds {
        let runs: Vec<TempDir> = (0..n).map(|_| TempDir::new(&format!("{role}-r"))).collect();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let run = if shared_lock { ns.run_dir().to_path_buf() } else { runs[i].path().to_path_buf() };
                let (name, cfg, wrap) = (ns.name.clone(), cfg.clone(), wrap.clone());
                std::thread::spawn(move || {
                    let w: Vec<&str> = wrap.iter().map(String::as_str).collect();
                    ehn_cmd(&run, &w, &["--netns", &name, "apply", "-c", &cfg])
                })
            })
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert!(out.code == 0 && !out.stderr.contains("panicked"), "round {round}: {out}");
        }
        let listed = ns.ruleset();
        assert_eq!(tables(&listed).len(), 2, "round {round}:\n{listed}");
        assert_eq!(assert_unique_ids(&listed).len(), DEFAULT_RULES, "round {round}:\n{listed}");
        ns.ehn(&["check", "-c", &cfg]).expect_code(0);
        assert_eq!(ns.route_localnet(), "1", "round {round}");
        let out = if uname26 { ns.ehn_uname26(&["remove", "-c", &cfg]) } else { ns.ehn(&["remove", "-c", &cfg]) };
        out.expect_code(0);
        assert_eq!(ns.ruleset(), "", "round {round}");
        assert_eq!(ns.route_localnet(), "0", "round {round}: the value found before the race was 0");
        assert_eq!(endpoint_routes(&ns), "", "round {round}: remove left a route");
    }
}

/// Routes to the credentials endpoint in any routing table of `ns` (apply
/// adds `169.254.170.2/32 dev lo` on hosts without an IPv4 default route).
fn endpoint_routes(ns: &Netns) -> String {
    ns.ip(&["route", "show", "table", "all", "169.254.170.2"]).trim().to_string()
}

/// Issue: on kernels before 6.10 nftnl does not ask for ACKs of the batch
/// begin/end messages (decided from uname). `setarch --uname-2.6` makes it
/// take that path here: parallel applies all succeed, one copy of each rule.
#[test]
fn concurrent_applies_pre_6_10_batch_path() {
    let wrap = uname26_wrap();
    let r = run_cmd(&wrap[0], &[wrap[1].as_str(), wrap[2].as_str(), "uname", "-r"], std::time::Duration::from_secs(5));
    assert!(r.ok() && r.stdout.starts_with("2.6."), "setarch --uname-2.6 does not work here: {r}");
    racing_applies("race26", true, true, 6, 10);
}

/// The same without the lock (each process its own run directory), so the
/// batches race in the kernel, on the pre-6.10 path and on the native one.
#[test]
fn concurrent_applies_without_the_lock_converge() {
    racing_applies("race26nl", true, false, 6, 10);
    racing_applies("racenl", false, false, 6, 10);
}

/// apply racing remove: 3 applies + 3 removes in parallel on one namespace,
/// 20 rounds. Each process exits 0 (or 1 because of the lock); the end
/// state is consistent: everything of ours with route_localnet 1, or
/// nothing of ours with route_localnet back to 0.
#[test]
fn apply_racing_remove_ends_consistent() {
    let ns = Netns::new("applyrm");
    let dir = TempDir::new("applyrm");
    let cfg = dir.default_config();
    let mut seen = std::collections::BTreeMap::new();
    for round in 1..=20 {
        let handles: Vec<_> = ["apply", "remove", "apply", "remove", "apply", "remove"]
            .into_iter()
            .map(|sub| {
                let (name, run, cfg) = (ns.name.clone(), ns.run_dir().to_path_buf(), cfg.clone());
                std::thread::spawn(move || ehn_with_run_dir(&run, &["--netns", &name, sub, "-c", &cfg]))
            })
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            let ok = out.code == 0 || (out.code == 1 && out.stderr.contains("another ecs-hostnet"));
            assert!(ok && !out.stderr.contains("panicked"), "round {round}: {out}");
        }
        let listed = ns.ruleset();
        let ours: Vec<String> = tables(&listed).keys().filter(|k| k.ends_with(" ecs-hostnet")).cloned().collect();
        let rl = ns.route_localnet();
        if ours.is_empty() {
            assert_eq!(rl, "0", "round {round}: no table of ours but route_localnet is {rl}\n{listed}");
            assert_eq!(listed, "", "round {round}");
            assert_eq!(endpoint_routes(&ns), "", "round {round}: no table of ours but a route left");
            *seen.entry("removed").or_insert(0) += 1;
        } else {
            assert_eq!(ours.len(), 2, "round {round}: half of our tables:\n{listed}");
            assert_eq!(assert_unique_ids(&listed).len(), DEFAULT_RULES, "round {round}:\n{listed}");
            ns.ehn(&["check", "-c", &cfg]).expect_code(0);
            assert_eq!(rl, "1", "round {round}: our tables but route_localnet {rl}");
            *seen.entry("applied").or_insert(0) += 1;
        }
    }
    eprintln!("end states: {seen:?}");
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.route_localnet(), "0", "the value found before the first apply was 0");
}

// ---------------------------------------------------------------------------
// hostile state in the kernel
// ---------------------------------------------------------------------------

/// Plant `table inet ecs-hostnet` (comment "x") whose userdata holds
/// `record`, through the crate's own kernel layer, from a thread inside `ns`.
fn plant_record(ns: &Netns, record: ecs_hostnet::model::record::Record) {
    ns.run(move || {
        use ecs_hostnet::host::nft::Netfilter;
        use ecs_hostnet::model::ops::Op;
        use ecs_hostnet::model::ruleset::Family;
        let mut nf = Netfilter::open().expect("open netfilter socket");
        let generation = nf.generation().expect("generation");
        nf.commit(
            &[Op::AddTable { family: Family::Inet, name: "ecs-hostnet".into(), comment: "x".into(), record }],
            generation,
        )
        .expect("plant the table");
    });
}

/// Content and mtime of every file under `root` (symlinks as their target).
fn snapshot(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            out.push(format!("{} -> {:?}", p.display(), std::fs::read_link(&p).unwrap()));
        } else if md.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
            out.push(format!("{}/", p.display()));
        } else {
            out.push(format!(
                "{} {:?} {:?}",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default(),
                md.modified().ok()
            ));
        }
    }
    out.sort();
    out
}

/// A record key that is a path: `table inet ecs-hostnet`'s userdata can be
/// written by anyone with CAP_NET_ADMIN in the namespace, and the keys
/// become /proc/sys paths. plan/check/apply/remove must not write (or read
/// and show) anything outside /proc/sys, nor print the path as a sysctl.
#[test]
fn hostile_record_key_is_not_a_path() {
    let trap = TempDir::new("trap");
    let cfg = trap.default_config();
    // <trap>/x/route_localnet (a file) and <trap>/link -> <trap>/target/ (a
    // directory holding route_localnet): what `/proc/sys/net/ipv4/conf/` +
    // "../../../../.." + <trap>/x resolves to.
    std::fs::create_dir(trap.path().join("x")).unwrap();
    std::fs::write(trap.path().join("x/route_localnet"), "sentinel-x\n").unwrap();
    std::fs::create_dir(trap.path().join("target")).unwrap();
    std::fs::write(trap.path().join("target/route_localnet"), "sentinel-link\n").unwrap();
    std::os::unix::fs::symlink(trap.path().join("target"), trap.path().join("link")).unwrap();
    let up = "../../../../..";
    let via_x = format!("{up}{}/x", trap.path().display());
    let via_link = format!("{up}{}/link", trap.path().display());
    assert!(
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{via_x}/route_localnet"))
            .unwrap()
            .starts_with("sentinel-x")
    );
    let tmp_x_existed = std::path::Path::new("/tmp/x").exists();
    let before = snapshot(trap.path());

    let records: Vec<Vec<(String, &str)>> = vec![
        vec![("../../../../tmp/x".to_string(), "1")],
        vec![(via_x.clone(), "1")],
        vec![("all".to_string(), "0"), (via_link.clone(), "1")],
        vec![("../../../../tmp/x".to_string(), "1"), (via_x.clone(), "0"), (via_link.clone(), "1")],
    ];
    let mut codes = Vec::new();
    for rec in records {
        let ns = Netns::new("hostile");
        let record: ecs_hostnet::model::record::Record = rec.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        plant_record(&ns, record.clone());
        assert!(ns.ruleset().contains("table inet ecs-hostnet"));
        let mut got = Vec::new();
        for sub in ["plan", "check", "apply", "plan", "remove"] {
            let out = ns.ehn(&[sub, "-c", &cfg]);
            assert!(out.code != 101 && !out.stderr.contains("panicked"), "{out}");
            for text in [&out.stdout, &out.stderr] {
                assert!(!text.contains("net.ipv4.conf.."), "{sub} shows a path as a sysctl: {out}");
                for l in text.lines() {
                    let change = l.starts_with("+ sysctl") || l.starts_with("~ sysctl") || l.starts_with("- sysctl");
                    assert!(
                        !(change && (l.contains("..") || l.contains('/'))),
                        "{sub} plans a path as a sysctl: {out}"
                    );
                }
                assert!(!text.contains("sentinel"), "{sub} read the trap file: {out}");
            }
            assert_eq!(snapshot(trap.path()), before, "{sub} with record {record:?} wrote outside /proc/sys: {out}");
            if !tmp_x_existed {
                assert!(!std::path::Path::new("/tmp/x").exists(), "{sub} created /tmp/x: {out}");
            }
            got.push(format!("{sub}={}", out.code));
        }
        // what remove leaves: nothing of ours
        assert!(!ns.ruleset().contains("ecs-hostnet"), "{}", ns.ruleset());
        codes.push(format!("{:?}: {}", rec.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), got.join(" ")));
    }
    eprintln!("exit codes with a hostile record:\n  {}", codes.join("\n  "));

    // the same through the saved copy under the run directory
    let ns = Netns::new("hostile-f");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let files = saved_records(ns.run_dir());
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::write(&files[0], format!("route_localnet:{via_x}=1,{via_link}=1")).unwrap();
    ns.nft(&["delete", "table", "inet", "ecs-hostnet"]);
    for sub in ["plan", "apply", "remove"] {
        let out = ns.ehn(&[sub, "-c", &cfg]);
        assert!(out.code != 101 && !out.stderr.contains("panicked"), "{out}");
        assert!(!out.stdout.contains("net.ipv4.conf..") && !out.stdout.contains("sentinel"), "{out}");
        assert_eq!(snapshot(trap.path()), before, "{sub} with a hostile saved record wrote outside /proc/sys: {out}");
    }
}

/// Chain policy drift (`policy drop` on our input chain) is fixed in place:
/// the rules of table ip ecs-hostnet and of the other chains keep their
/// handles.
#[test]
fn chain_policy_drift_is_fixed_in_place() {
    let ns = Netns::new("policy");
    let dir = TempDir::new("policy");
    let cfg = dir.default_config();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let key = |r: &Rule| (r.family.clone(), r.chain.clone(), r.comment.clone(), r.handle);
    let before: Vec<_> = our_rules(&ns.ruleset_handles()).iter().map(key).collect();
    let table_handles = |listed: &str| -> Vec<String> {
        listed.lines().filter(|l| l.starts_with("table ")).map(str::to_string).collect()
    };
    let tables_before = table_handles(&ns.ruleset_handles());
    ns.nft(&["add", "chain", "inet", "ecs-hostnet", "input", "{ type filter hook input priority 0; policy drop; }"]);
    assert!(chain_headers(&ns.ruleset())["inet ecs-hostnet input"].contains("policy drop"));

    ns.ehn(&["check", "-c", &cfg]).expect_code(2);
    let plan = ns.ehn(&["plan", "-c", &cfg]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("  table inet ecs-hostnet {\n~   chain input  # modified by someone: policy drop -> accept"),
        "plan must name the chain and the policy change: {plan}"
    );
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    let listed = ns.ruleset_handles();
    assert!(chain_headers(&listed)["inet ecs-hostnet input"].contains("policy accept"), "{listed}");
    let after: Vec<_> = our_rules(&listed).iter().map(key).collect();
    let others = |v: &[(String, String, Option<String>, Option<u64>)]| -> Vec<_> {
        v.iter().filter(|(f, c, _, _)| f == "ip" || c != "input").cloned().collect::<Vec<_>>()
    };
    assert_eq!(others(&after), others(&before), "rules outside the input chain were re-created:\n{listed}");
    assert_eq!(table_handles(&listed), tables_before, "a table was re-created:\n{listed}");
    let input = |v: &[(String, String, Option<String>, Option<u64>)]| -> Vec<_> {
        v.iter().filter(|(f, c, _, _)| f == "inet" && c == "input").cloned().collect::<Vec<_>>()
    };
    eprintln!(
        "input chain rule handles kept: {} (before {:?}, after {:?})",
        input(&after) == input(&before),
        input(&before),
        input(&after)
    );
}

/// A foreign rule in our input chain whose comment holds an ESC byte and a
/// newline: plan/check print it escaped (no raw ESC, not split over lines)
/// and report it as added by someone; apply removes it.
#[test]
fn foreign_comment_with_control_characters_is_escaped() {
    let ns = Netns::new("esc");
    let dir = TempDir::new("esc");
    let cfg = dir.default_config();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let comment = "\u{1b}[8mhidden\nforged-line \u{1b}]0;title\u{7}";
    let doc = serde_json::json!({"nftables": [{"insert": {"rule": {
        "family": "inet", "table": "ecs-hostnet", "chain": "input", "comment": comment,
        "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9999}},
            {"accept": null}
        ]
    }}}]});
    let f = dir.write("esc.json", &doc.to_string());
    ns.nft(&["-j", "-f", &f]);
    assert!(ns.nft(&["list", "ruleset"]).contains('\u{1b}'), "nft stored the raw ESC");

    for sub in ["plan", "check"] {
        let out = ns.ehn(&[sub, "-c", &cfg]);
        out.expect_code(2);
        for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(!text.as_bytes().contains(&0x1b), "{sub} {what} has a raw ESC byte: {:?}", text);
            assert!(!text.as_bytes().contains(&0x07), "{sub} {what} has a raw BEL byte: {:?}", text);
        }
        let lines: Vec<&str> =
            out.stdout.lines().filter(|l| l.contains("hidden") || l.contains("forged-line")).collect();
        assert!(!lines.is_empty(), "{sub} does not show the foreign rule's comment: {out}");
        for l in &lines {
            assert!(l.contains("hidden") && l.contains("forged-line"), "{sub} split the comment over lines: {out}");
        }
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("forged-line")),
            "{sub}: the comment forged a line of its own: {out}"
        );
        assert!(
            out.stdout.contains("  table inet ecs-hostnet {\n    chain input {\n-     tcp dport 9999 accept comment")
                && lines.iter().any(|l| l.starts_with("-     ") && l.contains("added by someone")),
            "{sub} must report the rule as added by someone: {out}"
        );
    }
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert!(!ns.ruleset().contains("hidden"));
}

/// Container patterns whose ranges touch (`veth0*` ends where `veth1*` starts) sit in
/// the IMDS set merged, as nft merges them: apply converges (a second apply changes no
/// handle), and `render | nft -f` gives the same rule set. And the documented maximum of
/// 1024 patterns applies (the set's elements span several messages).
#[test]
fn adjacent_and_maximal_pattern_sets() {
    let ns = Netns::new("adj");
    let oracle = Netns::new("adjo");
    let dir = TempDir::new("adj");
    let cfg =
        dir.write("adj.toml", "[containers]\ninterfaces = [\"veth0+\", \"veth1+\", \"br-+\", \"br.+\", \"docker0\"]\n");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let before = ns.ruleset_handles();
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset_handles(), before, "a second apply changed the rule set");
    ns.ehn(&["check", "-c", &cfg]).expect_code(0);
    let render = ehn(&["render", "--format", "nft", "-c", &cfg]);
    render.expect_code(0);
    assert!(
        render.stdout.contains("iifname { \"br-*\", \"br.*\", \"docker0\", \"veth0*\", \"veth1*\" }"),
        "{}",
        render.stdout
    );
    let script = dir.write("adj.nft", &render.stdout);
    oracle.nft(&["-f", &script]);
    assert_eq!(oracle.ruleset(), ns.ruleset());

    let names: Vec<String> = (0..1024).map(|i| format!("\"n{i}x\"")).collect();
    let big = dir.write("big.toml", &format!("[containers]\ninterfaces = [{}]\n", names.join(", ")));
    ns.ehn(&["apply", "-c", &big]).expect_code(0);
    ns.ehn(&["check", "-c", &big]).expect_code(0);
    assert_eq!(our_rules(&ns.ruleset()).len(), 1024 + 8);
    ns.ehn(&["remove", "-c", &big]).expect_code(0);
    assert_eq!(ns.ruleset(), "");
}

/// A chain the configuration no longer has (the IMDS block's `forward`) is deleted in
/// place, with its rules listed by `plan`: the other chains' rules keep their handles and
/// counters, and the result equals `nft -f` of the new rendering.
#[test]
fn a_dropped_chain_is_deleted_in_place() {
    require_root();
    let ns = Netns::new("dropchain");
    let dir = TempDir::new("dropchain");
    let cfg = dir.default_config();
    let no_imds = dir.write("noimds.toml", "[imds_block]\nenabled = false\n");
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let input_before: Vec<String> = ns
        .ruleset_handles()
        .lines()
        .filter(|l| l.contains("localhost-guard") || l.contains("introspection-guard"))
        .map(str::to_string)
        .collect();
    assert_eq!(input_before.len(), 3, "{}", ns.ruleset_handles());
    let plan = ns.ehn(&["plan", "-c", &no_imds, "--format", "json"]);
    plan.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let removed: Vec<&str> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "remove")
        .filter_map(|c| c["id"].as_str().or(c["chain"].as_str()))
        .collect();
    assert_eq!(
        removed,
        ["forward", "imds-audit-ipv4", "imds-block-ipv4", "imds-audit-ipv6", "imds-block-ipv6"],
        "{plan}"
    );
    assert_eq!(doc["summary"], serde_json::json!({"add": 0, "change": 0, "remove": 5}), "{plan}");
    ns.ehn(&["apply", "-c", &no_imds]).expect_code(0);
    ns.ehn(&["check", "-c", &no_imds]).expect_code(0);
    let after = ns.ruleset_handles();
    assert!(!after.contains("chain forward"), "{after}");
    let input_after: Vec<String> = after
        .lines()
        .filter(|l| l.contains("localhost-guard") || l.contains("introspection-guard"))
        .map(str::to_string)
        .collect();
    assert_eq!(input_after, input_before, "the input chain's rules must keep their handles");
}
