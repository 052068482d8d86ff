//! A real systemd boot for the tests: a Debian 12 image made with mmdebstrap (cached under
//! [`IMAGE_DIR`]), extracted into a temp rootfs ([`Rootfs`]) and booted with systemd-nspawn
//! in a test network namespace ([`Boot`]).
//!
//! Why it is done this way (see ../shared/notes/real-host-facts.md): PID 1 of these
//! machines is not systemd and there is no system bus, so nspawn runs with `--register=no
//! --keep-unit` inside cgroups made here (`ehn-<pid>-<n>-boot` in the `name=systemd` and the
//! unified hierarchy); the container's network namespace is the test's
//! (`--network-namespace-path`), never the root one; commands run inside through
//! `nsenter -t <container PID 1> -a`.
//!
//! Everything made here is removed in Drop, also when a test panics: the nspawn process
//! tree (killed through its cgroup's `cgroup.kill`, by cgroup, never by name), its cgroups,
//! mounts under the rootfs, what nspawn leaves under /run/systemd/nspawn, the rootfs. A test
//! process that was killed leaves names with its pid: the next run removes those whose pid
//! is gone ([`remove_stale`]). An image build is written to a temp file and renamed, so a
//! killed or concurrent build never leaves half a tarball.
#![allow(dead_code)]

use crate::support::{Netns, Out, TempDir, run_cmd, run_cmd_with, unique_name};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Where built images are kept between runs.
pub const IMAGE_DIR: &str = "/var/tmp/ecs-hostnet-images";
/// The Debian release of the image.
const SUITE: &str = "bookworm";
/// The image's packages beyond minbase: systemd as init, nft (also the libnftnl11 and
/// libmnl0 the binary under test links), ip, sysctl/ps.
const PACKAGES: &[&str] = &["systemd", "systemd-sysv", "nftables", "iproute2", "procps"];
/// Bumped when the recipe changes in a way the package list does not show.
const RECIPE_VERSION: u32 = 1;
/// The unified (v2) cgroup hierarchy: the host's, or its hybrid mount.
const UNIFIED: &[&str] = &["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];
/// Exit status of systemd-nspawn when the container rebooted.
pub const REBOOT_EXIT: i32 = 133;

/// Whether this machine can boot a container at all; `Err` names what is missing.
pub fn prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    for tool in ["systemd-nspawn", "mmdebstrap", "nsenter", "tar"] {
        if !run_cmd("sh", &["-c", &format!("command -v {tool}")], Duration::from_secs(5)).ok() {
            missing.push(format!("{tool} (scripts/setup installs it)"));
        }
    }
    if unified_root().is_none() {
        missing.push("a cgroup v2 hierarchy (/sys/fs/cgroup/unified or /sys/fs/cgroup)".into());
    }
    if missing.is_empty() { Ok(()) } else { Err(missing.join(", ")) }
}

/// The unified hierarchy's mount point, if one is mounted (it has `cgroup.procs`).
fn unified_root() -> Option<&'static str> {
    UNIFIED
        .iter()
        .copied()
        .find(|p| Path::new(p).join("cgroup.procs").exists() && Path::new(p).join("cgroup.controllers").exists())
}

/// The cgroup hierarchies a boot's cgroup is made in: the unified one, and the v1
/// `name=systemd` one when the host has it (hybrid mode: nspawn puts the container there).
fn hierarchies() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = unified_root().into_iter().map(PathBuf::from).collect();
    let v1 = Path::new("/sys/fs/cgroup/systemd");
    if v1.join("cgroup.procs").exists() && !v.iter().any(|p| p == v1) {
        v.push(v1.to_path_buf());
    }
    v
}

