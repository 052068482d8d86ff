//! Reading the configuration file, refusing what is not a regular UTF-8 file of sane size,
//! and, for a run as root that acts on the host, what another user could have written
//! ([`Trust::RootOnly`], like sshd's `StrictModes`).

use crate::config::{self, Config};
use crate::host::files::Root;
use anyhow::Result;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Where the configuration is read from when no `-c` is given (under `--root`).
pub const SYSTEM_CONFIG: &str = crate::desired::install_files::CONFIG_PATH;

/// A configuration and the name of its source, for messages.
pub struct Loaded {
    /// The validated configuration, keys left out filled from the embedded default.
    pub config: Config,
    /// The file path, or [`config::DEFAULT_NAME`].
    pub source: String,
}

/// Whose writes a configuration must be safe from before it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Read it whoever could have written it: the commands that apply nothing (`validate`,
    /// `render`, `diff`, `plan --against`), and `remove`, whose work the configuration does
    /// not decide (refusing it would only block the way back).
    Any,
    /// When running as root (euid 0), refuse a file that a user other than root could have
    /// written or replaced (see [`strict_modes_problem`]): the commands whose result is
    /// applied to the host (`apply`, which the boot unit and the agent hook run as root,
    /// `plan`/`check` against the kernel, which must show what apply would do, `install`,
    /// which copies the file to where boot reads it, `task`). Not enforced for other users:
    /// they cannot apply anything, and their own files are theirs; nor for root of a user
    /// namespace other than the first (an unprivileged user of the machine, acting only on
    /// namespaces that user owns, who sees the machine's root as uid 65534).
    RootOnly,
}

impl Trust {
    /// Whether the ownership and mode checks run: [`Trust::RootOnly`] as the machine's root.
    fn enforced(self) -> bool {
        self == Trust::RootOnly && nix::unistd::geteuid().is_root() && in_initial_user_namespace()
    }
}

/// Whether this process is in the machine's first user namespace: its uid map is the
/// identity over every uid (`0 0 4294967295`). When the map cannot be read, `true` (the
/// checks run).
fn in_initial_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => is_identity_uid_map(&map),
        Err(_) => true,
    }
}

/// Whether `/proc/self/uid_map` text maps every uid to itself (the first user namespace).
fn is_identity_uid_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map.lines().map(|l| l.split_whitespace().collect()).collect();
    matches!(lines.as_slice(), [l] if l.as_slice() == ["0", "0", "4294967295"])
}

/// Reads and validates the configuration: `path` if given, else [`SYSTEM_CONFIG`] under
/// `root` if it exists, else the embedded default. Errors are located
/// (`FILE:LINE:COL: ...`), one per line. With [`Trust::RootOnly`] a file another user
/// could change is refused (`FILE: refused: ...; fix: ...`) before it is read.
pub fn load_config(path: Option<&Path>, root: &Root, trust: Trust) -> Result<Loaded> {
    Ok(load_config_bytes(path, root, trust)?.0)
}

