//! Online template mining, Drain-style (He et al., "Drain: An Online Log Parsing Approach
//! with Fixed Depth Tree", ICWS 2017).
//!
//! Each line is masked ([`crate::masking::mask`]), split on whitespace, its line header
//! left out if it was shipped with one ([`crate::line_header`]: Drain groups messages, the
//! header split off, as its authors run it with each log's format), and routed to a
//! leaf by its token count and its first [`MinerConfig::prefix_depth`] tokens (tokens that
//! are placeholders route as `<*>`). Inside the leaf the line joins the most similar
//! template (share of positions with the same token) when that share reaches
//! [`MinerConfig::similarity_threshold`]; the template then generalises: positions where
//! they differ become `<*>`. Otherwise the line starts a new template.
//!
//! # Template ids
//!
//! A template's id is fixed when the template is created and never changes afterwards, even
//! as the template text generalises: it is `t` followed by the 16 hex digits of the 64-bit
//! FNV-1a hash of the *first-seen masked message* (tokens joined by single spaces). FNV-1a is
//! written out here rather than taken from `std`'s hasher because `std` does not promise
//! the same hash across Rust versions, and the id is persisted. Consequences:
//!
//! - two replicas that both see the same new message first derive the same id without
//!   talking to each other, so an upsert keyed by id in the `templates` table reconciles
//!   them;
//! - a state exported by one replica ([`TemplateMiner::export`]) and imported by another
//!   ([`TemplateMiner::import`]) routes every later line to the same ids;
//! - in the (astronomically unlikely) event of a hash collision with a different template
//!   in the same miner, the hash is recomputed with a numeric salt so ids stay unique.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::masking::{is_placeholder_token, mask};

/// The tokens of a masked line that the miner groups by: its message, after the line
/// header if it was shipped with one ([`crate::line_header::message_start`]), as Drain is
/// meant to be run (on the message, the header split off by the log's format).
fn message_tokens(masked: &str) -> Vec<&str> {
    let mut tokens: Vec<&str> = masked.split_whitespace().collect();
    let start = crate::line_header::message_start(&tokens);
    tokens.drain(..start);
    tokens
}

/// The wildcard a template gets where its lines disagree.
pub const WILDCARD: &str = "<*>";

/// Version of [`MinerState`]'s layout; bumped when an old state can no longer be read.
pub const STATE_VERSION: u32 = 1;

/// Stable identifier of a mined template (see the module docs for how it is derived).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub String);

impl std::fmt::Display for TemplateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tuning of the miner. The `grouping_accuracy` example's figures were measured with the
/// defaults; nothing in them is specific to one log source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerConfig {
    /// Share of positions that must agree for a line to join a template, in (0, 1].
    pub similarity_threshold: f64,
    /// How many leading tokens route a line to its leaf (Drain's depth minus two).
    pub prefix_depth: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.7,
            prefix_depth: 2,
        }
    }
}

/// One mined template as it is persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRecord {
    pub id: TemplateId,
    /// Current text, tokens joined by single spaces; `<*>` where lines disagreed.
    pub template: String,
    /// The masked line that created the template; the id is derived from it.
    pub first_seen: String,
    /// Lines matched so far (including the first).
    pub count: u64,
}

/// Everything needed to rebuild a [`TemplateMiner`], for persistence (serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerState {
    pub version: u32,
    pub config: MinerConfig,
    pub templates: Vec<TemplateRecord>,
}

/// What mining one line did to the template set; tells the caller what to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateChange {
    /// The line started a new template.
    Created,
    /// The line matched a template and its text became more general.
    Generalised,
    /// The line matched a template as it was.
    Unchanged,
}

/// Result of mining one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinedLine {
    pub template_id: TemplateId,
    /// The template's text after this line was taken into account.
    pub template: String,
    pub change: TemplateChange,
    /// Matched lines of the template so far.
    pub count: u64,
}

/// Errors from [`TemplateMiner::import`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("template state version {found} is not supported (this build reads version {STATE_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("template state lists id {0} twice")]
    DuplicateId(TemplateId),
    #[error("similarity_threshold must be in (0, 1], got {0}")]
    BadThreshold(f64),
}

