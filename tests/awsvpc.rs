//! awsvpc tasks, `ecs-hostnet task apply|check|remove`, the credentials endpoint route
//! of IPv6-only hosts and `imds_block.exclude_interfaces`, with real traffic in
//! namespaces of our own (see tests/support/mod.rs). Every `task` call names its
//! namespaces one by one (`--netns PATH`) or through a temp folder of symlinks to them
//! (`--netns-dir`); never /run/netns itself, where other tests' namespaces live.

mod support;

use std::time::{Duration, Instant};
use support::*;

const IMDS_V4: &str = "169.254.169.254:80";
const IMDS_V6: &str = "[fd00:ec2::254]:80";
const ENDPOINT: &str = "169.254.170.2:80";

/// A blackhole route makes connect() fail with EINVAL (IPv4 and IPv6); ENETUNREACH is
/// what an unreachable-type route would give, also at once.
const BLACKHOLE_ERRNOS: &[i32] = &[libc::EINVAL, libc::ENETUNREACH];
/// "At once": a connect that a route refuses takes microseconds; a firewall drop waits
/// for the connect timeout (1 s here).
const AT_ONCE: Duration = Duration::from_millis(100);

/// The host configuration of the awsvpc test: the default container interfaces (so the
/// credentials DNAT serves `ecs-bridge`) but NO forward-chain IMDS block. The host's
/// block also matches `ecs-bridge` and would hide whether the task's own blackhole
/// routes work; `imds_block.exclude_interfaces = ["ecs-bridge"]` cannot lift it for
/// ecs-bridge alone (it would cover a whole pattern, which is refused: checked below).
/// With this configuration the only IMDS block the task has is the route.
const HOST_NO_IMDS_BLOCK: &str = r#"[containers]
interfaces = ["docker+", "br-+", "ecs-bridge"]

[imds_block]
enabled = false
"#;

