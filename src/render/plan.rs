//! Plans for people and for machines (pure).
//!
//! For people, [`text`]: a compact diff in nft syntax, grouped by table and chain, one
//! line per change with a `+` (add), `-` (remove) or `~` (change) marker and the reason
//! as an nft `#` comment, then the sysctl, route and file changes, the notes and a
//! one-line summary (`Plan: 3 to add, 1 to change, 0 to remove.`). Findings on the
//! credentials path, if any, come after the notes (severity, code, chain, message, the rule
//! and the fix), and a blocking one adds a last line saying the host does not do its job.
//! A rule that differs from the configuration is shown as its live form (`-`) and its
//! desired form (`+`); it counts as one change. Colors (ANSI SGR: green `+`, red `-`, yellow `~`) only when
//! asked for, see [`ColorChoice`].
//!
//! For machines, [`json`]: the schema `ecs-hostnet.plan/v1`, documented in
//! `docs/json.md` and pinned by golden tests.

use crate::model::escape::escape_controls;
use crate::model::finding::{Finding, Severity};
use crate::model::ruleset::Family;
use crate::plan::change::{Action, Change, Subject};
use crate::plan::{Note, Plan, Reason};
use anstyle::{AnsiColor, Style};
use serde::Serialize;
use std::fmt::Write as _;

/// The JSON schema name of [`json`]'s output.
pub const PLAN_SCHEMA: &str = "ecs-hostnet.plan/v1";

/// When to color text output (`--color auto|always|never`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// Color when standard output is a terminal (not `TERM=dumb`) and `NO_COLOR` is unset or empty
    /// (<https://no-color.org>).
    Auto,
    /// Always color (overrides `NO_COLOR`, as an explicit flag should).
    Always,
    /// Never color.
    Never,
}

impl ColorChoice {
    /// Resolves the choice: `is_terminal` is whether standard output is a terminal,
    /// `no_color` the value of `NO_COLOR` and `term` of `TERM` (`None` when unset); `auto`
    /// does not color a `TERM=dumb` terminal either.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&str>, term: Option<&str>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb"),
        }
    }
}

/// The styles used; all plain when color is off.
struct Palette {
    on: bool,
}

impl Palette {
    fn paint(&self, style: Style, line: &str) -> String {
        if self.on { format!("{}{line}{}", style.render(), style.render_reset()) } else { line.to_string() }
    }
    fn for_sign(&self, sign: char, line: &str) -> String {
        let style = match sign {
            '+' => AnsiColor::Green.on_default(),
            '-' => AnsiColor::Red.on_default(),
            '~' => AnsiColor::Yellow.on_default(),
            _ => return line.to_string(),
        };
        self.paint(style, line)
    }
}

/// `  # REASON; EXTRA; ...`, each part with its control characters escaped; nothing when
/// there are no parts.
fn comment(reason: Option<&Reason>, extra: &[String]) -> String {
    comment_parts(reason.map(Reason::to_string).as_deref(), extra)
}

/// `  # FIRST; EXTRA; ...`, as [`comment`].
fn comment_parts(first: Option<&str>, extra: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(first.map(escape_controls));
    parts.extend(extra.iter().map(|d| escape_controls(d)));
    if parts.is_empty() { String::new() } else { format!("  # {}", parts.join("; ")) }
}

/// The rule as `nft list` shows it: its text, then its comment (the id).
fn rule_line(text: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{} comment \"{}\"", escape_controls(text), crate::model::nft_text::printable(id)),
        None => escape_controls(text),
    }
}

/// A table's or a chain's changes, in the order the plan lists them.
struct ChainGroup<'a> {
    name: &'a str,
    own: Option<&'a Change>,
    rules: Vec<&'a Change>,
}

struct TableGroup<'a> {
    family: Family,
    name: &'a str,
    own: Option<&'a Change>,
    chains: Vec<ChainGroup<'a>>,
}

