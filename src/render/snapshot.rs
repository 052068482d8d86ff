//! The `snapshot` document: the live state of one host (or network namespace) as JSON,
//! schema `ecs-hostnet.snapshot/v1` (documented in `docs/json.md`), so that CI can plan a
//! configuration change against a real host's state without root or a kernel
//! (`ecs-hostnet plan --against host.json`).
//!
//! A snapshot holds everything `plan` could read, whatever the configuration planned
//! later: our tables (as the kernel reports them, expression by expression), the saved
//! route_localnet record, the route_localnet value of every interface, every main-table
//! IPv4 route, and, on an installed host, the managed files. The agent's settings file is
//! redacted ([`crate::desired::ecs_config::redact`]): only the keys ecs-hostnet manages are kept.
//! Planning against it goes through the same code as planning against the kernel
//! ([`HostFacts::live_state`], [`crate::plan::files::plan_files`]), so both give the same
//! plan (a test pins this).
//!
//! Reading a snapshot ([`Snapshot::from_json`]) fails with a [`SnapshotError`], located
//! (`NAME:LINE:COL: ...` or `NAME: ...`).

use crate::desired::ecs_config;
use crate::desired::install_files as artifacts;
use crate::model::install_state::{Bytes, InstallState, InstalledEcsConfig, InstalledFile, LiveFiles};
use crate::model::live::LiveTable;
use crate::model::record::Record;
use crate::model::route::{LiveRoute, Uplink};
use crate::plan::live::HostFacts;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema name in [`Snapshot::schema`].
pub const SNAPSHOT_SCHEMA: &str = "ecs-hostnet.snapshot/v1";

/// A snapshot document that cannot be read, or that no host could have given. Each is one
/// line (no [`source`](std::error::Error::source)).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The document is not JSON.
    #[error("{name}:{line}:{column}: {message} (a snapshot is the JSON `ecs-hostnet snapshot` prints)")]
    NotJson {
        /// The document's name (its path).
        name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The JSON parser's message, without its position.
        message: String,
    },
    /// The `schema` is another one.
    #[error("{name}: schema {schema:?} is not one this ecs-hostnet reads ({SNAPSHOT_SCHEMA})")]
    UnknownSchema {
        /// The document's name.
        name: String,
        /// The schema it names.
        schema: String,
    },
    /// There is no `schema` string.
    #[error("{name}: no \"schema\": {SNAPSHOT_SCHEMA:?}; this is not a snapshot from `ecs-hostnet snapshot`")]
    NoSchema {
        /// The document's name.
        name: String,
    },
    /// JSON of the right schema whose content does not fit [`Snapshot`] (a missing or
    /// unknown field, a wrong type).
    #[error("{name}:{line}:{column}: {message}")]
    Malformed {
        /// The document's name.
        name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The JSON parser's message, without its position.
        message: String,
    },
    /// What [`Snapshot::check`] refuses: something no kernel or host reports.
    #[error("{problem}")]
    Implausible {
        /// What is wrong, naming the table, chain, rule or setting.
        problem: String,
    },
    /// [`SnapshotError::Implausible`] in a named document.
    #[error("{name}: {problem}; not a snapshot a host could give")]
    NotFromAHost {
        /// The document's name.
        name: String,
        /// What is wrong (as in [`SnapshotError::Implausible`]).
        problem: String,
    },
    /// File content `{"base64": ...}` that is not base64 ([`Content::to_bytes`]).
    #[error("invalid base64 file content: {error}")]
    Base64 {
        /// The decoder's complaint.
        error: base64::DecodeError,
    },
    /// [`SnapshotError::Base64`] in a named document, for the file at `path`.
    #[error("{name}: {path}: invalid base64 file content: {error}")]
    BadContent {
        /// The document's name.
        name: String,
        /// The managed file whose content is bad.
        path: String,
        /// The decoder's complaint.
        error: base64::DecodeError,
    },
}

