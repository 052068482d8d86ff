//! Reading the configuration file, refusing what is not a regular UTF-8 file of sane size.

use crate::config::{self, Config};
use crate::host::files::Root;
use anyhow::Result;
use std::path::Path;

/// Where the configuration is read from when no `-c` is given (under `--root`).
pub const SYSTEM_CONFIG: &str = crate::desired::install_files::CONFIG_PATH;

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
    // Resolved inside the root: an image's absolute links never lead to the build host's files.
    let system = crate::host::files::resolved_host_path(root, SYSTEM_CONFIG);
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
