//! `install` and `uninstall`, and the file half of `plan`/`check`/`apply`: reading and
//! writing the files of [`crate::desired::install_files`] under a root directory.
//!
//! Every path is resolved inside the root ([`crate::host::files`]: an absolute symlink in
//! an image is taken relative to `--root`, never followed onto the build host). Every
//! write is atomic: a temporary file in the same folder, fsync, rename over the target,
//! fsync of the folder; the enablement symlink is renamed into place the same way. A crash
//! or `kill -9` at any moment leaves each file either old or new, never partial. Files
//! are written only when their content, mode or owner differs: the files ecs-hostnet owns
//! get exact modes whatever the umask (configuration and units 0644, binary 0755, state
//! 0600, all root:root; folders it creates 0755); ecs.config, which it only edits, keeps
//! its mode and owner.
//! The install state is written before the files it describes and removed after them,
//! so an interrupted install or uninstall can always be finished or undone by running
//! either command again.
//!
//! The state keeps no copy of ecs.config ([`crate::model::install_state`]): install
//! records the lines of our keys ([`ecs_config::record`]) and uninstall puts them back
//! into the file as it is then ([`ecs_config::restore`]). A state of the previous schema
//! is converted when read ([`migrate_v1`]) and rewritten by the next install, apply
//! (file repair) or uninstall.
//!
//! Beside the ecs-hostnet package ([`detect_layout`]: its binary and boot unit are in
//! /usr/sbin and /usr/lib/systemd/system under the root) install copies nothing and writes
//! no unit: it enables the package's units and writes only what is host-specific (the
//! configuration, the two drop-ins, the agent keys), and the state says so
//! ([`InstallState::package`]); uninstall then never removes a file of the package's.
//!
//! After install or uninstall on the running system, systemd is told ([`tell_systemd`]):
//! what it does is decided by [`systemd_step`] and [`agent_note`], pure functions.

use crate::desired::ecs_config;
use crate::desired::install_files::{self as artifacts, Layout, Optional};
use crate::host::files::{self, Perm, Root, missing_dirs, read_opt, remove_file, temp_path, write_atomic};
use crate::host::systemd;
use crate::model::install_state::{Bytes, InstallState, InstalledFile, LiveFiles, STATE_SCHEMA, v1};
use crate::plan::change::{Action, Change, Subject};
use crate::plan::reason::Reason;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Folders on the way to the state file that hold nothing but what an install killed
/// before its state was written left behind (the folder chain and a temporary state
/// file), outermost first. Only the state file's folders can be created before the state
/// records them.
fn leftover_state_dirs(root: &Root) -> Vec<String> {
    // By its real path: an image may link /var/lib/ecs-hostnet elsewhere.
    let state = files::real_path(root, artifacts::STATE_PATH);
    let state = Path::new(&state);
    let tmp_name = temp_path(state).file_name().map(|n| n.to_os_string());
    let mut out = Vec::new();
    let mut child: Option<std::ffi::OsString> = None;
    let mut dir = state.parent();
    while let Some(d) = dir.filter(|d| *d != Path::new("/")) {
        let entries = match files::read_dir(root, &d.to_string_lossy()) {
            Ok(Some(e)) => e,
            // Killed before this level was made: look at its parent.
            Ok(None) => {
                dir = d.parent();
                continue;
            }
            Err(_) => break,
        };
        let state_dir = Some(d) == state.parent();
        let only_ours = entries.into_iter().all(|e| {
            let n = Some(e);
            (child.is_some() && n == child) || (state_dir && n == tmp_name)
        });
        if !only_ours {
            break;
        }
        out.push(d.to_string_lossy().into_owned());
        child = d.file_name().map(|n| n.to_os_string());
        dir = d.parent();
    }
    out.reverse();
    out
}

/// `abs`'s temporary file ([`temp_path`]), as an absolute path inside the root.
fn temp_abs(abs: &str) -> String {
    temp_path(Path::new(abs)).to_string_lossy().into_owned()
}

/// Reads the install state; `Ok(None)` when nothing is installed. A state of the
/// previous schema is converted ([`migrate_v1`]); nothing is written.
pub fn read_state(root: &Root) -> Result<Option<InstallState>> {
    Ok(read_state_as_found(root)?.map(|(state, _)| state))
}

/// The install state, and whether it was found in the previous schema (then it still
/// holds copies of ecs.config on disk, and is to be rewritten).
fn read_state_as_found(root: &Root) -> Result<Option<(InstallState, bool)>> {
    let path = root.at(artifacts::STATE_PATH);
    let Some(bytes) = read_opt(root, artifacts::STATE_PATH)? else { return Ok(None) };
    let not_a_state =
        || format!("{}: not an ecs-hostnet install state; remove it by hand if nothing is installed", path.display());
    #[derive(serde::Deserialize)]
    struct Head {
        schema: String,
    }
    let head: Head = serde_json::from_slice(&bytes).with_context(not_a_state)?;
    match head.schema.as_str() {
        STATE_SCHEMA => Ok(Some((serde_json::from_slice(&bytes).with_context(not_a_state)?, false))),
        v1::SCHEMA => Ok(Some((migrate_v1(serde_json::from_slice(&bytes).with_context(not_a_state)?), true))),
        other => bail!(
            "{}: unknown schema {other:?} (this ecs-hostnet reads {STATE_SCHEMA} and {})",
            path.display(),
            v1::SCHEMA
        ),
    }
}

