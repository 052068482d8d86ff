//! File drift of an installed host, and the file changes between two configurations (pure).

use crate::desired::ecs_config;
use crate::desired::install_files::CONFIG_PATH;
use crate::desired::install_files::{BIN_PATH, DROPIN_PATH, ECS_CONFIG_PATH, Layout, WANTS_LINK, dropin_text};
use crate::model::install_state::{InstallState, InstalledEcsConfig, LiveFiles, STATE_SCHEMA};
use crate::plan::change::{Action, Change, Subject};
use crate::plan::reason::{Note, Reason};
/// A line diff of two file contents for people: `-old` / `+new` lines, with up to one
/// line of context around each change.
pub fn line_diff(old: &[u8], new: &[u8]) -> Vec<String> {
    line_diff_with_context(old, new, 1)
}

/// The diff of the agent's settings file: only the changed lines, with every line that
/// does not set one of `agent_keys` redacted ([`ecs_config::redact`]): ecs.config holds
/// secrets (`ECS_ENGINE_AUTH_DATA`) that must not reach a CI log.
pub fn agent_settings_diff(old: &[u8], new: &[u8], agent_keys: &[(String, Option<String>)]) -> Vec<String> {
    let keep: Vec<&str> = agent_keys.iter().map(|(k, _)| k.as_str()).collect();
    line_diff_with_context(&ecs_config::redact(old, &keep), &ecs_config::redact(new, &keep), 0)
}

fn line_diff_with_context(old: &[u8], new: &[u8], context: usize) -> Vec<String> {
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let patch = diffy::DiffOptions::new().set_context_len(context).create_patch(old.as_ref(), new.as_ref());
    let mut out = Vec::new();
    for hunk in patch.hunks() {
        for line in hunk.lines() {
            let (sign, text) = match line {
                diffy::Line::Delete(t) => ('-', t),
                diffy::Line::Insert(t) => ('+', t),
                diffy::Line::Context(t) => (' ', t),
            };
            let text = text.trim_end_matches('\n').trim_end_matches('\r');
            out.push(format!("{sign}{}", crate::model::nft_text::printable(text)));
        }
    }
    out
}

/// One fix for a drifted installed file: write `content` to `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFix {
    /// Absolute path as on the target host (without `--root`).
    pub path: String,
    /// What install wrote, or ecs.config with the configured agent keys set again.
    pub content: Vec<u8>,
}

/// Compares an installed host with what install left and what the configuration wants
/// of ecs.config. `live` holds every path in `state.files` plus [`ECS_CONFIG_PATH`];
/// `link_ok` says whether the enablement symlink is in place (pointing at the boot unit of
/// the state's [`Layout`]: the package's or install's own).
pub fn plan_files(
    state: &InstallState,
    live: &LiveFiles,
    link_ok: bool,
    agent_keys: &[(String, Option<String>)],
) -> (Vec<Change>, Vec<FileFix>) {
    let mut changes = Vec::new();
    let mut fixes = Vec::new();
    for f in &state.files {
        let Some(written) = &f.written else { continue };
        let now = live.get(&f.path).cloned().flatten();
        if now.as_deref() == Some(&written.0[..]) {
            continue;
        }
        // The configuration is the operator's to edit: only a missing one is drift.
        if f.path == CONFIG_PATH && now.is_some() {
            continue;
        }
        let (action, reason, details) = match &now {
            None => (Action::Add, Reason::FileDeleted, vec![]),
            Some(n) => (Action::Change, Reason::FileModified, line_diff(n, &written.0)),
        };
        changes.push(Change::new(action, Subject::File { path: f.path.clone() }, reason).details(details));
        fixes.push(FileFix { path: f.path.clone(), content: written.0.clone() });
    }
    if state.wants_link && !link_ok {
        changes.push(
            Change::new(Action::Add, Subject::Symlink { path: WANTS_LINK.into() }, Reason::BootUnitNotEnabled)
                .new_form(Layout::of(state.package).unit),
        );
    }
    if state.ecs_config.is_some() && !agent_keys.is_empty() {
        let now = live.get(ECS_CONFIG_PATH).cloned().flatten().unwrap_or_default();
        let want = ecs_config::set_all(&now, agent_keys);
        if want != now {
            changes.push(
                Change::new(
                    Action::Change,
                    Subject::File { path: ECS_CONFIG_PATH.into() },
                    Reason::AgentSettingsDiffer,
                )
                .details(agent_settings_diff(&now, &want, agent_keys)),
            );
            fixes.push(FileFix { path: ECS_CONFIG_PATH.into(), content: want });
        }
    }
    (changes, fixes)
}

