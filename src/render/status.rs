//! The `status` report: what one read of the host says (our rules' counters, converged or
//! not, the localhost guard, route_localnet, the endpoint route, the findings, the
//! watcher), built from the planner's inputs and outputs ([`Status::new`]) and printed as
//! text for people ([`text`]), the schema `ecs-hostnet.status/v1` ([`json`]) or the
//! Prometheus text exposition format 0.0.4 ([`prometheus`]). Pure: no I/O.
//!
//! Metric families (all named `ecs_hostnet_*`; one `# HELP` and one `# TYPE` line each):
//! see [`FAMILIES`]. The IMDS drop rules' packet counters (`rule="imds-block-ipv4"`) count
//! every attempt; the audit lines (`ecs_hostnet_imds_audit_lines_total`) are rate-limited.

use crate::desired::Desired;
use crate::model::escape::escape_controls;
use crate::model::finding::{Finding, Severity};
use crate::model::ruleset::Family;
use crate::model::watch_state::WatchState;
use crate::plan::live::LiveState;
use crate::plan::{Plan, is_our_id, localhost_guard_is_live};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The schema name of [`json`]'s document.
pub const SCHEMA: &str = "ecs-hostnet.status/v1";

/// The counters of one rule of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCounters {
    /// `ip` or `inet`.
    pub family: Family,
    /// The table (`ecs-hostnet`).
    pub table: String,
    /// The chain (`prerouting`, `input`, `forward`, `output`).
    pub chain: String,
    /// The rule id (its comment; [`crate::model::names::rule_id`]).
    pub rule: String,
    /// The kernel handle.
    pub handle: u64,
    /// Packets that reached the rule's counter (matched everything before it).
    pub packets: u64,
    /// Their bytes (L3 length).
    pub bytes: u64,
}

/// The `ENDPOINT/32 dev lo` route for host-network-mode tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRoute {
    /// The route, e.g. `169.254.170.2/32 dev lo`.
    pub route: String,
    /// Whether the configuration wants it now (under `auto`: only without an IPv4 default
    /// route).
    pub wanted: bool,
    /// Whether it is in the main table.
    pub present: bool,
}

/// The watcher of the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watcher {
    /// Its pid when one runs for this namespace (its pid file, checked like `remove` does).
    pub pid: Option<u32>,
    /// Its state file; `None` when none runs or it has not written one yet.
    pub state: Option<WatchState>,
}

/// Everything `status` shows, from one read of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The configuration's source (`/etc/ecs-hostnet/config.toml`, `built-in default`).
    pub configuration: String,
    /// `--netns` as given; `None`: the current namespace.
    pub netns: Option<String>,
    /// When it was read, Unix seconds.
    pub time: u64,
    /// Our rules with a counter, in table, chain and evaluation order.
    pub rules: Vec<RuleCounters>,
    /// The plan's (to add, to change, to remove), installed files included (as `check`).
    pub changes: (usize, usize, usize),
    /// Whether the plan is empty.
    pub converged: bool,
    /// [`localhost_guard_is_live`].
    pub localhost_guard_live: bool,
    /// The route_localnet value of each desired or recorded selector (`all`, an
    /// interface); `None`: the interface does not exist.
    pub route_localnet: Vec<(String, Option<String>)>,
    /// `None`: the configuration makes no endpoint route.
    pub endpoint_route: Option<EndpointRoute>,
    /// The findings on the credentials path.
    pub findings: Vec<Finding>,
    /// The watcher.
    pub watch: Watcher,
}

impl Status {
    /// The report of `live` (read once), `p` (planned against it, with its findings and
    /// the installed-file changes) and the watcher, at Unix time `time`.
    pub fn new(
        configuration: &str,
        netns: Option<&str>,
        time: u64,
        desired: &Desired,
        live: &LiveState,
        p: &Plan,
        watch: Watcher,
    ) -> Status {
        let mut rules = Vec::new();
        for t in &live.tables {
            for c in &t.chains {
                for r in &c.rules {
                    let (Some(id), Some(v)) = (r.comment.as_deref(), r.counter) else { continue };
                    if is_our_id(id) {
                        rules.push(RuleCounters {
                            family: t.family,
                            table: t.name.clone(),
                            chain: c.name.clone(),
                            rule: id.to_string(),
                            handle: r.handle,
                            packets: v.packets,
                            bytes: v.bytes,
                        });
                    }
                }
            }
        }
        let endpoint_route = desired.endpoint_route.map(|w| EndpointRoute {
            route: w.spec.to_string(),
            wanted: !w.auto || !live.ipv4_default_route,
            present: live.endpoint_routes.iter().any(|r| r.satisfies(&w.spec)),
        });
        Status {
            configuration: configuration.to_string(),
            netns: netns.map(str::to_string),
            time,
            rules,
            changes: p.counts(),
            converged: p.is_empty(),
            localhost_guard_live: localhost_guard_is_live(live),
            route_localnet: live.route_localnet.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            endpoint_route,
            findings: p.findings.clone(),
            watch,
        }
    }