/// Test 1: an awsvpc task on ecs-bridge. The host's DNAT serves it; `task apply` puts the
/// IMDS blackhole routes in its namespace, after which its IMDS connections (IPv4 and
/// IPv6) fail at once; `task remove` gives IMDS back.
#[test]
fn awsvpc_task_on_ecs_bridge_credentials_and_imds_blackhole() {
    let mut t = Topology::new();
    let ti = t.add_bridge_with_container("ecs-bridge", "task", ECS_BRIDGE);
    let task = &t.extra[ti];
    // awsvpc tasks reach the credentials endpoint through ecs-bridge
    task.ip(&["route", "add", "169.254.170.2/32", "via", ECS_BRIDGE.host_v4]);
    let host_cfg = t.dir.write("host-no-imds-block.toml", HOST_NO_IMDS_BLOCK);
    let default_cfg = t.dir.default_config();
    let task_path = task.path();

    // Why the host configuration has no IMDS block: excluding ecs-bridge is refused ...
    let refused = t.dir.write("exclude-ecs-bridge.toml", "[imds_block]\nexclude_interfaces = [\"ecs-bridge\"]\n");
    let out = ehn(&["validate", "-c", &refused]);
    out.expect_code(1);
    assert!(out.stderr.contains("ecs-bridge"), "{out}");
    // ... and the default host block does drop the task's IMDS traffic (a timeout, not a
    // route: the forward chain drops it at the host).
    let before = [
        probe("task IMDS v4", task, IMDS_V4, Some(IMDS_BODY)),
        probe("task IMDS v6", task, IMDS_V6, Some(IMDS_BODY)),
        probe("task credentials endpoint", task, ENDPOINT, None),
    ];
    assert_probes("before any apply", &before);
    t.host.ehn(&["apply", "-c", &default_cfg]).expect_code(0);
    assert_probes(
        "host with the default configuration",
        &[
            probe("task IMDS v4", task, IMDS_V4, None),
            probe("task IMDS v6", task, IMDS_V6, None),
            probe("task credentials endpoint", task, ENDPOINT, Some(CREDS_BODY)),
        ],
    );

    // The host without its IMDS block: the task reaches the credentials listener through
    // the DNAT of ecs-bridge, and IMDS (v4 and v6): the "before task apply" state.
    t.host.ehn(&["apply", "-c", &host_cfg]).expect_code(0);
    t.host.ehn(&["check", "-c", &host_cfg]).expect_code(0);
    let reachable = [
        probe("task credentials endpoint", task, ENDPOINT, Some(CREDS_BODY)),
        probe("task IMDS v4", task, IMDS_V4, Some(IMDS_BODY)),
        probe("task IMDS v6", task, IMDS_V6, Some(IMDS_BODY)),
    ];
    assert_probes("host applied without IMDS block, before task apply", &reachable);
    let dnat = rule_by_comment(&t.host, "credentials-dnat ecs-bridge");
    assert!(!dnat.text.contains("counter packets 0 "), "the ecs-bridge DNAT counted nothing: {}", dnat.text);
    assert!(route_lines(&task.name, false, "169.254.169.254").is_empty());
    assert!(route_lines(&task.name, true, "fd00:ec2::254").is_empty());
    let out = task.ehn_raw(&["task", "check", "--netns", &task_path]);
    out.expect_code(2);
    assert!(out.stdout.contains(&format!("{task_path}: drift: would add route blackhole 169.254.169.254/32")), "{out}");

    // task apply: both blackholes, proto 236; IMDS connects fail at once.
    let out = task.ehn_raw(&["task", "apply", "--netns", &task_path]);
    out.expect_code(0);
    let (lines, summary) = task_lines(&out.stdout);
    assert_eq!(
        lines.get(&task_path).map(String::as_str),
        Some("done: add route blackhole 169.254.169.254/32; add route blackhole fd00:ec2::254/128"),
        "{out}"
    );
    assert_eq!(summary, "1 namespace(s): 1 changed, 0 failed.", "{out}");
    assert_eq!(route_lines(&task.name, false, "169.254.169.254"), vec!["blackhole 169.254.169.254 proto 236"]);
    let v6 = route_lines(&task.name, true, "fd00:ec2::254");
    assert!(v6.len() == 1 && v6[0].starts_with("blackhole fd00:ec2::254 ") && v6[0].contains("proto 236"), "{v6:?}");
    assert_connect_refused_at_once("task IMDS v4 after task apply", task, IMDS_V4, AT_ONCE, BLACKHOLE_ERRNOS);
    assert_connect_refused_at_once("task IMDS v6 after task apply", task, IMDS_V6, AT_ONCE, BLACKHOLE_ERRNOS);
    assert_probes(
        "after task apply",
        &[
            probe("task credentials endpoint", task, ENDPOINT, Some(CREDS_BODY)),
            probe("task IMDS v4", task, IMDS_V4, None),
            probe("task IMDS v6", task, IMDS_V6, None),
        ],
    );
    let out = task.ehn_raw(&["task", "check", "--netns", &task_path]);
    out.expect_code(0);
    let out = task.ehn_raw(&["task", "apply", "--netns", &task_path]);
    out.expect_code(0);
    assert!(out.stdout.contains(&format!("{task_path}: converged, nothing to do")), "{out}");

    // task remove: our routes go, IMDS is back.
    let out = task.ehn_raw(&["task", "remove", "--netns", &task_path]);
    out.expect_code(0);
    assert!(route_lines(&task.name, false, "169.254.169.254").is_empty());
    assert!(route_lines(&task.name, true, "fd00:ec2::254").is_empty());
    assert_probes("after task remove", &reachable);
    t.host.ehn(&["remove", "-c", &host_cfg]).expect_code(0);
}

