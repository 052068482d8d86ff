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
//! | [`NFT_DROPIN_PATH`] | `apply` again after each start, reload and stop of `nftables.service`, whose commands flush every table |
//! | [`WATCH_UNIT_PATH`] | `ecs-hostnet watch`, the resident repairer (only with `watch.enabled = true`) |
//! | [`WATCH_WANTS_LINK`] | its enablement (`WantedBy=multi-user.target`) |
//! | [`METRICS_SERVICE_PATH`], [`METRICS_TIMER_PATH`] | `ecs-hostnet status` every 30 s, writing `metrics.textfile` (only when it is set) |
//! | [`METRICS_WANTS_LINK`] | the timer's enablement (`WantedBy=timers.target`) |
//! | [`BIN_PATH`] | the binary the units run |
//!
//! Beside the ecs-hostnet package (.deb/.rpm, [`PACKAGE`]) the binary is the package's
//! [`PKG_BIN_PATH`] and the two units are the package's [`PKG_UNIT_PATH`] and
//! [`PKG_WATCH_UNIT_PATH`] (and the metrics units, [`PKG_METRICS_SERVICE_PATH`] and
//! [`PKG_METRICS_TIMER_PATH`]): install writes none of them, only the enablement links (pointing at
//! them), the configuration, the two drop-ins and the agent keys. Every unit and drop-in
//! text is made by the functions below from a [`Layout`], whoever writes it: `install`, or
//! `generate-units` for the package.
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
/// The drop-in for nftables.service that applies again after its commands (see
/// [`nft_dropin_text`]).
pub const NFT_DROPIN_PATH: &str = "/etc/systemd/system/nftables.service.d/ecs-hostnet.conf";
/// The watch unit (see [`watch_unit_text`]).
pub const WATCH_UNIT_PATH: &str = "/etc/systemd/system/ecs-hostnet-watch.service";
/// The watch unit's name, as systemctl takes it.
pub const WATCH_UNIT: &str = "ecs-hostnet-watch.service";
/// The watch unit's enablement symlink.
pub const WATCH_WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/ecs-hostnet-watch.service";
/// The metrics service (see [`metrics_service_text`]).
pub const METRICS_SERVICE_PATH: &str = "/etc/systemd/system/ecs-hostnet-metrics.service";
/// The metrics timer (see [`metrics_timer_text`]).
pub const METRICS_TIMER_PATH: &str = "/etc/systemd/system/ecs-hostnet-metrics.timer";
/// The metrics service's name, as systemctl takes it.
pub const METRICS_SERVICE: &str = "ecs-hostnet-metrics.service";
/// The metrics timer's name, as systemctl takes it.
pub const METRICS_TIMER: &str = "ecs-hostnet-metrics.timer";
/// The metrics timer's enablement symlink (`WantedBy=timers.target`, what `systemctl
/// enable` makes).
pub const METRICS_WANTS_LINK: &str = "/etc/systemd/system/timers.target.wants/ecs-hostnet-metrics.timer";
/// The ECS agent's environment file.
pub const ECS_CONFIG_PATH: &str = "/etc/ecs/ecs.config";
/// What install did, for uninstall and drift checks.
pub const STATE_PATH: &str = "/var/lib/ecs-hostnet/install.json";

/// The package's binary (Debian policy and Fedora's: a system administration command in
/// /usr/sbin, owned by the package manager).
pub const PKG_BIN_PATH: &str = "/usr/sbin/ecs-hostnet";
/// The package's boot unit: vendor units live in /usr/lib/systemd/system (systemd.unit(5)),
/// where /etc/systemd/system overrides them.
pub const PKG_UNIT_PATH: &str = "/usr/lib/systemd/system/ecs-hostnet.service";
/// The package's watch unit.
pub const PKG_WATCH_UNIT_PATH: &str = "/usr/lib/systemd/system/ecs-hostnet-watch.service";

/// The package's metrics service.
pub const PKG_METRICS_SERVICE_PATH: &str = "/usr/lib/systemd/system/ecs-hostnet-metrics.service";
/// The package's metrics timer.
pub const PKG_METRICS_TIMER_PATH: &str = "/usr/lib/systemd/system/ecs-hostnet-metrics.timer";