    /// Whether a finding is blocking (the host does not do its job even if converged).
    pub fn blocking(&self) -> bool {
        self.findings.iter().any(Finding::is_blocking)
    }

    /// Whether all is well: converged and no blocking finding (`status` exits 0).
    pub fn ok(&self) -> bool {
        self.converged && !self.blocking()
    }
}

/// How long ago `then` was, for people: `42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`.
fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The report for people: one line per fact, then the rules as a table.
pub fn text(s: &Status) -> String {
    let mut o = String::new();
    let place = match &s.netns {
        Some(ns) => format!("network namespace {}", escape_controls(ns)),
        None => "the current network namespace".into(),
    };
    let _ = writeln!(o, "ecs-hostnet status of {place} (configuration: {})", escape_controls(&s.configuration));
    let (a, c, r) = s.changes;
    if s.converged {
        let _ = writeln!(o, "converged:        yes");
    } else {
        let _ = writeln!(
            o,
            "converged:        NO: {a} to add, {c} to change, {r} to remove (`ecs-hostnet plan` shows them)"
        );
    }
    let guard = if s.localhost_guard_live { "live" } else { "NOT LIVE" };
    let _ = writeln!(o, "localhost guard:  {guard}");
    let rl: Vec<String> = s
        .route_localnet
        .iter()
        .map(|(k, v)| {
            format!("{}={}", escape_controls(k), v.as_deref().map_or("(no such interface)".into(), escape_controls))
        })
        .collect();
    let _ = writeln!(o, "route_localnet:   {}", if rl.is_empty() { "(none of ours)".into() } else { rl.join(", ") });
    if let Some(e) = &s.endpoint_route {
        let state = match (e.wanted, e.present) {
            (true, true) => "present",
            (true, false) => "MISSING",
            (false, true) => "present, not wanted (an IPv4 default route exists)",
            (false, false) => "not needed (an IPv4 default route exists)",
        };
        let _ = writeln!(o, "endpoint route:   {}: {state}", e.route);
    }
    match (&s.watch.pid, &s.watch.state) {
        (None, _) => {
            let _ = writeln!(o, "watcher:          not running");
        }
        (Some(pid), None) => {
            let _ = writeln!(o, "watcher:          running (pid {pid})");
        }
        (Some(pid), Some(w)) => {
            let backoff = if w.in_backoff { ", BACKING OFF (another writer keeps undoing the rules)" } else { "" };
            let _ = writeln!(
                o,
                "watcher:          running (pid {pid}, started {}), {} repairs, {} backoff episodes{backoff}",
                ago(s.time, w.started_at),
                w.repairs,
                w.backoff_episodes
            );
            if let (Some(at), Some(line)) = (w.last_repair_at, &w.last_repair) {
                let _ = writeln!(o, "last repair:      {}: {}", ago(s.time, at), escape_controls(line));
            }
            match w.audit_group {
                None => {
                    let _ = writeln!(
                        o,
                        "IMDS audit:       NOT RECEIVING (audit.enabled = false, or the group's bind failed: see \
                         the watcher's journal)"
                    );
                }
                Some(g) => {
                    let _ = writeln!(
                        o,
                        "IMDS audit:       receiving, nfnetlink_log group {g}: {} lines ({} packets; rate-limited, \
                         the imds-block counters count every attempt)",
                        w.audit_lines, w.audit_packets
                    );
                }
            }
            if let (Some(at), Some(line)) = (w.last_audit_at, &w.last_audit) {
                let _ = writeln!(o, "last IMDS attempt: {}: {}", ago(s.time, at), escape_controls(line));
            }
        }
    }
    if s.findings.is_empty() {
        let _ = writeln!(o, "findings:         none");
    } else {
        let _ = writeln!(o, "findings:");
        for f in &s.findings {
            let msg = escape_controls(&f.message).replace('\n', " ");
            let _ = writeln!(o, "  {} {}: {msg}", f.severity.name(), f.code.name());
        }
    }
    let _ = writeln!(o, "rules:");
    if s.rules.is_empty() {
        let _ = writeln!(o, "  (none of ours: the rule set is not applied)");
        return o;
    }
    let place = |r: &RuleCounters| format!("{} {} {}", r.family.name(), r.table, r.chain);
    let w = s.rules.iter().map(|r| r.rule.len()).max().unwrap_or(0).max(4);
    let pw = s.rules.iter().map(|r| place(r).len()).max().unwrap_or(0).max(13);
    let _ = writeln!(o, "  {:<pw$} {:<w$} {:>12} {:>14}", "TABLE / CHAIN", "RULE", "PACKETS", "BYTES");
    for r in &s.rules {
        let _ = writeln!(o, "  {:<pw$} {:<w$} {:>12} {:>14}", place(r), escape_controls(&r.rule), r.packets, r.bytes);
    }
    o
}

