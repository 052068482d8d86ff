//! `ecs-hostnet watch`: the resident repairer of one network namespace.
//!
//! Start: the event sockets and the signalfd are opened first (so nothing that happens
//! during the first converge is missed), the pid file is written, the host is converged
//! once under the run-directory [`Lock`] (like `apply`, but without the installed-file
//! repairs: those stay `apply`'s, run by the boot unit and the ecs-init hook), then
//! `READY=1`.
//!
//! Then one `poll(2)` over the nf_tables notifications, the link and IPv4 route changes and
//! the signals, with no timeout while nothing is pending (no CPU at all when idle). A
//! transaction of another process that touched a table named like ours, a matching new
//! interface, a change of the IPv4 default route under `endpoint_route_via_lo = "auto"`, or
//! lost notifications make a check: the same read and plan as `check`. Only a non-empty
//! plan makes a repair ([`converge`] under the lock, taken per repair and never held while
//! idle). Our own batches, and another process's apply that leaves the host converged,
//! therefore never write: no repair loop. When and how often repairs may run is decided by
//! [`crate::plan::watch::Pacer`] (backoff against a writer that keeps undoing ours).
//!
//! Fail-safe: when a repair fails and the localhost guard is not live, every recorded
//! route_localnet value that differs is written back ([`fail_safe`]); the next successful
//! repair turns it on again after the guard (converge writes sysctls after the batch).
//!
//! State for `status`: `watch-<netns inode>.json` beside the pid file (start time, repairs, the
//! last repair's time and line, backoff episodes), written atomically at start, after each
//! repair and at each backoff change, removed with the pid file at exit.
//!
//! Signals: `SIGHUP` reloads the configuration (a bad one is reported and the old one
//! kept), `SIGTERM`/`SIGINT` end the process with the rule set left in place.

use crate::desired::Desired;
use crate::engine::load::{self, Loaded, Trust};
use crate::engine::{converge_with, desired as compile, read_live, refuse_uplink_conflicts};
use crate::host::events::{NftListener, RtListener, Signal, Signals, wait};
use crate::host::files::Root;
use crate::host::nft::Netfilter;
use crate::host::notify::{State, notify, watchdog_interval};
use crate::host::run_dir::{LOCK_TIMEOUT, Lock, WatchPidFile, read_saved_record, read_watch_pid, write_watch_pid};
use crate::host::{netns, sysctl};
use crate::model::event::{NftReceived, RtEvent};
use crate::model::names::sysctl_name;
use crate::model::watch_state::WatchState;
use crate::plan::live::LiveState;
use crate::plan::watch::{Announcement, Collector, Pacer, Transaction, link_matters, route_matters};
use crate::plan::{Plan, localhost_guard_is_live};
use crate::render::watch::repair_summary;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The priority of a journal line (sd-daemon(3)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A failure, a fail-safe restore, a backoff episode starting.
    Err,
    /// A repair: something had undone ours.
    Warning,
    /// A backoff episode ended.
    Notice,
    /// Start, ready, reload, stop.
    Info,
}

/// Where the watcher's lines go (the command line prefixes the priority for the journal).
pub type Journal<'a> = &'a dyn Fn(Level, &str);

/// How long a repair waits for the lock held by an apply, remove or the boot unit; a
/// repair that cannot get it fails (then the fail-safe) and is tried again later.
pub const REPAIR_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times the first converge is tried before the watcher gives up (exit 1).
const START_ATTEMPTS: u32 = 3;
/// How long `remove` waits for a watcher it signalled to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What made a check wanted since the last one, for the repair's journal line.
#[derive(Default)]
struct Triggers {
    transactions: Vec<Transaction>,
    links: Vec<String>,
    route: Option<bool>,
    lost: bool,
    reloaded: bool,
}

impl Triggers {
    /// What had changed and who did it, e.g. `table inet ecs-hostnet was deleted (by
    /// nft[4242], generation 57)`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.transactions.last() {
            let more = match self.transactions.len() {
                1 => String::new(),
                n => format!("; {} earlier transactions coalesced", n - 1),
            };
            parts.push(format!("{} (by {}, generation {}{more})", t.what(), t.writer(), t.generation));
        }
        if let Some(name) = self.links.last() {
            parts.push(format!("interface {name} appeared or changed"));
        }
        if let Some(added) = self.route {
            parts.push(format!("an IPv4 default route was {}", if added { "added" } else { "deleted" }));
        }
        if self.lost {
            parts.push("nf_tables or rtnetlink notifications were lost (receive queue overran)".into());
        }
        if self.reloaded {
            parts.push("the configuration was reloaded".into());
        }
        if parts.is_empty() { "the host had drifted".into() } else { parts.join(", ") }
    }

    fn writer(&self) -> String {
        self.transactions.last().map(Transaction::writer).unwrap_or_else(|| "?".into())
    }
}

