//! `install` and `uninstall`, and the file half of `plan`/`check`/`apply`: reading and
//! writing the files of [`crate::desired::install_files`] under a root directory.
//!
//! Every write is atomic: a temporary file in the same folder, fsync, rename over the
//! target, fsync of the folder. A crash or `kill -9` at any moment leaves each file
//! either old or new, never partial. Files are written only when their content differs.
//! The install state is written before the files it describes and removed after them,
//! so an interrupted install or uninstall can always be finished or undone by running
//! either command again.

use crate::desired::ecs_config;
use crate::desired::install_files as artifacts;
use crate::host::files::{Root, missing_dirs, read_opt, remove_file, temp_path, write_atomic};
use crate::model::install_state::{Bytes, InstallState, InstalledEcsConfig, InstalledFile, LiveFiles};
use crate::plan::change::Change;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Folders on the way to the state file that hold nothing but what an install killed
/// before its state was written left behind (the folder chain and a temporary state
/// file), outermost first. Only the state file's folders can be created before the state
/// records them.
fn leftover_state_dirs(root: &Root) -> Vec<String> {
    let state = Path::new(artifacts::STATE_PATH);
    let tmp_name = temp_path(state).file_name().map(|n| n.to_os_string());
    let mut out = Vec::new();
    let mut child: Option<std::ffi::OsString> = None;
    let mut dir = state.parent();
    while let Some(d) = dir.filter(|d| *d != Path::new("/")) {
        let entries = match std::fs::read_dir(root.at(&d.to_string_lossy())) {
            Ok(e) => e,
            // Killed before this level was made: look at its parent.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                dir = d.parent();
                continue;
            }
            Err(_) => break,
        };
        let state_dir = Some(d) == state.parent();
        let only_ours = entries.flatten().all(|e| {
            let n = Some(e.file_name());
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

/// Reads the install state; `Ok(None)` when nothing is installed.
pub fn read_state(root: &Root) -> Result<Option<InstallState>> {
    let path = root.at(artifacts::STATE_PATH);
    let Some(bytes) = read_opt(&path)? else { return Ok(None) };
    let state: InstallState = serde_json::from_slice(&bytes).with_context(|| {
        format!("{}: not an ecs-hostnet install state; remove it by hand if nothing is installed", path.display())
    })?;
    if state.schema != crate::model::install_state::STATE_SCHEMA {
        bail!(
            "{}: unknown schema {:?} (this ecs-hostnet reads {})",
            path.display(),
            state.schema,
            crate::model::install_state::STATE_SCHEMA
        );
    }
    Ok(Some(state))
}

fn write_state(root: &Root, state: &InstallState) -> Result<bool> {
    let mut text = serde_json::to_vec_pretty(state)?;
    text.push(b'\n');
    Ok(write_atomic(&root.at(artifacts::STATE_PATH), &text, 0o600)?)
}

fn link_ok(root: &Root) -> bool {
    std::fs::read_link(root.at(artifacts::WANTS_LINK)).is_ok_and(|t| t == Path::new(artifacts::UNIT_PATH))
}

/// What install or uninstall did, one line each.
pub type Report = Vec<String>;

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
        schema: crate::model::install_state::STATE_SCHEMA.into(),
        // Folders an earlier, interrupted install made before it could record them.
        created_dirs: leftover_state_dirs(root),
        ..Default::default()
    });
    let mut targets: Vec<(&str, Vec<u8>, u32, bool)> =
        artifacts::text_files(config_text).into_iter().map(|f| (f.path, f.content, f.mode, true)).collect();
    targets.insert(0, (artifacts::BIN_PATH, binary.to_vec(), 0o755, false));

    // Record what is there before touching anything.
    for abs in
        targets.iter().map(|t| t.0).chain([artifacts::WANTS_LINK, artifacts::STATE_PATH, artifacts::ECS_CONFIG_PATH])
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
            None => state.files.push(InstalledFile {
                path: abs.to_string(),
                before: read_opt(&root.at(abs))?.map(Bytes),
                before_mode: std::fs::metadata(root.at(abs)).ok().map(|m| m.permissions().mode() & 0o7777),
                written,
            }),
        }
    }
    let ecs_path = root.at(artifacts::ECS_CONFIG_PATH);
    let ecs_now = read_opt(&ecs_path)?;
    let ecs_new =
        (!agent_keys.is_empty()).then(|| ecs_config::set_all(ecs_now.as_deref().unwrap_or_default(), agent_keys));
    if let Some(new) = &ecs_new {
        let keys_before = agent_keys
            .iter()
            .map(|(k, _)| (k.clone(), ecs_now.as_deref().and_then(|t| ecs_config::get(t, k))))
            .collect();
        state.ecs_config = Some(match state.ecs_config.take() {
            Some(mut e) => {
                e.written = Bytes(new.clone());
                e
            }
            None => InstalledEcsConfig { before: ecs_now.clone().map(Bytes), keys_before, written: Bytes(new.clone()) },
        });
    }
    if !state.wants_link
        && !root.at(artifacts::WANTS_LINK).exists()
        && std::fs::symlink_metadata(root.at(artifacts::WANTS_LINK)).is_err()
    {
        state.wants_link = true;
    }

    let mut report = Vec::new();
    if write_state(root, &state)? {
        report.push(format!("wrote {}", artifacts::STATE_PATH));
    }
    for (abs, content, mode, _) in &targets {
        let verb = if write_atomic(&root.at(abs), content, *mode)? { "wrote" } else { "unchanged" };
        report.push(format!("{verb} {abs}"));
    }
    if state.wants_link && !link_ok(root) {
        let link = root.at(artifacts::WANTS_LINK);
        let dir = link.parent().context("link has a folder")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = temp_path(&link);
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(artifacts::UNIT_PATH, &tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).with_context(|| format!("cannot create {}", link.display()))?;
        report.push(format!("enabled {} (symlink {})", artifacts::UNIT_PATH, artifacts::WANTS_LINK));
    } else if state.wants_link || link_ok(root) {
        report.push(format!("unchanged {}", artifacts::WANTS_LINK));
    } else {
        report.push(format!(
            "left alone: {} exists and is not ecs-hostnet's link; the boot unit is NOT enabled",
            artifacts::WANTS_LINK
        ));
    }
    if let Some(new) = &ecs_new {
        let verb = if write_atomic(&ecs_path, new, 0o644)? { "updated" } else { "unchanged" };
        let keys: Vec<String> = agent_keys.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or(""))).collect();
        report.push(format!("{verb} {} ({})", artifacts::ECS_CONFIG_PATH, keys.join(", ")));
    }
    Ok(report)
}