/// "A route to the same prefix in the way is replaced": a task namespace with specific
/// routes to the IMDS addresses through the bridge (metric 100, lower = preferred than
/// the IPv6 default metric 1024) must still be cut off from IMDS after `task apply`, and
/// `task check` must not call a namespace converged while IMDS is still routed.
#[test]
fn task_apply_beats_a_lower_metric_imds_route_in_the_way() {
    let mut t = Topology::new();
    let ti = t.add_bridge_with_container("ecs-bridge", "task", ECS_BRIDGE);
    let task = &t.extra[ti];
    let host_cfg = t.dir.write("host-no-imds-block.toml", HOST_NO_IMDS_BLOCK);
    t.host.ehn(&["apply", "-c", &host_cfg]).expect_code(0);
    task.ip(&["route", "add", "169.254.169.254/32", "via", ECS_BRIDGE.host_v4, "metric", "100"]);
    task.ip(&["-6", "route", "add", "fd00:ec2::254/128", "via", ECS_BRIDGE.host_v6, "metric", "100"]);
    let task_path = task.path();
    assert_probes(
        "routes in the way, before task apply",
        &[probe("task IMDS v4", task, IMDS_V4, Some(IMDS_BODY)), probe("task IMDS v6", task, IMDS_V6, Some(IMDS_BODY))],
    );

    let out = task.ehn_raw(&["task", "apply", "--netns", &task_path]);
    out.expect_code(0);
    eprintln!("{out}");
    let routes = format!(
        "{}\n{}",
        sh("ip", &["-n", &task.name, "route", "show"]),
        sh("ip", &["-n", &task.name, "-6", "route", "show"])
    );
    let (_, v4) = tcp_connect_timed(task, IMDS_V4, Duration::from_secs(1));
    let (_, v6) = tcp_connect_timed(task, IMDS_V6, Duration::from_secs(1));
    let check = task.ehn_raw(&["task", "check", "--netns", &task_path]);
    assert!(
        v4.is_err() && v6.is_err(),
        "after task apply the task still reaches IMDS: v4 {v4:?}, v6 {v6:?}; `task check` exits {}:\n{}\nroutes in the task namespace:\n{routes}",
        check.code,
        check.stdout
    );
    assert_connect_refused_at_once("task IMDS v4", task, IMDS_V4, AT_ONCE, BLACKHOLE_ERRNOS);
    assert_connect_refused_at_once("task IMDS v6", task, IMDS_V6, AT_ONCE, BLACKHOLE_ERRNOS);
    check.expect_code(0);
}

