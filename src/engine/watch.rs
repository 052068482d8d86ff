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
//! The configuration followed is the one last applied in this namespace
//! ([`crate::engine::applied`]): before a repair, under the lock, the watcher reads the
//! record an `apply` leaves and adopts a newer configuration, so an apply of a changed
//! configuration is never reverted.
//!
//! Fail-safe: whenever a repair cannot run at once (a backoff pause, the lock held by
//! another run) or fails, and the localhost guard is not live, every recorded
//! route_localnet value that differs is written back at once ([`lower_route_localnet`]: a
//! sysctl write, no nf_tables transaction, so it never fights the writer); the next
//! successful repair turns it on again after the guard (converge writes route_localnet
//! after the batch). One err line when it engages, one notice when a repair has restored
//! the guard (after a backoff episode: when the episode ends).
//!
//! A repair that keeps failing for the same reason is one err line, then silence (an info
//! reminder every [`crate::plan::watch::FAILURE_REMINDER`]), then one notice when a repair
//! succeeds again ([`crate::plan::watch::Failures`]).
//!
//! State for `status`: `watch-<netns inode>.json` beside the pid file (start time, repairs, the
//! last repair's time and line, backoff episodes), written atomically at start, after each
//! repair and at each backoff change, removed with the pid file at exit.
//!
//! The IMDS audit ([`crate::engine::audit`]): when the configuration makes audit rules, the
//! watcher binds their nfnetlink_log group (after the first converge, and again when a
//! reload or an adopted apply changes the group), polls it with the other sockets and
//! writes one warning line per attempt, after the repair of the same wake-up. A bind that
//! fails (another listener holds the group) is one err line; repairs go on without it.
//!
//! Signals: `SIGHUP` reloads the configuration (a bad one is reported and the old one
//! kept), `SIGTERM`/`SIGINT` end the process with the rule set left in place.

use crate::desired::Desired;
use crate::engine::applied;
use crate::engine::audit::Auditor;
use crate::engine::load::{self, Loaded, Trust};
use crate::engine::{converge_with, desired as compile, read_live, refuse_uplink_conflicts};
use crate::host::events::{NftListener, RtListener, Signal, Signals, wait};
use crate::host::files::Root;
use crate::host::nft::Netfilter;
use crate::host::notify::{State, notify, watchdog_interval};
use crate::host::run_dir::{LOCK_TIMEOUT, Lock, WatchPidFile, read_saved_record, read_watch_pid, write_watch_pid};
use crate::host::{netns, sysctl};
use crate::model::event::{NftEvent, NftReceived, RtEvent, msg};
use crate::model::names::sysctl_name;
use crate::model::watch_state::WatchState;
use crate::plan::live::LiveState;
use crate::plan::watch::{
    Announcement, Collector, FailureLine, Failures, Pacer, Transaction, host_route_matters, link_matters, route_matters,
};
use crate::plan::{Plan, localhost_guard_is_live};
use crate::render::watch::repair_summary;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The priority of a journal line (sd-daemon(3)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A failure (the first of an episode), the fail-safe engaging, a backoff episode
    /// starting.
    Err,
    /// A repair of something another program (or person) removed or changed.
    Warning,
    /// A backoff episode ended, the fail-safe released, repairs succeeding again.
    Notice,
    /// Start, ready, reload, stop, a newly applied configuration adopted, a routine change
    /// followed (an interface that appeared got its sysctl, the "auto" endpoint route
    /// following the default route).
    Info,
}

/// Where the watcher's lines go (the command line prefixes the priority for the journal).
pub type Journal<'a> = &'a dyn Fn(Level, &str);

