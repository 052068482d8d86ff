//! Fuzz target `readback`: the netlink dump decoder (`host::nft::decode_dump`, the libnftnl
//! decoders of `host::nft::decode`) on arbitrary bytes read as a sequence of netlink messages,
//! then everything that consumes what was read: the JSON form of the live tables (must
//! round-trip), the planner against the default configuration, the plan's text and JSON,
//! `remove`'s plan, and the batch the plan would send (built, not sent).
//!
//! libnftnl and libmnl are system libraries without sanitizer instrumentation: AddressSanitizer
//! sees their crashes and their heap misuse (double free, leaks), not their in-bounds-looking
//! reads. `decode_dump` copies each message with trailing zero bytes and refuses the known
//! libnftnl 1.2.4 defects (`host::nft::decode::libnftnl_hazard`). libnftnl's own `exit(1)` on an
//! attribute of the wrong size ("nf_tables kernel ABI is broken") is its design: libFuzzer
//! reports it as "fuzz target exited"; `scripts/fuzz` runs this target with `-fork` and files
//! those exits as known libnftnl behaviour, not as crashes.
#![no_main]

use ecs_hostnet::host::nft::{self as kernel, encode};
use ecs_hostnet::model::ops::Op;
use ecs_hostnet::plan::{self, live::LiveState};
use ecs_hostnet::model::{live::LiveTable, ruleset::Expr};
use ecs_hostnet::desired::compile;
use ecs_hostnet::render::plan as report;
use ecs_hostnet::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data));

fn check(buf: &[u8]) {
    let tables = match kernel::decode_dump(buf) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.starts_with("byte ") && !e.contains('\n'), "not a located one-line error: {e:?}");
            return;
        }
    };
    // The snapshot JSON form round-trips exactly (ruleset.rs, "JSON form of the live model").
    let json = serde_json::to_string(&tables).expect("live tables serialize");
    let back: Vec<LiveTable> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("JSON round trip: {e}\n{json}"));
    assert_eq!(back, tables, "JSON round trip changed the tables");

    let desired = compile(&config::default_config());
    let live = LiveState { tables, ..Default::default() };
    let p = plan::plan(&desired, &live);
    let _ = report::text(&p, true, "No changes.");
    let _ = report::json(&p, "check", "fuzz", &report::Against::Netns { netns: None });
    build_batch(&p.ops);
    let r = plan::plan_removal(&live);
    let _ = report::text(&r, false, "Nothing to remove.");
    build_batch(&r.ops);
}

/// Builds (does not send) the nf_tables batch for `ops` as `Netfilter::commit` does.
fn build_batch(ops: &[Op]) {
    if encode::check_encodable(ops).is_err() {
        return; // commit refuses these before building anything
    }
    let mut batch = nftnl::Batch::new();
    let mut next_id = 1u32;
    for op in ops {
        let mut ids = Vec::new();
        if let Op::AddRule { family, table, rule, .. } = op {
            for x in &rule.exprs {
                if let Expr::Lookup { set, .. } = x {
                    let m = encode::SetMsg { family: *family, table, id: next_id, set, elements: None };
                    batch.add(&m, nftnl::MsgType::Add);
                    let n = set.elements.len();
                    for s in (0..n).step_by(encode::SET_ELEMS_PER_MESSAGE) {
                        let range = s..(s + encode::SET_ELEMS_PER_MESSAGE).min(n);
                        let m = encode::SetMsg { family: *family, table, id: next_id, set, elements: Some(range) };
                        batch.add(&m, nftnl::MsgType::Add);
                    }
                    ids.push(next_id);
                    next_id += 1;
                }
            }
        }
        batch.add(&encode::OpMsg(op, &ids), nftnl::MsgType::Add);
    }
    let batch = batch.finalize();
    assert!(batch.iter().all(|page| page.len() >= 20), "a batch page shorter than one message");
}
