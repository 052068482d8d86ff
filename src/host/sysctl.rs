//! route_localnet through `/proc/sys` paths.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the file, so after
//! [`crate::host::netns::enter`] these reads and writes act on that namespace. Paths are built
//! from the selector directly, so interface names with dots (`eth0.100`) work, which the
//! dotted sysctl names (and the `sysctl` crate) cannot express.

use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::path::PathBuf;

/// `/proc/sys/net/ipv4/conf/<selector>/route_localnet`. Errors unless `selector` is
/// `all` or a valid interface name, so no input can name another path.
pub fn route_localnet_path(selector: &str) -> Result<PathBuf> {
    if selector != "all" {
        crate::model::ifpattern::IfPattern::parse(selector, false)
            .map_err(|e| anyhow::anyhow!("refusing route_localnet for {selector:?}: {e}"))?;
    }
    Ok(PathBuf::from(format!("/proc/sys/net/ipv4/conf/{selector}/route_localnet")))
}

/// Reads route_localnet for `selector` (`all` or an interface name). `Ok(None)` when the
/// interface does not exist. Errors name the path.
pub fn read_route_localnet(selector: &str) -> Result<Option<String>> {
    let path = route_localnet_path(selector)?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `value` to route_localnet for `selector`. Errors name the path and the cause
/// (e.g. permission denied without root, interface gone).
pub fn write_route_localnet(selector: &str, value: &str) -> Result<()> {
    let path = route_localnet_path(selector)?;
    std::fs::write(&path, value).with_context(|| format!("cannot write {value} to {}", path.display()))
}