/// Where the binary the units run and the unit files are: installed from a tarball or
/// source by `install` ([`LOCAL`]), or shipped by the package ([`PACKAGE`]). The drop-ins,
/// the configuration and the enablement links are at the same paths in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The binary the units and drop-ins run.
    pub bin: &'static str,
    /// The boot unit; the target of [`WANTS_LINK`].
    pub unit: &'static str,
    /// The watch unit; the target of [`WATCH_WANTS_LINK`].
    pub watch_unit: &'static str,
    /// The metrics service, which the timer starts.
    pub metrics_service: &'static str,
    /// The metrics timer; the target of [`METRICS_WANTS_LINK`].
    pub metrics_timer: &'static str,
    /// Whether the binary and units belong to the package manager (then install never
    /// writes them, and uninstall never removes them).
    pub package: bool,
}

/// `install` from a tarball or the source tree: it copies itself to [`BIN_PATH`] and
/// writes the units into /etc/systemd/system.
pub const LOCAL: Layout = Layout {
    bin: BIN_PATH,
    unit: UNIT_PATH,
    watch_unit: WATCH_UNIT_PATH,
    metrics_service: METRICS_SERVICE_PATH,
    metrics_timer: METRICS_TIMER_PATH,
    package: false,
};
/// The .deb/.rpm: binary in /usr/sbin, units in /usr/lib/systemd/system.
pub const PACKAGE: Layout = Layout {
    bin: PKG_BIN_PATH,
    unit: PKG_UNIT_PATH,
    watch_unit: PKG_WATCH_UNIT_PATH,
    metrics_service: PKG_METRICS_SERVICE_PATH,
    metrics_timer: PKG_METRICS_TIMER_PATH,
    package: true,
};

impl Layout {
    /// [`PACKAGE`] when `package`, else [`LOCAL`] (as an install state records it).
    pub fn of(package: bool) -> Layout {
        if package { PACKAGE } else { LOCAL }
    }

    /// The first comment lines of a unit file of this layout: who put it there and what
    /// removes it.
    fn unit_header(&self) -> &'static str {
        if self.package {
            "# Shipped by the ecs-hostnet package, not enabled by it: `ecs-hostnet install` enables it,\n\
             # `ecs-hostnet uninstall` disables it.\n"
        } else {
            "# Installed by `ecs-hostnet install`; `ecs-hostnet uninstall` removes it.\n"
        }
    }
}

/// The boot unit. Ordered like Debian's `nftables.service` (no default dependencies,
/// before `network-pre.target`), and before `docker.service` and `ecs.service`, so the
/// guards and the IMDS block exist before any container or agent runs.
///
/// It is also ordered after `nftables.service` and `firewalld.service` (ordering only: it
/// never pulls them in), so that their flush at boot (`flush ruleset` at the top of
/// /etc/nftables.conf) lands before our apply, never after it. No ordering cycle results:
/// firewalld.service has default dependencies (after basic.target, so after
/// sysinit.target), and this unit, though wanted by sysinit.target, has
/// `DefaultDependencies=no` and no `Before=sysinit.target`: with firewalld enabled it
/// simply runs after basic.target, still before network-pre.target, docker.service and
/// ecs.service (which firewalld's own `Before=network-pre.target` keeps after it too).
pub fn unit_text(layout: &Layout) -> String {
    let (header, bin) = (layout.unit_header(), layout.bin);
    format!(
        "{header}\
         # After nftables.service and firewalld.service: ordering only (this unit never starts\n\
         # them), so their flush at boot comes before our apply. No cycle: firewalld.service is\n\
         # after basic.target, and this unit (DefaultDependencies=no) is not before sysinit.target.\n\
         [Unit]\n\
         Description=ECS task IAM role host networking (ecs-hostnet apply)\n\
         Documentation=file://{CONFIG_PATH}\n\
         DefaultDependencies=no\n\
         After=local-fs.target nftables.service firewalld.service\n\
         Wants=network-pre.target\n\
         Before=network-pre.target docker.service ecs.service shutdown.target\n\
         Conflicts=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         StandardInput=null\n\
         ExecStart={bin} apply\n\
         \n\
         [Install]\n\
         WantedBy=sysinit.target\n"
    )
}

