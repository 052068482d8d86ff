//! `snapshot` and `plan --against`: a plan made from a snapshot of a namespace is the plan
//! made on that namespace, byte for byte (text) and field for field (JSON, all but
//! `against`), for several states of a namespace and several configurations each.
//!
//! Safety: every kernel-facing command runs as root against a namespace made here
//! (`Netns`), with that namespace's run directory and a temp dir as `--root`. Every
//! `plan --against` runs as uid/gid 65534 (when the tests run as root) on copies in a
//! world-readable temp dir, with an empty temp dir as `--root`. The user-namespace test
//! runs entirely as 65534 in a network namespace of its own (`unshare --user --net`),
//! which the kernel removes when its last process exits.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// `text` with `old` (which must occur exactly once) replaced by `new`.
fn edit(text: &str, old: &str, new: &str) -> String {
    assert_eq!(text.matches(old).count(), 1, "{old:?} must occur once in rules/default.toml");
    text.replace(old, new)
}

/// The configurations every state is planned with: (file name, text).
fn configs() -> Vec<(&'static str, String)> {
    let d = default_config_text();
    vec![
        ("default.toml", d.clone()),
        (
            "cni.toml",
            edit(
                &d,
                r#"interfaces = ["docker+", "br-+", "ecs-bridge"]"#,
                r#"interfaces = ["docker+", "br-+", "ecs-bridge", "cni+"]"#,
            ),
        ),
        ("port.toml", edit(&d, "agent_port = 51679", "agent_port = 51680")),
        ("rl-list.toml", edit(&d, "enable = \"all\"\n", "enable = [\"docker0\", \"ecs-bridge\"]\n")),
        ("agent.toml", edit(&d, "awsvpc_block_imds = true", "awsvpc_block_imds = false")),
        ("route-never.toml", edit(&d, "endpoint_route_via_lo = \"auto\"", "endpoint_route_via_lo = \"never\"")),
    ]
}

/// The configurations and snapshots in a world-readable temp dir, and the unprivileged
/// runner of `plan --against`.
struct Bench {
    u: Unprivileged,
    /// configurations and snapshots
    files: PathBuf,
    /// `--root` of every `plan --against` (empty)
    empty_root: PathBuf,
}

/// The live plan and the plan from the snapshot for one configuration.
struct Pair {
    config: &'static str,
    live_text: Out,
    against_text: Out,
    live_json: Out,
    against_json: Out,
}

impl Bench {
    fn new(role: &str) -> Bench {
        let u = Unprivileged::new(role);
        let files = u.subdir("files");
        let empty_root = u.subdir("empty-root");
        for (name, text) in configs() {
            write_readable(&files.join(name), text.as_bytes());
        }
        Bench { u, files, empty_root }
    }

    fn path(&self, name: &str) -> String {
        self.files.join(name).to_string_lossy().into_owned()
    }

    /// `snapshot` of `ns` (as root, `--root root`), saved as `<label>.json`; (path, text).
    fn snapshot(&self, ns: &Netns, root: &Path, label: &str) -> (String, String) {
        let out = ns.ehn(&["--root", root.to_str().unwrap(), "snapshot"]);
        out.expect_code(0);
        assert!(!out.stderr.contains("panicked"), "{out}");
        let doc: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{label}: snapshot is not JSON ({e}): {out}"));
        assert_eq!(doc["schema"], "ecs-hostnet.snapshot/v1", "{label}: {out}");
        let path = self.path(&format!("{label}.json"));
        write_readable(Path::new(&path), out.stdout.as_bytes());
        (path, out.stdout)
    }

    /// `plan --against SNAPSHOT -c CONFIG [--format json]`, unprivileged.
    fn against(&self, snap: &str, config: &str, json: bool) -> Out {
        let mut args = vec![
            "--root",
            self.empty_root.to_str().unwrap(),
            "plan",
            "--against",
            snap,
            "-c",
            config,
            "--color",
            "never",
        ];
        if json {
            args.extend(["--format", "json"]);
        }
        self.u.ehn(&self.files, &args)
    }

