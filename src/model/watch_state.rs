//! What a running `ecs-hostnet watch` tells `status` about itself: the watcher state file
//! (`watch-<netns inode>.json` in the run directory, beside its pid file), its JSON form.

use serde::{Deserialize, Serialize};

/// The schema name of the watcher state file.
pub const SCHEMA: &str = "ecs-hostnet.watch-state/v1";

/// The watcher's state, written at start and after every repair and backoff change
/// (atomically, 0600) and removed when it exits.
///
/// JSON: `{"schema": "ecs-hostnet.watch-state/v1", "pid": 4242, "started_at": 1767225600,
/// "repairs": 3, "last_repair_at": 1767229200 or null, "last_repair": "repaired in 1.2 ms:
/// ..." or null, "backoff_episodes": 0, "in_backoff": false}`; times in Unix seconds (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchState {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The watcher's process id (the one of its pid file).
    pub pid: u32,
    /// When the watcher started, Unix seconds.
    pub started_at: u64,
    /// Repairs made since it started (the first converge is not counted).
    pub repairs: u64,
    /// When the last repair was made, Unix seconds; `None` before the first.
    pub last_repair_at: Option<u64>,
    /// The last repair's journal line (`repaired in 1.2 ms: WHAT CHANGED (by WHO); WHAT
    /// CAME BACK`); `None` before the first.
    pub last_repair: Option<String>,
    /// Backoff episodes begun (another writer kept undoing ecs-hostnet's rules; see
    /// [`crate::model::event`] and the watcher's pacing).
    pub backoff_episodes: u64,
    /// Whether the watcher is backing off now.
    pub in_backoff: bool,
    /// The nfnetlink_log group the watcher receives the IMDS audit on; `None`: no audit
    /// (off, or the bind failed: see the journal).
    #[serde(default)]
    pub audit_group: Option<u16>,
    /// Packets the audit group delivered since the watcher started (each an IMDS attempt
    /// the audit rules' rate limit let through).
    #[serde(default)]
    pub audit_packets: u64,
    /// Audit lines written to the journal since the watcher started.
    #[serde(default)]
    pub audit_lines: u64,
    /// When the last audit line was written, Unix seconds; `None` before the first.
    #[serde(default)]
    pub last_audit_at: Option<u64>,
    /// The last audit line (`IMDS attempt blocked: ...`); `None` before the first.
    #[serde(default)]
    pub last_audit: Option<String>,
}

impl WatchState {
    /// A watcher that just started: no repair yet.
    pub fn started(pid: u32, started_at: u64) -> WatchState {
        WatchState {
            schema: SCHEMA.to_string(),
            pid,
            started_at,
            repairs: 0,
            last_repair_at: None,
            last_repair: None,
            backoff_episodes: 0,
            in_backoff: false,
            audit_group: None,
            audit_packets: 0,
            audit_lines: 0,
            last_audit_at: None,
            last_audit: None,
        }
    }

    /// Reads a state file's bytes; `None` for anything that is not this schema.
    pub fn parse(bytes: &[u8]) -> Option<WatchState> {
        serde_json::from_slice::<WatchState>(bytes).ok().filter(|s| s.schema == SCHEMA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_other_files_are_refused() {
        let mut s = WatchState::started(42, 1_767_225_600);
        s.repairs = 2;
        s.last_repair_at = Some(1_767_229_200);
        s.last_repair = Some("repaired in 1.0 ms: x".into());
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(WatchState::parse(&json), Some(s.clone()));
        let other = String::from_utf8(json).unwrap().replace(SCHEMA, "ecs-hostnet.watch-state/v9");
        assert_eq!(WatchState::parse(other.as_bytes()), None);
        assert_eq!(WatchState::parse(b"4242\n"), None);
    }

    #[test]
    fn a_state_file_without_the_audit_fields_reads_as_no_audit() {
        let old = br#"{"schema": "ecs-hostnet.watch-state/v1", "pid": 7, "started_at": 1, "repairs": 0,
            "last_repair_at": null, "last_repair": null, "backoff_episodes": 0, "in_backoff": false}"#;
        let s = WatchState::parse(old).unwrap();
        assert_eq!((s.audit_group, s.audit_packets, s.audit_lines, s.last_audit), (None, 0, 0, None));
    }
}
