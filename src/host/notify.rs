//! The service manager's notification protocol (sd_notify(3), through the `sd-notify`
//! crate): `READY=1`, `STATUS=...`, `STOPPING=1` and `WATCHDOG=1` for a `Type=notify`
//! unit. Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::time::Duration;

/// A notification to the service manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`: start-up finished (systemd then starts the units ordered after us).
    Ready,
    /// `STATUS=...`: one line shown by `systemctl status`.
    Status(&'a str),
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `WATCHDOG=1`: still alive (only when [`watchdog_interval`] is set).
    Watchdog,
}

/// Sends `states` in one datagram. Best effort: a manager that cannot be told is no
/// reason to stop repairing, so a failure is ignored (systemd then times the unit out,
/// which says more than we could).
pub fn notify(states: &[State<'_>]) {
    use sd_notify::NotifyState as N;
    let states: Vec<N<'_>> = states
        .iter()
        .map(|s| match s {
            State::Ready => N::Ready,
            State::Status(t) => N::Status(t),
            State::Stopping => N::Stopping,
            State::Watchdog => N::Watchdog,
        })
        .collect();
    let _ = sd_notify::notify(&states);
}

/// How often the manager wants `WATCHDOG=1`: `$WATCHDOG_USEC` when set and meant for this
/// process (`$WATCHDOG_PID` absent or ours), else `None` (then no timer at all).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}
