//! route_localnet through `/proc/sys` paths: reading and writing
//! `net.ipv4.conf.<selector>.route_localnet` and listing the selectors the kernel has.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the file, so after
//! [`crate::host::netns::enter`] these reads and writes act on that namespace. Paths are built
//! from the selector directly, so interface names with dots (`eth0.100`) work, which the
//! dotted sysctl names (and the `sysctl` crate) cannot express. Failures are a typed
//! [`Error`] naming the selector or the path.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;

/// The folder of the per-interface IPv4 settings (`all`, `default` and one per interface).
const CONF_DIR: &str = "/proc/sys/net/ipv4/conf";

/// A route_localnet read or write that failed. An OS error is the
/// [`source`](std::error::Error::source) (printed after `: ` by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The selector is neither `all` nor a valid interface name, so no path is built.
    #[error("refusing route_localnet for {selector:?}: {reason}")]
    BadSelector {
        /// The selector as given.
        selector: String,
        /// Why it is not an interface name.
        reason: String,
    },
    /// Reading the file failed for a reason other than its absence.
    #[error("cannot read {}", path.display())]
    Read {
        /// The `/proc/sys` file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the file failed (no root, the interface gone, ...).
    #[error("cannot write {value} to {}", path.display())]
    Write {
        /// The value written (`"0"`, `"1"`, ...).
        value: String,
        /// The `/proc/sys` file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Listing `/proc/sys/net/ipv4/conf` failed.
    #[error("cannot list {CONF_DIR}")]
    List {
        /// The OS error.
        source: std::io::Error,
    },
}

/// `/proc/sys/net/ipv4/conf/<selector>/route_localnet`. Errors ([`Error::BadSelector`])
/// unless `selector` is `all` or a valid interface name, so no input can name another path.
pub fn route_localnet_path(selector: &str) -> Result<PathBuf, Error> {
    if selector != "all" {
        crate::model::ifpattern::IfPattern::parse(selector, false)
            .map_err(|reason| Error::BadSelector { selector: selector.to_string(), reason })?;
    }
    Ok(PathBuf::from(format!("{CONF_DIR}/{selector}/route_localnet")))
}

/// Reads route_localnet for `selector` (`all` or an interface name): the value as the
/// kernel prints it, trimmed (`"0"`, `"1"`). `Ok(None)` when the interface does not exist.
///
/// Errors: [`Error::BadSelector`], [`Error::Read`].
pub fn read_route_localnet(selector: &str) -> Result<Option<String>, Error> {
    let path = route_localnet_path(selector)?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path, source }),
    }
}

/// Writes `value` to route_localnet for `selector`.
///
/// Errors: [`Error::BadSelector`], [`Error::Write`] (naming the path and, as its source,
/// the cause: permission denied without root, interface gone, ...).
pub fn write_route_localnet(selector: &str, value: &str) -> Result<(), Error> {
    let path = route_localnet_path(selector)?;
    std::fs::write(&path, value).map_err(|source| Error::Write { value: value.to_string(), path, source })
}

/// Whether route_localnet for `selector` could be written now, without writing it: the
/// file is opened for writing (which checks the permission and a read-only `/proc/sys`)
/// and closed. An interface that does not exist passes: its write is skipped.
///
/// Errors: [`Error::BadSelector`], [`Error::Write`] (with `value`, the value that would be
/// written, and the cause).
pub fn check_writable(selector: &str, value: &str) -> Result<(), Error> {
    let path = route_localnet_path(selector)?;
    match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Write { value: value.to_string(), path, source }),
    }
}

/// route_localnet of `all`, `default` and every interface of the namespace: name -> value
/// as [`read_route_localnet`] gives it. Names no path may be built from (see
/// [`route_localnet_path`]) and interfaces gone while listing are left out.
///
/// Errors: [`Error::List`], [`Error::Read`].
pub fn read_all_route_localnet() -> Result<BTreeMap<String, String>, Error> {
    let mut values = BTreeMap::new();
    for entry in std::fs::read_dir(CONF_DIR).map_err(|source| Error::List { source })? {
        let name = entry.map_err(|source| Error::List { source })?.file_name().to_string_lossy().into_owned();
        // Only names a /proc/sys path may be built from (see `route_localnet_path`).
        if route_localnet_path(&name).is_err() {
            continue;
        }
        if let Some(v) = read_route_localnet(&name)? {
            values.insert(name, v);
        }
    }
    Ok(values)
}

/// Turns off IPv6 duplicate address detection on interface `name` (its own
/// `/proc/sys/net/ipv6/conf/<name>/accept_dad` = 0; the setting goes with the interface),
/// so its link-local address is usable at once: a tentative one delays the first IPv6
/// packets forwarded through it. For `verify`'s probe interfaces. An interface without
/// IPv6 (the file is missing) is left as it is.
///
/// Errors: [`Error::BadSelector`] unless `name` is an interface name, [`Error::Write`].
pub fn disable_dad(name: &str) -> Result<(), Error> {
    crate::model::ifpattern::IfPattern::parse(name, false)
        .map_err(|reason| Error::BadSelector { selector: name.to_string(), reason })?;
    let path = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"));
    match std::fs::write(&path, "0") {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r.map_err(|source| Error::Write { value: "0".into(), path, source }),
    }
}
