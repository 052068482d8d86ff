//! Findings on the credentials path, against a real kernel: other programs' tables loaded
//! with `nft -f`, `iptables-nft` and `iptables-legacy` inside test namespaces (never the
//! root one), then `check` and `plan` read them. Each test proves its finding with traffic
//! where the finding says traffic fails or passes.

mod support;

use support::*;

/// A CIS-style input chain (policy drop; only `lo` and established/related accepted).
const CIS: &str = r#"
table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
  }
}
"#;

/// A nat chain that runs before ours (-150 < -100) and DNATs the endpoint elsewhere.
const STEAL: &str = r#"
table ip steal {
  chain pre {
    type nat hook prerouting priority -150;
    ip daddr 169.254.170.2 tcp dport 80 dnat to 10.9.9.9:80
  }
}
"#;

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The finding with `code` in a plan/v1 document; panics with the document if absent.
fn finding<'a>(doc: &'a serde_json::Value, code: &str) -> &'a serde_json::Value {
    let all = doc["findings"].as_array().expect("a findings array");
    all.iter().find(|f| f["code"] == code).unwrap_or_else(|| panic!("no {code} finding in {doc:#}"))
}

/// Runs a finding's `fix` (an `nft ...` command line without quoting) in the namespace.
fn run_fix(ns: &Netns, fix: &str) {
    let words: Vec<&str> = fix.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"nft"), "the fix is an nft command: {fix}");
    ns.nft(&words[1..]);
}

/// CIS hardening and a stealing DNAT beside a converged ecs-hostnet: `check` names both
/// (text and JSON), exits 2 and says the host does not do its job, and a container indeed
/// gets no credentials. The fixes the findings suggest, run as printed, make `check` exit
/// 0 with no blocking finding, and the container gets credentials.
#[test]
fn cis_input_and_a_stealing_dnat_block_until_their_fixes_are_run() {
    let t = Topology::new();
    t.host.ehn(&["apply"]).expect_code(0);
    let creds = || vec![probe("container credentials endpoint", &t.container, "169.254.170.2:80", Some(CREDS_BODY))];
    assert_probes("after apply, before the foreign tables", &creds());
    t.host.nft_load(&t.dir, CIS);
    t.host.nft_load(&t.dir, STEAL);

    let text = t.host.ehn(&["check"]);
    text.expect_code(2);
    for needle in [
        "BLOCKING input-drops-credentials: inet filter input:",
        "BLOCKING nat-steals-endpoint: ip steal pre:",
        "rule: ip daddr 169.254.170.2 tcp dport 80 dnat to 10.9.9.9:80 (handle ",
        "fix: nft insert rule inet filter input ct status dnat ip daddr 127.0.0.1 tcp dport 51679 accept",
        "Converged: the host matches the configuration.",
        "The host does not do its job: 2 blocking findings",
    ] {
        assert!(text.stdout.contains(needle), "{needle:?} missing: {text}");
    }
    let out = t.host.ehn(&["check", "--format", "json"]);
    out.expect_code(2);
    let doc = json(&out);
    assert_eq!(doc["converged"], true, "{doc:#}");
    let input = finding(&doc, "input-drops-credentials");
    assert_eq!(
        (&input["severity"], &input["family"], &input["table"], &input["chain"], &input["handle"]),
        (&"blocking".into(), &"inet".into(), &"filter".into(), &"input".into(), &serde_json::Value::Null),
        "{input:#}"
    );
    let steal = finding(&doc, "nat-steals-endpoint");
    assert_eq!(
        (&steal["severity"], &steal["table"], &steal["chain"]),
        (&"blocking".into(), &"steal".into(), &"pre".into())
    );
    assert!(steal["handle"].as_u64().is_some(), "{steal:#}");
    // `plan` shows the same findings, but its exit code is about changes only.
    let plan = t.host.ehn(&["plan", "--format", "json"]);
    plan.expect_code(0);
    assert_eq!(json(&plan)["findings"], doc["findings"]);
    // The findings are true: the container gets nothing.
    assert_probes(
        "with CIS input and the stealing DNAT",
        &[probe("container credentials endpoint", &t.container, "169.254.170.2:80", None)],
    );

    run_fix(&t.host, input["fix"].as_str().expect("a fix"));
    run_fix(&t.host, steal["fix"].as_str().expect("a fix"));
    let out = t.host.ehn(&["check", "--format", "json"]);
    out.expect_code(0);
    let doc = json(&out);
    assert_eq!(doc["findings"], serde_json::json!([]), "{doc:#}");
    let text = t.host.ehn(&["check"]);
    text.expect_code(0);
    assert!(!text.stdout.contains("does not do its job"), "{text}");
    assert_probes("after the fixes", &creds());
}

