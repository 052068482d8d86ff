//! Real traffic through the rules the binary installs, in a topology of
//! namespaces: host (docker0 bridge, listeners on 127.0.0.1:51679 and
//! :51678), container on docker0, IMDS behind the host, neighbour on the
//! host's uplink.

mod support;

use support::*;

/// Issue test 1: `ecs-hostnet --netns HOST apply -c default.toml`.
#[test]
fn default_config_traffic_before_apply_after_apply_after_remove() {
    let mut t = Topology::new();
    let evil = t.add_localhost_attacker_container(3);
    let cfg = t.dir.default_config();

    // Before: the container reaches IMDS (v4 and v6), so the blocks can fail.
    assert_probes("before apply", &probes_before_apply(&t));

    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(t.host.route_localnet(), "1", "apply sets route_localnet in the namespace");
    assert_probes("after apply", &probes_after_apply(&t));
    // a container that routes 127.0.0.1 to the host does not get in directly
    // (only through the DNAT of 169.254.170.2)
    let e = &t.extra[evil];
    assert_probes(
        "after apply, container routing 127.0.0.1 to the host",
        &[
            probe("rogue container host 127.0.0.1", e, "127.0.0.1:51679", None),
            probe("rogue container credentials endpoint", e, "169.254.170.2:80", Some(CREDS_BODY)),
        ],
    );

    // The traffic went through OUR rules (counters moved), and counter values
    // are not drift: check and plan still say converged, apply changes nothing.
    let listed = t.host.ruleset_handles();
    for (chain, needle) in [
        ("prerouting", "\"docker*\""),
        ("output", "redirect"),
        ("input", "dport 51678"),
        // the neighbour's packets to 127.0.0.1 (uplink guard), the rogue container's
        // (the guard of container interfaces)
        ("input", "127.0.0.0/8 counter"),
        ("input", "127.0.0.0/8 ct state"),
        // the IMDS drops and their audit rules (same match, then `limit`)
        ("forward", "\"docker*\", \"ecs-bridge\" } ip daddr 169.254.169.254 counter"),
        ("forward", "\"docker*\", \"ecs-bridge\" } ip6 daddr fd00:ec2::254 counter"),
        ("forward", "\"docker*\", \"ecs-bridge\" } ip daddr 169.254.169.254 limit"),
        ("forward", "\"docker*\", \"ecs-bridge\" } ip6 daddr fd00:ec2::254 limit"),
    ] {
        let r = our_rule_matching(&t.host, chain, needle);
        assert!(!r.text.contains("counter packets 0 "), "no packet hit {chain} rule {needle}: {}\n{listed}", r.text);
    }
    t.host.ehn(&["check", "-c", &cfg]).expect_code(0);
    t.host.ehn(&["plan", "-c", &cfg]).expect_code(0);
    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(
        our_rules(&t.host.ruleset_handles()).iter().map(|r| (r.handle, r.comment.clone())).collect::<Vec<_>>(),
        our_rules(&listed).iter().map(|r| (r.handle, r.comment.clone())).collect::<Vec<_>>(),
        "a converged apply after traffic must not re-create rules"
    );

    t.host.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(t.host.ruleset().trim(), "", "remove leaves no rules");
    assert_eq!(t.host.route_localnet(), "0", "remove restores route_localnet");
    assert_probes("after remove", &probes_before_apply(&t));
}

