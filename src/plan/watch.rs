//! The decisions of `ecs-hostnet watch`, without clocks or sockets: which nf_tables
//! transactions may have undone ours ([`Collector`], [`Transaction`]), which link and route
//! changes call for a check ([`link_matters`], [`route_matters`], [`host_route_matters`]),
//! when a repair may run ([`Pacer`]: the sliding window, the backoff against a writer that
//! keeps undoing ours, and the quiet period that ends such an episode), and what the
//! journal says about repairs that keep failing ([`Failures`]).
//!
//! Time is passed in as a [`Duration`] since any fixed start (the engine uses a monotonic
//! clock); nothing here reads a clock. Pure: tested without root or a kernel.

use crate::desired::Desired;
use crate::model::event::{NftEvent, Object, Verb, family_name};
use crate::model::names::TABLE_NAME;
use std::collections::VecDeque;
use std::time::Duration;

/// One change to a table named like ours, from a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The kind of object.
    pub object: Object,
    /// Made/changed or deleted.
    pub verb: Verb,
    /// `NFPROTO_*` of the table.
    pub family: u8,
    /// The chain, for chain and rule notifications.
    pub chain: Option<String>,
}

/// A committed transaction of another process that touched a table named like ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The generation after it (`NFTA_GEN_ID`).
    pub generation: u32,
    /// The committing task (`NFTA_GEN_PROC_PID`).
    pub pid: u32,
    /// Its name (`NFTA_GEN_PROC_NAME`).
    pub process: String,
    /// What it did to tables named like ours (at most [`MAX_TOUCHES`] kept).
    pub touches: Vec<Touch>,
}

/// How many touches of one transaction are kept (a flush of our tables has about 15).
pub const MAX_TOUCHES: usize = 256;

impl Transaction {
    /// `nft[4242]`, the writer as the journal names it.
    pub fn writer(&self) -> String {
        let name = if self.process.is_empty() { "?" } else { self.process.as_str() };
        format!("{name}[{}]", self.pid)
    }

    /// What changed, for people: a deleted table (its chains and rules are not listed
    /// again), then deleted chains, then rules and other objects by chain, e.g.
    /// `table inet ecs-hostnet was deleted`, `1 rule was deleted from chain inet ecs-hostnet input`.
    pub fn what(&self) -> String {
        let table = |f: u8| format!("{} {TABLE_NAME}", family_name(f));
        let gone =
            |f: u8| self.touches.iter().any(|t| t.family == f && t.object == Object::Table && t.verb == Verb::Del);
        let mut parts: Vec<String> = Vec::new();
        let mut push = |s: String| {
            if !parts.contains(&s) {
                parts.push(s)
            }
        };
        for t in &self.touches {
            let text = match (t.object, t.verb) {
                (Object::Table, Verb::Del) => format!("table {} was deleted", table(t.family)),
                _ if gone(t.family) => continue,
                (Object::Chain, Verb::Del) => {
                    format!("chain {} {} was deleted", table(t.family), t.chain.as_deref().unwrap_or("?"))
                }
                (Object::Rule, verb) => {
                    let n = self.count(t, verb);
                    let (what, how) = match verb {
                        Verb::Del => ("deleted from", ""),
                        Verb::New => ("added to", ""),
                    };
                    let chain = t.chain.as_deref().unwrap_or("?");
                    format!("{n} rule{} {} {what} chain {} {chain}{how}", plural(n), were(n), table(t.family))
                }
                (Object::Table, Verb::New) => format!("table {} was created or changed", table(t.family)),
                (Object::Chain, Verb::New) => {
                    format!("chain {} {} was created or changed", table(t.family), t.chain.as_deref().unwrap_or("?"))
                }
                (o, Verb::Del) => format!("a {} of table {} was deleted", object_name(o), table(t.family)),
                (o, Verb::New) => format!("a {} of table {} was created or changed", object_name(o), table(t.family)),
            };
            push(text);
        }
        match parts.len() {
            0 => format!("table {TABLE_NAME} was changed"),
            1..=3 => parts.join(", "),
            n => format!("{}, and {} more", parts[..3].join(", "), n - 3),
        }
    }

