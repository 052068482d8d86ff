//! The TOML configuration: schema, parsing and validation (pure, no I/O).
//!
//! The schema and every default are documented in `rules/default.toml`, which is embedded
//! in the binary as [`DEFAULT_TOML`]. Errors carry the file, line and column of the
//! offending value (1-based), say what is wrong and what is allowed.
//!
//! The schema and [`parse`] are here; the value types in `values`, the lenient first
//! reading of the file (every value with its span) in `toml_tree`, the checks across keys
//! in `checks`. May import [`crate::model`] only.

mod checks;
mod toml_tree;
mod values;

pub use values::{
    AgentOnError, AuditCount, DockerSocket, EndpointRoute, MAX_AUDIT_RATE, NflogGroup, Port, RouteLocalnet, Textfile,
    V4, V6, Val,
};

use crate::model::ifpattern::IfPattern;
use checks::check_consistency;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml_tree::{Bare, Entry, Node, Problem, find, key, unknown_field, user_section};

/// The embedded default configuration (`rules/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../rules/default.toml");

/// Name shown for the embedded default in messages.
pub const DEFAULT_NAME: &str = "<embedded rules/default.toml>";

/// Most interfaces `route_localnet.enable` may list: the values found before ecs-hostnet
/// changed them are recorded in the table's userdata, which the kernel caps at 256 bytes
/// (`NFT_USERDATA_MAXLEN`).
pub const MAX_ROUTE_LOCALNET_INTERFACES: usize = 8;

/// A located configuration error: `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to [`parse`] (the path read, or [`DEFAULT_NAME`]).
    pub file: String,
    /// 1-based line and column; `None` when the error has no position (e.g. a missing file).
    pub position: Option<(usize, usize)>,
    /// What is wrong and what is allowed, e.g. `"x" is not an IPv6 address; allowed: ...`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.file, line, col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in one file (at least one).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A list of interface names or patterns as written, each with its byte span; checked
/// element by element (so each error points at its element) by [`parse`].
pub type NameList = Vec<Spanned<String>>;

/// Most container interface patterns: each costs one DNAT rule and two elements in each
/// IMDS block set; past this, use fewer, wider patterns.
pub const MAX_CONTAINER_PATTERNS: usize = 1024;

/// Most interfaces allowed to reach the introspection port (they make one rule).
pub const MAX_ALLOWED_INTERFACES: usize = 64;

/// The sections and their keys; generates [`Config`], one [`section`] struct per section,
/// and `resolve`, which reads each key of the user's file on its own.
macro_rules! file_sections {
    ($( $section:ident { $( $key:ident : $kty:ty ),* $(,)? } )*) => {
        /// One section of the resolved configuration.
        pub mod section {
            use super::*;
            $(
                #[derive(Clone, Debug)]
                #[allow(non_camel_case_types)]
                /// A `[section]` of `rules/default.toml`: one field per key, each the user's
                /// value or the default's.
                pub struct $section { $(
                    /// A key of the section, as documented in `rules/default.toml`.
                    pub $key: Val<$kty>,
                )* }
            )*
        }
        /// The whole, validated configuration; see `rules/default.toml` for every key.
        #[derive(Clone, Debug)]
        pub struct Config { $(
            /// A `[section]`, keys left out of the file filled from the default.
            pub $section: section::$section,
        )* }

        /// The keys whose value in the user's file could not be read (wrong type, bad list
        /// element, or a section that is not a table): consistency checks involving them are
        /// skipped, as their value in [`Config`] is not the user's.
        #[derive(Default)]
        struct Failed { $( $section: failed::$section, )* }

        mod failed { $(
            #[derive(Default)]
            #[allow(non_camel_case_types)]
            pub(super) struct $section { $( pub(super) $key: bool, )* }
        )* }

        /// The section names, in schema order (for "unknown field" messages).
        const SECTIONS: &[&str] = &[$( stringify!($section) ),*];

        /// Builds the configuration from the user's top-level table and the default's: every
        /// unknown section or key and every unreadable value is pushed to `errs`.
        fn resolve(user: &[Entry], default: &[Entry], errs: &mut Vec<Problem>) -> (Config, Failed) {
            for e in user.iter().filter(|e| !SECTIONS.contains(&e.key.as_str())) {
                errs.push((e.key_span.clone(), unknown_field("section", &e.key, SECTIONS)));
            }
            let mut failed = Failed::default();
            $(
                let u = user_section(user, stringify!($section), &[$( stringify!($key) ),*], errs);
                let d = find(default, stringify!($section)).and_then(Node::table).expect("default has every section");
                let $section = section::$section { $(
                    $key: key(&u, d, stringify!($key), &mut failed.$section.$key, errs),
                )* };
            )*
            (Config { $( $section, )* }, failed)
        }
    };
}

