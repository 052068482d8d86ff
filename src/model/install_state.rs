//! The install state file (`/var/lib/ecs-hostnet/install.json`): what install wrote
//! and what each file held before.

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

/// One file install wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFile {
    /// Absolute path as on the target host (without `--root`).
    pub path: String,
    /// Content before the first install; `None`: the file did not exist.
    pub before: Option<Bytes>,
    /// Its mode bits then (restored with it by uninstall).
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

/// The agent settings install changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledEcsConfig {
    /// The whole file before the first install; `None`: it did not exist.
    pub before: Option<Bytes>,
    /// Each key's value before the first install (`None`: absent).
    pub keys_before: BTreeMap<String, Option<String>>,
    /// The file as install left it.
    pub written: Bytes,
}

/// `/var/lib/ecs-hostnet/install.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstallState {
    /// `ecs-hostnet.install/v1`.
    pub schema: String,
    /// Every file install wrote (the binary first), in install order; uninstall walks
    /// them in reverse.
    pub files: Vec<InstalledFile>,
    /// The enablement symlink, if install made it.
    pub wants_link: bool,
    /// What install did to [`ECS_CONFIG_PATH`]; `None` while no install has managed an
    /// agent key.
    pub ecs_config: Option<InstalledEcsConfig>,
    /// Folders install created (deepest last); uninstall removes them when empty.
    pub created_dirs: Vec<String>,
}

/// The schema name written in [`InstallState::schema`].
pub const STATE_SCHEMA: &str = "ecs-hostnet.install/v1";

/// The installed files as they are now: path -> content (`None`: missing).
pub type LiveFiles = BTreeMap<String, Option<Vec<u8>>>;
