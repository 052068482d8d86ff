//! The uplink check against a real kernel, in network namespaces: a container interface
//! pattern (`br-+` in the default configuration) that matches the interface the
//! namespace's default routes leave through (a bridge `br-lan`) is refused by `plan`,
//! `check` and `apply` before anything is changed; narrowed, the same host converges.
//! `snapshot` records the uplinks, so `plan --against` refuses too; a snapshot from an
//! older ecs-hostnet (without them) gets a note that the check was skipped. `validate`
//! cannot know the host and says so in one note.

mod support;

use support::*;

/// The default configuration with `br-+` narrowed so that it no longer covers `br-lan`.
const NARROWED: &str = "[containers]\ninterfaces = [\"docker+\", \"br-0+\", \"ecs-bridge\"]\n";

/// What the host text of the refusal starts with, for the default configuration and an
/// uplink `br-lan` carrying the default routes of `families` (`IPv4 and IPv6`, ...).
fn refusal(families: &str) -> String {
    let routes = if families.contains(" and ") { "routes" } else { "route" };
    format!(
        "containers.interfaces \"br-+\" matches br-lan, the interface of this host's {families} default {routes} \
         (its uplink): the credentials DNAT would hand requests for the credentials endpoint from every neighbour on \
         br-lan to the ECS agent, and the IMDS block would drop traffic forwarded from br-lan to IMDS; narrow the \
         pattern (a longer prefix, or the container bridges by name) so that it does not match br-lan"
    )
}

