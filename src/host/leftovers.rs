//! Reads the files in which the AWS documentation's commands persist their settings: the
//! sysctl configuration files systemd-sysctl applies at boot, the `iptables-save` files
//! iptables-services and iptables-persistent restore at boot, and whether the units that
//! restore them are enabled ([`LeftoverFiles`]). Every path is resolved inside `--root`
//! through [`super::files`]; the judging is `plan::leftovers`'.
//!
//! Advice, never a reason to fail: a file or folder that cannot be read is left out. Cheap:
//! a handful of small folders listed and the files in them read.

use super::files::{self, Root};
use crate::model::finding::{LeftoverFiles, TextFile};
use std::collections::BTreeSet;

/// The folders systemd-sysctl reads `*.conf` from, first wins for a name (`sysctl.d(5)`).
pub const SYSCTL_DIRS: [&str; 5] =
    ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];

/// procps' own file, read last by `sysctl --system` (and through a 99-sysctl.conf link by
/// systemd-sysctl on Debian and Fedora).
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// The `iptables-save` files restored at boot: iptables-services' (Amazon Linux, Fedora,
/// RHEL: `iptables-restore /etc/sysconfig/iptables`) and iptables-persistent's (Debian,
/// Ubuntu).
pub const IPTABLES_SAVES: [&str; 4] =
    ["/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables", "/etc/iptables/rules.v4", "/etc/iptables/rules.v6"];

/// The units that restore [`IPTABLES_SAVES`] at boot.
pub const RESTORE_UNITS: [&str; 3] = ["iptables.service", "ip6tables.service", "netfilter-persistent.service"];

/// Where `systemctl enable` puts the `*.wants` links of a unit's `WantedBy=`.
const SYSTEM_UNITS: &str = "/etc/systemd/system";

/// Reads [`LeftoverFiles`] under `root`.
pub fn read(root: &Root) -> LeftoverFiles {
    LeftoverFiles {
        sysctl: sysctl_files(root),
        iptables_saves: read_all(root, &IPTABLES_SAVES),
        enabled_units: enabled(root),
    }
}

fn read_text(root: &Root, abs: &str) -> Option<TextFile> {
    let bytes = files::read_opt(root, abs).ok()??;
    Some(TextFile { path: abs.to_string(), text: String::from_utf8_lossy(&bytes).into_owned() })
}

fn read_all(root: &Root, paths: &[&str]) -> Vec<TextFile> {
    paths.iter().filter_map(|p| read_text(root, p)).collect()
}

/// The sysctl files in the order systemd-sysctl applies them, a name taken from the first
/// folder that has it (a same-named file in /etc/sysctl.d hides a package's, and a link to
/// /dev/null there masks it: reading it gives nothing), then /etc/sysctl.conf, unless a
/// sysctl.d link already led to it.
fn sysctl_files(root: &Root) -> Vec<TextFile> {
    let mut seen_names = BTreeSet::new();
    let mut chosen = Vec::new();
    for dir in SYSCTL_DIRS {
        let Ok(Some(names)) = files::read_dir(root, dir) else { continue };
        for name in names {
            let name = name.to_string_lossy().into_owned();
            if name.ends_with(".conf") && seen_names.insert(name.clone()) {
                chosen.push(format!("{dir}/{name}"));
            }
        }
    }
    // systemd-sysctl applies them sorted by file name, whatever folder each comes from.
    chosen.sort_by(|a, b| a.rsplit('/').next().cmp(&b.rsplit('/').next()));
    let mut out = Vec::new();
    let mut read_conf = false;
    for abs in chosen {
        // A link to /etc/sysctl.conf is named by that file, read once.
        let leads_to_conf = files::read_link(root, &abs)
            .is_some_and(|t| t == std::path::Path::new("../sysctl.conf") || t == std::path::Path::new(SYSCTL_CONF));
        if leads_to_conf {
            read_conf = true;
            out.extend(read_text(root, SYSCTL_CONF));
        } else {
            out.extend(read_text(root, &abs));
        }
    }
    if !read_conf {
        out.extend(read_text(root, SYSCTL_CONF));
    }
    out
}

