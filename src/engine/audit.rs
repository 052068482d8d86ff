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
//! line (they are counted as packets only). Docker is asked only on a miss, at most
//! every few seconds and for at most [`crate::host::docker::TIMEOUT`], after the watcher's
//! repair of the same wake-up: it never delays a repair.

use crate::desired::AuditWanted;
use crate::engine::watch::{Journal, Level};
use crate::host::docker::Docker;
use crate::host::nflog::{self, NflogListener};
use crate::host::trace;
use crate::model::audit::Attempt;
use crate::model::names::{rule_id, verify_probe_pid};
use crate::model::watch_state::WatchState;
use crate::render::audit::line;
use std::os::fd::BorrowedFd;

/// The IMDS audit receiver of one watcher.
pub struct Auditor {
    listener: NflogListener,
    wanted: AuditWanted,
    docker: Option<Docker>,
    /// Docker failed and the info line saying so was written (until it answers again).
    docker_failing: bool,
}

impl Auditor {
    /// Binds the group of `wanted` in the current network namespace.
    ///
    /// Errors: the socket cannot be opened or the kernel refuses the bind ([`nflog::Error::is_busy`]:
    /// another listener holds the group).
    pub fn open(wanted: &AuditWanted) -> Result<Auditor, nflog::Error> {
        let listener = NflogListener::open(wanted.group, wanted.snaplen)?;
        let docker = wanted.docker_socket.as_deref().map(Docker::new);
        Ok(Auditor { listener, wanted: wanted.clone(), docker, docker_failing: false })
    }

    /// What it was opened for.
    pub fn wanted(&self) -> &AuditWanted {
        &self.wanted
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.fd()
    }

    /// Reads what the group delivered: one warning line per attempt of an audit rule of
    /// ours (another prefix is counted, not written), a warning when the queue overran.
    /// Counts into `state`; `true` when it changed.
    pub fn receive(&mut self, state: &mut WatchState, now: u64, journal: Journal<'_>) -> bool {
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
        for a in &attempts {
            state.audit_packets += 1;
            if a.prefix != rule_id::IMDS_AUDIT_IPV4 && a.prefix != rule_id::IMDS_AUDIT_IPV6 {
                continue;
            }
            let ifname =
                a.indev.and_then(|i| nix::net::if_::if_indextoname(i).ok()).map(|n| n.to_string_lossy().into_owned());
            if ifname.as_deref().is_some_and(is_verify_probe) {
                continue;
            }
            let text = self.line_of(a, ifname.as_deref(), journal);
            journal(Level::Warning, &text);
            state.audit_lines += 1;
            state.last_audit_at = Some(now);
            state.last_audit = Some(text);
        }
        !attempts.is_empty()
    }

    /// The journal line of `a`, with the interface's name and the container when known.
    fn line_of(&mut self, a: &Attempt, ifname: Option<&str>, journal: Journal<'_>) -> String {
        let container = match (&mut self.docker, &a.packet) {
            (Some(d), Some(p)) => match d.container_of(p.src) {
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
            },
            _ => None,
        };
        line(a, ifname, container.as_ref())
    }
}

/// Whether `ifname` is the probe interface of a `verify` that is running in this
/// namespace: its name ends in that run's suffix ([`verify_probe_pid`]) and that run's
/// trace table is live. verify's IMDS probes are expected to be dropped; a line per run
/// would read as a container's attempt (and fire the README's alert). A container cannot
/// pass for one: it would need the name of a live run's veth.
fn is_verify_probe(ifname: &str) -> bool {
    verify_probe_pid(ifname).is_some_and(|pid| trace::live_runs().is_ok_and(|runs| runs.contains(&pid)))
}
