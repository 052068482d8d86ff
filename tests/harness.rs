//! Self-tests of the test harness, independent of the binary: the topology
//! gives the expected reachability before any rules, a hand-written reference
//! rule set (the contract's semantics, loaded with `nft -f`) gives the
//! expected reachability after, the negative expectations of the traffic
//! tests can fail, and everything is cleaned up, also on panic.

mod support;

use support::*;

#[test]
fn topology_reachability_without_rules() {
    let t = Topology::new();
    assert_eq!(t.host.route_localnet(), "0");
    assert_eq!(t.host.ruleset().trim(), "", "fresh namespace has no rules");
    assert_probes("before any rules", &probes_before_apply(&t));
}

#[test]
fn reference_rules_give_expected_reachability_and_controls_can_fail() {
    let t = Topology::new();
    let sink = udp_bind(&t.host, "127.0.0.1:51690");
    let spoofed = std::net::Ipv4Addr::new(127, 0, 0, 2);
    t.host.nft_load(&t.dir, REFERENCE_RULES);
    t.host.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    assert_probes("with reference rules", &probes_after_apply(&t));
    // the guard drops a spoofed 127.0.0.2 source from the neighbour
    let got = spoofed_udp_received(&t.neighbour, &sink, spoofed, 40001, 3);
    assert!(got.is_empty(), "reference guard let a spoofed loopback source in: {got:?}");
    // The controls below test the guard of container interfaces from the neighbour's
    // side: without the guard of the other interfaces, which drops all of it.
    let uplink_guard = rule_by_comment(&t.host, "ref-localhost-guard-uplink").handle.unwrap().to_string();
    t.host.nft(&["delete", "rule", "inet", "ecs-hostnet", "input", "handle", &uplink_guard]);
    let got = spoofed_udp_received(&t.neighbour, &sink, spoofed, 40004, 3);
    assert!(got.is_empty(), "the container-interface guard alone let a spoofed loopback source in: {got:?}");
    // Control: the earlier guard form, which exempted 127.0.0.0/8 sources,
    // lets it in (so the spoofed-source test tells the two forms apart).
    let guard = rule_by_comment(&t.host, "ref-localhost-guard");
    let old_form = "iifname != \"lo\" ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state & (established|related) == 0 ct status & dnat == 0 counter drop comment \"ref-localhost-guard\"";
    let h = guard.handle.unwrap().to_string();
    t.host.nft_load(&t.dir, &format!("replace rule inet ecs-hostnet input handle {h} {old_form}\n"));
    let got = spoofed_udp_received(&t.neighbour, &sink, spoofed, 40003, 3);
    assert!(!got.is_empty(), "the old guard form exempts loopback sources; the datagram must arrive");
    t.host.nft_load(
        &t.dir,
        &format!("replace rule inet ecs-hostnet input handle {h} {}\n", normalize_counters(&guard.text)),
    );
    assert!(!rule_by_comment(&t.host, "ref-localhost-guard").text.contains("saddr"));

    // Control: without the localhost guard, route_localnet=1 exposes the
    // host's 127.0.0.1 services to the neighbour (so the guard test can fail).
    let handle = rule_by_comment(&t.host, "ref-localhost-guard").handle.unwrap().to_string();
    t.host.nft(&["delete", "rule", "inet", "ecs-hostnet", "input", "handle", &handle]);
    // Control: a DNAT that also serves the uplink lets the neighbour in via
    // 169.254.170.2 (so the "DNAT only on container interfaces" test can fail).
    t.host.nft(&[
        "add",
        "rule",
        "ip",
        "ecs-hostnet",
        "prerouting",
        "iifname",
        HOST_UPLINK,
        "ip",
        "daddr",
        "169.254.170.2",
        "tcp",
        "dport",
        "80",
        "dnat",
        "to",
        "127.0.0.1:51679",
    ]);
    // Control: without the introspection guard the neighbour reaches :51678.
    let handle = rule_by_comment(&t.host, "ref-introspection").handle.unwrap().to_string();
    t.host.nft(&["delete", "rule", "inet", "ecs-hostnet", "input", "handle", &handle]);
    let n = &t.neighbour;
    assert_probes(
        "with guards removed",
        &[
            probe("neighbour host 127.0.0.1", n, "127.0.0.1:51679", Some(CREDS_BODY)),
            probe("neighbour credentials endpoint", n, "169.254.170.2:80", Some(CREDS_BODY)),
            probe("neighbour introspection v4", n, "192.0.2.1:51678", Some(INTRO_BODY)),
            probe("neighbour introspection v6", n, "[2001:db8:1::1]:51678", Some(INTRO_BODY)),
        ],
    );
    // Control: without the guard the spoofed datagram arrives (so the
    // spoofed-source traffic test can fail).
    let got = spoofed_udp_received(&t.neighbour, &sink, spoofed, 40002, 3);
    assert!(!got.is_empty(), "without the guard the spoofed datagram must arrive");
    assert!(got.iter().all(|(_, from)| from.ip() == std::net::IpAddr::V4(spoofed)), "{got:?}");
}

