//! Build script: the commit and build date that `ecs-hostnet --version` prints
//! (`ecs-hostnet 0.2.0 (commit abcdef123456, built 2026-12-05)`), as the compile-time
//! environment variables `ECS_HOSTNET_COMMIT` and `ECS_HOSTNET_BUILD_DATE`.
//!
//! The commit: `git rev-parse --short=12 HEAD` (plus `-dirty` when tracked files differ from
//! it) in a git checkout; else `ECS_HOSTNET_COMMIT` from the environment (a packager building
//! from a source tarball sets it); else `unknown`.
//! The date (UTC, YYYY-MM-DD): from `SOURCE_DATE_EPOCH` when set (reproducible builds,
//! <https://reproducible-builds.org/specs/source-date-epoch/>); else the commit's date
//! (`git log -1 --format=%cs`); else today.
//!
//! Cargo reruns it when HEAD moves (`.git/HEAD`, the ref it names, `packed-refs`, and the
//! index for `-dirty`) or one of those variables changes, and not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ECS_HOSTNET_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // The package's own checkout only: a source tarball unpacked inside some other git
    // repository (a distribution's packaging tree) must not take that repository's commit.
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let own = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| std::fs::canonicalize(top).ok() == std::fs::canonicalize(&manifest).ok());
    let git_dir = own.then(|| git(&["rev-parse", "--git-dir"]).map(PathBuf::from)).flatten();
    // Not a checkout: the commit comes from the environment, watched above; the package's own
    // files as cargo would watch them without any rerun-if line.
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(dir) = &git_dir {
        watch_head(dir);
        // A change to a tracked file that goes into the binary rebuilds it anyway; rerun then
        // so that `-dirty` follows the tree.
        for path in ["src", "rules", "Cargo.lock", "build.rs"] {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = git_dir
        .as_ref()
        .and_then(|_| git(&["rev-parse", "--short=12", "HEAD"]))
        .map(|c| {
            // `diff-index` compares tracked files only: an untracked file is not "dirty".
            let clean = Command::new("git")
                .args(["diff-index", "--quiet", "HEAD", "--"])
                .status()
                .map(|s| s.success())
                .unwrap_or(true);
            if clean { c } else { format!("{c}-dirty") }
        })
        .or_else(|| std::env::var("ECS_HOSTNET_COMMIT").ok().filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(civil_date)
        .or_else(|| git_dir.as_ref().and_then(|_| git(&["log", "-1", "--format=%cs"])))
        .unwrap_or_else(|| {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            civil_date(i64::try_from(now).unwrap_or(0))
        });
    println!("cargo:rustc-env=ECS_HOSTNET_COMMIT={commit}");
    println!("cargo:rustc-env=ECS_HOSTNET_BUILD_DATE={date}");
}

/// `git ARGS` in the package's folder: its trimmed standard output, or `None` when git is
/// missing, fails (not a checkout) or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Rerun when HEAD moves: `HEAD` itself (a checkout of another branch), the ref it points to
/// (a commit on the branch; in a worktree the ref lives in the common git dir), `packed-refs`
/// (a ref packed by `git gc`) and the index (staging changes `-dirty`).
fn watch_head(git_dir: &Path) {
    let common = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from).unwrap_or_else(|| git_dir.to_path_buf());
    let head = git_dir.join("HEAD");
    println!("cargo:rerun-if-changed={}", head.display());
    println!("cargo:rerun-if-changed={}", git_dir.join("index").display());
    println!("cargo:rerun-if-changed={}", common.join("packed-refs").display());
    if let Some(reference) =
        std::fs::read_to_string(&head).ok().and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
    {
        println!("cargo:rerun-if-changed={}", common.join(reference).display());
    }
}

/// The UTC calendar date (YYYY-MM-DD) of a Unix time, by Howard Hinnant's `civil_from_days`
/// (proleptic Gregorian; <https://howardhinnant.github.io/date_algorithms.html>).
fn civil_date(unix_seconds: i64) -> String {
    let z = unix_seconds.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