/// Test 2: one `task` call over 100 namespaces: from empty, converged, with a broken path
/// in the list, and `task remove` that deletes exactly our routes.
#[test]
fn task_over_100_namespaces() {
    const N: usize = 100;
    let start = Instant::now();
    let set = NetnsSet::new("t100", N);
    let dir = TempDir::new("nsdir");
    let links = symlink_dir(&dir, "task-", &set.paths());
    let run = TempDir::new("t100-run");
    let dir_s = dir.path().to_string_lossy().into_owned();
    let task = |args: &[&str]| -> (Out, Duration) {
        let t0 = Instant::now();
        let out = ehn_with_run_dir_timeout(run.path(), args, Duration::from_secs(30));
        let took = t0.elapsed();
        let shown: String = out.cmdline.chars().take(160).collect();
        eprintln!(
            "{shown}{} -> exit {} in {took:?}",
            if shown.len() < out.cmdline.len() { " ..." } else { "" },
            out.code
        );
        assert!(took < Duration::from_secs(10), "`{}` took {took:?} for {N} namespaces", out.cmdline);
        (out, took)
    };
    let both_adds = "add route blackhole 169.254.169.254/32; add route blackhole fd00:ec2::254/128";
    let both_deletes = "delete route blackhole 169.254.169.254/32; delete route blackhole fd00:ec2::254/128";
    // Namespace 7 already has a blackhole to IMDS (IPv4) of another protocol: it does the
    // job, so apply leaves it alone, and so does remove.
    let foreign_before = 7;
    sh("ip", &["-n", &set.names[foreign_before], "route", "add", "blackhole", "169.254.169.254/32", "proto", "static"]);
    let per_ns_lines = |out: &Out, want: &dyn Fn(usize) -> String| {
        let (lines, _) = task_lines(&out.stdout);
        assert_eq!(lines.len(), N, "one line per namespace: {out}");
        for (i, l) in links.iter().enumerate() {
            assert_eq!(lines.get(l), Some(&want(i)), "line of {l} (namespace {i}): {out}");
        }
    };

    // Before: no routes of ours; check reports drift in every namespace.
    for name in &set.names {
        assert!(route_lines(name, false, "proto 236").is_empty() && route_lines(name, true, "proto 236").is_empty());
    }
    let (out, _) = task(&["task", "check", "--netns-dir", &dir_s]);
    out.expect_code(2);
    per_ns_lines(&out, &|i| {
        if i == foreign_before {
            "drift: would add route blackhole fd00:ec2::254/128".into()
        } else {
            format!("drift: would {both_adds}")
        }
    });

    // apply from empty, one call.
    let (out, took_empty) = task(&["task", "apply", "--netns-dir", &dir_s]);
    out.expect_code(0);
    per_ns_lines(&out, &|i| {
        if i == foreign_before {
            "done: add route blackhole fd00:ec2::254/128".into()
        } else {
            format!("done: {both_adds}")
        }
    });
    assert_eq!(task_lines(&out.stdout).1, format!("{N} namespace(s): {N} changed, 0 failed."), "{out}");
    let assert_all_converged = |stage: &str| {
        for (i, name) in set.names.iter().enumerate() {
            let v4 = route_lines(name, false, "169.254.169.254");
            let v6 = route_lines(name, true, "fd00:ec2::254");
            let want_v4 = if i == foreign_before {
                "blackhole 169.254.169.254 proto static"
            } else {
                "blackhole 169.254.169.254 proto 236"
            };
            assert_eq!(v4, vec![want_v4], "{stage}: IPv4 routes to IMDS in namespace {i} ({name})");
            assert!(
                v6.len() == 1 && v6[0].starts_with("blackhole fd00:ec2::254 ") && v6[0].contains(" proto 236 "),
                "{stage}: IPv6 routes to IMDS in namespace {i} ({name}): {v6:?}"
            );
        }
    };
    assert_all_converged("after apply from empty");

    // converged: nothing to do anywhere, exit 0; check exit 0.
    let (out, took_converged) = task(&["task", "apply", "--netns-dir", &dir_s]);
    out.expect_code(0);
    per_ns_lines(&out, &|_| "converged, nothing to do".into());
    assert_eq!(task_lines(&out.stdout).1, format!("{N} namespace(s): 0 changed, 0 failed."), "{out}");
    let (out, _) = task(&["task", "check", "--netns-dir", &dir_s]);
    out.expect_code(0);
    per_ns_lines(&out, &|_| "converged, nothing to do".into());

    // A broken path (a regular file) in the middle of a --netns list: reported by name,
    // exit 1, and the namespaces before AND after it still converge (our routes were
    // deleted by hand in three of them, one after the broken path).
    let other = TempDir::new("t100-file");
    let broken = other.write("not-a-netns", "just a file\n");
    let redo = [0usize, 42, 99];
    for &i in &redo {
        sh("ip", &["-n", &set.names[i], "route", "del", "blackhole", "169.254.169.254/32", "proto", "236"]);
        sh("ip", &["-n", &set.names[i], "-6", "route", "del", "blackhole", "fd00:ec2::254/128", "proto", "236"]);
    }
    let mut args: Vec<&str> = vec!["task", "apply"];
    for (i, l) in links.iter().enumerate() {
        if i == N / 2 {
            args.extend_from_slice(&["--netns", &broken]);
        }
        args.extend_from_slice(&["--netns", l]);
    }
    let (out, _) = task(&args);
    out.expect_code(1);
    let (lines, summary) = task_lines(&out.stdout);
    assert_eq!(lines.len(), N + 1, "{out}");
    let err = lines.get(&broken).unwrap_or_else(|| panic!("no line for {broken}: {out}"));
    assert!(err.starts_with("error: ") && err.contains(&broken) && err.contains("not a network namespace"), "{err}");
    for (i, l) in links.iter().enumerate() {
        let want = if redo.contains(&i) { format!("done: {both_adds}") } else { "converged, nothing to do".into() };
        assert_eq!(lines.get(l), Some(&want), "line of {l} (namespace {i}): {out}");
    }
    assert_eq!(summary, format!("{} namespace(s): 3 changed, 1 failed.", N + 1), "{out}");
    assert_all_converged("after apply with a broken path");
    let (out, _) = task(&["task", "check", "--netns-dir", &dir_s]);
    out.expect_code(0);

    // task remove over all: exactly our routes go. Namespace 3 also has blackholes of
    // another protocol (and metric) beside ours; namespace 7 has only its own IPv4 one.
    let foreign_beside = 3;
    let fb = &set.names[foreign_beside];
    sh("ip", &["-n", fb, "route", "add", "blackhole", "169.254.169.254/32", "proto", "static", "metric", "100"]);
    sh("ip", &["-n", fb, "-6", "route", "add", "blackhole", "fd00:ec2::254/128", "proto", "static", "metric", "100"]);
    let (out, _) = task(&["task", "remove", "--netns-dir", &dir_s]);
    out.expect_code(0);
    per_ns_lines(&out, &|i| {
        if i == foreign_before {
            "done: delete route blackhole fd00:ec2::254/128".into()
        } else {
            format!("done: {both_deletes}")
        }
    });
    for (i, name) in set.names.iter().enumerate() {
        let v4 = route_lines(name, false, "169.254.169.254");
        let v6 = route_lines(name, true, "fd00:ec2::254");
        match i {
            _ if i == foreign_before => {
                assert_eq!(v4, vec!["blackhole 169.254.169.254 proto static"], "namespace {i}");
                assert!(v6.is_empty(), "namespace {i}: {v6:?}");
            }
            _ if i == foreign_beside => {
                assert_eq!(v4, vec!["blackhole 169.254.169.254 proto static metric 100"], "namespace {i}");
                assert!(
                    v6.len() == 1 && v6[0].contains("proto static") && v6[0].contains("metric 100"),
                    "namespace {i}: {v6:?}"
                );
            }
            _ => assert!(v4.is_empty() && v6.is_empty(), "namespace {i} ({name}) after remove: {v4:?} {v6:?}"),
        }
    }
    let (out, _) = task(&["task", "remove", "--netns-dir", &dir_s]);
    out.expect_code(0);
    per_ns_lines(&out, &|_| "converged, nothing to do".into());

    eprintln!(
        "task over {N} namespaces: apply from empty {took_empty:?} ({:?}/namespace), converged {took_converged:?}; whole test {:?}",
        took_empty / N as u32,
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(20), "the test took {:?}", start.elapsed());
}

