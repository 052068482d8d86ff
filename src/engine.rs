//! The commands, tying configuration, planner, kernel and sysctls together.
//!
//! Order of work in `apply` and `remove`: the configuration is read and validated first
//! (nothing touches the kernel if it is invalid); then the live state is read, planned
//! against, and carried out as sysctl restores, ONE nf_tables batch, sysctl enables; then
//! the live state is read again to prove convergence.

use crate::compile::{Desired, compile};
use crate::config::{self, Config};
use crate::install::Root;
use crate::kernel::{KernelError, Netfilter};
use crate::plan::{HostFacts, LiveState, Plan, is_endpoint_route, plan, plan_removal};
use crate::rtnl::Rtnl;
use crate::ruleset::{Record, record};
use crate::sysctl;
use anyhow::{Context, Result, bail};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the configuration is read from when no `-c` is given (under `--root`).
pub const SYSTEM_CONFIG: &str = crate::artifacts::CONFIG_PATH;

/// A configuration and the name of its source, for messages.
pub struct Loaded {
    /// The validated configuration, keys left out filled from the embedded default.
    pub config: Config,
    /// The file path, or [`config::DEFAULT_NAME`].
    pub source: String,
}

/// Reads and validates the configuration: `path` if given, else [`SYSTEM_CONFIG`] under
/// `root` if it exists, else the embedded default. Errors are located
/// (`FILE:LINE:COL: ...`), one per line.
pub fn load_config(path: Option<&Path>, root: &Root) -> Result<Loaded> {
    Ok(load_config_bytes(path, root)?.0)
}

/// [`load_config`], also returning the file's bytes (the embedded default's for it).
pub fn load_config_bytes(path: Option<&Path>, root: &Root) -> Result<(Loaded, Vec<u8>)> {
    let system = root.at(SYSTEM_CONFIG);
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None if system.exists() => Some(system),
        None => None,
    };
    let Some(path) = path else {
        let loaded = Loaded { config: config::default_config(), source: config::DEFAULT_NAME.into() };
        return Ok((loaded, config::DEFAULT_TOML.as_bytes().to_vec()));
    };
    let name = path.display().to_string();
    // Errors are located like a configuration's own (`FILE: ...`, `FILE:LINE:COL: ...`).
    let fail = |position: Option<(usize, usize)>, message: String| -> anyhow::Error {
        config::ConfigErrors(vec![config::ConfigError { file: name.clone(), position, message }]).into()
    };
    let meta = std::fs::metadata(&path).map_err(|e| {
        let dangling = e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(&path).is_ok();
        match (dangling, std::fs::read_link(&path)) {
            (true, Ok(target)) => fail(
                None,
                format!("cannot read the configuration: a symlink to {}, which does not exist", target.display()),
            ),
            _ => fail(None, format!("cannot read the configuration: {e}")),
        }
    })?;
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO (a pipe, e.g. from <(...)); write the configuration to a regular file and give that"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        let hint = if t.is_fifo() { "" } else { "; give a TOML configuration file" };
        return Err(fail(None, format!("{what}{hint}")));
    }
    // A configuration is a few KiB; refuse anything absurd before reading it.
    if meta.len() > 1024 * 1024 {
        return Err(fail(None, format!("{} bytes is too large for a configuration (limit 1 MiB)", meta.len())));
    }
    let bytes = std::fs::read(&path).map_err(|e| fail(None, format!("cannot read the configuration: {e}")))?;
    let text = match String::from_utf8(bytes.clone()) {
        Ok(t) => t,
        Err(e) => {
            let off = e.utf8_error().valid_up_to();
            let valid = std::str::from_utf8(&e.as_bytes()[..off]).unwrap_or("");
            let (l, c) = config::line_col(valid, off);
            return Err(fail(
                Some((l, c)),
                format!("byte 0x{:02x} is not valid UTF-8; a configuration is UTF-8 TOML text", e.as_bytes()[off]),
            ));
        }
    };
    let config = config::parse(&name, &text)?;
    Ok((Loaded { config, source: name }, bytes))
}

/// The run directory: the lock and the saved route_localnet records. `$ECS_HOSTNET_RUN_DIR`
/// if set (tests and unusual layouts), else `/run/ecs-hostnet` under the root (a tmpfs:
/// cleared at boot, when the kernel's route_localnet values are back to their defaults too).
pub fn run_dir(root: &Root) -> PathBuf {
    std::env::var_os("ECS_HOSTNET_RUN_DIR").map(PathBuf::from).unwrap_or_else(|| root.at("/run/ecs-hostnet"))
}