#[derive(Debug, Clone)]
struct Cluster {
    id: TemplateId,
    tokens: Vec<String>,
    first_seen: String,
    count: u64,
}

/// Online template miner. Not thread-safe by itself (`&mut self`); one per scorer.
#[derive(Debug, Clone)]
pub struct TemplateMiner {
    config: MinerConfig,
    clusters: Vec<Cluster>,
    leaves: HashMap<LeafKey, Vec<usize>>,
    /// Templates by token count and prefix without its first token, for lines whose
    /// prefix leaf has no match.
    by_tail: HashMap<LeafKey, Vec<usize>>,
    by_id: HashMap<TemplateId, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LeafKey {
    len: usize,
    prefix: Vec<String>,
}

impl Default for TemplateMiner {
    fn default() -> Self {
        Self::new(MinerConfig::default())
    }
}

impl TemplateMiner {
    pub fn new(config: MinerConfig) -> Self {
        Self {
            config,
            clusters: Vec::new(),
            leaves: HashMap::new(),
            by_tail: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Number of templates mined so far.
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// Mask `message` and assign it to a template, creating or generalising one as needed.
    pub fn mine(&mut self, message: &str) -> MinedLine {
        let masked = mask(message);
        self.mine_masked(&masked)
    }

    /// Like [`TemplateMiner::mine`] for a line already passed through [`mask`].
    pub fn mine_masked(&mut self, masked: &str) -> MinedLine {
        let tokens = message_tokens(masked);
        let key = self.leaf_key(&tokens);

        let mut best = self
            .leaves
            .get(&key)
            .and_then(|members| self.best_match(members, &tokens));
        if best.is_none() {
            // The first token can itself be variable (a component or host name without
            // digits). Before starting a new template, compare with the templates that
            // agree on length and on the rest of the prefix; the similarity threshold
            // still applies to all positions.
            // A stricter bar than inside a leaf, because the prefix no longer vouches.
            let strict = (1.0 + self.config.similarity_threshold) / 2.0;
            best = self
                .by_tail
                .get(&tail_key(&key))
                .and_then(|members| self.best_match_above(members, &tokens, strict));
            if let Some(index) = best {
                // Route later lines with this prefix straight to the template.
                self.leaves.entry(key.clone()).or_default().push(index);
            }
        }

        match best {
            Some(index) => {
                let cluster = &mut self.clusters[index];
                cluster.count += 1;
                let mut changed = false;
                for (slot, token) in cluster.tokens.iter_mut().zip(&tokens) {
                    if slot != token && slot != WILDCARD {
                        *slot = WILDCARD.to_string();
                        changed = true;
                    }
                }
                MinedLine {
                    template_id: cluster.id.clone(),
                    template: cluster.tokens.join(" "),
                    change: if changed {
                        TemplateChange::Generalised
                    } else {
                        TemplateChange::Unchanged
                    },
                    count: cluster.count,
                }
            }
            None => {
                let first_seen = tokens.join(" ");
                let id = self.fresh_id(&first_seen);
                let cluster = Cluster {
                    id: id.clone(),
                    tokens: tokens.iter().map(|t| t.to_string()).collect(),
                    first_seen: first_seen.clone(),
                    count: 1,
                };
                self.insert(key, cluster);
                MinedLine {
                    template_id: id,
                    template: first_seen,
                    change: TemplateChange::Created,
                    count: 1,
                }
            }
        }
    }

    /// The template `message` would join, without changing anything: `None` when mining
    /// it would start a new template.
    pub fn peek(&self, message: &str) -> Option<TemplateId> {
        self.peek_masked(&mask(message))
    }

    /// Like [`TemplateMiner::peek`] for a line already passed through [`mask`].
    pub fn peek_masked(&self, masked: &str) -> Option<TemplateId> {
        let tokens = message_tokens(masked);
        let key = self.leaf_key(&tokens);
        self.leaves
            .get(&key)
            .and_then(|members| self.best_match(members, &tokens))
            .or_else(|| {
                let strict = (1.0 + self.config.similarity_threshold) / 2.0;
                self.by_tail
                    .get(&tail_key(&key))
                    .and_then(|members| self.best_match_above(members, &tokens, strict))
            })
            .map(|index| self.clusters[index].id.clone())
    }

    /// Forgets the templates `ids` (a bounded miner evicts them); the others keep their
    /// ids, text, counts and routing. A line of a forgotten template mined later starts a
    /// new template, unless the template is brought back first (by [`TemplateMiner::import`]
    /// of a state that has it). Returns how many were removed.
    pub fn remove(&mut self, ids: &HashSet<TemplateId>) -> usize {
        let before = self.clusters.len();
        let mut remap: Vec<Option<usize>> = Vec::with_capacity(before);
        let mut kept = Vec::with_capacity(before);
        for cluster in std::mem::take(&mut self.clusters) {
            if ids.contains(&cluster.id) {
                remap.push(None);
            } else {
                remap.push(Some(kept.len()));
                kept.push(cluster);
            }
        }
        self.clusters = kept;
        let removed = before - self.clusters.len();
        if removed == 0 {
            return 0;
        }
        for members in self.leaves.values_mut().chain(self.by_tail.values_mut()) {
            members.retain_mut(|index| match remap[*index] {
                Some(new) => {
                    *index = new;
                    true
                }
                None => false,
            });
        }
        self.leaves.retain(|_, members| !members.is_empty());
        self.by_tail.retain(|_, members| !members.is_empty());
        self.by_id = self
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        removed
    }

    /// Current text of a template.
    pub fn template(&self, id: &TemplateId) -> Option<&[String]> {
        self.by_id
            .get(id)
            .map(|&index| self.clusters[index].tokens.as_slice())
    }

    /// All templates, in creation order.
    pub fn records(&self) -> impl Iterator<Item = TemplateRecord> + '_ {
        self.clusters.iter().map(|c| TemplateRecord {
            id: c.id.clone(),
            template: c.tokens.join(" "),
            first_seen: c.first_seen.clone(),
            count: c.count,
        })
    }

    /// Snapshot for persistence.
    pub fn export(&self) -> MinerState {
        MinerState {
            version: STATE_VERSION,
            config: self.config.clone(),
            templates: self.records().collect(),
        }
    }

    /// Rebuild a miner from a snapshot. Templates keep their ids, text and counts.
    pub fn import(state: MinerState) -> Result<Self, ImportError> {
        if state.version != STATE_VERSION {
            return Err(ImportError::UnsupportedVersion {
                found: state.version,
            });
        }
        let threshold = state.config.similarity_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ImportError::BadThreshold(threshold));
        }
        let mut miner = Self::new(state.config);
        for record in state.templates {
            if miner.by_id.contains_key(&record.id) {
                return Err(ImportError::DuplicateId(record.id));
            }
            let tokens: Vec<String> = record
                .template
                .split_whitespace()
                .map(str::to_string)
                .collect();
            // Route by the current template: its prefix tokens are what later lines will
            // be compared on (a position generalised to <*> routes as <*>).
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let key = miner.leaf_key(&refs);
            miner.insert(
                key,
                Cluster {
                    id: record.id,
                    tokens,
                    first_seen: record.first_seen,
                    count: record.count,
                },
            );
        }
        Ok(miner)
    }