fn group(changes: &[Change]) -> (Vec<TableGroup<'_>>, Vec<&Change>) {
    let mut tables: Vec<TableGroup> = Vec::new();
    let mut rest = Vec::new();
    fn table<'a, 'b>(tables: &'b mut Vec<TableGroup<'a>>, family: Family, name: &'a str) -> &'b mut TableGroup<'a> {
        match tables.iter().position(|t| t.family == family && t.name == name) {
            Some(i) => &mut tables[i],
            None => {
                tables.push(TableGroup { family, name, own: None, chains: vec![] });
                tables.last_mut().expect("just pushed")
            }
        }
    }
    fn chain<'a, 'b>(t: &'b mut TableGroup<'a>, name: &'a str) -> &'b mut ChainGroup<'a> {
        match t.chains.iter().position(|c| c.name == name) {
            Some(i) => &mut t.chains[i],
            None => {
                t.chains.push(ChainGroup { name, own: None, rules: vec![] });
                t.chains.last_mut().expect("just pushed")
            }
        }
    }
    for c in changes {
        match &c.subject {
            Subject::Table { family, table: name } => table(&mut tables, *family, name).own = Some(c),
            Subject::Chain { family, table: t, chain: ch } => chain(table(&mut tables, *family, t), ch).own = Some(c),
            Subject::Rule { family, table: t, chain: ch, .. } => {
                chain(table(&mut tables, *family, t), ch).rules.push(c)
            }
            _ => rest.push(c),
        }
    }
    (tables, rest)
}

/// The plan as a grouped diff for people (see the module docs). `summary` is the last
/// line's prefix (`Plan`), `converged` the line printed when there is nothing to do.
pub fn text(p: &Plan, color: bool, converged: &str) -> String {
    let pal = Palette { on: color };
    // (color sign, whole line)
    let mut lines: Vec<(char, String)> = Vec::new();
    let mut line = |sign: char, body: String| match sign {
        // A file's diff line: colored by its own first character, under its file's marker.
        'd' => lines.push((body.chars().next().unwrap_or(' '), format!("      {body}"))),
        _ => lines.push((sign, format!("{sign} {body}"))),
    };
    let (tables, rest) = group(&p.changes);
    for t in &tables {
        let tsign = t.own.map_or(' ', |c| c.action.sign());
        let treason = t.own.map(|c| &c.reason);
        let open = if t.chains.is_empty() { "" } else { " {" };
        let tcomment = t.own.map(|c| comment(Some(&c.reason), &c.details)).unwrap_or_default();
        line(tsign, format!("table {} {}{open}{tcomment}", t.family.name(), escape_controls(t.name)));
        for ch in &t.chains {
            let csign = ch.own.map_or(' ', |c| c.action.sign());
            let creason = ch.own.map(|c| &c.reason).or(treason);
            // A chain added or removed shows its `type ... hook ... policy ...;` line.
            let base_line = ch.own.and_then(|c| match c.action {
                Action::Add => c.new.as_deref(),
                Action::Remove => c.old.as_deref(),
                Action::Change => None,
            });
            let open = if ch.rules.is_empty() && base_line.is_none() { "" } else { " {" };
            let ccomment = match ch.own {
                Some(c) if Some(&c.reason) != treason || tsign != c.action.sign() => {
                    comment(Some(&c.reason), &c.details)
                }
                _ => String::new(),
            };
            line(csign, format!("  chain {}{open}{ccomment}", escape_controls(ch.name)));
            if let Some(base) = base_line {
                line(csign, format!("    {}", escape_controls(base)));
            }
            for r in &ch.rules {
                let Subject::Rule { id, handle, .. } = &r.subject else { continue };
                let id = id.as_deref();
                let handle_note: Vec<String> = handle.iter().map(|h| format!("handle {h}")).collect();
                // The reason of its chain (or table) with the same sign is not repeated.
                let inherited = Some(&r.reason) == creason && csign == r.action.sign();
                let reason = if inherited { None } else { Some(&r.reason) };
                match (r.action, r.old.as_deref(), r.new.as_deref()) {
                    (Action::Change, Some(old), Some(new)) if old != new => {
                        line('-', format!("    {}{}", rule_line(old, id), comment(reason, &handle_note)));
                        line('+', format!("    {}", rule_line(new, id)));
                    }
                    (Action::Remove, Some(old), _) => {
                        line('-', format!("    {}{}", rule_line(old, id), comment(reason, &handle_note)))
                    }
                    (action, _, Some(new)) => {
                        line(action.sign(), format!("    {}{}", rule_line(new, id), comment(reason, &[])))
                    }
                    (action, old, None) => line(
                        action.sign(),
                        format!("    {}{}", rule_line(old.unwrap_or(""), id), comment(reason, &handle_note)),
                    ),
                }
            }
            if !open.is_empty() {
                line(csign, "  }".into());
            }
        }
        if !t.chains.is_empty() {
            line(tsign, "}".into());
        }
    }
    for c in rest {
        let sign = c.action.sign();
        match &c.subject {
            Subject::Sysctl { name } => {
                let was = c.old.as_deref().map(|o| format!("was {}", escape_controls(o)));
                let value = c.new.as_deref().map(escape_controls).unwrap_or_default();
                let why = comment_parts(was.as_deref(), &[c.reason.to_string()]);
                line(sign, format!("sysctl {name} = {value}{why}"));
            }
            Subject::Route { route } => {
                line(sign, format!("route {}{}", escape_controls(route), comment(Some(&c.reason), &[])))
            }
            Subject::File { path } | Subject::Symlink { path } => {
                let what = if matches!(c.subject, Subject::File { .. }) { "file" } else { "symlink" };
                let target = c.new.as_deref().map(|t| format!(" -> {}", escape_controls(t))).unwrap_or_default();
                line(sign, format!("{what} {}{target}{}", escape_controls(path), comment(Some(&c.reason), &[])));
                for d in &c.details {
                    line('d', escape_controls(d));
                }
            }
            _ => line(sign, format!("{}{}", escape_controls(&c.object()), comment(Some(&c.reason), &c.details))),
        }
    }
    let mut out = String::new();
    for (sign, l) in &lines {
        let _ = writeln!(out, "{}", pal.for_sign(*sign, l));
    }
    for n in &p.notes {
        let _ = writeln!(out, "note: {}", escape_controls(&n.to_string()));
    }
    findings_text(&p.findings, &pal, &mut out);
    let (a, c, r) = p.counts();
    if p.is_empty() {
        let _ = writeln!(out, "{}", pal.paint(Style::new().bold(), &escape_controls(converged)));
    } else {
        let summary = format!("Plan: {a} to add, {c} to change, {r} to remove.");
        let _ = writeln!(out, "{}", pal.paint(Style::new().bold(), &summary));
    }
    let blocking = p.findings.iter().filter(|f| f.is_blocking()).count();
    if blocking > 0 {
        let line = format!(
            "The host does not do its job: {blocking} blocking finding{} on the credentials path (see above), whatever \
             ecs-hostnet's own tables hold.",
            if blocking == 1 { "" } else { "s" }
        );
        let _ = writeln!(out, "{}", pal.paint(AnsiColor::Red.on_default().bold(), &line));
    }
    out
}

