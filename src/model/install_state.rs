//! The install state file (`/var/lib/ecs-hostnet/install.json`, schema [`STATE_SCHEMA`]):
//! what install created or replaced, and what uninstall needs to put back. Nothing more.
//!
//! In particular it never holds a copy of the agent's settings file
//! (`/etc/ecs/ecs.config`): that file carries registry credentials
//! (`ECS_ENGINE_AUTH_DATA`) which must not be kept anywhere else, in any encoding, nor
//! outlive their rotation. Of it, the state keeps only the lines of the keys ecs-hostnet
//! manages as they were before the first install ([`InstalledEcsConfig`]); uninstall puts
//! those back into the file as it is then, keeping every other byte.
//!
//! The previous schema ([`v1::SCHEMA`]) kept a whole copy of ecs.config (before and
//! after). It is still read ([`v1::InstallState`]), so an existing install is converted
//! and rewritten without the copy by the next install, apply or uninstall.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes stored in the state file as base64 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map(Bytes).map_err(serde::de::Error::custom)
    }
}

/// One line of a text file, stored as a JSON string when it is UTF-8 (readable in the
/// state file), else as `{"base64": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line(pub Vec<u8>);

/// The JSON forms of [`Line`].
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LineForm {
    Text(String),
    Base64 { base64: Bytes },
}

impl Serialize for Line {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => LineForm::Text(t.to_string()),
            Err(_) => LineForm::Base64 { base64: Bytes(self.0.clone()) },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Line(match LineForm::deserialize(d)? {
            LineForm::Text(t) => t.into_bytes(),
            LineForm::Base64 { base64 } => base64.0,
        }))
    }
}

/// One file install wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFile {
    /// Absolute path as on the target host (without `--root`).
    pub path: String,
    /// Content before the first install, put back by uninstall. `None`: the file did not
    /// exist, or (with [`InstalledFile::before_mode`] set) its content is not kept: the
    /// binary's (megabytes, and not needed: uninstall then leaves the installed binary
    /// where a binary was).
    pub before: Option<Bytes>,
    /// Its mode bits then (restored with it by uninstall); `Some` exactly when a file was
    /// there.
    #[serde(default)]
    pub before_mode: Option<u32>,
    /// Its owner then, `(uid, gid)` (restored with it by uninstall: install makes the
    /// file root's). Absent in states written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_owner: Option<(u32, u32)>,
    /// What install wrote (checked for drift); `None` for the binary, which an upgrade
    /// may replace.
    pub written: Option<Bytes>,
}

impl InstalledFile {
    /// Whether a file was at the path before the first install.
    pub fn existed(&self) -> bool {
        self.before.is_some() || self.before_mode.is_some()
    }
}

/// One line that set a managed key in ecs.config before the first install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLine {
    /// Its 0-based line number in the file then.
    pub index: usize,
    /// The line exactly, its line end (`\n`, `\r\n`, or none for a last line without
    /// one) included. Always a line setting the key it is listed under, never another.
    pub text: Line,
}

/// What the first install that managed agent keys found in `/etc/ecs/ecs.config`: only
/// what uninstall needs to put those keys back byte for byte (`desired::ecs_config`
/// records and restores it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstalledEcsConfig {
    /// Whether the file existed (uninstall removes a file install created once our keys
    /// are out and nothing else is in it).
    pub existed: bool,
    /// How many lines it had (a last line without a line end counts).
    pub lines_before: usize,
    /// The line end install added to the file's last line, which had none, before
    /// appending a key after it (`"\n"` or `"\r\n"`); `None` when it added none.
    pub added_line_end: Option<String>,
    /// Each managed key -> every line that set it, in file order (the last one is the
    /// value the agent saw); empty: the key was absent.
    pub keys_before: BTreeMap<String, Vec<KeyLine>>,
}

/// `/var/lib/ecs-hostnet/install.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstallState {
    /// [`STATE_SCHEMA`].
    pub schema: String,
    /// Every file install wrote (the binary first), in install order; uninstall walks
    /// them in reverse.
    pub files: Vec<InstalledFile>,
    /// The enablement symlink, if install made it.
    pub wants_link: bool,
    /// What install found in the agent's settings file; `None` while no install has
    /// managed an agent key.
    pub ecs_config: Option<InstalledEcsConfig>,
    /// Folders install created (deepest last); uninstall removes them when empty.
    pub created_dirs: Vec<String>,
    /// The binary and the unit files are the package's (/usr/sbin, /usr/lib/systemd/system):
    /// install wrote neither, uninstall never removes them; the enablement links point at
    /// the package's units. Absent (false) in states of an install from a tarball or source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub package: bool,
    /// With [`InstallState::package`]: install made the watch unit's enablement link (the
    /// package's unit is not in [`InstallState::files`], which otherwise says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watch_link: bool,
    /// With [`InstallState::package`]: install made the metrics timer's enablement link
    /// (`metrics.textfile` set), as [`InstallState::watch_link`] for the watch unit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_link: bool,
}

/// The schema name written in [`InstallState::schema`].
pub const STATE_SCHEMA: &str = "ecs-hostnet.install/v2";

/// The installed files as they are now: path -> content (`None`: missing).
pub type LiveFiles = BTreeMap<String, Option<Vec<u8>>>;

/// The previous schema, `ecs-hostnet.install/v1`, as ecs-hostnet 0.1 wrote it: read only
/// to convert it (the engine rewrites it as [`crate::model::install_state::STATE_SCHEMA`]).
pub mod v1 {
    use super::{Bytes, InstalledFile};
    use serde::Deserialize;
    use std::collections::BTreeMap;

    /// The schema name of a v1 state.
    pub const SCHEMA: &str = "ecs-hostnet.install/v1";

    /// v1's record of ecs.config: whole copies of the file (secrets included), the reason
    /// v2 exists.
    #[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
    pub struct InstalledEcsConfig {
        /// The whole file before the first install; `None`: it did not exist.
        pub before: Option<Bytes>,
        /// Each managed key's value before the first install (`None`: absent).
        pub keys_before: BTreeMap<String, Option<String>>,
        /// The whole file as install left it (read, never used).
        pub written: Bytes,
    }

    /// A v1 `install.json`. Its files are v2's [`InstalledFile`]s, the binary's previous
    /// content possibly included.
    #[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
    pub struct InstallState {
        /// [`SCHEMA`].
        pub schema: String,
        /// As in v2.
        pub files: Vec<InstalledFile>,
        /// As in v2.
        pub wants_link: bool,
        /// The copies of ecs.config.
        pub ecs_config: Option<InstalledEcsConfig>,
        /// As in v2.
        pub created_dirs: Vec<String>,
    }
}