/// Mode and owner of an installed file as found on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOwner {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The mode the installed binary must have: the units run it as root at boot, so it is
/// executable and no one but root may change it.
pub const BINARY_MODE: u32 = 0o755;

/// The change that gives the installed binary ([`BIN_PATH`]) mode [`BINARY_MODE`] and
/// owner root:root, when `found` (its mode and owner now; `None` when it is not a file)
/// differs. Its content is never drift: an upgrade replaces it.
pub fn binary_drift(found: Option<FileOwner>) -> Option<Change> {
    let f = found?;
    if (f.mode, f.uid, f.gid) == (BINARY_MODE, 0, 0) {
        return None;
    }
    Some(Change::new(
        Action::Change,
        Subject::File { path: BIN_PATH.into() },
        Reason::BinaryModeOrOwner { mode: f.mode, uid: f.uid, gid: f.gid },
    ))
}

/// The file changes of `diff OLD NEW`: applying `new` on a host installed with `old`
/// changes only the agent keys in ecs.config (the units do not depend on the
/// configuration; the configuration file is the operator's, never drift). The host's
/// ecs.config holds the keys `old` set.
pub fn diff_files(old: &crate::config::Config, new: &crate::config::Config) -> Vec<Change> {
    let old_keys = old.agent_keys();
    if old_keys.is_empty() {
        return vec![];
    }
    let state = InstallState {
        schema: STATE_SCHEMA.into(),
        ecs_config: Some(InstalledEcsConfig::default()),
        ..Default::default()
    };
    let live: LiveFiles = [(ECS_CONFIG_PATH.to_string(), Some(ecs_config::set_all(b"", &old_keys)))].into();
    plan_files(&state, &live, true, &new.agent_keys()).0
}

/// What `diff OLD NEW` cannot show as a change: `agent.manage_ecs_config` switched.
pub fn diff_files_note(old: &crate::config::Config, new: &crate::config::Config) -> Option<Note> {
    match (old.agent.manage_ecs_config.v, new.agent.manage_ecs_config.v) {
        (false, true) => Some(Note::ManageEcsConfigTurnedOn),
        (true, false) => Some(Note::ManageEcsConfigTurnedOff),
        _ => None,
    }
}

/// [`plan_files`] for the configuration `config` (its agent keys, and the ecs-init hook of
/// its `boot.agent_on_error`, which may differ from the one install wrote): a hook still as
/// install wrote it, for the other choice, `differs from the configuration`; a hook deleted
/// or edited is repaired to the configuration's text.
pub fn plan_files_configured(
    state: &InstallState,
    live: &LiveFiles,
    link_ok: bool,
    config: &crate::config::Config,
) -> (Vec<Change>, Vec<FileFix>) {
    let want = dropin_text(config.boot.agent_on_error.v, Layout::of(state.package).bin).into_bytes();
    let mut wanted = state.clone();
    let mut choice_changed = false;
    if let Some(written) = wanted.files.iter_mut().filter(|f| f.path == DROPIN_PATH).find_map(|f| f.written.as_mut())
        && written.0 != want
    {
        choice_changed = live.get(DROPIN_PATH).is_some_and(|now| now.as_deref() == Some(&written.0[..]));
        written.0 = want;
    }
    let (mut changes, fixes) = plan_files(&wanted, live, link_ok, &config.agent_keys());
    let hook = Subject::File { path: DROPIN_PATH.into() };
    for c in changes.iter_mut().filter(|c| choice_changed && c.subject == hook) {
        c.reason = Reason::DiffersFromConfiguration;
    }
    (changes, fixes)
}

