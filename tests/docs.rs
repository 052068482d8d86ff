//! The manual pages and shell completions that `ecs-hostnet generate-docs OUTDIR` writes for
//! the packages: a page per command and subcommand that `man --warnings` renders without a
//! warning, and completions each shell parses (`bash -n`, and `zsh -n` / `fish -n` where those
//! shells are installed: scripts/setup installs them), and the README's alert rules, which
//! `promtool check rules` accepts (scripts/setup extracts promtool). No root, no kernel: the binary runs in
//! a throw-away network namespace like every other test ([`ehn`]).

mod support;

use std::path::Path;
use std::time::Duration;
use support::*;

/// The pages every build must have: the command and each visible subcommand, section 8.
const PAGES: &[&str] = &[
    "ecs-hostnet.8",
    "ecs-hostnet-apply.8",
    "ecs-hostnet-check.8",
    "ecs-hostnet-diff.8",
    "ecs-hostnet-install.8",
    "ecs-hostnet-plan.8",
    "ecs-hostnet-remove.8",
    "ecs-hostnet-render.8",
    "ecs-hostnet-snapshot.8",
    "ecs-hostnet-status.8",
    "ecs-hostnet-task.8",
    "ecs-hostnet-task-apply.8",
    "ecs-hostnet-task-check.8",
    "ecs-hostnet-task-remove.8",
    "ecs-hostnet-uninstall.8",
    "ecs-hostnet-validate.8",
    "ecs-hostnet-verify.8",
    "ecs-hostnet-watch.8",
];

/// `generate-docs` into a fresh temp dir (removed on drop).
fn generate() -> TempDir {
    let dir = TempDir::new("docs");
    ehn(&["generate-docs", &dir.path().to_string_lossy()]).expect_code(0);
    dir
}

/// The file names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether `prog` is on PATH.
fn installed(prog: &str) -> bool {
    run_cmd("sh", &["-c", &format!("command -v {prog}")], Duration::from_secs(10)).ok()
}

/// Exactly one page per visible command (the hidden `generate-docs` has none), each a section
/// 8 page whose NAME line describes the command, rendered by man with nothing on stderr
/// (groff's and man's warnings go there, with exit status 0).
#[test]
fn every_command_has_a_page_that_man_renders_without_warnings() {
    let dir = generate();
    let man = dir.path().join("man");
    let mut want: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    want.sort();
    assert_eq!(names(&man), want);
    for page in PAGES {
        let path = man.join(page);
        let text = std::fs::read_to_string(&path).unwrap();
        let name = page.trim_end_matches(".8");
        assert!(text.contains(&format!(".TH {name} 8 ")), "{page}: not a section 8 page:\n{text}");
        assert!(!text.contains("generate-docs"), "{page} names the hidden generate-docs");
        let out = run_cmd("man", &["--warnings", "-l", &path.to_string_lossy()], Duration::from_secs(30));
        out.expect_code(0);
        assert!(out.stderr.trim().is_empty(), "man warns about {page}:\n{}", out.stderr);
        // The rendered NAME section: `ecs-hostnet-apply - Make the host match ...`.
        let rendered = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(rendered.contains(&format!("NAME {name} - ")), "{page}: no NAME line:\n{}", out.stdout);
    }
}

/// The bash, zsh and fish completions parse in their shells (zsh and fish only where
/// installed) and complete the visible commands, not the hidden `generate-docs`.
#[test]
fn completions_parse_in_their_shells() {
    let dir = generate();
    let comp = dir.path().join("completions");
    assert_eq!(names(&comp), ["_ecs-hostnet", "ecs-hostnet.bash", "ecs-hostnet.fish"]);
    for (shell, file) in [("bash", "ecs-hostnet.bash"), ("zsh", "_ecs-hostnet"), ("fish", "ecs-hostnet.fish")] {
        let path = comp.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("validate") && text.contains("snapshot"), "{file} lacks subcommands");
        assert!(!text.contains("generate-docs"), "{file} completes the hidden generate-docs");
        if shell != "bash" && !installed(shell) {
            eprintln!("{shell} is not installed: {file} not parsed (scripts/setup installs it)");
            continue;
        }
        let out = run_cmd(shell, &["-n", &path.to_string_lossy()], Duration::from_secs(30));
        out.expect_code(0);
        assert!(out.stderr.trim().is_empty(), "{shell} -n {file}:\n{}", out.stderr);
    }
    // In bash the script defines its completion for the command.
    let out = run_cmd(
        "bash",
        &["-c", &format!("source {} && complete -p ecs-hostnet", comp.join("ecs-hostnet.bash").display())],
        Duration::from_secs(30),
    );
    out.expect_code(0);
    assert!(out.stdout.contains("ecs-hostnet"), "{out}");
}

/// promtool as scripts/setup extracts it from Debian's prometheus package (not installed).
const PROMTOOL: &str = "/var/cache/ecs-hostnet-test/prometheus/usr/bin/promtool";

/// The README's alert rules (the YAML block after "Two alert rules") are valid Prometheus
/// rules: `promtool check rules` parses the file and every PromQL expression in it.
#[test]
fn the_readmes_alert_rules_pass_promtool() {
    assert!(Path::new(PROMTOOL).exists(), "{PROMTOOL} is missing: run scripts/setup as root");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let from = readme.find("Two alert rules").expect("the README's alert rules");
    let block = &readme[from..];
    let start = block.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let yaml = &block[start..start + block[start..].find("```").expect("the block's end")];
    assert!(yaml.contains("ecs_hostnet_imds_audit_receiving"), "the audit-off alert: {yaml}");
    let dir = TempDir::new("promtool");
    let rules = dir.write("rules.yml", yaml);
    let out = run_cmd(PROMTOOL, &["check", "rules", &rules], Duration::from_secs(30));
    assert!(out.ok() && out.stdout.contains("SUCCESS: 4 rules found"), "{out}");
}