/// Controls: configurations that open what the default closes show that the
/// negative expectations above are real (the neighbour CAN get in when the
/// guards are off), and that apply moves between configurations both ways.
/// Opening the DNAT to the uplink is refused while the default routes leave
/// through it (plan::uplink): the control drops them for that part.
#[test]
fn opening_and_closing_the_guards_by_configuration() {
    let mut t = Topology::new();
    let evil = t.add_localhost_attacker_container(3);
    let closed = t.dir.default_config();
    let open = t.dir.write(
        "open.toml",
        &format!(
            r#"[containers]
interfaces = ["docker+", "{HOST_UPLINK}"]

[localhost_guard]
enabled = false
i_accept_that_route_localnet_exposes_localhost_services = true

[introspection_guard]
allowed_interfaces = ["lo", "docker0", "{HOST_UPLINK}"]
"#
        ),
    );
    let (c, n, e) = (&t.container, &t.neighbour, &t.extra[evil]);
    let neighbour_blocked = [
        probe("rogue container host 127.0.0.1", e, "127.0.0.1:51679", None),
        probe("neighbour host 127.0.0.1", n, "127.0.0.1:51679", None),
        probe("neighbour credentials endpoint", n, "169.254.170.2:80", None),
        probe("neighbour introspection v4", n, "192.0.2.1:51678", None),
        probe("neighbour introspection v6", n, "[2001:db8:1::1]:51678", None),
        probe("container credentials endpoint", c, "169.254.170.2:80", Some(CREDS_BODY)),
        probe("container IMDS v4", c, "169.254.169.254:80", None),
    ];
    let neighbour_open = [
        probe("rogue container host 127.0.0.1", e, "127.0.0.1:51679", Some(CREDS_BODY)),
        probe("neighbour host 127.0.0.1", n, "127.0.0.1:51679", Some(CREDS_BODY)),
        probe("neighbour credentials endpoint", n, "169.254.170.2:80", Some(CREDS_BODY)),
        probe("neighbour introspection v4", n, "192.0.2.1:51678", Some(INTRO_BODY)),
        probe("neighbour introspection v6", n, "[2001:db8:1::1]:51678", Some(INTRO_BODY)),
        probe("container credentials endpoint", c, "169.254.170.2:80", Some(CREDS_BODY)),
        probe("container IMDS v4", c, "169.254.169.254:80", None),
        probe("container IMDS v6", c, "[fd00:ec2::254]:80", None),
    ];

    t.host.ehn(&["apply", "-c", &closed]).expect_code(0);
    assert_probes("with the default configuration", &neighbour_blocked);

    // The uplink as a container interface is refused while the host's default routes leave
    // through it, and nothing changes...
    let before = t.host.ruleset();
    let refused = t.host.ehn(&["apply", "-c", &open]);
    refused.expect_code(1);
    let why = format!(
        "containers.interfaces \"{HOST_UPLINK}\" matches {HOST_UPLINK}, the interface of this host's IPv4 and IPv6 default routes"
    );
    assert!(refused.stderr.contains(&why), "{refused}");
    assert_eq!(t.host.ruleset(), before, "a refused apply changed the rule set");
    // ... so the control opens the guards on the host without its default routes (the
    // neighbour is on the uplink's own subnet), and puts them back before closing.
    t.host.ip(&["route", "del", "default"]);
    t.host.ip(&["-6", "route", "del", "default"]);
    t.host.ehn(&["apply", "-c", &open]).expect_code(0);
    t.host.ehn(&["check", "-c", &open]).expect_code(0);
    assert_eq!(t.host.route_localnet(), "1");
    assert_probes("with the guards opened", &neighbour_open);
    t.host.ip(&["route", "add", "default", "via", NEIGHBOUR_V4]);
    t.host.ip(&["-6", "route", "add", "default", "via", NEIGHBOUR_V6]);

    t.host.ehn(&["apply", "-c", &closed]).expect_code(0);
    t.host.ehn(&["check", "-c", &closed]).expect_code(0);
    assert_probes("with the default configuration again", &neighbour_blocked);
}

