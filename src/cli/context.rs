//! The flags every command shares (`--netns`, `--root`, `--color`), checked against the
//! command once, before it runs, in a fixed order so the messages come out the same:
//! `--netns` given several times (only `task` takes that), `--netns` ignored by render,
//! validate and diff (a note), `--netns` with `--against` (refused), the color choice,
//! `--netns` ignored by install (a note; uninstall removes the rule set there).
//!
//! Imports [`super::args`] and the library's host edges ([`Root`], [`netns`]) and
//! [`ecs_hostnet::render::plan::ColorChoice`].

use super::args::{Cli, ColorArg, Command, PlanArgs};
use super::exit::note;
use anyhow::Result;
use ecs_hostnet::host::files::Root;
use ecs_hostnet::host::netns;
use ecs_hostnet::render::plan::ColorChoice;
use std::io::IsTerminal as _;

/// What the shared flags say, once checked.
pub struct Context {
    /// Every `--netns` as given (more than one only for `task`).
    pub netns: Vec<String>,
    /// `--root`, or the running system's `/`.
    pub root: Root,
    /// Whether text output is colored (`--color`, the terminal, `NO_COLOR`, `TERM`).
    pub color: bool,
}

impl Context {
    /// Checks the shared flags against `cli.command`: an error for a combination that
    /// cannot be meant, a note on stderr for a flag the command ignores.
    pub fn new(cli: &Cli) -> Result<Context> {
        if cli.netns.len() > 1 && !matches!(cli.command, Command::Task { .. }) {
            anyhow::bail!("--netns is given {} times; only `task` acts in several namespaces", cli.netns.len());
        }
        let ns = cli.netns.first();
        if ns.is_some()
            && matches!(cli.command, Command::Render { .. } | Command::Validate { .. } | Command::Diff { .. })
        {
            note("ecs-hostnet: note: --netns is ignored: render, validate and diff do not touch a kernel");
        }
        if let (
            Some(ns),
            Command::Plan(PlanArgs { against: Some(_), .. }) | Command::Check(PlanArgs { against: Some(_), .. }),
        ) = (ns, &cli.command)
        {
            anyhow::bail!("--netns {ns} and --against both say what to plan against; give one");
        }
        let color = color_enabled(cli.color);
        if ns.is_some() && matches!(cli.command, Command::Install { .. }) {
            note("ecs-hostnet: note: --netns is ignored: install writes files only");
        }
        Ok(Context { netns: cli.netns.clone(), root: Root::new(cli.root.as_deref()), color })
    }

    /// The one namespace a command other than `task` acts in (`None`: the current one).
    pub fn ns(&self) -> Option<&str> {
        self.netns.first().map(String::as_str)
    }

    /// Enters [`Context::ns`], if one was given.
    pub fn enter(&self) -> Result<()> {
        if let Some(ns) = self.ns() {
            netns::enter(ns)?;
        }
        Ok(())
    }

    /// Where the command acts, for the `configuration: ...; WHERE` line on stderr.
    pub fn place(&self) -> String {
        match self.ns() {
            Some(ns) => format!("network namespace {ns}"),
            None => "the current network namespace".to_string(),
        }
    }
}

/// `--color` resolved against the terminal and the environment.
fn color_enabled(arg: ColorArg) -> bool {
    let choice = match arg {
        ColorArg::Auto => ColorChoice::Auto,
        ColorArg::Always => ColorChoice::Always,
        ColorArg::Never => ColorChoice::Never,
    };
    choice.enabled(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
        std::env::var("TERM").ok().as_deref(),
    )
}