/// Removes what install added and puts back what it replaced. Idempotent.
pub fn uninstall(root: &Root) -> Result<Report> {
    let Some(state) = read_state(root)? else {
        let leftovers = leftover_state_dirs(root);
        let _ = std::fs::remove_file(temp_path(&root.at(artifacts::STATE_PATH)));
        let mut report = vec!["nothing installed (no install state)".to_string()];
        for d in leftovers.iter().rev() {
            if std::fs::remove_dir(root.at(d)).is_ok() {
                report.push(format!("removed folder {d} (left by an interrupted install)"));
            }
        }
        return Ok(report);
    };
    let mut report = Vec::new();
    if let Some(e) = &state.ecs_config {
        let path = root.at(artifacts::ECS_CONFIG_PATH);
        let now = read_opt(&path)?;
        let before = e.before.as_ref().map(|b| &b.0[..]);
        let keys_as_before = |t: &[u8]| e.keys_before.iter().all(|(k, v)| ecs_config::get(t, k) == *v);
        if now.as_deref() == before {
            // Never changed (install stopped before it), or already restored.
        } else if now.as_deref() == Some(&e.written.0[..]) {
            match &e.before {
                None => {
                    remove_file(&path)?;
                }
                Some(b) => {
                    write_atomic(&path, &b.0, 0o644)?;
                }
            }
            report.push(format!("restored {}", artifacts::ECS_CONFIG_PATH));
        } else if let Some(now) = now.filter(|n| !keys_as_before(n)) {
            // Edited since install: put back our keys only, keep the other edits.
            let keys: Vec<(String, Option<String>)> =
                e.keys_before.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            write_atomic(&path, &ecs_config::set_all(&now, &keys), 0o644)?;
            report.push(format!(
                "restored the agent keys in {} (the file was edited since install)",
                artifacts::ECS_CONFIG_PATH
            ));
        }
    }
    if state.wants_link && link_ok(root) {
        remove_file(&root.at(artifacts::WANTS_LINK))?;
        report.push(format!("disabled (removed {})", artifacts::WANTS_LINK));
    }
    for f in state.files.iter().rev() {
        let path = root.at(&f.path);
        let _ = std::fs::remove_file(temp_path(&path));
        match &f.before {
            None => {
                if remove_file(&path)? {
                    report.push(format!("removed {}", f.path));
                }
            }
            Some(b) => {
                write_atomic(&path, &b.0, f.before_mode.unwrap_or(0o644))?;
                report.push(format!("restored {}", f.path));
            }
        }
    }
    for abs in [artifacts::ECS_CONFIG_PATH, artifacts::WANTS_LINK] {
        let _ = std::fs::remove_file(temp_path(&root.at(abs)));
    }
    // Only folders install created, and only when empty; those holding the state file go
    // last, right after it, so an uninstall killed before the end finds its state again.
    let holds_state = |d: &String| Path::new(artifacts::STATE_PATH).starts_with(d);
    let remove_dirs = |dirs: Vec<&String>, report: &mut Report| {
        for d in dirs.into_iter().rev() {
            if std::fs::remove_dir(root.at(d)).is_ok() {
                report.push(format!("removed folder {d}"));
            }
        }
    };
    remove_dirs(state.created_dirs.iter().filter(|d| !holds_state(d)).collect(), &mut report);
    let state_path = root.at(artifacts::STATE_PATH);
    let _ = std::fs::remove_file(temp_path(&state_path));
    remove_file(&state_path)?;
    remove_dirs(state.created_dirs.iter().filter(|d| holds_state(d)).collect(), &mut report);
    Ok(report)
}

