//! How a run ends: the [`Exit`] status by meaning (its number is defined here and only
//! here) and [`print_error`], the one way an error reaches stderr.
//!
//! Imports the library's [`ecs_hostnet::config`] (located configuration errors) and
//! [`ecs_hostnet::model::escape`].

use ecs_hostnet::config::ConfigErrors;
use ecs_hostnet::model::escape::escape_controls;
use std::process::ExitCode;

/// The exit status of a command, by meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: done, converged, nothing to do, every file valid; also `--help` and `--version`.
    Ok = 0,
    /// 1: an error (its message is on stderr), a usage error, an invalid file, a failed namespace.
    Failure = 1,
    /// 2: `plan`, `diff`: there are changes; `check`, `task check`: there is drift; `check`:
    /// also a blocking finding on the credentials path, even with our tables converged.
    Changes = 2,
}

impl Exit {
    /// [`Exit::Changes`] when `changes`, else [`Exit::Ok`].
    pub fn changes_if(changes: bool) -> Exit {
        if changes { Exit::Changes } else { Exit::Ok }
    }

    /// [`Exit::Failure`] when `failed`, else [`Exit::Ok`].
    pub fn failure_if(failed: bool) -> Exit {
        if failed { Exit::Failure } else { Exit::Ok }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error on stderr: a configuration's located errors one per line
/// (`FILE:LINE:COL: message`), anything else as one `ecs-hostnet: ...` line.
/// Control characters (from a file name or a value under review) are escaped.
pub fn print_error(e: &anyhow::Error) {
    match e.downcast_ref::<ConfigErrors>() {
        Some(errors) => errors.0.iter().for_each(|e| eprintln!("{}", escape_controls(&e.to_string()))),
        None => eprintln!("ecs-hostnet: {}", escape_controls(&format!("{e:#}").replace('\n', "; "))),
    }
}