/// The document of `status --format json` (schema [`SCHEMA`], docs/json.md).
pub fn json(s: &Status) -> String {
    let rules: Vec<serde_json::Value> = s
        .rules
        .iter()
        .map(|r| {
            serde_json::json!({"family": r.family, "table": r.table, "chain": r.chain, "rule": r.rule,
                "handle": r.handle, "packets": r.packets, "bytes": r.bytes})
        })
        .collect();
    let (add, change, remove) = s.changes;
    let doc = serde_json::json!({
        "schema": SCHEMA,
        "configuration": s.configuration,
        "netns": s.netns,
        "time": s.time,
        "ok": s.ok(),
        "converged": s.converged,
        "summary": {"add": add, "change": change, "remove": remove},
        "localhost_guard_live": s.localhost_guard_live,
        "route_localnet": s.route_localnet.iter().cloned().collect::<BTreeMap<_, _>>(),
        "endpoint_route": s.endpoint_route.as_ref().map(|e| serde_json::json!(
            {"route": e.route, "wanted": e.wanted, "present": e.present})),
        "findings": s.findings,
        "watch": {
            "running": s.watch.pid.is_some(),
            "pid": s.watch.pid,
            "state": s.watch.state,
            "audit_receiving": audit_receiving(s),
        },
        "rules": rules,
    });
    let mut out = serde_json::to_string_pretty(&doc).expect("the status serializes");
    out.push('\n');
    out
}

/// `(name, type, help)` of every metric family [`prometheus`] writes, in its order.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "ecs_hostnet_rule_packets_total",
        "counter",
        "Packets counted by an ecs-hostnet rule (its nf_tables counter), by rule id.",
    ),
    ("ecs_hostnet_rule_bytes_total", "counter", "Bytes (L3 length) counted by an ecs-hostnet rule, by rule id."),
    (
        "ecs_hostnet_converged",
        "gauge",
        "1 when the host matches the configuration (ecs-hostnet check would exit 0 but for findings).",
    ),
    (
        "ecs_hostnet_plan_changes",
        "gauge",
        "Changes ecs-hostnet apply would make (rules, tables, sysctls, routes, installed files).",
    ),
    (
        "ecs_hostnet_localhost_guard_live",
        "gauge",
        "1 when both localhost guard rules are in place (route_localnet is then safe).",
    ),
    (
        "ecs_hostnet_route_localnet",
        "gauge",
        "net.ipv4.conf.<interface>.route_localnet of each selector ecs-hostnet manages.",
    ),
    (
        "ecs_hostnet_endpoint_route_present",
        "gauge",
        "1 when the credentials endpoint route via lo is in place (only when the configuration makes one).",
    ),
    ("ecs_hostnet_findings", "gauge", "Findings on the credentials path (foreign rules), by severity."),
    ("ecs_hostnet_watch_running", "gauge", "1 when ecs-hostnet watch runs for this network namespace."),
    ("ecs_hostnet_watch_repairs_total", "counter", "Repairs made by the running ecs-hostnet watch since it started."),
    (
        "ecs_hostnet_watch_backoff_episodes_total",
        "counter",
        "Times the running watcher began backing off from a writer that kept undoing its rules.",
    ),
    (
        "ecs_hostnet_watch_last_repair_timestamp_seconds",
        "gauge",
        "Unix time of the running watcher's last repair (absent before its first).",
    ),
    (
        "ecs_hostnet_imds_audit_receiving",
        "gauge",
        "1 when the running watcher receives the IMDS audit's nfnetlink_log group, 0 when it does not (audit off, \
         or another listener holds the group).",
    ),
    (
        "ecs_hostnet_imds_audit_lines_total",
        "counter",
        "IMDS attempts written to the journal by the running watcher (rate-limited; the imds-block rule counters \
         count every attempt).",
    ),
    (
        "ecs_hostnet_imds_audit_packets_total",
        "counter",
        "Packets the IMDS audit's nfnetlink_log group delivered to the running watcher.",
    ),
    (
        "ecs_hostnet_imds_audit_last_timestamp_seconds",
        "gauge",
        "Unix time of the running watcher's last IMDS audit line (absent before its first).",
    ),
];