/// [`SnapshotError::Implausible`] from a message.
fn implausible(problem: String) -> SnapshotError {
    SnapshotError::Implausible { problem }
}

/// One host's live state (`ecs-hostnet snapshot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_SCHEMA`]; a reader refuses any other.
    pub schema: String,
    /// The ecs-hostnet version that took it (informational).
    pub ecs_hostnet_version: String,
    /// `uname -r` of the host (informational).
    pub kernel_release: Option<String>,
    /// The `--netns` it was taken in; `null` for the current network namespace.
    pub netns: Option<String>,
    /// The nf_tables rule-set generation the tables were read at (informational).
    pub generation: u32,
    /// Our tables in nft syntax, one line per element, for people (informational; ignored
    /// on input).
    #[serde(default)]
    pub listing: Vec<String>,
    /// Our tables as the kernel reports them (see [`LiveTable`]).
    pub tables: Vec<LiveTable>,
    /// The copy of the route_localnet record kept under the run directory, if any.
    pub saved_record: Option<Record>,
    /// `net.ipv4.conf.<name>.route_localnet` for `all`, `default` and every interface:
    /// name -> value as the kernel prints it (`"0"`, `"1"`).
    pub route_localnet: BTreeMap<String, String>,
    /// Every main-table IPv4 route with a destination (see [`LiveRoute`]).
    pub ipv4_routes: Vec<LiveRoute>,
    /// Whether the main table has an IPv4 default route.
    pub ipv4_default_route: bool,
    /// Whether `lo` is up.
    pub lo_up: bool,
    /// The interfaces the main table's IPv4 and IPv6 default routes leave through (see
    /// [`Uplink`]), for the check that no container interface pattern matches them
    /// ([`crate::plan::uplink`]). Missing (or `null`) in a snapshot taken by an older
    /// ecs-hostnet: `plan --against` then says the check was skipped.
    #[serde(default)]
    pub default_route_interfaces: Option<Vec<Uplink>>,
    /// The installed files; `null` when ecs-hostnet is not installed on the host.
    pub install: Option<InstallSnapshot>,
}

/// The files `ecs-hostnet install` manages on the host, as they are and as install wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallSnapshot {
    /// The configuration, the boot unit and the ecs-init drop-in.
    pub files: Vec<FileSnapshot>,
    /// Whether install made the boot unit's enablement symlink (and so checks it).
    pub wants_link: bool,
    /// Whether that symlink is in place, pointing at the boot unit.
    pub boot_unit_enabled: bool,
    /// The agent's settings file, when install manages keys in it; `null` otherwise.
    pub ecs_config: Option<EcsConfigSnapshot>,
}

/// One managed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSnapshot {
    /// Absolute path on the host.
    pub path: String,
    /// What install wrote.
    pub expected: Content,
    /// What the file holds now; `null` when it is missing.
    pub live: Option<Content>,
}

/// The agent's settings file ([`artifacts::ECS_CONFIG_PATH`]), redacted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcsConfigSnapshot {
    /// The file with every line but [`crate::model::names::AGENT_KEYS`] redacted; `null` when it is missing.
    pub live: Option<Content>,
}

/// File content: a JSON string when it is UTF-8, else `{"base64": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// UTF-8 text, as is.
    Text(String),
    /// Any other bytes.
    Base64 {
        /// Standard base64 (RFC 4648, with padding).
        base64: String,
    },
}