    fn count(&self, like: &Touch, verb: Verb) -> usize {
        self.touches
            .iter()
            .filter(|t| t.object == Object::Rule && t.verb == verb && t.family == like.family && t.chain == like.chain)
            .count()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn were(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

fn object_name(o: Object) -> &'static str {
    match o {
        Object::Table => "table",
        Object::Chain => "chain",
        Object::Rule => "rule",
        Object::Set => "set",
        Object::SetElem => "set element",
        Object::Obj => "stateful object",
        Object::Flowtable => "flowtable",
    }
}

/// Gathers the notifications of one transaction up to its `NFT_MSG_NEWGEN`.
#[derive(Debug, Default)]
pub struct Collector {
    touches: Vec<Touch>,
}

impl Collector {
    /// Takes one notification. At a `NEWGEN`: the transaction, when it touched a table
    /// named like ours (any family: an `ip6 ecs-hostnet` made by someone else costs one
    /// check) and was committed by another task than `own_pid` (our own batches never
    /// count, so a repair never triggers another); `None` otherwise. Transactions that
    /// touch only other tables (Docker, iptables-nft, firewalld) cost nothing more.
    pub fn feed(&mut self, event: NftEvent, own_pid: u32) -> Option<Transaction> {
        match event {
            NftEvent::Object { msg_type, family, table, chain } => {
                if table.as_deref() == Some(TABLE_NAME)
                    && self.touches.len() < MAX_TOUCHES
                    && let Some((object, verb)) = Object::of(msg_type)
                {
                    self.touches.push(Touch { object, verb, family, chain });
                }
                None
            }
            NftEvent::NewGen { id, pid, name } => {
                let touches = std::mem::take(&mut self.touches);
                (!touches.is_empty() && pid != own_pid).then_some(Transaction {
                    generation: id,
                    pid,
                    process: name,
                    touches,
                })
            }
        }
    }

    /// Forgets a partial transaction (after notifications were lost).
    pub fn reset(&mut self) {
        self.touches.clear();
    }
}

/// Whether a new, renamed or changed interface `name` calls for a check: a per-interface
/// route_localnet selector names it, a container interface pattern matches it, or it is
/// `lo` and the configuration wants the endpoint route (`dev lo`): taking `lo` down
/// deletes the routes through it without an `RTM_DELROUTE`, so `lo` coming up again is
/// when the endpoint route must be put back.
pub fn link_matters(desired: &Desired, name: &str) -> bool {
    desired.route_localnet.iter().any(|s| s == name)
        || desired.container_interfaces.patterns.iter().any(|p| p.matches(name))
        || (name == "lo" && desired.endpoint_route.is_some())
}

/// Whether a change of the IPv4 default route calls for a check: the endpoint route is
/// wanted only while there is none (`endpoint_route_via_lo = "auto"`).
pub fn route_matters(desired: &Desired) -> bool {
    desired.endpoint_route.as_ref().is_some_and(|w| w.auto)
}

/// Whether a new or deleted IPv4 route to the one address `dst` calls for a check: it is
/// the configured endpoint's (`auto` or `always`), so someone may have deleted or
/// replaced the endpoint route.
pub fn host_route_matters(desired: &Desired, dst: std::net::Ipv4Addr) -> bool {
    desired.endpoint_route.as_ref().is_some_and(|w| w.spec.dest == std::net::IpAddr::V4(dst))
}

/// How often a repair that keeps failing for the same reason is mentioned again (info):
/// the first failure of an episode is an err line, the same failure again is silent but
/// for this reminder.
pub const FAILURE_REMINDER: Duration = Duration::from_secs(300);

/// What the journal says about one failed repair ([`Failures::failed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureLine {
    /// The first failure of an episode, or a failure for another reason than the last:
    /// one err line with the reason.
    Err,
    /// The same failure again, [`FAILURE_REMINDER`] after the last line: one info line
    /// counting the attempts so far.
    Reminder {
        /// Failed attempts in this episode.
        attempts: u32,
    },
    /// The same failure again: nothing.
    Silent,
}

/// A failure episode of repairs: from the first failed repair to the next one that
/// succeeds. One err line per episode (or per change of reason), then silence.
#[derive(Debug, Default)]
pub struct Failures {
    attempts: u32,
    reason: Option<String>,
    last_line: Duration,
}

impl Failures {
    /// A repair failed at `now` for `reason` (the error's text).
    pub fn failed(&mut self, now: Duration, reason: &str) -> FailureLine {
        self.attempts += 1;
        if self.reason.as_deref() != Some(reason) {
            self.reason = Some(reason.to_string());
            self.last_line = now;
            return FailureLine::Err;
        }
        if now.saturating_sub(self.last_line) >= FAILURE_REMINDER {
            self.last_line = now;
            return FailureLine::Reminder { attempts: self.attempts };
        }
        FailureLine::Silent
    }

