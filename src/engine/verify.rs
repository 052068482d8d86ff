//! `verify`: an end-to-end probe of the live host. A temporary network namespace, kept
//! only as an open descriptor (it and its veth vanish with the process, even after
//! SIGKILL), is joined to the host by a veth whose host end is named like a container
//! interface, with addresses from 198.18.0.0/15 (RFC 2544) and a random ULA /64 that
//! collide with nothing on the host. A trace table (`table inet ecs-hostnet-verify-<pid>`,
//! [`crate::host::trace`]) marks the probes' packets with nftrace; one TCP SYN goes to each
//! destination the configuration calls for ([`crate::plan::verify::probes`]), and the trace
//! events name every table/chain/rule that saw it. The judgement is
//! [`crate::plan::verify::judge`], by outcome: where a credentials probe was DNATed is
//! read from its conntrack entry before the entries the probes made are deleted.
//!
//! Every object is removed on every exit path: each is recorded in [`Made`] the moment it
//! exists and removed there in order (and by Drop guards on a panic). SIGTERM, SIGINT and
//! SIGHUP are blocked before the first object is made and read from a signalfd at every
//! step and wait: a signal ends the run, with everything removed, as an error (exit 1).
//! SIGKILL cannot be caught: the probe namespace and its veth go with the process, the
//! trace table with its owner socket, and the next run deletes a trace table a killed
//! run left on kernels without table flag owner.

use crate::config::Config;
use crate::host::conntrack::Conntrack;
use crate::host::events::Signals;
use crate::host::netns::Home;
use crate::host::nft::Netfilter;
use crate::host::rtnl::Rtnl;
use crate::host::trace::{self, Select, TraceListener, TraceTable};
use crate::model::live::LiveTable;
use crate::model::names::TABLE_NAME;
use crate::model::ruleset::Family;
use crate::model::trace::{TraceEvent, TraceType, Verdict};
use crate::plan::verify::{Connect, Evidence, ProbeKind, ProbeReport, Report, Step, attribute, judge, probes};
use anyhow::{Context, Result, bail};
use nix::sys::socket::{self as so, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a probe waits for its SYN-ACK or RST.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// The veth's host end, deleted by [`Made::remove`] or in Drop (its peer and the probe
/// namespace go with it). Its own rtnetlink socket, opened in the host namespace.
struct Veth {
    rt: Rtnl,
    index: u32,
    deleted: bool,
}

impl Veth {
    fn delete(&mut self) -> Result<()> {
        if !std::mem::replace(&mut self.deleted, true) {
            self.rt.delete_link(self.index).context("cannot delete the probe veth")?;
        }
        Ok(())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = self.delete();
    }
}

/// A signal (`SIGTERM`, `SIGINT`, `SIGHUP`) that stopped the run at a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
struct Interrupted(&'static str);

/// Everything the run made on the host, in the order it is removed by [`Made::remove`]:
/// the trace table, the probes' conntrack entries, the veth (and with it the probe's
/// end), then the probe namespace's last descriptor. Each is in here from the moment it
/// exists, so that every exit path (an error, a signal) removes it.
#[derive(Default)]
struct Made {
    table: Option<TraceTable>,
    /// The probes' source addresses, for their conntrack entries.
    sources: Vec<SocketAddr>,
    veth: Option<Veth>,
    probe_ns: Option<std::fs::File>,
}

impl Made {
    /// Removes everything, in order, going on past a failure; the first failure is the
    /// result. Runs in the host namespace.
    fn remove(&mut self, c: &Config) -> Result<()> {
        let mut first: Option<anyhow::Error> = None;
        if let Some(mut t) = self.table.take()
            && let Err(e) = t.remove()
        {
            first.get_or_insert(anyhow::Error::from(e).context("cannot delete the trace table"));
        }
        delete_conntrack(c, &std::mem::take(&mut self.sources));
        if let Some(mut v) = self.veth.take()
            && let Err(e) = v.delete()
        {
            first.get_or_insert(e);
        }
        // The veth is gone: closing the last descriptor frees an empty namespace.
        self.probe_ns = None;
        first.map_or(Ok(()), Err)
    }
}

/// Stops the run when SIGTERM, SIGINT or SIGHUP arrived since the last look (they wait,
/// blocked, in the signalfd).
fn checkpoint(signals: &mut Signals) -> Result<()> {
    match signals.take_names()?.first() {
        Some(name) => Err(Interrupted(name).into()),
        None => Ok(()),
    }
}

/// Picks the probe's interface name: a container pattern's prefix plus a suffix from
/// our pid, or an exact name that does not exist; patterns the IMDS block leaves alone
/// only when nothing else fits. Returns (name, pattern, imds excluded).
fn interface_name(c: &Config, existing: &[String]) -> Result<(String, String, bool)> {
    let excluded = c.imds_exclusions();
    let mut candidates = Vec::new();
    for p in c.container_interfaces() {
        let name = match p.as_str().strip_suffix('+') {
            Some(prefix) => {
                let suffix = crate::model::names::verify_probe_suffix(std::process::id());
                let room = 15usize.saturating_sub(prefix.len());
                format!("{prefix}{}", &suffix[..suffix.len().min(room)])
            }
            None => p.as_str().to_string(),
        };
        if existing.contains(&name) || !p.matches(&name) {
            continue;
        }
        let ex = excluded.iter().any(|e| e.matches(&name));
        candidates.push((ex, p.is_prefix(), name, p.as_str().to_string()));
    }
    // Not excluded first, then prefix patterns (an exact name may be made by Docker or
    // the agent at any moment).
    candidates.sort_by_key(|(ex, prefix, ..)| (*ex, !*prefix));
    match candidates.into_iter().next() {
        Some((ex, _, name, pattern)) => Ok((name, pattern, ex)),
        None => bail!(
            "no container interface pattern can name a probe interface: [containers] interfaces has only exact names that exist ({})",
            c.container_interfaces().iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn overlaps(a: IpAddr, alen: u8, b: IpAddr, blen: u8) -> bool {
    let len = alen.min(blen);
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

/// A /30 in 198.18.0.0/15 and a ULA /64 that overlap no address or route of the host.
fn pick_prefixes(used: &[(IpAddr, u8)]) -> Result<(Ipv4Addr, Ipv6Addr)> {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let free = |a: IpAddr, len: u8| !used.iter().any(|(u, ul)| *ul > 0 && overlaps(a, len, *u, *ul));
    let v4 = (0..512u64)
        .map(|i| {
            let n = (splitmix(seed, i) % (1 << 15)) as u32; // 2^17 addresses / 4
            Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n * 4)
        })
        .find(|a| free(IpAddr::V4(*a), 30))
        .context("no free /30 in 198.18.0.0/15")?;
    let v6 = (0..64u64)
        .map(|i| {
            let global = splitmix(seed ^ 0x5eed, i) & 0xff_ffff_ffff_ffff;
            Ipv6Addr::from((0xfdu128 << 120) | ((global as u128) << 64))
        })
        .find(|a| free(IpAddr::V6(*a), 64))
        .context("no free ULA /64")?;
    Ok((v4, v6))
}

/// The `i`-th number of a SplitMix64 sequence from `seed`: every bit depends on `i`, so
/// consecutive candidates land anywhere in the range.
fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn offset(base: IpAddr, n: u8) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + n as u32)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) + n as u128)),
    }
}