/// ecs-init's own rules (its exact commands, through iptables-nft) are named as info and
/// block nothing: `check` exits 0 and a container gets credentials.
#[test]
fn ecs_init_rules_are_named_and_do_not_block() {
    let t = Topology::new();
    for args in [
        "-t nat -A PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination 127.0.0.1:51679",
        "-I INPUT --dst 127.0.0.0/8 ! --src 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        "-I INPUT -p tcp --dport 51678 ! -i lo -j DROP",
        "-I INPUT -p tcp --dport 51678 -i docker0 -j ACCEPT",
        "-t nat -A OUTPUT -p tcp -d 169.254.170.2 --dport 80 -j REDIRECT --to-ports 51679",
    ] {
        let args: Vec<&str> = args.split_whitespace().collect();
        t.host.exec_ok("iptables-nft", &args);
    }
    t.host.ehn(&["apply"]).expect_code(0);
    let out = t.host.ehn(&["check", "--format", "json"]);
    out.expect_code(0);
    let doc = json(&out);
    let all = doc["findings"].as_array().expect("findings");
    let named: Vec<(String, String)> = all
        .iter()
        .map(|f| {
            assert_eq!((&f["code"], &f["severity"]), (&"ecs-init-rules".into(), &"info".into()), "{doc:#}");
            (f["table"].as_str().unwrap().to_string(), f["chain"].as_str().unwrap().to_string())
        })
        .collect();
    let want = |t: &str, c: &str, n: usize| named.iter().filter(|x| x.0 == t && x.1 == c).count() == n;
    assert!(want("nat", "PREROUTING", 1) && want("nat", "OUTPUT", 1) && want("filter", "INPUT", 3), "{named:?}");
    let text = t.host.ehn(&["plan"]);
    text.expect_code(0);
    assert!(text.stdout.contains("INFO ecs-init-rules: ip nat PREROUTING: ecs-init's credentials DNAT"), "{text}");
    assert_probes(
        "with ecs-init's rules",
        &[probe("container credentials endpoint", &t.container, "169.254.170.2:80", Some(CREDS_BODY))],
    );
}

/// iptables-legacy tables in the namespace: a warning (not blocking), and the traffic is
/// what it was (the legacy DNAT is ecs-init's, to the same agent).
#[test]
fn iptables_legacy_tables_are_a_warning() {
    let t = Topology::new();
    let args = "-t nat -A PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination 127.0.0.1:51679";
    t.host.exec_ok("iptables-legacy", &args.split_whitespace().collect::<Vec<_>>());
    t.host.ehn(&["apply"]).expect_code(0);
    let out = t.host.ehn(&["check", "--format", "json"]);
    out.expect_code(0);
    let doc = json(&out);
    let legacy = finding(&doc, "iptables-legacy-in-use");
    assert_eq!((&legacy["severity"], &legacy["family"]), (&"warning".into(), &serde_json::Value::Null), "{legacy:#}");
    assert!(legacy["table"].as_str().unwrap().split(' ').any(|t| t == "nat"), "{legacy:#}");
    assert_eq!(legacy["chain"], serde_json::Value::Null, "no chain: null, never \"\": {legacy:#}");
    let text = t.host.ehn(&["check"]);
    assert!(text.stdout.contains("WARNING iptables-legacy-in-use: iptables-legacy tables nat"), "{text}");
    assert_probes(
        "with an iptables-legacy DNAT",
        &[
            probe("container credentials endpoint", &t.container, "169.254.170.2:80", Some(CREDS_BODY)),
            probe("container IMDS v4", &t.container, "169.254.169.254:80", None),
        ],
    );
}

