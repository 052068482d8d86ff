//! Golden tests of `ecs-hostnet diff OLD NEW` (tests/golden/<case>/), color selection, and
//! `validate` with several files. No root, no kernel: when the tests run as root, every
//! command here runs as uid/gid 65534 (a copy of the binary in a temp dir, see
//! `support::Unprivileged`).
//!
//! Each case folder holds `old.toml` (rules/default.toml), `new.toml` (the same with one
//! edit) and the expected stdout of
//!   `diff old.toml new.toml --color never`   -> diff.txt
//!   `diff old.toml new.toml --format json`   -> diff.json
//!   `diff old.toml new.toml --color always`  -> diff.color.txt (some cases only)
//! run in a copy of the folder with relative file names. `UPDATE_GOLDEN=1 cargo test --test
//! golden` rewrites the expected files instead of comparing (review them before committing).

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// Every case folder under tests/golden, with whether it has a colored golden file.
const CASES: &[(&str, bool)] = &[
    ("added-bridge-pattern", true),
    ("changed-agent-port", false),
    ("guard-turned-off", false),
    ("ipv6-imds-removed", false),
    ("no-change", false),
    ("agent-keys", false),
    ("route-localnet-list", false),
    ("endpoint-route-always", false),
    ("credentials-off", false),
];

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// A copy of the case's old.toml and new.toml in a directory the unprivileged user can read.
fn case_copy(u: &Unprivileged, case: &str) -> PathBuf {
    let src = golden_root().join(case);
    let dst = u.subdir(case);
    for f in ["old.toml", "new.toml"] {
        let text = std::fs::read(src.join(f)).unwrap_or_else(|e| panic!("read {}/{f}: {e}", src.display()));
        write_readable(&dst.join(f), &text);
    }
    dst
}

/// Compare `got` with the golden file `file` of `case` (or rewrite it with UPDATE_GOLDEN=1).
/// Returns a description of the mismatch.
fn compare_or_update(case: &str, file: &str, got: &str) -> Option<String> {
    let path = golden_root().join(case).join(file);
    let want = std::fs::read_to_string(&path).ok();
    if updating() {
        if want.as_deref() != Some(got) {
            std::fs::write(&path, got).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            eprintln!("UPDATE_GOLDEN: wrote {}", path.display());
        }
        return None;
    }
    let rel = format!("tests/golden/{case}/{file}");
    match want {
        None => Some(format!("{rel} does not exist (create it with UPDATE_GOLDEN=1 and review it)")),
        Some(w) if w == got => None,
        Some(w) => Some(format!(
            "stdout differs from {rel} (rerun with UPDATE_GOLDEN=1 if the change is intended):\n{}",
            unified_diff(&rel, &w, "actual stdout", got)
        )),
    }
}