    /// Take a snapshot of `ns` in its current state and compare, for every configuration,
    /// the live plan with the plan from the snapshot. Problems are appended to `problems`.
    fn compare_state(&self, label: &str, ns: &Netns, root: &Path, problems: &mut Vec<String>) -> (String, Vec<Pair>) {
        let (snap, snap_text) = self.snapshot(ns, root, label);
        let root_s = root.to_str().unwrap();
        let mut pairs = Vec::new();
        for (name, _) in configs() {
            let cfg = self.path(name);
            let live_text = ns.ehn(&["--root", root_s, "plan", "-c", &cfg, "--color", "never"]);
            let live_json = ns.ehn(&["--root", root_s, "plan", "-c", &cfg, "--format", "json"]);
            let against_text = self.against(&snap, &cfg, false);
            let against_json = self.against(&snap, &cfg, true);
            let at = format!("state {label}, {name}");
            for out in [&live_text, &live_json, &against_text, &against_json] {
                if out.code != 0 && out.code != 2 {
                    problems.push(format!("{at}: want exit 0 or 2: {out}"));
                }
                if out.stderr.contains("panicked") {
                    problems.push(format!("{at}: panic: {out}"));
                }
            }
            if live_text.code != against_text.code {
                problems.push(format!("{at}: exit {} live, {} from the snapshot", live_text.code, against_text.code));
            }
            if live_json.code != live_text.code || against_json.code != against_text.code {
                problems.push(format!("{at}: `--format json` exits otherwise than text"));
            }
            if live_text.stdout != against_text.stdout {
                problems.push(format!(
                    "{at}: text plans differ:\n{}",
                    unified_diff("plan (live)", &live_text.stdout, "plan --against", &against_text.stdout)
                ));
            }
            match (
                serde_json::from_str::<Value>(&live_json.stdout),
                serde_json::from_str::<Value>(&against_json.stdout),
            ) {
                (Ok(mut l), Ok(mut a)) => {
                    let (la, aa) = (l["against"].take(), a["against"].take());
                    if la["kind"] != "netns" {
                        problems.push(format!("{at}: live plan: `against` is {la}, want kind netns"));
                    }
                    if aa != serde_json::json!({"kind": "snapshot", "path": snap}) {
                        problems
                            .push(format!("{at}: plan --against: `against` is {aa}, want kind snapshot, path {snap}"));
                    }
                    if l != a {
                        let (lp, ap) =
                            (serde_json::to_string_pretty(&l).unwrap(), serde_json::to_string_pretty(&a).unwrap());
                        problems.push(format!(
                            "{at}: JSON plans differ (`against` removed):\n{}",
                            unified_diff("plan --format json (live)", &lp, "plan --against --format json", &ap)
                        ));
                    }
                }
                (l, a) => problems.push(format!(
                    "{at}: not JSON (live: {:?}, against: {:?}):\n{live_json}\n{against_json}",
                    l.err(),
                    a.err()
                )),
            }
            pairs.push(Pair { config: name, live_text, against_text, live_json, against_json });
        }
        (snap_text, pairs)
    }
}

#[track_caller]
fn assert_no_problems(problems: &[String]) {
    assert!(problems.is_empty(), "{} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
}

/// The pair planned with `config`.
fn pair<'a>(pairs: &'a [Pair], config: &str) -> &'a Pair {
    pairs.iter().find(|p| p.config == config).expect("config")
}