/// `iptables-nft-restore` input with `rules` Docker-like rules: per published container a
/// nat DNAT (chain DOCKER), a MASQUERADE and a filter ACCEPT (chain DOCKER), with Docker's
/// jumps from PREROUTING, OUTPUT and FORWARD.
fn docker_like_rules(rules: usize) -> String {
    let n = rules / 3;
    let mut s = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    s.push_str(":DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n");
    s.push_str("-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n");
    let addr = |i: usize| format!("172.17.{}.{}", i / 250, i % 250 + 2);
    for i in 0..n {
        let a = addr(i);
        s.push_str(&format!(
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport {} -j DNAT --to-destination {a}:80\n",
            10000 + i
        ));
        s.push_str(&format!("-A POSTROUTING -s {a}/32 -d {a}/32 -p tcp -m tcp --dport 80 -j MASQUERADE\n"));
    }
    s.push_str("COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n");
    s.push_str(
        ":DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n-A DOCKER-USER -j RETURN\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "-A DOCKER -d {}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n",
            addr(i)
        ));
    }
    s.push_str("COMMIT\n");
    s
}

/// Beside 4,600 Docker-like iptables-nft rules (none of them on the path's base chains but
/// Docker's jumps), a converged `check` reads the path and finds nothing to report. What it
/// costs there against `nft list ruleset` is a benchmark's question, not a test's (speed is
/// never asserted by a timed test).
#[test]
fn a_converged_check_beside_4600_foreign_rules_finds_nothing() {
    let ns = Netns::new("many");
    let dir = TempDir::new("many");
    let file = dir.write("docker.rules", &docker_like_rules(4600));
    let out = run_cmd(
        "ip",
        &["netns", "exec", &ns.name, "sh", "-c", &format!("iptables-nft-restore < {file}")],
        std::time::Duration::from_secs(60),
    );
    assert!(out.ok(), "{out}");
    ns.ehn(&["apply"]).expect_code(0);
    ns.ehn(&["check"]).expect_code(0);
    let doc = json(&ns.ehn(&["check", "--format", "json"]));
    assert_eq!(doc["findings"], serde_json::json!([]), "{doc:#}");
}

