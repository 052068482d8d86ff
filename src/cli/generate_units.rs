//! `generate-units [--local] OUTDIR` (hidden): the unit files, written by the same functions
//! `install` uses ([`ecs_hostnet::desired::install_files`]), for packages and release
//! tarballs to ship:
//!
//! * default: the package's (`OUTDIR/ecs-hostnet.service`, `OUTDIR/ecs-hostnet-watch.service`,
//!   `OUTDIR/ecs-hostnet-metrics.service` and `OUTDIR/ecs-hostnet-metrics.timer`, running
//!   /usr/sbin/ecs-hostnet), installed in /usr/lib/systemd/system;
//! * `--local`: those `install` writes into /etc/systemd/system from a tarball or the
//!   source tree (running /usr/local/sbin/ecs-hostnet), for the tarball, to read.
//!
//! The drop-ins are not written: the ecs.service hook follows the configuration's
//! `boot.agent_on_error`, so `install` writes both drop-ins on the host (docs/packaging.md).

use anyhow::{Context as _, Result};
use ecs_hostnet::desired::install_files::{LOCAL, PACKAGE, units};
use std::fmt::Write as _;
use std::path::Path;

/// Writes the unit files under `outdir` (created if missing; files of the same names are
/// replaced) and lists them in `out`. Errors: a folder or file that cannot be written.
pub fn run(outdir: &Path, local: bool, out: &mut String) -> Result<()> {
    std::fs::create_dir_all(outdir).with_context(|| format!("cannot create {}", outdir.display()))?;
    for (name, text) in units(if local { &LOCAL } else { &PACKAGE }) {
        let path = outdir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}