/// States (a) fresh, lo down, (b) applied, (c) altered with nft and sysctl, more drift
/// (foreign set, table flags, chain policy), and our tables flushed.
#[test]
fn plan_against_snapshot_equals_live_plan_fresh_applied_altered() {
    require_root();
    let b = Bench::new("snap-states");
    let ns = Netns::new("snap");
    let root = TempDir::new("snap-root");
    let r = root.path();
    let r_s = r.to_str().unwrap();
    let default = b.path("default.toml");
    let mut problems = Vec::new();

    // (a) fresh namespace, lo up
    let (_, pairs) = b.compare_state("a-fresh", &ns, r, &mut problems);
    if pair(&pairs, "default.toml").live_text.code != 2 {
        problems.push("a-fresh: plan of a fresh namespace must have changes".into());
    }

    // (a') lo down: no endpoint route possible, a note says so
    ns.ip(&["link", "set", "lo", "down"]);
    b.compare_state("a-lo-down", &ns, r, &mut problems);
    ns.ip(&["link", "set", "lo", "up"]);

    // (b) after apply of the default
    ns.ehn(&["--root", r_s, "apply", "-c", &default]).expect_code(0);
    let (_, pairs) = b.compare_state("b-applied", &ns, r, &mut problems);
    let p = pair(&pairs, "default.toml");
    if p.live_text.code != 0 || p.against_text.code != 0 {
        problems
            .push(format!("b-applied: plan of the applied default must be 0:\n{}\n{}", p.live_text, p.against_text));
    }

    // (c) someone deletes a rule by handle, adds a rule of their own to our chain and puts
    // route_localnet back to 0
    let victim = rule_by_comment(&ns, "introspection-guard");
    let handle = victim.handle.expect("handle").to_string();
    ns.nft(&["delete", "rule", "inet", "ecs-hostnet", "input", "handle", &handle]);
    ns.nft(&["add", "rule", "inet", "ecs-hostnet", "forward", "ip", "daddr", "10.9.9.9", "counter", "accept"]);
    ns.set_sysctl("net.ipv4.conf.all.route_localnet", "0");
    let (_, pairs) = b.compare_state("c-altered", &ns, r, &mut problems);
    let p = pair(&pairs, "default.toml");
    for want in ["introspection-guard", "10.9.9.9", "route_localnet"] {
        if !p.live_text.stdout.contains(want) {
            problems.push(format!("c-altered: the live plan does not mention {want:?}: {}", p.live_text));
        }
    }

    // (c') more drift: a changed rule (replaced by handle), a foreign named set in our
    // table, a chain policy, the dormant flag, and a foreign table (never ours to touch)
    let dnat = rule_by_comment(&ns, "credentials-redirect");
    let handle = dnat.handle.expect("handle").to_string();
    ns.nft(&[
        "replace",
        "rule",
        "ip",
        "ecs-hostnet",
        "output",
        "handle",
        &handle,
        "ip",
        "daddr",
        "169.254.170.2",
        "tcp",
        "dport",
        "80",
        "counter",
        "redirect",
        "to",
        ":51999",
        "comment",
        "\"credentials-redirect\"",
    ]);
    ns.nft(&["add", "set", "inet", "ecs-hostnet", "someones", "{", "type", "ipv4_addr", ";", "}"]);
    ns.nft(&[
        "add",
        "chain",
        "inet",
        "ecs-hostnet",
        "forward",
        "{",
        "type",
        "filter",
        "hook",
        "forward",
        "priority",
        "0",
        ";",
        "policy",
        "drop",
        ";",
        "}",
    ]);
    ns.nft(&["add", "table", "ip", "ecs-hostnet", "{", "flags", "dormant", ";", "}"]);
    ns.nft(&["add", "table", "inet", "someone-else"]);
    ns.nft(&[
        "add",
        "chain",
        "inet",
        "someone-else",
        "in",
        "{",
        "type",
        "filter",
        "hook",
        "input",
        "priority",
        "0",
        ";",
        "}",
    ]);
    ns.nft(&["add", "rule", "inet", "someone-else", "in", "tcp", "dport", "22", "accept"]);
    b.compare_state("c-more-drift", &ns, r, &mut problems);

    // (c'') repaired, then our tables flushed by someone: route_localnet is on with no
    // guard live, and only the saved record knows the value to restore
    ns.ehn(&["--root", r_s, "apply", "-c", &default]).expect_code(0);
    ns.nft(&["delete", "table", "ip", "ecs-hostnet"]);
    ns.nft(&["delete", "table", "inet", "ecs-hostnet"]);
    let (snap, _) = b.compare_state("c-flushed", &ns, r, &mut problems);
    let doc: Value = serde_json::from_str(&snap).unwrap();
    if doc["saved_record"].is_null() {
        problems.push(format!("c-flushed: the snapshot has no saved_record: {snap}"));
    }
    assert_no_problems(&problems);
}

