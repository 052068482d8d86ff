//! ecs-init (the ECS agent's init service, on every ECS-optimized AMI) beside ecs-hostnet,
//! with real `iptables-nft` and, separately, `iptables-legacy` in a test namespace.
//!
//! ecs-init's pre-start adds, at every agent start, a credentials DNAT with no interface
//! match, its own localhost filter (which exempts DNATed packets), the introspection rules
//! and the host REDIRECT; its post-stop deletes them and copies route_localnet's default
//! into `all` (aws/amazon-ecs-agent `ecs-init/exec/iptables/iptables.go`). ecs.service runs
//! ecs-init's pre-start first, then our drop-in's `ecs-hostnet apply`. These tests run that
//! order for a boot and an agent restart and check, with real traffic, that a neighbour on
//! the uplink never reaches the agent (ecs-init's DNAT would serve it if our guard exempted
//! DNATed packets from the uplink), that containers and host processes do, and that the
//! restart leaves our rules and their handles as they were.

mod support;

use support::*;

/// One of ecs-init's rules: IPv6 (ip6tables) or not, table, chain, inserted (`-I`) or
/// appended (`-A`), and the match and target, as ecs-init passes them.
struct EcsInitRule {
    ipv6: bool,
    table: &'static str,
    chain: &'static str,
    insert: bool,
    spec: &'static [&'static str],
}

/// ecs-init's pre-start rules in the order it adds them (defaults: the localhost filter on,
/// off-host introspection off, docker0 the default bridge).
const ECS_INIT_RULES: &[EcsInitRule] = &[
    EcsInitRule {
        ipv6: false,
        table: "nat",
        chain: "PREROUTING",
        insert: false,
        spec: &[
            "-p",
            "tcp",
            "-d",
            "169.254.170.2",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            "127.0.0.1:51679",
        ],
    },
    EcsInitRule {
        ipv6: false,
        table: "filter",
        chain: "INPUT",
        insert: true,
        spec: &[
            "--dst",
            "127.0.0.0/8",
            "!",
            "--src",
            "127.0.0.0/8",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "DROP",
        ],
    },
    EcsInitRule {
        ipv6: false,
        table: "filter",
        chain: "INPUT",
        insert: true,
        spec: &["-p", "tcp", "--dport", "51678", "!", "-i", "lo", "-j", "DROP"],
    },
    EcsInitRule {
        ipv6: false,
        table: "filter",
        chain: "INPUT",
        insert: true,
        spec: &["-p", "tcp", "--dport", "51678", "-i", "docker0", "-j", "ACCEPT"],
    },
    EcsInitRule {
        ipv6: true,
        table: "filter",
        chain: "INPUT",
        insert: true,
        spec: &["-p", "tcp", "--dport", "51678", "!", "-i", "lo", "-j", "DROP"],
    },
    EcsInitRule {
        ipv6: true,
        table: "filter",
        chain: "INPUT",
        insert: true,
        spec: &["-p", "tcp", "--dport", "51678", "-i", "docker0", "-j", "ACCEPT"],
    },
    EcsInitRule {
        ipv6: false,
        table: "nat",
        chain: "OUTPUT",
        insert: false,
        spec: &["-p", "tcp", "-d", "169.254.170.2", "--dport", "80", "-j", "REDIRECT", "--to-ports", "51679"],
    },
];

/// The iptables flavour ecs-init's commands go through: `"nft"` or `"legacy"`.
fn iptables(ns: &Netns, backend: &str, ipv6: bool, args: &[&str]) -> String {
    let prog = format!("{}-{backend}", if ipv6 { "ip6tables" } else { "iptables" });
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    let out = ns.exec(&prog, &all);
    assert!(out.ok(), "{prog} {}: {out}", all.join(" "));
    out.stdout
}

/// `amazon-ecs-init pre-start`: route_localnet on, then the rules (no existence check).
fn pre_start(ns: &Netns, backend: &str) {
    ns.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    for r in ECS_INIT_RULES {
        let mut args = vec!["-t", r.table, if r.insert { "-I" } else { "-A" }, r.chain];
        args.extend_from_slice(r.spec);
        iptables(ns, backend, r.ipv6, &args);
    }
}

/// `amazon-ecs-init post-stop`: route_localnet's default copied into `all`, the rules
/// deleted (each must have been there: the delete fails otherwise).
fn post_stop(ns: &Netns, backend: &str) {
    let default = ns.sysctl("net.ipv4.conf.default.route_localnet");
    ns.set_sysctl("net.ipv4.conf.all.route_localnet", &default);
    for r in ECS_INIT_RULES {
        let mut args = vec!["-t", r.table, "-D", r.chain];
        args.extend_from_slice(r.spec);
        iptables(ns, backend, r.ipv6, &args);
    }
}