/// The hook change of `diff OLD NEW`: a host installed with `old` has its hook; `new`
/// wants the one of its `boot.agent_on_error` (shown for install's own binary path,
/// [`BIN_PATH`]: the choice, not the path, is what differs).
pub fn diff_hook(old: &crate::config::Config, new: &crate::config::Config) -> Option<Change> {
    let hook = |c: &crate::config::Config| dropin_text(c.boot.agent_on_error.v, BIN_PATH);
    let (was, want) = (hook(old), hook(new));
    (was != want).then(|| {
        Change::new(Action::Change, Subject::File { path: DROPIN_PATH.into() }, Reason::DiffersFromConfiguration)
            .details(line_diff(was.as_bytes(), want.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentOnError;
    use crate::desired::install_files::{DROPIN_PATH, LOCAL, UNIT_PATH, dropin_text, text_files, unit_text};
    use crate::model::install_state::{Bytes, InstalledFile};

    fn state() -> InstallState {
        InstallState {
            schema: STATE_SCHEMA.into(),
            files: text_files(b"x = 1\n", &LOCAL)
                .into_iter()
                .map(|f| InstalledFile {
                    path: f.path.into(),
                    before: None,
                    before_mode: None,
                    before_owner: None,
                    written: Some(Bytes(f.content)),
                })
                .collect(),
            wants_link: true,
            ecs_config: Some(InstalledEcsConfig::default()),
            created_dirs: vec![],
            ..Default::default()
        }
    }

    fn keys() -> Vec<(String, Option<String>)> {
        crate::config::default_config().agent_keys()
    }

    fn live(state: &InstallState, ecs: &[u8]) -> LiveFiles {
        let mut l: LiveFiles = state.files.iter().map(|f| (f.path.clone(), f.written.clone().map(|b| b.0))).collect();
        l.insert(ECS_CONFIG_PATH.into(), Some(ecs.to_vec()));
        l
    }

    #[test]
    fn installed_host_has_no_drift() {
        let s = state();
        let ecs = ecs_config::set_all(b"ECS_CLUSTER=a\n", &keys());
        let (changes, fixes) = plan_files(&s, &live(&s, &ecs), true, &keys());
        assert!(changes.is_empty() && fixes.is_empty(), "{changes:?}");
    }

    #[test]
    fn drift_is_a_line_diff_and_a_fix() {
        let s = state();
        let mut l = live(&s, b"ECS_CLUSTER=a\nECS_ENABLE_TASK_IAM_ROLE=false\n");
        let unit = String::from_utf8(l[UNIT_PATH].clone().unwrap()).unwrap().replace("Type=oneshot", "Type=simple");
        l.insert(UNIT_PATH.into(), Some(unit.into_bytes()));
        l.insert(DROPIN_PATH.into(), None);
        let (changes, fixes) = plan_files(&s, &l, false, &keys());
        let objects: Vec<_> = changes.iter().map(|c| c.object()).collect();
        assert_eq!(
            objects,
            [
                "file /etc/systemd/system/ecs-hostnet.service",
                "file /etc/systemd/system/ecs.service.d/ecs-hostnet.conf",
                "symlink /etc/systemd/system/sysinit.target.wants/ecs-hostnet.service",
                "file /etc/ecs/ecs.config"
            ]
        );
        assert!(changes[0].details.contains(&"-Type=simple".to_string()), "{:?}", changes[0].details);
        assert!(changes[0].details.contains(&"+Type=oneshot".to_string()));
        assert!(
            changes[3].details.contains(&"-ECS_ENABLE_TASK_IAM_ROLE=false".to_string()),
            "{:?}",
            changes[3].details
        );
        assert_eq!(fixes.len(), 3);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = state();
        s.files[0].before = Some(Bytes(vec![0xff, 0, b'\n']));
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<InstallState>(&text).unwrap(), s);
    }

    fn config(on_error: &str) -> crate::config::Config {
        crate::config::parse("f.toml", &format!("[boot]\nagent_on_error = \"{on_error}\"\n")).unwrap()
    }

    #[test]
    fn the_hook_follows_the_configured_choice() {
        let s = state();
        let ecs = ecs_config::set_all(b"", &keys());
        // Installed with "block" (the default): a configuration that says "start" differs.
        let l = live(&s, &ecs);
        let (changes, fixes) = plan_files_configured(&s, &l, true, &config("start"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].object(), "file /etc/systemd/system/ecs.service.d/ecs-hostnet.conf");
        assert_eq!(changes[0].reason, Reason::DiffersFromConfiguration);
        assert!(changes[0].details.contains(&"+ExecStartPre=-/usr/local/sbin/ecs-hostnet apply".to_string()));
        assert_eq!(
            fixes,
            [FileFix { path: DROPIN_PATH.into(), content: dropin_text(AgentOnError::Start, BIN_PATH).into() }]
        );
        // Once repaired, that is no drift, although the state still holds install's text.
        let mut repaired = l.clone();
        repaired.insert(DROPIN_PATH.into(), Some(dropin_text(AgentOnError::Start, BIN_PATH).into()));
        assert!(plan_files_configured(&s, &repaired, true, &config("start")).0.is_empty());
        // ... and back to "block" it differs again.
        let (changes, _) = plan_files_configured(&s, &repaired, true, &config("block"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        // A deleted or edited hook is repaired to the configuration's text, for its own reason.
        let mut gone = l.clone();
        gone.insert(DROPIN_PATH.into(), None);
        let (changes, fixes) = plan_files_configured(&s, &gone, true, &config("start"));
        assert_eq!(changes[0].reason, Reason::FileDeleted);
        assert_eq!(fixes[0].content, dropin_text(AgentOnError::Start, BIN_PATH).into_bytes());
        let mut edited = l.clone();
        edited.insert(DROPIN_PATH.into(), Some(b"[Service]\n".to_vec()));
        assert_eq!(plan_files_configured(&s, &edited, true, &config("start")).0[0].reason, Reason::FileModified);
        // The same choice as install: exactly plan_files.
        assert_eq!(plan_files_configured(&s, &l, true, &config("block")), plan_files(&s, &l, true, &keys()));
    }

    #[test]
    fn diff_shows_the_hook_when_the_choice_changes() {
        assert_eq!(diff_hook(&config("block"), &config("block")), None);
        let c = diff_hook(&config("block"), &config("start")).unwrap();
        assert!(c.details.contains(&"-ExecStartPre=/usr/local/sbin/ecs-hostnet apply".to_string()), "{c:?}");
        assert!(c.details.contains(&"+ExecStartPre=-/usr/local/sbin/ecs-hostnet apply".to_string()), "{c:?}");
    }

    #[test]
    fn binary_mode_or_owner_is_drift() {
        let ok = FileOwner { mode: 0o755, uid: 0, gid: 0 };
        assert_eq!(binary_drift(Some(ok)), None);
        assert_eq!(binary_drift(None), None, "a missing binary has no mode to fix");
        for bad in [
            FileOwner { mode: 0o644, ..ok },
            FileOwner { mode: 0o4755, ..ok },
            FileOwner { mode: 0o775, ..ok },
            FileOwner { uid: 1000, ..ok },
            FileOwner { gid: 100, ..ok },
        ] {
            let c = binary_drift(Some(bad)).unwrap_or_else(|| panic!("{bad:?} is drift"));
            assert_eq!(c.object(), "file /usr/local/sbin/ecs-hostnet");
            assert_eq!(c.action, Action::Change);
            assert!(
                c.reason.to_string().contains(&format!("mode {:04o} owner {}:{}", bad.mode, bad.uid, bad.gid)),
                "{}",
                c.reason
            );
        }
    }

    #[test]
    fn units_run_apply_from_the_installed_binary() {
        assert!(unit_text(&LOCAL).contains("ExecStart=/usr/local/sbin/ecs-hostnet apply\n"));
        assert!(unit_text(&LOCAL).contains("Before=network-pre.target docker.service ecs.service"));
        assert!(unit_text(&LOCAL).contains("RemainAfterExit=yes"));
        assert!(
            dropin_text(AgentOnError::Block, BIN_PATH).contains("ExecStartPre=/usr/local/sbin/ecs-hostnet apply\n")
        );
        assert!(
            dropin_text(AgentOnError::Start, BIN_PATH).contains("ExecStartPre=-/usr/local/sbin/ecs-hostnet apply\n")
        );
    }
}