/// Every namespace has its own run directory for the binary
/// (`$ECS_HOSTNET_RUN_DIR`): distinct, used by the binary instead of
/// /run/ecs-hostnet, and removed with the namespace (also on panic).
#[test]
fn run_dir_per_namespace() {
    let run = std::path::Path::new("/run/ecs-hostnet");
    let run_before = list_tree(run);
    let a = Netns::new("runa");
    let b = Netns::new("runb");
    assert_ne!(a.run_dir(), b.run_dir());
    assert!(a.run_dir().is_dir() && b.run_dir().is_dir());
    let dir = TempDir::new("runcfg");
    let cfg = dir.default_config();
    a.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert!(a.run_dir().join("lock").exists(), "apply must lock {}/lock", a.run_dir().display());
    assert!(!b.run_dir().join("lock").exists());
    a.ehn(&["remove", "-c", &cfg]).expect_code(0);
    // the path forms get the same directory
    b.ehn_inside(&["apply", "-c", &cfg]).expect_code(0);
    assert!(b.run_dir().join("lock").exists());
    b.ehn_inside(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(list_tree(run), run_before, "the tests wrote into /run/ecs-hostnet");

    let a_dir = a.run_dir().to_path_buf();
    drop(a);
    assert!(!a_dir.exists(), "run dir {} survived its namespace", a_dir.display());
    let mut b_dir = std::path::PathBuf::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let c = Netns::new("runc");
        b_dir = c.run_dir().to_path_buf();
        panic!("deliberate panic");
    }));
    assert!(r.is_err());
    assert!(!b_dir.as_os_str().is_empty() && !b_dir.exists(), "run dir {} survived a panic", b_dir.display());
}

/// Paths under `root` (recursively), with size and mtime, sorted; empty if
/// `root` does not exist.
fn list_tree(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        out.push(format!("{} {} {:?}", p.display(), md.len(), md.modified().ok()));
        if md.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn guard_forms_list_the_same() {
    // The contract's `ct state & (established|related) == 0 ct status & dnat == 0`
    // is a flag test; nft 1.0.6 lists it as `ct state ! established,related
    // ct status ! dnat` (NOT `ct status != dnat`, which is a different test).
    let ns = Netns::new("ctst");
    let dir = TempDir::new("ctst");
    ns.nft_load(
        &dir,
        "table inet t {\n chain a {\n \
         iifname != \"lo\" ip daddr 127.0.0.0/8 ct state & (established|related) == 0 ct status & dnat == 0 counter drop\n }\n \
         chain b {\n \
         iifname != \"lo\" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat counter drop\n }\n}\n",
    );
    let listed = ns.ruleset();
    let r = rules(&listed);
    assert_eq!(r.len(), 2, "{listed}");
    eprintln!("nft lists the guard as: {}", r[0].text);
    assert_eq!(r[0].text, r[1].text, "{listed}");
    assert!(r[0].text.contains("ct status ! dnat"), "{listed}");
    // the guard no longer exempts loopback sources (a 127.0.0.0/8 source on a
    // non-loopback interface is spoofed)
    assert!(!r[0].text.contains("saddr"), "{listed}");
}

#[test]
fn sysctl_via_setns_is_the_namespace_value() {
    let ns = Netns::new("sysctl");
    ns.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    let via_exec = ns.exec_ok("cat", &["/proc/sys/net/ipv4/conf/all/route_localnet"]);
    assert_eq!(via_exec.trim(), "1");
    assert_eq!(ns.route_localnet(), "1");
    // and the root namespace was not touched by this (we never write it; just
    // check that our namespace differs from a second fresh one)
    let other = Netns::new("sysctl2");
    assert_eq!(other.route_localnet(), "0");
}

#[test]
fn everything_is_removed_on_panic() {
    let mut names = Vec::new();
    let mut dir = std::path::PathBuf::new();
    let mut run_dirs = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Topology::new();
        names = t.namespaces();
        dir = t.dir.path().to_path_buf();
        run_dirs = [&t.host, &t.container, &t.imds, &t.neighbour].iter().map(|n| n.run_dir().to_path_buf()).collect();
        assert!(std::path::Path::new(&format!("/run/netns/{}", names[0])).exists());
        panic!("deliberate panic inside a test body");
    }));
    assert!(r.is_err());
    assert_eq!(names.len(), 4);
    for n in &names {
        assert!(!std::path::Path::new(&format!("/run/netns/{n}")).exists(), "namespace {n} survived the panic");
    }
    assert!(!dir.exists(), "temp dir {} survived the panic", dir.display());
    assert_eq!(run_dirs.len(), 4);
    for d in &run_dirs {
        assert!(!d.exists(), "run dir {} survived the panic", d.display());
    }
}

#[test]
fn ruleset_parsers() {
    let ns = Netns::new("parse");
    let dir = TempDir::new("parse");
    ns.nft_load(&dir, REFERENCE_RULES);
    ns.nft(&["add", "table", "inet", "user"]);
    let listed = ns.ruleset_handles();
    let t = tables(&listed);
    assert_eq!(t.keys().cloned().collect::<Vec<_>>(), vec!["inet ecs-hostnet", "inet user", "ip ecs-hostnet"]);
    assert_eq!(foreign_tables(&listed).len(), 1);
    let r = our_rules(&listed);
    assert_eq!(r.len(), 11, "{listed}");
    assert!(r.iter().all(|r| r.handle.is_some() && r.comment.is_some()));
    assert_eq!(r[0].chain, "prerouting");
    assert_eq!(r[0].comment.as_deref(), Some("ref-dnat-docker"));
    assert_eq!(r[0].body(), "iifname \"docker*\" ip daddr 169.254.170.2 tcp dport 80 counter dnat to 127.0.0.1:51679");
}

/// `cargo test --test harness debug_topology -- --ignored --nocapture`:
/// builds a topology and keeps it for EHN_DEBUG_SECS seconds (default 60)
/// so it can be inspected with `ip netns exec`.
#[test]
#[ignore]
fn debug_topology() {
    let t = Topology::new();
    eprintln!("namespaces: {:?}", t.namespaces());
    let secs = std::env::var("EHN_DEBUG_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    std::thread::sleep(std::time::Duration::from_secs(secs));
}