/// How long a repair waits for the lock held by an apply, remove or the boot unit (after
/// the fail-safe, when the lock is busy at the first try); a repair that cannot get it
/// fails and is tried again later.
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
    endpoint_route: Option<bool>,
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
        if let Some(added) = self.endpoint_route {
            parts.push(format!("a route to the endpoint was {}", if added { "added" } else { "deleted" }));
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

    /// Whether the repair only followed a routine change (info, not warning): an interface
    /// that appeared getting its sysctl, the "auto" endpoint route following the default
    /// route, a reload. Not when another program's transaction touched our tables, a route
    /// to the endpoint changed, `lo` changed (going down deletes the endpoint route) or
    /// notifications were lost.
    fn routine(&self) -> bool {
        self.transactions.is_empty()
            && self.endpoint_route.is_none()
            && !self.lost
            && !self.links.iter().any(|l| l == "lo")
            && (self.route.is_some() || !self.links.is_empty() || self.reloaded)
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
    /// The record of the configuration followed ([`applied::encode`]), to compare with the
    /// one an apply leaves.
    applied: Vec<u8>,
    /// A record found invalid, so that it is reported once.
    rejected: Option<Vec<u8>>,
    /// After a reload: the next converge writes the record (and takes the lock even when
    /// the check finds nothing to do).
    record_pending: bool,
    /// The fail-safe lowered route_localnet, and no repair has restored the guard since
    /// (its err line was written; its notice is due).
    fail_safe_engaged: bool,
    /// What the repair under way wrote back before it started (the guard was gone), for
    /// the fail-safe's err line should that repair not run at once or fail.
    lowered_for_repair: Vec<String>,
    failures: Failures,
    journal: Journal<'a>,
    pacer: Pacer,
    collector: Collector,
    triggers: Triggers,
    start: Instant,
    own_pid: u32,
    /// What `status` reads of this watcher, and the file it is written to.
    state: WatchState,
    pid_file: WatchPidFile,
    /// The IMDS audit receiver, when the configuration makes audit rules and the bind worked.
    audit: Option<Auditor>,
    /// The audit configuration whose bind failed (reported once; tried again only for
    /// another one).
    audit_failed: Option<crate::desired::AuditWanted>,
}

/// Runs the watcher in the current network namespace (the caller has entered `--netns`)
/// until `SIGTERM` or `SIGINT` (then `Ok`). `config_path` is `-c FILE` (read again on
/// `SIGHUP`); `loaded` its first reading.
///
/// Errors: the event sockets or signalfd cannot be opened, another watcher serves this
/// namespace, the pid file cannot be written, the first converge failed
/// [`START_ATTEMPTS`] times, or `poll` failed.
/// `text` is the file's bytes (the embedded default's without one), recorded as the
/// configuration applied after the first converge.
pub fn run(root: &Root, config_path: Option<&Path>, loaded: Loaded, text: &[u8], journal: Journal<'_>) -> Result<()> {
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
        applied: applied::encode(&loaded.source, text),
        rejected: None,
        record_pending: false,
        fail_safe_engaged: false,
        lowered_for_repair: Vec::new(),
        failures: Failures::default(),
        journal,
        pacer: Pacer::default(),
        collector: Collector::default(),
        triggers: Triggers::default(),
        start: Instant::now(),
        own_pid: std::process::id(),
        state: WatchState::started(std::process::id(), unix_now()),
        pid_file,
        audit: None,
        audit_failed: None,
    };
    // Before the first converge, so the state file exists once "watching" is in the journal.
    w.save_state();
    w.first_converge()?;
    w.sync_audit();
    notify(&[State::Ready, State::Status("watching: converged")]);
    let watchdog = watchdog_interval().map(|d| d / 2);
    let mut last_watchdog = w.now();
    loop {
        let mut timeout = w.pacer.timeout(w.now());
        if let Some(half) = watchdog {
            let until = (last_watchdog + half).saturating_sub(w.now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        let ready = {
            let mut fds = vec![signals.fd(), nft.fd(), rt.fd()];
            fds.extend(w.audit.as_ref().map(Auditor::fds).unwrap_or_default());
            wait(&fds, timeout)?
        };
        if ready[0] {
            for s in signals.take()? {
                match s {
                    Signal::Stop => {
                        notify(&[State::Stopping]);
                        (w.journal)(Level::Info, "stopping on SIGTERM; leaving the rule set as it is");
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
        } else if w.pacer.waiting(w.now()) {
            // A repair is wanted but paused (backoff, a failure's retry): the guard may be
            // gone with route_localnet on until then.
            w.engage_fail_safe("the repair is paused (backoff or a retry pause)");
        }
        if let Some(a) = w.pacer.settle(w.now()) {
            w.announce(a);
        }
        // After the repair (the audit never waits: Docker is asked on its own thread).
        if ready.iter().skip(3).any(|r| *r) {
            w.audit_events();
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
            let result = Lock::acquire(self.root, LOCK_TIMEOUT).map_err(anyhow::Error::from).and_then(|lock| {
                let p = converge_with(&mut self.nf, &self.desired, self.root, &lock)?;
                self.write_record();
                Ok(p)
            });
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
                    self.engage_fail_safe("converging at start failed");
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
                    if let (NftEvent::Object { msg_type: msg::NEWTABLE, table: Some(t), .. }, Some(a)) =
                        (&e, self.audit.as_mut())
                    {
                        a.note_table(t);
                    }
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
            if let (RtEvent::Link { name, index }, Some(a)) = (&e, self.audit.as_mut()) {
                a.note_link(name, *index);
            }
            match e {
                RtEvent::Link { name, .. } if link_matters(&self.desired, &name) => {
                    if !self.triggers.links.contains(&name) {
                        self.triggers.links.push(name);
                    }
                    self.pacer.want();
                }
                RtEvent::Ipv4DefaultRoute { added } if route_matters(&self.desired) => {
                    self.triggers.route = Some(added);
                    self.pacer.want();
                }
                RtEvent::Ipv4HostRoute { dst, added } if host_route_matters(&self.desired, dst) => {
                    self.triggers.endpoint_route = Some(added);
                    self.pacer.want();
                }
                _ => {}
            }
        }
    }

    /// Reads and plans; converges under the lock only when the plan is not empty.
    fn check_and_repair(&mut self) {
        let t0 = Instant::now();
        let result = self.try_repair();
        let triggers = std::mem::take(&mut self.triggers);
        let lowered = std::mem::take(&mut self.lowered_for_repair);
        match result {
            Ok(p) => {
                if let Some(n) = self.failures.succeeded() {
                    let line =
                        format!("repairs succeed again, after {n} failed attempt{}", if n == 1 { "" } else { "s" });
                    (self.journal)(Level::Notice, &line);
                }
                match p {
                    Some(p) if !p.is_empty() => self.repaired(&p, &triggers, t0.elapsed()),
                    _ => self.pacer.checked(),
                }
                self.release_fail_safe();
            }
            Err(e) => {
                let reason = format!("{e:#}");
                match self.failures.failed(self.now(), &reason) {
                    FailureLine::Err => (self.journal)(
                        Level::Err,
                        &format!(
                            "repair failed after {}: {reason}; trying again (the same failure is not reported again \
                             until a repair succeeds)",
                            triggers.describe()
                        ),
                    ),
                    FailureLine::Reminder { attempts } => (self.journal)(
                        Level::Info,
                        &format!("repairs still fail ({attempts} attempts so far): {reason}"),
                    ),
                    FailureLine::Silent => {}
                }
                self.lowered_for_repair = lowered;
                self.engage_fail_safe("the repair failed");
                self.lowered_for_repair.clear();
                self.pacer.failed(self.now());
                // The next check names what had changed again.
                self.triggers = triggers;
            }
        }
    }

    /// The check, and the repair when the plan is not empty: the lock is tried at once;
    /// when it is busy the fail-safe runs before waiting for it. Under the lock, a
    /// configuration applied since is adopted first. `None`: nothing to do (no lock taken).
    fn try_repair(&mut self) -> Result<Option<Plan>> {
        if !self.record_pending {
            let (live, _) = read_live(&mut self.nf, &self.desired, self.root)?;
            refuse_uplink_conflicts(&self.desired, &live, "nothing was repaired")?;
            if crate::plan::plan(&self.desired, &live).is_empty() {
                return Ok(None);
            }
            // The repair itself can take a while (the kernel refusing batches while the
            // writer commits: up to ~60 ms of retries): without the guard, route_localnet
            // goes back first, silently (the repair line says it was set again).
            if !localhost_guard_is_live(&live) {
                self.lowered_for_repair =
                    lower_route_localnet(&mut self.nf, self.root, self.journal).unwrap_or_default();
            }
        }
        let lock = match Lock::acquire(self.root, Duration::ZERO) {
            Ok(lock) => lock,
            Err(e) if e.is_busy() => {
                self.engage_fail_safe("another ecs-hostnet run holds the lock");
                Lock::acquire(self.root, REPAIR_LOCK_TIMEOUT)?
            }
            Err(e) => return Err(e.into()),
        };
        if !self.record_pending {
            self.follow_applied();
        }
        let p = converge_with(&mut self.nf, &self.desired, self.root, &lock)?;
        if self.record_pending {
            self.write_record();
        }
        Ok(Some(p))
    }

    /// Binds the audit group the configuration followed wants, if it is not the one bound:
    /// one info line when bound, one err line when the bind fails (not tried again for
    /// the same configuration). No audit rules: the receiver is closed.
    fn sync_audit(&mut self) {
        let wanted = self.desired.audit.clone();
        if self.audit.as_ref().map(Auditor::wanted) == wanted.as_ref() {
            return;
        }
        // Closing the socket releases the group first (a reload may keep the same group).
        self.audit = None;
        self.state.audit_group = None;
        if let Some(w) = wanted.filter(|w| self.audit_failed.as_ref() != Some(w)) {
            match Auditor::open(&w) {
                Ok(a) => {
                    (self.journal)(
                        Level::Info,
                        &format!("IMDS audit: receiving nfnetlink_log group {}: one warning line per attempt", w.group),
                    );
                    self.state.audit_group = Some(w.group);
                    self.audit = Some(a);
                    self.audit_failed = None;
                }
                Err(e) => {
                    (self.journal)(
                        Level::Err,
                        &format!(
                            "IMDS audit off: {:#}; the IMDS drop rules still drop and count every attempt \
                             (`ecs-hostnet status`), without journal lines",
                            anyhow::Error::from(e)
                        ),
                    );
                    self.audit_failed = Some(w);
                }
            }
        }
        self.save_state();
    }

    /// The audit group is readable: its lines, and the state file when something came.
    fn audit_events(&mut self) {
        let Some(a) = self.audit.as_mut() else { return };
        if a.receive(&mut self.state, unix_now(), self.journal) {
            self.save_state();
        }
    }

    /// Under the lock: adopts the configuration an apply recorded since, if it differs
    /// from the one followed (one info line); an invalid record is reported once (err) and
    /// the current configuration kept.
    fn follow_applied(&mut self) {
        let Some(record) = applied::read(self.root) else { return };
        if record == self.applied || self.rejected.as_ref() == Some(&record) {
            return;
        }
        match applied::decode(&record) {
            Ok(loaded) => {
                self.desired = compile(&loaded);
                self.applied = record;
                (self.journal)(Level::Info, &format!("following the configuration applied since: {}", loaded.source));
                self.sync_audit();
            }
            Err(e) => {
                (self.journal)(
                    Level::Err,
                    &format!("the configuration last applied is not valid, the current one stays in force: {e:#}"),
                );
                self.rejected = Some(record);
            }
        }
    }

    /// Writes the record of the configuration followed (under the lock); a failure is an
    /// err line: an apply's record then wins at the next repair.
    fn write_record(&mut self) {
        self.record_pending = false;
        if let Err(e) = applied::record(self.root, &self.applied) {
            (self.journal)(Level::Err, &format!("{e:#}"));
        }
    }

    /// Whenever a repair cannot run at once or failed: if the localhost guard is not live,
    /// route_localnet goes back to its recorded values at once (one err line until a
    /// repair restores the guard).
    fn engage_fail_safe(&mut self, why: &str) {
        let Some(mut restored) = lower_route_localnet(&mut self.nf, self.root, self.journal) else { return };
        if restored.is_empty() {
            // Already written back as the repair started: this is when it is news.
            restored = std::mem::take(&mut self.lowered_for_repair);
        }
        if !restored.is_empty() && !self.fail_safe_engaged {
            self.fail_safe_engaged = true;
            (self.journal)(
                Level::Err,
                &format!(
                    "the localhost guard is missing and {why}, so route_localnet went back to its recorded value: {} \
                     (a repair that restores the guard turns it on again)",
                    restored.join(", ")
                ),
            );
        }
    }

    /// After a successful check or repair, outside a backoff episode: the notice that the
    /// fail-safe is over (the guard is live, route_localnet on again).
    fn release_fail_safe(&mut self) {
        if self.fail_safe_engaged && self.pacer.episode().is_none() {
            self.fail_safe_engaged = false;
            (self.journal)(
                Level::Notice,
                "the localhost guard is back and route_localnet is on again: the fail-safe is released",
            );
        }
    }

    fn repaired(&mut self, p: &Plan, triggers: &Triggers, took: Duration) {
        let line = format!(
            "repaired in {:.1} ms: {}; {}",
            took.as_secs_f64() * 1000.0,
            triggers.describe(),
            repair_summary(p)
        );
        (self.journal)(if triggers.routine() { Level::Info } else { Level::Warning }, &line);
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
        // The last repair of the episode held: the guard is live.
        self.release_fail_safe();
    }

    /// `SIGHUP`: reads the configuration again; a bad one is reported and the old one kept.
    fn reload(&mut self) {
        match load::load_config_bytes(self.config_path.as_deref(), self.root, Trust::RootOnly) {
            Ok((loaded, text)) => {
                self.desired = compile(&loaded);
                self.applied = applied::encode(&loaded.source, &text);
                self.record_pending = true;
                (self.journal)(Level::Info, &format!("configuration reloaded: {}", loaded.source));
                // A reload asks for the audit group again, even one whose bind failed.
                self.audit_failed = None;
                self.sync_audit();
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

/// The fail-safe: when the localhost guard is not live (or our tables cannot be read),
/// writes every recorded route_localnet value that differs back (the record in our
/// table, else the saved copy in the run directory) and returns them (`name=value`;
/// empty when none differed). `None` when the guard is live: nothing to do. Reads through
/// the watcher's socket (no close, so no wait for the kernel's destroy work) and writes
/// only `/proc/sys`: no nf_tables transaction, so it never fights another writer. Best
/// effort: a write that fails is an err line.
fn lower_route_localnet(nf: &mut Netfilter, root: &Root, journal: Journal<'_>) -> Option<Vec<String>> {
    let tables = nf.read_owned().map(|(t, _)| t).unwrap_or_default();
    let live = LiveState { tables, ..Default::default() };
    if localhost_guard_is_live(&live) {
        return None;
    }
    let Some(record) = live.record().cloned().or_else(|| read_saved_record(nf, root)) else { return Some(vec![]) };
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
    Some(restored)
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
