//! Anonymous, constant sets bound to one rule (`iifname { "docker*", "br-*" }`), in the
//! interval form nft 1.0 sends and the kernel reports back.

use serde::{Deserialize, Serialize};

/// An anonymous, constant set bound to one rule, as nft makes for `iifname { ... }`.
/// Equality compares the kernel content only (not [`AnonSet::patterns`]).
///
/// JSON (`patterns` is `null` for a set read from the kernel):
///
/// ```json
/// {"key_type": 41, "key_len": 16, "interval": true,
///  "elements": [{"key": "00000000000000000000000000000000", "interval_end": true}, ...],
///  "patterns": ["br-*", "docker*"]}
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonSet {
    /// nft's datatype id of the key (`TYPE_IFNAME` = 41 for interface names).
    pub key_type: u32,
    /// Key length in bytes (16 = IFNAMSIZ for interface names).
    pub key_len: u32,
    /// `NFT_SET_INTERVAL`: elements are interval boundaries.
    pub interval: bool,
    /// Elements in key order; with `interval`, each range is a start element followed by
    /// its exclusive end (`NFT_SET_ELEM_INTERVAL_END`), after a zero key marked as an end.
    pub elements: Vec<SetElem>,
    /// The patterns the set was built from (nft spelling), for printing: adjacent ranges
    /// (`veth0*`, `veth1*`) are merged in the kernel, as nft merges them, and can no
    /// longer be told apart from its elements. `None` for a set read from the kernel.
    pub patterns: Option<Vec<String>>,
}

impl PartialEq for AnonSet {
    fn eq(&self, o: &AnonSet) -> bool {
        self.key_type == o.key_type
            && self.key_len == o.key_len
            && self.interval == o.interval
            && self.elements == o.elements
    }
}

impl Eq for AnonSet {}

/// One set element: key bytes and whether it ends an interval.
///
/// JSON: `{"key": "646f636b657200000000000000000000", "interval_end": false}` (the key in hex).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetElem {
    /// The key, `key_len` bytes.
    #[serde(with = "crate::model::ruleset::hex_bytes")]
    pub key: Vec<u8>,
    /// `NFT_SET_ELEM_INTERVAL_END`.
    pub interval_end: bool,
}

/// nft's `TYPE_IFNAME` datatype id, recorded as a set's key type.
pub const TYPE_IFNAME: u32 = 41;

impl AnonSet {
    /// The interval set nft 1.0 builds for interface name patterns (iptables spelling:
    /// `docker+` is the range of names starting with `docker`, an exact name the range of
    /// that one name). Patterns must not overlap (the configuration refuses that).
    pub fn ifnames(patterns: &[&str]) -> AnonSet {
        fn pad(b: &[u8]) -> Vec<u8> {
            let mut v = b.to_vec();
            v.resize(16, 0);
            v
        }
        let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = patterns
            .iter()
            .map(|p| match p.strip_suffix('+') {
                Some(prefix) => {
                    let start = pad(prefix.as_bytes());
                    let mut end = prefix.as_bytes().to_vec();
                    *end.last_mut().expect("a prefix is not empty") += 1;
                    (start, pad(&end))
                }
                None => {
                    let start = pad(p.as_bytes());
                    let mut end = start.clone();
                    // Big-endian +1 of the 16-byte key (the last byte of a valid name
                    // padding is 0, so no carry).
                    end[15] += 1;
                    (start, end)
                }
            })
            .collect();
        ranges.sort();
        // Adjacent ranges (one ends where the next starts, e.g. `veth0*` and `veth1*`)
        // become one, as nft merges them: the kernel then holds what `nft -f` would load.
        let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => merged.push((start, end)),
            }
        }
        let mut elements = vec![SetElem { key: vec![0; 16], interval_end: true }];
        for (start, end) in merged {
            elements.push(SetElem { key: start, interval_end: false });
            elements.push(SetElem { key: end, interval_end: true });
        }
        let mut shown: Vec<String> = patterns
            .iter()
            .map(|p| p.strip_suffix('+').map(|x| format!("{x}*")).unwrap_or_else(|| p.to_string()))
            .collect();
        shown.sort();
        AnonSet { key_type: TYPE_IFNAME, key_len: 16, interval: true, elements, patterns: Some(shown) }
    }

    /// The patterns of an interval set of interface names, in nft spelling (`"docker*"`,
    /// `"ecs-bridge"`), or `None` when it is not one ([`AnonSet::ifnames`] inverted).
    pub fn ifname_patterns(&self) -> Option<Vec<String>> {
        if let Some(p) = &self.patterns {
            return Some(p.clone());
        }
        if self.key_type != TYPE_IFNAME || self.key_len != 16 {
            return None;
        }
        if !self.interval {
            // A plain set of exact names.
            return self
                .elements
                .iter()
                .map(|e| {
                    let n = e.key.iter().position(|&b| b == 0).unwrap_or(e.key.len());
                    std::str::from_utf8(&e.key[..n]).ok().map(str::to_string)
                })
                .collect();
        }
        let mut it = self.elements.iter();
        let first = it.next()?;
        if !(first.interval_end && first.key.iter().all(|&b| b == 0)) {
            return None;
        }
        let rest: Vec<&SetElem> = it.collect();
        // The kernel holds keys of `key_len` bytes; a snapshot read back may not.
        if !rest.len().is_multiple_of(2) || rest.iter().any(|e| e.key.len() != 16) {
            return None;
        }
        let mut out = Vec::new();
        for pair in rest.chunks(2) {
            let (start, end) = (pair[0], pair[1]);
            if start.interval_end || !end.interval_end {
                return None;
            }
            let name_len = start.key.iter().position(|&b| b == 0).unwrap_or(16);
            let name = std::str::from_utf8(&start.key[..name_len]).ok()?;
            let mut exact_end = start.key.clone();
            exact_end[15] = exact_end[15].checked_add(1)?;
            if end.key == exact_end {
                out.push(name.to_string());
                continue;
            }
            let mut prefix_end = start.key[..name_len].to_vec();
            *prefix_end.last_mut()? = prefix_end.last()?.checked_add(1)?;
            prefix_end.resize(16, 0);
            if end.key != prefix_end {
                return None;
            }
            out.push(format!("{name}*"));
        }
        Some(out)
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;

    #[test]
    fn interface_pattern_sets_are_nfts_intervals_and_read_back() {
        let s = AnonSet::ifnames(&["ecs-bridge", "docker+", "br-+"]);
        // nft 1.0.6 sends exactly these elements for iifname { "docker*", "br-*", "ecs-bridge" }.
        let hex: Vec<String> = s
            .elements
            .iter()
            .map(|e| {
                format!(
                    "{}{}",
                    e.key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    if e.interval_end { "E" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            hex,
            [
                "00000000000000000000000000000000E",
                "62722d00000000000000000000000000",
                "62722e00000000000000000000000000E",
                "646f636b657200000000000000000000",
                "646f636b657300000000000000000000E",
                "6563732d627269646765000000000000",
                "6563732d627269646765000000000001E",
            ]
        );
        assert_eq!(s.ifname_patterns().unwrap(), ["br-*", "docker*", "ecs-bridge"]);
        let mut broken = s.clone();
        broken.elements.pop();
        broken.patterns = None;
        assert_eq!(broken.ifname_patterns(), None);
        // Adjacent ranges merge (nft does the same), and still print as written.
        let adj = AnonSet::ifnames(&["veth1+", "veth0+"]);
        assert_eq!(adj.elements.len(), 3, "{adj:?}");
        assert_eq!(adj.ifname_patterns().unwrap(), ["veth0*", "veth1*"]);
    }
}