/// The findings section: a header, then per finding `SEVERITY code: family table chain:
/// message` (`FILE:LINE: message` for a file), the rule it names (with its handle) and the fix, each indented.
fn findings_text(findings: &[Finding], pal: &Palette, out: &mut String) {
    if findings.is_empty() {
        return;
    }
    let _ = writeln!(out, "Findings on the credentials path (other programs' rules and files):");
    for f in findings {
        let place = match (f.family, &f.file) {
            (Some(family), _) => format!("{} {} {}", family.name(), f.table, f.chain),
            (None, Some(file)) => f.line.map_or_else(|| file.clone(), |l| format!("{file}:{l}")),
            (None, None) => format!("iptables-legacy tables {}", f.table),
        };
        let head = format!("{} {}", f.severity.name().to_uppercase(), f.code.name());
        let style = match f.severity {
            Severity::Blocking => AnsiColor::Red.on_default(),
            Severity::Warning => AnsiColor::Yellow.on_default(),
            Severity::Info => Style::new(),
        };
        let _ = writeln!(
            out,
            "  {}: {}: {}",
            pal.paint(style, &head),
            escape_controls(&place),
            escape_controls(&f.message)
        );
        if let (Some(rule), Some(handle)) = (&f.rule, f.handle) {
            let _ = writeln!(out, "    rule: {} (handle {handle})", escape_controls(rule));
        }
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "    fix: {}", escape_controls(fix));
        }
    }
}

/// What a plan was made against (the JSON `against` object, tagged by `kind`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Against {
    /// A live network namespace: `netns` is the `--netns` given, `null` for the current one.
    Netns {
        /// The `--netns` argument, if any.
        netns: Option<String>,
    },
    /// A snapshot file (`plan --against FILE`).
    Snapshot {
        /// The file as given.
        path: String,
    },
    /// A host converged to another configuration (`diff OLD NEW`).
    Configuration {
        /// OLD as given.
        path: String,
    },
}

/// `{"add": N, "change": N, "remove": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Changes that create something.
    pub add: usize,
    /// Changes that correct, recreate or set something.
    pub change: usize,
    /// Changes that delete something.
    pub remove: usize,
}

/// The `ecs-hostnet.plan/v1` document (see `docs/json.md`).
#[derive(Serialize)]
struct PlanDocument<'a> {
    schema: &'static str,
    command: &'a str,
    configuration: &'a str,
    against: &'a Against,
    converged: bool,
    summary: Summary,
    changes: &'a [Change],
    notes: &'a [Note],
    findings: &'a [Finding],
}