/// The drop-in for `nftables.service` ([`NFT_DROPIN_PATH`]): `apply` after each of the
/// unit's own commands, all of which flush every table (Debian: `ExecStart=` and
/// `ExecReload=` run `nft -f /etc/nftables.conf`, which starts with `flush ruleset`;
/// `ExecStop=nft flush ruleset`; the Fedora family alike).
///
/// systemd's semantics (systemd.service(5)): Exec lines of a drop-in are appended after the
/// unit's, and run in order, so `ExecStartPost=` runs after `nft -f` succeeded,
/// `ExecReload=` after the unit's reload command, and `ExecStopPost=` after `ExecStop=`
/// and also after a failed start (our rule set comes back even when their file is broken).
/// `restart` is stop then start: both run. The `-` prefix: a failure of ours is logged
/// and never fails THEIR firewall unit. `--kernel-only`: nftables.service runs under
/// `ProtectSystem=full` (/etc read-only), so a drifted installed file could not be repaired
/// there and would stop the whole apply; files are the boot unit's and the hook's job. At boot the first `apply` may fail (nftables.service
/// runs before local file systems) and is then made by the boot unit, ordered after it.
/// Inert while nftables.service does not exist; it takes effect once it is installed.
/// `bin`: the binary to run ([`Layout::bin`]).
pub fn nft_dropin_text(bin: &str) -> String {
    format!(
        "# Installed by `ecs-hostnet install`: nftables.service flushes every table when it\n\
         # starts, reloads and stops; ecs-hostnet applies its rule set again after each of them\n\
         # (a failure of ours, with `-`, never fails nftables.service; it is in the journal).\n\
         # `ecs-hostnet uninstall` removes it.\n\
         [Service]\n\
         ExecStartPost=-{bin} apply --kernel-only\n\
         ExecReload=-{bin} apply --kernel-only\n\
         ExecStopPost=-{bin} apply --kernel-only\n"
    )
}