/// Converts a state of the previous schema: the copies of ecs.config (the whole file
/// before and after install, registry credentials included) become the record of our
/// keys' lines that [`ecs_config::record`] makes of the copy from before, so uninstall
/// restores the same bytes; the binary's previous content is dropped (its mode says a
/// file was there; uninstall leaves the binary then). Pure.
pub fn migrate_v1(old: v1::InstallState) -> InstallState {
    let files = old
        .files
        .into_iter()
        .map(|mut f| {
            if f.path == artifacts::BIN_PATH && f.before.is_some() {
                f.before = None;
                f.before_mode = Some(f.before_mode.unwrap_or(0o755));
            }
            f
        })
        .collect();
    let ecs_config = old.ecs_config.map(|e| {
        // Our keys in install's order, with the values install wrote (only whether a key
        // was set matters to the record).
        let mut names: Vec<&String> = e.keys_before.keys().collect();
        names.sort_by_key(|k| crate::model::names::AGENT_KEYS.iter().position(|a| a == k).unwrap_or(usize::MAX));
        let keys: Vec<(String, Option<String>)> = names
            .into_iter()
            .map(|k| (k.clone(), Some(ecs_config::get(&e.written.0, k).unwrap_or_default())))
            .collect();
        ecs_config::record(e.before.as_ref().map(|b| &b.0[..]), &keys)
    });
    InstallState {
        schema: STATE_SCHEMA.into(),
        files,
        wants_link: old.wants_link,
        ecs_config,
        created_dirs: old.created_dirs,
        ..Default::default()
    }
}

/// Rewrites a state of the previous schema in the current one, without its copies of
/// ecs.config. Returns whether it rewrote (`false`: nothing installed, or already current).
pub fn migrate_state(root: &Root) -> Result<bool> {
    match read_state_as_found(root)? {
        Some((state, true)) => write_state(root, &state),
        _ => Ok(false),
    }
}

fn write_state(root: &Root, state: &InstallState) -> Result<bool> {
    let mut text = serde_json::to_vec_pretty(state)?;
    text.push(b'\n');
    Ok(write_atomic(root, artifacts::STATE_PATH, &text, 0o600)?)
}

/// Whether the boot unit's enablement symlink is in place, pointing at `layout`'s boot unit.
fn link_ok(root: &Root, layout: &Layout) -> bool {
    files::read_link(root, artifacts::WANTS_LINK).is_some_and(|t| t == Path::new(layout.unit))
}

/// Whether `o`'s enablement symlink is in place, pointing at `layout`'s unit.
fn optional_link_ok(root: &Root, o: Optional, layout: &Layout) -> bool {
    files::read_link(root, o.link()).is_some_and(|t| t == Path::new(o.target(layout)))
}

/// Beside the package, whether install made `o`'s link ([`InstallState::watch_link`],
/// [`InstallState::metrics_link`]).
fn package_link(state: &InstallState, o: Optional) -> bool {
    match o {
        Optional::Watch => state.watch_link,
        Optional::Metrics => state.metrics_link,
    }
}

fn set_package_link(state: &mut InstallState, o: Optional, made: bool) {
    match o {
        Optional::Watch => state.watch_link = made,
        Optional::Metrics => state.metrics_link = made,
    }
}

/// Whether the state lists `o`'s unit files (install's own), or, beside the package,
/// records that install enabled the package's ([`package_link`]). Its enablement link then
/// belongs to that install (states written before the unit existed read unchanged): made by
/// install, checked for drift, removed by uninstall, unless something else is at the
/// link's path, which is left alone.
fn lists(state: &InstallState, o: Optional) -> bool {
    state.files.iter().any(|f| o.local_files().contains(&f.path.as_str())) || (state.package && package_link(state, o))
}

/// The layout of the host under `root`: [`artifacts::PACKAGE`] when the package's binary
/// ([`artifacts::PKG_BIN_PATH`]) and boot unit ([`artifacts::PKG_UNIT_PATH`]) are both
/// there as regular files and `state` (an earlier install's) did not write them; else
/// [`artifacts::LOCAL`]. Decided from the files themselves, never by asking dpkg or rpm
/// (an image being built under `--root` has no package database of this machine's).
///
/// Errors: a path that cannot be examined (permissions, a folder in the way).
pub fn detect_layout(root: &Root, state: Option<&InstallState>) -> Result<Layout> {
    let ours = |p: &str| state.is_some_and(|s| s.files.iter().any(|f| f.path == p));
    for p in [artifacts::PKG_BIN_PATH, artifacts::PKG_UNIT_PATH] {
        if ours(p) || !files::metadata(root, p, true)?.is_some_and(|m| m.is_file) {
            return Ok(artifacts::LOCAL);
        }
    }
    Ok(artifacts::PACKAGE)
}

/// The layout an install state was written for.
fn layout_of(state: &InstallState) -> Layout {
    Layout::of(state.package)
}

/// Beside the package, the binary and units an earlier install from a tarball or source
/// wrote ([`artifacts::LOCAL`]) go (put back as they were before it) and leave the state:
/// the package's are used from now on. A configuration that install created is now also
/// the package's conffile: recorded as there before install, so uninstall leaves it.
fn leave_local_layout(root: &Root, state: &mut InstallState, report: &mut Report) -> Result<()> {
    for path in [
        artifacts::METRICS_TIMER_PATH,
        artifacts::METRICS_SERVICE_PATH,
        artifacts::WATCH_UNIT_PATH,
        artifacts::UNIT_PATH,
        artifacts::BIN_PATH,
    ] {
        let Some(i) = state.files.iter().position(|f| f.path == path) else { continue };
        let f = state.files.remove(i);
        report.units_changed |= put_back(root, &f, report)?;
    }
    if let Some(f) = state.files.iter_mut().find(|f| f.path == artifacts::CONFIG_PATH && !f.existed()) {
        f.before_mode = Some(0o644);
    }
    Ok(())
}

/// How each file install writes is written: ecs.config is only edited (its mode and
/// owner kept), the others are ecs-hostnet's and get exact modes.
fn perm_of(abs: &str) -> Perm {
    match abs {
        artifacts::ECS_CONFIG_PATH => Perm::KeepExisting(0o644),
        artifacts::BIN_PATH => Perm::Exact(0o755),
        artifacts::STATE_PATH => Perm::Exact(0o600),
        _ => Perm::Exact(0o644),
    }
}

