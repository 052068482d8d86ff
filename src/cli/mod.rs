//! The command line: flags in ([`args`]), the shared flags checked once ([`context`]), a
//! call into the library per command (one module each), text out, and an [`Exit`]
//! status ([`exit`]).
//!
//! A module tree of the binary, not of the library, so that the library never depends
//! on the command line's clap types. May import anything public in the library (mostly
//! [`ecs_hostnet::engine`], [`ecs_hostnet::render`] and the host edges it names) and
//! clap; nothing in the library imports it.
//!
//! Every command writes what it has for stdout into a `String` (written by `main`, so a
//! closed or full stdout is an error message, not a panic) and writes notes and the
//! `configuration: ...` line to stderr itself.
//!
//! A module of the binary, not of the library: it may import every layer, and nothing
//! imports it (docs/architecture.md).

mod apply;
pub mod args;
mod context;
mod diff;
pub mod exit;
mod generate_docs;
mod generate_units;
mod install;
mod plan;
mod remove;
mod render;
mod snapshot;
mod status;
mod task;
mod validate;
mod verify;
mod watch;

pub use args::Cli;
pub use exit::{Exit, print_error};

use args::Command;
use context::Context;

/// Runs a command; what it prints for stdout goes into `out`. `Ok` carries the exit
/// status of a command that reported its own outcome (drift, an invalid file); `Err` is
/// an error for [`print_error`].
pub fn run(cli: Cli, out: &mut String) -> anyhow::Result<Exit> {
    let cx = Context::new(&cli)?;
    match cli.command {
        Command::Task { action } => task::run(&cx, action, out),
        Command::Install { config } => install::install(&cx, &config, out),
        Command::Uninstall { package_removal } => install::uninstall(&cx, package_removal, out),
        Command::Validate { files, config } => validate::run(&cx, files, config, out),
        Command::Diff { old, new, format } => diff::run(&cx, &old, &new, format, out),
        Command::Snapshot { format } => snapshot::run(&cx, format, out),
        Command::Render { config, format } => render::run(&cx, &config, format, out),
        Command::Plan(args) => plan::run(&cx, &args, plan::Mode::Plan, out),
        Command::Check(args) => plan::run(&cx, &args, plan::Mode::Check, out),
        Command::Status(args) => status::run(&cx, &args, out),
        Command::Apply { config, kernel_only } => apply::run(&cx, &config, kernel_only, out),
        Command::Remove { config } => remove::run(&cx, &config, out),
        Command::GenerateDocs { outdir } => generate_docs::run(&outdir, out).map(|()| Exit::Ok),
        Command::GenerateUnits { outdir, local } => generate_units::run(&outdir, local, out).map(|()| Exit::Ok),
        Command::Watch { config } => watch::run(&cx, &config),
        Command::Verify { config, format } => verify::run(&cx, &config, format, out),
    }
}
