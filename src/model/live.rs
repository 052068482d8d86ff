//! Our tables, chains and rules as read back from the kernel (see the JSON form in
//! [`crate::model::ruleset`]).

use crate::model::record::Record;
use crate::model::ruleset::*;
use serde::{Deserialize, Serialize};

/// A table of ours as read from the kernel.
///
/// JSON (the form `snapshot` writes, one object per table; see the [module docs](self)):
///
/// ```json
/// {"family": "inet", "name": "ecs-hostnet", "handle": 7, "comment": "managed by ...",
///  "flags": 0, "record": {"all": "0"}, "chains": [{LiveChain}, ...], "foreign_objects": []}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveTable {
    /// `ip` or `inet` (see [`crate::model::names::OWNED_TABLES`]).
    pub family: Family,
    /// `NFTA_TABLE_NAME`; always [`crate::model::names::TABLE_NAME`].
    pub name: String,
    /// Kernel handle (`NFTA_TABLE_HANDLE`).
    pub handle: u64,
    /// Table comment, if any.
    pub comment: Option<String>,
    /// `NFTA_TABLE_FLAGS`; ours are created with 0. `NFT_TABLE_F_DORMANT` (1) would switch
    /// every rule of the table off, so anything else is drift.
    pub flags: u32,
    /// The route_localnet record ecs-hostnet keeps in the table's userdata; `None` when
    /// the table has none (or one we cannot read).
    pub record: Option<Record>,
    /// Every chain of the table, ours or not, in dump order.
    pub chains: Vec<LiveChain>,
    /// Named sets and stateful objects in the table (`set foo`, `object cnt`): ecs-hostnet
    /// makes none, so any is someone else's.
    pub foreign_objects: Vec<String>,
}

/// A chain of one of our tables, as read from the kernel.
///
/// JSON: `{"name": "input", "base": {BaseChain} or null, "rules": [{LiveRule}, ...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveChain {
    /// `NFTA_CHAIN_NAME`.
    pub name: String,
    /// `None` for a regular chain. A base chain whose hook or type we do not model is read
    /// as an impossible one (postrouting, priority `i32::MIN`, policy drop) so it never
    /// matches a desired chain.
    pub base: Option<BaseChain>,
    /// The chain's rules in kernel (evaluation) order.
    pub rules: Vec<LiveRule>,
}

/// A rule as read from the kernel: its handle, its comment (our id, if it is ours), its
/// expressions and the values of its counter.
///
/// JSON: `{"handle": 4, "comment": "imds-block" or null, "exprs": [{Expr}, ...],
/// "counter": {"packets": 3, "bytes": 180} or null}` (`counter` may be left out on input: a
/// snapshot written before it existed).
///
/// Equality ignores [`LiveRule::counter`]: counter values are runtime state, not part of a
/// rule's identity (as for [`Expr::Counter`]), so a rule whose packets moved is not drift.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRule {
    /// Kernel handle (`NFTA_RULE_HANDLE`), what `NFT_MSG_DELRULE` and a rule position name.
    pub handle: u64,
    /// The rule comment (`NFTNL_UDATA_RULE_COMMENT` in `NFTA_RULE_USERDATA`); for our rules
    /// the [`Rule::id`], `None` when the rule has none.
    pub comment: Option<String>,
    /// The rule's expressions as dumped; anything we do not model is an [`Expr::Other`].
    pub exprs: Vec<Expr>,
    /// The values of the rule's first `counter` expression (`NFTA_COUNTER_PACKETS`,
    /// `NFTA_COUNTER_BYTES`) at the time of the dump; `None` when the rule has no counter
    /// (or it came from a snapshot without values).
    #[serde(default)]
    pub counter: Option<CounterValues>,
}

impl PartialEq for LiveRule {
    /// Handle, comment and expressions; never the counter values.
    fn eq(&self, other: &Self) -> bool {
        self.handle == other.handle && self.comment == other.comment && self.exprs == other.exprs
    }
}

impl Eq for LiveRule {}

/// The values of an nf_tables `counter` expression (`struct nft_counter`: packets and bytes
/// since the rule was created, 64-bit, never reset by ecs-hostnet).
///
/// JSON: `{"packets": 3, "bytes": 180}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterValues {
    /// `NFTA_COUNTER_PACKETS`: packets that reached the counter (matched the rule up to it).
    pub packets: u64,
    /// `NFTA_COUNTER_BYTES`: their bytes, from the network header (the L3 packet length).
    pub bytes: u64,
}