/// What install or uninstall did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per file or step, for people.
    pub lines: Vec<String>,
    /// The boot unit, the drop-in or the enablement link was written or removed: a
    /// running systemd must reload its units.
    pub units_changed: bool,
    /// The agent keys in ecs.config were written or put back: the ECS agent reads them
    /// when it starts.
    pub agent_keys_changed: bool,
    /// Uninstall left the binary at [`artifacts::BIN_PATH`]: a file was there before the
    /// first install.
    pub binary_kept: bool,
    /// Uninstall found nothing installed (no state).
    pub nothing_installed: bool,
    /// Install left the watch unit installed (`watch.enabled = true`): on the running
    /// system it is (re)started, for the binary and configuration now on disk.
    pub watch_enabled: bool,
    /// Install removed a watch unit an earlier install wrote (`watch.enabled = false`): on
    /// the running system it is stopped. (Uninstall stops it before anything else:
    /// [`stop_watch`].)
    pub watch_removed: bool,
    /// Install left the metrics timer enabled (`metrics.textfile` set): on the running
    /// system it is (re)started.
    pub metrics_enabled: bool,
    /// Install or uninstall took back the metrics timer an earlier install enabled: on the
    /// running system it is stopped.
    pub metrics_removed: bool,
}

impl Report {
    fn line(&mut self, l: String) {
        self.lines.push(l);
    }

    /// Whether `o` is left enabled ([`Report::watch_enabled`], [`Report::metrics_enabled`]).
    pub fn enabled(&self, o: Optional) -> bool {
        match o {
            Optional::Watch => self.watch_enabled,
            Optional::Metrics => self.metrics_enabled,
        }
    }

    /// Whether `o` was taken back ([`Report::watch_removed`], [`Report::metrics_removed`]).
    pub fn removed(&self, o: Optional) -> bool {
        match o {
            Optional::Watch => self.watch_removed,
            Optional::Metrics => self.metrics_removed,
        }
    }

    fn set_removed(&mut self, o: Optional) {
        match o {
            Optional::Watch => self.watch_removed = true,
            Optional::Metrics => self.metrics_removed = true,
        }
    }
}

/// Installs into `root`: the configuration (`config_text`), the binary (`binary`), the
/// boot unit and its enablement, the ecs-init hook, and the agent keys. Idempotent.
pub fn install(
    root: &Root,
    config_text: &[u8],
    binary: &[u8],
    agent_keys: &[(String, Option<String>)],
) -> Result<Report> {
    let old = read_state(root)?;
    let mut state = old.clone().unwrap_or_else(|| InstallState {
        schema: STATE_SCHEMA.into(),
        // Folders an earlier, interrupted install made before it could record them.
        created_dirs: leftover_state_dirs(root),
        ..Default::default()
    });
    let layout = detect_layout(root, old.as_ref())?;
    // Whether an earlier install (of either layout) made each optional unit's link, and
    // whether this configuration wants it.
    let ours = Optional::ALL.map(|o| lists(&state, o));
    let wanted = Optional::ALL.map(|o| o.configured(config_text));
    let mut targets: Vec<(&str, Vec<u8>, u32, bool)> =
        artifacts::text_files(config_text, &layout).into_iter().map(|f| (f.path, f.content, f.mode, true)).collect();
    let mut report = Report { watch_enabled: wanted[0], metrics_enabled: wanted[1], ..Default::default() };
    if layout.package {
        report.line(format!(
            "the binary {} and the units in /usr/lib/systemd/system are the package's: used as they are",
            layout.bin
        ));
        leave_local_layout(root, &mut state, &mut report)?;
    } else {
        targets.insert(0, (artifacts::BIN_PATH, binary.to_vec(), 0o755, false));
    }
    state.package = layout.package;
    for o in Optional::ALL.into_iter().filter(|o| !wanted[*o as usize]) {
        // Turned off since an earlier install: its units and link go first, then the state
        // that no longer lists them is written (killed in between, the old state lists
        // files that are gone, which uninstall takes in its stride).
        remove_optional(root, o, &mut state, &layout, &mut report)?;
    }

    // Record what is there before touching anything.
    let links: Vec<&str> = Optional::ALL.into_iter().filter(|o| wanted[*o as usize]).map(Optional::link).collect();
    for abs in targets
        .iter()
        .map(|t| t.0)
        .chain([artifacts::WANTS_LINK, artifacts::STATE_PATH, artifacts::ECS_CONFIG_PATH])
        .chain(links)
    {
        for d in missing_dirs(root, abs) {
            if !state.created_dirs.contains(&d) {
                state.created_dirs.push(d);
            }
        }
    }
    for (abs, content, _, text) in &targets {
        let written = text.then(|| Bytes(content.clone()));
        match state.files.iter_mut().find(|f| f.path == *abs) {
            Some(f) => f.written = written,
            None => {
                let meta = files::metadata(root, abs, true)?.filter(|m| m.is_file);
                state.files.push(InstalledFile {
                    path: abs.to_string(),
                    // The binary's old content is not kept: megabytes that apply would read
                    // at every boot, and uninstall leaves the installed binary where one was.
                    before: if *text { read_opt(root, abs)?.map(Bytes) } else { None },
                    before_mode: meta.map(|m| m.mode),
                    before_owner: meta.map(|m| (m.uid, m.gid)),
                    written,
                })
            }
        }
    }
    let ecs_now = read_opt(root, artifacts::ECS_CONFIG_PATH)?;
    if !agent_keys.is_empty()
        && let Some(text) = &ecs_now
        && let Err(e) = ecs_config::check(text)
    {
        // Refused before anything is written: an edit could record or drop a line that is
        // not our key's (a secret on the line systemd splits off).
        bail!(
            "{}: {e}; ecs-hostnet edits it line by line and will not guess where systemd's lines are: \
             use plain LF (or CRLF) line ends and close quoted values on their line, then run install again \
             (nothing was written)",
            root.at(artifacts::ECS_CONFIG_PATH).display()
        );
    }
    let ecs_new =
        (!agent_keys.is_empty()).then(|| ecs_config::set_all(ecs_now.as_deref().unwrap_or_default(), agent_keys));
    // Recorded once, by the first install that manages the keys: what the file held
    // before ecs-hostnet ever touched them.
    if ecs_new.is_some() && state.ecs_config.is_none() {
        state.ecs_config = Some(ecs_config::record(ecs_now.as_deref(), agent_keys));
    }
    if !state.wants_link && files::metadata(root, artifacts::WANTS_LINK, false)?.is_none() {
        state.wants_link = true;
    }
    // Beside the package, an optional unit's link is recorded as install's when install
    // makes it (or made it before); without the package the state's listing of the unit
    // says so.
    for o in Optional::ALL {
        let (ours, wanted) = (ours[o as usize], wanted[o as usize]);
        let made = layout.package && wanted && (ours || files::metadata(root, o.link(), false)?.is_none());
        set_package_link(&mut state, o, made);
    }

    if write_state(root, &state)? {
        report.line(format!("wrote {}", artifacts::STATE_PATH));
    }
    for (abs, content, mode, _) in &targets {
        let wrote = write_atomic(root, abs, content, *mode)?;
        report.units_changed |= wrote && is_unit(abs);
        report.line(format!("{} {abs}", if wrote { "wrote" } else { "unchanged" }));
    }
    if state.wants_link && !link_ok(root, &layout) {
        files::replace_symlink(root, artifacts::WANTS_LINK, layout.unit)?;
        report.units_changed = true;
        report.line(format!("enabled {} (symlink {})", layout.unit, artifacts::WANTS_LINK));
    } else if state.wants_link || link_ok(root, &layout) {
        report.line(format!("unchanged {}", artifacts::WANTS_LINK));
    } else {
        report.line(format!(
            "left alone: {} exists and is not ecs-hostnet's link; the boot unit is NOT enabled",
            artifacts::WANTS_LINK
        ));
    }
    for o in Optional::ALL.into_iter().filter(|o| wanted[*o as usize]) {
        enable_optional(root, o, ours[o as usize], &layout, &mut report)?;
    }
    if let Some(new) = &ecs_new {
        let wrote = write_atomic(root, artifacts::ECS_CONFIG_PATH, new, perm_of(artifacts::ECS_CONFIG_PATH))?;
        report.agent_keys_changed = wrote;
        let keys: Vec<String> = agent_keys.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or(""))).collect();
        let verb = if wrote { "updated" } else { "unchanged" };
        report.line(format!("{verb} {} ({})", artifacts::ECS_CONFIG_PATH, keys.join(", ")));
    }
    Ok(report)
}