/// The plan as an `ecs-hostnet.plan/v1` JSON document (pretty printed, one trailing
/// newline). `command` is `plan`, `check` or `diff`; `configuration` the desired
/// configuration's name as given.
pub fn json(p: &Plan, command: &str, configuration: &str, against: &Against) -> String {
    let (add, change, remove) = p.counts();
    let doc = PlanDocument {
        schema: PLAN_SCHEMA,
        command,
        configuration,
        against,
        converged: p.is_empty(),
        summary: Summary { add, change, remove },
        changes: &p.changes,
        notes: &p.notes,
        findings: &p.findings,
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("a plan serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_controls_escapes_only_control_characters() {
        assert_eq!(escape_controls("plain text, \"quoted\" ünïcode"), "plain text, \"quoted\" ünïcode");
        assert_eq!(escape_controls("a\u{1b}[31mred\nb\t\u{7f}"), "a\\u{1b}[31mred\\nb\\t\\u{7f}");
        assert_eq!(crate::model::nft_text::printable("say \"hi\"\r\n"), "say 'hi'\\r\\n");
        assert_eq!(crate::model::nft_text::printable("veth*"), "veth*");
    }

    #[test]
    fn color_follows_the_flag_the_terminal_and_no_color() {
        assert!(ColorChoice::Auto.enabled(true, None, Some("xterm")));
        assert!(ColorChoice::Auto.enabled(true, Some(""), None));
        assert!(!ColorChoice::Auto.enabled(true, Some("1"), None));
        assert!(!ColorChoice::Auto.enabled(true, None, Some("dumb")));
        assert!(!ColorChoice::Auto.enabled(false, None, None));
        assert!(ColorChoice::Always.enabled(false, Some("1"), Some("dumb")));
        assert!(!ColorChoice::Never.enabled(true, None, None));
    }

    #[test]
    fn control_characters_in_kernel_text_cannot_forge_lines() {
        let p = Plan {
            changes: vec![
                Change::new(
                    Action::Remove,
                    Subject::Rule {
                        family: Family::Inet,
                        table: crate::model::names::TABLE_NAME.into(),
                        chain: "input\n+ forged".into(),
                        id: Some("x\n+ forged\u{1b}[31m".into()),
                        handle: Some(9),
                    },
                    Reason::ForeignRuleWithoutId,
                )
                .old("counter\n+ forged"),
            ],
            ..Default::default()
        };
        let t = text(&p, false, "");
        assert!(!t.lines().any(|l| l.starts_with("+ forged")), "{t}");
        assert!(!t.contains('\u{1b}'), "{t}");
        let colored = text(&p, true, "");
        assert!(colored.contains("\u{1b}[31m- "), "the remove line is red: {colored:?}");
    }

    /// Findings come after the changes, one block each (escaped kernel text), and a
    /// blocking one adds the line saying the host does not do its job; the JSON carries them.
    #[test]
    fn findings_are_shown_after_the_changes_and_in_json() {
        use crate::model::finding::FindingCode;
        let f = |severity, handle| Finding {
            code: FindingCode::InputDropsCredentials,
            severity,
            family: Some(Family::Inet),
            table: "filter".into(),
            chain: "in\nput".into(),
            handle,
            rule: handle.map(|_| "counter drop".to_string()),
            file: None,
            line: None,
            message: "drops it".into(),
            fix: Some("nft insert rule inet filter input accept".into()),
        };
        let mut p = Plan { findings: vec![f(Severity::Warning, Some(7))], ..Default::default() };
        let t = text(&p, false, "Converged.");
        assert_eq!(
            t,
            "Findings on the credentials path (other programs' rules and files):\n  WARNING input-drops-credentials: inet \
             filter in\\nput: drops it\n    rule: counter drop (handle 7)\n    fix: nft insert rule inet filter input \
             accept\nConverged.\n"
        );
        p.findings.push(f(Severity::Blocking, None));
        let t = text(&p, false, "Converged.");
        assert!(t.ends_with("Converged.\nThe host does not do its job: 1 blocking finding on the credentials path (see above), whatever ecs-hostnet's own tables hold.\n"), "{t}");
        let doc: serde_json::Value =
            serde_json::from_str(&json(&p, "check", "c.toml", &Against::Netns { netns: None })).unwrap();
        assert_eq!(doc["converged"], true);
        assert_eq!(doc["findings"][1]["severity"], "blocking");
        assert_eq!(doc["findings"][0]["code"], "input-drops-credentials");
        assert_eq!(doc["findings"][0]["handle"], 7);
    }
}