    fn insert(&mut self, key: LeafKey, cluster: Cluster) {
        let index = self.clusters.len();
        self.by_id.insert(cluster.id.clone(), index);
        self.by_tail.entry(tail_key(&key)).or_default().push(index);
        self.clusters.push(cluster);
        self.leaves.entry(key).or_default().push(index);
    }

    fn leaf_key(&self, tokens: &[&str]) -> LeafKey {
        let prefix = tokens
            .iter()
            .take(self.config.prefix_depth)
            .map(|t| {
                if is_placeholder_token(t) {
                    WILDCARD.to_string()
                } else {
                    t.to_string()
                }
            })
            .collect();
        LeafKey {
            len: tokens.len(),
            prefix,
        }
    }

    /// The most similar template in the leaf, if similar enough. Ties go to the template
    /// with more wildcards (the more general one), then to the older one, as in Drain.
    fn best_match(&self, members: &[usize], tokens: &[&str]) -> Option<usize> {
        self.best_match_above(members, tokens, self.config.similarity_threshold)
    }

    fn best_match_above(
        &self,
        members: &[usize],
        tokens: &[&str],
        threshold: f64,
    ) -> Option<usize> {
        let mut best: Option<(f64, usize, usize)> = None;
        for &index in members {
            let template = &self.clusters[index].tokens;
            let (sim, wildcards) = similarity(template, tokens);
            let better = match best {
                None => true,
                Some((best_sim, best_wild, _)) => {
                    sim > best_sim || (sim == best_sim && wildcards > best_wild)
                }
            };
            if better {
                best = Some((sim, wildcards, index));
            }
        }
        best.filter(|(sim, _, _)| *sim >= threshold)
            .map(|(_, _, index)| index)
    }