/// Makes `o`'s enablement symlink (atomically, like the boot unit's) unless something else
/// is at its path (a link an earlier install made, `ours`, to the other layout's unit, is
/// re-pointed).
fn enable_optional(root: &Root, o: Optional, ours: bool, layout: &Layout, report: &mut Report) -> Result<()> {
    let link = o.link();
    let ours_elsewhere = ours && optional_link_ok(root, o, &Layout::of(!layout.package));
    if optional_link_ok(root, o, layout) {
        report.line(format!("unchanged {link}"));
    } else if ours_elsewhere || files::metadata(root, link, false)?.is_none() {
        files::replace_symlink(root, link, o.target(layout))?;
        report.units_changed = true;
        report.line(format!("enabled {} (symlink {link})", o.target(layout)));
    } else {
        report.line(format!("left alone: {link} exists and is not ecs-hostnet's link; {} is NOT enabled", o.unit()));
    }
    Ok(())
}

/// With `o` turned off (`watch.enabled = false`, `metrics.textfile` unset): removes the
/// units and the link an earlier install made for it (a unit file put back if one was there
/// before; the package's units stay), and forgets them in `state`.
fn remove_optional(
    root: &Root,
    o: Optional,
    state: &mut InstallState,
    layout: &Layout,
    report: &mut Report,
) -> Result<()> {
    if lists(state, o) && (optional_link_ok(root, o, layout) || optional_link_ok(root, o, &layout_of(state))) {
        remove_file(root, o.link())?;
        report.units_changed = true;
        report.line(format!("disabled {} (removed {})", o.unit(), o.link()));
    }
    if state.package && package_link(state, o) {
        set_package_link(state, o, false);
        report.set_removed(o);
    }
    for path in o.local_files().iter().rev() {
        let Some(i) = state.files.iter().position(|f| f.path == *path) else { continue };
        let f = state.files.remove(i);
        report.set_removed(o);
        report.units_changed |= put_back(root, &f, report)?;
    }
    Ok(())
}

/// Puts back one file install wrote as it was before the first install: restored, left
/// (a binary that was there), or removed. Returns whether a unit file changed.
fn put_back(root: &Root, f: &InstalledFile, report: &mut Report) -> Result<bool> {
    let _ = remove_file(root, &temp_abs(&f.path));
    // The configuration is the operator's once edited (and the package's conffile beside a
    // package): an edit made since install is never thrown away, like dpkg and rpm keep a
    // changed conffile.
    if f.path == artifacts::CONFIG_PATH
        && let Some(written) = &f.written
        && let Some(now) = read_opt(root, &f.path)?
        && now != written.0
    {
        report.line(format!("kept {}: edited since install", f.path));
        return Ok(false);
    }
    Ok(match (&f.before, f.before_mode) {
        (Some(b), mode) => {
            let mode = mode.unwrap_or(0o644);
            let perm = match f.before_owner {
                Some((uid, gid)) => Perm::Restore { mode, uid, gid },
                None => Perm::Exact(mode),
            };
            let wrote = write_atomic(root, &f.path, &b.0, perm)?;
            report.line(format!("restored {}", f.path));
            wrote && is_unit(&f.path)
        }
        (None, Some(_)) => {
            report.binary_kept |= f.path == artifacts::BIN_PATH;
            report.line(format!(
                "left {} in place: a file was there before install (its old content is not kept)",
                f.path
            ));
            false
        }
        (None, None) => {
            let removed = remove_file(root, &f.path)?;
            if removed {
                report.line(format!("removed {}", f.path));
            }
            removed && is_unit(&f.path)
        }
    })
}

/// Whether systemd reads `abs` as part of a unit (the units, the drop-ins).
fn is_unit(abs: &str) -> bool {
    [
        artifacts::UNIT_PATH,
        artifacts::DROPIN_PATH,
        artifacts::NFT_DROPIN_PATH,
        artifacts::WATCH_UNIT_PATH,
        artifacts::METRICS_SERVICE_PATH,
        artifacts::METRICS_TIMER_PATH,
    ]
    .contains(&abs)
}