    /// A repair (or a check) succeeded: ends the episode. Returns how many attempts had
    /// failed in it (for one notice line), `None` when none had.
    pub fn succeeded(&mut self) -> Option<u32> {
        let n = std::mem::take(&mut self.attempts);
        self.reason = None;
        (n > 0).then_some(n)
    }
}

/// More than this many repairs within [`WINDOW`] start a backoff episode.
pub const MAX_REPAIRS_IN_WINDOW: usize = 5;
/// The sliding window repairs are counted in: more than 5 repairs in one second is a
/// writer that undoes ours as soon as it is back (a tight loop, a misconfigured
/// firewall manager), not an operator or a service restart.
pub const WINDOW: Duration = Duration::from_secs(1);
/// The first pause between repairs in an episode; it doubles up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest pause between repairs in an episode: the host converges at most this long
/// after the writer stops.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// How long a repair must hold for an episode to end.
pub const QUIET: Duration = Duration::from_secs(1);

/// A backoff episode: another writer keeps undoing our repairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// The writer that started it (`nft[4242]`).
    pub writer: String,
    /// Repairs made since it started.
    pub repairs: u32,
    /// The pause before the next repair.
    pub delay: Duration,
}

/// What the pacer has to say after a repair or a wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// A backoff episode starts (one err line): `writer` undid ours too often.
    BackoffStarted {
        /// Who.
        writer: String,
        /// Repairs within [`WINDOW`] that triggered it.
        repairs: usize,
    },
    /// The episode is over (one notice line): the last repair held for [`QUIET`].
    BackoffEnded {
        /// The writer named when it started.
        writer: String,
        /// Repairs made during the episode.
        repairs: u32,
    },
}

/// When repairs may run. A check is wanted ([`Pacer::want`]); it runs when
/// [`Pacer::due`]; the engine reports each repair or failure ([`Pacer::repaired`],
/// [`Pacer::failed`]); [`Pacer::timeout`] is how long `poll` may sleep.
#[derive(Debug, Default)]
pub struct Pacer {
    recent: VecDeque<Duration>,
    episode: Option<Episode>,
    pending: bool,
    not_before: Duration,
    last_repair: Option<Duration>,
    failures: u32,
}

impl Pacer {
    /// A check is wanted (events arrived). Wants coalesce: one check serves them all.
    pub fn want(&mut self) {
        self.pending = true;
    }

    /// Whether a wanted check may run at `now`.
    pub fn due(&self, now: Duration) -> bool {
        self.pending && now >= self.not_before
    }

    /// Whether a check is wanted but may not run yet at `now` (a backoff pause, a
    /// failure's retry).
    pub fn waiting(&self, now: Duration) -> bool {
        self.pending && now < self.not_before
    }

    /// The check ran and found nothing to do (or repaired: see [`Pacer::repaired`]).
    pub fn checked(&mut self) {
        self.pending = false;
        self.failures = 0;
    }

    /// The current backoff episode, if any.
    pub fn episode(&self) -> Option<&Episode> {
        self.episode.as_ref()
    }