/// The files of an installed host as they are now (for [`crate::plan::files::plan_files`]).
pub fn read_live_files(root: &Root, state: &InstallState) -> Result<(LiveFiles, bool)> {
    let mut live = LiveFiles::new();
    for f in &state.files {
        if f.written.is_some() {
            live.insert(f.path.clone(), read_opt(&root.at(&f.path))?);
        }
    }
    live.insert(artifacts::ECS_CONFIG_PATH.into(), read_opt(&root.at(artifacts::ECS_CONFIG_PATH))?);
    Ok((live, link_ok(root)))
}

/// File drift of an installed host against `config` (its agent keys and its ecs-init hook):
/// changes for people and, with `fix`, the repairs carried out. Nothing when nothing is
/// installed.
pub fn converge_files(root: &Root, config: &crate::config::Config, fix: bool) -> Result<Vec<Change>> {
    let Some(state) = read_state(root)? else { return Ok(vec![]) };
    let (live, link) = read_live_files(root, &state)?;
    let (changes, fixes) = crate::plan::files::plan_files_configured(&state, &live, link, config);
    if fix {
        for f in &fixes {
            write_atomic(&root.at(&f.path), &f.content, 0o644)?;
        }
        if state.wants_link && !link {
            let link = root.at(artifacts::WANTS_LINK);
            std::fs::create_dir_all(link.parent().context("has a folder")?)?;
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(artifacts::UNIT_PATH, &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
        }
    }
    Ok(changes)
}