/// Fail with every problem; with UPDATE_GOLDEN=1 only print them (updating fails nothing).
#[track_caller]
fn report(what: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let text = format!("{what}: {} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
    if updating() {
        eprintln!("UPDATE_GOLDEN (not failing): {text}");
    } else {
        panic!("{text}");
    }
}

/// `Plan: N to add, N to change, N to remove.` of a text plan, as numbers.
fn plan_line_counts(text: &str) -> Option<(u64, u64, u64)> {
    let l = text.lines().find(|l| l.starts_with("Plan: "))?;
    let nums: Vec<u64> =
        l.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    match nums[..] {
        [a, c, r] => Some((a, c, r)),
        _ => None,
    }
}

/// Run one golden case: every output is compared, every problem is collected.
fn golden_case(case: &str, colored: bool) {
    let u = Unprivileged::new(&format!("golden-{case}"));
    let cwd = case_copy(&u, case);
    let mut problems: Vec<String> = Vec::new();

    let json = u.ehn(&cwd, &["diff", "old.toml", "new.toml", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| {
        problems.push(format!("`diff --format json` did not print JSON ({e}): {json}"));
        serde_json::Value::Null
    });
    let converged = doc["converged"].as_bool().unwrap_or_else(|| {
        problems.push(format!("diff.json: no boolean `converged`: {json}"));
        false
    });
    let want_code = if converged { 0 } else { 2 };

    let mut runs =
        vec![("diff.json", json), ("diff.txt", u.ehn(&cwd, &["diff", "old.toml", "new.toml", "--color", "never"]))];
    if colored {
        runs.push(("diff.color.txt", u.ehn(&cwd, &["diff", "old.toml", "new.toml", "--color", "always"])));
    }
    for (file, out) in &runs {
        if out.code != want_code {
            problems.push(format!("{file}: exit {} (want {want_code}: converged is {converged}): {out}", out.code));
        }
        if out.stderr.contains("panicked") {
            problems.push(format!("{file}: panic: {out}"));
        }
        if let Some(p) = compare_or_update(case, file, &out.stdout) {
            problems.push(format!("{file}: {p}"));
        }
    }

    // The JSON document against itself and against the text.
    let text = &runs[1].1.stdout;
    let head = [
        ("schema", serde_json::json!("ecs-hostnet.plan/v1")),
        ("command", serde_json::json!("diff")),
        ("configuration", serde_json::json!("new.toml")),
        ("against", serde_json::json!({"kind": "configuration", "path": "old.toml"})),
    ];
    for (k, v) in head {
        if doc[k] != v {
            problems.push(format!("diff.json: `{k}` is {} (want {v})", doc[k]));
        }
    }
    let changes = doc["changes"].as_array().cloned().unwrap_or_default();
    let count = |a: &str| changes.iter().filter(|c| c["action"] == a).count() as u64;
    let (add, change, remove) = (count("add"), count("change"), count("remove"));
    let summary =
        (doc["summary"]["add"].as_u64(), doc["summary"]["change"].as_u64(), doc["summary"]["remove"].as_u64());
    if summary != (Some(add), Some(change), Some(remove)) {
        problems.push(format!("diff.json: summary {summary:?} does not count the changes ({add}, {change}, {remove})"));
    }
    if converged != changes.is_empty() {
        problems.push(format!("diff.json: converged is {converged} with {} change(s)", changes.len()));
    }
    if converged {
        if !text.contains("No changes") {
            problems.push(format!("diff.txt: a converged diff must say \"No changes\":\n{text}"));
        }
    } else if plan_line_counts(text) != Some((add, change, remove)) {
        problems.push(format!(
            "diff.txt: the `Plan:` line does not match the JSON summary ({add}, {change}, {remove}):\n{text}"
        ));
    }
    if let Some((_, out)) = runs.get(2) {
        if !out.stdout.contains("\x1b[") {
            problems.push(format!("diff.color.txt: `--color always` printed no ANSI escape: {out}"));
        }
        if strip_ansi(&out.stdout) != *text {
            problems.push(format!(
                "`--color always` without its escapes differs from `--color never`:\n{}",
                unified_diff("--color never", text, "--color always, escapes removed", &strip_ansi(&out.stdout))
            ));
        }
    }
    report(&format!("golden case {case}"), &problems);
}

macro_rules! golden_tests {
    ($($test:ident => $case:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let colored = CASES.iter().find(|c| c.0 == $case).expect("case listed in CASES").1;
                golden_case($case, colored);
            }
        )*
        /// Every case in CASES has a test above.
        const TESTED: &[&str] = &[$($case),*];
    };
}

golden_tests! {
    golden_added_bridge_pattern => "added-bridge-pattern",
    golden_changed_agent_port => "changed-agent-port",
    golden_guard_turned_off => "guard-turned-off",
    golden_ipv6_imds_removed => "ipv6-imds-removed",
    golden_no_change => "no-change",
    golden_agent_keys => "agent-keys",
    golden_route_localnet_list => "route-localnet-list",
    golden_endpoint_route_always => "endpoint-route-always",
    golden_credentials_off => "credentials-off",
}

/// The folders under tests/golden are exactly the cases tested, each with its inputs and
/// expected outputs and no stray file; new.toml differs from old.toml except in no-change.
#[test]
fn golden_folders_match_the_cases() {
    let mut want: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    let mut tested = TESTED.to_vec();
    want.sort();
    tested.sort();
    assert_eq!(want, tested, "every case in CASES needs a test (golden_tests!)");
    let mut problems = Vec::new();
    let mut found: Vec<String> = std::fs::read_dir(golden_root())
        .expect("tests/golden")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    if found != want {
        problems.push(format!("folders under tests/golden {found:?} vs. the cases of tests/golden.rs {want:?}"));
    }
    for (case, colored) in CASES {
        let dir = golden_root().join(case);
        let mut files: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        let mut want_files = vec!["diff.json", "diff.txt", "new.toml", "old.toml"];
        if *colored {
            want_files.push("diff.color.txt");
        }
        want_files.sort();
        if files != want_files {
            problems.push(format!("{case}: files {files:?}, want {want_files:?}"));
        }
        let old = std::fs::read_to_string(dir.join("old.toml")).unwrap();
        let new = std::fs::read_to_string(dir.join("new.toml")).unwrap();
        if (*case == "no-change") != (old == new) {
            problems.push(format!(
                "{case}: new.toml must {}differ from old.toml",
                if *case == "no-change" { "not " } else { "" }
            ));
        }
    }
    report("golden folders", &problems);
}

// ---------------------------------------------------------------------------
// --color auto
// ---------------------------------------------------------------------------

/// `script -qec "CMD" /dev/null` (util-linux): CMD runs with stdout and stderr on a
/// pseudo-terminal; what it printed comes back on script's stdout (with CRLF line ends).
fn under_pty(u: &Unprivileged, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
    let cmd_text = std::iter::once(u.bin().to_str().unwrap()).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    assert!(!cmd_text.contains(['\'', '"', '\\', '$', '`']), "keep the pty command free of shell quoting: {cmd_text}");
    let mut cmd = u.command("script", cwd);
    cmd.args(["-qec", &cmd_text, "/dev/null"]).env("TERM", "xterm-256color");
    for (k, v) in env {
        cmd.env(k, v);
    }
    u.run(&mut cmd)
}

#[test]
fn color_auto_follows_the_terminal_and_no_color() {
    let u = Unprivileged::new("color");
    let cwd = case_copy(&u, "added-bridge-pattern");
    let diff = ["diff", "old.toml", "new.toml"];
    let never = u.ehn(&cwd, &["diff", "old.toml", "new.toml", "--color", "never"]);
    never.expect_code(2);
    let mut problems = Vec::new();

    // a terminal, NO_COLOR unset: colored (and the same text once the escapes are gone)
    let tty = under_pty(&u, &cwd, &[], &diff);
    tty.expect_code(2);
    if !tty.stdout.contains("\x1b[") {
        problems.push(format!("--color auto on a terminal printed no ANSI escape: {tty}"));
    }
    let plain = strip_ansi(&tty.stdout).replace("\r\n", "\n");
    if !plain.contains(&never.stdout) {
        problems.push(format!(
            "--color auto on a terminal, escapes removed, does not contain the `--color never` text:\n{}",
            unified_diff("--color never", &never.stdout, "terminal output (stdout and stderr)", &plain)
        ));
    }
    // an explicit --color auto is the same as the default
    let tty_auto = under_pty(&u, &cwd, &[], &["diff", "old.toml", "new.toml", "--color", "auto"]);
    if !tty_auto.stdout.contains("\x1b[") {
        problems.push(format!("explicit --color auto on a terminal printed no ANSI escape: {tty_auto}"));
    }
    // a terminal with NO_COLOR=1: plain
    for args in [&diff[..], &["diff", "old.toml", "new.toml", "--color", "auto"]] {
        let out = under_pty(&u, &cwd, &[("NO_COLOR", "1")], args);
        out.expect_code(2);
        if out.stdout.contains('\x1b') {
            problems.push(format!("NO_COLOR=1 on a terminal still colors: {out}"));
        }
        if !out.stdout.replace("\r\n", "\n").contains(&never.stdout) {
            problems.push(format!("NO_COLOR=1 on a terminal: not the plain text: {out}"));
        }
    }
    // a terminal with --color never: plain
    let out = under_pty(&u, &cwd, &[], &["diff", "old.toml", "new.toml", "--color", "never"]);
    if out.stdout.contains('\x1b') {
        problems.push(format!("--color never on a terminal colors: {out}"));
    }
    // a pipe: plain, with or without --color auto
    for args in [&diff[..], &["diff", "old.toml", "new.toml", "--color", "auto"]] {
        let out = u.ehn(&cwd, args);
        out.expect_code(2);
        if out.stdout != never.stdout {
            problems.push(format!(
                "--color auto on a pipe is not the plain text:\n{}",
                unified_diff("--color never", &never.stdout, "auto on a pipe", &out.stdout)
            ));
        }
        if out.stderr.contains('\x1b') {
            problems.push(format!("--color auto with stderr on a pipe colors stderr: {out}"));
        }
    }
    // --color always overrides NO_COLOR (as documented in --help)
    let always = u.ehn_env(&cwd, &[("NO_COLOR", "1")], &["diff", "old.toml", "new.toml", "--color", "always"]);
    always.expect_code(2);
    if !always.stdout.contains("\x1b[") {
        problems.push(format!("--color always with NO_COLOR=1 printed no ANSI escape: {always}"));
    }
    // JSON is never colored
    let json = under_pty(&u, &cwd, &[], &["diff", "old.toml", "new.toml", "--format", "json", "--color", "always"]);
    if json.stdout.contains('\x1b') {
        problems.push(format!("--format json with --color always contains ANSI escapes: {json}"));
    }
    assert!(problems.is_empty(), "{} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
}

// ---------------------------------------------------------------------------
// validate, several files
// ---------------------------------------------------------------------------

/// The `FILE:LINE:COL: message` lines of `stderr` for `file`, as (line, col, message).
fn located_errors(stderr: &str, file: &str) -> Vec<(usize, usize, String)> {
    let prefix = format!("{file}:");
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut it = rest.splitn(3, ':');
            let line = it.next()?.parse().ok()?;
            let col = it.next()?.parse().ok()?;
            let msg = it.next()?.trim().to_string();
            (!msg.is_empty()).then_some((line, col, msg))
        })
        .collect()
}