/// A FIFO among the namespace files (a stray file in a --netns-dir folder): reported as
/// not a network namespace like any other file, not waited on forever.
#[test]
fn task_does_not_hang_on_a_fifo() {
    let ns = Netns::new("fifo");
    let dir = TempDir::new("fifodir");
    let fifo = dir.path().join("a-fifo").to_string_lossy().into_owned();
    sh("mkfifo", &[&fifo]);
    let link = symlink_dir(&dir, "ns-", &[ns.path()]).remove(0);
    let out = ehn_with_run_dir_timeout(
        ns.run_dir(),
        &["task", "apply", "--netns-dir", &dir.path().to_string_lossy()],
        Duration::from_secs(10),
    );
    out.expect_code(1);
    let (lines, _) = task_lines(&out.stdout);
    assert!(lines.get(&fifo).is_some_and(|l| l.starts_with("error: ")), "{out}");
    assert!(lines.get(&link).is_some_and(|l| l.starts_with("done: ")), "{out}");
}

/// Test 3: an IPv6-only host (lo up, an IPv6 address and default route on a veth, no IPv4
/// default route). Host-network-mode tasks get "network unreachable" for 169.254.170.2
/// until `apply` adds `169.254.170.2/32 dev lo`; then the REDIRECT takes them to the
/// agent's 127.0.0.1:51679.
#[test]
fn ipv6_only_host_endpoint_route_via_lo() {
    let (host, _peer, _agent) = ipv6_only_host();
    let dir = TempDir::new("v6dir");
    let cfg = dir.default_config();

    // Before: network unreachable, at once.
    assert_connect_refused_at_once(
        "host credentials endpoint before apply",
        &host,
        ENDPOINT,
        AT_ONCE,
        &[libc::ENETUNREACH],
    );

    // Traffic failures are collected and reported at the end, so that check, drift and
    // remove are exercised whatever the traffic does.
    let mut traffic_failures: Vec<String> = Vec::new();
    let mut fetch = |stage: &str| {
        let (_, local) = tcp_connect_timed(&host, ENDPOINT, Duration::from_secs(1));
        let got = http_get(&host.name, ENDPOINT);
        if got.as_deref() != Ok(CREDS_BODY) {
            traffic_failures.push(format!(
                "{stage}: GET http://{ENDPOINT} from the host gave {got:?} (the connection's local address: {local:?})"
            ));
        }
    };

    let out = host.ehn(&["apply", "-c", &cfg]);
    out.expect_code(0);
    assert!(out.stdout.contains("route 169.254.170.2/32 dev lo"), "{out}");
    let r = route_lines(&host.name, false, "169.254.170.2");
    assert_eq!(r.len(), 1, "{}", host.ip(&["route", "show", "table", "all"]));
    assert!(r[0].starts_with("169.254.170.2 dev lo proto 236 scope link"), "{r:?}");
    fetch("right after the first apply");
    host.ehn(&["check", "-c", &cfg]).expect_code(0);
    let out = host.ehn(&["apply", "-c", &cfg]);
    out.expect_code(0);
    assert!(out.stdout.contains("No changes"), "{out}");

    // Drift: the route deleted by hand is reported and put back.
    host.ip(&["route", "del", "169.254.170.2/32", "dev", "lo"]);
    let out = host.ehn(&["check", "-c", &cfg]);
    out.expect_code(2);
    assert!(out.stdout.contains("route 169.254.170.2/32 dev lo"), "{out}");
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    host.ehn(&["check", "-c", &cfg]).expect_code(0);
    fetch("after apply put the route back");

    let out = host.ehn(&["remove", "-c", &cfg]);
    out.expect_code(0);
    assert!(route_lines(&host.name, false, "169.254.170.2").is_empty(), "{}", host.ip(&["route", "show"]));
    assert_eq!(host.ruleset().trim(), "", "remove leaves no rules");
    assert_connect_refused_at_once(
        "host credentials endpoint after remove",
        &host,
        ENDPOINT,
        AT_ONCE,
        &[libc::ENETUNREACH],
    );
    assert!(
        traffic_failures.is_empty(),
        "host-network-mode traffic to the credentials endpoint failed:\n{}",
        traffic_failures.join("\n")
    );
}