    /// A repair was made at `now` after a change by `writer`: counts it in the window, and
    /// starts or continues a backoff episode (then the next repair waits).
    pub fn repaired(&mut self, now: Duration, writer: &str) -> Option<Announcement> {
        self.checked();
        self.last_repair = Some(now);
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|t| now.saturating_sub(*t) > WINDOW) {
            self.recent.pop_front();
        }
        if let Some(e) = &mut self.episode {
            e.repairs += 1;
            self.not_before = now + e.delay;
            e.delay = (e.delay * 2).min(MAX_DELAY);
            return None;
        }
        if self.recent.len() > MAX_REPAIRS_IN_WINDOW {
            let e = Episode { writer: writer.to_string(), repairs: 0, delay: FIRST_DELAY };
            self.not_before = now + e.delay;
            let repairs = self.recent.len();
            self.episode = Some(Episode { delay: (e.delay * 2).min(MAX_DELAY), ..e });
            return Some(Announcement::BackoffStarted { writer: writer.to_string(), repairs });
        }
        None
    }

    /// A check or repair failed at `now`: it is tried again after a pause that doubles
    /// with each failure in a row (100 ms up to [`MAX_DELAY`]).
    pub fn failed(&mut self, now: Duration) {
        self.pending = true;
        let delay = (FIRST_DELAY * 2u32.saturating_pow(self.failures.min(5))).min(MAX_DELAY);
        self.failures += 1;
        self.not_before = now + delay;
    }

    /// Ends the episode when nothing is wanted and the last repair has held for [`QUIET`].
    pub fn settle(&mut self, now: Duration) -> Option<Announcement> {
        let held = self.last_repair.is_some_and(|t| now.saturating_sub(t) >= QUIET);
        if self.episode.is_some() && !self.pending && held {
            let e = self.episode.take()?;
            self.recent.clear();
            // The pause of the episode is over too: the next repair runs at once.
            self.not_before = Duration::ZERO;
            return Some(Announcement::BackoffEnded { writer: e.writer, repairs: e.repairs });
        }
        None
    }

    /// How long `poll` may sleep from `now`: until a wanted check is due, or until an
    /// episode's quiet period ends; `None` (no timeout: no CPU) when neither.
    pub fn timeout(&self, now: Duration) -> Option<Duration> {
        if self.pending {
            return Some(self.not_before.saturating_sub(now));
        }
        match (&self.episode, self.last_repair) {
            (Some(_), Some(t)) => Some((t + QUIET).saturating_sub(now)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::msg;

    fn obj(msg_type: u8, family: u8, table: &str, chain: Option<&str>) -> NftEvent {
        NftEvent::Object { msg_type, family, table: Some(table.into()), chain: chain.map(String::from) }
    }

    fn gen_(pid: u32, name: &str) -> NftEvent {
        NftEvent::NewGen { id: 57, pid, name: name.into() }
    }

    const ME: u32 = 100;

    #[test]
    fn a_flush_of_our_table_by_another_process_is_a_candidate() {
        let mut c = Collector::default();
        for e in [
            obj(msg::DELRULE, 1, TABLE_NAME, Some("input")),
            obj(msg::DELRULE, 1, TABLE_NAME, Some("input")),
            obj(msg::DELCHAIN, 1, TABLE_NAME, Some("input")),
            obj(msg::DELTABLE, 1, TABLE_NAME, None),
            obj(msg::DELTABLE, 2, "nat", None),
        ] {
            assert_eq!(c.feed(e, ME), None);
        }
        let t = c.feed(gen_(4242, "nft"), ME).expect("a candidate");
        assert_eq!(t.writer(), "nft[4242]");
        assert_eq!(t.generation, 57);
        assert_eq!(t.what(), "table inet ecs-hostnet was deleted", "its chains and rules are not listed again");
    }

    #[test]
    fn our_own_batches_and_other_tables_are_not_candidates() {
        let mut c = Collector::default();
        c.feed(obj(msg::NEWTABLE, 1, TABLE_NAME, None), ME);
        assert_eq!(c.feed(gen_(ME, "ecs-hostnet"), ME), None, "our own commit");
        c.feed(obj(msg::NEWRULE, 2, "nat", Some("DOCKER")), ME);
        c.feed(obj(msg::NEWRULE, 2, "ecs-hostnetx", Some("x")), ME);
        assert_eq!(c.feed(gen_(7, "dockerd"), ME), None, "Docker's own tables");
        // The next transaction starts empty: nothing of the one before leaks into it.
        c.feed(obj(msg::DELRULE, 2, TABLE_NAME, Some("prerouting")), ME);
        let t = c.feed(gen_(8, "nft"), ME).unwrap();
        assert_eq!(t.touches.len(), 1);
        assert_eq!(t.what(), "1 rule was deleted from chain ip ecs-hostnet prerouting");
    }

    #[test]
    fn verify_trace_tables_are_not_ours() {
        // `verify` makes and deletes `table inet ecs-hostnet-verify-<pid>`: the watcher
        // must not take that for an edit of our table and repair.
        let mut c = Collector::default();
        c.feed(obj(msg::NEWTABLE, 1, "ecs-hostnet-verify-4242", None), ME);
        c.feed(obj(msg::NEWCHAIN, 1, "ecs-hostnet-verify-4242", Some("prerouting")), ME);
        c.feed(obj(msg::NEWRULE, 1, "ecs-hostnet-verify-4242", Some("prerouting")), ME);
        assert_eq!(c.feed(gen_(4242, "ecs-hostnet"), ME), None);
        c.feed(obj(msg::DELTABLE, 1, "ecs-hostnet-verify-4242", None), ME);
        assert_eq!(c.feed(gen_(4242, "ecs-hostnet"), ME), None);
    }

    #[test]
    fn edits_are_described_by_chain() {
        let mut c = Collector::default();
        c.feed(obj(msg::DELRULE, 1, TABLE_NAME, Some("input")), ME);
        c.feed(obj(msg::NEWRULE, 1, TABLE_NAME, Some("input")), ME);
        c.feed(obj(msg::DELCHAIN, 1, TABLE_NAME, Some("forward")), ME);
        let t = c.feed(gen_(9, ""), ME).unwrap();
        assert_eq!(t.writer(), "?[9]");
        assert_eq!(
            t.what(),
            "1 rule was deleted from chain inet ecs-hostnet input, 1 rule was added to chain inet ecs-hostnet input, \
             chain inet ecs-hostnet forward was deleted"
        );
        c.reset();
        assert_eq!(c.feed(gen_(9, "x"), ME), None, "reset forgets the partial transaction");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_few_repairs_never_back_off_and_idle_has_no_timeout() {
        let mut p = Pacer::default();
        assert_eq!(p.timeout(ms(0)), None, "idle: poll sleeps without a timeout");
        for i in 0..MAX_REPAIRS_IN_WINDOW as u64 {
            p.want();
            assert!(p.due(ms(i * 10)));
            assert_eq!(p.repaired(ms(i * 10), "nft[1]"), None);
            assert_eq!(p.timeout(ms(i * 10)), None);
        }
        // Repairs further apart than the window never add up.
        for i in 0..20u64 {
            p.want();
            assert!(p.due(ms(10_000 + i * 2_100)));
            assert_eq!(p.repaired(ms(10_000 + i * 2_100), "nft[1]"), None);
        }
    }

    #[test]
    fn a_writer_that_keeps_undoing_meets_backoff_once_and_the_episode_ends_when_quiet() {
        let mut p = Pacer::default();
        let mut now = ms(0);
        let mut started = 0;
        let mut repairs = 0;
        // The writer undoes every repair at once, for 3 s.
        while now < ms(3000) {
            p.want();
            if p.due(now) {
                repairs += 1;
                if let Some(Announcement::BackoffStarted { writer, repairs }) = p.repaired(now, "nft[42]") {
                    assert_eq!((writer.as_str(), repairs), ("nft[42]", MAX_REPAIRS_IN_WINDOW + 1));
                    started += 1;
                }
            } else {
                let t = p.timeout(now).unwrap();
                assert!(t > Duration::ZERO && t <= MAX_DELAY, "sleep until the next allowed repair: {t:?}");
            }
            now += ms(1);
        }
        assert_eq!(started, 1, "one announcement per episode");
        // 6 at once, then 100, 200, 400, 800, 1600 ms apart: far fewer than 3000.
        assert!(repairs <= 12, "{repairs} repairs in 3 s");
        assert_eq!(p.episode().unwrap().delay, MAX_DELAY);
        // The writer stops: the wanted repair runs at most MAX_DELAY later and holds.
        let stop = now;
        while !p.due(now) {
            now += ms(1);
        }
        assert!(now - stop <= MAX_DELAY);
        assert_eq!(p.repaired(now, "nft[42]"), None);
        assert_eq!(p.settle(now + QUIET - ms(1)), None);
        assert_eq!(p.timeout(now), Some(QUIET), "wake for the end of the quiet period");
        match p.settle(now + QUIET) {
            Some(Announcement::BackoffEnded { writer, repairs: n }) => {
                assert_eq!(writer, "nft[42]");
                assert!(n >= 5, "{n}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.timeout(now + QUIET), None, "idle again");
        // A later single repair is immediate again.
        p.want();
        assert!(p.due(now + QUIET));
    }

    #[test]
    fn failures_retry_with_a_doubling_pause() {
        let mut p = Pacer::default();
        p.want();
        p.failed(ms(0));
        assert!(!p.due(ms(99)) && p.due(ms(100)));
        p.failed(ms(100));
        assert_eq!(p.timeout(ms(100)), Some(ms(200)));
        for _ in 0..10 {
            p.failed(ms(1000));
        }
        assert_eq!(p.timeout(ms(1000)), Some(MAX_DELAY));
        p.checked();
        assert_eq!(p.timeout(ms(1000)), None);
    }

    #[test]
    fn links_and_routes_matter_only_when_the_configuration_names_them() {
        let d = |toml: &str| crate::desired::compile(&crate::config::parse("t.toml", toml).unwrap());
        let plain = d("");
        assert!(link_matters(&plain, "docker0"), "a container interface pattern");
        assert!(!link_matters(&plain, "eth1"));
        let per_if = d("[route_localnet]\nenable = [\"ecs-bridge\", \"docker0\"]\n");
        assert!(link_matters(&per_if, "ecs-bridge"));
        assert!(route_matters(&d("[credentials]\nendpoint_route_via_lo = \"auto\"\n")));
        assert!(!route_matters(&d("[credentials]\nendpoint_route_via_lo = \"never\"\n")));
    }

    #[test]
    fn the_endpoint_route_and_lo_matter_while_the_configuration_wants_the_route() {
        let d = |toml: &str| crate::desired::compile(&crate::config::parse("t.toml", toml).unwrap());
        let endpoint = std::net::Ipv4Addr::new(169, 254, 170, 2);
        for mode in ["auto", "always"] {
            let w = d(&format!("[credentials]\nendpoint_route_via_lo = \"{mode}\"\n"));
            assert!(host_route_matters(&w, endpoint), "{mode}");
            assert!(!host_route_matters(&w, std::net::Ipv4Addr::new(169, 254, 170, 3)), "{mode}");
            assert!(link_matters(&w, "lo"), "{mode}: lo coming up again");
        }
        let never = d("[credentials]\nendpoint_route_via_lo = \"never\"\n");
        assert!(!host_route_matters(&never, endpoint));
        assert!(!link_matters(&never, "lo"));
    }

    #[test]
    fn a_repair_failing_for_the_same_reason_is_one_err_line_then_silence_then_one_success() {
        let mut f = Failures::default();
        assert_eq!(f.succeeded(), None, "no episode: nothing to announce");
        assert_eq!(f.failed(ms(0), "owner flag"), FailureLine::Err);
        for i in 1..20u64 {
            assert_eq!(f.failed(ms(i * 2000), "owner flag"), FailureLine::Silent, "attempt {i}");
        }
        assert_eq!(f.failed(FAILURE_REMINDER, "owner flag"), FailureLine::Reminder { attempts: 21 });
        assert_eq!(f.failed(FAILURE_REMINDER + ms(2000), "owner flag"), FailureLine::Silent);
        assert_eq!(f.failed(FAILURE_REMINDER + ms(4000), "lock busy"), FailureLine::Err, "another reason");
        assert_eq!(f.succeeded(), Some(23));
        assert_eq!(f.succeeded(), None, "the episode is over");
        assert_eq!(f.failed(FAILURE_REMINDER * 2, "owner flag"), FailureLine::Err, "a new episode");
    }
}
