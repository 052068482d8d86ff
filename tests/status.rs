//! `ecs-hostnet status` against a real kernel, in namespaces these tests make: rule counters
//! move with real container traffic (IMDS attempts, credential requests), the three formats
//! (the Prometheus exposition parsed by the reference client's parser,
//! `prometheus_client.parser`), exit 2 on drift and on a blocking finding, the watcher's
//! state, and the node_exporter textfile written atomically.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `(packets, bytes)` of the rule `id` in a status/v1 document.
fn counters(doc: &serde_json::Value, id: &str) -> (u64, u64) {
    let rules = doc["rules"].as_array().expect("a rules array");
    let r = rules.iter().find(|r| r["rule"] == id).unwrap_or_else(|| panic!("no rule {id} in {doc:#}"));
    (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
}

/// Counters move with real traffic: a container's IMDS attempts (dropped by the IMDS block)
/// raise `imds-block-ipv4`'s packets and bytes, its credential requests the DNAT rule's;
/// every format shows them and the Prometheus text passes the reference parser.
#[test]
fn counters_move_with_real_traffic_in_every_format() {
    let t = Topology::new();
    t.host.ehn(&["apply"]).expect_code(0);
    let before = json(t.host.ehn(&["status", "--format", "json"]).expect_code(0));
    assert_eq!(before["schema"], "ecs-hostnet.status/v1");
    assert_eq!((before["ok"].as_bool(), before["converged"].as_bool()), (Some(true), Some(true)));
    assert_eq!(before["localhost_guard_live"], true);
    let (imds0, imds_bytes0) = counters(&before, "imds-block-ipv4");
    let (dnat0, _) = counters(&before, "credentials-dnat docker+");
    for _ in 0..2 {
        assert!(http_get(&t.container.name, "169.254.169.254:80").is_err(), "IMDS must be blocked");
    }
    assert_eq!(http_get(&t.container.name, "169.254.170.2:80").as_deref(), Ok(CREDS_BODY));
    let after = json(t.host.ehn(&["status", "--format", "json"]).expect_code(0));
    let (imds1, imds_bytes1) = counters(&after, "imds-block-ipv4");
    let (dnat1, _) = counters(&after, "credentials-dnat docker+");
    // Each attempt is at least one SYN (60 bytes: IPv4 20 + TCP 40 with options).
    assert!(imds1 >= imds0 + 2, "imds-block-ipv4 packets {imds0} -> {imds1}");
    assert!(imds_bytes1 >= imds_bytes0 + 2 * 40, "imds-block-ipv4 bytes {imds_bytes0} -> {imds_bytes1}");
    // The nat chain sees the first packet of a connection only.
    assert!(dnat1 > dnat0, "credentials-dnat docker+ packets {dnat0} -> {dnat1}");

    let text = t.host.ehn(&["status"]).expect_code(0).stdout.clone();
    for needle in ["converged:        yes", "localhost guard:  live", "imds-block-ipv4", "credentials-dnat docker+"] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let imds_line = text.lines().find(|l| l.contains("imds-block-ipv4")).unwrap();
    assert!(imds_line.split_whitespace().any(|w| w.parse::<u64>().is_ok_and(|n| n >= imds1)), "{imds_line}");

    let prom = t.host.ehn(&["status", "--format", "prometheus"]).expect_code(0).stdout.clone();
    let parsed = parse_prometheus(&prom);
    for family in [
        "FAMILY ecs_hostnet_rule_packets counter",
        "FAMILY ecs_hostnet_rule_bytes counter",
        "FAMILY ecs_hostnet_converged gauge",
        "FAMILY ecs_hostnet_localhost_guard_live gauge",
        "FAMILY ecs_hostnet_findings gauge",
        "FAMILY ecs_hostnet_watch_running gauge",
    ] {
        assert!(parsed.lines().any(|l| l == family), "{family} in\n{parsed}");
    }
    let imds_sample = parsed
        .lines()
        .find(|l| l.starts_with("SAMPLE ecs_hostnet_rule_packets_total ") && l.contains(r#""rule": "imds-block-ipv4""#))
        .unwrap_or_else(|| panic!("no imds-block-ipv4 packets sample in\n{parsed}"));
    assert!(
        imds_sample.contains(r#""chain": "forward""#) && imds_sample.contains(r#""family": "inet""#),
        "{imds_sample}"
    );
    let value: f64 = imds_sample.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= imds1 as f64, "{imds_sample}");
    for want in [
        r#"SAMPLE ecs_hostnet_converged {} 1.0"#,
        r#"SAMPLE ecs_hostnet_localhost_guard_live {} 1.0"#,
        r#"SAMPLE ecs_hostnet_findings {"severity": "blocking"} 0.0"#,
        r#"SAMPLE ecs_hostnet_route_localnet {"interface": "all"} 1.0"#,
        r#"SAMPLE ecs_hostnet_watch_running {} 0.0"#,
    ] {
        assert!(parsed.lines().any(|l| l == want), "{want} in\n{parsed}");
    }
}

/// Exit 2 when our IMDS rule was deleted (drift) and when a blocking finding exists (a
/// CIS-style input policy drop) with our tables converged; the formats say why.
#[test]
fn drift_and_a_blocking_finding_exit_2() {
    let ns = Netns::new("st-drift");
    ns.ehn(&["apply"]).expect_code(0);
    let imds = rule_by_comment(&ns, "imds-block-ipv4");
    ns.nft(&["delete", "rule", "inet", "ecs-hostnet", &imds.chain, "handle", &imds.handle.unwrap().to_string()]);
    let doc = json(ns.ehn(&["status", "--format", "json"]).expect_code(2));
    assert_eq!((doc["ok"].as_bool(), doc["converged"].as_bool()), (Some(false), Some(false)));
    assert_eq!(doc["summary"]["add"], 1, "{doc:#}");
    assert!(doc["rules"].as_array().unwrap().iter().all(|r| r["rule"] != "imds-block-ipv4"), "{doc:#}");
    let text = ns.ehn(&["status"]).expect_code(2).stdout.clone();
    assert!(text.contains("converged:        NO: 1 to add"), "{text}");
    let prom = ns.ehn(&["status", "--format", "prometheus"]).expect_code(2).stdout.clone();
    assert!(prom.contains("\necs_hostnet_converged 0\n") && prom.contains("\necs_hostnet_plan_changes 1\n"), "{prom}");
    // Exit 2 still writes the textfile (ecs-hostnet-metrics.service: SuccessExitStatus=2).
    let tf_dir = TempDir::new("st-drift-tf");
    let tf = tf_dir.path().join("m.prom");
    ns.ehn(&["status", "--format", "prometheus", "--textfile", tf.to_str().unwrap()]).expect_code(2);
    assert!(std::fs::read_to_string(&tf).unwrap().contains("\necs_hostnet_converged 0\n"));

    ns.ehn(&["apply"]).expect_code(0);
    ns.ehn(&["status"]).expect_code(0);
    let dir = TempDir::new("st-cis");
    ns.nft_load(&dir, "table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n }\n}\n");
    let doc = json(ns.ehn(&["status", "--format", "json"]).expect_code(2));
    assert_eq!((doc["ok"].as_bool(), doc["converged"].as_bool()), (Some(false), Some(true)));
    let findings = doc["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["severity"] == "blocking" && f["code"] == "input-drops-credentials"), "{doc:#}");
    let prom = ns.ehn(&["status", "--format", "prometheus"]).expect_code(2).stdout.clone();
    assert!(prom.contains("\necs_hostnet_converged 1\n"), "{prom}");
    assert!(!prom.contains("ecs_hostnet_findings{severity=\"blocking\"} 0\n"), "{prom}");
}

/// A watcher killed (SIGKILL) in Drop, also when the test fails.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The watcher's state shows up: running, and after someone flushes the rule set, at
/// least one repair with its time and line; its exposition lands in a textfile written
/// atomically (mode 0644, no temporary file left) that the reference parser accepts.
#[test]
fn the_watcher_state_and_the_textfile() {
    let ns = Netns::new("st-watch");
    let dir = TempDir::new("st-watch");
    let config = dir.default_config();
    let child = Command::new("unshare")
        .args(["--net", "--", bin(), "--netns", &ns.name, "watch", "-c", &config])
        .env("ECS_HOSTNET_RUN_DIR", ns.run_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watcher");
    let w = Watcher(child);
    let status = |code| json(ns.ehn(&["status", "-c", &config, "--format", "json"]).expect_code(code));
    let deadline = Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let out = ns.ehn(&["status", "-c", &config, "--format", "json"]);
        if out.code == 0 {
            let doc = json(&out);
            if doc["watch"]["state"]["pid"] == w.0.id() {
                break doc;
            }
        }
        assert!(Instant::now() < deadline, "the watcher did not start: {out}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((doc["watch"]["running"].as_bool(), doc["watch"]["pid"].as_u64()), (Some(true), Some(w.0.id() as u64)));
    assert_eq!(doc["watch"]["state"]["repairs"], 0, "{doc:#}");
    ns.nft(&["flush", "ruleset"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let doc = loop {
        let doc = status(0);
        if doc["watch"]["state"]["repairs"].as_u64() >= Some(1) {
            break doc;
        }
        assert!(Instant::now() < deadline, "no repair within 5 s: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let state = &doc["watch"]["state"];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = state["last_repair_at"].as_u64().expect("a last repair time");
    assert!(at <= now && at + 60 >= now, "last repair at {at}, now {now}");
    assert!(state["last_repair"].as_str().unwrap().starts_with("repaired in "), "{doc:#}");

    let folder = dir.path().join("textfile");
    let prom = folder.join("ecs-hostnet.prom");
    ns.ehn(&["status", "-c", &config, "--textfile", prom.to_str().unwrap()]).expect_code(0);
    let meta = std::fs::metadata(&prom).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    let names: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["ecs-hostnet.prom"], "only the textfile is left in its folder");
    let parsed = parse_prometheus(&std::fs::read_to_string(&prom).unwrap());
    assert!(parsed.lines().any(|l| l == "SAMPLE ecs_hostnet_watch_running {} 1.0"), "{parsed}");
    let repairs = parsed.lines().find(|l| l.starts_with("SAMPLE ecs_hostnet_watch_repairs_total ")).expect(&parsed);
    assert!(!repairs.ends_with(" 0.0"), "at least one repair: {repairs}");

    // The textfile from the configuration; a relative --textfile is refused, nothing written.
    let conf2 =
        dir.write("metrics.toml", &format!("[metrics]\ntextfile = \"{}\"\n", folder.join("conf.prom").display()));
    ns.ehn(&["status", "-c", &conf2, "--format", "json"]).expect_code(0);
    assert!(folder.join("conf.prom").is_file());
    ns.ehn(&["status", "-c", &config, "--textfile", "rel.prom"]).expect_code(1);
    drop(w);
    // The watcher was killed: its pid file names a dead process, so it is not running.
    let doc = status(0);
    assert_eq!((doc["watch"]["running"].as_bool(), &doc["watch"]["state"]), (Some(false), &serde_json::Value::Null));
}

/// Three `status --textfile` loops at once (a metrics timer and two people) on one file:
/// every run exits 0 or 2 (never "cannot replace ...": each writer has its own temporary
/// file), the file read between runs is always a whole exposition, and it parses.
#[test]
fn concurrent_textfile_writers_all_succeed_and_the_file_always_parses() {
    let ns = Netns::new("st-conc");
    ns.ehn(&["apply"]).expect_code(0);
    let dir = TempDir::new("st-conc-tf");
    let tf = dir.path().join("c.prom");
    let tf = tf.to_str().unwrap();
    let whole =
        |text: &str| text.starts_with("# HELP ") && text.ends_with('\n') && text.contains("ecs_hostnet_converged");
    std::thread::scope(|s| {
        let loops: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..30 {
                        let out = ns.ehn(&["status", "--textfile", tf]);
                        assert!(matches!(out.code, 0 | 2), "{out}");
                        let text = std::fs::read_to_string(tf).unwrap();
                        assert!(whole(&text), "a part of the exposition: {text:?}");
                    }
                })
            })
            .collect();
        for l in loops {
            l.join().unwrap();
        }
    });
    let text = std::fs::read_to_string(tf).unwrap();
    assert!(parse_prometheus(&text).contains("FAMILY ecs_hostnet_converged gauge"), "{text}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["c.prom"], "no temporary file left");
}