    fn fresh_id(&self, first_seen: &str) -> TemplateId {
        let mut salt = 0u32;
        loop {
            let mut hash = fnv1a64(first_seen.as_bytes());
            if salt > 0 {
                hash = fnv1a64_continue(hash, format!("#{salt}").as_bytes());
            }
            let id = TemplateId(format!("t{hash:016x}"));
            if !self.by_id.contains_key(&id) {
                return id;
            }
            salt += 1;
        }
    }
}

fn tail_key(key: &LeafKey) -> LeafKey {
    LeafKey {
        len: key.len,
        prefix: key.prefix.iter().skip(1).cloned().collect(),
    }
}

/// (similarity in [0, 1], wildcard positions in the template).
///
/// Positions where both sides are variable (a placeholder such as `<IP>` or the wildcard)
/// are not compared: they agree by construction and would make short messages that share
/// only their variables ("[instance: <UUID>] Claim successful" and "[instance: <UUID>]
/// Terminating instance") look half-similar. A constant on either side is compared, so a
/// template's wildcard does not count as agreement with a constant (otherwise a template
/// that has generalised a lot would swallow unrelated lines of the same length), nor does a
/// placeholder in the line with a constant in the template.
fn similarity(template: &[String], tokens: &[&str]) -> (f64, usize) {
    let mut same = 0usize;
    let mut compared = 0usize;
    let mut wildcards = 0usize;
    for (slot, token) in template.iter().zip(tokens) {
        let slot_variable = is_placeholder_token(slot);
        if slot == WILDCARD {
            wildcards += 1;
        }
        if slot_variable && is_placeholder_token(token) {
            continue;
        }
        compared += 1;
        if slot == token {
            same += 1;
        }
    }
    let sim = if compared == 0 {
        // All-variable lines: same length and routing is all there is to compare.
        1.0
    } else {
        same as f64 / compared as f64
    };
    (sim, wildcards)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_continue(FNV_OFFSET, bytes)
}