#[cfg(test)]
mod json_tests {
    use super::*;
    use crate::model::names::{TABLE_COMMENT, TABLE_NAME};
    use crate::model::set::{AnonSet, SetElem, TYPE_IFNAME};

    /// Our tables as a converged host holds them (like the planner tests' `converged()`),
    /// plus what the kernel may also report: a foreign expression, a set lookup, a regular
    /// chain, a rule without a comment.
    fn live_default() -> Vec<LiveTable> {
        let d = crate::desired::compile(&crate::config::default_config());
        let mut tables = crate::plan::live::converged_host(&d, "0").tables;
        let last = tables.last_mut().unwrap();
        last.foreign_objects.push("set blocked".to_string());
        last.chains.push(LiveChain {
            name: "extra".to_string(),
            base: None,
            rules: vec![
                LiveRule {
                    handle: u64::MAX,
                    comment: None,
                    exprs: vec![
                        Expr::Meta { key: meta::IIFNAME, dreg: REG_1 },
                        Expr::Lookup { sreg: REG_1, set: AnonSet::ifnames(&["docker+", "br-+"]), invert: true },
                        Expr::Counter,
                        Expr::Other { name: "log".to_string(), text: "[ log prefix \"x \\\" y\" ]".to_string() },
                        Expr::Verdict(Verdict::Accept),
                    ],
                    counter: Some(CounterValues { packets: u64::MAX, bytes: 1 << 40 }),
                },
                LiveRule {
                    handle: 99,
                    comment: Some(String::new()),
                    exprs: vec![
                        Expr::Immediate { dreg: REG_1, data: vec![] },
                        Expr::Redir { reg_proto_min: None, reg_proto_max: None, flags: None },
                    ],
                    counter: None,
                },
            ],
        });
        tables.push(LiveTable {
            family: Family::Ip6,
            name: TABLE_NAME.to_string(),
            handle: 12,
            comment: None,
            flags: 1,
            record: None,
            chains: vec![],
            foreign_objects: vec![],
        });
        tables
    }