/// The watch unit ([`WATCH_UNIT_PATH`]): `ecs-hostnet watch`, which converges at start,
/// says `READY=1` through sd_notify (`Type=notify`), reloads its configuration on SIGHUP
/// and exits 0 on SIGTERM leaving the rule set in place. Restarted when it fails.
///
/// Hardening that leaves what it needs: writing route_localnet under /proc/sys/net (so no
/// `ProtectKernelTunables=`), netlink (`AF_NETLINK`) in the host's network namespace, the
/// lock and records in /run/ecs-hostnet (`ProtectSystem=full` leaves /run and /var writable;
/// the watcher repairs no installed file: that is apply's job), sd_notify (`AF_UNIX`). No
/// `CapabilityBoundingSet=`: the lock and pid-file checks read `/proc/PID/exe` of other root
/// processes, which a reduced capability set may not (ptrace access rules). No
/// `WatchdogSec=`: a watchdog wakes the process periodically, and idle it uses no CPU at all;
/// a drop-in can set one (the watcher then pings at half the interval).
///
/// `install` enables it only with `watch.enabled = true` in the configuration.
pub fn watch_unit_text(layout: &Layout) -> String {
    let bin = layout.bin;
    let header = if layout.package {
        format!(
            "# Shipped by the ecs-hostnet package, not enabled by it: `ecs-hostnet install` enables it\n\
             # when watch.enabled = true in {CONFIG_PATH}; `ecs-hostnet uninstall` disables it.\n"
        )
    } else {
        format!(
            "# Installed by `ecs-hostnet install` (watch.enabled = true in {CONFIG_PATH});\n\
             # `ecs-hostnet uninstall` removes it.\n"
        )
    };
    format!(
        "{header}\
         [Unit]\n\
         Description=ECS task IAM role host networking: repairs the rule set (ecs-hostnet watch)\n\
         Documentation=file://{CONFIG_PATH}\n\
         After=ecs-hostnet.service nftables.service firewalld.service\n\
         \n\
         [Service]\n\
         Type=notify\n\
         ExecStart={bin} watch\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         StandardInput=null\n\
         {SANDBOX}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The hardening the watch unit and the metrics service share: both only read and write
/// netlink in the host's network namespace, files under /run and /var, and /proc. See
/// [`watch_unit_text`] for why no `ProtectKernelTunables=` (the watcher writes
/// route_localnet) and no `CapabilityBoundingSet=` there.
const SANDBOX: &str = "NoNewPrivileges=yes\n\
     ProtectHome=yes\n\
     PrivateTmp=yes\n\
     ProtectControlGroups=yes\n\
     LockPersonality=yes\n\
     RestrictRealtime=yes\n\
     RestrictSUIDSGID=yes\n\
     ProtectSystem=full\n\
     ProtectKernelModules=yes\n\
     ProtectKernelLogs=yes\n\
     ProtectClock=yes\n\
     ProtectHostname=yes\n\
     RestrictAddressFamilies=AF_NETLINK AF_UNIX\n\
     RestrictNamespaces=yes\n\
     MemoryDenyWriteExecute=yes\n\
     SystemCallArchitectures=native\n";

/// The metrics service ([`METRICS_SERVICE_PATH`]), started by the timer
/// ([`metrics_timer_text`]): one `ecs-hostnet status --format prometheus`, which writes the
/// exposition to `metrics.textfile` atomically (temporary file, fsync, rename) for
/// node_exporter's textfile collector.
///
/// - `Type=oneshot`, no `[Install]`: only the timer starts it.
/// - `SuccessExitStatus=2`: status exits 2 when the host is not converged or a finding
///   blocks, after it wrote the textfile (whose gauges say so); only 1, an error (nothing
///   written), fails the unit.
/// - `StandardOutput=null`: the exposition is in the textfile, not in the journal every 30 s;
///   `LogLevelMax=notice` drops the info lines (and systemd's own Starting/Finished lines
///   about the unit) for the same reason; errors stay.
/// - The watch unit's sandbox, plus `ProtectKernelTunables=yes` (status reads /proc/sys,
///   never writes it). `ProtectSystem=full`, not `strict` with `ReadWritePaths=`: the
///   textfile's folder comes from the configuration, which changes without the unit (and the
///   package's unit is the same on every host); `full` leaves /var (node_exporter's
///   /var/lib/node_exporter/textfile) and /run writable and makes /usr, /boot and /etc
///   read-only, so a textfile under those fails with an error in the journal.
pub fn metrics_service_text(layout: &Layout) -> String {
    let bin = layout.bin;
    format!(
        "{header}\
         [Unit]\n\
         Description=ECS task IAM role host networking: metrics textfile (ecs-hostnet status)\n\
         Documentation=file://{CONFIG_PATH}\n\
         After=ecs-hostnet.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={bin} status --format prometheus\n\
         SuccessExitStatus=2\n\
         StandardInput=null\n\
         StandardOutput=null\n\
         LogLevelMax=notice\n\
         {SANDBOX}\
         ProtectKernelTunables=yes\n",
        header = metrics_header(layout, METRICS_SERVICE)
    )
}

/// The metrics timer ([`METRICS_TIMER_PATH`]): starts [`metrics_service_text`]'s service 30 s
/// after boot, then 30 s after each start (node_exporter is typically scraped every 15-60 s;
/// a run reads the kernel once, in milliseconds). `AccuracySec=5s` lets systemd batch
/// wake-ups within 5 s instead of its default minute, which would make the file up to 90 s
/// old. `install` enables it only when `metrics.textfile` is set.
pub fn metrics_timer_text(layout: &Layout) -> String {
    format!(
        "{header}\
         [Unit]\n\
         Description=ECS task IAM role host networking: metrics textfile every 30 s\n\
         Documentation=file://{CONFIG_PATH}\n\
         \n\
         [Timer]\n\
         OnBootSec=30s\n\
         OnUnitActiveSec=30s\n\
         AccuracySec=5s\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        header = metrics_header(layout, METRICS_TIMER)
    )
}

/// The first comment lines of the metrics units: who put them there, when install enables
/// the timer, what removes it.
fn metrics_header(layout: &Layout, name: &str) -> String {
    if layout.package {
        format!(
            "# {name}: shipped by the ecs-hostnet package, not enabled by it: `ecs-hostnet install`\n\
             # enables the timer when metrics.textfile is set in {CONFIG_PATH};\n\
             # `ecs-hostnet uninstall` disables it.\n"
        )
    } else {
        format!(
            "# {name}: installed by `ecs-hostnet install` (metrics.textfile is set in\n\
             # {CONFIG_PATH}); `ecs-hostnet uninstall` removes it.\n"
        )
    }
}

/// The ecs-init hook for `boot.agent_on_error`: `apply` runs before the agent starts. With
/// [`AgentOnError::Block`] the agent never starts on a host that is not converged; with
/// [`AgentOnError::Start`] the `-` prefix makes systemd ignore a failed apply, whose error is
/// in the journal at priority err. `bin`: the binary to run ([`Layout::bin`]).
///
/// Never shipped by the package: its text follows the configuration, so `install` writes it.
pub fn dropin_text(on_error: AgentOnError, bin: &str) -> String {
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
    format!("{comment}[Unit]\nAfter=ecs-hostnet.service\n\n[Service]\nExecStartPre={prefix}{bin} apply\n")
}

/// The hook [`text_files`] writes for the configuration whose file content is
/// `config_text`: [`dropin_text`] of its `boot.agent_on_error` (the default's when the text
/// is not a valid configuration, which install never writes), running `bin`.
pub fn configured_dropin(config_text: &[u8], bin: &str) -> String {
    let on_error = std::str::from_utf8(config_text)
        .ok()
        .and_then(|t| config::parse("", t).ok())
        .map_or(AgentOnError::Block, |c| c.boot.agent_on_error.v);
    dropin_text(on_error, bin)
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

/// Whether the configuration whose file content is `config_text` wants the watch unit
/// (`watch.enabled`; the default's `true` when the text is not a valid configuration, which
/// install never writes).
pub fn configured_watch(config_text: &[u8]) -> bool {
    std::str::from_utf8(config_text).ok().and_then(|t| config::parse("", t).ok()).is_none_or(|c| c.watch.enabled.v)
}

/// Whether the configuration whose file content is `config_text` wants the metrics timer
/// (`metrics.textfile` set; off when the text is not a valid configuration, which install
/// never writes).
pub fn configured_metrics(config_text: &[u8]) -> bool {
    std::str::from_utf8(config_text)
        .ok()
        .and_then(|t| config::parse("", t).ok())
        .is_some_and(|c| c.metrics.textfile.v.0.is_some())
}

/// A unit install enables only when the configuration asks for it, and takes back when it
/// no longer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optional {
    /// The watch unit (`watch.enabled`).
    Watch,
    /// The metrics timer and its service (`metrics.textfile` set).
    Metrics,
}

impl Optional {
    /// Both, in the order install handles them.
    pub const ALL: [Optional; 2] = [Optional::Watch, Optional::Metrics];

    /// The unit systemctl starts, stops and enables: the watch service, the metrics timer.
    pub fn unit(self) -> &'static str {
        match self {
            Optional::Watch => WATCH_UNIT,
            Optional::Metrics => METRICS_TIMER,
        }
    }

    /// Its enablement symlink.
    pub fn link(self) -> &'static str {
        match self {
            Optional::Watch => WATCH_WANTS_LINK,
            Optional::Metrics => METRICS_WANTS_LINK,
        }
    }

    /// The unit file the link points at in `layout`.
    pub fn target(self, layout: &Layout) -> &'static str {
        match self {
            Optional::Watch => layout.watch_unit,
            Optional::Metrics => layout.metrics_timer,
        }
    }

    /// The unit files install writes for it from a tarball or source ([`LOCAL`]); the last
    /// is the link's target.
    pub fn local_files(self) -> &'static [&'static str] {
        match self {
            Optional::Watch => &[WATCH_UNIT_PATH],
            Optional::Metrics => &[METRICS_SERVICE_PATH, METRICS_TIMER_PATH],
        }
    }

    /// Whether the configuration whose file content is `config_text` wants it.
    pub fn configured(self, config_text: &[u8]) -> bool {
        match self {
            Optional::Watch => configured_watch(config_text),
            Optional::Metrics => configured_metrics(config_text),
        }
    }
}