/// route_localnet on docker0 only is enough for the container; the `all`
/// key and the uplink stay 0; remove puts docker0 back.
#[test]
fn route_localnet_per_interface() {
    let t = Topology::new();
    let c = &t.container;
    let only_docker0 = t.dir.write("docker0.toml", "[route_localnet]\nenable = [\"docker0\"]\n");
    t.host.ehn(&["apply", "-c", &only_docker0]).expect_code(0);
    t.host.ehn(&["check", "-c", &only_docker0]).expect_code(0);
    assert_eq!(t.host.route_localnet(), "0", "the `all` key is left alone");
    assert_eq!(t.host.sysctl("net.ipv4.conf.docker0.route_localnet"), "1");
    assert_eq!(t.host.sysctl(&format!("net.ipv4.conf.{HOST_UPLINK}.route_localnet")), "0");
    assert_probes(
        "with route_localnet on docker0",
        &[
            probe("container credentials endpoint", c, "169.254.170.2:80", Some(CREDS_BODY)),
            probe("neighbour host 127.0.0.1", &t.neighbour, "127.0.0.1:51679", None),
        ],
    );

    t.host.ehn(&["remove", "-c", &only_docker0]).expect_code(0);
    assert_eq!(t.host.sysctl("net.ipv4.conf.docker0.route_localnet"), "0");
    assert_eq!(t.host.route_localnet(), "0");
    assert_eq!(t.host.ruleset().trim(), "");
}

/// The localhost guards drop a packet whose SOURCE is a loopback address
/// (127.0.0.2, spoofed) arriving on the uplink and on a container interface: with
/// route_localnet = 1 the kernel accepts such sources, so neither guard may exempt them.
/// The neighbour (and a container that routes 127.0.0.1 to the host) sends a hand-built
/// IPv4/UDP datagram 127.0.0.2 -> 127.0.0.1:<port> through a raw socket (routed via the
/// host's address); the host has a UDP listener on 127.0.0.1:<port>.
#[test]
fn spoofed_loopback_source_from_neighbour_is_dropped() {
    let mut t = Topology::new();
    let evil = t.add_localhost_attacker_container(3);
    let cfg = t.dir.default_config();
    let sink = udp_bind(&t.host, "127.0.0.1:51691");
    let spoofed = std::net::Ipv4Addr::new(127, 0, 0, 2);

    // without route_localnet the host's routing drops it as a martian
    let got = spoofed_udp_received(&t.neighbour, &sink, spoofed, 40101, 3);
    assert!(got.is_empty(), "route_localnet=0, no rules: the kernel must drop it: {got:?}");

    // control: route_localnet = 1 and NO rules -> the listener receives it, from the
    // neighbour and from the container
    t.host.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    for (who, from, sport) in [("neighbour", &t.neighbour, 40102), ("container", &t.extra[evil], 40104)] {
        let got = spoofed_udp_received(from, &sink, spoofed, sport, 3);
        assert!(
            !got.is_empty(),
            "control: with route_localnet=1 and no rules the {who}'s spoofed datagram must arrive"
        );
        assert!(got.iter().all(|(_, from)| from.ip() == std::net::IpAddr::V4(spoofed)), "{got:?}");
    }
    t.host.set_sysctl("net.ipv4.conf.all.route_localnet", "0");

    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(t.host.route_localnet(), "1");
    // From the uplink the uplink guard drops it; from a container interface the
    // container guard (which exempts only DNATed packets and known flows) does.
    for (who, from, sport, needle) in [
        ("neighbour", &t.neighbour, 40103, "127.0.0.0/8 counter"),
        ("container", &t.extra[evil], 40105, "127.0.0.0/8 ct state"),
    ] {
        let guard_before = our_rule_matching(&t.host, "input", needle);
        assert!(guard_before.text.contains("counter packets 0 "), "{}", guard_before.text);
        let got = spoofed_udp_received(from, &sink, spoofed, sport, 3);
        assert!(
            got.is_empty(),
            "after apply a spoofed 127.0.0.2 source from the {who} reached 127.0.0.1: {got:?}\n{}",
            t.host.ruleset()
        );
        // ... and it was that guard that dropped it
        let guard_after = our_rule_matching(&t.host, "input", needle);
        assert_eq!(guard_before.handle, guard_after.handle);
        assert!(
            !guard_after.text.contains("counter packets 0 "),
            "the guard for the {who} counted no packet: {}",
            guard_after.text
        );
    }
    // the host itself still reaches its 127.0.0.1 services over lo
    t.host.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        s.send_to(b"local", "127.0.0.1:51691").unwrap();
    });
    let got = udp_drain(&sink, std::time::Duration::from_millis(300));
    assert_eq!(got.len(), 1, "a local datagram over lo must arrive: {got:?}");
}
