//! The measuring program of `scripts/bench-watch` (not a test): run inside the network
//! namespace a watcher serves, it listens to the nf_tables notifications
//! (`NFNLGRP_NFTABLES`), runs `nft flush ruleset` N times and reports, per flush, the time
//! from the flush's `NFT_MSG_NEWGEN` to the `NEWGEN` of the watcher's batch (its pid) that
//! re-creates the localhost guard: kernel commit to kernel commit, as both notifications
//! are received the same way.
//!
//! Usage: `bench_watch WATCHER_PID N PAUSE_MS` -> one line per flush (`ms`), then
//! `p50 P p99 P max M n N` on the last line.

use ecs_hostnet::host::events::decode_nft;
use ecs_hostnet::model::event::{NFNLGRP_NFTABLES, NftEvent};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let watcher: u32 = args.get(1).and_then(|a| a.parse().ok()).expect("WATCHER_PID");
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let pause = Duration::from_millis(args.get(3).and_then(|a| a.parse().ok()).unwrap_or(250));
    let mut sock = Socket::new(NETLINK_NETFILTER).expect("netlink socket");
    sock.bind_auto().expect("bind");
    sock.add_membership(NFNLGRP_NFTABLES).expect("join NFNLGRP_NFTABLES");
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let mut child = std::process::Command::new("nft").args(["flush", "ruleset"]).spawn().expect("nft");
        let flusher = child.id();
        let mut flushed: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        let repaired = loop {
            assert!(Instant::now() < deadline, "no repair within 10 s");
            buf.clear();
            sock.recv(&mut buf, 0).expect("recv");
            let now = Instant::now();
            let mut done = None;
            for e in decode_nft(&buf).expect("decode") {
                if let NftEvent::NewGen { pid, .. } = e {
                    if pid == flusher {
                        flushed = Some(now);
                    } else if pid == watcher && flushed.is_some() {
                        done = Some(now);
                    }
                }
            }
            if let Some(t) = done {
                break t;
            }
        };
        child.wait().expect("nft exit");
        let ms = (repaired - flushed.unwrap()).as_secs_f64() * 1000.0;
        println!("{ms:.3}");
        times.push(ms);
        std::thread::sleep(pause);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!("p50 {:.3} p99 {:.3} max {:.3} n {}", q(0.50), q(0.99), times[times.len() - 1], times.len());
}