    /// Every set in the tables with its patterns, which `==` on [`AnonSet`] ignores.
    fn patterns(tables: &[LiveTable]) -> Vec<Option<Vec<String>>> {
        let rules = tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules);
        rules
            .flat_map(|r| &r.exprs)
            .filter_map(|e| match e {
                Expr::Lookup { set, .. } => Some(set.patterns.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every rule's counter values.
    fn counters(tables: &[LiveTable]) -> Vec<Option<CounterValues>> {
        tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules).map(|r| r.counter).collect()
    }

    #[test]
    fn rules_differing_only_in_counter_values_are_equal() {
        let r = LiveRule { handle: 4, comment: Some("x".into()), exprs: vec![Expr::Counter], counter: None };
        let moved = LiveRule { counter: Some(CounterValues { packets: 9, bytes: 540 }), ..r.clone() };
        assert_eq!(r, moved);
        assert_ne!(r, LiveRule { handle: 5, ..moved.clone() });
        assert_ne!(r, LiveRule { exprs: vec![], ..moved.clone() });
        // A snapshot written before counters were read has no `counter` field.
        let old: LiveRule = serde_json::from_str(r#"{"handle":4,"comment":"x","exprs":[{"expr":"counter"}]}"#).unwrap();
        assert_eq!((old.clone(), old.counter), (r, None));
        let json = serde_json::to_string(&moved).unwrap();
        assert!(json.ends_with(r#""counter":{"packets":9,"bytes":540}}"#), "{json}");
    }

    #[test]
    fn live_tables_round_trip_through_json() {
        let tables = live_default();
        let json = serde_json::to_string_pretty(&tables).unwrap();
        let back: Vec<LiveTable> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tables);
        assert_eq!(patterns(&back), patterns(&tables));
        // Equality ignores counter values; the JSON carries them exactly (u64::MAX too).
        assert_eq!(counters(&back), counters(&tables));
        assert!(counters(&back).contains(&Some(CounterValues { packets: u64::MAX, bytes: 1 << 40 })), "{json}");
        assert!(patterns(&back).iter().any(|p| p.is_some()), "{json}");
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
        // A set read from the kernel has no patterns: null, kept as None.
        let mut kernel = tables.clone();
        for t in &mut kernel {
            for c in &mut t.chains {
                for r in &mut c.rules {
                    for e in &mut r.exprs {
                        if let Expr::Lookup { set, .. } = e {
                            set.patterns = None;
                        }
                    }
                }
            }
        }
        let json = serde_json::to_string(&kernel).unwrap();
        assert!(json.contains(r#""patterns":null"#), "{json}");
        let back: Vec<LiveTable> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, kernel);
        assert!(patterns(&back).iter().all(|p| p.is_none()));
        // Nothing is left out: every None is an explicit null.
        for key in ["\"comment\":null", "\"base\":null", "\"record\":null", "\"flags\":null"] {
            assert!(json.contains(key), "{key} in {json}");
        }
    }

    #[test]
    fn default_table_json_is_readable() {
        let tables = live_default();
        let ip = serde_json::to_value(&tables[0]).unwrap();
        assert_eq!(ip["family"], "ip");
        assert_eq!(ip["comment"], TABLE_COMMENT);
        assert_eq!(ip["record"], serde_json::Value::Null);
        let base = &ip["chains"][0]["base"];
        assert_eq!(
            base,
            &serde_json::json!({"chain_type": "nat", "hook": "prerouting", "priority": -100, "policy_accept": true})
        );
        let inet = serde_json::to_value(&tables[1]).unwrap();
        assert_eq!(inet["record"], serde_json::json!({"all": "0"}));
    }

    #[test]
    fn each_expression_has_its_exact_json() {
        let cases: Vec<(Expr, &str)> = vec![
            (Expr::Meta { key: meta::IIFNAME, dreg: REG_1 }, r#"{"expr":"meta","key":6,"dreg":1}"#),
            (
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 4, dreg: REG_1 },
                r#"{"expr":"payload","base":1,"offset":16,"len":4,"dreg":1}"#,
            ),
            (
                Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![0xa9, 0xfe, 0xa9, 0x02] },
                r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9fea902"}"#,
            ),
            (
                Expr::Cmp { sreg: REG_1, op: CmpOp::Neq, data: vec![] },
                r#"{"expr":"cmp","sreg":1,"op":"neq","data":""}"#,
            ),
            (
                Expr::Bitwise { sreg: REG_1, dreg: REG_1, len: 4, mask: vec![0x20, 0, 0, 0], xor: vec![0; 4] },
                r#"{"expr":"bitwise","sreg":1,"dreg":1,"len":4,"mask":"20000000","xor":"00000000"}"#,
            ),
            (Expr::Ct { key: ct::STATUS, dreg: REG_1 }, r#"{"expr":"ct","key":2,"dreg":1}"#),
            (Expr::Counter, r#"{"expr":"counter"}"#),
            (Expr::Immediate { dreg: REG_2, data: vec![0x0f, 0xff] }, r#"{"expr":"immediate","dreg":2,"data":"0fff"}"#),
            (Expr::Verdict(Verdict::Drop), r#"{"expr":"verdict","verdict":"drop"}"#),
            (Expr::Verdict(Verdict::Accept), r#"{"expr":"verdict","verdict":"accept"}"#),
            (
                Expr::Nat {
                    nat_type: NAT_TYPE_DNAT,
                    family: 2,
                    reg_addr_min: Some(1),
                    reg_addr_max: Some(1),
                    reg_proto_min: Some(2),
                    reg_proto_max: None,
                    flags: Some(3),
                },
                concat!(
                    r#"{"expr":"nat","nat_type":1,"family":2,"reg_addr_min":1,"reg_addr_max":1,"#,
                    r#""reg_proto_min":2,"reg_proto_max":null,"flags":3}"#
                ),
            ),
            (
                Expr::Redir { reg_proto_min: Some(1), reg_proto_max: Some(1), flags: None },
                r#"{"expr":"redir","reg_proto_min":1,"reg_proto_max":1,"flags":null}"#,
            ),
            (
                Expr::Lookup {
                    sreg: REG_1,
                    set: AnonSet {
                        key_type: TYPE_IFNAME,
                        key_len: 16,
                        interval: false,
                        elements: vec![SetElem { key: b"eth0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(), interval_end: false }],
                        patterns: None,
                    },
                    invert: false,
                },
                concat!(
                    r#"{"expr":"lookup","sreg":1,"set":{"key_type":41,"key_len":16,"interval":false,"#,
                    r#""elements":[{"key":"65746830000000000000000000000000","interval_end":false}],"#,
                    r#""patterns":null},"invert":false}"#
                ),
            ),
            (
                Expr::Other { name: "log".to_string(), text: "[ log ]".to_string() },
                r#"{"expr":"other","name":"log","text":"[ log ]"}"#,
            ),
        ];
        for (expr, want) in &cases {
            assert_eq!(serde_json::to_string(expr).unwrap(), *want, "{expr:?}");
            assert_eq!(&serde_json::from_str::<Expr>(want).unwrap(), expr, "{want}");
        }
        // Upper-case hex and a missing Option field are accepted on input.
        let e: Expr = serde_json::from_str(r#"{"expr":"redir","reg_proto_min":1,"reg_proto_max":1}"#).unwrap();
        assert_eq!(e, Expr::Redir { reg_proto_min: Some(1), reg_proto_max: Some(1), flags: None });
        let e: Expr = serde_json::from_str(r#"{"data":"A9FE","expr":"cmp","sreg":1,"op":"eq"}"#).unwrap();
        assert_eq!(e, Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![0xa9, 0xfe] });
    }

    fn refusal<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        serde_json::from_str::<T>(json).expect_err(json).to_string()
    }

    #[test]
    fn malformed_json_is_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            (r#"{"expr":"meta","key":6,"dreg":1,"sreg":2}"#, "unknown field `sreg`"),
            (r#"{"expr":"counter","packets":3}"#, "unknown field `packets`"),
            (r#"{"expr":"verdict","verdict":"drop","chain":"x"}"#, "unknown field `chain`"),
            (r#"{"expr":"verdict","verdict":"return"}"#, "unknown variant `return`"),
            (r#"{"expr":"verdict"}"#, "missing field `verdict`"),
            (r#"{"expr":"masq"}"#, "unknown variant `masq`"),
            (r#"{"key":6,"dreg":1}"#, "missing field `expr`"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9f"}"#, "odd length 3"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9fz"}"#, "'z' at offset 3 is not a hex digit"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9 f"}"#, "' ' at offset 2 is not a hex digit"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":[169]}"#, "expected a hex byte string"),
            (r#"{"expr":"cmp","sreg":1,"op":"gt","data":""}"#, "unknown variant `gt`"),
            (r#"{"expr":"immediate","dreg":1,"data":"é0"}"#, "not a hex digit"),
            (r#"{"expr":"meta","key":-1,"dreg":1}"#, "invalid value: integer `-1`"),
        ];
        for (json, want) in cases {
            let e = refusal::<Expr>(json);
            assert!(e.contains(want), "{json}: {e}");
        }
        let table = concat!(
            r#"{"family":"ip","name":"ecs-hostnet","handle":1,"comment":null,"flags":0,"record":null,"#,
            r#""chains":[],"foreign_objects":[]}"#
        );
        serde_json::from_str::<LiveTable>(table).unwrap();
        let e = refusal::<LiveTable>(&table.replace("[]}", "[],\"sets\":[]}"));
        assert!(e.contains("unknown field `sets`"), "{e}");
        let e = refusal::<LiveTable>(&table.replace("\"ip\"", "\"arp\""));
        assert!(e.contains("unknown variant `arp`"), "{e}");
        let e = refusal::<LiveTable>(&table.replace("\"handle\":1,", ""));
        assert!(e.contains("missing field `handle`"), "{e}");
        let e = refusal::<LiveChain>(concat!(
            r#"{"name":"c","rules":[],"#,
            r#""base":{"chain_type":"nat","hook":"input","priority":0,"policy_accept":true,"device":"lo"}}"#
        ));
        assert!(e.contains("unknown field `device`"), "{e}");
        let e = refusal::<LiveRule>(r#"{"handle":1,"comment":null,"exprs":[],"position":0}"#);
        assert!(e.contains("unknown field `position`"), "{e}");
        let e = refusal::<SetElem>(r#"{"key":"00","interval_end":false,"flags":0}"#);
        assert!(e.contains("unknown field `flags`"), "{e}");
        let e = refusal::<SetElem>(r#"{"key":"0","interval_end":false}"#);
        assert!(e.contains("odd length 1"), "{e}");
        let e = refusal::<AnonSet>(
            r#"{"key_type":41,"key_len":16,"interval":true,"elements":[],"patterns":null,"name":"__set0"}"#,
        );
        assert!(e.contains("unknown field `name`"), "{e}");
    }

    #[test]
    fn sets_with_short_keys_from_a_snapshot_do_not_panic() {
        let mut s = AnonSet::ifnames(&["docker+", "br-+"]);
        s.patterns = None;
        for e in &mut s.elements[1..] {
            e.key.truncate(4);
        }
        let json = serde_json::to_string(&s).unwrap();
        let back: AnonSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ifname_patterns(), None);
    }
}
