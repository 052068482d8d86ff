//! What `install` puts on a host, and how the installed files drift (pure).
//!
//! Files, all under the target root (`--root`, default `/`):
//!
//! | path | what |
//! |---|---|
//! | [`CONFIG_PATH`] | the configuration (the `-c` file, else the embedded default) |
//! | [`UNIT_PATH`] | oneshot unit running `ecs-hostnet apply` at boot, before the network, Docker and the ECS agent |
//! | [`WANTS_LINK`] | its enablement (`WantedBy=sysinit.target`, what `systemctl enable` makes) |
//! | [`DROPIN_PATH`] | the ecs-init hook: `ExecStartPre=ecs-hostnet apply` for `ecs.service` (`ExecStartPre=-...` with `boot.agent_on_error = "start"`) |
//! | [`BIN_PATH`] | the binary the units run |
//! | [`ECS_CONFIG_PATH`] | the agent's settings: only our keys are changed, in place |
//!
//! The install state ([`InstallState`](crate::model::install_state::InstallState), at [`STATE_PATH`]) records what each file held
//! before the first install and what install wrote, so `uninstall` removes exactly what
//! install added and `plan`/`check` can show drift as a diff of file lines.

use crate::config::{self, AgentOnError};

/// The installed binary.
pub const BIN_PATH: &str = "/usr/local/sbin/ecs-hostnet";
/// The installed configuration; also where commands look when no `-c` is given.
pub const CONFIG_PATH: &str = "/etc/ecs-hostnet/config.toml";
/// The boot unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/ecs-hostnet.service";
/// The boot unit's enablement symlink.
pub const WANTS_LINK: &str = "/etc/systemd/system/sysinit.target.wants/ecs-hostnet.service";
/// The ecs-init hook (a drop-in for the ECS agent's `ecs.service`).
pub const DROPIN_PATH: &str = "/etc/systemd/system/ecs.service.d/ecs-hostnet.conf";
/// The ECS agent's environment file.
pub const ECS_CONFIG_PATH: &str = "/etc/ecs/ecs.config";
/// What install did, for uninstall and drift checks.
pub const STATE_PATH: &str = "/var/lib/ecs-hostnet/install.json";

/// The boot unit. Ordered like Debian's `nftables.service` (no default dependencies,
/// before `network-pre.target`), and before `docker.service` and `ecs.service`, so the
/// guards and the IMDS block exist before any container or agent runs.
pub fn unit_text() -> String {
    format!(
        "# Installed by `ecs-hostnet install`; `ecs-hostnet uninstall` removes it.\n\
         [Unit]\n\
         Description=ECS task IAM role host networking (ecs-hostnet apply)\n\
         Documentation=file://{CONFIG_PATH}\n\
         DefaultDependencies=no\n\
         After=local-fs.target\n\
         Wants=network-pre.target\n\
         Before=network-pre.target docker.service ecs.service shutdown.target\n\
         Conflicts=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         StandardInput=null\n\
         ExecStart={BIN_PATH} apply\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n"
    )
}

/// The ecs-init hook for `boot.agent_on_error`: `apply` runs before the agent starts. With
/// [`AgentOnError::Block`] the agent never starts on a host that is not converged; with
/// [`AgentOnError::Start`] the `-` prefix makes systemd ignore a failed apply, whose error is
/// in the journal at priority err.
pub fn dropin_text(on_error: AgentOnError) -> String {
    let (comment, prefix) = match on_error {
        AgentOnError::Block => (
            format!(
                "# Installed by `ecs-hostnet install`: the ECS agent only starts once the host's\n\
                 # network matches {CONFIG_PATH}. `ecs-hostnet uninstall` removes it.\n"
            ),
            "",
        ),
        AgentOnError::Start => (
            format!(
                "# Installed by `ecs-hostnet install`: before the ECS agent starts, the host's network\n\
                 # is made to match {CONFIG_PATH}; if that fails, the agent starts anyway\n\
                 # (boot.agent_on_error = \"start\") and the error is in the journal at priority err.\n\
                 # `ecs-hostnet uninstall` removes it.\n"
            ),
            "-",
        ),
    };
    format!("{comment}[Unit]\nAfter=ecs-hostnet.service\n\n[Service]\nExecStartPre={prefix}{BIN_PATH} apply\n")
}

/// The hook [`text_files`] writes for the configuration whose file content is
/// `config_text`: [`dropin_text`] of its `boot.agent_on_error` (the default's when the text
/// is not a valid configuration, which install never writes).
pub fn configured_dropin(config_text: &[u8]) -> String {
    let on_error = std::str::from_utf8(config_text)
        .ok()
        .and_then(|t| config::parse("", t).ok())
        .map_or(AgentOnError::Block, |c| c.boot.agent_on_error.v);
    dropin_text(on_error)
}

/// A text file install writes: path (absolute, under the root), content, mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFile {
    /// Absolute path as on the target host ([`CONFIG_PATH`], [`UNIT_PATH`], [`DROPIN_PATH`]).
    pub path: &'static str,
    /// The exact bytes to write.
    pub content: Vec<u8>,
    /// Permission bits (`0o644` for all of them).
    pub mode: u32,
}

/// The text files install writes for a configuration whose file content is `config_text`
/// (the hook follows its `boot.agent_on_error`, see [`configured_dropin`]).
pub fn text_files(config_text: &[u8]) -> Vec<TextFile> {
    vec![
        TextFile { path: CONFIG_PATH, content: config_text.to_vec(), mode: 0o644 },
        TextFile { path: UNIT_PATH, content: unit_text().into_bytes(), mode: 0o644 },
        TextFile { path: DROPIN_PATH, content: configured_dropin(config_text).into_bytes(), mode: 0o644 },
    ]
}