/// A label value as the text exposition format 0.0.4 wants it: `\` as `\\`, `"` as `\"`
/// and a line feed as `\n`; everything else (UTF-8) as it is.
pub fn escape_label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// `{k="v",...}` with escaped values.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// Whether the running watcher receives the IMDS audit's group: `None` when no watcher
/// runs or it wrote no state yet (nothing known), else whether it bound the group.
fn audit_receiving(s: &Status) -> Option<bool> {
    match (s.watch.pid, &s.watch.state) {
        (Some(_), Some(w)) => Some(w.audit_group.is_some()),
        _ => None,
    }
}

/// The Prometheus text exposition (format 0.0.4) of `s`: every family of [`FAMILIES`]
/// with its `# HELP` and `# TYPE`, samples without timestamps. Rules of the same labels
/// (a duplicate, which is drift) are summed, so no series repeats.
pub fn prometheus(s: &Status) -> String {
    let mut samples: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
    let mut by_rule: BTreeMap<(String, &str, &str, &str), (u64, u64)> = BTreeMap::new();
    for r in &s.rules {
        let e = by_rule.entry((r.rule.clone(), r.family.name(), &r.table, &r.chain)).or_default();
        e.0 = e.0.saturating_add(r.packets);
        e.1 = e.1.saturating_add(r.bytes);
    }
    for ((rule, family, table, chain), (packets, bytes)) in &by_rule {
        let l = labels(&[("rule", rule), ("family", family), ("table", table), ("chain", chain)]);
        samples.entry("ecs_hostnet_rule_packets_total").or_default().push((l.clone(), *packets));
        samples.entry("ecs_hostnet_rule_bytes_total").or_default().push((l, *bytes));
    }
    let mut put = |name: &'static str, l: String, v: u64| samples.entry(name).or_default().push((l, v));
    put("ecs_hostnet_converged", String::new(), s.converged as u64);
    let (a, c, r) = s.changes;
    put("ecs_hostnet_plan_changes", String::new(), (a + c + r) as u64);
    put("ecs_hostnet_localhost_guard_live", String::new(), s.localhost_guard_live as u64);
    for (sel, v) in &s.route_localnet {
        // A missing interface has no value: no sample (an absent series, not a made-up 0).
        if let Some(n) = v.as_deref().and_then(|v| v.trim().parse::<u64>().ok()) {
            put("ecs_hostnet_route_localnet", labels(&[("interface", sel)]), n);
        }
    }
    if let Some(e) = &s.endpoint_route {
        put("ecs_hostnet_endpoint_route_present", String::new(), e.present as u64);
    }
    for sev in [Severity::Blocking, Severity::Warning, Severity::Info] {
        let n = s.findings.iter().filter(|f| f.severity == sev).count() as u64;
        put("ecs_hostnet_findings", labels(&[("severity", sev.name())]), n);
    }
    put("ecs_hostnet_watch_running", String::new(), s.watch.pid.is_some() as u64);
    if let (Some(_), Some(w)) = (s.watch.pid, &s.watch.state) {
        put("ecs_hostnet_watch_repairs_total", String::new(), w.repairs);
        put("ecs_hostnet_watch_backoff_episodes_total", String::new(), w.backoff_episodes);
        if let Some(at) = w.last_repair_at {
            put("ecs_hostnet_watch_last_repair_timestamp_seconds", String::new(), at);
        }
        put("ecs_hostnet_imds_audit_receiving", String::new(), w.audit_group.is_some() as u64);
        // Only while the watcher receives the audit group: no made-up zeros when it cannot.
        if w.audit_group.is_some() {
            put("ecs_hostnet_imds_audit_lines_total", String::new(), w.audit_lines);
            put("ecs_hostnet_imds_audit_packets_total", String::new(), w.audit_packets);
        }
        if let Some(at) = w.last_audit_at {
            put("ecs_hostnet_imds_audit_last_timestamp_seconds", String::new(), at);
        }
    }
    let mut o = String::new();
    for (name, ty, help) in FAMILIES {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {ty}");
        for (l, v) in samples.get(name).into_iter().flatten() {
            let _ = writeln!(o, "{name}{l} {v}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;
    use crate::desired::compile;
    use crate::model::finding::FindingCode;
    use crate::model::names::rule_id;

    /// A converged default host whose rules counted `i * 10` packets of 60 bytes.
    fn status() -> Status {
        let d = compile(&default_config());
        let facts = crate::plan::live::converged_host(&d, "0");
        let mut live = facts.live_state(&d, |_| Ok::<_, std::convert::Infallible>(Some("1".to_string()))).unwrap();
        let mut i = 0;
        for r in live.tables.iter_mut().flat_map(|t| &mut t.chains).flat_map(|c| &mut c.rules) {
            i += 1;
            r.counter = Some(crate::model::live::CounterValues { packets: i * 10, bytes: i * 600 });
        }
        let p = crate::plan::plan(&d, &live);
        assert!(p.is_empty(), "{p:?}");
        Status::new("built-in default", Some("ns\"1"), 1_000, &d, &live, &p, Watcher::default())
    }

    #[test]
    fn label_values_are_escaped_per_the_exposition_format() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("line\nnext"), "line\\nnext");
        assert_eq!(escape_label("credentials-dnat docker+ é"), "credentials-dnat docker+ é");
        assert_eq!(labels(&[("rule", "x\"y"), ("chain", "c\\")]), r#"{rule="x\"y",chain="c\\"}"#);
    }

    #[test]
    fn every_rule_of_ours_is_reported_with_its_counter() {
        let s = status();
        let ids: Vec<&str> = s.rules.iter().map(|r| r.rule.as_str()).collect();
        for id in [
            rule_id::IMDS_BLOCK_IPV4,
            rule_id::IMDS_BLOCK_IPV6,
            rule_id::LOCALHOST_GUARD,
            rule_id::CREDENTIALS_REDIRECT,
        ] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        assert!(s.rules.iter().all(|r| r.packets > 0 && r.bytes == r.packets * 60));
        assert!(s.ok() && s.localhost_guard_live);
        let t = text(&s);
        assert!(t.contains("converged:        yes") && t.contains("localhost guard:  live"), "{t}");
        assert!(t.contains("imds-block-ipv4") && t.contains("watcher:          not running"), "{t}");
    }

    #[test]
    fn prometheus_has_help_type_and_one_sample_per_series() {
        let mut s = status();
        s.findings.push(Finding {
            code: FindingCode::InputDropsCredentials,
            severity: Severity::Blocking,
            family: Some(Family::Inet),
            table: "filter".into(),
            chain: "input".into(),
            handle: None,
            rule: None,
            message: "policy drop".into(),
            fix: None,
            file: None,
            line: None,
        });
        let dup = s.rules[0].clone();
        s.rules.push(dup);
        let out = prometheus(&s);
        for (name, ty, _) in FAMILIES {
            assert_eq!(out.matches(&format!("# TYPE {name} {ty}\n")).count(), 1, "{out}");
            assert_eq!(out.matches(&format!("# HELP {name} ")).count(), 1, "{out}");
        }
        let series: Vec<&str> =
            out.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').unwrap().0).collect();
        let unique: std::collections::BTreeSet<&&str> = series.iter().collect();
        assert_eq!(unique.len(), series.len(), "a series repeats: {out}");
        let imds = s.rules.iter().find(|r| r.rule == rule_id::IMDS_BLOCK_IPV4).unwrap();
        let want = format!(
            "ecs_hostnet_rule_packets_total{{rule=\"imds-block-ipv4\",family=\"inet\",table=\"ecs-hostnet\",chain=\"{}\"}} {}\n",
            imds.chain, imds.packets
        );
        assert!(out.contains(&want), "{want} in {out}");
        assert!(out.contains("ecs_hostnet_findings{severity=\"blocking\"} 1\n"), "{out}");
        assert!(out.contains("ecs_hostnet_findings{severity=\"info\"} 0\n"), "{out}");
        assert!(out.contains("ecs_hostnet_converged 1\n") && out.contains("ecs_hostnet_watch_running 0\n"), "{out}");
        assert!(
            !out.lines().any(|l| l.starts_with("ecs_hostnet_watch_repairs_total")),
            "no watcher, no repairs: {out}"
        );
        assert!(!s.ok());
    }

    #[test]
    fn the_watcher_and_drift_are_reported() {
        let mut s = status();
        s.converged = false;
        s.changes = (1, 0, 2);
        s.localhost_guard_live = false;
        let mut w = WatchState::started(77, 400);
        w.repairs = 3;
        w.last_repair_at = Some(940);
        w.last_repair = Some("repaired in 1.0 ms: table inet ecs-hostnet was deleted".into());
        w.audit_group = Some(1254);
        w.audit_packets = 5;
        w.audit_lines = 4;
        w.last_audit_at = Some(990);
        w.last_audit =
            Some("IMDS attempt blocked: ipv4 tcp 172.17.0.2:40312 -> 169.254.169.254:80 in on docker0".into());
        s.watch = Watcher { pid: Some(77), state: Some(w) };
        let t = text(&s);
        assert!(t.contains("NO: 1 to add, 0 to change, 2 to remove") && t.contains("NOT LIVE"), "{t}");
        assert!(t.contains("running (pid 77, started 10 min ago), 3 repairs"), "{t}");
        assert!(t.contains("last repair:      60 s ago: repaired in 1.0 ms"), "{t}");
        assert!(t.contains("IMDS audit:       receiving, nfnetlink_log group 1254: 4 lines (5 packets;"), "{t}");
        assert!(t.contains("last IMDS attempt: 10 s ago: IMDS attempt blocked: ipv4 tcp 172.17.0.2:40312"), "{t}");
        let out = prometheus(&s);
        for line in [
            "ecs_hostnet_converged 0",
            "ecs_hostnet_plan_changes 3",
            "ecs_hostnet_localhost_guard_live 0",
            "ecs_hostnet_watch_running 1",
            "ecs_hostnet_watch_repairs_total 3",
            "ecs_hostnet_watch_last_repair_timestamp_seconds 940",
            "ecs_hostnet_route_localnet{interface=\"all\"} 1",
            "ecs_hostnet_imds_audit_receiving 1",
            "ecs_hostnet_imds_audit_lines_total 4",
            "ecs_hostnet_imds_audit_packets_total 5",
            "ecs_hostnet_imds_audit_last_timestamp_seconds 990",
        ] {
            assert!(out.contains(&format!("{line}\n")), "{line} in {out}");
        }
        let doc: serde_json::Value = serde_json::from_str(&json(&s)).unwrap();
        assert_eq!(doc["schema"], SCHEMA);
        assert_eq!(doc["netns"], "ns\"1");
        assert_eq!((doc["ok"].as_bool(), doc["converged"].as_bool()), (Some(false), Some(false)));
        assert_eq!(doc["summary"], serde_json::json!({"add": 1, "change": 0, "remove": 2}));
        assert_eq!(doc["watch"]["state"]["repairs"], 3);
        assert_eq!(
            (doc["watch"]["state"]["audit_lines"].as_u64(), doc["watch"]["state"]["audit_group"].as_u64()),
            (Some(4), Some(1254))
        );
        assert_eq!(doc["watch"]["audit_receiving"], true);
        // The bind failed (another listener holds the group): 0, not an absent series.
        let mut off = s.clone();
        if let Some(w) = off.watch.state.as_mut() {
            w.audit_group = None;
        }
        let out = prometheus(&off);
        assert!(out.contains("ecs_hostnet_imds_audit_receiving 0\n"), "{out}");
        assert!(!out.contains("ecs_hostnet_imds_audit_lines_total 4"), "{out}");
        assert!(text(&off).contains("IMDS audit:       NOT RECEIVING"), "{}", text(&off));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json(&off)).unwrap()["watch"]["audit_receiving"], false);
        // No watcher: nothing known, no sample.
        assert!(!prometheus(&status()).lines().any(|l| l.starts_with("ecs_hostnet_imds_audit_receiving")));
        assert_eq!(doc["route_localnet"]["all"], "1");
        assert!(
            doc["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["rule"] == "imds-block-ipv4" && r["packets"].as_u64() > Some(0))
        );
    }
}