/// Removes what install added and puts back what it replaced. Idempotent.
///
/// ecs.config gets the lines of our keys back as install found them, every other line as
/// it is now ([`ecs_config::restore`]); a file install created goes once nothing else is
/// in it; one deleted since install stays deleted. A binary that was at
/// [`artifacts::BIN_PATH`] before install is left there (the installed one). A state of
/// the previous schema is first rewritten without its copies of ecs.config, so that an
/// uninstall that stops half-way leaves none behind.
pub fn uninstall(root: &Root) -> Result<Report> {
    let Some((state, migrated)) = read_state_as_found(root)? else {
        let leftovers = leftover_state_dirs(root);
        let _ = remove_file(root, &temp_abs(artifacts::STATE_PATH));
        let mut report = Report { nothing_installed: true, ..Default::default() };
        report.line("nothing installed (no install state)".to_string());
        for d in leftovers.iter().rev() {
            if matches!(files::remove_dir(root, d), Ok(true)) {
                report.line(format!("removed folder {d} (left by an interrupted install)"));
            }
        }
        return Ok(report);
    };
    let mut report = Report::default();
    if migrated && write_state(root, &state)? {
        report.line(format!("rewrote {} without its copies of {}", artifacts::STATE_PATH, artifacts::ECS_CONFIG_PATH));
    }
    if let Some(e) = &state.ecs_config {
        let path = artifacts::ECS_CONFIG_PATH;
        match read_opt(root, path)?.map(|now| ecs_config::restore(&now, e)) {
            None if e.existed => report.line(format!(
                "left alone: {} was deleted since install; it is not recreated",
                artifacts::ECS_CONFIG_PATH
            )),
            None => {}
            Some(None) if remove_file(root, path)? => {
                report.agent_keys_changed = true;
                report.line(format!("removed {} (install created it)", artifacts::ECS_CONFIG_PATH));
            }
            Some(Some(text)) if write_atomic(root, path, &text, perm_of(path))? => {
                report.agent_keys_changed = true;
                report.line(format!(
                    "restored {} (the agent keys as they were before install; every other line as it is)",
                    artifacts::ECS_CONFIG_PATH
                ));
            }
            Some(_) => {}
        }
    }
    let layout = layout_of(&state);
    if state.wants_link && link_ok(root, &layout) {
        remove_file(root, artifacts::WANTS_LINK)?;
        report.units_changed = true;
        report.line(format!("disabled (removed {})", artifacts::WANTS_LINK));
    }
    for o in Optional::ALL.into_iter().filter(|o| lists(&state, *o)) {
        if optional_link_ok(root, o, &layout) {
            remove_file(root, o.link())?;
            report.units_changed = true;
            report.line(format!("disabled {} (removed {})", o.unit(), o.link()));
        }
        // The watcher was stopped first (stop_watch); the timer is stopped once systemd
        // is told (a run between now and then only reads the kernel).
        if o == Optional::Metrics {
            report.set_removed(o);
        }
    }
    for f in state.files.iter().rev() {
        report.units_changed |= put_back(root, f, &mut report)?;
    }
    for abs in
        [artifacts::ECS_CONFIG_PATH, artifacts::WANTS_LINK, artifacts::WATCH_WANTS_LINK, artifacts::METRICS_WANTS_LINK]
    {
        let _ = remove_file(root, &temp_abs(abs));
    }
    // Only folders install created, and only when empty; those holding the state file go
    // last, right after it, so an uninstall killed before the end finds its state again.
    // Folders are recorded by their real path (see `files::missing_dirs`): so is the state.
    let state_real = files::real_path(root, artifacts::STATE_PATH);
    let holds_state = |d: &String| Path::new(&state_real).starts_with(d);
    let remove_dirs = |dirs: Vec<&String>, report: &mut Report| {
        for d in dirs.into_iter().rev() {
            if matches!(files::remove_dir(root, d), Ok(true)) {
                report.line(format!("removed folder {d}"));
            }
        }
    };
    remove_dirs(state.created_dirs.iter().filter(|d| !holds_state(d)).collect(), &mut report);
    let _ = remove_file(root, &temp_abs(artifacts::STATE_PATH));
    remove_file(root, artifacts::STATE_PATH)?;
    remove_dirs(state.created_dirs.iter().filter(|d| holds_state(d)).collect(), &mut report);
    Ok(report)
}

/// What `uninstall --package-removal` (the package's prerm on `remove`/`purge`, its %preun
/// on erase) does, decided from the install state as the real parser read it
/// ([`package_removal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageRemoval {
    /// No install state: `ecs-hostnet install` never ran (or was undone); the package goes
    /// with nothing to undo.
    NothingInstalled,
    /// The state is a tarball or source install's (`"package": false`): its own binary in
    /// /usr/local/sbin and its units in /etc/systemd/system stay, and so does the state, for
    /// that binary's `uninstall`.
    NotThePackages,
    /// The state is an install beside the package (`"package": true`): uninstall it with the
    /// package's binary while that binary is still there.
    Uninstall,
}

/// Decides [`PackageRemoval`] from the install state (`None`: none there). Pure. A state
/// that cannot be read is the caller's error, never a decision: the removal must then stop,
/// or the ecs.service drop-in would be left running a deleted binary.
pub fn package_removal(state: Option<&InstallState>) -> PackageRemoval {
    match state {
        None => PackageRemoval::NothingInstalled,
        Some(s) if !s.package => PackageRemoval::NotThePackages,
        Some(_) => PackageRemoval::Uninstall,
    }
}