/// The text files install writes for a configuration whose file content is `config_text`
/// (the hook follows its `boot.agent_on_error`, see [`configured_dropin`]; the watch unit
/// is there only with `watch.enabled`, see [`configured_watch`]) in `layout`: with
/// [`PACKAGE`] no unit file (the package's are used), only the configuration and the two
/// drop-ins, which run the package's binary.
pub fn text_files(config_text: &[u8], layout: &Layout) -> Vec<TextFile> {
    let bin = layout.bin;
    let mut files = vec![TextFile { path: CONFIG_PATH, content: config_text.to_vec(), mode: 0o644 }];
    if !layout.package {
        files.push(TextFile { path: UNIT_PATH, content: unit_text(layout).into_bytes(), mode: 0o644 });
    }
    files.push(TextFile { path: DROPIN_PATH, content: configured_dropin(config_text, bin).into_bytes(), mode: 0o644 });
    files.push(TextFile { path: NFT_DROPIN_PATH, content: nft_dropin_text(bin).into_bytes(), mode: 0o644 });
    if configured_watch(config_text) && !layout.package {
        files.push(TextFile { path: WATCH_UNIT_PATH, content: watch_unit_text(layout).into_bytes(), mode: 0o644 });
    }
    if configured_metrics(config_text) && !layout.package {
        let service = metrics_service_text(layout).into_bytes();
        files.push(TextFile { path: METRICS_SERVICE_PATH, content: service, mode: 0o644 });
        files.push(TextFile {
            path: METRICS_TIMER_PATH,
            content: metrics_timer_text(layout).into_bytes(),
            mode: 0o644,
        });
    }
    files
}

