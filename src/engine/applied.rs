//! The record of the configuration last applied in a network namespace, which
//! `ecs-hostnet watch` follows: `apply` (plain, `--kernel-only`, the ecs.service hook)
//! writes it under the run-directory lock after a successful converge, the watcher after
//! its first converge and after a `SIGHUP` reload, `remove` deletes it. A watcher about to
//! repair takes the lock, reads the record and, when another configuration was applied
//! since, plans against that one: so an `apply` of a changed configuration is followed,
//! never reverted to the watcher's older one.
//!
//! The file (`<run dir>/applied-<netns inode>.toml`, 0600, see
//! [`crate::host::run_dir::write_applied`]) is the configuration's own TOML text after one
//! comment line naming its source ([`HEADER`]); [`decode`] validates it like any
//! configuration.

use crate::config;
use crate::engine::load::Loaded;
use crate::host::files::Root;
use crate::host::{netns, run_dir};
use crate::model::escape::escape_controls;
use anyhow::{Context as _, Result};

/// The first line of the record, followed by the configuration's source (a path, or the
/// embedded default's name) on the same line.
pub const HEADER: &str = "# ecs-hostnet: the configuration last applied in this network namespace, from ";

/// The record's bytes for a configuration read from `source` whose text is `text`.
pub fn encode(source: &str, text: &[u8]) -> Vec<u8> {
    let mut out = format!("{HEADER}{}\n", escape_controls(source).replace('\n', " ")).into_bytes();
    out.extend_from_slice(text);
    out
}

/// The configuration a record holds, validated like any configuration file (errors
/// located in the applied file's own lines, after its source's name).
///
/// Errors: not a record of ours (no [`HEADER`]), not UTF-8, or an invalid configuration.
pub fn decode(bytes: &[u8]) -> Result<Loaded> {
    let text = std::str::from_utf8(bytes).context("the record is not UTF-8")?;
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let source = first.strip_prefix(HEADER).context("the record does not start with its header line")?;
    let config = config::parse(source, rest)?;
    Ok(Loaded { config, source: source.to_string() })
}

/// Writes `record` ([`encode`]) as the record of the current network namespace (the
/// caller holds the lock).
///
/// Errors: the namespace cannot be named, or the run directory refuses the write.
pub fn record(root: &Root, record: &[u8]) -> Result<()> {
    let ns = netns::current_inode()?;
    run_dir::write_applied(root, ns, record)
        .context("the configuration applied could not be recorded for ecs-hostnet watch")
}

/// The record of the current network namespace, as written; `None` when there is none.
pub fn read(root: &Root) -> Option<Vec<u8>> {
    run_dir::read_applied(root, netns::current_inode().ok()?)
}

/// Deletes the record of the current network namespace (`remove`).
///
/// Errors: the namespace cannot be named, or the file cannot be deleted.
pub fn forget(root: &Root) -> Result<()> {
    Ok(run_dir::remove_applied(root, netns::current_inode()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_gives_back_its_configuration_and_source() {
        let text = b"[credentials]\nendpoint_port = 8080\n";
        let loaded = decode(&encode("/etc/ecs-hostnet/config.toml", text)).unwrap();
        assert_eq!(loaded.source, "/etc/ecs-hostnet/config.toml");
        let want = config::parse("x", std::str::from_utf8(text).unwrap()).unwrap();
        assert_eq!(crate::desired::compile(&loaded.config), crate::desired::compile(&want));
        assert_ne!(crate::desired::compile(&loaded.config), crate::desired::compile(&config::default_config()));
        let default = decode(&encode(config::DEFAULT_NAME, config::DEFAULT_TOML.as_bytes())).unwrap();
        assert_eq!(crate::desired::compile(&default.config), crate::desired::compile(&config::default_config()));
    }

    #[test]
    fn a_bad_record_is_an_error_located_in_the_applied_file() {
        let e = decode(&encode("/c.toml", b"[credentials]\nendpoint_port = \"eighty\"\n")).err().expect("invalid");
        assert!(format!("{e:#}").contains("/c.toml:2:"), "{e:#}");
        assert!(decode(b"[credentials]\n").is_err(), "no header: not ours");
        assert!(decode(b"\xff\xfe").is_err());
    }
}