/// (d) An IPv6-only-looking host: no IPv4 default route, so `auto` wants the endpoint
/// route via lo. Before apply, after apply, with the route deleted by hand, and after an
/// IPv4 default route appeared.
#[test]
fn plan_against_snapshot_equals_live_plan_ipv6_only_host() {
    require_root();
    let b = Bench::new("snap-v6");
    let (host, peer) = ipv6_only_pair("snapv6");
    let root = TempDir::new("snapv6-root");
    let r = root.path();
    let default = b.path("default.toml");
    let mut problems = Vec::new();

    let (snap, pairs) = b.compare_state("d-fresh", &host, r, &mut problems);
    let doc: Value = serde_json::from_str(&snap).unwrap();
    if doc["ipv4_default_route"] != false || doc["lo_up"] != true {
        problems.push(format!(
            "d-fresh: snapshot says ipv4_default_route {} lo_up {}",
            doc["ipv4_default_route"], doc["lo_up"]
        ));
    }
    let p = pair(&pairs, "default.toml");
    if !p.live_text.stdout.contains("route 169.254.170.2/32 dev lo") {
        problems.push(format!("d-fresh: the plan does not add the endpoint route: {}", p.live_text));
    }

    host.ehn(&["--root", r.to_str().unwrap(), "apply", "-c", &default]).expect_code(0);
    assert_eq!(route_lines(&host.name, false, "169.254.170.2").len(), 1);
    b.compare_state("d-applied", &host, r, &mut problems);

    host.ip(&["route", "del", "169.254.170.2/32", "dev", "lo"]);
    b.compare_state("d-route-deleted", &host, r, &mut problems);

    host.ehn(&["--root", r.to_str().unwrap(), "apply", "-c", &default]).expect_code(0);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    host.ip(&["route", "add", "default", "via", "192.0.2.2"]);
    b.compare_state("d-ipv4-default-route-appeared", &host, r, &mut problems);
    assert_no_problems(&problems);
}