/// The watcher's state between wake-ups.
struct Watcher<'a> {
    /// The socket every check and repair reads and commits through, never closed while
    /// the watcher runs (see [`converge_with`]).
    nf: Netfilter,
    root: &'a Root,
    config_path: Option<PathBuf>,
    desired: Desired,
    journal: Journal<'a>,
    pacer: Pacer,
    collector: Collector,
    triggers: Triggers,
    start: Instant,
    own_pid: u32,
    /// What `status` reads of this watcher, and the file it is written to.
    state: WatchState,
    pid_file: WatchPidFile,
}

/// Runs the watcher in the current network namespace (the caller has entered `--netns`)
/// until `SIGTERM` or `SIGINT` (then `Ok`). `config_path` is `-c FILE` (read again on
/// `SIGHUP`); `loaded` its first reading.
///
/// Errors: the event sockets or signalfd cannot be opened, another watcher serves this
/// namespace, the pid file cannot be written, the first converge failed
/// [`START_ATTEMPTS`] times, or `poll` failed.
pub fn run(root: &Root, config_path: Option<&Path>, loaded: Loaded, journal: Journal<'_>) -> Result<()> {
    let mut signals = Signals::open()?;
    let mut nft = NftListener::open()?;
    let mut rt = RtListener::open()?;
    let ns = netns::current_inode()?;
    if let Some(pid) = live_watcher(root, ns) {
        bail!("ecs-hostnet watch (pid {pid}) already serves this network namespace");
    }
    let pid_file: WatchPidFile = write_watch_pid(root, ns, std::process::id())?;
    let mut w = Watcher {
        nf: Netfilter::open()?,
        root,
        config_path: config_path.map(Path::to_path_buf),
        desired: compile(&loaded),
        journal,
        pacer: Pacer::default(),
        collector: Collector::default(),
        triggers: Triggers::default(),
        start: Instant::now(),
        own_pid: std::process::id(),
        state: WatchState::started(std::process::id(), unix_now()),
        pid_file,
    };
    // Before the first converge, so the state file exists once "watching" is in the journal.
    w.save_state();
    w.first_converge()?;
    notify(&[State::Ready, State::Status("watching: converged")]);
    let watchdog = watchdog_interval().map(|d| d / 2);
    let mut last_watchdog = w.now();
    loop {
        let mut timeout = w.pacer.timeout(w.now());
        if let Some(half) = watchdog {
            let until = (last_watchdog + half).saturating_sub(w.now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        let ready = wait(&[signals.fd(), nft.fd(), rt.fd()], timeout)?;
        if ready[0] {
            for s in signals.take()? {
                match s {
                    Signal::Stop => {
                        notify(&[State::Stopping]);
                        (w.journal)(Level::Info, "stopping on a signal; the rule set stays in place");
                        return Ok(());
                    }
                    Signal::Reload => w.reload(),
                }
            }
        }
        if ready[1] {
            w.nft_events(nft.receive());
        }
        if ready[2] {
            w.rt_events(rt.receive());
        }
        if w.pacer.due(w.now()) {
            w.check_and_repair();
        }
        if let Some(a) = w.pacer.settle(w.now()) {
            w.announce(a);
        }
        if let Some(half) = watchdog
            && w.now().saturating_sub(last_watchdog) >= half
        {
            notify(&[State::Watchdog]);
            last_watchdog = w.now();
        }
    }
}

impl Watcher<'_> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Converges once under the lock (waiting as long as apply would), up to
    /// [`START_ATTEMPTS`] times a second apart; the fail-safe runs after each failure.
    fn first_converge(&mut self) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = Lock::acquire(self.root, LOCK_TIMEOUT)
                .map_err(anyhow::Error::from)
                .and_then(|lock| converge_with(&mut self.nf, &self.desired, self.root, &lock));
            match result {
                Ok(p) if p.is_empty() => {
                    (self.journal)(Level::Info, "started: the host already matches the configuration; watching");
                    return Ok(());
                }
                Ok(p) => {
                    (self.journal)(Level::Info, &format!("started: {}; watching", repair_summary(&p)));
                    return Ok(());
                }
                Err(e) => {
                    fail_safe(self.root, self.journal);
                    if attempt >= START_ATTEMPTS {
                        return Err(e.context(format!("the first converge failed {START_ATTEMPTS} times")));
                    }
                    (self.journal)(Level::Err, &format!("converging at start failed, trying again: {e:#}"));
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Collects the notifications; a transaction of another process that touched a table
    /// named like ours wants a check. A read error counts as lost notifications.
    fn nft_events(&mut self, received: Result<NftReceived, crate::host::events::Error>) {
        match received {
            Ok(NftReceived::Events(events)) => {
                for e in events {
                    if let Some(t) = self.collector.feed(e, self.own_pid) {
                        self.triggers.transactions.push(t);
                        self.pacer.want();
                    }
                }
            }
            Ok(NftReceived::Lost) => self.lost(),
            Err(e) => {
                (self.journal)(Level::Err, &format!("{:#}; checking the rule set", anyhow::Error::from(e)));
                self.lost();
            }
        }
    }

    fn lost(&mut self) {
        self.collector.reset();
        self.triggers.lost = true;
        self.pacer.want();
    }

    /// A matching new or renamed interface, or an IPv4 default route change under
    /// `auto`, wants a check.
    fn rt_events(&mut self, received: Result<(Vec<RtEvent>, bool), crate::host::events::Error>) {
        let (events, lost) = match received {
            Ok(r) => r,
            Err(e) => {
                (self.journal)(Level::Err, &format!("{:#}; checking the host", anyhow::Error::from(e)));
                (vec![], true)
            }
        };
        if lost {
            self.triggers.lost = true;
            self.pacer.want();
        }
        for e in events {
            match e {
                RtEvent::Link { name } if link_matters(&self.desired, &name) => {
                    if !self.triggers.links.contains(&name) {
                        self.triggers.links.push(name);
                    }
                    self.pacer.want();
                }
                RtEvent::Ipv4DefaultRoute { added } if route_matters(&self.desired) => {
                    self.triggers.route = Some(added);
                    self.pacer.want();
                }
                _ => {}
            }
        }
    }

    /// Reads and plans; converges under the lock only when the plan is not empty.
    fn check_and_repair(&mut self) {
        let t0 = Instant::now();
        let (nf, desired, root) = (&mut self.nf, &self.desired, self.root);
        let result = read_live(nf, desired, root).and_then(|(live, _)| {
            refuse_uplink_conflicts(desired, &live, "nothing was repaired")?;
            if crate::plan::plan(desired, &live).is_empty() {
                return Ok(None);
            }
            let lock = Lock::acquire(root, REPAIR_LOCK_TIMEOUT)?;
            converge_with(nf, desired, root, &lock).map(Some)
        });
        let triggers = std::mem::take(&mut self.triggers);
        match result {
            Ok(None) => self.pacer.checked(),
            Ok(Some(p)) if p.is_empty() => self.pacer.checked(),
            Ok(Some(p)) => self.repaired(&p, &triggers, t0.elapsed()),
            Err(e) => {
                (self.journal)(
                    Level::Err,
                    &format!("repair failed after {}: {e:#}; trying again", triggers.describe()),
                );
                fail_safe(self.root, self.journal);
                self.pacer.failed(self.now());
                // The next check names what had changed again.
                self.triggers = triggers;
            }
        }
    }

    fn repaired(&mut self, p: &Plan, triggers: &Triggers, took: Duration) {
        let line = format!(
            "repaired in {:.1} ms: {}; {}",
            took.as_secs_f64() * 1000.0,
            triggers.describe(),
            repair_summary(p)
        );
        (self.journal)(Level::Warning, &line);
        notify(&[State::Status(&line)]);
        self.state.repairs += 1;
        self.state.last_repair_at = Some(unix_now());
        self.state.last_repair = Some(line);
        if let Some(a) = self.pacer.repaired(self.now(), &triggers.writer()) {
            self.announce(a);
        }
        self.save_state();
    }

    /// Writes [`Watcher::state`] for `status`; a failure is reported and never stops the
    /// watcher (the state file is a report, not part of the repair).
    fn save_state(&self) {
        let bytes = serde_json::to_vec(&self.state).expect("the watch state serializes");
        if let Err(e) = self.pid_file.write_state(&bytes) {
            (self.journal)(Level::Err, &format!("writing the state file for `status` failed: {e}"));
        }
    }

    fn announce(&mut self, a: Announcement) {
        match a {
            Announcement::BackoffStarted { .. } => {
                self.state.backoff_episodes += 1;
                self.state.in_backoff = true;
            }
            Announcement::BackoffEnded { .. } => self.state.in_backoff = false,
        }
        self.save_state();
        let line = match a {
            Announcement::BackoffStarted { writer, repairs } => format!(
                "another writer keeps undoing ecs-hostnet's rules: {repairs} repairs within {} s, the last after \
                 {writer}; repairing at most every {} ms, doubling to {} s, until it stops",
                crate::plan::watch::WINDOW.as_secs(),
                crate::plan::watch::FIRST_DELAY.as_millis(),
                crate::plan::watch::MAX_DELAY.as_secs()
            ),
            Announcement::BackoffEnded { writer, repairs } => format!(
                "the writer ({writer}) stopped undoing ecs-hostnet's rules: the last repair held for {} s; {repairs} \
                 repairs during the backoff",
                crate::plan::watch::QUIET.as_secs()
            ),
        };
        let level = if line.starts_with("another") { Level::Err } else { Level::Notice };
        (self.journal)(level, &line);
        notify(&[State::Status(&line)]);
    }

    /// `SIGHUP`: reads the configuration again; a bad one is reported and the old one kept.
    fn reload(&mut self) {
        match load::load_config(self.config_path.as_deref(), self.root, Trust::RootOnly) {
            Ok(loaded) => {
                self.desired = compile(&loaded);
                (self.journal)(Level::Info, &format!("configuration reloaded: {}", loaded.source));
                self.triggers.reloaded = true;
                self.pacer.want();
            }
            Err(e) => (self.journal)(
                Level::Err,
                &format!("reloading the configuration failed, the previous one stays in force: {e:#}"),
            ),
        }
    }
}

/// The current time in Unix seconds (0 before 1970, a clock that cannot be).
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// When the localhost guard is not live (or our tables cannot be read), writes every
/// recorded route_localnet value that differs back (the record in our table, else the
/// saved copy in the run directory), with one err line naming them. Best effort: it runs
/// because something already failed.
pub fn fail_safe(root: &Root, journal: Journal<'_>) {
    let Ok(mut nf) = Netfilter::open() else { return };
    let tables = nf.read_owned().map(|(t, _)| t).unwrap_or_default();
    let live = LiveState { tables, ..Default::default() };
    if localhost_guard_is_live(&live) {
        return;
    }
    let Some(record) = live.record().cloned().or_else(|| read_saved_record(&nf, root)) else { return };
    let mut restored = Vec::new();
    for (sel, original) in &record {
        match sysctl::read_route_localnet(sel) {
            Ok(Some(now)) if now != *original => match sysctl::write_route_localnet(sel, original) {
                Ok(()) => restored.push(format!("{}={original}", sysctl_name(sel))),
                Err(e) => journal(Level::Err, &format!("fail-safe: {:#}", anyhow::Error::from(e))),
            },
            _ => {}
        }
    }
    if !restored.is_empty() {
        journal(
            Level::Err,
            &format!(
                "the localhost guard could not be restored, so route_localnet went back to its recorded value: {} \
                 (the next successful repair turns it on again, after the guard)",
                restored.join(", ")
            ),
        );
    }
}

/// The pid of a live `ecs-hostnet watch` serving the namespace with nsfs inode `ns`,
/// from its pid file, checked: the process is in that namespace and its command line is
/// `ecs-hostnet ... watch ...`. `None` otherwise (no file, a stale or reused pid).
pub fn live_watcher(root: &Root, ns: u64) -> Option<u32> {
    let pid = read_watch_pid(root, ns)?;
    if pid == std::process::id() || netns::inode_of(pid) != Some(ns) || exited(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let argv0 = Path::new(std::str::from_utf8(args.first()?).ok()?).file_name()?.to_str()?;
    (argv0.starts_with("ecs-hostnet") && args.iter().skip(1).any(|a| *a == b"watch")).then_some(pid)
}

/// Whether `pid` is gone or a zombie (it exited and waits for its parent).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `PID (comm) STATE ...`: comm may hold spaces and parentheses; the state follows the last `)`.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
        Err(_) => true,
    }
}

/// Stops the `ecs-hostnet watch` of the current network namespace, if one runs: `SIGTERM`,
/// then waits up to [`STOP_TIMEOUT`] for its exit. `remove` calls it first, so its work is
/// not repaired. Returns the pid stopped.
///
/// Errors: the namespace cannot be named, the signal cannot be sent, or the watcher did
/// not exit in time (then nothing is removed).
pub fn stop_watcher(root: &Root) -> Result<Option<u32>> {
    let ns = netns::current_inode()?;
    let Some(pid) = live_watcher(root, ns) else { return Ok(None) };
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
    match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
        Ok(()) => {}
        Err(nix::errno::Errno::ESRCH) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot stop ecs-hostnet watch (pid {pid})")),
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !exited(pid) {
        if Instant::now() >= deadline {
            bail!(
                "ecs-hostnet watch (pid {pid}) did not exit within {} s of SIGTERM; nothing was removed",
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Some(pid))
}
