//! The IMDS audit in `ecs-hostnet watch`: the watcher's [`Auditor`] binds the nfnetlink_log
//! group the audit rules send to ([`crate::desired::AuditWanted`]) and, for each packet
//! the group delivers, writes one journal line at warning ([`crate::render::audit::line`]):
//! family, protocol, source and destination, the interface it arrived on (its index
//! resolved in the watcher's namespace) and, when Docker's API socket answers, the
//! container that has the source address ([`crate::host::docker`]). Counted in the watcher
//! state for `status`.
//!
//! The audit rules' `limit` bounds the lines (`audit.rate_per_second`, `audit.burst`); the
//! IMDS drop rules' counters count every attempt. The probes of a running `verify` get no
//! line (they are counted as packets only).
//!
//! Docker is never asked on the watcher's thread: a slow or hung API socket would hold
//! the poll loop, and with it the repair of a flushed rule set (the localhost guard gone
//! while route_localnet stays on), and any container can make the watcher ask. A lookup
//! thread owns the [`Docker`] client; the watcher hands each attempt over through a
//! bounded queue ([`QUEUE`]) and never waits: when the queue is full the line goes out at
//! once without the container. The thread sends the answer back and wakes the watcher's
//! poll through a socket pair ([`Auditor::fds`]); the line is written, and the state
//! counted, on the watcher's thread.

use crate::desired::AuditWanted;
use crate::engine::watch::{Journal, Level};
use crate::host::docker::Docker;
use crate::host::nflog::{self, NflogListener};
use crate::host::trace;
use crate::model::audit::{Attempt, Container};
use crate::model::names::{rule_id, verify_probe_pid};
use crate::model::watch_state::WatchState;
use crate::render::audit::line;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

/// How many attempts may wait for the lookup thread; past that a line names no container
/// (the audit rules' limit keeps far fewer coming: 10 a second by default).
pub const QUEUE: usize = 64;

/// One attempt waiting for its container, with its interface's name.
struct Job {
    attempt: Attempt,
    ifname: Option<String>,
    /// The bridge port's name ([`Attempt::physindev`]).
    physname: Option<String>,
    /// The wake-up's time (Unix seconds), for the state.
    at: u64,
}

/// The lookup thread's answer: the container, or why Docker did not say.
struct Answer {
    job: Job,
    container: Result<Option<Container>, String>,
}

/// The watcher's end of the lookup thread: the queue to it, the answers from it and the
/// socket its wake-ups arrive on (non-blocking). Dropping it ends the thread (its queue
/// closes; a lookup under way ends within [`crate::host::docker::TIMEOUT`]).
struct Lookups {
    jobs: SyncSender<Job>,
    answers: Receiver<Answer>,
    wake: UnixStream,
}

impl Lookups {
    /// Starts the thread that asks `docker`.
    fn start(mut docker: Docker) -> std::io::Result<Lookups> {
        let (wake, mut waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        // A full socket buffer means a wake-up is already pending: never block on it.
        waker.set_nonblocking(true)?;
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
        let (done, answers) = mpsc::channel();
        std::thread::Builder::new().name("imds-audit-docker".into()).spawn(move || {
            for job in queue {
                let container = match &job.attempt.packet {
                    Some(p) => docker.container_of(p.src).map_err(|e| e.to_string()),
                    None => Ok(None),
                };
                if done.send(Answer { job, container }).is_err() {
                    return;
                }
                let _ = waker.write(&[1]);
            }
        })?;
        Ok(Lookups { jobs, answers, wake })
    }
}

/// The IMDS audit receiver of one watcher.
pub struct Auditor {
    listener: NflogListener,
    wanted: AuditWanted,
    /// The Docker lookup thread; `None`: Docker is never asked (no socket configured, or
    /// the thread could not start: lines then name the address only).
    lookups: Option<Lookups>,
    /// Docker failed and the info line saying so was written (until it answers again).
    docker_failing: bool,
    /// Interface indexes of `verify` probe veths seen appearing while their run was alive
    /// (the most recent [`PROBE_LINKS`]): verify removes its trace table and veth within
    /// milliseconds, often before the watcher reads the probes' packets.
    probe_links: std::collections::VecDeque<u32>,
    /// Pids of `verify` runs whose trace table was seen created in the nf_tables
    /// notifications (the most recent [`PROBE_LINKS`]): proof that survives the run.
    verify_runs: std::collections::VecDeque<u32>,
}

/// How many probe veths [`Auditor::note_link`] remembers (interface indexes only grow in a
/// namespace, so an old one is never a container's).
const PROBE_LINKS: usize = 32;

impl Auditor {
    /// Binds the group of `wanted` in the current network namespace and starts the Docker
    /// lookup thread when `wanted` names a socket.
    ///
    /// Errors: the socket cannot be opened or the kernel refuses the bind ([`nflog::Error::is_held`]:
    /// another listener holds the group).
    pub fn open(wanted: &AuditWanted) -> Result<Auditor, nflog::Error> {
        let listener = NflogListener::open(wanted.group, wanted.snaplen)?;
        let lookups = wanted.docker_socket.as_deref().and_then(|s| Lookups::start(Docker::new(s)).ok());
        Ok(Auditor {
            listener,
            wanted: wanted.clone(),
            lookups,
            docker_failing: false,
            probe_links: std::collections::VecDeque::new(),
            verify_runs: std::collections::VecDeque::new(),
        })
    }

    /// A table named `name` was created (an nf_tables notification): when it is a `verify`
    /// run's trace table ([`trace::TABLE_PREFIX`] + pid), that pid is remembered as a run.
    pub fn note_table(&mut self, name: &str) {
        if let Some(pid) = name.strip_prefix(trace::TABLE_PREFIX).and_then(|p| p.parse().ok()) {
            remember(&mut self.verify_runs, pid);
        }
    }

