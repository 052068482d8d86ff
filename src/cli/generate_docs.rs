//! `generate-docs OUTDIR` (hidden): the manual pages and shell completions of this very
//! command line, generated from the clap definition in [`super::args`], for packages and
//! release tarballs to ship:
//!
//! * `OUTDIR/man/ecs-hostnet.8` and one page per subcommand (`ecs-hostnet-apply.8`,
//!   `ecs-hostnet-task-apply.8`, ...), section 8 (system administration commands), by
//!   clap_mangen;
//! * `OUTDIR/completions/ecs-hostnet.bash`, `_ecs-hostnet` (zsh) and `ecs-hostnet.fish`, by
//!   clap_complete (installed as /usr/share/bash-completion/completions/ecs-hostnet,
//!   /usr/share/zsh/vendor-completions/_ecs-hostnet and
//!   /usr/share/fish/vendor_completions.d/ecs-hostnet.fish).
//!
//! Hidden from `--help`, the pages and the completions: it is a build step, not an
//! operator's command.

use super::args::{Cli, VERSION};
use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::{Generator as _, Shell};
use std::fmt::Write as _;
use std::path::Path;

/// The name the binary is installed under, used in page names and completions.
const NAME: &str = "ecs-hostnet";

/// Writes the pages and completions under `outdir` (created if missing; existing files of
/// the same names are replaced) and lists the files written in `out`. Errors: a folder or
/// file that cannot be created or written, with its path.
pub fn run(outdir: &Path, out: &mut String) -> Result<()> {
    let man = outdir.join("man");
    let completions = outdir.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // As clap_mangen::generate_to, in section 8: `help` is not a page, `build` fills in
    // each subcommand's display name (`ecs-hostnet-task-apply`) and the global flags.
    let mut cmd = Cli::command().name(NAME).disable_help_subcommand(true);
    cmd.build();
    pages(&cmd, &man, out)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut visible(), NAME, &mut script);
        let mut script = String::from_utf8(script).context("clap_complete wrote a script that is not UTF-8")?;
        if shell == Shell::Bash {
            script = fix_bash_states(&script, NAME);
        }
        let path = completions.join(shell.file_name(NAME));
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write the {shell} completion {}", path.display()))?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

/// Works around clap_complete's bash bug for a binary name with a hyphen (clap-rs/clap#6421,
/// open in clap_complete 4.6.12): the loop that walks the words spells a subcommand's state
/// `ecs__hostnet__subcmd__apply` (name and subcommands escaped one by one), while the
/// `case` arms that complete it are spelled `ecs__subcmd__hostnet__subcmd__apply` (the
/// whole path escaped at once, the name's `-` taken for a separator); no arm matched, so
/// nothing completed after the first word. The arms are respelled as the loop spells them;
/// once clap_complete is fixed there is nothing to replace. scripts/check-packages runs the
/// completion function on real command lines.
fn fix_bash_states(script: &str, name: &str) -> String {
    let loop_form = name.replace('-', "__");
    let arm_form = name.replace('-', "__subcmd__");
    script.replace(&format!("        {arm_form}__subcmd__"), &format!("        {loop_form}__subcmd__"))
}

/// The command line without its hidden subcommands (this one): clap_complete, unlike
/// clap_mangen, completes hidden subcommands too. The top-level flags (global ones included)
/// and visible subcommands are the binary's own, cloned.
fn visible() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new(NAME).version(VERSION).about(full.get_about().cloned().unwrap_or_default());
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    cmd.subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// The page of `cmd`, then those of its visible subcommands, depth first.
fn pages(cmd: &clap::Command, dir: &Path, out: &mut String) -> Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("{NAME} {}", env!("CARGO_PKG_VERSION")))
        .date(env!("ECS_HOSTNET_BUILD_DATE"));
    let path = page.generate_to(dir).with_context(|| format!("cannot write a manual page in {}", dir.display()))?;
    writeln!(out, "{}", path.display())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, dir, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state the word loop of the bash script can reach has a `case` arm that
    /// completes it (the arms clap_complete spells differently are respelled).
    #[test]
    fn every_bash_state_the_loop_reaches_has_an_arm() {
        let mut raw = Vec::new();
        clap_complete::generate(Shell::Bash, &mut visible(), NAME, &mut raw);
        let script = fix_bash_states(&String::from_utf8(raw).unwrap(), NAME);
        let states: Vec<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\"")?.strip_suffix('"'))
            .filter(|s| !s.is_empty())
            .collect();
        assert!(states.contains(&"ecs__hostnet__subcmd__task__subcmd__apply"), "{states:?}");
        for s in states {
            assert!(script.lines().any(|l| l == format!("        {s})")), "no case arm for {s}");
        }
    }
}