/// A namespace whose uplink is the bridge `br-lan` (10.77.0.2/24, 2001:db8:77::2/64),
/// holding the IPv4 default route when `ipv4` and the IPv6 one when `ipv6`.
fn host_with_br_lan(role: &str, ipv4: bool, ipv6: bool) -> Netns {
    let ns = Netns::new(role);
    ns.ip(&["link", "add", "br-lan", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.77.0.2/24", "dev", "br-lan"]);
    ns.ip(&["addr", "add", "2001:db8:77::2/64", "dev", "br-lan", "nodad"]);
    ns.ip(&["link", "set", "br-lan", "up"]);
    if ipv4 {
        ns.ip(&["route", "add", "default", "via", "10.77.0.1"]);
    }
    if ipv6 {
        ns.ip(&["-6", "route", "add", "default", "via", "2001:db8:77::1"]);
    }
    ns
}

/// Everything of the namespace an apply could change: the whole rule set with handles,
/// route_localnet, and every route of both families.
fn kernel_state(ns: &Netns) -> String {
    format!(
        "{}\nroute_localnet={}\n{}\n{}",
        ns.ruleset_handles(),
        ns.route_localnet(),
        ns.ip(&["route", "show", "table", "all"]),
        ns.ip(&["-6", "route", "show", "table", "all"])
    )
}

#[track_caller]
fn assert_refused(out: &Out, families: &str, then: &str) {
    out.expect_code(1);
    let want = format!("{}; {then}", refusal(families));
    assert!(out.stderr.contains(&want), "want {want:?} on stderr: {out}");
    assert!(out.stdout.is_empty(), "a refused command printed a plan: {out}");
}

#[test]
fn default_config_is_refused_where_the_default_routes_leave_through_br_lan_and_a_narrowed_one_converges() {
    let ns = host_with_br_lan("uplink", true, true);
    let dir = TempDir::new("uplink");
    let cfg = dir.default_config();
    let before = kernel_state(&ns);
    let on_this_host = "plan and apply refuse this configuration on this host";
    assert_refused(&ns.ehn(&["plan", "-c", &cfg]), "IPv4 and IPv6", on_this_host);
    assert_refused(&ns.ehn(&["check", "-c", &cfg]), "IPv4 and IPv6", on_this_host);
    assert_refused(&ns.ehn(&["apply", "-c", &cfg]), "IPv4 and IPv6", "nothing was changed");
    assert_eq!(kernel_state(&ns), before, "a refused apply changed the kernel");
    assert_eq!(ns.ruleset().trim(), "", "a refused apply left rules");

    let narrowed = dir.write("narrowed.toml", NARROWED);
    ns.ehn(&["apply", "-c", &narrowed]).expect_code(0);
    ns.ehn(&["check", "-c", &narrowed]).expect_code(0);
    assert_eq!(ns.route_localnet(), "1");
    assert!(ns.ruleset().contains("iifname \"br-0*\""), "{}", ns.ruleset());

    // The live rule set stays as it is when the broad pattern comes back (a boot with a
    // configuration that does not fit the host never touches what is live).
    let live = ns.ruleset_handles();
    assert_refused(&ns.ehn(&["apply", "-c", &cfg]), "IPv4 and IPv6", "nothing was changed");
    assert_eq!(ns.ruleset_handles(), live);
    // remove is never refused: it matches no interface.
    ns.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_eq!(ns.ruleset().trim(), "");
    assert_eq!(ns.route_localnet(), "0");
}

#[test]
fn an_ipv6_only_uplink_and_a_multipath_default_route_are_checked() {
    let dir = TempDir::new("uplink6");
    let cfg = dir.default_config();
    let ns = host_with_br_lan("uplink6", false, true);
    assert_refused(&ns.ehn(&["plan", "-c", &cfg]), "IPv6", "plan and apply refuse this configuration on this host");

    // An IPv4 default route over two next hops; the second one leaves through br-lan.
    let ns = host_with_br_lan("ecmp", false, false);
    ns.ip(&["link", "add", "up0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.78.0.2/24", "dev", "up0"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&[
        "route",
        "add",
        "default",
        "nexthop",
        "via",
        "10.78.0.1",
        "dev",
        "up0",
        "nexthop",
        "via",
        "10.77.0.1",
        "dev",
        "br-lan",
    ]);
    let before = kernel_state(&ns);
    assert_refused(&ns.ehn(&["apply", "-c", &cfg]), "IPv4", "nothing was changed");
    assert_eq!(kernel_state(&ns), before);
    // A pattern that covers the other uplink is named with it.
    let up = dir.write("up.toml", "[containers]\ninterfaces = [\"docker+\", \"up+\"]\n");
    let out = ns.ehn(&["plan", "-c", &up]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("containers.interfaces \"up+\" matches up0, the interface of this host's IPv4 default route"),
        "{out}"
    );
    // With IMDS as the only rule on container interfaces, an exclusion is a fix too.
    let imds_only = dir.write(
        "imds-only.toml",
        "[credentials]\nenabled = false\n[route_localnet]\nenable = \"off\"\n\
         [agent]\nenable_task_iam_role = false\nenable_task_iam_role_network_host = false\n",
    );
    let out = ns.ehn(&["plan", "-c", &imds_only]);
    out.expect_code(1);
    assert!(out.stderr.contains("or add \"br-lan\" to imds_block.exclude_interfaces"), "{out}");
    let excluded = dir.write(
        "excluded.toml",
        &format!("{}[imds_block]\nexclude_interfaces = [\"br-lan\"]\n", std::fs::read_to_string(&imds_only).unwrap()),
    );
    ns.ehn(&["apply", "-c", &excluded]).expect_code(0);
    ns.ehn(&["check", "-c", &excluded]).expect_code(0);
    ns.ehn(&["remove", "-c", &excluded]).expect_code(0);
    assert_eq!(ns.ruleset().trim(), "");
}

#[test]
fn a_snapshot_names_the_uplinks_and_plan_against_it_refuses_too() {
    let ns = host_with_br_lan("upsnap", true, true);
    let dir = TempDir::new("upsnap");
    let cfg = dir.default_config();
    let snap = ns.ehn(&["snapshot"]);
    snap.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&snap.stdout).unwrap();
    assert_eq!(
        doc["default_route_interfaces"],
        serde_json::json!([{"family": "ipv4", "interface": "br-lan"}, {"family": "ipv6", "interface": "br-lan"}]),
        "{}",
        snap.stdout
    );
    let path = dir.write("host.json", &snap.stdout);
    assert_refused(
        &ehn(&["plan", "--against", &path, "-c", &cfg]),
        "IPv4 and IPv6",
        "plan and apply refuse this configuration on that host",
    );
    let narrowed = dir.write("narrowed.toml", NARROWED);
    let out = ehn(&["plan", "--against", &path, "-c", &narrowed]);
    out.expect_code(2);
    assert!(!out.stdout.contains("was not checked"), "{out}");

    // A snapshot taken before snapshots named the uplinks: planned, with a note.
    let mut old = doc.clone();
    old.as_object_mut().unwrap().remove("default_route_interfaces");
    let old_path = dir.write("old.json", &serde_json::to_string_pretty(&old).unwrap());
    let out = ehn(&["plan", "--against", &old_path, "-c", &cfg]);
    out.expect_code(2);
    assert!(
        out.stdout.contains(
            "note: the snapshot does not name the interfaces of the host's default routes (an older ecs-hostnet took \
             it): whether containers.interfaces matches the host's uplink was not checked; take a new snapshot"
        ),
        "{out}"
    );
}

#[test]
fn validate_says_in_one_note_that_it_cannot_check_the_uplink() {
    let dir = TempDir::new("upvalidate");
    let cfg = dir.default_config();
    let out = ehn(&["validate", &cfg]);
    out.expect_code(0);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [format!(
            "ecs-hostnet: note: {cfg}: containers.interfaces has prefix patterns (\"docker+\", \"br-+\"): whether one \
             matches a host's uplink (the interface of its default route) is checked by plan, check and apply on \
             that host, not here"
        )],
        "{out}"
    );
    // Exact names are as clear in the file as on the host: no note.
    let exact = dir.write("exact.toml", "[containers]\ninterfaces = [\"docker0\", \"ecs-bridge\"]\n");
    let out = ehn(&["validate", &exact]);
    out.expect_code(0);
    assert_eq!(out.stderr, "", "{out}");
}