/// Waits (up to 3 s) until interface `index` is operationally up (packets sent before
/// are dropped by its not yet activated queue discipline) and none of its IPv6
/// addresses is tentative (see [`Rtnl::has_tentative`]); a signal stops the wait.
fn wait_running(rt: &mut Rtnl, index: u32, signals: &mut Signals) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !rt.link_running(index)? || rt.has_tentative(index)? {
        if Instant::now() > deadline {
            bail!("the probe veth did not come up within 3 s");
        }
        checkpoint(signals)?;
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

/// A non-blocking TCP socket in the calling thread's namespace for `to`, with the
/// trace's socket mark when given (connected later by [`connect_now`]).
fn new_socket(to: SocketAddr, mark: Option<u32>) -> Result<OwnedFd> {
    let fam = if to.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = so::socket(fam, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
        .context("probe socket")?;
    if let Some(m) = mark {
        so::setsockopt(&fd, sockopt::Mark, &m).context("SO_MARK on the host probe's socket")?;
    }
    Ok(fd)
}

fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    let s: SockaddrStorage = so::getsockname(std::os::fd::AsRawFd::as_raw_fd(fd)).ok()?;
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

fn connect_result(fd: &OwnedFd) -> Connect {
    match so::getsockopt(fd, sockopt::SocketError) {
        Ok(0) => Connect::Answered,
        Ok(e) if e == libc::ECONNREFUSED => Connect::Refused,
        Ok(e) => Connect::Failed(std::io::Error::from_raw_os_error(e).to_string()),
        Err(e) => Connect::Failed(e.to_string()),
    }
}

/// The probe namespace's side, once set up: the container probes' sockets (made in
/// there), its rtnetlink socket and its `eth0`.
type ProbeSide = (Vec<(ProbeKind, SocketAddr, Result<OwnedFd>)>, Rtnl, u32);

struct Live {
    kind: ProbeKind,
    to: SocketAddr,
    fd: OwnedFd,
    from: Option<SocketAddr>,
    connect: Option<Connect>,
}

/// Runs the probes on the current network namespace (the host).
///
/// SIGTERM, SIGINT and SIGHUP are blocked before anything is made (they then wait in a
/// signalfd instead of killing the process) and looked at between the steps, during the
/// waits, and once more after everything is removed: a signal at any point ends the run
/// with everything removed and the error `interrupted by SIGNAL; ...` (exit 1). A signal
/// that arrives after that last look finds nothing left to remove.
///
/// Errors: anything that kept the probe from being set up or read, a signal, or a
/// failure to remove what was made (everything else is still removed).
pub fn run(c: &Config) -> Result<Report> {
    let mut signals = Signals::open()?;
    let mut made = Made::default();
    let result = probe(c, &mut signals, &mut made);
    let removed = made.remove(c);
    let signal = match result.as_ref().err().and_then(|e| e.downcast_ref::<Interrupted>()) {
        Some(Interrupted(name)) => Some(*name),
        None => signals.take_names()?.first().copied(),
    };
    match (signal, removed) {
        (Some(name), Ok(())) => {
            bail!(
                "interrupted by {name}; everything verify had made (trace table, probe veth and namespace) was removed"
            )
        }
        (Some(name), Err(e)) => Err(e.context(format!("interrupted by {name}; removing what verify had made failed"))),
        // Both failed: the run's error first, then the removal's (with its cause).
        (None, Err(e)) => Err(match result {
            Ok(_) => e,
            Err(first) => e.context(format!("{first:#}; then removing what verify had made failed")),
        }),
        (None, Ok(())) => result,
    }
}

/// [`run`]'s work: every object goes into `made` as soon as it exists.
fn probe(c: &Config, signals: &mut Signals, made: &mut Made) -> Result<Report> {
    let start = Instant::now();
    let cleaned = trace::sweep_dead(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())?;
    let mut rt = Rtnl::open()?;
    let existing: Vec<String> = rt.links()?.into_iter().map(|(_, n)| n).collect();
    let (ifname, pattern, imds_excluded) = interface_name(c, &existing)?;
    let mut used = rt.addresses()?;
    used.extend(rt.route_destinations()?);
    let (v4, v6) = pick_prefixes(&used)?;
    let (host4, probe4, host6, probe6) =
        (offset(v4.into(), 1), offset(v4.into(), 2), offset(v6.into(), 1), offset(v6.into(), 2));
    let (wanted, skipped) = probes(c, imds_excluded);
    checkpoint(signals)?;

    // The probe namespace, held by this descriptor only.
    let home = Home::here()?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("cannot make the probe network namespace")?;
    let probe_ns = std::fs::File::open("/proc/thread-self/ns/net");
    home.go_back()?;
    let probe_ns = made.probe_ns.insert(probe_ns.context("cannot open the probe network namespace")?);
    let probe_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(probe_ns));

    let veth_rt = Rtnl::open()?;
    rt.add_veth(&ifname, "eth0", probe_ns.as_fd()).with_context(|| format!("cannot create the probe veth {ifname}"))?;
    // Not found: nothing to delete by index, but the kernel deletes the pair with the
    // probe namespace when `made` closes it.
    let index = rt.link_index(&ifname)?.with_context(|| format!("the probe veth {ifname} vanished"))?;
    made.veth = Some(Veth { rt: veth_rt, index, deleted: false });
    checkpoint(signals)?;
    crate::host::sysctl::disable_dad(&ifname)?;
    rt.add_address(index, host4, 30)?;
    rt.add_address(index, host6, 64)?;
    rt.set_up(index)?;
    checkpoint(signals)?;

    let mark = 0xec5e_0000 | (std::process::id() & 0xffff);
    crate::host::netns::enter_path(std::path::Path::new(&probe_path))?;
    let inside = (|| -> Result<ProbeSide> {
        let mut prt = Rtnl::open()?;
        let eth0 = prt.link_index("eth0")?.context("the probe's eth0 is missing")?;
        crate::host::sysctl::disable_dad("eth0")?;
        prt.add_address(eth0, probe4, 30)?;
        prt.add_address(eth0, probe6, 64)?;
        prt.set_up(eth0)?;
        if let Some(lo) = prt.link_index("lo")? {
            prt.set_up(lo)?;
        }
        prt.add_default_via(host4)?;
        prt.add_default_via(host6)?;
        let container: Vec<(ProbeKind, SocketAddr)> =
            wanted.iter().filter(|(k, _)| k.from_container()).copied().collect();
        let fds = container.iter().map(|(kind, to)| (*kind, *to, new_socket(*to, None))).collect();
        Ok((fds, prt, eth0))
    })();
    home.go_back()?;
    let (fds, mut prt, eth0) = inside?;
    wait_running(&mut rt, index, signals)?;
    wait_running(&mut prt, eth0, signals)?;
    // Trace listener and table before the first SYN: the kernel traces only while
    // someone listens.
    let mut listener = TraceListener::open()?;
    let table_name = format!("{}{}", trace::TABLE_PREFIX, std::process::id());
    made.table = Some(TraceTable::create(&table_name, &Select::Iifname(ifname.clone()), &Select::Mark(mark))?);
    checkpoint(signals)?;
    let ours = our_tables()?;

    let mut live = Vec::new();
    for (kind, to, sock) in fds {
        live.push(Live { kind, to, fd: sock?, from: None, connect: None });
    }
    for (kind, to) in wanted.iter().filter(|(k, _)| !k.from_container()) {
        let fd = new_socket(*to, Some(mark))?;
        live.push(Live { kind: *kind, to: *to, fd, from: None, connect: None });
    }
    for l in &mut live {
        connect_now(l);
        made.sources.extend(l.from);
    }
    let events = collect(&mut live, &mut listener, signals)?;
    checkpoint(signals)?;
    let nat_to = nat_destinations(c, &live);
    let probes = report(c, &mut live, &events, &ours, &nat_to)?;
    Ok(Report {
        interface: ifname,
        pattern,
        probe_addresses: vec![probe4, probe6],
        trace_table: table_name,
        probes,
        skipped,
        cleaned,
        elapsed_ms: start.elapsed().as_millis() as u64,
    })
}

fn connect_now(l: &mut Live) {
    let addr = SockaddrStorage::from(l.to);
    match so::connect(std::os::fd::AsRawFd::as_raw_fd(&l.fd), &addr) {
        Ok(()) => l.connect = Some(Connect::Answered),
        Err(nix::errno::Errno::EINPROGRESS) | Err(nix::errno::Errno::EALREADY) => {}
        Err(nix::errno::Errno::ECONNREFUSED) => l.connect = Some(Connect::Refused),
        Err(e) => l.connect = Some(Connect::Failed(std::io::Error::from_raw_os_error(e as i32).to_string())),
    }
    l.from = local_addr(&l.fd);
}

/// Each probe's SYN's events ([`attribute`]).
fn by_probe(live: &[Live], events: &[TraceEvent]) -> Vec<Vec<usize>> {
    attribute(events, &live.iter().map(|l| l.from).collect::<Vec<_>>())
}

/// Whether the event is of the trace table (it only marks packets: never shown, never a
/// verdict on the probe).
fn of_trace_table(e: &TraceEvent) -> bool {
    e.table.starts_with(trace::TABLE_PREFIX)
}

/// Waits until every probe connected, was refused or failed, or its SYN was dropped,
/// or [`CONNECT_TIMEOUT`] passed; returns every trace event read.
fn collect(live: &mut [Live], listener: &mut TraceListener, signals: &mut Signals) -> Result<Vec<TraceEvent>> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut events = Vec::new();
    loop {
        let (evs, lost) = listener.receive()?;
        if lost {
            bail!("trace events were lost (the receive queue overran); run verify again");
        }
        events.extend(evs);
        // A drop is final: the probe whose SYN it ended is complete now, not at the
        // timeout (the drop's event has no headers: it is the probe's by its trace id).
        let seen = by_probe(live, &events);
        for (l, idx) in live.iter_mut().zip(&seen).filter(|(l, _)| l.connect.is_none()) {
            if idx.iter().any(|i| events[*i].verdict == Some(Verdict::Drop) && !of_trace_table(&events[*i])) {
                l.connect = Some(Connect::TimedOut);
            }
        }
        let now = Instant::now();
        if live.iter().all(|l| l.connect.is_some()) || now >= deadline {
            break;
        }
        let pending: Vec<usize> = (0..live.len()).filter(|i| live[*i].connect.is_none()).collect();
        let mut fds = vec![listener.fd(), signals.fd()];
        fds.extend(pending.iter().map(|i| live[*i].fd.as_fd()));
        let ready = wait_writable(&fds, deadline - now)?;
        checkpoint(signals)?;
        for (n, i) in pending.iter().enumerate() {
            if ready[2 + n] {
                live[*i].connect = Some(connect_result(&live[*i].fd));
            }
        }
    }
    for l in live.iter_mut().filter(|l| l.connect.is_none()) {
        l.connect = Some(Connect::TimedOut);
    }
    events.extend(listener.receive()?.0);
    Ok(events)
}

