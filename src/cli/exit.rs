//! How a run ends and what reaches stderr: the [`Exit`] status by meaning (its number is
//! defined here and only here), [`print_error`], the one way an error reaches stderr, and
//! [`info`] and [`note`] for the other stderr lines.
//!
//! When stderr is the systemd journal (the boot unit and the agent hook: systemd sets
//! `JOURNAL_STREAM=DEV:INO` to the stream it connected, which this process's stderr still
//! is), every stderr line starts with its syslog priority as sd-daemon(3) defines it:
//! `<3>` for errors, `<4>` for warnings (a repair), `<5>` for notes, `<6>` for information; the journal stores the line
//! without it, at that priority. Otherwise (a terminal, a pipe, a file, or a child whose
//! stderr was redirected) stderr is exactly the same without the prefixes.
//!
//! Imports the library's [`ecs_hostnet::config`] (located configuration errors) and
//! [`ecs_hostnet::model::escape`], and clap (its usage errors).

use ecs_hostnet::config::ConfigErrors;
use ecs_hostnet::model::escape::escape_controls;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::OnceLock;

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
/// Control characters (from a file name or a value under review) are escaped. Never
/// silent: an error without text still says that the run failed.
pub fn print_error(e: &anyhow::Error) {
    let lines: Vec<String> = match e.downcast_ref::<ConfigErrors>() {
        Some(errors) => errors.0.iter().map(|e| escape_controls(&e.to_string())).collect(),
        None => vec![format!("ecs-hostnet: {}", escape_controls(&format!("{e:#}").replace('\n', "; ")))],
    };
    if lines.is_empty() || lines.iter().all(|l| l.trim().is_empty() || l == "ecs-hostnet: ") {
        log(Priority::Err, "ecs-hostnet: failed without a message (a bug: please report it)");
    } else {
        log(Priority::Err, &lines.join("\n"));
    }
}

/// clap's usage error (stderr, at err priority in the journal) or `--help`/`--version`
/// text (stdout), as clap prints them.
pub fn print_clap(e: &clap::Error) {
    if e.use_stderr() && stderr_is_journal() {
        log(Priority::Err, e.render().to_string().trim_end());
    } else {
        let _ = e.print();
    }
}

/// An informational line on stderr (`configuration: ...; WHERE`, counts).
pub fn info(message: &str) {
    log(Priority::Info, message);
}

/// A note on stderr: a flag ignored, something a person should know (`ecs-hostnet: note: ...`).
pub fn note(message: &str) {
    log(Priority::Notice, message);
}

/// The syslog priorities of the stderr lines (sd-daemon(3): `SD_ERR`, `SD_WARNING`,
/// `SD_NOTICE`, `SD_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// `<3>`: the run failed, or part of it.
    Err = 3,
    /// `<4>`: something was wrong and has been put right (a repair by `watch`).
    Warning = 4,
    /// `<5>`: a note.
    Notice = 5,
    /// `<6>`: information.
    Info = 6,
}

/// Writes `message` and a newline to stderr in one write, each line prefixed with
/// `priority` when stderr is the journal ([`stderr_is_journal`]).
pub fn log(priority: Priority, message: &str) {
    let text = with_priority(priority, message, stderr_is_journal());
    // Nothing is left to tell about a stderr that cannot be written.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `message` with a final newline; with `journal`, every line starts with `<N>`.
pub fn with_priority(priority: Priority, message: &str, journal: bool) -> String {
    let mut out = String::with_capacity(message.len() + 4);
    for line in message.split('\n') {
        if journal {
            out.push_str(&format!("<{}>", priority as u8));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether stderr is the stream systemd connected to the journal: `$JOURNAL_STREAM` is
/// `DEV:INO` (decimal) and names stderr's device and inode (fstat(2)). Decided once.
pub fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(var) = std::env::var_os("JOURNAL_STREAM") else { return false };
        let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else { return false };
        names_stream(&var.to_string_lossy(), st.st_dev, st.st_ino)
    })
}

/// Whether `journal_stream` (`$JOURNAL_STREAM`, `DEV:INO` in decimal, as systemd writes it)
/// names the file with device `dev` and inode `ino`. Anything else (empty, malformed,
/// another stream) is `false`.
pub fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.split_once(':') else { return false };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_this_device_and_inode() {
        assert!(names_stream("64769:1234", 64769, 1234));
        for other in
            ["64769:1235", "64768:1234", "", "64769", "64769:", ":1234", "x:1234", "64769:1234:5", " 64769:1234"]
        {
            assert!(!names_stream(other, 64769, 1234), "{other:?}");
        }
    }

    #[test]
    fn each_line_carries_the_priority_only_in_the_journal() {
        assert_eq!(with_priority(Priority::Err, "a\nb", true), "<3>a\n<3>b\n");
        assert_eq!(with_priority(Priority::Notice, "n", true), "<5>n\n");
        assert_eq!(with_priority(Priority::Info, "i", true), "<6>i\n");
        assert_eq!(with_priority(Priority::Err, "a\nb", false), "a\nb\n");
    }
}
