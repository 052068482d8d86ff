//! The route_localnet record: the values ecs-hostnet found before it first changed them.

/// The values of `net.ipv4.conf.<selector>.route_localnet` that ecs-hostnet found before it
/// first changed them, by selector (`all` or an interface name), e.g. `{"all": "0"}`.
///
/// It is kept in the kernel, in the userdata of `table inet ecs-hostnet` (TLV type
/// [`UDATA_TYPE`], which nft ignores), so it is written in the same transaction as
/// the localhost guard, lives exactly as long as the rule set in that network namespace,
/// and `remove` can put the values back.
///
/// JSON: an object of strings, keys in sorted order: `{"all": "0", "docker0": "1"}`.
pub type Record = std::collections::BTreeMap<String, String>;

/// Our private libnftnl udata TLV type in table userdata (nft knows only type 0,
/// `NFTNL_UDATA_TABLE_COMMENT`, and skips the others).
pub const UDATA_TYPE: u8 = 0xec;

/// `route_localnet:all=0,docker0=1` (at most 255 bytes: a udata TLV length is one byte).
pub fn encode(r: &Record) -> Vec<u8> {
    let body: Vec<String> = r.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("route_localnet:{}", body.join(",")).into_bytes()
}

/// Inverse of [`encode`]; `None` when the bytes are not a record we wrote, or name a
/// key that is neither `all` nor a valid interface name, or a value that is not an
/// integer (the kernel's type for route_localnet).
pub fn decode(b: &[u8]) -> Option<Record> {
    let s = std::str::from_utf8(b).ok()?;
    let body = s.trim_end_matches('\0').strip_prefix("route_localnet:")?;
    let mut r = Record::new();
    for item in body.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=')?;
        // The key becomes a /proc/sys path: only `all` or a valid interface name.
        // Anyone with CAP_NET_ADMIN in the namespace can write this userdata.
        if k != "all" && crate::model::ifpattern::IfPattern::parse(k, false).is_err() {
            return None;
        }
        v.parse::<i32>().ok()?;
        r.insert(k.to_string(), v.to_string());
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_records() {
        let r: Record = [("all".to_string(), "0".to_string()), ("eth0.100".to_string(), "-3".to_string())].into();
        assert_eq!(decode(&encode(&r)), Some(r));
        for bad in [
            "route_localnet:../../../tmp/x=1",
            "route_localnet:a/b=1",
            "route_localnet:all=1;rm",
            "route_localnet:all=",
            "other:all=1",
            "route_localnet:all=99999999999",
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