/// The paths [`uninstall`] will write, replace or remove for `state` under `root` (ecs.config,
/// the enablement links it made, each file it lists that is there or is to be put back, the
/// state file), absolute inside the root. Read only.
fn uninstall_paths(root: &Root, state: &InstallState) -> Result<Vec<String>> {
    let there = |p: &str| files::metadata(root, p, false).map(|m| m.is_some());
    let layout = layout_of(state);
    let mut out = Vec::new();
    if state.ecs_config.is_some() && there(artifacts::ECS_CONFIG_PATH)? {
        out.push(artifacts::ECS_CONFIG_PATH.to_string());
    }
    if state.wants_link && link_ok(root, &layout) {
        out.push(artifacts::WANTS_LINK.to_string());
    }
    for o in Optional::ALL.into_iter().filter(|o| lists(state, *o) && optional_link_ok(root, *o, &layout)) {
        out.push(o.link().to_string());
    }
    for f in &state.files {
        // A file that was there before install and whose content is not kept is left.
        let left = f.before.is_none() && f.before_mode.is_some();
        if !left && (f.before.is_some() || there(&f.path)?) {
            out.push(f.path.clone());
        }
    }
    out.push(artifacts::STATE_PATH.to_string());
    Ok(out)
}

/// Uninstall's precondition, checked before the watcher is stopped, the rule set removed
/// or route_localnet put back: every folder uninstall will write in can be written
/// ([`super::preflight::check_uninstall`]). Nothing when nothing is installed.
///
/// Errors: the state cannot be read; a folder cannot be written (the message names it and
/// says that nothing was changed).
pub fn check_uninstall(root: &Root) -> Result<()> {
    let Some(state) = read_state(root)? else { return Ok(()) };
    super::preflight::check_uninstall(root, &uninstall_paths(root, &state)?)
}

/// Whether `uninstall` removes the live rule set (what `remove` does) before it deletes
/// the files: on the running system (the installed units made it), or in the network
/// namespace `--netns` names. Never for another `--root` alone: an image's rule set is
/// live nowhere, and a system booted from it after uninstall starts without one.
pub fn uninstall_removes_rule_set(root_is_system: bool, netns_given: bool) -> bool {
    root_is_system || netns_given
}

/// What install or uninstall tells systemd (see [`systemd_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemdStep {
    /// `--root` names another tree (an image being built): no systemctl is run; its
    /// systemd loads the units when it boots.
    OtherRoot,
    /// The running system is not run by systemd (no `/run/systemd/system`): no systemctl.
    NoSystemd,
    /// systemd runs, and no unit, drop-in or link changed: nothing to reload.
    Unchanged,
    /// systemd runs and a unit, the drop-in or the link changed: `systemctl daemon-reload`,
    /// so that ecs.service's hook and the boot unit are the files now on disk (after
    /// uninstall: no hook naming a deleted binary).
    Reload,
}

/// What install or uninstall does to the running watch unit ([`watch_action`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchAction {
    /// `systemctl restart ecs-hostnet-watch.service`: start it, or restart it on the
    /// binary and configuration install just wrote.
    Restart,
    /// `systemctl stop ecs-hostnet-watch.service`: install removed it
    /// (`watch.enabled = false`).
    Stop,
}

/// What install does to the watch unit once the files are written: nothing unless systemd
/// runs this system (`step` [`SystemdStep::Reload`] or [`SystemdStep::Unchanged`]);
/// [`WatchAction::Restart`] when the configuration enables it (`enabled`),
/// [`WatchAction::Stop`] when install removed one an earlier install wrote (`removed`).
/// Uninstall stops it before anything else ([`stop_watch`]). Pure.
pub fn watch_action(step: SystemdStep, enabled: bool, removed: bool) -> Option<WatchAction> {
    match (step, enabled, removed) {
        (SystemdStep::OtherRoot | SystemdStep::NoSystemd, ..) => None,
        (_, true, _) => Some(WatchAction::Restart),
        (_, false, true) => Some(WatchAction::Stop),
        (_, false, false) => None,
    }
}

/// Uninstall's first step on the running system: stops the watch unit when the install
/// state lists it, before the rule set is removed (a running watcher would repair the
/// removal). Nothing under another `--root`, without systemd, or when nothing is
/// installed. Returns lines for people.
///
/// Errors: the state cannot be read; systemctl could not be run or failed.
pub fn stop_watch(root: &Root) -> Result<Vec<String>> {
    if !root.is_system() || !systemd::booted() {
        return Ok(vec![]);
    }
    if !read_state(root)?.is_some_and(|s| lists(&s, Optional::Watch)) {
        return Ok(vec![]);
    }
    systemd::stop(artifacts::WATCH_UNIT)
        .context("cannot stop the watcher, so nothing was uninstalled (it would repair the removal)")?;
    Ok(vec![format!("stopped {} (systemctl stop)", artifacts::WATCH_UNIT)])
}

/// Decides [`SystemdStep`] from where install/uninstall ran (`root_is_system`: no
/// `--root`), whether systemd runs there (`systemd_booted`), and whether a unit file,
/// the drop-in or the enablement link changed. Pure.
pub fn systemd_step(root_is_system: bool, systemd_booted: bool, units_changed: bool) -> SystemdStep {
    match (root_is_system, systemd_booted, units_changed) {
        (false, _, _) => SystemdStep::OtherRoot,
        (true, false, _) => SystemdStep::NoSystemd,
        (true, true, false) => SystemdStep::Unchanged,
        (true, true, true) => SystemdStep::Reload,
    }
}

/// The line about the ECS agent once ecs.config's agent keys changed (`keys_changed`):
/// the agent reads the file only when it starts. `agent_active` is `systemctl is-active
/// ecs.service` (asked only when systemd runs). `None` when there is nothing to say: no
/// key changed, or an image (`--root`), whose agent has not started yet. Pure.
pub fn agent_note(step: SystemdStep, keys_changed: bool, agent_active: Option<bool>) -> Option<String> {
    let file = artifacts::ECS_CONFIG_PATH;
    match (keys_changed, step, agent_active) {
        (false, ..) | (true, SystemdStep::OtherRoot, _) => None,
        (true, SystemdStep::NoSystemd, _) | (true, _, None) => {
            Some(format!("the ECS agent reads {file} when it starts: restart it, if it runs, for the changed keys"))
        }
        (true, _, Some(true)) => Some(format!(
            "ecs.service is running and reads {file} only when it starts: run `systemctl restart ecs` for the changed keys"
        )),
        (true, _, Some(false)) => {
            Some(format!("ecs.service is not running; it reads the changed keys of {file} when it starts"))
        }
    }
}

