//! ecs-hostnet command line: parses the flags, runs the command ([`cli::run`]), writes
//! its output and exits with its status ([`cli::Exit`]): 0 = done / nothing to do,
//! 2 = changes or drift (plan, check, diff, task check), 1 = error (with a message on
//! stderr).
//!
//! Parsing and dispatch only; everything else is in [`cli`], a module of this binary
//! (so the library never depends on clap's command-line types).

#![deny(unsafe_code)]

mod cli;

use clap::Parser as _;
use cli::{Cli, Exit};
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // A usage error goes to stderr; --help and --version are output.
            let exit = if e.use_stderr() { Exit::Failure } else { Exit::Ok };
            cli::exit::print_clap(&e);
            return exit.into();
        }
    };
    let mut out = String::new();
    let result = cli::run(cli, &mut out);
    // Whatever happened, print what the command had to say first: a closed or full
    // stdout is an error message, not a panic.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()) {
        cli::exit::log(cli::exit::Priority::Err, &format!("ecs-hostnet: cannot write to standard output: {e}"));
        return Exit::Failure.into();
    }
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            cli::print_error(&e);
            Exit::Failure.into()
        }
    }
}