/// poll(2): the first two descriptors for reading, the rest (connecting sockets) for writing.
fn wait_writable(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) -> Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut p: Vec<PollFd> = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| PollFd::new(*fd, if i < 2 { PollFlags::POLLIN } else { PollFlags::POLLOUT }))
        .collect();
    let ms = PollTimeout::try_from(timeout.as_millis().clamp(1, 10_000) as i32).unwrap_or(PollTimeout::MAX);
    match poll(&mut p, ms) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e).context("poll"),
    }
    Ok(p.iter().map(|x| x.revents().is_some_and(|r| !r.is_empty())).collect())
}

/// Our tables as they are now, their rules' anonymous sets included (so that their
/// rules print as nft text, like `status` and `plan` print them).
fn our_tables() -> Result<Vec<LiveTable>> {
    let mut nf = Netfilter::open()?;
    Ok(nf.read_owned()?.0)
}

/// Where each credentials probe's connection was DNATed or REDIRECTed, by its source:
/// the reply tuple's source of its conntrack entry when `IPS_DST_NAT` is set (read
/// before the entries are deleted). Best effort: nothing is known where no entry is
/// found (a SYN dropped before conntrack confirmed its entry has none).
fn nat_destinations(c: &Config, live: &[Live]) -> BTreeMap<SocketAddr, SocketAddr> {
    let mut out = BTreeMap::new();
    let (ep, port) = (c.credentials.endpoint_address.v.0, c.credentials.endpoint_port.v.0);
    let Ok(mut ct) = Conntrack::open() else { return out };
    let Ok(entries) = ct.entries_toward(ep, port) else { return out };
    for e in entries.iter().filter(|e| e.status & crate::host::conntrack::IPS_DST_NAT != 0) {
        let from = SocketAddr::from((e.src, e.sport));
        if let (true, Some(a), Some(p)) = (live.iter().any(|l| l.from == Some(from)), e.reply_src, e.reply_sport) {
            out.insert(from, SocketAddr::from((a, p)));
        }
    }
    out
}