/// Tells systemd what install or uninstall changed ([`systemd_step`]: `systemctl
/// daemon-reload` on the running system when a unit changed, nothing under `--root`) and
/// says what the ECS agent needs ([`agent_note`]). Returns lines for people.
///
/// Errors: systemctl could not be run or failed (the files are already written; the
/// message says so and what to run).
pub fn tell_systemd(root: &Root, report: &Report) -> Result<Vec<String>> {
    let step = systemd_step(root.is_system(), root.is_system() && systemd::booted(), report.units_changed);
    let mut lines = Vec::new();
    match step {
        SystemdStep::Reload => {
            systemd::daemon_reload()
                .context("the files are in place, but systemd was not told: run `systemctl daemon-reload`")?;
            lines.push("reloaded systemd's units (systemctl daemon-reload)".to_string());
        }
        SystemdStep::NoSystemd if report.units_changed => {
            lines.push("systemd is not running here (no /run/systemd/system): no daemon-reload".to_string());
        }
        SystemdStep::OtherRoot if report.units_changed => lines.push(
            "no systemctl run (--root): systemd reads the units of this root when a system boots from it".to_string(),
        ),
        _ => {}
    }
    // The watcher first: it then runs the binary and configuration just written; then the
    // metrics timer.
    for o in Optional::ALL {
        let unit = o.unit();
        match watch_action(step, report.enabled(o), report.removed(o)) {
            Some(WatchAction::Restart) => {
                systemd::restart(unit).with_context(|| {
                    format!("the files are in place, but {unit} did not start: see `journalctl -u {unit}`")
                })?;
                lines.push(format!("(re)started {unit} (systemctl restart)"));
            }
            Some(WatchAction::Stop) => {
                systemd::stop(unit).with_context(|| format!("{unit} is removed, but it could not be stopped"))?;
                lines.push(format!("stopped {unit} (systemctl stop)"));
            }
            None => {}
        }
    }
    let agent_active = match step {
        SystemdStep::Reload | SystemdStep::Unchanged if report.agent_keys_changed => {
            Some(systemd::is_active("ecs.service").context("cannot ask systemd whether the ECS agent runs")?)
        }
        _ => None,
    };
    lines.extend(agent_note(step, report.agent_keys_changed, agent_active));
    Ok(lines)
}

/// The files of an installed host as they are now (for [`crate::plan::files::plan_files`]).
pub fn read_live_files(root: &Root, state: &InstallState) -> Result<(LiveFiles, bool)> {
    let mut live = LiveFiles::new();
    for f in &state.files {
        if f.written.is_some() {
            live.insert(f.path.clone(), read_opt(root, &f.path)?);
        }
    }
    live.insert(artifacts::ECS_CONFIG_PATH.into(), read_opt(root, artifacts::ECS_CONFIG_PATH)?);
    Ok((live, link_ok(root, &layout_of(state))))
}