file_sections! {
    containers {
        interfaces: NameList,
    }
    route_localnet {
        enable: RouteLocalnet,
    }
    credentials {
        enabled: bool,
        endpoint_address: V4,
        endpoint_port: Port,
        agent_address: V4,
        agent_port: Port,
        redirect_host_traffic: bool,
        endpoint_route_via_lo: EndpointRoute,
    }
    localhost_guard {
        enabled: bool,
        i_accept_that_route_localnet_exposes_localhost_services: bool,
    }
    introspection_guard {
        enabled: bool,
        port: Port,
        allowed_interfaces: NameList,
    }
    imds_block {
        enabled: bool,
        ipv4_address: V4,
        block_ipv6: bool,
        ipv6_address: V6,
        exclude_interfaces: NameList,
    }
    agent {
        manage_ecs_config: bool,
        enable_task_iam_role: bool,
        enable_task_iam_role_network_host: bool,
        awsvpc_block_imds: bool,
    }
    boot {
        agent_on_error: AgentOnError,
    }
    watch {
        enabled: bool,
    }
    metrics {
        textfile: Textfile,
    }
    audit {
        enabled: bool,
        nflog_group: NflogGroup,
        rate_per_second: AuditCount,
        burst: AuditCount,
        docker_socket: DockerSocket,
    }
}

impl Config {
    /// The container-facing interface patterns.
    pub fn container_interfaces(&self) -> Vec<IfPattern> {
        checked(&self.containers.interfaces.v, true)
    }
    /// Interfaces allowed to reach the introspection port.
    pub fn introspection_allowed(&self) -> Vec<IfPattern> {
        checked(&self.introspection_guard.allowed_interfaces.v, true)
    }
    /// The ECS agent settings to write to ecs.config, in file order; empty when
    /// `agent.manage_ecs_config` is false.
    pub fn agent_keys(&self) -> Vec<(String, Option<String>)> {
        let a = &self.agent;
        if !a.manage_ecs_config.v {
            return vec![];
        }
        let values = [a.enable_task_iam_role.v, a.enable_task_iam_role_network_host.v, a.awsvpc_block_imds.v];
        crate::model::names::AGENT_KEYS.iter().zip(values).map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect()
    }

    /// Container interfaces the IMDS block leaves alone.
    pub fn imds_exclusions(&self) -> Vec<IfPattern> {
        checked(&self.imds_block.exclude_interfaces.v, true)
    }

    /// route_localnet selectors to set: `all` or exact interface names; none when off.
    pub fn route_localnet_selectors(&self) -> Vec<String> {
        match &self.route_localnet.enable.v {
            RouteLocalnet::Off => vec![],
            RouteLocalnet::All => vec!["all".into()],
            RouteLocalnet::Interfaces(list) => list.iter().map(|n| n.get_ref().clone()).collect(),
        }
    }
}

/// A list [`parse`] has already checked.
fn checked(list: &NameList, allow_prefix: bool) -> Vec<IfPattern> {
    list.iter().map(|p| IfPattern::parse(p.get_ref(), allow_prefix).expect("checked by parse")).collect()
}

/// The embedded default, parsed.
pub fn default_config() -> Config {
    parse(DEFAULT_NAME, DEFAULT_TOML).expect("the embedded default is valid")
}

/// 1-based (line, column) of byte `offset` in `text` (column counts characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let mut col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    // A UTF-8 byte-order mark is not a column.
    if line == 1 && before.starts_with('\u{feff}') {
        col -= 1;
    }
    (line, col)
}

struct Located<'a> {
    file: &'a str,
    text: &'a str,
}

impl Located<'_> {
    fn err(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            position: span.map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }
}