/// (e) An installed host (`install --root TMP`): converged, then an installed unit edited,
/// the boot unit's enablement removed and /etc/ecs/ecs.config edited (with a secret that
/// must never leave the host: not in the snapshot, not in any plan).
#[test]
fn plan_against_snapshot_equals_live_plan_installed_host() {
    require_root();
    let b = Bench::new("snap-inst");
    let ns = Netns::new("snapinst");
    let root = TempDir::new("snapinst-root");
    let r = root.path();
    let r_s = r.to_str().unwrap();
    let default = b.path("default.toml");
    let mut problems = Vec::new();

    ehn_with_run_dir(ns.run_dir(), &["--root", r_s, "install", "-c", &default]).expect_code(0);
    ns.ehn(&["--root", r_s, "apply", "-c", &default]).expect_code(0);
    let (snap, pairs) = b.compare_state("e-installed", &ns, r, &mut problems);
    let doc: Value = serde_json::from_str(&snap).unwrap();
    if doc["install"].is_null() {
        problems.push(format!("e-installed: the snapshot has no install section: {snap}"));
    }
    let p = pair(&pairs, "default.toml");
    if p.live_text.code != 0 {
        problems.push(format!("e-installed: installed and applied, the default plan must be 0: {}", p.live_text));
    }

    // edits: the boot unit, its enablement, and ecs.config (a secret, a comment, one of our keys)
    let unit = r.join("etc/systemd/system/ecs-hostnet.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, edit(&text, "Type=oneshot", "Type=simple")).unwrap();
    std::fs::remove_file(r.join("etc/systemd/system/sysinit.target.wants/ecs-hostnet.service")).unwrap();
    let ecs_config = r.join("etc/ecs/ecs.config");
    let text = std::fs::read_to_string(&ecs_config).unwrap();
    let text = edit(&text, "ECS_AWSVPC_BLOCK_IMDS=true", "ECS_AWSVPC_BLOCK_IMDS=false");
    std::fs::write(
        &ecs_config,
        format!("# cluster settings: supersecret comment\nECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA=supersecret\n{text}"),
    )
    .unwrap();
    let (snap, pairs) = b.compare_state("e-installed-edited", &ns, r, &mut problems);

    if snap.contains("supersecret") {
        problems.push(format!("the snapshot contains the secret from ecs.config:\n{snap}"));
    }
    if !snap.contains("ECS_ENGINE_AUTH_DATA=<redacted>") {
        problems.push(format!("the snapshot does not show ecs.config (redacted) at all:\n{snap}"));
    }
    for p in &pairs {
        for out in [&p.live_text, &p.against_text, &p.live_json, &p.against_json] {
            if out.stdout.contains("supersecret") || out.stderr.contains("supersecret") {
                problems.push(format!("{}: a plan shows the secret from ecs.config: {out}", p.config));
            }
        }
    }
    let p = pair(&pairs, "default.toml");
    for want in ["Type=simple", "sysinit.target.wants/ecs-hostnet.service", "ECS_AWSVPC_BLOCK_IMDS"] {
        if !p.live_text.stdout.contains(want) {
            problems.push(format!("e-installed-edited: the plan does not mention {want:?}: {}", p.live_text));
        }
    }
    assert_no_problems(&problems);
}

/// No root at all: as uid 65534, a user namespace that owns a new network namespace;
/// inside, `apply`, `snapshot` and `plan`; outside (still 65534) `plan --against` gives
/// what `plan` gave inside.
#[test]
fn snapshot_and_plan_without_root_in_a_user_namespace() {
    let b = Bench::new("snap-userns");
    let work = b.u.owned_subdir("work");
    let w = work.to_str().unwrap();
    let bin = b.u.bin().to_str().unwrap();
    for s in [w, bin] {
        assert!(!s.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)), "path unfit for sh: {s}");
    }
    let names: Vec<&str> = configs().iter().map(|c| c.0).collect();

    let mut probe = b.u.command("unshare", &work);
    probe.args(["--user", "--map-root-user", "--net", "sh", "-c", "ip link set lo up && id -u"]);
    let out = b.u.run(&mut probe);
    assert!(
        out.code == 0 && out.stdout.trim() == "0",
        "unprivileged user namespaces are unavailable on this machine (uid {} cannot run `unshare --user \
         --map-root-user --net`; see sysctls user.max_user_namespaces, kernel.unprivileged_userns_clone, \
         kernel.apparmor_restrict_unprivileged_userns): this test needs them and does not pass without them.\n{out}",
        b.u.uid()
    );

    let mut script = format!(
        "set -u\nip link set lo up || exit 10\nexport ECS_HOSTNET_RUN_DIR={w}/run\nmkdir -p {w}/run {w}/root || exit 11\n\
         {bin} --root {w}/root apply -c {files}/default.toml || exit 12\n\
         {bin} --root {w}/root snapshot > {w}/s.json || exit 13\n",
        files = b.files.display()
    );
    for n in &names {
        script.push_str(&format!(
            "{bin} --root {w}/root plan -c {f}/{n} --color never > {w}/{n}.live.txt; echo $? > {w}/{n}.live.rc\n\
             {bin} --root {w}/root plan -c {f}/{n} --format json > {w}/{n}.live.json\n",
            f = b.files.display()
        ));
    }
    script.push_str("exit 0\n");
    let mut cmd = b.u.command("unshare", &work);
    cmd.args(["--user", "--map-root-user", "--net", "sh", "-c", &script]);
    let inside = b.u.run(&mut cmd);
    assert_eq!(
        inside.code, 0,
        "apply/snapshot inside the user namespace failed (exit 1x: step x of the script): {inside}"
    );
    assert!(!inside.stderr.contains("panicked"), "{inside}");

    let snap = format!("{w}/s.json");
    let mut problems = Vec::new();
    for n in &names {
        let cfg = b.path(n);
        let live = std::fs::read_to_string(format!("{w}/{n}.live.txt")).unwrap();
        let live_rc: i32 = std::fs::read_to_string(format!("{w}/{n}.live.rc")).unwrap().trim().parse().unwrap();
        let out = b.against(&snap, &cfg, false);
        if out.code != live_rc || out.stdout != live {
            problems.push(format!(
                "{n}: exit {live_rc} inside, {} from the snapshot:\n{}",
                out.code,
                unified_diff("plan inside the user namespace", &live, "plan --against", &out.stdout)
            ));
        }
        if *n == "default.toml" && live_rc != 0 {
            problems.push(format!("{n}: right after apply, plan inside must be 0 (is {live_rc}):\n{live}"));
        }
        let live_json: Value = serde_json::from_str(&std::fs::read_to_string(format!("{w}/{n}.live.json")).unwrap())
            .unwrap_or_else(|e| panic!("{n}: live JSON plan: {e}"));
        let out = b.against(&snap, &cfg, true);
        let against_json: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{n}: plan --against JSON: {e}: {out}"));
        let strip = |mut v: Value| {
            v["against"].take();
            v
        };
        if strip(live_json.clone()) != strip(against_json.clone()) {
            problems.push(format!(
                "{n}: JSON plans differ:\n{}",
                unified_diff(
                    "inside",
                    &serde_json::to_string_pretty(&live_json).unwrap(),
                    "plan --against",
                    &serde_json::to_string_pretty(&against_json).unwrap()
                )
            ));
        }
    }
    assert_no_problems(&problems);
}