/// The unit files of `layout`, as (file name, text): the boot unit, the watch unit and the
/// metrics service and timer. [`PACKAGE`]'s are what the package ships in
/// /usr/lib/systemd/system (`generate-units`); [`LOCAL`]'s what install writes into
/// /etc/systemd/system (`generate-units --local`, for the tarball).
pub fn units(layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        ("ecs-hostnet.service", unit_text(layout)),
        (WATCH_UNIT, watch_unit_text(layout)),
        (METRICS_SERVICE, metrics_service_text(layout)),
        (METRICS_TIMER, metrics_timer_text(layout)),
    ]
}

/// The unit files the package ships ([`units`] of [`PACKAGE`]).
pub fn package_units() -> Vec<(&'static str, String)> {
    units(&PACKAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(config: &str) -> Vec<&'static str> {
        text_files(config.as_bytes(), &LOCAL).into_iter().map(|f| f.path).collect()
    }

    #[test]
    fn the_watch_unit_is_written_only_with_watch_enabled() {
        let on = crate::config::DEFAULT_TOML;
        assert!(configured_watch(on.as_bytes()) && paths(on).contains(&WATCH_UNIT_PATH), "{:?}", paths(on));
        let at = on.find("[watch]").unwrap();
        let off = format!("{}{}", &on[..at], on[at..].replacen("enabled = true", "enabled = false", 1));
        assert!(!configured_watch(off.as_bytes()), "{off}");
        let p = paths(&off);
        assert!(!p.contains(&WATCH_UNIT_PATH), "{p:?}");
        // The nftables.service drop-in is written either way: it covers hosts without a watcher.
        assert!(p.contains(&NFT_DROPIN_PATH) && paths(on).contains(&NFT_DROPIN_PATH), "{p:?}");
    }

    #[test]
    fn the_boot_unit_is_ordered_after_other_firewalls_without_pulling_them_in() {
        let unit = unit_text(&LOCAL);
        let key = |k: &str| -> Vec<String> {
            unit.lines().filter_map(|l| l.strip_prefix(k)).flat_map(|v| v.split(' ').map(str::to_string)).collect()
        };
        let after = key("After=");
        assert!(after.contains(&"nftables.service".into()) && after.contains(&"firewalld.service".into()), "{unit}");
        for pull in ["Wants=", "Requires=", "BindsTo=", "Requisite="] {
            let v = key(pull);
            assert!(!v.iter().any(|u| u == "nftables.service" || u == "firewalld.service"), "{pull} {v:?}");
        }
        let before = key("Before=");
        for u in ["network-pre.target", "docker.service", "ecs.service"] {
            assert!(before.contains(&u.to_string()), "{u} not in Before= of\n{unit}");
        }
        assert!(unit.contains("\nDefaultDependencies=no\n"), "{unit}");
    }

    #[test]
    fn the_nftables_dropin_applies_after_each_command_and_never_fails_their_unit() {
        let d = nft_dropin_text(BIN_PATH);
        for k in ["ExecStartPost", "ExecReload", "ExecStopPost"] {
            assert!(d.contains(&format!("\n{k}=-{BIN_PATH} apply --kernel-only\n")), "{k} in\n{d}");
        }
        // No reset line (`ExecReload=` alone) that would drop nftables' own reload command.
        assert!(!d.lines().any(|l| l.ends_with('=')), "{d}");
    }

    #[test]
    fn the_watch_unit_is_a_notify_service_that_may_write_proc_sys() {
        let w = watch_unit_text(&LOCAL);
        for l in [
            "Type=notify",
            &format!("ExecStart={BIN_PATH} watch"),
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "After=ecs-hostnet.service nftables.service firewalld.service",
            "WantedBy=multi-user.target",
        ] {
            assert!(w.lines().any(|x| x == l), "{l} not in\n{w}");
        }
        for forbidden in ["ProtectKernelTunables", "ProtectSystem=strict", "PrivateNetwork", "CapabilityBoundingSet"] {
            assert!(!w.contains(forbidden), "{forbidden}: the watcher writes /proc/sys/net and /run\n{w}");
        }
        assert_eq!(WATCH_WANTS_LINK.rsplit('/').next(), Some(WATCH_UNIT));
        assert_eq!(WATCH_UNIT_PATH.rsplit('/').next(), Some(WATCH_UNIT));
    }

    /// The default configuration with `metrics.textfile` set to `path`.
    fn with_textfile(path: &str) -> String {
        let on = crate::config::DEFAULT_TOML;
        let at = on.find("[metrics]").unwrap();
        format!("{}{}", &on[..at], on[at..].replacen("textfile = \"\"", &format!("textfile = \"{path}\""), 1))
    }

    #[test]
    fn the_metrics_units_are_written_only_with_a_textfile() {
        let off = crate::config::DEFAULT_TOML;
        let on = with_textfile("/var/lib/node_exporter/textfile/ecs-hostnet.prom");
        assert!(!configured_metrics(off.as_bytes()) && configured_metrics(on.as_bytes()), "{on}");
        let p = paths(off);
        assert!(!p.contains(&METRICS_SERVICE_PATH) && !p.contains(&METRICS_TIMER_PATH), "{p:?}");
        let p = paths(&on);
        assert!(p.ends_with(&[METRICS_SERVICE_PATH, METRICS_TIMER_PATH]), "{p:?}");
        // Beside the package its units are used: install writes neither.
        let p: Vec<_> = text_files(on.as_bytes(), &PACKAGE).into_iter().map(|f| f.path).collect();
        assert_eq!(p, [CONFIG_PATH, DROPIN_PATH, NFT_DROPIN_PATH]);
        assert_eq!(Optional::Metrics.local_files().last(), Some(&Optional::Metrics.target(&LOCAL)));
        assert_eq!(Optional::Watch.local_files().last(), Some(&Optional::Watch.target(&LOCAL)));
    }

    #[test]
    fn the_metrics_service_is_a_sandboxed_oneshot_status_that_counts_exit_2_as_success() {
        let m = metrics_service_text(&LOCAL);
        for l in [
            "Type=oneshot",
            &format!("ExecStart={BIN_PATH} status --format prometheus"),
            "SuccessExitStatus=2",
            "StandardOutput=null",
            "ProtectSystem=full",
            "ProtectKernelTunables=yes",
            "NoNewPrivileges=yes",
            "RestrictAddressFamilies=AF_NETLINK AF_UNIX",
        ] {
            assert!(m.lines().any(|x| x == l), "{l} not in\n{m}");
        }
        // Started by the timer only; /var stays writable for the textfile's folder.
        for forbidden in ["[Install]", "ProtectSystem=strict", "ReadOnlyPaths", "PrivateNetwork", "Restart="] {
            assert!(!m.contains(forbidden), "{forbidden} in\n{m}");
        }
        // The same sandbox as the watch unit's, which is tried in a real systemd.
        let w = watch_unit_text(&LOCAL);
        for l in SANDBOX.lines() {
            assert!(w.lines().any(|x| x == l) && m.lines().any(|x| x == l), "{l}");
        }
    }

    #[test]
    fn the_metrics_timer_runs_the_service_every_30_s_from_boot() {
        let t = metrics_timer_text(&LOCAL);
        for l in ["[Timer]", "OnBootSec=30s", "OnUnitActiveSec=30s", "AccuracySec=5s", "WantedBy=timers.target"] {
            assert!(t.lines().any(|x| x == l), "{l} not in\n{t}");
        }
        // systemd starts the service of the timer's own name (no Unit= needed).
        assert_eq!(METRICS_TIMER.strip_suffix(".timer"), METRICS_SERVICE.strip_suffix(".service"));
        assert_eq!(METRICS_WANTS_LINK.rsplit('/').next(), Some(METRICS_TIMER));
        assert!(METRICS_WANTS_LINK.starts_with("/etc/systemd/system/timers.target.wants/"));
        assert_eq!(METRICS_TIMER_PATH.rsplit('/').next(), Some(METRICS_TIMER));
        assert_eq!(METRICS_SERVICE_PATH.rsplit('/').next(), Some(METRICS_SERVICE));
    }

    #[test]
    fn the_package_layout_writes_no_unit_and_every_text_runs_the_package_binary() {
        let config = crate::config::DEFAULT_TOML.as_bytes();
        let files = text_files(config, &PACKAGE);
        let p: Vec<&str> = files.iter().map(|f| f.path).collect();
        assert_eq!(p, [CONFIG_PATH, DROPIN_PATH, NFT_DROPIN_PATH], "only the host-specific files");
        for f in &files[1..] {
            let t = String::from_utf8(f.content.clone()).unwrap();
            let runs_package_bin = t.contains(&format!("{PKG_BIN_PATH} apply\n"))
                || t.contains(&format!("{PKG_BIN_PATH} apply --kernel-only\n"));
            assert!(runs_package_bin && !t.contains(BIN_PATH), "{}:\n{t}", f.path);
        }
        // The package's units are install's texts with the package's binary and header only.
        let local: Vec<String> = units(&LOCAL).into_iter().map(|(_, t)| t).collect();
        assert_eq!(package_units().len(), 4);
        for ((name, text), local) in package_units().into_iter().zip(local) {
            let pkg_paths = [PKG_UNIT_PATH, PKG_WATCH_UNIT_PATH, PKG_METRICS_SERVICE_PATH, PKG_METRICS_TIMER_PATH];
            assert!(pkg_paths.iter().any(|p| p.ends_with(name)), "{name}");
            let body = |t: &str| -> Vec<String> {
                t.lines().filter(|l| !l.starts_with('#')).map(|l| l.replace(PKG_BIN_PATH, BIN_PATH)).collect()
            };
            assert_eq!(body(&text), body(&local), "{name}");
            assert!(text.contains(&format!("ExecStart={PKG_BIN_PATH} ")) || name == METRICS_TIMER, "{text}");
            assert!(
                text.lines().next().unwrap().contains("hipped by the ecs-hostnet package, not enabled by it"),
                "{text}"
            );
        }
    }
}