impl Content {
    /// Wraps bytes.
    pub fn from_bytes(b: &[u8]) -> Content {
        match std::str::from_utf8(b) {
            Ok(s) => Content::Text(s.to_string()),
            Err(_) => Content::Base64 { base64: base64::engine::general_purpose::STANDARD.encode(b) },
        }
    }
    /// The bytes.
    ///
    /// Errors: [`SnapshotError::Base64`] on invalid base64.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        match self {
            Content::Text(s) => Ok(s.as_bytes().to_vec()),
            Content::Base64 { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map_err(|error| SnapshotError::Base64 { error }),
        }
    }

    /// [`Content::to_bytes`], errors naming the document and the file
    /// ([`SnapshotError::BadContent`]).
    fn to_bytes_in(&self, name: &str, path: &str) -> Result<Vec<u8>, SnapshotError> {
        self.to_bytes().map_err(|e| match e {
            SnapshotError::Base64 { error } => {
                SnapshotError::BadContent { name: name.to_string(), path: path.to_string(), error }
            }
            e => e,
        })
    }
}

/// Our tables in nft syntax, for people.
fn listing(tables: &[LiveTable]) -> Vec<String> {
    use crate::model::nft_text::{base_chain_text, printable, rule_text};
    let mut out = Vec::new();
    for t in tables {
        out.push(format!("table {} {} {{", t.family.name(), t.name));
        for c in &t.chains {
            out.push(format!("  chain {} {{", printable(&c.name)));
            if let Some(b) = &c.base {
                out.push(format!("    {}", base_chain_text(b)));
            }
            for r in &c.rules {
                out.push(format!("    {} # handle {}", rule_text(t.family, &r.exprs, r.comment.as_deref()), r.handle));
            }
            out.push("  }".into());
        }
        out.push("}".into());
    }
    out
}

impl Snapshot {
    /// Assembles a snapshot from what was read: the host's facts, the route_localnet
    /// values, the generation, and the installed files (`(state, files, link_ok)` as
    /// [`crate::engine::install::read_live_files`] gives them; `None` when nothing is installed).
    pub fn new(
        facts: HostFacts,
        route_localnet: BTreeMap<String, String>,
        generation: u32,
        netns: Option<String>,
        kernel_release: Option<String>,
        install: Option<(InstallState, LiveFiles, bool)>,
    ) -> Snapshot {
        let install = install.map(|(state, files, link_ok)| InstallSnapshot {
            files: state
                .files
                .iter()
                .filter_map(|f| {
                    let expected = f.written.as_ref()?;
                    Some(FileSnapshot {
                        path: f.path.clone(),
                        expected: Content::from_bytes(&expected.0),
                        live: files.get(&f.path).cloned().flatten().map(|b| Content::from_bytes(&b)),
                    })
                })
                .collect(),
            wants_link: state.wants_link,
            boot_unit_enabled: link_ok,
            ecs_config: state.ecs_config.as_ref().map(|_| EcsConfigSnapshot {
                live: files
                    .get(artifacts::ECS_CONFIG_PATH)
                    .cloned()
                    .flatten()
                    .map(|b| Content::from_bytes(&ecs_config::redact(&b, &crate::model::names::AGENT_KEYS))),
            }),
        });
        Snapshot {
            schema: SNAPSHOT_SCHEMA.into(),
            ecs_hostnet_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release,
            netns,
            generation,
            listing: listing(&facts.tables),
            tables: facts.tables,
            saved_record: facts.saved_record,
            route_localnet,
            ipv4_routes: facts.ipv4_routes,
            ipv4_default_route: facts.ipv4_default_route,
            lo_up: facts.lo_up,
            default_route_interfaces: facts.uplinks,
            install,
        }
    }