/// Parses and validates a configuration file's text. `file` is the name used in errors.
///
/// Every key missing from `text` takes its value from [`DEFAULT_TOML`]. A syntax error is
/// reported alone (TOML cannot be read past it); otherwise every problem is reported, in
/// file order: each unknown section or key, each value of the wrong type, each bad list
/// element, and each consistency error (those involving a value that could not be read
/// are skipped).
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let loc = Located { file, text };
    if let Some(off) = text.find('\0') {
        return Err(ConfigErrors(vec![
            loc.err(Some(off..off + 1), "the file contains a NUL byte; a configuration is UTF-8 TOML text"),
        ]));
    }
    let user = toml::from_str::<Bare>(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        // The toml crate gives some syntax errors no text (`s=`, a lone CR).
        let msg = if msg.is_empty() { "invalid TOML syntax".to_string() } else { msg };
        ConfigErrors(vec![loc.err(e.span(), msg)])
    })?;
    // The embedded default (or a copy of it, the common case) is parsed once, not twice.
    let parsed_default;
    let default = if text == DEFAULT_TOML {
        &user
    } else {
        parsed_default = toml::from_str::<Bare>(DEFAULT_TOML).expect("embedded default parses");
        &parsed_default
    };
    let table = "a TOML document is a table";
    let mut problems = Vec::new();
    let (config, failed) = resolve(user.0.table().expect(table), default.0.table().expect(table), &mut problems);
    let mut errors: Vec<ConfigError> = problems.into_iter().map(|(span, m)| loc.err(span, m)).collect();
    errors.extend(check_consistency(&loc, &config, &failed));
    // File order; errors without a position last.
    errors.sort_by_key(|e| (e.position.is_none(), e.position));
    if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every error message of `text` parsed as `f.toml` (none: valid); shared with the
    /// tests of [`super::checks`].
    pub(super) fn errors(text: &str) -> Vec<String> {
        match parse("f.toml", text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_embedded_default_is_valid_and_complete() {
        let c = default_config();
        assert_eq!(c.route_localnet_selectors(), vec!["all"]);
        assert_eq!(c.container_interfaces().len(), 3);
        assert_eq!(c.boot.agent_on_error.v, AgentOnError::Block);
    }

    #[test]
    fn the_metrics_textfile_is_off_by_default_and_read_when_set() {
        assert_eq!(default_config().metrics.textfile.v, Textfile(None));
        let c =
            parse("f.toml", "[metrics]\ntextfile = \"/var/lib/node_exporter/textfile/ecs-hostnet.prom\"\n").unwrap();
        let want = std::path::Path::new("/var/lib/node_exporter/textfile/ecs-hostnet.prom");
        assert_eq!(c.metrics.textfile.v.0.as_deref(), Some(want));
    }

    #[test]
    fn audit_keys_default_to_on_and_bad_values_are_located() {
        let c = default_config();
        assert!(c.audit.enabled.v);
        assert_eq!(
            (c.audit.nflog_group.v, c.audit.rate_per_second.v, c.audit.burst.v),
            (NflogGroup(1254), AuditCount(10), AuditCount(10))
        );
        assert_eq!(c.audit.docker_socket.v.0.as_deref(), Some(std::path::Path::new("/var/run/docker.sock")));
        let c =
            parse("f.toml", "[audit]\nnflog_group = 65535\nrate_per_second = 1000\nburst = 1\ndocker_socket = \"\"\n")
                .unwrap();
        assert_eq!((c.audit.nflog_group.v.0, c.audit.rate_per_second.v.0, c.audit.burst.v.0), (65535, 1000, 1));
        assert_eq!(c.audit.docker_socket.v, DockerSocket(None));
        for (text, want) in [
            (
                "[audit]\nnflog_group = 0\n",
                "f.toml:2:15: nflog group 0 is out of range; allowed: 1-65535 (0 is the default group",
            ),
            ("[audit]\nnflog_group = 65536\n", "f.toml:2:15: nflog group 65536 is out of range"),
            ("[audit]\nrate_per_second = 0\n", "f.toml:2:19: the audit limit 0 is out of range; allowed: 1-1000"),
            ("[audit]\n\nburst = 1001\n", "f.toml:3:9: the audit limit 1001 is out of range; allowed: 1-1000"),
            ("[audit]\nburst = \"10\"\n", "f.toml:2:9: invalid type: string \"10\", expected the audit limit 1-1000"),
            (
                "[audit]\ndocker_socket = \"run/docker.sock\"\n",
                "f.toml:2:17: \"run/docker.sock\" is not an absolute path",
            ),
            ("[audit]\nenabled = 1\n", "f.toml:2:11: invalid type: integer `1`, expected a boolean"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            assert!(e[0].starts_with(want), "{text}: {e:?}");
        }
    }

    #[test]
    fn keys_left_out_take_the_default() {
        let c = parse("f.toml", "[credentials]\nagent_port = 51680\n").unwrap();
        assert_eq!(c.credentials.agent_port.v.0, 51680);
        assert_eq!(c.credentials.endpoint_port.v.0, 80);
        assert!(c.credentials.agent_port.span.is_some() && c.credentials.endpoint_port.span.is_none());
    }

    #[test]
    fn each_bad_list_element_is_reported_at_its_own_line() {
        let e = errors("[containers]\ninterfaces = [\n  \"docker+\",\n  \"a/b\",\n  \"x y\",\n]\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("f.toml:4:3: containers.interfaces: interface name \"a/b\" contains '/'"), "{e:?}");
        assert!(e[1].starts_with("f.toml:5:3: "), "{e:?}");
    }

    #[test]
    fn refused_values() {
        for (text, want) in [
            ("[containers]\ninterfaces = [\"abcdefghijklmno+\"]", "at most 14 before the wildcard"),
            ("[containers]\ninterfaces = [\"docker+\", \"docker0\"]", "overlaps \"docker+\""),
            ("[containers]\ninterfaces = [\"docker0\", \"docker0\"]", "is listed twice"),
            ("[containers]\ninterfaces = [\"+\"]", "every interface"),
            ("[credentials]\nagent_address = \"0.0.0.0\"", "cannot receive a DNAT"),
            ("[credentials]\nagent_address = \"224.0.0.1\"", "cannot receive a DNAT"),
            ("[credentials]\nagent_port = \"80\"", "a TCP port number 1-65535"),
            ("credentials = 5", "a table of keys"),
            ("[route_localnet]\nenable = [\"docker0\", \"all\"]", "sysctl keyword"),
            ("[route_localnet]\nenable = [\"docker+\"]", "prefix pattern is not allowed"),
            ("[route_localnet]\nenable = []", "empty list"),
            ("[imds_block]\nexclude_interfaces = [\"eth0\"]", "excludes nothing"),
            ("[imds_block]\nexclude_interfaces = [\"docker+\"]", "excludes all of"),
            ("[imds_block]\nexclude_interfaces = [\"ecs-bridge\"]", "excludes all of"),
            ("[boot]\nagent_on_error = \"ignore\"", "allowed: \"block\" (the agent does not start"),
            ("[boot]\nagent_on_error = false", "one of \"block\", \"start\""),
            ("[metrics]\ntextfile = \"ecs.prom\"", "is not an absolute path"),
            ("[metrics]\ntextfile = \"/var/lib/x/ecs.txt\"", "does not name a file ending in .prom"),
            ("[metrics]\ntextfile = \"/var/lib/x/\"", "does not name a file ending in .prom"),
            ("[metrics]\ntextfile = \"/var/lib/../x.prom\"", "has a `..` component"),
            ("[metrics]\ntextfile = 1", "a file path in quotes"),
        ] {
            let e = errors(text);
            assert!(e.iter().any(|m| m.contains(want)), "{text:?}: want {want:?} in {e:?}");
            assert!(e.iter().all(|m| m.starts_with("f.toml:")), "{e:?}");
        }
        let many: Vec<String> = (0..1025).map(|i| format!("\"c{i}\"")).collect();
        let e = errors(&format!("[containers]\ninterfaces = [{}]", many.join(",")));
        assert!(e[0].contains("at most 1024"), "{e:?}");
    }

    const CREDENTIALS_KEYS: &str = "allowed: `enabled`, `endpoint_address`, `endpoint_port`, \
        `agent_address`, `agent_port`, `redirect_host_traffic`, `endpoint_route_via_lo`";
    const SECTION_NAMES: &str = "allowed: `containers`, `route_localnet`, `credentials`, \
        `localhost_guard`, `introspection_guard`, `imds_block`, `agent`, `boot`, `watch`, `metrics`, `audit`";
    const IFNAME_ALLOWED: &str =
        "allowed: 1-15 bytes of ASCII letters, digits and . _ - @ (and a trailing + for a prefix match)";

    #[test]
    fn every_problem_is_reported_at_its_own_position_in_file_order() {
        let text = "# several independent problems\n\
                    [credentials]\n\
                    enabled = \"yes\"\n\
                    agent_address = \"127.0.0.300\"\n\
                    endpoint_prot = 80\n\
                    \n\
                    [containers]\n\
                    interfaces = [\n  \"docker+\",\n  \"dock/er\",\n  7,\n  \"br-+\",\n]\n\
                    \n\
                    [nosuch]\n\
                    x = 1\n\
                    [imds_block]\n\
                    enabled = true\n\
                    ipv4_address = \"imds\"\n";
        let e = errors(text);
        let want = [
            "f.toml:3:11: invalid type: string \"yes\", expected a boolean".to_string(),
            "f.toml:4:17: \"127.0.0.300\" is not an IPv4 address; allowed: dotted quad such as 169.254.170.2".into(),
            format!("f.toml:5:1: unknown key `endpoint_prot`; {CREDENTIALS_KEYS}"),
            format!(
                "f.toml:10:3: containers.interfaces: interface name \"dock/er\" contains '/', which the kernel or \
                 nft refuses; {IFNAME_ALLOWED}"
            ),
            "f.toml:11:3: invalid type: integer `7`, expected a string".into(),
            format!("f.toml:15:2: unknown section `nosuch`; {SECTION_NAMES}"),
            "f.toml:19:16: \"imds\" is not an IPv4 address; allowed: dotted quad such as 169.254.170.2".into(),
        ];
        assert_eq!(e, want);
        // The same problems, written in another order, come out in file order.
        let text = "verbose = true\n[imds_block]\nipv4_address = \"imds\"\n[credentials]\nenabled = 1\nfoo = 2\n";
        let positions: Vec<String> = errors(text).iter().map(|m| m.split(' ').next().unwrap().to_string()).collect();
        assert_eq!(positions, ["f.toml:1:1:", "f.toml:3:16:", "f.toml:5:11:", "f.toml:6:1:"]);
    }

    #[test]
    fn one_problem_is_one_error() {
        for (text, want) in [
            ("[credentials]\nenabled = true\nendpoint_prot = 80\n", "f.toml:3:1: unknown key `endpoint_prot`"),
            ("[credentials]\nagent_port = \"51679\"\n", "f.toml:2:14: invalid type: string \"51679\""),
            ("# c\n[credential]\nenabled = true\n", "f.toml:2:2: unknown section `credential`"),
            ("[containers]\ninterfaces = [\n  \"docker+\",\n  42,\n]\n", "f.toml:4:3: invalid type: integer `42`"),
            ("credentials = 5", "f.toml:1:15: invalid type: integer `5`, expected a table of keys"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(e[0].starts_with(want), "{text:?}: want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn a_syntax_error_is_reported_alone() {
        // Other problems before the syntax error are not reported: the file cannot be read.
        for (text, want) in [
            ("[credentials\nenabled = true\n", "f.toml:1:13: invalid table header"),
            ("[credentials]\nenabled = \"yes\"\nfoo = 1\nagent_port =\n", "f.toml:4:13: "),
            ("[credentials]\nenabled = true\nenabled = false\n", "f.toml:3:1: duplicate key `enabled`"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(e[0].starts_with(want), "{text:?}: want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn checks_involving_an_unreadable_value_are_skipped() {
        // Each value below would, if taken as the default, trigger a consistency error
        // (exclusion outside containers.interfaces, empty route_localnet list, guard off).
        let text = "[containers]\ninterfaces = \"docker+\"\n\
                    [imds_block]\nexclude_interfaces = [\"eth0\"]\n\
                    [route_localnet]\nenable = [5]\n\
                    [localhost_guard]\nenabled = \"no\"\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("f.toml:2:14: invalid type: string \"docker+\", expected an array"), "{e:?}");
        assert!(e[1].starts_with("f.toml:6:11: invalid type: integer `5`, expected a string"), "{e:?}");
        assert!(e[2].starts_with("f.toml:8:11: invalid type: string \"no\", expected a boolean"), "{e:?}");
        // A section that is not a table: none of its keys is checked against the others.
        let e = errors("credentials = 5\n[route_localnet]\nenable = \"off\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        // The readable elements of a list with a bad one are still checked.
        let e = errors("[containers]\ninterfaces = [\"docker+\", 42, \"a/b\", \"docker0\"]\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[2].contains("\"docker0\" overlaps \"docker+\""), "{e:?}");
    }

    #[test]
    fn inline_tables_dotted_keys_and_datetimes_are_read() {
        let c = parse("f.toml", "credentials = { agent_port = 51680 }\nimds_block.enabled = false\n").unwrap();
        assert_eq!(c.credentials.agent_port.v.0, 51680);
        assert!(!c.imds_block.enabled.v);
        assert_eq!(c.credentials.agent_port.span, Some(29..34));
        let e = errors("credentials = { enabled = \"x\", foo = 1 }\n[agent]\nmanage_ecs_config = 1979-05-27\n");
        assert_eq!(
            e,
            [
                "f.toml:1:27: invalid type: string \"x\", expected a boolean".to_string(),
                format!("f.toml:1:32: unknown key `foo`; {CREDENTIALS_KEYS}"),
                "f.toml:3:21: invalid type: datetime, expected a boolean".into(),
            ]
        );
    }
}