/// An IPv6-only host namespace: lo up, 2001:db8:3::1/64 on a veth to a peer namespace,
/// an IPv6 default route via the peer, no IPv4 address but lo's and no IPv4 route; the
/// agent's credentials listener on 127.0.0.1:51679. (host, peer, listener)
fn ipv6_only_host() -> (Netns, Netns, Listener) {
    let (host, peer) = ipv6_only_pair("v6host");
    let agent = Listener::spawn(&host.name, "127.0.0.1:51679", CREDS_BODY);
    (host, peer, agent)
}

/// Test 3 with route_localnet on docker0 only (`lo` and `all` stay 0): the host's own
/// connection to the endpoint does not depend on route_localnet (it never leaves lo),
/// so it must work right after apply too.
#[test]
fn ipv6_only_host_endpoint_route_without_route_localnet_on_lo() {
    let (host, _peer, _agent) = ipv6_only_host();
    let dir = TempDir::new("v6dir");
    let cfg = dir.write("docker0-only.toml", "[route_localnet]\nenable = [\"docker0\"]\n");
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    host.ehn(&["check", "-c", &cfg]).expect_code(0);
    assert_eq!(host.route_localnet(), "0");
    assert_eq!(host.sysctl("net.ipv4.conf.lo.route_localnet"), "0");
    assert_eq!(route_lines(&host.name, false, "169.254.170.2").len(), 1, "{}", host.ip(&["route", "show"]));
    let (_, local) = tcp_connect_timed(&host, ENDPOINT, Duration::from_secs(1));
    assert_eq!(
        http_get(&host.name, ENDPOINT),
        Ok(CREDS_BODY.to_string()),
        "host credentials endpoint after apply (local address of the connection: {local:?})"
    );
    host.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert!(route_lines(&host.name, false, "169.254.170.2").is_empty());
}