    /// Reads a snapshot document. `name` is used in errors, which are located
    /// (`NAME:LINE:COL: ...`) and name the schema this ecs-hostnet reads.
    ///
    /// Errors: [`SnapshotError::NotJson`], [`SnapshotError::UnknownSchema`],
    /// [`SnapshotError::NoSchema`], [`SnapshotError::Malformed`],
    /// [`SnapshotError::NotFromAHost`] (see [`Snapshot::check`]), [`SnapshotError::BadContent`].
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        // serde_json's text ends with " at line L column C": say it once, up front.
        let position = |e: &serde_json::Error| {
            let text = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
            (name.to_string(), e.line(), e.column().max(1), message)
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            let (name, line, column, message) = position(&e);
            SnapshotError::NotJson { name, line, column, message }
        })?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SNAPSHOT_SCHEMA) => {}
            Some(other) => {
                return Err(SnapshotError::UnknownSchema { name: name.to_string(), schema: other.to_string() });
            }
            None => return Err(SnapshotError::NoSchema { name: name.to_string() }),
        }
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| {
            let (name, line, column, message) = position(&e);
            SnapshotError::Malformed { name, line, column, message }
        })?;
        snap.check().map_err(|e| SnapshotError::NotFromAHost { name: name.to_string(), problem: e.to_string() })?;
        // Check what the planner would otherwise meet later: file contents decode.
        if let Some(i) = &snap.install {
            for f in &i.files {
                f.expected.to_bytes_in(name, &f.path)?;
                if let Some(l) = &f.live {
                    l.to_bytes_in(name, &f.path)?;
                }
            }
            if let Some(Some(l)) = i.ecs_config.as_ref().map(|e| &e.live) {
                l.to_bytes_in(name, artifacts::ECS_CONFIG_PATH)?;
            }
        }
        Ok(snap)
    }

    /// Refuses what no kernel or host reports, so that a tampered snapshot cannot make
    /// `plan --against` show something `plan` never would (e.g. deleting someone else's
    /// table): tables other than ecs-hostnet's, duplicate tables, chains or rule handles,
    /// names and comments longer than the kernel allows (`NFT_NAME_MAXLEN`,
    /// `NFT_USERDATA_MAXLEN`: 256 bytes), rules of more than `NFT_RULE_MAXEXPRS` (128)
    /// expressions, sysctl values that are not integers, selectors that are not `all`
    /// or an interface name, and default route interfaces that are not interface names.
    ///
    /// Errors: [`SnapshotError::Implausible`], naming the first problem found.
    pub fn check(&self) -> Result<(), SnapshotError> {
        use crate::model::names::OWNED_TABLES;
        const NAME_MAX: usize = 256;
        const MAX_EXPRS: usize = 128;
        let selector_ok = |k: &str| k == "all" || crate::model::ifpattern::IfPattern::parse(k, false).is_ok();
        // The first entry that is not `all`/an interface name with an integer value.
        let record_bad = |r: &Record| {
            r.iter().find(|(k, v)| !(selector_ok(k) && v.parse::<i32>().is_ok())).map(|(k, v)| {
                format!(
                    "{:?} = {:?}",
                    crate::model::escape::escape_controls(k),
                    crate::model::escape::escape_controls(v)
                )
            })
        };
        let mut seen = Vec::new();
        for t in &self.tables {
            let what = format!("table {} {}", t.family.name(), crate::model::escape::escape_controls(&t.name));
            if !OWNED_TABLES.contains(&(t.family, t.name.as_str())) {
                return Err(implausible(format!(
                    "{what} is not one of ecs-hostnet's (table ip ecs-hostnet, table inet ecs-hostnet)"
                )));
            }
            if seen.contains(&(t.family, &t.name)) {
                return Err(implausible(format!("{what} is listed twice")));
            }
            seen.push((t.family, &t.name));
            if t.comment.as_ref().is_some_and(|c| c.len() > NAME_MAX) {
                return Err(implausible(format!("{what}: the comment is longer than {NAME_MAX} bytes")));
            }
            if let Some(bad) = t.record.as_ref().and_then(record_bad) {
                return Err(implausible(format!(
                    "{what}: the route_localnet record holds {bad}: want `all` or an interface name and an integer"
                )));
            }
            let mut chains = Vec::new();
            let mut handles = std::collections::BTreeSet::new();
            for c in &t.chains {
                let chain = crate::model::escape::escape_controls(&c.name);
                if c.name.len() > NAME_MAX {
                    return Err(implausible(format!(
                        "{what}: the chain name {chain:?} is longer than {NAME_MAX} bytes"
                    )));
                }
                if chains.contains(&&c.name) {
                    return Err(implausible(format!("{what}: chain {chain} is listed twice")));
                }
                chains.push(&c.name);
                for r in &c.rules {
                    if !handles.insert(r.handle) {
                        return Err(implausible(format!("{what}: rule handle {} is listed twice", r.handle)));
                    }
                    if r.comment.as_ref().is_some_and(|c| c.len() > NAME_MAX) {
                        return Err(implausible(format!(
                            "{what}: the comment of rule handle {} is longer than {NAME_MAX} bytes",
                            r.handle
                        )));
                    }
                    if r.exprs.len() > MAX_EXPRS {
                        return Err(implausible(format!(
                            "{what}: rule handle {} has {} expressions, the kernel allows {MAX_EXPRS}",
                            r.handle,
                            r.exprs.len()
                        )));
                    }
                }
            }
            if t.foreign_objects.iter().any(|o| o.len() > 2 * NAME_MAX) {
                return Err(implausible(format!("{what}: a foreign object's name is too long")));
            }
        }
        if let Some(bad) = self.saved_record.as_ref().and_then(record_bad) {
            return Err(implausible(format!(
                "saved_record holds {bad}: want `all` or an interface name and an integer"
            )));
        }
        for (k, v) in &self.route_localnet {
            if !(selector_ok(k) && v.parse::<i32>().is_ok()) {
                return Err(implausible(format!(
                    "route_localnet: {:?} = {:?}: want `all` or an interface name and an integer",
                    crate::model::escape::escape_controls(k),
                    crate::model::escape::escape_controls(v)
                )));
            }
        }
        let not_a_name = |u: &&Uplink| crate::model::ifpattern::IfPattern::parse(&u.interface, false).is_err();
        if let Some(u) = self.default_route_interfaces.iter().flatten().find(not_a_name) {
            return Err(implausible(format!(
                "default_route_interfaces: {:?} is not an interface name",
                crate::model::escape::escape_controls(&u.interface)
            )));
        }
        Ok(())
    }

    /// The snapshot as a pretty-printed JSON document with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a snapshot serializes");
        s.push('\n');
        s
    }

    /// The facts [`HostFacts::live_state`] plans against.
    pub fn facts(&self) -> HostFacts {
        HostFacts {
            tables: self.tables.clone(),
            saved_record: self.saved_record.clone(),
            ipv4_routes: self.ipv4_routes.clone(),
            ipv4_default_route: self.ipv4_default_route,
            lo_up: self.lo_up,
            uplinks: self.default_route_interfaces.clone(),
        }
    }

    /// route_localnet of `selector` (`None`: no such interface on the host).
    pub fn route_localnet(&self, selector: &str) -> Option<String> {
        self.route_localnet.get(selector).cloned()
    }

    /// The install state, live files and link state [`crate::plan::files::plan_files`] compares,
    /// rebuilt from the snapshot; `None` when nothing was installed. (File contents were
    /// checked by [`Snapshot::from_json`].)
    pub fn install_view(&self) -> Option<(InstallState, LiveFiles, bool)> {
        let i = self.install.as_ref()?;
        let bytes = |c: &Content| c.to_bytes().unwrap_or_default();
        let mut live = LiveFiles::new();
        let files = i
            .files
            .iter()
            .map(|f| {
                live.insert(f.path.clone(), f.live.as_ref().map(bytes));
                InstalledFile {
                    path: f.path.clone(),
                    before: None,
                    before_mode: None,
                    before_owner: None,
                    written: Some(Bytes(bytes(&f.expected))),
                }
            })
            .collect();
        let ecs_config = i.ecs_config.as_ref().map(|e| {
            live.insert(artifacts::ECS_CONFIG_PATH.into(), e.live.as_ref().map(bytes));
            InstalledEcsConfig::default()
        });
        let state = InstallState {
            schema: crate::model::install_state::STATE_SCHEMA.into(),
            files,
            wants_link: i.wants_link,
            ecs_config,
            created_dirs: vec![],
            ..Default::default()
        };
        Some((state, live, i.boot_unit_enabled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ruleset::{Expr, Family};

    fn converged() -> Snapshot {
        let d = crate::desired::compile(&crate::config::default_config());
        let values = [("all".to_string(), "1".to_string()), ("lo".to_string(), "0".to_string())].into();
        Snapshot::new(crate::plan::live::converged_host(&d, "0"), values, 7, None, None, None)
    }

    fn refused(s: &Snapshot) -> String {
        let text = s.to_json();
        match Snapshot::from_json("s.json", text.as_bytes()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_host_snapshot_round_trips() {
        let s = converged();
        assert_eq!(Snapshot::from_json("s.json", s.to_json().as_bytes()).unwrap(), s);
        assert!(s.listing.iter().any(|l| l.contains("comment \"localhost-guard\" # handle")), "{:?}", s.listing);
    }

    #[test]
    fn default_route_interfaces_round_trip_and_an_older_snapshot_without_them_reads_as_unknown() {
        use crate::model::route::IpFamily;
        let mut s = converged();
        let uplinks = vec![
            Uplink { family: IpFamily::Ipv4, interface: "br-lan".into() },
            Uplink { family: IpFamily::Ipv6, interface: "br-lan".into() },
        ];
        s.default_route_interfaces = Some(uplinks.clone());
        let text = s.to_json();
        assert!(
            text.contains("\"default_route_interfaces\": [\n    {\n      \"family\": \"ipv4\",\n      \"interface\": \"br-lan\"\n    },"),
            "{text}"
        );
        let back = Snapshot::from_json("s.json", text.as_bytes()).unwrap();
        assert_eq!(back.facts().uplinks, Some(uplinks));
        // What an older ecs-hostnet wrote: no such field.
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc.as_object_mut().unwrap().remove("default_route_interfaces");
        let old = Snapshot::from_json("old.json", doc.to_string().as_bytes()).unwrap();
        assert_eq!(old.facts().uplinks, None);
    }

    #[test]
    fn snapshots_no_host_could_give_are_refused() {
        let mut s = converged();
        s.tables[0].name = "filter".into();
        assert!(refused(&s).contains("table ip filter is not one of ecs-hostnet's"), "{}", refused(&s));
        let mut s = converged();
        s.tables.push(s.tables[0].clone());
        assert!(refused(&s).contains("is listed twice"), "{}", refused(&s));
        let mut s = converged();
        let chain = s.tables[1].chains[0].clone();
        s.tables[1].chains.push(chain);
        assert!(refused(&s).contains("listed twice"), "{}", refused(&s));
        let mut s = converged();
        s.route_localnet.insert("all".into(), "banana".into());
        assert!(refused(&s).contains("banana"), "{}", refused(&s));
        let mut s = converged();
        s.tables[0].chains[0].rules[0].exprs = vec![Expr::Counter; 129];
        assert!(refused(&s).contains("129 expressions"), "{}", refused(&s));
        let mut s = converged();
        s.tables[0].chains[0].rules[0].comment = Some("x".repeat(300));
        assert!(refused(&s).contains("longer than 256 bytes"), "{}", refused(&s));
        let mut s = converged();
        s.saved_record = Some([("../../etc".to_string(), "1".to_string())].into());
        assert!(refused(&s).contains("saved_record"), "{}", refused(&s));
        let mut s = converged();
        let bad = Uplink { family: crate::model::route::IpFamily::Ipv4, interface: "eth0/../x".into() };
        s.default_route_interfaces = Some(vec![bad]);
        assert!(
            refused(&s).contains("default_route_interfaces: \"eth0/../x\" is not an interface name"),
            "{}",
            refused(&s)
        );
        assert!(converged().tables.iter().all(|t| t.family != Family::Ip6));
    }
}