/// [`load_config`], also returning the file's bytes (the embedded default's for it).
pub fn load_config_bytes(path: Option<&Path>, root: &Root, trust: Trust) -> Result<(Loaded, Vec<u8>)> {
    // The system configuration is looked up inside the root (an image's absolute symlinks
    // are its own, never the build host's files); `-c FILE` is a path of the machine
    // running the command. A dangling link there is an error, not the embedded default.
    let system_entry = crate::host::files::metadata(root, SYSTEM_CONFIG, false)?.is_some();
    let (path, base) = match path {
        Some(p) => (Some(p.to_path_buf()), PathBuf::from("/")),
        None if system_entry => (Some(root.at(SYSTEM_CONFIG)), root.at("")),
        None => (None, PathBuf::from("/")),
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
    // Checked before anything is read: what is read is the file the walk checked.
    let path = if trust.enforced() {
        let inside = if base == Path::new("/") {
            std::path::absolute(&path).unwrap_or_else(|_| path.clone())
        } else {
            PathBuf::from(SYSTEM_CONFIG)
        };
        let walk = walk_strict(&base, &inside);
        if let Some(problem) = walk.problem {
            return Err(fail(None, problem));
        }
        walk.resolved.unwrap_or(path)
    } else if base != Path::new("/") {
        // Not checked (nothing is applied): still read what the image holds.
        crate::host::files::resolved_host_path(root, SYSTEM_CONFIG)
    } else {
        path
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

/// What [`walk_strict`] found.
struct Walk {
    /// The regular file the path leads to, as a path of this machine (`None`: the walk did
    /// not get there: missing, not a regular file, a symlink loop; reading it then fails
    /// with its own message).
    resolved: Option<PathBuf>,
    /// Why another user could change what is read (`None`: only root can).
    problem: Option<String>,
}

/// Most symlinks followed on the way (the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Resolves `inside` (absolute, inside `base`: `/` or a `--root`) component by component
/// as the kernel would, with absolute symlinks taken relative to `base` and `..` never
/// above it, and checks every folder passed through (`base` included), every symlink
/// followed and the file itself (see [`strict_modes_problem`]). The folders of `base` above
/// it are not checked: under `--root` they are the build machine's, not the image's.
fn walk_strict(base: &Path, inside: &Path) -> Walk {
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let none = Walk { resolved: None, problem: None };
    let Ok(base_meta) = std::fs::metadata(&base) else { return none };
    if let Some(problem) = strict_modes_problem(Entry::Folder, &base, base_meta.uid(), base_meta.mode(), false) {
        return Walk { resolved: None, problem: Some(problem) };
    }
    let mut queue: VecDeque<OsString> = components(inside);
    let mut at: Vec<OsString> = Vec::new();
    let mut links = 0;
    let here = |at: &[OsString]| at.iter().fold(base.clone(), |p, c| p.join(c));
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            at.pop();
            continue;
        }
        let folder = here(&at);
        let path = folder.join(&c);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { return none };
        // In a sticky folder others can write, an entry's owner can replace it.
        let in_open_sticky = std::fs::metadata(&folder).is_ok_and(|m| m.mode() & 0o1022 > 0o1000);
        if meta.file_type().is_symlink() {
            links += 1;
            let Ok(target) = std::fs::read_link(&path) else { return none };
            if links > MAX_SYMLINKS {
                return none;
            }
            if let Some(problem) = strict_modes_problem(Entry::Symlink, &path, meta.uid(), 0, in_open_sticky) {
                return Walk { resolved: None, problem: Some(problem) };
            }
            if target.has_root() {
                at.clear();
            }
            for t in components(&target).into_iter().rev() {
                queue.push_front(t);
            }
            continue;
        }
        if queue.is_empty() {
            if !meta.is_file() {
                return none;
            }
            let problem = strict_modes_problem(Entry::File, &path, meta.uid(), meta.mode(), in_open_sticky);
            return Walk { resolved: Some(path), problem };
        }
        if !meta.is_dir() {
            return none;
        }
        if let Some(problem) = strict_modes_problem(Entry::Folder, &path, meta.uid(), meta.mode(), in_open_sticky) {
            return Walk { resolved: None, problem: Some(problem) };
        }
        at.push(c);
    }
    none
}

/// The names of `p`, `..` kept, `/` and `.` dropped.
fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// What [`strict_modes_problem`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The configuration file itself.
    File,
    /// A folder on the way to it (replacing or renaming its entries needs write access).
    Folder,
    /// A symlink on the way (its mode means nothing; only its owner matters, and only in a
    /// sticky folder others can write, where the owner may replace it).
    Symlink,
}