/// ecs-init's rules as `iptables -S` lists them (both families, both tables).
fn ecs_init_listing(ns: &Netns, backend: &str) -> String {
    let mut s = String::new();
    for (ipv6, table) in [(false, "nat"), (false, "filter"), (true, "filter")] {
        s.push_str(&iptables(ns, backend, ipv6, &["-t", table, "-S"]));
    }
    s
}

/// (handle, id) of each of our rules.
fn our_handles(ns: &Netns) -> Vec<(Option<u64>, Option<String>)> {
    our_rules(&ns.ruleset_handles()).into_iter().map(|r| (r.handle, r.comment)).collect()
}

/// Who reaches the agent (127.0.0.1:51679 in the host) and who does not.
fn assert_only_containers_and_the_host_reach_the_agent(t: &Topology, stage: &str) {
    let (h, c, n) = (&t.host, &t.container, &t.neighbour);
    assert_probes(
        stage,
        &[
            probe("neighbour credentials endpoint", n, "169.254.170.2:80", None),
            probe("neighbour host 127.0.0.1", n, "127.0.0.1:51679", None),
            probe("container credentials endpoint", c, "169.254.170.2:80", Some(CREDS_BODY)),
            probe("host process credentials endpoint", h, "169.254.170.2:80", Some(CREDS_BODY)),
            probe("host process 127.0.0.1", h, "127.0.0.1:51679", Some(CREDS_BODY)),
            probe("container introspection", c, "172.17.0.1:51678", Some(INTRO_BODY)),
            probe("neighbour introspection", n, "192.0.2.1:51678", None),
        ],
    );
}

/// A boot (ecs-init pre-start, our apply), an agent restart (post-stop, pre-start, our
/// apply) with ecs-init's rules loaded through `backend`, and a control that shows the
/// neighbour test can fail.
fn boot_and_agent_restart(backend: &str) {
    let t = Topology::new();
    let cfg = t.dir.default_config();

    // Boot: ecs.service's ExecStartPre runs ecs-init's pre-start, then our hook.
    pre_start(&t.host, backend);
    let listed = ecs_init_listing(&t.host, backend);
    assert!(listed.contains("-j DNAT --to-destination 127.0.0.1:51679"), "{backend}: {listed}");
    let nft_tables = t.host.ruleset();
    // iptables-legacy keeps its rules outside nf_tables; iptables-nft puts them in `ip nat`.
    assert_eq!(nft_tables.contains("table ip nat"), backend == "nft", "{backend}:\n{nft_tables}");
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_only_containers_and_the_host_reach_the_agent(&t, &format!("{backend}: after boot"));
    t.host.ehn(&["check", "-c", &cfg]).expect_code(0);
    let ours = our_handles(&t.host);
    assert!(ours.iter().any(|(_, id)| id.as_deref() == Some("localhost-guard-uplink")), "{ours:?}");

    // Agent restart: post-stop, then pre-start again. Our rules are not touched; once
    // pre-start has put route_localnet back, the host is converged before our hook runs.
    post_stop(&t.host, backend);
    let after_stop = ecs_init_listing(&t.host, backend);
    assert!(!after_stop.contains("169.254.170.2") && !after_stop.contains("51678"), "{backend}: {after_stop}");
    assert_eq!(our_handles(&t.host), ours, "{backend}: ecs-init's post-stop changed our rules");
    pre_start(&t.host, backend);
    assert_eq!(ecs_init_listing(&t.host, backend), listed, "{backend}: pre-start again");
    t.host.ehn(&["check", "-c", &cfg]).expect_code(0);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(our_handles(&t.host), ours, "{backend}: an agent restart changed our rules or their handles");
    assert_only_containers_and_the_host_reach_the_agent(&t, &format!("{backend}: after an agent restart"));

    // Control: without the guard of the other interfaces, ecs-init's DNAT (no interface
    // match) and the DNAT exemptions of its filter and of our container guard let the
    // neighbour in through 169.254.170.2: the neighbour probes above can fail.
    let uplink_guard = rule_by_comment(&t.host, "localhost-guard-uplink").handle.unwrap().to_string();
    t.host.nft(&["delete", "rule", "inet", "ecs-hostnet", "input", "handle", &uplink_guard]);
    assert_probes(
        &format!("{backend}: control, the uplink guard deleted"),
        &[probe("neighbour credentials endpoint", &t.neighbour, "169.254.170.2:80", Some(CREDS_BODY))],
    );
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    t.host.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_only_containers_and_the_host_reach_the_agent(&t, &format!("{backend}: after apply put the guard back"));

    // Teardown as on a real host: the agent stops, then ecs-hostnet remove leaves nothing.
    post_stop(&t.host, backend);
    t.host.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert!(our_rules(&t.host.ruleset_handles()).is_empty());
}

#[test]
fn ecs_init_with_iptables_nft_around_boot_and_agent_restart() {
    boot_and_agent_restart("nft");
}

#[test]
fn ecs_init_with_iptables_legacy_around_boot_and_agent_restart() {
    boot_and_agent_restart("legacy");
}