fn fnv1a64_continue(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lines_share_a_template() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine("Connection to 10.0.0.1 closed");
        let b = miner.mine("Connection to 10.0.0.2 closed");
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(a.change, TemplateChange::Created);
        assert_eq!(b.change, TemplateChange::Unchanged);
        assert_eq!(b.template, "Connection to <IP> closed");
        assert_eq!(b.count, 2);
    }

    /// Lines shipped whole group by their message: the header's time, host, pid, thread
    /// and level neither split a message's lines nor pull different messages together.
    #[test]
    fn lines_with_their_header_group_by_their_message() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine("Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for root from 10.0.0.1 port 22 ssh2");
        let b = miner.mine("Dec 10 07:01:02 LabSZ sshd[24411]: Failed password for root from 10.0.0.9 port 22 ssh2");
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(
            b.template,
            "Failed password for root from <IP> port <NUM> ssh2"
        );
        let c = miner.mine("2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.ipc.Client: Retrying connect to server");
        let d = miner.mine("2015-10-18 18:05:12,001 WARN [IPC Server handler 3 on 4100] org.apache.hadoop.ipc.Client: Retrying connect to server");
        assert_eq!(c.template_id, d.template_id);
        assert_eq!(d.template, "Retrying connect to server");
        // The same message sent bare joins them.
        assert_eq!(
            miner.mine("Retrying connect to server").template_id,
            c.template_id
        );
        assert_eq!(
            miner.peek("2015-10-18 19:00:00,000 INFO [main] x.Y: Retrying connect to server"),
            Some(c.template_id)
        );
    }

    #[test]
    fn id_is_stable_when_template_generalises() {
        let mut miner = TemplateMiner::default();
        let first = miner.mine("session for alice opened from web");
        let second = miner.mine("session for bob opened from web");
        assert_eq!(second.change, TemplateChange::Generalised);
        assert_eq!(second.template, "session for <*> opened from web");
        assert_eq!(first.template_id, second.template_id);
        // Derived from the first-seen masked line only.
        assert_eq!(
            first.template_id,
            TemplateId(format!(
                "t{:016x}",
                fnv1a64(b"session for alice opened from web")
            ))
        );
    }

    #[test]
    fn different_messages_get_different_templates() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine("Disk quota exceeded for volume data");
        let b = miner.mine("Connection reset by peer during handshake");
        assert_ne!(a.template_id, b.template_id);
        assert_eq!(miner.len(), 2);
    }

    #[test]
    fn ids_do_not_depend_on_the_replica() {
        let mut one = TemplateMiner::default();
        let mut two = TemplateMiner::default();
        two.mine("something else entirely happened");
        let a = one.mine("worker 3 started");
        let b = two.mine("worker 9 started");
        assert_eq!(a.template_id, b.template_id);
    }

    #[test]
    fn export_import_round_trip_keeps_routing() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine("session for alice opened from web");
        miner.mine("session for bob opened from web");
        miner.mine("Disk quota exceeded for volume data");
        let json = serde_json::to_string(&miner.export()).unwrap();
        let state: MinerState = serde_json::from_str(&json).unwrap();
        let mut restored = TemplateMiner::import(state).unwrap();
        assert_eq!(restored.len(), 2);
        let c = restored.mine("session for carol opened from web");
        assert_eq!(c.template_id, a.template_id);
        assert_eq!(c.change, TemplateChange::Unchanged);
        assert_eq!(c.count, 3);
    }

    #[test]
    fn import_rejects_bad_states() {
        let mut state = TemplateMiner::default().export();
        state.version = 99;
        assert!(matches!(
            TemplateMiner::import(state),
            Err(ImportError::UnsupportedVersion { found: 99 })
        ));
        let mut miner = TemplateMiner::default();
        miner.mine("a b c");
        let mut state = miner.export();
        state.templates.push(state.templates[0].clone());
        assert!(matches!(
            TemplateMiner::import(state),
            Err(ImportError::DuplicateId(_))
        ));
    }

    #[test]
    fn a_removed_template_is_gone_and_the_others_still_route() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine("session for alice opened from web");
        let b = miner.mine("Disk quota exceeded for volume data");
        let c = miner.mine("worker 3 started");
        assert_eq!(
            miner.peek("session for bob opened from web"),
            Some(a.template_id.clone())
        );
        let removed = miner.remove(&HashSet::from([a.template_id.clone()]));
        assert_eq!(removed, 1);
        assert_eq!(miner.len(), 2);
        assert_eq!(miner.peek("session for bob opened from web"), None);
        assert!(miner.template(&a.template_id).is_none());
        let again = miner.mine("Disk quota exceeded for volume data");
        assert_eq!(again.template_id, b.template_id);
        assert_eq!(again.count, 2);
        assert_eq!(miner.mine("worker 7 started").template_id, c.template_id);
    }

    #[test]
    fn empty_line_is_a_template_too() {
        let mut miner = TemplateMiner::default();
        let a = miner.mine("");
        let b = miner.mine("   ");
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(b.template, "");
    }
}
