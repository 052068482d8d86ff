//! Our tables put together from the decoded pieces of an nf_tables dump. One assembly for
//! both readers: [`Netfilter::read_owned`](super::Netfilter::read_owned) feeds it the
//! answers to its filtered requests, [`decode_dump`](super::decode_dump) the messages of a
//! captured buffer in any order, so the two cannot disagree on what a dump means.
//!
//! A piece belongs to a table of ours when its family and table name are those of the
//! table; any other piece is dropped (a chain dump cannot be filtered by table, and a
//! captured buffer holds every table).

use super::decode::{AnonSets, ChainInfo, RuleInfo};
use crate::model::live::LiveTable;
use crate::model::ruleset::Family;
use crate::model::set::{AnonSet, SetElem};

/// A rule of one of our tables whose chain no chain message listed: the dump is not one
/// consistent state (`read_owned` reads again; `decode_dump` refuses the buffer).
#[derive(Debug)]
pub(super) struct MissingChain {
    /// The chain the rule names (`NFTA_RULE_CHAIN`).
    pub chain: String,
    /// The table's family.
    pub family: Family,
    /// The table's name.
    pub table: String,
}

/// Our tables being assembled, each with its anonymous sets (by name) for the lookups of
/// its rules.
pub(super) struct Assembly {
    tables: Vec<LiveTable>,
    sets: Vec<AnonSets>,
}

impl Assembly {
    /// Starts from the tables of ours the table dump listed, `ip` before `inet` (the
    /// order tables are created in and shown).
    pub fn new(mut tables: Vec<LiveTable>) -> Assembly {
        tables.sort_by_key(|t| if t.family == Family::Ip { 0 } else { 1 });
        let sets = vec![AnonSets::new(); tables.len()];
        Assembly { tables, sets }
    }

    /// The tables so far (without their rules until [`Assembly::add_rule`] is called).
    pub fn tables(&self) -> &[LiveTable] {
        &self.tables
    }

    /// Whether no table of ours exists (nothing else needs to be read).
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    fn index(&self, family: Option<Family>, table: &str) -> Option<usize> {
        self.tables.iter().position(|t| Some(t.family) == family && t.name == table)
    }

    /// A chain, in dump order, to the table it names.
    pub fn add_chain(&mut self, c: ChainInfo) {
        if let Some(i) = self.index(c.family, &c.table) {
            self.tables[i].chains.push(c.into_live_chain());
        }
    }

    /// A set of `family`/`table`: an anonymous set (`Some`) is kept for the rules'
    /// lookups; a named one is someone else's (ecs-hostnet makes none) and is listed as a
    /// foreign object, `set NAME`.
    pub fn add_set(&mut self, family: Option<Family>, table: &str, name: String, set: Option<AnonSet>) {
        let Some(i) = self.index(family, table) else { return };
        match set {
            Some(set) => {
                self.sets[i].insert(name, set);
            }
            None => self.tables[i].foreign_objects.push(format!("set {name}")),
        }
    }

    /// The names of the anonymous sets of table `i` (in [`Assembly::tables`] order), whose
    /// elements are still to be read.
    pub fn set_names(&self, i: usize) -> Vec<String> {
        self.sets[i].keys().cloned().collect()
    }

    /// Elements of the anonymous set `set` of `family`/`table`; elements of a set the
    /// assembly does not hold are dropped.
    pub fn add_set_elements(&mut self, family: Option<Family>, table: &str, set: &str, elems: Vec<SetElem>) {
        let Some(i) = self.index(family, table) else { return };
        if let Some(s) = self.sets[i].get_mut(set) {
            s.elements.extend(elems);
        }
    }

    /// Puts every set's elements in ascending key order, as they are built and sent: the
    /// kernel dumps an interval set's elements in descending order. Call once all
    /// elements are in, before the rules are decoded against the sets.
    pub fn sort_set_elements(&mut self) {
        for s in self.sets.iter_mut().flat_map(|sets| sets.values_mut()) {
            s.elements.sort();
        }
    }

    /// A stateful object of `family`/`table`, listed as a foreign object `object NAME`.
    pub fn add_object(&mut self, family: Option<Family>, table: &str, name: &str) {
        if let Some(i) = self.index(family, table) {
            self.tables[i].foreign_objects.push(format!("object {name}"));
        }
    }

    /// The anonymous sets a rule of `family`/`table` is decoded against; `None` when the
    /// table is not ours.
    pub fn sets_of(&self, family: Option<Family>, table: &str) -> Option<&AnonSets> {
        self.index(family, table).map(|i| &self.sets[i])
    }

    /// A rule, in dump order, to its chain. Rules of other tables are dropped.
    ///
    /// # Errors
    /// [`MissingChain`] when the rule's table is ours but no chain of that name was added.
    pub fn add_rule(&mut self, r: RuleInfo) -> Result<(), MissingChain> {
        let Some(i) = self.index(r.family, &r.table) else { return Ok(()) };
        let t = &mut self.tables[i];
        match t.chains.iter_mut().find(|c| c.name == r.chain) {
            Some(c) => {
                c.rules.push(r.rule);
                Ok(())
            }
            None => Err(MissingChain { chain: r.chain, family: t.family, table: t.name.clone() }),
        }
    }

    /// The assembled tables.
    pub fn finish(self) -> Vec<LiveTable> {
        self.tables
    }
}