/// How long a second apply/remove waits for the first before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// An exclusive `flock(2)` on `<run dir>/lock`, held by apply and remove for their whole
/// run so that the boot unit, the ecs-init hook and a person never interleave (a remove
/// between an apply's batch and its sysctl write would leave route_localnet on with no
/// guard). Released when dropped (or when the process dies).
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Waits up to `timeout` for the lock. Errors name the lock file.
    pub fn acquire(root: &Root, timeout: Duration) -> Result<Lock> {
        let dir = run_dir(root);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run directory {}", dir.display()))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let start = Instant::now();
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
            if start.elapsed() >= timeout {
                bail!(
                    "another ecs-hostnet apply or remove is still running (lock {} held for more than {} s); try again later",
                    path.display(),
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where the saved copy of this namespace's route_localnet record lives:
/// `<run dir>/route_localnet/<netns cookie>`. `None` on kernels without netns cookies
/// (< 5.14): an nsfs inode number can be reused by a later namespace, so no file is kept
/// and only the kernel's copy is used.
fn saved_record_path(nf: &Netfilter, root: &Root) -> Option<PathBuf> {
    nf.netns_cookie().map(|c| run_dir(root).join("route_localnet").join(format!("netns-{c}")))
}

fn read_saved_record(nf: &Netfilter, root: &Root) -> Option<Record> {
    let text = std::fs::read(saved_record_path(nf, root)?).ok()?;
    record::decode(&text)
}

/// Makes the saved copy equal `r` (deleted when empty); writes only when it differs,
/// through a temporary file and a rename so a crash leaves the old or the new copy.
fn sync_saved_record(nf: &Netfilter, root: &Root, r: &Record) -> Result<()> {
    let Some(path) = saved_record_path(nf, root) else { return Ok(()) };
    if r.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let bytes = record::encode(r);
    if std::fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A fixed temporary name (written under the lock): a run killed before the rename
    // leaves at most this one file, which the next run replaces.
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("record")));
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ok();
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads our tables, the saved record and the route_localnet values the plan needs, and
/// the rule-set generation they belong to.
pub fn read_live(nf: &mut Netfilter, desired: &Desired, root: &Root) -> Result<(LiveState, u32)> {
    let (tables, generation) = nf.read_owned()?;
    let saved_record = read_saved_record(nf, root);
    let mut rt = Rtnl::open()?;
    let (ipv4_routes, ipv4_default_route) = rt.routes_and_default(false, |r| is_endpoint_route(desired, r))?;
    let lo_up = rt.link_is_up(crate::rtnl::LOOPBACK_IFINDEX)?;
    let facts = HostFacts { tables, saved_record, ipv4_routes, ipv4_default_route, lo_up };
    Ok((facts.live_state(desired, sysctl::read_route_localnet)?, generation))
}

/// Everything `plan` could need of the current network namespace, whatever the
/// configuration: our tables, the saved record, every main-table IPv4 route, and the
/// route_localnet value of `all`, `default` and every interface (the `snapshot` command).
/// Returns the facts, the values, and the rule-set generation read.
pub fn read_facts(
    nf: &mut Netfilter,
    root: &Root,
) -> Result<(HostFacts, std::collections::BTreeMap<String, String>, u32)> {
    let (tables, generation) = nf.read_owned()?;
    let saved_record = read_saved_record(nf, root);
    let mut rt = Rtnl::open()?;
    let (ipv4_routes, ipv4_default_route) = rt.routes_and_default(false, |_| true)?;
    let lo_up = rt.link_is_up(crate::rtnl::LOOPBACK_IFINDEX)?;
    let mut values = std::collections::BTreeMap::new();
    let dir = "/proc/sys/net/ipv4/conf";
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {dir}"))? {
        let name = entry.with_context(|| format!("cannot list {dir}"))?.file_name().to_string_lossy().into_owned();
        // Only names a /proc/sys path may be built from (see `sysctl::route_localnet_path`).
        if sysctl::route_localnet_path(&name).is_err() {
            continue;
        }
        if let Some(v) = sysctl::read_route_localnet(&name)? {
            values.insert(name, v);
        }
    }
    Ok((HostFacts { tables, saved_record, ipv4_routes, ipv4_default_route, lo_up }, values, generation))
}

/// The `snapshot` of the current network namespace (see [`crate::snapshot`]); `netns` is
/// the `--netns` given, recorded in it.
pub fn snapshot(root: &Root, netns: Option<&str>) -> Result<crate::snapshot::Snapshot> {
    let mut nf = Netfilter::open()?;
    let (facts, values, generation) = read_facts(&mut nf, root)?;
    let install = match crate::install::read_state(root)? {
        Some(state) => {
            let (files, link) = crate::install::read_live_files(root, &state)?;
            Some((state, files, link))
        }
        None => None,
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    Ok(crate::snapshot::Snapshot::new(facts, values, generation, netns.map(str::to_string), kernel, install))
}

/// Plans `desired` against the live state of the current network namespace.
pub fn plan_live(desired: &Desired, root: &Root) -> Result<(Netfilter, Plan)> {
    let mut nf = Netfilter::open()?;
    let (live, _) = read_live(&mut nf, desired, root)?;
    Ok((nf, plan(desired, &live)))
}

/// Carries out `desired`: restores, one batch, enables; retried (re-read and re-planned)
/// up to three times when a concurrent writer changed the rule set under us. Returns the
/// plan that was carried out (empty when the host was already converged).
///
/// The caller holds the [`Lock`] (and keeps it while it repairs installed files).
pub fn converge(desired: &Desired, root: &Root, _lock: &Lock) -> Result<Plan> {
    carry_out(desired, root, |live| plan(desired, live))
}

/// Removes everything ecs-hostnet owns (see [`plan_removal`]). The caller holds the [`Lock`].
pub fn remove(root: &Root, _lock: &Lock) -> Result<Plan> {
    carry_out(&nothing(), root, plan_removal)
}

/// How many times apply or remove reads, plans and sends before giving up on a rule set
/// that other programs keep changing.
const MAX_ATTEMPTS: u32 = 6;

fn carry_out(desired: &Desired, root: &Root, planner: impl Fn(&LiveState) -> Plan) -> Result<Plan> {
    let mut nf = Netfilter::open()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (live, generation) = read_live(&mut nf, desired, root)?;
        let p = planner(&live);
        if p.is_empty() {
            // Converged: no batch, no sysctl; only a missing saved copy is written.
            sync_saved_record(&nf, root, &p.record)?;
            return Ok(p);
        }
        for w in &p.sysctl_before {
            sysctl::write_route_localnet(&w.selector, &w.value)?;
        }
        // Routes before the batch: a route the kernel refuses then stops us before any
        // rule changed (the endpoint route is harmless without the rules).
        if !p.route_ops.is_empty() {
            let mut rt = Rtnl::open()?;
            for op in &p.route_ops {
                op.run(&mut rt)?;
            }
        }
        match nf.commit(&p.ops, generation) {
            Ok(()) => {}
            Err(KernelError::Rejected { ref err, .. })
                if matches!(err.raw_os_error(), Some(libc::ERESTART | libc::ENOENT | libc::EEXIST | libc::EBUSY)) =>
            {
                // Someone committed between our read and our batch (ERESTART: the
                // generation moved): nothing was applied; read again and re-plan, after a
                // short, growing pause so a busy writer can finish.
                if attempt < MAX_ATTEMPTS {
                    std::thread::sleep(Duration::from_millis(1 << attempt));
                    continue;
                }
                bail!(
                    "the rule set kept changing under ecs-hostnet: another program committed between its read and its \
                     batch {MAX_ATTEMPTS} times, and the kernel refused each batch whole, so nothing was applied; try again"
                );
            }
            Err(e) => return Err(e.into()),
        }
        // Values that are no longer ours go back to what was found before, also when a
        // concurrent apply (under another lock) turned them on since we read them.
        if let Some(old) = live.record() {
            for (sel, original) in old.iter().filter(|(k, _)| !p.record.contains_key(*k)) {
                if sysctl::read_route_localnet(sel)?.is_some_and(|now| now != *original) {
                    sysctl::write_route_localnet(sel, original)?;
                }
            }
        }
        // The kernel now holds the record; keep the copy before route_localnet goes on.
        sync_saved_record(&nf, root, &p.record)?;
        for w in &p.sysctl_after {
            sysctl::write_route_localnet(&w.selector, &w.value)?;
        }
        let (live_after, _) = read_live(&mut nf, desired, root)
            .context("the batch was committed, but reading the result back failed (run `ecs-hostnet check`)")?;
        let after = planner(&live_after);
        if !after.is_empty() {
            let (a, c, r) = after.counts();
            // Never leave route_localnet on without the guard (a concurrent remove with
            // another lock, or someone flushing the rule set, can take the guard away
            // between our batch and our sysctl write): put the recorded values back.
            let mut restored = Vec::new();
            if !guard_is_live(&live_after) {
                for w in &p.sysctl_after {
                    if let Some(original) = p.record.get(&w.selector) {
                        sysctl::write_route_localnet(&w.selector, original)?;
                        restored.push(format!("{}={original}", crate::plan::sysctl_name(&w.selector)));
                    }
                }
            }
            let restored = if restored.is_empty() {
                String::new()
            } else {
                format!("; the localhost guard is gone, so {} was put back", restored.join(", "))
            };
            bail!(
                "the host did not converge: {a} to add, {c} to change, {r} to remove remain after the batch{restored} (run `ecs-hostnet plan` to see them)"
            );
        }
        return Ok(p);
    }
}

/// Whether the localhost guard rule is live in `table inet ecs-hostnet`.
fn guard_is_live(live: &LiveState) -> bool {
    live.tables.iter().any(|t| {
        t.family == crate::ruleset::Family::Inet
            && t.flags == 0
            && t.chains.iter().any(|c| c.rules.iter().any(|r| r.comment.as_deref() == Some("localhost-guard")))
    })
}

/// The desired state of `remove`: none of our tables, no route_localnet of ours.
pub fn nothing() -> Desired {
    Desired { tables: vec![], route_localnet: vec![], endpoint_route: None }
}

/// Compiles a loaded configuration.
pub fn desired(loaded: &Loaded) -> Desired {
    compile(&loaded.config)
}

/// Error context for the namespace, used by main.
pub fn in_namespace<T>(netns: Option<&str>, r: Result<T>) -> Result<T> {
    match netns {
        Some(ns) => r.with_context(|| format!("in network namespace {ns:?}")),
        None => r,
    }
}