#[test]
fn validate_reports_every_error_of_every_file() {
    let u = Unprivileged::new("validate-many");
    let cwd = u.subdir("files");
    // (file, text, lines of the errors it must report, in order)
    let bad1 = "# two sections, three mistakes\n\
                [credentials]\n\
                agent_port = 0\n\
                endpoint_prot = 80\n\
                \n\
                [containers]\n\
                interfaces = [\"docker+\", \"dock/er\"]\n";
    let bad2 = "[imds_block]\n\
                ipv4_address = \"169.254.169.2544\"\n\
                \n\
                [route_localnet]\n\
                enable = \"sometimes\"\n\
                \n\
                [introspection_guard]\n\
                port = 70000\n";
    let files: &[(&str, &str, &[usize])] =
        &[("bad1.toml", bad1, &[3, 4, 7]), ("good.toml", &default_config_text(), &[]), ("bad2.toml", bad2, &[2, 5, 8])];
    for (name, text, _) in files {
        write_readable(&cwd.join(name), text.as_bytes());
    }
    let mut problems = Vec::new();
    // positional files, -c files, and both mixed
    let forms: [&[&str]; 3] = [
        &["validate", "bad1.toml", "good.toml", "bad2.toml"],
        &["validate", "-c", "bad1.toml", "-c", "good.toml", "-c", "bad2.toml"],
        &["validate", "bad1.toml", "-c", "good.toml", "bad2.toml"],
    ];
    for args in forms {
        let out = u.ehn(&cwd, args);
        if out.code != 1 {
            problems.push(format!("want exit 1: {out}"));
        }
        if out.stderr.contains("panicked") {
            problems.push(format!("panic: {out}"));
        }
        for (name, _, lines) in files {
            let got = located_errors(&out.stderr, name);
            let got_lines: Vec<usize> = got.iter().map(|e| e.0).collect();
            if got_lines != *lines {
                problems.push(format!("{name}: errors on lines {got_lines:?}, want {lines:?}: {out}"));
            }
            if got.iter().any(|e| e.1 == 0) {
                problems.push(format!("{name}: a column 0 (columns count from 1): {out}"));
            }
            let valid_line = format!("{name}: valid");
            let said_valid = out.stdout.lines().any(|l| l.trim() == valid_line);
            if said_valid != lines.is_empty() {
                problems.push(format!(
                    "{name}: stdout {} say `{valid_line}`: {out}",
                    if lines.is_empty() { "must" } else { "must not" }
                ));
            }
        }
        // nothing on stderr but the located errors, a summary, and for the valid file the
        // one-line note that whether its prefix patterns match a host's uplink needs the host
        let note = "ecs-hostnet: note: good.toml: containers.interfaces has prefix patterns (\"docker+\", \"br-+\"): ";
        let notes = out.stderr.lines().filter(|l| l.starts_with(note)).count();
        if notes != 1 {
            problems.push(format!("want one note on the uplink check for good.toml, got {notes}: {out}"));
        }
        let others: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(note))
            .filter(|l| !files.iter().any(|(n, _, _)| l.starts_with(&format!("{n}:"))))
            .collect();
        if others.len() > 1 {
            problems.push(format!("stderr has more than the errors and one summary line: {others:?}: {out}"));
        }
        if out.stdout.contains("bad1.toml") || out.stdout.contains("bad2.toml") {
            problems.push(format!("stdout names an invalid file: {out}"));
        }
    }
    // a valid file alone: exit 0, reported valid, nothing on stderr but what was used
    let out = u.ehn(&cwd, &["validate", "good.toml"]);
    out.expect_code(0);
    assert!(out.stdout.lines().any(|l| l.trim() == "good.toml: valid"), "{out}");
    assert!(problems.is_empty(), "{} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
}