    /// A link appeared or changed (an rtnetlink event): remembers its index when it is the
    /// probe veth of a `verify` run (its name ends in the run's suffix, and that pid's trace
    /// table was seen created or is live, or the pid is an `ecs-hostnet` process), so that
    /// the probes' packets get no line even when read after verify is gone.
    pub fn note_link(&mut self, name: &str, index: u32) {
        let Some(pid) = verify_probe_pid(name) else { return };
        if self.verify_runs.contains(&pid) || trace::is_ecs_hostnet_process(pid) || is_verify_probe(name) {
            remember(&mut self.probe_links, index);
        }
    }

    /// What it was opened for.
    pub fn wanted(&self) -> &AuditWanted {
        &self.wanted
    }

    /// The descriptors to poll: the group's socket and the lookup thread's wake-ups.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.listener.fd()];
        fds.extend(self.lookups.as_ref().map(|l| l.wake.as_fd()));
        fds
    }

    /// Reads what the group delivered and what the lookup thread answered, without ever
    /// waiting: one warning line per attempt of an audit rule of ours (another prefix is
    /// counted, not written), a warning when the queue overran. An attempt with a source
    /// address goes to the lookup thread first when there is one (its line comes with the
    /// answer). Counts into `state`; `true` when it changed.
    pub fn receive(&mut self, state: &mut WatchState, now: u64, journal: Journal<'_>) -> bool {
        let mut changed = self.receive_group(state, now, journal);
        changed |= self.receive_answers(state, journal);
        changed
    }

    fn receive_group(&mut self, state: &mut WatchState, now: u64, journal: Journal<'_>) -> bool {
        let (attempts, overruns) = match self.listener.receive() {
            Ok(r) => r,
            Err(e) => {
                journal(Level::Err, &format!("IMDS audit: {:#}", anyhow::Error::from(e)));
                return false;
            }
        };
        if overruns > 0 {
            journal(
                Level::Warning,
                "IMDS audit: the receive queue overran, attempts were dropped without a line (the IMDS drop \
                 rules' counters in `ecs-hostnet status` count every attempt)",
            );
        }
        let mut changed = !attempts.is_empty();
        for attempt in attempts {
            state.audit_packets += 1;
            if attempt.prefix != rule_id::IMDS_AUDIT_IPV4 && attempt.prefix != rule_id::IMDS_AUDIT_IPV6 {
                continue;
            }
            let ifname = attempt
                .indev
                .and_then(|i| nix::net::if_::if_indextoname(i).ok())
                .map(|n| n.to_string_lossy().into_owned());
            if attempt.indev.is_some_and(|i| self.probe_links.contains(&i))
                || ifname.as_deref().is_some_and(is_verify_probe)
            {
                continue;
            }
            let physname = attempt
                .physindev
                .and_then(|i| nix::net::if_::if_indextoname(i).ok())
                .map(|n| n.to_string_lossy().into_owned());
            let job = Job { attempt, ifname, physname, at: now };
            let job = match &self.lookups {
                Some(l) if job.attempt.packet.is_some() => match l.jobs.try_send(job) {
                    Ok(()) => continue,
                    // The thread is busy (a slow Docker) or gone: the line goes out now.
                    Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
                },
                _ => job,
            };
            write_line(state, &job, None, journal);
            changed = true;
        }
        changed
    }

    /// The lookup thread's answers so far: their lines (one info line when Docker starts
    /// failing).
    fn receive_answers(&mut self, state: &mut WatchState, journal: Journal<'_>) -> bool {
        let Some(l) = &mut self.lookups else { return false };
        let mut drain = [0u8; 256];
        while matches!(l.wake.read(&mut drain), Ok(n) if n > 0) {}
        let mut changed = false;
        while let Ok(a) = l.answers.try_recv() {
            let container = match a.container {
                Ok(c) => {
                    self.docker_failing = false;
                    c
                }
                Err(e) => {
                    if !self.docker_failing {
                        self.docker_failing = true;
                        journal(
                            Level::Info,
                            &format!("IMDS audit: {e}; audit lines name the address only until Docker answers"),
                        );
                    }
                    None
                }
            };
            write_line(state, &a.job, container.as_ref(), journal);
            changed = true;
        }
        changed
    }
}

/// Adds `v` to `list` unless it is there, keeping the last [`PROBE_LINKS`].
fn remember(list: &mut std::collections::VecDeque<u32>, v: u32) {
    if !list.contains(&v) {
        if list.len() == PROBE_LINKS {
            list.pop_front();
        }
        list.push_back(v);
    }
}

/// Writes the line of `job` and counts it into `state`.
fn write_line(state: &mut WatchState, job: &Job, container: Option<&Container>, journal: Journal<'_>) {
    let text = line(&job.attempt, job.ifname.as_deref(), job.physname.as_deref(), container);
    journal(Level::Warning, &text);
    state.audit_lines += 1;
    state.last_audit_at = Some(job.at);
    state.last_audit = Some(text);
}

/// Whether `ifname` is the probe interface of a `verify` that is running in this
/// namespace: its name ends in that run's suffix ([`verify_probe_pid`]) and that run's
/// trace table is live. verify's IMDS probes are expected to be dropped; a line per run
/// would read as a container's attempt (and fire the README's alert). A container cannot
/// pass for one: it would need the name of a live run's veth.
fn is_verify_probe(ifname: &str) -> bool {
    verify_probe_pid(ifname).is_some_and(|pid| trace::live_runs().is_ok_and(|runs| runs.contains(&pid)))
}