/// File drift of an installed host against `config` (its agent keys and its ecs-init hook):
/// changes for people and, with `fix`, the repairs
/// carried out. Nothing when nothing is installed.
///
/// With `fix`, a state of the previous schema is also rewritten without its copies of
/// ecs.config ([`migrate_state`]).
pub fn converge_files(root: &Root, config: &crate::config::Config, fix: bool) -> Result<Vec<Change>> {
    let Some((state, migrated)) = read_state_as_found(root)? else { return Ok(vec![]) };
    if fix && migrated {
        write_state(root, &state)?;
    }
    let (live, link) = read_live_files(root, &state)?;
    let (mut changes, fixes) = crate::plan::files::plan_files_configured(&state, &live, link, config);
    // The optional units' links, like the boot unit's (a missing link is drift).
    let layout = layout_of(&state);
    let mut missing_links = Vec::new();
    for o in Optional::ALL {
        if lists(&state, o) && files::metadata(root, o.link(), false)?.is_none() {
            missing_links.push(o);
            changes.push(
                Change::new(Action::Add, Subject::Symlink { path: o.link().into() }, Reason::FileDeleted)
                    .new_form(o.target(&layout)),
            );
        }
    }
    // The binary's content is not checked (an upgrade replaces it), its mode and owner are:
    // the units run it as root.
    let binary = if state.files.iter().any(|f| f.path == artifacts::BIN_PATH) {
        crate::plan::files::binary_drift(
            files::metadata(root, artifacts::BIN_PATH, true)?
                .filter(|m| m.is_file)
                .map(|m| crate::plan::files::FileOwner { mode: m.mode, uid: m.uid, gid: m.gid }),
        )
    } else {
        None
    };
    if fix {
        for f in &fixes {
            write_atomic(root, &f.path, &f.content, perm_of(&f.path))?;
        }
        if state.wants_link && !link {
            files::replace_symlink(root, artifacts::WANTS_LINK, layout.unit)?;
        }
        for o in &missing_links {
            files::replace_symlink(root, o.link(), o.target(&layout))?;
        }
        if binary.is_some() {
            files::set_perm(root, artifacts::BIN_PATH, perm_of(artifacts::BIN_PATH))?;
        }
    }
    changes.extend(binary);
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// `needle` as it would show inside base64 of any text containing it, at each of the
    /// three alignments (the characters that depend only on the needle's bytes).
    fn base64_forms(needle: &[u8]) -> Vec<String> {
        (0..3usize)
            .map(|pad| {
                let mut t = vec![b'x'; pad];
                t.extend_from_slice(needle);
                let enc = b64(&t);
                let skip = if pad == 0 { 0 } else { 4 };
                let keep = (t.len() / 3) * 4;
                enc[skip..keep].to_string()
            })
            .collect()
    }

    const SECRET: &str = r#"{"https://index.docker.io/v1/":{"auth":"c2VjcmV0"}}"#;

    #[test]
    fn a_v1_state_becomes_v2_without_any_copy_and_restores_the_same_bytes() {
        let before = format!("ECS_CLUSTER=prod\r\nECS_ENGINE_AUTH_DATA={SECRET}\r\nECS_AWSVPC_BLOCK_IMDS=false\r\n");
        let keys = crate::config::default_config().agent_keys();
        let written = ecs_config::set_all(before.as_bytes(), &keys);
        // What ecs-hostnet 0.1 wrote (its field names and encodings, by hand).
        let v1_json = serde_json::json!({
            "schema": "ecs-hostnet.install/v1",
            "files": [
                {"path": artifacts::BIN_PATH, "before": b64(b"\x7fELF old binary"), "before_mode": 0o755, "written": null},
                {"path": artifacts::CONFIG_PATH, "before": null, "before_mode": null, "written": b64(b"x = 1\n")},
            ],
            "wants_link": true,
            "ecs_config": {
                "before": b64(before.as_bytes()),
                "keys_before": {
                    "ECS_ENABLE_TASK_IAM_ROLE": null,
                    "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST": null,
                    "ECS_AWSVPC_BLOCK_IMDS": "false"
                },
                "written": b64(&written)
            },
            "created_dirs": ["/etc/ecs-hostnet"]
        })
        .to_string();
        let old: v1::InstallState = serde_json::from_str(&v1_json).unwrap();
        let new = migrate_v1(old);
        let text = serde_json::to_string_pretty(&new).unwrap();
        // The test can see a copy: the v1 text holds the secret's base64.
        let mut needles: Vec<String> = vec!["c2VjcmV0".into(), "ECS_ENGINE_AUTH_DATA".into(), "ECS_CLUSTER".into()];
        needles.extend(base64_forms(SECRET.as_bytes()));
        needles.extend(base64_forms(b"c2VjcmV0"));
        needles.push(SECRET.as_bytes().iter().map(|b| format!("{b:02x}")).collect());
        assert!(needles.iter().any(|n| v1_json.contains(n.as_str())), "the needles do not find the v1 copy");
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{n:?} is still in the migrated state:\n{text}");
        }
        assert!(!text.contains(&b64(b"\x7fELF old binary")), "the old binary is kept:\n{text}");
        assert_eq!(new.schema, STATE_SCHEMA);
        assert!(new.files[0].existed() && new.files[0].before.is_none(), "{:?}", new.files[0]);
        assert!(!new.files[1].existed());
        assert_eq!((new.wants_link, &new.created_dirs[..]), (true, &["/etc/ecs-hostnet".to_string()][..]));
        let rec = new.ecs_config.as_ref().unwrap();
        assert_eq!(*rec, ecs_config::record(Some(before.as_bytes()), &keys));
        assert_eq!(ecs_config::restore(&written, rec).as_deref(), Some(before.as_bytes()));
        // A v1 ecs.config that install created: still removed by uninstall after migration.
        let created: v1::InstallState = serde_json::from_value(serde_json::json!({
            "schema": "ecs-hostnet.install/v1", "files": [], "wants_link": false, "created_dirs": [],
            "ecs_config": {"before": null, "keys_before": {"ECS_AWSVPC_BLOCK_IMDS": null}, "written": b64(b"ECS_AWSVPC_BLOCK_IMDS=true\n")}
        }))
        .unwrap();
        let rec = migrate_v1(created).ecs_config.unwrap();
        assert_eq!(ecs_config::restore(b"ECS_AWSVPC_BLOCK_IMDS=true\n", &rec), None);
    }

    #[test]
    fn package_removal_uninstalls_only_an_install_beside_the_package() {
        let state = |package| InstallState { schema: STATE_SCHEMA.into(), package, ..Default::default() };
        assert_eq!(package_removal(None), PackageRemoval::NothingInstalled);
        assert_eq!(package_removal(Some(&state(false))), PackageRemoval::NotThePackages);
        assert_eq!(package_removal(Some(&state(true))), PackageRemoval::Uninstall);
    }

    #[test]
    fn systemd_is_told_only_on_the_running_system_when_units_changed() {
        use SystemdStep::*;
        let table = [
            ((false, true, true), OtherRoot),
            ((false, false, true), OtherRoot),
            ((false, true, false), OtherRoot),
            ((true, false, true), NoSystemd),
            ((true, true, false), Unchanged),
            ((true, true, true), Reload),
        ];
        for ((system, booted, changed), want) in table {
            assert_eq!(
                systemd_step(system, booted, changed),
                want,
                "system {system}, booted {booted}, changed {changed}"
            );
        }
        assert!(uninstall_removes_rule_set(true, false) && uninstall_removes_rule_set(false, true));
        assert!(!uninstall_removes_rule_set(false, false), "an image's uninstall touches no kernel");
    }

    #[test]
    fn the_watcher_is_restarted_when_enabled_stopped_when_removed_and_left_alone_off_system() {
        use SystemdStep::*;
        for step in [Reload, Unchanged] {
            assert_eq!(watch_action(step, true, false), Some(WatchAction::Restart), "{step:?}");
            assert_eq!(watch_action(step, false, true), Some(WatchAction::Stop), "{step:?}");
            assert_eq!(watch_action(step, false, false), None, "{step:?}: nothing was installed to stop");
        }
        for step in [OtherRoot, NoSystemd] {
            assert_eq!(watch_action(step, true, false), None, "{step:?}");
            assert_eq!(watch_action(step, false, true), None, "{step:?}");
        }
    }

    #[test]
    fn the_agent_is_told_to_restart_only_when_its_keys_changed_and_it_runs() {
        use SystemdStep::*;
        assert_eq!(agent_note(Reload, false, Some(true)), None);
        assert_eq!(agent_note(OtherRoot, true, None), None, "an image's agent has not started");
        let running = agent_note(Unchanged, true, Some(true)).unwrap();
        assert!(running.contains("systemctl restart ecs"), "{running}");
        let stopped = agent_note(Reload, true, Some(false)).unwrap();
        assert!(stopped.contains("not running") && !stopped.contains("restart"), "{stopped}");
        let unknown = agent_note(NoSystemd, true, None).unwrap();
        assert!(unknown.contains("restart it, if it runs"), "{unknown}");
    }
}