/// Each probe's path (rules named by reading the chains the trace saw: ours from
/// `ours`, the others by a dump of the chain) and judgement.
fn report(
    c: &Config,
    live: &mut [Live],
    events: &[TraceEvent],
    ours: &[LiveTable],
    nat_to: &BTreeMap<SocketAddr, SocketAddr>,
) -> Result<Vec<ProbeReport>> {
    let mut nf = Netfilter::open()?;
    let mut chains: BTreeMap<(u8, String, String), Vec<crate::model::live::LiveRule>> = BTreeMap::new();
    let our_ids: Vec<String> =
        ours.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules).filter_map(|r| r.comment.clone()).collect();
    let legacy = crate::host::nft::legacy_table_names();
    let agent = SocketAddr::from((c.credentials.agent_address.v.0, c.credentials.agent_port.v.0));
    let seen = by_probe(live, events);
    let mut out = Vec::new();
    for (l, idx) in live.iter().zip(&seen) {
        let mut path = Vec::new();
        // The event that only carries the packet's headers as a chain starts is no step.
        let shown = |e: &&TraceEvent| {
            let header_only = e.kind == TraceType::Rule && e.handle.is_none() && e.verdict == Some(Verdict::Continue);
            !of_trace_table(e) && !header_only
        };
        for e in idx.iter().map(|i| &events[*i]).filter(shown) {
            let fam = Family::from_nfproto(e.family as u32).unwrap_or(Family::Inet);
            let key = (e.family, e.table.clone(), e.chain.clone());
            if e.table != TABLE_NAME && !chains.contains_key(&key) {
                let rules = nf.chain_rules(e.family, &e.table, &e.chain)?.unwrap_or_default();
                chains.insert(key.clone(), rules);
            }
            let rules: &[crate::model::live::LiveRule] = if e.table == TABLE_NAME {
                ours.iter()
                    .find(|t| t.family == fam)
                    .and_then(|t| t.chains.iter().find(|ch| ch.name == e.chain))
                    .map_or(&[], |ch| &ch.rules)
            } else {
                &chains[&key]
            };
            let rule = e.handle.and_then(|h| rules.iter().find(|r| r.handle == h)).map(|r| {
                let id = if e.table == TABLE_NAME { r.comment.clone() } else { None };
                (id, crate::model::nft_text::rule_text(fam, &r.exprs, None))
            });
            path.push(Step::new(e.family, &e.table, &e.chain, e.kind, e.handle, e.verdict.clone(), rule));
        }
        let connect = l.connect.clone().unwrap_or(Connect::TimedOut);
        let ev = Evidence {
            our_ids: &our_ids,
            agent: Some(agent),
            nat_to: l.from.and_then(|f| nat_to.get(&f).copied()),
            traced: !idx.is_empty(),
            routed_out: idx.iter().any(|i| events[*i].oif.is_some() && !of_trace_table(&events[*i])),
            legacy_tables: &legacy,
        };
        let judgement = judge(l.kind, &path, &connect, &ev);
        let source = l.from.map(|f| f.to_string()).unwrap_or_else(|| "?".into());
        out.push(ProbeReport { probe: l.kind, source, destination: l.to, path, connect, judgement });
    }
    Ok(out)
}