/// The Debian mirror the host uses (deb822 `URIs:` of a stanza for [`SUITE`], or a
/// one-line `deb` entry), else deb.debian.org.
fn mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.extend(std::fs::read_to_string(e.path()));
        }
    }
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list"));
    for t in &texts {
        for stanza in t.split("\n\n") {
            let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && suites.split_whitespace().any(|s| s == SUITE)
                && !uris.contains("security")
            {
                return uris.split_whitespace().next().unwrap_or_default().to_string();
            }
        }
        for l in t.lines() {
            let w: Vec<&str> = l.split_whitespace().filter(|w| !w.starts_with('[')).collect();
            if w.len() >= 3 && w[0] == "deb" && w[2] == SUITE {
                return w[1].to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The mmdebstrap arguments (without the output path) for [`PACKAGES`] plus `extra`:
/// what the cache key hashes.
fn recipe(mirror: &str, extra: &[&str]) -> Vec<String> {
    let packages: Vec<&str> = PACKAGES.iter().chain(extra).copied().collect();
    vec!["--variant=minbase".into(), "--format=tar".into(), format!("--include={}", packages.join(",")), SUITE.into()]
        .into_iter()
        .chain(std::iter::once(format!("#OUT#{mirror}#v{RECIPE_VERSION}")))
        .collect()
}

/// FNV-1a, 64 bits: a stable key for the recipe (std's hasher is not stable across runs).
fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether `/proc/PID` is gone (the process that made a leftover no longer runs).
fn dead(pid: &str) -> bool {
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !Path::new("/proc").join(pid).exists()
}

/// The pid in a name `ehn-<pid>-...`, if it has that form.
fn owner(name: &str) -> Option<&str> {
    name.strip_prefix("ehn-")?.split('-').next()
}

static IMAGE: std::sync::Mutex<Vec<(Vec<String>, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// The image tarball: cached under [`IMAGE_DIR`] keyed by a hash of its recipe, built
/// (about a minute) when missing. A build goes to a temp file renamed into place.
pub fn image() -> PathBuf {
    image_with(&[])
}

/// [`image`] with the Debian packages `extra` installed too (a tarball of its own).
pub fn image_with(extra: &[&str]) -> PathBuf {
    let mut cached = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
    let key_of: Vec<String> = extra.iter().map(|p| p.to_string()).collect();
    if let Some((_, p)) = cached.iter().find(|(k, _)| *k == key_of) {
        return p.clone();
    }
    let mirror = mirror();
    let args = recipe(&mirror, extra);
    let key = fnv64(&args.join("\n"));
    std::fs::create_dir_all(IMAGE_DIR).unwrap_or_else(|e| panic!("mkdir {IMAGE_DIR}: {e}"));
    let path = Path::new(IMAGE_DIR).join(format!("debian12-{key:016x}.tar"));
    if !path.exists() {
        // Temp files of killed builds: `debian12-*.tmp-<pid>.tar` whose pid is gone.
        for e in std::fs::read_dir(IMAGE_DIR).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.split(".tmp-").nth(1).and_then(|r| r.strip_suffix(".tar"))
                && dead(pid)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let tmp = Path::new(IMAGE_DIR).join(format!("debian12-{key:016x}.tmp-{}.tar", std::process::id()));
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(&args[..args.len() - 1]).arg(&tmp).arg(&mirror);
        eprintln!("[nspawn] building the image {} (mmdebstrap, about a minute)", path.display());
        let out = run_cmd_with(&mut cmd, Duration::from_secs(600));
        if !out.ok() {
            let _ = std::fs::remove_file(&tmp);
            panic!("building the boot image failed: {out}");
        }
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
    }
    cached.push((key_of, path.clone()));
    path
}

static STALE: Once = Once::new();

/// Removes what killed test processes left (names `ehn-<pid>-...` whose pid is gone):
/// their boots' cgroups (processes killed first), nspawn's propagation folders, their
/// temp folders (rootfs included, mounts under them unmounted first). Once per test process.
pub fn remove_stale() {
    STALE.call_once(|| {
        for h in hierarchies() {
            for e in std::fs::read_dir(&h).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if owner(&n).is_some_and(dead) && n.ends_with("-boot") {
                    kill_cgroup(&e.path());
                    remove_cgroup_tree(&e.path());
                }
            }
        }
        for e in std::fs::read_dir("/run/systemd/nspawn/propagate").into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if owner(&n).is_some_and(dead) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Every temp folder the harness names `ehn-<pid>-...` (tests/support TempDir):
            // rootfs folders, and the small ones beside them.
            if owner(&n).is_some_and(dead) && e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_file(nspawn_lock(&e.path()));
                unmount_under(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
}

/// `cgroup.kill` on the unified cgroup at `dir` (every process in it and below), then
/// waits (up to 10 s) until it is empty.
fn kill_cgroup(dir: &Path) {
    let kill = dir.join("cgroup.kill");
    if kill.exists() {
        let _ = std::fs::write(&kill, "1");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !cgroup_procs(dir).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every pid in the cgroup at `dir` and below.
fn cgroup_procs(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(cgroup_procs(&e.path()));
        }
    }
    pids
}

/// Removes the cgroup at `dir` and its children, deepest first (rmdir: a cgroup is
/// removed only once empty).
fn remove_cgroup_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if dir.exists() {
        eprintln!("[nspawn] cannot remove cgroup {}", dir.display());
    }
}

/// Unmounts (lazily, deepest first) whatever is mounted at or under `dir` in this mount
/// namespace, so that removing `dir` never descends into a mount.
fn unmount_under(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let out = run_cmd("umount", &["-l", &p], Duration::from_secs(10));
        if !out.ok() {
            eprintln!("[nspawn] cannot unmount {p}: {out}");
        }
    }
}

/// A temp folder holding an extracted image, removed in Drop (mounts under it first).
pub struct Rootfs {
    pub dir: TempDir,
}

impl Rootfs {
    /// Extracts the image (owners and modes as in the tarball).
    pub fn extract() -> Rootfs {
        Rootfs::extract_with(&[])
    }

    /// Extracts [`image_with`]`(extra)`.
    pub fn extract_with(extra: &[&str]) -> Rootfs {
        remove_stale();
        let image = image_with(extra);
        let dir = TempDir::new("rootfs");
        let out = run_cmd(
            "tar",
            &["-xf", &image.to_string_lossy(), "-C", &dir.path().to_string_lossy(), "--numeric-owner"],
            Duration::from_secs(120),
        );
        assert!(out.ok(), "extracting {}: {out}", image.display());
        Rootfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` (relative to the rootfs root) as a host path.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.path().join(rel.trim_start_matches('/'))
    }

    /// Writes `rel` with `text` (mode 0644), making its folders.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.at(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Makes the symlink `rel` -> `target` (an absolute path as seen inside), replacing one.
    pub fn link(&self, rel: &str, target: &str) {
        let p = self.at(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(target, &p).unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
        // the TempDir (a field) removes the folder after this
    }
}

/// One boot of a rootfs: systemd-nspawn running in its own cgroups, in the network
/// namespace given. Drop kills what is left of it and removes its cgroups and nspawn's
/// leftovers; a test panicking prints the console log's tail and the container's journal.
pub struct Boot {
    pub name: String,
    /// PID (in this PID namespace) of the container's PID 1, for nsenter.
    pub leader: i32,
    child: Option<Child>,
    cgroups: Vec<PathBuf>,
    log: PathBuf,
    /// nspawn's lock on the rootfs (`/run/systemd/nspawn/locks/inode-DEV:INO`), which it
    /// leaves behind.
    lock: PathBuf,
}

/// The lock file nspawn makes for the image folder `dir` (named by its device and inode).
fn nspawn_lock(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).unwrap_or_else(|e| panic!("stat {}: {e}", dir.display()));
    Path::new("/run/systemd/nspawn/locks").join(format!("inode-{}:{}", m.dev(), m.ino()))
}

impl Boot {
    /// Boots `rootfs` in `netns`, console appended to `log`, and waits (up to 60 s) until
    /// systemd inside says the boot is done (`running`, or `degraded`: then the failed
    /// units are printed).
    pub fn start(rootfs: &Rootfs, netns: &Netns, log: &Path) -> Boot {
        remove_stale();
        let name = unique_name("boot");
        let cgroups: Vec<PathBuf> = hierarchies().into_iter().map(|h| h.join(&name)).collect();
        assert!(!cgroups.is_empty(), "no cgroup hierarchy to run systemd-nspawn in");
        let mut boot = Boot {
            name: name.clone(),
            leader: 0,
            child: None,
            cgroups: Vec::new(),
            log: log.to_path_buf(),
            lock: nspawn_lock(rootfs.path()),
        };
        for c in &cgroups {
            std::fs::create_dir(c).unwrap_or_else(|e| panic!("mkdir {}: {e}", c.display()));
            boot.cgroups.push(c.clone());
        }
        // The shell puts itself into the cgroups, then becomes nspawn (no unsafe pre_exec).
        let enter: String = cgroups.iter().map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display())).collect();
        let console = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("console log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{enter}exec systemd-nspawn \"$@\""))
            .arg("sh")
            .args(["--boot", "--register=no", "--keep-unit", "--console=read-only", "--quiet"])
            // nspawn grants CAP_NET_ADMIN only with a network namespace it made itself; this
            // one is the test's own, so the machine may administer it like a host.
            .arg("--capability=CAP_NET_ADMIN")
            // And /proc/sys/net writable (route_localnet), as nspawn does for its own
            // network namespaces (systemd's docs/ENVIRONMENT.md); it is the test's namespace.
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
            .arg(format!("--network-namespace-path={}", netns.path()))
            .arg(format!("--machine={name}"))
            .arg("-D")
            .arg(rootfs.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("spawn systemd-nspawn");
        boot.child = Some(child);
        boot.leader = boot.find_leader();
        boot.wait_booted();
        boot
    }

    /// The container's PID 1: the process in our cgroups whose PID in its own namespace is 1.
    fn find_leader(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for pid in cgroup_procs(&self.cgroups[0]) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
                let ids: Vec<&str> = nspid.split_whitespace().collect();
                if ids.len() >= 2 && ids.last() == Some(&"1") {
                    return pid;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("systemd-nspawn exited ({st}) before the container started:\n{}", self.log_tail(60));
            }
            assert!(Instant::now() < deadline, "no container PID 1 after 20 s:\n{}", self.log_tail(60));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until systemd inside finished booting; returns its state.
    pub fn wait_booted(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.sh("systemctl is-system-running --wait");
            let state = out.stdout.trim().to_string();
            match state.as_str() {
                "running" => return state,
                "degraded" => {
                    eprintln!(
                        "[nspawn] {} booted degraded; failed units:\n{}",
                        self.name,
                        self.sh(
                            "systemctl --failed --no-legend --no-pager; journalctl -b -p warning --no-pager | tail -40"
                        )
                        .stdout
                    );
                    return state;
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the container did not finish booting in 60 s ({out}):\n{}",
                self.log_tail(80)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` with /bin/sh inside the container (all its namespaces), 60 s at most.
    pub fn sh(&self, script: &str) -> Out {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "--", "/bin/sh", "-c", script]);
        let mut out = run_cmd_with(&mut cmd, Duration::from_secs(60));
        out.cmdline = format!("[inside {}] {script}", self.name);
        out
    }

    /// [`Boot::sh`] that must exit 0; its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.ok(), "{out}");
        out.stdout
    }

    /// `systemctl reboot` inside; waits for nspawn to exit and returns its exit status
    /// (133 for a reboot). The cgroups are removed; boot the rootfs again with [`Boot::start`].
    pub fn reboot(mut self) -> i32 {
        let _ = self.sh("systemctl reboot");
        self.wait_exit()
    }

    /// `systemctl poweroff` inside; waits for nspawn to exit; returns its exit status.
    pub fn poweroff(mut self) -> i32 {
        let _ = self.sh("systemctl poweroff");
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = self.child.take().expect("nspawn child");
        loop {
            if let Some(st) = child.try_wait().expect("wait nspawn") {
                self.cleanup();
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!("systemd-nspawn did not exit within 60 s:\n{}", self.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` lines of the console log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills what is left (through the unified cgroup), reaps nspawn, removes the cgroups
    /// and nspawn's /run/systemd/nspawn leftovers of this machine. Idempotent.
    fn cleanup(&mut self) {
        if let Some(unified) = self.cgroups.first() {
            kill_cgroup(unified);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in std::mem::take(&mut self.cgroups) {
            remove_cgroup_tree(&c);
        }
        let _ = std::fs::remove_dir_all(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
        let _ = std::fs::remove_file(&self.lock);
        // Only when empty: another boot may be using them.
        for d in ["/run/systemd/nspawn/propagate", "/run/systemd/nspawn/locks", "/run/systemd/nspawn"] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "[nspawn] {} console (last lines):\n{}\n[nspawn] journal (last lines):\n{}",
                self.name,
                self.log_tail(80),
                self.sh("journalctl -b --no-pager | tail -80").stdout
            );
        }
        self.cleanup();
    }
}