/// Bad snapshots: exit 1, the file named on stderr (with LINE:COL for JSON errors), stdout
/// empty, for text and JSON output.
#[test]
fn bad_snapshots_are_refused() {
    require_root();
    let b = Bench::new("snap-bad");
    let ns = Netns::new("snapbad");
    let root = TempDir::new("snapbad-root");
    let r_s = root.path().to_str().unwrap();
    ns.ehn(&["--root", r_s, "apply", "-c", &b.path("default.toml")]).expect_code(0);
    let (_, good) = b.snapshot(&ns, root.path(), "good");
    let first_data = good
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("\"data\": \"").map(|rest| rest.trim_end_matches(['"', ','])).map(str::to_string)
        })
        .expect("a cmp/immediate data field in the snapshot");
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);

    // (name, text, the lines the error's LINE:COL may point at (None: no position needed))
    let any = Some((1, usize::MAX));
    let at = |l: Option<usize>| l.map(|l| (l, l));
    type Case<'a> = (&'a str, String, Option<(usize, usize)>);
    let mut cases: Vec<Case> = vec![
        ("not-json", "this is not JSON\n".into(), Some((1, 1))),
        ("empty", String::new(), Some((1, 1))),
        ("truncated", good[..good.len() / 2].to_string(), any),
        ("array", "[]\n".into(), None),
        ("wrong-schema", good.replacen("\"ecs-hostnet.snapshot/v1\"", "\"ecs-hostnet.snapshot/v2\"", 1), None),
        ("plan-schema", good.replacen("\"ecs-hostnet.snapshot/v1\"", "\"ecs-hostnet.plan/v1\"", 1), None),
    ];
    let unknown = good.replacen("\"generation\"", "\"surprise\": 1,\n  \"generation\"", 1);
    let l = line_of(&unknown, "\"surprise\"");
    cases.push(("unknown-field", unknown, at(l)));
    let nested = good.replacen("\"comment\":", "\"commentary\": null,\n \"comment\":", 1);
    let l = line_of(&nested, "\"commentary\"");
    cases.push(("unknown-nested-field", nested, at(l)));
    let tag = good.replacen("\"expr\": \"meta\"", "\"expr\": \"metax\"", 1);
    let l = line_of(&tag, "\"metax\"");
    cases.push(("unknown-expr-tag", tag, at(l)));
    for (name, bad) in [
        ("bad-hex-digit", format!("{}zz", &first_data[..first_data.len() - 2])),
        ("bad-hex-odd", first_data[..first_data.len() - 1].to_string()),
        ("bad-hex-0x-prefix", format!("0x{first_data}")),
    ] {
        let text = good.replacen(&format!("\"data\": \"{first_data}\""), &format!("\"data\": \"{bad}\""), 1);
        let l = line_of(&text, &format!("\"{bad}\""));
        let l = l.unwrap_or_else(|| panic!("{name}: the mutation did not apply"));
        // A value inside an expression (an internally tagged object) is checked once the
        // whole object has been read: serde_json then reports where its parser is, at the
        // start of the next expression, up to 2 lines below the bad value.
        cases.push((name, text, Some((l, l + 2))));
    }
    let wrong_type = good.replacen("\"lo_up\": true", "\"lo_up\": \"yes\"", 1);
    let l = line_of(&wrong_type, "\"lo_up\": \"yes\"");
    assert!(l.is_some(), "the snapshot has `\"lo_up\": true`: {good}");
    cases.push(("wrong-type", wrong_type, at(l)));

    let mut problems = Vec::new();
    for (name, text, pos) in &cases {
        let file = format!("{name}.json");
        write_readable(&b.files.join(&file), text.as_bytes());
        for json in [false, true] {
            // relative and absolute names of the snapshot
            for snap in [file.clone(), b.path(&file)] {
                let out = b.against(&snap, &b.path("default.toml"), json);
                let at = format!("{name} (json output: {json})");
                if out.code != 1 {
                    problems.push(format!("{at}: want exit 1: {out}"));
                }
                if !out.stdout.is_empty() {
                    problems.push(format!("{at}: stdout must be empty: {out}"));
                }
                if out.stderr.contains("panicked") {
                    problems.push(format!("{at}: panic: {out}"));
                }
                if !out.stderr.contains(&snap) {
                    problems.push(format!("{at}: stderr must name the file {snap}: {out}"));
                }
                if let Some((lo, hi)) = pos {
                    match file_line_col(&out.stderr, &snap) {
                        None => problems.push(format!("{at}: stderr must have `{snap}:LINE:COL: `: {out}")),
                        Some((line, _)) if line < *lo || line > *hi => {
                            problems.push(format!("{at}: error points at line {line}, want {lo}..={hi}: {out}"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    // a missing file
    let out = b.against("does-not-exist.json", &b.path("default.toml"), false);
    if out.code != 1 || !out.stdout.is_empty() || !out.stderr.contains("does-not-exist.json") {
        problems.push(format!("missing snapshot: want exit 1, empty stdout, the file named: {out}"));
    }
    // the good one is read
    let out = b.against("good.json", &b.path("default.toml"), false);
    if out.code != 0 {
        problems.push(format!("the good snapshot: want exit 0: {out}"));
    }
    assert_no_problems(&problems);
}

/// An endless snapshot (`/dev/zero`) is refused once it is larger than any host's, instead
/// of filling the memory; no root needed.
#[test]
fn an_endless_snapshot_is_refused_before_it_fills_the_memory() {
    let o = ehn(&["plan", "--against", "/dev/zero"]);
    o.expect_code(1);
    assert!(o.stderr.contains("/dev/zero: cannot read the snapshot: larger than 64 MiB"), "{o}");
    assert!(o.stdout.is_empty(), "{o}");
}