/// Deletes the conntrack entries of the credentials probes, whose sources are `sources`
/// (best effort: they would time out by themselves).
fn delete_conntrack(c: &Config, sources: &[SocketAddr]) {
    if sources.is_empty() {
        return;
    }
    let (ep, port) = (c.credentials.endpoint_address.v.0, c.credentials.endpoint_port.v.0);
    let Ok(mut ct) = Conntrack::open() else { return };
    let Ok(entries) = ct.entries_toward(ep, port) else { return };
    for e in entries {
        if sources.iter().any(|f| f.ip() == IpAddr::V4(e.src) && f.port() == e.sport) {
            let _ = ct.delete(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_name_matches_a_pattern_and_never_an_existing_name() {
        let c = crate::config::default_config();
        let (name, pattern, ex) = interface_name(&c, &["docker0".into()]).unwrap();
        assert!(name.starts_with("docker") && name.len() <= 15 && pattern == "docker+" && !ex, "{name}");
        let c = crate::config::parse("t.toml", "[containers]\ninterfaces = [\"ecs-bridge\"]\n").unwrap();
        assert_eq!(interface_name(&c, &[]).unwrap().0, "ecs-bridge");
        let e = interface_name(&c, &["ecs-bridge".into()]).unwrap_err().to_string();
        assert!(e.contains("only exact names that exist"), "{e}");
        let c = crate::config::parse(
            "t.toml",
            "[containers]\ninterfaces = [\"docker+\", \"br-+\"]\n[imds_block]\nexclude_interfaces = [\"dockerv+\"]\n",
        )
        .unwrap();
        assert!(interface_name(&c, &[]).unwrap().0.starts_with("br-"), "an excluded pattern comes last");
    }

    #[test]
    fn prefixes_avoid_the_hosts_addresses_and_routes() {
        let taken: Vec<(IpAddr, u8)> = vec![("198.18.0.0".parse().unwrap(), 16), ("fd00::".parse().unwrap(), 9)];
        let (v4, v6) = pick_prefixes(&taken).unwrap();
        assert!(v4.octets()[0] == 198 && v4.octets()[1] == 19, "{v4}");
        assert!(v6.octets()[0] == 0xfd && v6.octets()[1] >= 0x80, "{v6}");
        let all: Vec<(IpAddr, u8)> = vec![("198.18.0.0".parse().unwrap(), 15)];
        assert!(pick_prefixes(&all).is_err(), "198.18.0.0/15 all taken");
        let ula: Vec<(IpAddr, u8)> = vec![("fd00::".parse().unwrap(), 8)];
        assert!(pick_prefixes(&ula).is_err(), "every ULA /64 taken");
    }
}