/// The units of [`RESTORE_UNITS`] linked in some `*.wants` folder of /etc/systemd/system.
fn enabled(root: &Root) -> Vec<String> {
    let Ok(Some(entries)) = files::read_dir(root, SYSTEM_UNITS) else { return vec![] };
    let mut wants: Vec<String> =
        entries.iter().map(|e| e.to_string_lossy().into_owned()).filter(|e| e.ends_with(".wants")).collect();
    wants.sort();
    RESTORE_UNITS
        .iter()
        .filter(|unit| {
            wants
                .iter()
                .any(|w| matches!(files::metadata(root, &format!("{SYSTEM_UNITS}/{w}/{unit}"), false), Ok(Some(_))))
        })
        .map(|u| u.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A temp folder removed in Drop.
    struct Tree(PathBuf);
    impl Tree {
        fn new() -> Tree {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("ehn-leftovers-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tree(p)
        }
        fn file(&self, abs: &str, text: &str) {
            let p = self.0.join(abs.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn link(&self, abs: &str, target: &str) {
            let p = self.0.join(abs.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
        fn root(&self) -> Root {
            Root::new(Some(Path::new(&self.0)))
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn paths(f: &[TextFile]) -> Vec<&str> {
        f.iter().map(|f| f.path.as_str()).collect()
    }

    /// systemd-sysctl's precedence: /etc hides /usr/lib by name, files are taken in name
    /// order across folders, the 99-sysctl.conf link is read as /etc/sysctl.conf once, and
    /// an absolute link out of the image is resolved inside it.
    #[test]
    fn sysctl_files_follow_systemd_sysctl_precedence_inside_the_root() {
        let t = Tree::new();
        t.file("/usr/lib/sysctl.d/50-default.conf", "from usr\n");
        t.file("/etc/sysctl.d/50-default.conf", "from etc\n");
        t.file("/run/sysctl.d/10-run.conf", "run\n");
        t.file("/usr/lib/sysctl.d/60-pkg.conf", "pkg\n");
        t.file("/etc/sysctl.d/README", "not a .conf\n");
        t.file("/etc/sysctl.conf", "conf\n");
        t.link("/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf");
        t.link("/etc/sysctl.d/70-abs.conf", "/data/x.conf");
        t.file("/data/x.conf", "inside the image\n");
        let f = read(&t.root());
        assert_eq!(
            paths(&f.sysctl),
            [
                "/run/sysctl.d/10-run.conf",
                "/etc/sysctl.d/50-default.conf",
                "/usr/lib/sysctl.d/60-pkg.conf",
                "/etc/sysctl.d/70-abs.conf",
                "/etc/sysctl.conf"
            ]
        );
        assert_eq!(f.sysctl[1].text, "from etc\n");
        assert_eq!(f.sysctl[3].text, "inside the image\n");
        assert_eq!((f.iptables_saves.len(), f.enabled_units.len()), (0, 0));
    }

    /// The saved rule files are read where they exist, and a restoring unit counts as
    /// enabled through any `*.wants` link (dangling or not), never through its unit file.
    #[test]
    fn iptables_saves_and_enabled_restore_units_are_read() {
        let t = Tree::new();
        t.file("/etc/sysconfig/iptables", "*nat\nCOMMIT\n");
        t.file("/etc/iptables/rules.v6", "*filter\nCOMMIT\n");
        t.file("/usr/lib/systemd/system/iptables.service", "[Unit]\n");
        t.link("/etc/systemd/system/basic.target.wants/iptables.service", "/usr/lib/systemd/system/iptables.service");
        t.link("/etc/systemd/system/multi-user.target.wants/netfilter-persistent.service", "/nowhere");
        t.file("/etc/systemd/system/ip6tables.service", "[Unit]\n");
        let f = read(&t.root());
        assert_eq!(paths(&f.iptables_saves), ["/etc/sysconfig/iptables", "/etc/iptables/rules.v6"]);
        assert_eq!(f.iptables_saves[0].text, "*nat\nCOMMIT\n");
        assert_eq!(f.enabled_units, ["iptables.service", "netfilter-persistent.service"]);
        assert_eq!(read(&Tree::new().root()), LeftoverFiles::default());
    }
}
