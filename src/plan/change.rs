//! One change of a plan, for people and for machines: what, why, and its live and desired form.

use crate::model::ruleset::Family;
use crate::plan::reason::Reason;
use serde::Serialize;
/// `+` add, `~` change, `-` remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Something missing is created (`+`).
    Add,
    /// Something present is corrected or recreated, or a sysctl is set or put back (`~`).
    Change,
    /// Something present is deleted: a table, or a foreign, duplicate or stale rule (`-`).
    Remove,
}

impl Action {
    /// The sign `plan` prints before the change: `+`, `~` or `-`.
    pub fn sign(self) -> char {
        match self {
            Action::Add => '+',
            Action::Change => '~',
            Action::Remove => '-',
        }
    }
}

/// What a change is about. In JSON (`ecs-hostnet.plan/v1`) its fields are flattened into
/// the change object, with `kind` naming the variant (`table`, `chain`, `rule`, `sysctl`,
/// `route`, `file`, `symlink`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// `table FAMILY NAME`.
    Table {
        /// `ip` or `inet`.
        family: Family,
        /// Always [`crate::model::names::TABLE_NAME`].
        table: String,
    },
    /// `chain FAMILY TABLE CHAIN`.
    Chain {
        /// `ip` or `inet`.
        family: Family,
        /// The table's name.
        table: String,
        /// The chain's name (one of [`crate::model::names::chain::ALL`], or a foreign one).
        chain: String,
    },
    /// A rule, named by its id (the rule comment) and, for a live rule, its kernel handle.
    Rule {
        /// `ip` or `inet`.
        family: Family,
        /// The table's name.
        table: String,
        /// The chain's name.
        chain: String,
        /// The rule's id (comment); `None` for a live rule without a comment.
        id: Option<String>,
        /// Kernel handle of the live rule removed; `None` for a rule to be added.
        handle: Option<u64>,
    },
    /// A sysctl, e.g. `net.ipv4.conf.all.route_localnet`.
    Sysctl {
        /// The sysctl's dotted name.
        name: String,
    },
    /// A main-table IPv4 route, e.g. `169.254.170.2/32 dev lo src 127.0.0.1`.
    Route {
        /// The route as `ip route` would name it.
        route: String,
    },
    /// A file install manages (absolute path on the host, without `--root`).
    File {
        /// The file's path.
        path: String,
    },
    /// The boot unit's enablement symlink.
    Symlink {
        /// The link's path.
        path: String,
    },
}

impl Subject {
    /// The one-line name of the object: `table ip ecs-hostnet`, `chain inet ecs-hostnet
    /// input`, `rule ip ecs-hostnet prerouting "credentials-dnat docker+" handle 4`,
    /// `sysctl net.ipv4.conf.all.route_localnet`, `route ...`, `file /etc/ecs/ecs.config`.
    pub fn object(&self) -> String {
        match self {
            Subject::Table { family, table } => table_object(*family, table),
            Subject::Chain { family, table, chain } => chain_object(*family, table, chain),
            Subject::Rule { family, table, chain, id, handle } => {
                rule_object(*family, table, chain, id.as_deref(), *handle)
            }
            Subject::Sysctl { name } => format!("sysctl {name}"),
            Subject::Route { route } => format!("route {route}"),
            Subject::File { path } => format!("file {path}"),
            Subject::Symlink { path } => format!("symlink {path}"),
        }
    }
}

/// One change, for people and for machines: what, why, and its live and desired form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Add, change or remove.
    pub action: Action,
    /// What the change is about (flattened into the JSON object).
    #[serde(flatten)]
    pub subject: Subject,
    /// Why: `missing`, `modified by someone`, `no longer in the configuration`, ... (in
    /// JSON, its text).
    pub reason: Reason,
    /// The live form, when there is one: a rule in nft syntax (without its comment), a
    /// chain's `type ... policy ...;`, a sysctl value, a route.
    pub old: Option<String>,
    /// The desired form, in the same terms as `old`.
    pub new: Option<String>,
    /// Further lines: why a table is recreated, a file's line diff (`-old`, `+new`).
    pub details: Vec<String>,
}

impl Change {
    /// A change with no old or new form and no details.
    pub fn new(action: Action, subject: Subject, reason: Reason) -> Change {
        Change { action, subject, reason, old: None, new: None, details: vec![] }
    }
    /// Sets the live form.
    pub fn old(mut self, text: impl Into<String>) -> Change {
        self.old = Some(text.into());
        self
    }
    /// Sets the desired form.
    pub fn new_form(mut self, text: impl Into<String>) -> Change {
        self.new = Some(text.into());
        self
    }
    /// Sets the extra lines.
    pub fn details(mut self, lines: Vec<String>) -> Change {
        self.details = lines;
        self
    }
    /// See [`Subject::object`].
    pub fn object(&self) -> String {
        self.subject.object()
    }
}

pub(crate) fn table_object(family: Family, name: &str) -> String {
    format!("table {} {name}", family.name())
}

pub(crate) fn chain_object(family: Family, table: &str, chain: &str) -> String {
    format!("chain {} {table} {chain}", family.name())
}

pub(crate) fn rule_subject(family: Family, table: &str, chain: &str, id: Option<&str>, handle: Option<u64>) -> Subject {
    Subject::Rule { family, table: table.into(), chain: chain.into(), id: id.map(str::to_string), handle }
}

pub(crate) fn rule_object(family: Family, table: &str, chain: &str, id: Option<&str>, handle: Option<u64>) -> String {
    let mut s = format!("rule {} {table} {chain}", family.name());
    if let Some(id) = id {
        // A foreign comment is kernel text: escape it (see `model::nft_text::printable`).
        s.push_str(&format!(" \"{}\"", crate::model::nft_text::printable(id)));
    }
    if let Some(h) = handle {
        s.push_str(&format!(" handle {h}"));
    }
    s
}