/// Why an entry on the way to a configuration read as root lets another user change what
/// is read, with the fix; `None` when only root can. `uid` is the owner, `mode` the
/// `st_mode` bits, `in_open_sticky` whether its folder is sticky and writable by group or
/// others.
///
/// Like sshd's `StrictModes`: the file must be owned by root and not writable by group or
/// others; every folder on the way must be owned by root and not writable by group or
/// others unless it is sticky (`/tmp`: others can add entries but not replace root's); a
/// symlink in such a sticky folder must be owned by root.
pub fn strict_modes_problem(entry: Entry, path: &Path, uid: u32, mode: u32, in_open_sticky: bool) -> Option<String> {
    let p = path.display();
    let owner = (uid != 0).then(|| format!("owned by uid {uid}, not root"));
    let perms = mode & 0o7777;
    let writable = mode & 0o022 != 0;
    let why = "a configuration applied as root must be changeable by root alone";
    match entry {
        Entry::File => {
            let mut what: Vec<String> = owner.into_iter().collect();
            if writable {
                what.push(format!("writable by group or others (mode {perms:04o})"));
            }
            if what.is_empty() {
                return None;
            }
            let sticky = if in_open_sticky && uid != 0 { " in a folder others can write to" } else { "" };
            Some(format!("refused: the file is {}{sticky}; {why}; fix: chown root:root {p} && chmod go-w {p}", what.join(" and ")))
        }
        Entry::Folder => {
            let open = writable && mode & 0o1000 == 0;
            let mut what: Vec<String> = owner.into_iter().collect();
            if open {
                what.push(format!("writable by group or others without the sticky bit (mode {perms:04o})"));
            }
            if what.is_empty() {
                return None;
            }
            Some(format!(
                "refused: its folder {p} is {}, so another user could replace the configuration; {why}; fix: chown root:root {p} && chmod go-w {p}",
                what.join(" and ")
            ))
        }
        Entry::Symlink => (in_open_sticky && uid != 0).then(|| {
            format!(
                "refused: the symlink {p} on the way is owned by uid {uid} in a sticky folder others can write to, so that user could point it elsewhere; {why}; fix: replace it with a symlink owned by root (ln -sfn TARGET {p} as root), or give the real path"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(entry: Entry, uid: u32, mode: u32, sticky: bool) -> Option<String> {
        strict_modes_problem(entry, Path::new("/etc/x/config.toml"), uid, mode, sticky)
    }

    #[test]
    fn only_the_first_user_namespace_has_the_identity_map() {
        assert!(is_identity_uid_map("         0          0 4294967295\n"));
        assert!(!is_identity_uid_map("         0       1000          1\n"));
        assert!(!is_identity_uid_map("0 0 1000\n1000 100000 65536\n"));
        assert!(!is_identity_uid_map(""));
    }

    #[test]
    fn a_root_owned_file_not_writable_by_others_is_accepted() {
        for mode in [0o100644, 0o100600, 0o100400, 0o100755] {
            assert_eq!(problem(Entry::File, 0, mode, false), None, "{mode:o}");
        }
        // Folders: root's and not writable by others, or sticky (/tmp).
        for mode in [0o40755, 0o40700, 0o41777, 0o41770] {
            assert_eq!(problem(Entry::Folder, 0, mode, false), None, "{mode:o}");
        }
        assert_eq!(problem(Entry::Symlink, 0, 0o120777, true), None);
        assert_eq!(problem(Entry::Symlink, 1000, 0o120777, false), None, "in a folder only root writes");
    }

    #[test]
    fn each_refusal_says_what_is_wrong_and_the_fix() {
        let fix = "fix: chown root:root /etc/x/config.toml && chmod go-w /etc/x/config.toml";
        let e = problem(Entry::File, 0, 0o100666, false).unwrap();
        assert!(e.starts_with("refused: the file is writable by group or others (mode 0666);"), "{e}");
        assert!(e.ends_with(fix), "{e}");
        let e = problem(Entry::File, 0, 0o100664, false).unwrap();
        assert!(e.contains("(mode 0664)"), "{e}");
        let e = problem(Entry::File, 65534, 0o100644, false).unwrap();
        assert!(e.starts_with("refused: the file is owned by uid 65534, not root;"), "{e}");
        assert!(e.ends_with(fix), "{e}");
        let e = problem(Entry::File, 65534, 0o100666, false).unwrap();
        assert!(e.contains("owned by uid 65534, not root and writable by group or others (mode 0666)"), "{e}");
        let e = problem(Entry::Folder, 0, 0o40777, false).unwrap();
        assert!(
            e.contains(
                "its folder /etc/x/config.toml is writable by group or others without the sticky bit (mode 0777)"
            ),
            "{e}"
        );
        assert!(e.contains("another user could replace the configuration"), "{e}");
        let e = problem(Entry::Folder, 1000, 0o40755, false).unwrap();
        assert!(e.contains("owned by uid 1000, not root"), "{e}");
        let e = problem(Entry::Symlink, 1000, 0o120777, true).unwrap();
        assert!(e.contains("owned by uid 1000 in a sticky folder others can write to"), "{e}");
    }
}