/// Upgrade: earlier versions of ecs-hostnet (before 2b19edd) added the endpoint route as
/// `169.254.170.2/32 dev lo proto 236 scope link` without `src 127.0.0.1`, with which the
/// host's connections to the endpoint pick source 0.0.0.0 and hang. `apply` must make
/// that route of ours work (replace it), `check` must not call it converged before, and
/// `remove` must delete it (it carries our route protocol).
#[test]
fn endpoint_route_left_by_an_earlier_version_is_replaced() {
    let (host, _peer, _agent) = ipv6_only_host();
    let dir = TempDir::new("v6dir");
    let cfg = dir.default_config();
    // as an earlier version added it (before route_localnet was turned on)
    host.ip(&["route", "add", "169.254.170.2/32", "dev", "lo", "proto", "236", "scope", "link"]);
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let routes = host.ip(&["route", "show"]);
    let (_, local) = tcp_connect_timed(&host, ENDPOINT, Duration::from_secs(1));
    assert_eq!(
        http_get(&host.name, ENDPOINT),
        Ok(CREDS_BODY.to_string()),
        "host credentials endpoint after apply over an earlier version's route (local address: {local:?}); routes:\n{routes}"
    );
    host.ehn(&["check", "-c", &cfg]).expect_code(0);
    host.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert!(route_lines(&host.name, false, "169.254.170.2").is_empty(), "{}", host.ip(&["route", "show"]));
}

/// Control for test 3: with an IPv4 default route (`auto`) no endpoint route is added,
/// and host-network-mode tasks reach the agent through the REDIRECT anyway.
#[test]
fn endpoint_route_not_added_when_an_ipv4_default_route_exists() {
    let host = Netns::new("v4host");
    let peer = Netns::new("v4peer");
    let dir = TempDir::new("v4dir");
    host.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name]);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    host.ip(&["link", "set", "eth0", "up"]);
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    host.ip(&["route", "add", "default", "via", "192.0.2.2"]);
    let _agent = Listener::spawn(&host.name, "127.0.0.1:51679", CREDS_BODY);
    let cfg = dir.default_config();
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert!(route_lines(&host.name, false, "169.254.170.2").is_empty(), "{}", host.ip(&["route", "show"]));
    assert_eq!(http_get(&host.name, ENDPOINT), Ok(CREDS_BODY.to_string()));
    host.ehn(&["check", "-c", &cfg]).expect_code(0);
}

/// `endpoint_route_via_lo = "auto"` follows the IPv4 default route: `apply` adds the
/// endpoint route while the host has none, `check` then reports the route unneeded (exit 2)
/// once a default route appears, and the next `apply` deletes it; host-network-mode tasks
/// reach the agent in both states.
#[test]
fn auto_endpoint_route_is_added_without_a_default_route_and_removed_once_one_exists() {
    let host = Netns::new("autohost");
    let peer = Netns::new("autopeer");
    let dir = TempDir::new("autodir");
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name]);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    host.ip(&["link", "set", "eth0", "up"]);
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    let _agent = Listener::spawn(&host.name, "127.0.0.1:51679", CREDS_BODY);
    let cfg = dir.default_config();
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(route_lines(&host.name, false, "169.254.170.2").len(), 1, "{}", host.ip(&["route", "show"]));
    assert_eq!(http_get(&host.name, ENDPOINT), Ok(CREDS_BODY.to_string()));
    host.ehn(&["check", "-c", &cfg]).expect_code(0);

    host.ip(&["route", "add", "default", "via", "192.0.2.2"]);
    let drift = host.ehn(&["check", "-c", &cfg]);
    drift.expect_code(2);
    assert!(drift.stdout.contains("IPv4 default route"), "check names why the route goes: {drift}");
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert!(route_lines(&host.name, false, "169.254.170.2").is_empty(), "{}", host.ip(&["route", "show"]));
    assert_eq!(http_get(&host.name, ENDPOINT), Ok(CREDS_BODY.to_string()));
    host.ehn(&["check", "-c", &cfg]).expect_code(0);

    // The default route goes away again (an IPv6-only host after a reconfiguration).
    host.ip(&["route", "del", "default"]);
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(route_lines(&host.name, false, "169.254.170.2").len(), 1, "{}", host.ip(&["route", "show"]));
}

