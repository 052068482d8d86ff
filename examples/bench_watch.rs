//! The measuring program of `scripts/bench-watch` (not a test): run inside the network
//! namespace a watcher serves, it listens to the nf_tables notifications
//! (`NFNLGRP_NFTABLES`), runs `nft flush ruleset` N times and reports, per flush, the time
//! from the flush's `NFT_MSG_NEWGEN` to the `NEWGEN` of the watcher's batch (its pid) that
//! re-creates the localhost guard: kernel commit to kernel commit, as both notifications
//! are received the same way.
//!
//! The flush is, with `netlink` (default), this program's own batch on a socket it keeps
//! open (`NFT_MSG_DELTABLE` of family `NFPROTO_UNSPEC` without a name: what `nft flush
//! ruleset` sends); with `nft`, an `nft flush ruleset` process. The difference is the
//! kernel's: when the `nft` process exits, closing its netlink socket makes nf_tables flush
//! its pending destroy work (an RCU grace period) while holding the commit mutex, and a
//! repair batch that arrives then waits for it.
//!
//! Usage: `bench_watch WATCHER_PID N PAUSE_MS [netlink|nft]` -> one line per flush (`ms`),
//! then `p50 P p99 P max M n N` on the last line.

use ecs_hostnet::host::events::decode_nft;
use ecs_hostnet::model::event::{NFNLGRP_NFTABLES, NftEvent};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let watcher: u32 = args.get(1).and_then(|a| a.parse().ok()).expect("WATCHER_PID");
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let pause = Duration::from_millis(args.get(3).and_then(|a| a.parse().ok()).unwrap_or(250));
    // The listener runs on its own thread, so each NEWGEN is timestamped when it arrives even
    // while the main thread is inside the flush's sendmsg (the kernel commits the batch in the
    // sender's context, and a batch that deletes may keep it there for milliseconds).
    let (tx, rx) = std::sync::mpsc::channel::<(u32, Instant)>();
    let mut sock = Socket::new(NETLINK_NETFILTER).expect("netlink socket");
    sock.bind_auto().expect("bind");
    sock.add_membership(NFNLGRP_NFTABLES).expect("join NFNLGRP_NFTABLES");
    std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            sock.recv(&mut buf, 0).expect("recv");
            let now = Instant::now();
            for e in decode_nft(&buf).expect("decode") {
                if let NftEvent::NewGen { pid, .. } = e
                    && tx.send((pid, now)).is_err()
                {
                    return;
                }
            }
        }
    });
    let use_nft = args.get(4).map(String::as_str) == Some("nft");
    let mut ctl = Socket::new(NETLINK_NETFILTER).expect("netlink socket");
    ctl.bind_auto().expect("bind");
    ctl.connect(&netlink_sys::SocketAddr::new(0, 0)).expect("connect");
    let me = std::process::id();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        while rx.try_recv().is_ok() {}
        let mut child = None;
        let flusher = if use_nft {
            let c = std::process::Command::new("nft").args(["flush", "ruleset"]).spawn().expect("nft");
            let id = c.id();
            child = Some(c);
            id
        } else {
            ctl.send(&flush_batch(), 0).expect("send the flush");
            me
        };
        let mut flushed: Option<Instant> = None;
        let repaired = loop {
            let (pid, at) = rx.recv_timeout(Duration::from_secs(10)).expect("no repair within 10 s");
            if pid == flusher {
                flushed = Some(at);
            } else if pid == watcher && flushed.is_some() {
                break at;
            }
        };
        if let Some(mut c) = child {
            c.wait().expect("nft exit");
        }
        drain(&ctl);
        let ms = (repaired - flushed.unwrap()).as_secs_f64() * 1000.0;
        println!("{ms:.3}");
        times.push(ms);
        std::thread::sleep(pause);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!("p50 {:.3} p99 {:.3} max {:.3} n {}", q(0.50), q(0.99), times[times.len() - 1], times.len());
}

/// One netlink message: header, `nfgenmsg` (family 0, version 0, `res_id`), no attributes.
fn message(ty: u16, flags: u16, seq: u32, res_id: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&res_id.to_be_bytes());
    m
}

/// `nft flush ruleset` as nft sends it: `NFNL_MSG_BATCH_BEGIN` (16, res_id
/// `NFNL_SUBSYS_NFTABLES`), `NFT_MSG_DELTABLE` of family `NFPROTO_UNSPEC` without a table
/// name (with `NLM_F_ACK`), `NFNL_MSG_BATCH_END` (17).
fn flush_batch() -> Vec<u8> {
    const REQUEST: u16 = 1;
    const ACK: u16 = 4;
    let mut b = message(16, REQUEST, 1, 10);
    b.extend(message((10 << 8) | 2, REQUEST | ACK, 2, 0));
    b.extend(message(17, REQUEST, 3, 10));
    b
}

/// Reads the answers of the flush (its ack) so they never pile up.
fn drain(ctl: &Socket) {
    let _ = ctl.set_non_blocking(true);
    let mut b = Vec::with_capacity(8192);
    while ctl.recv(&mut b, 0).is_ok() {
        b.clear();
    }
    let _ = ctl.set_non_blocking(false);
}
