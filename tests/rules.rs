//! The rule set the binary keeps in the kernel: its shape, idempotency,
//! foreign state, drift, the nft oracle, and removal. Each test uses fresh,
//! bare namespaces (no traffic needed).

mod support;

use std::collections::BTreeSet;

use support::*;

/// Number of rules the default configuration must produce:
/// 3 container patterns x (DNAT + IMDS v4 + IMDS v6) + REDIRECT + 2 guards.
const DEFAULT_RULES: usize = 3 * 3 + 1 + 2;

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
    let r = our_rule_matching(&ns, "forward", "iifname \"docker*\" ip6 daddr");
    let id = r.comment.clone().unwrap();
    let altered = r.text.replace("fd00:ec2::254", "fd00:ec2::253");
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
    ns.nft(&["add", "rule", "inet", "ecs-hostnet", "input", "tcp", "dport", "9999", "accept", "comment", "\"intruder\""]);
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
    let off = dir.write(
        "off.toml",
        "[route_localnet]\nenable = \"off\"\n\n[credentials]\nenabled = false\n",
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
    ehn(&["--netns", &by_run, "apply", "-c", &cfg]).expect_code(0);
    assert_eq!(our_rules(&ns.ruleset()).len(), DEFAULT_RULES);
    assert_eq!(ns.route_localnet(), "1");

    // a process living in the namespace
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "30"])
        .spawn()
        .expect("spawn sleep");
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
    ehn(&["check", "--netns", &by_proc, "-c", &cfg]).expect_code(0);
    ehn(&["--netns", &by_proc, "remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset(), "");
    assert_eq!(ns.route_localnet(), "0");
}

/// Hundreds of rules in one transaction (the fact sheet: naive batching
/// breaks past ~480 rules): 200 container patterns -> 603 rules.
#[test]
fn large_ruleset() {
    let ns = Netns::new("large");
    let oracle = Netns::new("largeo");
    let dir = TempDir::new("large");
    let pats: Vec<String> = (0..200).map(|i| format!("\"c{i}x+\"")).collect();
    let cfg = dir.write("large.toml", &format!("[containers]\ninterfaces = [{}]\n", pats.join(", ")));
    ns.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let listed = ns.ruleset();
    assert_eq!(our_rules(&listed).len(), 200 * 3 + 3);
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
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (name, cfg) = (name.clone(), cfg.clone());
            std::thread::spawn(move || ehn(&["--netns", &name, "apply", "-c", &cfg]))
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