/// Test 4: `imds_block.exclude_interfaces = ["br-skip"]` under the default container
/// patterns: containers on docker0 and br-1234 lose IMDS, the one on br-skip keeps it
/// (and all keep the credentials endpoint).
#[test]
fn imds_block_exclude_interfaces_patterns() {
    let mut t = Topology::new();
    let b1234 = t.add_bridge_with_container(
        "br-1234",
        "c1234",
        BridgeAddrs {
            host_v4: "172.18.0.1",
            v4_len: 16,
            ctr_v4: "172.18.0.2",
            host_v6: "fd00:b12::1",
            ctr_v6: "fd00:b12::2",
        },
    );
    let bskip = t.add_bridge_with_container(
        "br-skip",
        "cskip",
        BridgeAddrs {
            host_v4: "172.19.0.1",
            v4_len: 16,
            ctr_v4: "172.19.0.2",
            host_v6: "fd00:b5::1",
            ctr_v6: "fd00:b5::2",
        },
    );
    let (docker, c1234, cskip) = (&t.container, &t.extra[b1234], &t.extra[bskip]);
    let cfg = t.dir.write(
        "exclude-br-skip.toml",
        "[containers]\ninterfaces = [\"docker+\", \"br-+\", \"ecs-bridge\"]\n\n[imds_block]\nexclude_interfaces = [\"br-skip\"]\n",
    );
    let default_cfg = t.dir.default_config();
    let imds = |d: Option<&str>, s: Option<&str>| {
        vec![
            probe("docker0 container IMDS v4", docker, IMDS_V4, d),
            probe("br-1234 container IMDS v4", c1234, IMDS_V4, d),
            probe("br-skip container IMDS v4", cskip, IMDS_V4, s),
            probe("docker0 container IMDS v6", docker, IMDS_V6, d),
            probe("br-1234 container IMDS v6", c1234, IMDS_V6, d),
            probe("br-skip container IMDS v6", cskip, IMDS_V6, s),
        ]
    };
    assert_probes("before apply", &imds(Some(IMDS_BODY), Some(IMDS_BODY)));

    // Control: br-skip is under br-+, so the default configuration blocks it too.
    t.host.ehn(&["apply", "-c", &default_cfg]).expect_code(0);
    assert_probes("default configuration", &imds(None, None));

    t.host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    t.host.ehn(&["check", "-c", &cfg]).expect_code(0);
    let mut after = imds(None, Some(IMDS_BODY));
    after.extend([
        probe("docker0 container credentials endpoint", docker, ENDPOINT, Some(CREDS_BODY)),
        probe("br-1234 container credentials endpoint", c1234, ENDPOINT, Some(CREDS_BODY)),
        probe("br-skip container credentials endpoint", cskip, ENDPOINT, Some(CREDS_BODY)),
    ]);
    assert_probes("br-skip excluded", &after);
    // the IMDS block rule (its set holds br-*) counted the br-1234 container's packets
    let r = rule_by_comment(&t.host, "imds-block-ipv4");
    assert!(!r.text.contains("counter packets 0 ") && r.text.contains("br-skip"), "{}", r.text);

    t.host.ehn(&["remove", "-c", &cfg]).expect_code(0);
    assert_probes("after remove", &imds(Some(IMDS_BODY), Some(IMDS_BODY)));
}