/// The AWS page's commands and their persistence, left on a host: a sysctl.d line, an
/// `iptables-save` file with its restoring unit enabled (in a temp `--root`), and the live
/// DOCKER-USER IMDS drop (iptables-nft, in the namespace). `check` names each (file and
/// line, or chain and handle) as a warning or info and exits 0: none blocks. The fixes, run
/// as printed (the file paths taken inside the temp root), clear them; without the
/// DOCKER-USER rule a container still cannot reach IMDS (ecs-hostnet's block holds), and it
/// still gets credentials.
#[test]
fn the_aws_commands_leftovers_are_named_and_their_fixes_clear_them() {
    let t = Topology::new();
    for args in [
        "-N DOCKER-USER",
        "-A FORWARD -j DOCKER-USER",
        "--insert DOCKER-USER 1 --in-interface docker+ --destination 169.254.169.254/32 --jump DROP",
    ] {
        t.host.exec_ok("iptables-nft", &args.split_whitespace().collect::<Vec<_>>());
    }
    let root = TempDir::new("leftovers");
    let put = |abs: &str, text: &str| {
        let p = root.path().join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    };
    put("/etc/sysctl.d/99-ecs.conf", "vm.swappiness = 10\nnet.ipv4.conf.all.route_localnet = 1\n");
    put(
        "/etc/sysconfig/iptables",
        "*nat\n:PREROUTING ACCEPT [0:0]\n\
         -A PREROUTING -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:51679\n\
         -A PREROUTING -d 10.0.0.1/32 -j DNAT --to-destination 10.0.0.2\nCOMMIT\n",
    );
    let wants = root.path().join("etc/systemd/system/basic.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("/usr/lib/systemd/system/iptables.service", wants.join("iptables.service")).unwrap();
    let r = root.path().to_str().unwrap();
    t.host.ehn(&["--root", r, "apply"]).expect_code(0);

    let out = t.host.ehn(&["--root", r, "check", "--format", "json"]);
    out.expect_code(0);
    let doc = json(&out);
    assert_eq!(doc["converged"], true, "{doc:#}");
    let sysctl = finding(&doc, "sysctl-file-route-localnet");
    assert_eq!(
        (&sysctl["severity"], &sysctl["file"], &sysctl["line"], &sysctl["family"]),
        (&"warning".into(), &"/etc/sysctl.d/99-ecs.conf".into(), &2.into(), &serde_json::Value::Null),
        "{sysctl:#}"
    );
    // A finding about a file names no table and no chain: null, as its family (never "").
    assert_eq!(
        (&sysctl["table"], &sysctl["chain"]),
        (&serde_json::Value::Null, &serde_json::Value::Null),
        "{sysctl:#}"
    );
    let saved = finding(&doc, "iptables-saved-rules");
    assert_eq!(
        (&saved["severity"], &saved["file"], &saved["line"]),
        (&"warning".into(), &"/etc/sysconfig/iptables".into(), &3.into())
    );
    let imds = finding(&doc, "iptables-imds-block");
    assert_eq!(
        (&imds["severity"], &imds["family"], &imds["table"], &imds["chain"], &imds["fix"]),
        (&"info".into(), &"ip".into(), &"filter".into(), &"DOCKER-USER".into(), &"iptables -D DOCKER-USER 1".into()),
        "{imds:#}"
    );
    assert!(imds["handle"].as_u64().is_some(), "{imds:#}");
    let text = t.host.ehn(&["--root", r, "check"]);
    text.expect_code(0);
    for needle in [
        "WARNING sysctl-file-route-localnet: /etc/sysctl.d/99-ecs.conf:2: ",
        "WARNING iptables-saved-rules: /etc/sysconfig/iptables:3: ",
        "INFO iptables-imds-block: ip filter DOCKER-USER: ",
    ] {
        assert!(text.stdout.contains(needle), "{needle:?} missing: {text}");
    }

    // The fixes as printed; the files' paths taken inside the temp root.
    for f in [sysctl, saved] {
        let fix = f["fix"].as_str().unwrap().replace(" /etc/", &format!(" {r}/etc/"));
        assert!(fix.starts_with("sed -i "), "{fix}");
        sh("sh", &["-c", &fix]);
    }
    let sysctl_d = std::fs::read_to_string(root.path().join("etc/sysctl.d/99-ecs.conf")).unwrap();
    assert_eq!(sysctl_d, "vm.swappiness = 10\n");
    let saved_now = std::fs::read_to_string(root.path().join("etc/sysconfig/iptables")).unwrap();
    assert!(!saved_now.contains("169.254.170.2") && saved_now.contains("10.0.0.1/32"), "{saved_now}");
    t.host.exec_ok("iptables-nft", &imds["fix"].as_str().unwrap().split_whitespace().skip(1).collect::<Vec<_>>());
    let out = t.host.ehn(&["--root", r, "check", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(json(&out)["findings"], serde_json::json!([]), "{out}");
    assert_probes(
        "after the leftovers' fixes",
        &[
            probe("container credentials endpoint", &t.container, "169.254.170.2:80", Some(CREDS_BODY)),
            probe("container IMDS v4", &t.container, "169.254.169.254:80", None),
        ],
    );
}
