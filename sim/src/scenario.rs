//! Scenario files (TOML): nodes, link model, buffers, workload, routing.
//!
//! ```toml
//! name = "helsinki-126"
//! seed = 1
//! nodes = 126
//! duration_s = 43200
//! lifetime_s = 18000
//!
//! [link]
//! bitrate_bytes = 250000
//! one_transfer_per_node = true
//!
//! [buffer]
//! bytes = 5000000
//! policy = "drop-oldest"
//! nodes = { "120-125" = 50000000 }
//!
//! [routing]
//! policy = "epidemic"        # | "spray-and-wait" (spray_copies) | "prophet" | "direct"
//!
//! [contacts]                 # or kind = "random-waypoint" / "data-mule"
//! kind = "trace"
//! path = "contacts.txt"      # relative to the scenario file
//!
//! [messages]                 # or kind = "uniform"
//! kind = "trace"
//! path = "messages.txt"
//! ```
//!
//! [`Scenario::parse`] refuses unknown keys, reports TOML errors with their line and
//! then checks what the types alone do not ([`Scenario::validate`]): each problem is
//! one [`ScenarioError::Invalid`] naming the field. [`Scenario::load`] reads a file and
//! returns the directory trace paths are relative to; [`Scenario::contacts`] and
//! [`Scenario::messages`] read the traces (node indices checked against `nodes`) or
//! generate the synthetic ones from the scenario's seed ([`crate::mobility`]).
//!
//! Events after `duration_s` are returned as they are: the run ignores them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_router::engine::{PolicyConfig, ProphetParams};
use serde::{Deserialize, Serialize};

use crate::mobility::{self, RandomWaypointParams, SimRng};
use crate::model::{BufferPolicy, ContactEvent, LinkModel, MessageEvent, NodeIndex, SimMillis};
use crate::trace::{self, TraceError, TraceLimits};

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// Seed of every random choice (loss, mobility, keys).
    #[serde(default)]
    pub seed: u64,
    /// Number of nodes (indices `0..nodes`).
    pub nodes: u32,
    /// Simulated seconds; events after it are ignored.
    pub duration_s: u64,
    /// The link model of every contact.
    pub link: LinkModel,
    /// Buffers.
    pub buffer: BufferSpec,
    /// Bundle lifetime in seconds.
    pub lifetime_s: u32,
    /// Routing policy and parameters.
    pub routing: RoutingSpec,
    /// Where contacts come from.
    pub contacts: ContactSource,
    /// Where messages come from.
    pub messages: MessageSource,
    /// Reporting options.
    #[serde(default)]
    pub report: ReportSpec,
}

/// Buffer sizes and what happens when one is full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSpec {
    /// Bytes per node unless overridden (`0`: unlimited).
    pub bytes: u64,
    /// Overrides: `"120-125" = 50000000` or `"7" = 1000`.
    #[serde(default)]
    pub nodes: BTreeMap<String, u64>,
    /// Refuse (Ferry) or drop the oldest (The ONE).
    #[serde(default)]
    pub policy: BufferPolicy,
}

/// The routing policy to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    /// epidemic | spray-and-wait | prophet | direct.
    pub policy: String,
    /// L for spray-and-wait.
    #[serde(default = "default_copies")]
    pub spray_copies: u32,
    /// Hop limit of created bundles.
    #[serde(default = "default_hop_limit")]
    pub hop_limit: u8,
}

fn default_copies() -> u32 {
    8
}

fn default_hop_limit() -> u8 {
    ferry_core::DEFAULT_HOP_LIMIT
}

/// Contact source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ContactSource {
    /// A trace file in The ONE's format (`<time> CONN <a> <b> up|down`), relative
    /// to the scenario file.
    Trace {
        /// The file.
        path: PathBuf,
    },
    /// Random waypoint mobility in a rectangle; a contact while two nodes are
    /// within `range_m`.
    RandomWaypoint {
        /// Width of the area in metres.
        width_m: f64,
        /// Height of the area in metres.
        height_m: f64,
        /// Radio range in metres.
        range_m: f64,
        /// Slowest speed, m/s.
        speed_min: f64,
        /// Fastest speed, m/s.
        speed_max: f64,
        /// Longest pause at a waypoint, seconds.
        #[serde(default)]
        pause_max_s: f64,
        /// Time step of the contact detection, seconds.
        #[serde(default = "default_step")]
        step_s: f64,
    },
    /// Static nodes visited by data mules on a schedule.
    DataMule {
        /// The mule nodes (the others are static sites).
        mules: Vec<NodeIndex>,
        /// Seconds between the starts of two rounds of a mule.
        period_s: u64,
        /// Seconds a mule stays at each site.
        dwell_s: u64,
        /// Seconds of travel between two sites.
        travel_s: u64,
    },
}

fn default_step() -> f64 {
    1.0
}

/// Message source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MessageSource {
    /// A file in The ONE's format (`<time> C <id> <from> <to> <size>`), relative to
    /// the scenario file.
    Trace {
        /// The file.
        path: PathBuf,
    },
    /// `count` messages between random distinct nodes, one every `interval_s`,
    /// sizes uniform in `size_min..=size_max`.
    Uniform {
        /// How many.
        count: u64,
        /// First creation time, seconds.
        #[serde(default)]
        start_s: u64,
        /// Seconds between creations.
        interval_s: f64,
        /// Smallest size, bytes.
        size_min: u64,
        /// Largest size, bytes.
        size_max: u64,
        /// Only these nodes send (default: all).
        #[serde(default)]
        from: Vec<NodeIndex>,
        /// Only these nodes receive (default: all).
        #[serde(default)]
        to: Vec<NodeIndex>,
    },
}

/// Reporting options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Seconds between two samples of buffer occupancy.
    pub occupancy_interval_s: u64,
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            occupancy_interval_s: 600,
        }
    }
}

/// Largest scenario file accepted.
pub const MAX_SCENARIO_BYTES: usize = 1 << 20;
/// Most nodes in a scenario.
pub const MAX_NODES: u32 = 100_000;
/// Longest simulated time: ten years.
pub const MAX_DURATION_S: u64 = 10 * 365 * 86_400;
/// Most position samples of a random waypoint scenario (`duration / step`).
pub const MAX_MOBILITY_STEPS: u64 = 100_000_000;
/// Most messages of a uniform workload.
pub const MAX_MESSAGES: u64 = 10_000_000;
/// Largest modelled message size (1 TiB): sums of sizes stay far from overflow.
pub const MAX_MESSAGE_BYTES: u64 = 1 << 40;

/// The stream of the scenario's seed that uniform messages draw from (mobility uses
/// one stream per node index).
const MESSAGE_STREAM: u64 = u64::MAX;

/// A scenario that cannot be read, parsed, validated or resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file is larger than [`MAX_SCENARIO_BYTES`].
    #[error("scenario is {0} bytes, more than the limit of {MAX_SCENARIO_BYTES}")]
    TooLarge(u64),
    /// Not TOML, or not the scenario's shape (with the line, when toml knows it).
    #[error("scenario syntax: {0}")]
    Syntax(String),
    /// A value out of range or inconsistent with another.
    #[error("scenario: {0}")]
    Invalid(String),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A trace file is malformed.
    #[error("{}: {source}", path.display())]
    Trace {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong with it.
        #[source]
        source: TraceError,
    },
}

/// Prefixes a validation message that starts with a field (`link.mtu must …`,
/// `contacts.mules: …`, `lifetime_s …`) with the line that sets it, when the text has
/// one: `line 12: link.mtu must …`.
fn with_line(text: &str, msg: &str) -> String {
    let field = msg.split([' ', ':']).next().unwrap_or_default();
    let (section, key) = match field.rsplit_once('.') {
        Some((sec, key)) => (sec, key),
        None => ("", field),
    };
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return msg.to_owned();
    }
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = h.trim().trim_matches('[').trim().to_owned();
            continue;
        }
        let sets_key = t
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if sets_key && current == section {
            return format!("line {}: {msg}", n + 1);
        }
    }
    msg.to_owned()
}

fn invalid(msg: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid(msg.into())
}

impl Scenario {
    /// Parses and validates a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        if text.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError::TooLarge(text.len() as u64));
        }
        let scenario: Scenario = toml::from_str(text)
            .map_err(|e| ScenarioError::Syntax(ferry_router::config::toml_error_line(text, &e)))?;
        scenario.validate().map_err(|e| match e {
            ScenarioError::Invalid(msg) => ScenarioError::Invalid(with_line(text, &msg)),
            other => other,
        })?;
        Ok(scenario)
    }

    /// Reads, parses and validates the scenario file at `path`; returns it with the
    /// directory its trace paths are relative to.
    pub fn load(path: &Path) -> Result<(Scenario, PathBuf), ScenarioError> {
        let io = |source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_SCENARIO_BYTES as u64 {
            return Err(ScenarioError::TooLarge(len));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let scenario = Scenario::parse(&text)?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok((scenario, base))
    }

    /// Checks what the types alone do not; each error names its field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name must not be empty"));
        }
        if !(2..=MAX_NODES).contains(&self.nodes) {
            return Err(invalid(format!(
                "nodes must be between 2 and {MAX_NODES}, not {}",
                self.nodes
            )));
        }
        if !(1..=MAX_DURATION_S).contains(&self.duration_s) {
            return Err(invalid(format!(
                "duration_s must be between 1 and {MAX_DURATION_S} (ten years), not {}",
                self.duration_s
            )));
        }
        if self.lifetime_s == 0 {
            return Err(invalid("lifetime_s must be at least 1"));
        }
        self.validate_link()?;
        self.buffer_overrides()?;
        self.policy_config()?;
        if self.routing.hop_limit == 0 {
            return Err(invalid("routing.hop_limit must be at least 1"));
        }
        self.validate_contacts()?;
        self.validate_messages()?;
        if self.report.occupancy_interval_s == 0 {
            return Err(invalid("report.occupancy_interval_s must be at least 1"));
        }
        Ok(())
    }

    fn validate_link(&self) -> Result<(), ScenarioError> {
        let l = &self.link;
        if l.bitrate_bytes == 0 {
            return Err(invalid("link.bitrate_bytes must be at least 1"));
        }
        if !(l.loss.is_finite() && (0.0..1.0).contains(&l.loss)) {
            return Err(invalid(format!(
                "link.loss must be in [0, 1), not {}",
                l.loss
            )));
        }
        if let Some(d) = l.duty_cycle {
            if !(d.is_finite() && d > 0.0 && d <= 1.0) {
                return Err(invalid(format!(
                    "link.duty_cycle must be in (0, 1], not {d}"
                )));
            }
        }
        if l.mtu == Some(0) {
            return Err(invalid("link.mtu must be at least 1"));
        }
        if l.latency_ms > MAX_DURATION_S * 1000 {
            return Err(invalid(format!(
                "link.latency_ms ({}) is longer than ten years",
                l.latency_ms
            )));
        }
        Ok(())
    }

    fn validate_contacts(&self) -> Result<(), ScenarioError> {
        match &self.contacts {
            ContactSource::Trace { path } => {
                if path.as_os_str().is_empty() {
                    return Err(invalid("contacts.path must not be empty"));
                }
            }
            ContactSource::RandomWaypoint { .. } => {
                let p = self
                    .contacts
                    .random_waypoint_params()
                    .ok_or_else(|| invalid("contacts: not random waypoint"))?;
                p.check().map_err(|e| invalid(format!("contacts.{e}")))?;
                let steps = self.duration_ms() / p.step_ms();
                if steps > MAX_MOBILITY_STEPS {
                    return Err(invalid(format!(
                        "contacts.step_s: {steps} samples over duration_s, more than \
                         {MAX_MOBILITY_STEPS}"
                    )));
                }
            }
            ContactSource::DataMule {
                mules,
                period_s,
                dwell_s,
                travel_s,
            } => {
                if mules.is_empty() {
                    return Err(invalid("contacts.mules must name at least one node"));
                }
                let mut seen = std::collections::BTreeSet::new();
                for &m in mules {
                    if m >= self.nodes {
                        return Err(invalid(format!(
                            "contacts.mules: node {m} is out of range (0..{})",
                            self.nodes
                        )));
                    }
                    if !seen.insert(m) {
                        return Err(invalid(format!("contacts.mules: node {m} is repeated")));
                    }
                }
                if seen.len() as u64 >= u64::from(self.nodes) {
                    return Err(invalid(
                        "contacts.mules: every node is a mule; there is no site to visit",
                    ));
                }
                for (name, v) in [("period_s", period_s), ("dwell_s", dwell_s)] {
                    if !(1..=MAX_DURATION_S).contains(v) {
                        return Err(invalid(format!(
                            "contacts.{name} must be between 1 and {MAX_DURATION_S}, not {v}"
                        )));
                    }
                }
                if *travel_s > MAX_DURATION_S {
                    return Err(invalid(format!(
                        "contacts.travel_s must be at most {MAX_DURATION_S}, not {travel_s}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_messages(&self) -> Result<(), ScenarioError> {
        match &self.messages {
            MessageSource::Trace { path } => {
                if path.as_os_str().is_empty() {
                    return Err(invalid("messages.path must not be empty"));
                }
            }
            MessageSource::Uniform {
                count,
                start_s,
                interval_s,
                size_min,
                size_max,
                from,
                to,
            } => {
                if *count > MAX_MESSAGES {
                    return Err(invalid(format!(
                        "messages.count must be at most {MAX_MESSAGES}, not {count}"
                    )));
                }
                if *start_s > MAX_DURATION_S {
                    return Err(invalid(format!(
                        "messages.start_s must be at most {MAX_DURATION_S}, not {start_s}"
                    )));
                }
                if !(interval_s.is_finite() && *interval_s >= 0.0) {
                    return Err(invalid(format!(
                        "messages.interval_s must be zero or positive, not {interval_s}"
                    )));
                }
                let last_s = *interval_s * count.saturating_sub(1) as f64;
                if last_s > MAX_DURATION_S as f64 {
                    return Err(invalid(format!(
                        "messages: the last of {count} messages every {interval_s} s would \
                         come after ten years"
                    )));
                }
                if *size_min == 0 {
                    return Err(invalid("messages.size_min must be at least 1"));
                }
                if size_min > size_max {
                    return Err(invalid(format!(
                        "messages.size_min ({size_min}) is above size_max ({size_max})"
                    )));
                }
                if *size_max > MAX_MESSAGE_BYTES {
                    return Err(invalid(format!(
                        "messages.size_max must be at most {MAX_MESSAGE_BYTES} (1 TiB), not \
                         {size_max}"
                    )));
                }
                for (name, list) in [("from", from), ("to", to)] {
                    if let Some(n) = list.iter().find(|n| **n >= self.nodes) {
                        return Err(invalid(format!(
                            "messages.{name}: node {n} is out of range (0..{})",
                            self.nodes
                        )));
                    }
                }
                if self.senders(from, to).is_empty() {
                    return Err(invalid(
                        "messages: from and to leave no pair of distinct nodes",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `duration_s` in milliseconds.
    pub fn duration_ms(&self) -> SimMillis {
        self.duration_s.saturating_mul(1000)
    }

    /// The buffer size of `node` in bytes: its override, else `buffer.bytes` (`0`:
    /// unlimited).
    pub fn buffer_of(&self, node: NodeIndex) -> u64 {
        self.buffer_overrides()
            .ok()
            .and_then(|o| {
                o.into_iter()
                    .find(|(lo, hi, _)| (*lo..=*hi).contains(&node))
                    .map(|(_, _, bytes)| bytes)
            })
            .unwrap_or(self.buffer.bytes)
    }

    /// Every node's buffer size in bytes, indexed by node (cheaper than
    /// [`Scenario::buffer_of`] for every node of a large scenario).
    pub fn buffers(&self) -> Vec<u64> {
        let mut out = vec![self.buffer.bytes; self.nodes as usize];
        for (lo, hi, bytes) in self.buffer_overrides().unwrap_or_default() {
            for n in lo..=hi.min(self.nodes.saturating_sub(1)) {
                out[n as usize] = bytes;
            }
        }
        out
    }

    /// The buffer overrides as `(first, last, bytes)` ranges: keys `"N"` or `"A-B"`
    /// with `A <= B < nodes`, not overlapping.
    fn buffer_overrides(&self) -> Result<Vec<(NodeIndex, NodeIndex, u64)>, ScenarioError> {
        let mut ranges = Vec::with_capacity(self.buffer.nodes.len());
        for (key, &bytes) in &self.buffer.nodes {
            let bad = || {
                invalid(format!(
                    "buffer.nodes: key `{key}` is not a node (`7`) or a range of nodes \
                     (`120-125`)"
                ))
            };
            let node = |s: &str| {
                let s = s.trim();
                if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                s.parse::<NodeIndex>().map_err(|_| bad())
            };
            let (lo, hi) = match key.split_once('-') {
                Some((a, b)) => (node(a)?, node(b)?),
                None => {
                    let n = node(key)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(invalid(format!("buffer.nodes: range `{key}` is backwards")));
            }
            if hi >= self.nodes {
                return Err(invalid(format!(
                    "buffer.nodes: `{key}` is out of range (0..{})",
                    self.nodes
                )));
            }
            ranges.push((lo, hi, bytes));
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 <= w[0].1 {
                return Err(invalid(format!(
                    "buffer.nodes: `{}` and `{}` overlap",
                    range_key(w[0].0, w[0].1),
                    range_key(w[1].0, w[1].1)
                )));
            }
        }
        Ok(ranges)
    }

    /// The engine's routing policy: `epidemic`, `spray-and-wait` (with
    /// `spray_copies`), `prophet` (default parameters) or `direct`.
    pub fn policy_config(&self) -> Result<PolicyConfig, ScenarioError> {
        match self.routing.policy.as_str() {
            "epidemic" => Ok(PolicyConfig::Epidemic),
            "spray-and-wait" => {
                if self.routing.spray_copies == 0 {
                    return Err(invalid("routing.spray_copies must be at least 1"));
                }
                Ok(PolicyConfig::SprayAndWait {
                    copies: self.routing.spray_copies,
                })
            }
            "prophet" => Ok(PolicyConfig::Prophet(ProphetParams::default())),
            "direct" => Ok(PolicyConfig::Direct),
            other => Err(invalid(format!(
                "routing.policy `{}` is not one of epidemic, spray-and-wait, prophet, direct",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// The contact events: the trace file (relative to `base`, node indices checked
    /// against `nodes`) or the synthetic mobility of the scenario's seed.
    pub fn contacts(&self, base: &Path) -> Result<Vec<ContactEvent>, ScenarioError> {
        self.validate()?;
        match &self.contacts {
            ContactSource::Trace { path } => {
                let path = base.join(path);
                let text = read(&path)?;
                trace::parse_contacts_with(&text, &TraceLimits::with_nodes(self.nodes))
                    .map(|(events, _)| events)
                    .map_err(|source| ScenarioError::Trace { path, source })
            }
            ContactSource::RandomWaypoint { .. } => {
                let p = self
                    .contacts
                    .random_waypoint_params()
                    .ok_or_else(|| invalid("contacts: not random waypoint"))?;
                Ok(mobility::random_waypoint(
                    self.nodes,
                    &p,
                    self.duration_ms(),
                    self.seed,
                ))
            }
            ContactSource::DataMule {
                mules,
                period_s,
                dwell_s,
                travel_s,
            } => Ok(mobility::data_mule(
                self.nodes,
                mules,
                *period_s,
                *dwell_s,
                *travel_s,
                self.duration_ms(),
                self.seed,
            )),
        }
    }

    /// The message events: the trace file (relative to `base`, node indices checked
    /// against `nodes`) or the uniform workload drawn from the scenario's seed:
    /// messages `M1`, `M2`, … at `start_s`, then every `interval_s` (rounded to whole
    /// milliseconds), each between a sender of `from` and a different receiver of `to`
    /// (both uniform), size uniform in `size_min..=size_max`.
    pub fn messages(&self, base: &Path) -> Result<Vec<MessageEvent>, ScenarioError> {
        self.validate()?;
        match &self.messages {
            MessageSource::Trace { path } => {
                let path = base.join(path);
                let text = read(&path)?;
                trace::parse_messages_with(&text, &TraceLimits::with_nodes(self.nodes))
                    .map_err(|source| ScenarioError::Trace { path, source })
            }
            MessageSource::Uniform {
                count,
                start_s,
                interval_s,
                size_min,
                size_max,
                from,
                to,
            } => {
                let senders = self.senders(from, to);
                let receivers = self.node_set(to);
                let mut rng = SimRng::new(self.seed, MESSAGE_STREAM);
                let start = start_s * 1000;
                let interval = (interval_s * 1000.0).round() as u64;
                let mut out = Vec::with_capacity(*count as usize);
                for i in 0..*count {
                    let from = senders[rng.below(senders.len() as u64) as usize];
                    // A receiver other than `from`: draw among the others.
                    let own = receivers.binary_search(&from);
                    let others = receivers.len() - usize::from(own.is_ok());
                    let mut k = rng.below(others as u64) as usize;
                    if let Ok(p) = own {
                        if k >= p {
                            k += 1;
                        }
                    }
                    let size = size_min + rng.below(size_max - size_min + 1);
                    out.push(MessageEvent {
                        time: start + i * interval,
                        id: format!("M{}", i + 1),
                        from,
                        to: receivers[k],
                        size,
                    });
                }
                Ok(out)
            }
        }
    }

    /// `list` sorted and deduplicated, or every node if it is empty.
    fn node_set(&self, list: &[NodeIndex]) -> Vec<NodeIndex> {
        if list.is_empty() {
            return (0..self.nodes).collect();
        }
        let mut v = list.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The senders that have a receiver other than themselves.
    fn senders(&self, from: &[NodeIndex], to: &[NodeIndex]) -> Vec<NodeIndex> {
        let mut senders = self.node_set(from);
        let receivers = self.node_set(to);
        if let [only] = receivers[..] {
            senders.retain(|s| *s != only);
        }
        senders
    }
}

impl ContactSource {
    /// The random waypoint parameters, if this is random waypoint mobility.
    pub fn random_waypoint_params(&self) -> Option<RandomWaypointParams> {
        match *self {
            ContactSource::RandomWaypoint {
                width_m,
                height_m,
                range_m,
                speed_min,
                speed_max,
                pause_max_s,
                step_s,
            } => Some(RandomWaypointParams {
                width_m,
                height_m,
                range_m,
                speed_min,
                speed_max,
                pause_max_s,
                step_s,
            }),
            _ => None,
        }
    }
}

fn range_key(lo: NodeIndex, hi: NodeIndex) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn read(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
nodes = 5
duration_s = 100
lifetime_s = 60
[link]
bitrate_bytes = 10000
[buffer]
bytes = 500
[routing]
policy = "epidemic"
[contacts]
kind = "trace"
path = "c.txt"
[messages]
kind = "trace"
path = "m.txt"
"#;

    fn with(extra: &str, replace: (&str, &str)) -> String {
        MINIMAL.replace(replace.0, replace.1) + extra
    }

    fn invalid_msg(text: &str) -> String {
        match Scenario::parse(text) {
            Err(ScenarioError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}\n{text}"),
        }
    }

    /// The message without its `line N: ` prefix.
    fn field_msg(m: &str) -> &str {
        m.split_once(": ")
            .filter(|(l, _)| l.starts_with("line "))
            .map_or(m, |(_, rest)| rest)
    }

    fn scenarios_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
    }

    #[test]
    fn minimal_scenario_has_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(s.seed, 0);
        assert_eq!(s.routing.spray_copies, 8);
        assert_eq!(s.routing.hop_limit, ferry_core::DEFAULT_HOP_LIMIT);
        assert_eq!(s.buffer.policy, BufferPolicy::Refuse);
        assert_eq!(s.report.occupancy_interval_s, 600);
        assert_eq!(s.duration_ms(), 100_000);
        assert!(matches!(s.policy_config(), Ok(PolicyConfig::Epidemic)));
        // Serialising and parsing again gives the same scenario.
        let again = Scenario::parse(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn syntax_errors_carry_their_line() {
        let text = MINIMAL.replace("bytes = 500", "bytes = \"lots\"");
        let e = Scenario::parse(&text).unwrap_err().to_string();
        assert!(e.ends_with("(line 9)"), "{e}");
        let e = Scenario::parse(&with("colour = \"red\"\n", ("", ""))).unwrap_err();
        assert!(matches!(e, ScenarioError::Syntax(_)), "{e}");
        let e = Scenario::parse(
            &MINIMAL.replace("kind = \"trace\"\npath = \"c.txt\"", "kind = \"teleport\""),
        )
        .unwrap_err()
        .to_string();
        // The line of the `[contacts]` table (toml points at the table for a bad tag).
        assert!(e.contains("teleport") && e.contains("(line 13)"), "{e}");
        let e = Scenario::parse("nodes = [").unwrap_err().to_string();
        assert!(e.contains("(line 1)"), "{e}");
        let big = "#".repeat(MAX_SCENARIO_BYTES + 1);
        assert!(matches!(
            Scenario::parse(&big),
            Err(ScenarioError::TooLarge(_))
        ));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let cases: &[(&str, &str, &str)] = &[
            ("nodes = 5", "nodes = 1", "nodes must be between 2"),
            ("duration_s = 100", "duration_s = 0", "duration_s must be"),
            ("lifetime_s = 60", "lifetime_s = 0", "lifetime_s must be"),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 0",
                "link.bitrate_bytes",
            ),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 10000\nloss = 1.0",
                "link.loss",
            ),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 10000\nloss = -0.1",
                "link.loss",
            ),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 10000\nloss = nan",
                "link.loss",
            ),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 10000\nduty_cycle = 0.0",
                "link.duty_cycle",
            ),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 10000\nduty_cycle = 1.5",
                "link.duty_cycle",
            ),
            (
                "bitrate_bytes = 10000",
                "bitrate_bytes = 10000\nmtu = 0",
                "link.mtu",
            ),
            (
                "policy = \"epidemic\"",
                "policy = \"flooding\"",
                "routing.policy `flooding`",
            ),
            (
                "policy = \"epidemic\"",
                "policy = \"spray-and-wait\"\nspray_copies = 0",
                "routing.spray_copies",
            ),
            (
                "policy = \"epidemic\"",
                "policy = \"direct\"\nhop_limit = 0",
                "routing.hop_limit",
            ),
            ("path = \"c.txt\"", "path = \"\"", "contacts.path"),
            (
                "bytes = 500",
                "bytes = 500\nnodes = { \"5\" = 1 }",
                "`5` is out of range",
            ),
            (
                "bytes = 500",
                "bytes = 500\nnodes = { \"3-1\" = 1 }",
                "`3-1` is backwards",
            ),
            (
                "bytes = 500",
                "bytes = 500\nnodes = { \"x\" = 1 }",
                "key `x` is not a node",
            ),
            (
                "bytes = 500",
                "bytes = 500\nnodes = { \"-1\" = 1 }",
                "key `-1` is not a node",
            ),
            (
                "bytes = 500",
                "bytes = 500\nnodes = { \"1-\" = 1 }",
                "key `1-` is not a node",
            ),
            (
                "bytes = 500",
                "bytes = 500\nnodes = { \"0-2\" = 1, \"2\" = 5 }",
                "`0-2` and `2` overlap",
            ),
        ];
        for (from, to, want) in cases {
            let got = invalid_msg(&MINIMAL.replacen(from, to, 1));
            assert!(got.contains(want), "{to}: {got}");
        }
    }

    fn synthetic(contacts: &str, messages: &str) -> String {
        let base = MINIMAL.split("[contacts]").next().unwrap_or_default();
        format!("{base}[contacts]\n{contacts}\n[messages]\n{messages}\n")
    }

    const RWP: &str = "kind = \"random-waypoint\"\nwidth_m = 100.0\nheight_m = 100.0\n\
                       range_m = 20.0\nspeed_min = 1.0\nspeed_max = 2.0";
    const MULE: &str = "kind = \"data-mule\"\nmules = [4]\nperiod_s = 50\ndwell_s = 5\n\
                        travel_s = 5";
    const UNIFORM: &str = "kind = \"uniform\"\ncount = 50\ninterval_s = 1.5\nsize_min = 10\n\
                           size_max = 20";

    #[test]
    fn synthetic_sources_are_checked() {
        let cases: &[(&str, &str, &str)] = &[
            (RWP, "speed_min = 1.0", "speed_min = 0.0"),
            (RWP, "speed_max = 2.0", "speed_max = 0.5"),
            (RWP, "range_m = 20.0", "range_m = inf"),
            (RWP, "width_m = 100.0", "width_m = -1.0"),
            (
                RWP,
                "speed_max = 2.0",
                "speed_max = 2.0\npause_max_s = -1.0",
            ),
            (RWP, "speed_max = 2.0", "speed_max = 2.0\nstep_s = 0.0001"),
            (MULE, "mules = [4]", "mules = []"),
            (MULE, "mules = [4]", "mules = [5]"),
            (MULE, "mules = [4]", "mules = [4, 4]"),
            (MULE, "mules = [4]", "mules = [0, 1, 2, 3, 4]"),
            (MULE, "period_s = 50", "period_s = 0"),
            (MULE, "dwell_s = 5", "dwell_s = 0"),
        ];
        for (source, from, to) in cases {
            let text = synthetic(&source.replace(from, to), UNIFORM);
            let got = invalid_msg(&text);
            assert!(field_msg(&got).starts_with("contacts"), "{to}: {got}");
        }
        let cases: &[(&str, &str)] = &[
            ("size_min = 10", "size_min = 30"),
            ("size_min = 10", "size_min = 0"),
            ("size_max = 20", "size_max = 2000000000000"),
            ("interval_s = 1.5", "interval_s = -1.0"),
            ("interval_s = 1.5", "interval_s = nan"),
            ("count = 50", "count = 100000000"),
            (
                "count = 50\ninterval_s = 1.5",
                "count = 10000000\ninterval_s = 1000.0",
            ),
            ("size_max = 20", "size_max = 20\nfrom = [5]"),
            ("size_max = 20", "size_max = 20\nto = [9]"),
            ("size_max = 20", "size_max = 20\nfrom = [2]\nto = [2, 2]"),
        ];
        for (from, to) in cases {
            let text = synthetic(RWP, &UNIFORM.replacen(from, to, 1));
            let got = invalid_msg(&text);
            assert!(field_msg(&got).starts_with("messages"), "{to}: {got}");
        }
    }

    #[test]
    fn buffers_take_their_overrides() {
        let text = MINIMAL.replace(
            "bytes = 500",
            "bytes = 500\nnodes = { \"1-2\" = 7, \"4\" = 9 }",
        );
        let s = Scenario::parse(&text).unwrap();
        let got: Vec<u64> = (0..5).map(|n| s.buffer_of(n)).collect();
        assert_eq!(got, [500, 7, 7, 500, 9]);
        assert_eq!(s.buffers(), got);
    }

    #[test]
    fn policies_map_to_the_engine() {
        let policy = |p: &str| {
            Scenario::parse(&MINIMAL.replace("policy = \"epidemic\"", p))
                .unwrap()
                .policy_config()
                .unwrap()
        };
        assert!(matches!(
            policy("policy = \"spray-and-wait\"\nspray_copies = 3"),
            PolicyConfig::SprayAndWait { copies: 3 }
        ));
        assert!(matches!(
            policy("policy = \"prophet\""),
            PolicyConfig::Prophet(_)
        ));
        assert!(matches!(
            policy("policy = \"direct\""),
            PolicyConfig::Direct
        ));
    }

    #[test]
    fn uniform_messages_are_seeded_and_within_bounds() {
        let text = synthetic(MULE, &format!("{UNIFORM}\nstart_s = 10\nto = [3]"));
        let s = Scenario::parse(&text).unwrap();
        let m = s.messages(Path::new(".")).unwrap();
        assert_eq!(m, s.messages(Path::new(".")).unwrap());
        assert_eq!(m.len(), 50);
        assert_eq!(m[0].id, "M1");
        assert_eq!(m[49].id, "M50");
        assert_eq!(m[0].time, 10_000);
        assert_eq!(m[1].time, 11_500);
        for msg in &m {
            assert!(msg.from != msg.to && msg.to == 3 && msg.from < 5, "{msg:?}");
            assert!((10..=20).contains(&msg.size));
        }
        let mut other = s.clone();
        other.seed = 1;
        assert_ne!(other.messages(Path::new(".")).unwrap(), m);
        // Both ends drawn from all nodes: every sender and receiver shows up.
        let s = Scenario::parse(&synthetic(
            MULE,
            &UNIFORM.replace("count = 50", "count = 500"),
        ))
        .unwrap();
        let m = s.messages(Path::new(".")).unwrap();
        for n in 0..5 {
            assert!(m.iter().any(|x| x.from == n) && m.iter().any(|x| x.to == n));
        }
        assert!(m.iter().all(|x| x.from != x.to));
    }

    #[test]
    fn synthetic_contacts_follow_the_seed() {
        let s = Scenario::parse(&synthetic(RWP, UNIFORM)).unwrap();
        let c = s.contacts(Path::new(".")).unwrap();
        assert!(!c.is_empty());
        assert_eq!(c, s.contacts(Path::new(".")).unwrap());
        let s = Scenario::parse(&synthetic(MULE, UNIFORM)).unwrap();
        let c = s.contacts(Path::new(".")).unwrap();
        // Two rounds of 4 sites in 100 s.
        assert_eq!(c.len(), 16);
    }

    #[test]
    fn trace_paths_are_relative_to_the_scenario_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        std::fs::write(dir.path().join("c.txt"), "0 CONN 0 4 up\n5 CONN 0 4 down\n").unwrap();
        std::fs::write(dir.path().join("m.txt"), "1 C M1 0 4 10\n2 C M2 4 0 10\n").unwrap();
        let (s, base) = Scenario::load(&path).unwrap();
        assert_eq!(base, dir.path());
        assert_eq!(s.contacts(&base).unwrap().len(), 2);
        assert_eq!(s.messages(&base).unwrap().len(), 2);
        // Node 5 is beyond `nodes = 5`: the error names the file and the line.
        std::fs::write(dir.path().join("c.txt"), "0 CONN 0 4 up\n5 CONN 0 5 up\n").unwrap();
        let e = s.contacts(&base).unwrap_err().to_string();
        assert!(
            e.ends_with("c.txt: line 2: node 5 is out of range (the scenario has 5 nodes: 0..5)"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("m.txt")).unwrap();
        assert!(matches!(s.messages(&base), Err(ScenarioError::Io { .. })));
        assert!(matches!(
            Scenario::load(&dir.path().join("missing.toml")),
            Err(ScenarioError::Io { .. })
        ));
        // A bare file name has the current directory as its base.
        assert_eq!(
            Scenario::load(Path::new("no-such-scenario.toml"))
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "no-such-scenario.toml: No such file or directory (os error 2)"
        );
    }

    fn shared_traces_present() -> bool {
        scenarios_dir()
            .join("../../../shared/traces/helsinki-126/contacts.txt")
            .exists()
    }

    #[test]
    fn helsinki_scenario_resolves_its_trace() {
        let (s, base) = Scenario::load(&scenarios_dir().join("helsinki-126.toml")).unwrap();
        assert_eq!(s.nodes, 126);
        assert_eq!(s.buffer_of(0), 5_000_000);
        assert_eq!(s.buffer_of(119), 5_000_000);
        assert_eq!(s.buffer_of(120), 50_000_000);
        assert_eq!(s.buffer_of(125), 50_000_000);
        assert_eq!(s.buffer.policy, BufferPolicy::DropOldest);
        assert_eq!(s.lifetime_s, 300 * 60);
        if !shared_traces_present() {
            return;
        }
        let c = s.contacts(&base).unwrap();
        assert_eq!(c.iter().filter(|e| e.up).count(), 30_870);
        assert_eq!(c.iter().filter(|e| !e.up).count(), 30_866);
        assert_eq!(s.messages(&base).unwrap().len(), 1_463);
    }

    #[test]
    fn village_mule_scenario_resolves() {
        let (s, base) = Scenario::load(&scenarios_dir().join("village-mule.toml")).unwrap();
        let c = s.contacts(&base).unwrap();
        // 7 daily rounds of 20 villages.
        assert_eq!(c.len(), 280);
        assert!(c.iter().all(|e| e.b == 20 && e.a < 20));
        let m = s.messages(&base).unwrap();
        assert_eq!(m.len(), 2_000);
        assert!(m.iter().all(|x| x.from < 20 && x.to < 20 && x.from != x.to));
        assert!(matches!(
            s.policy_config(),
            Ok(PolicyConfig::SprayAndWait { copies: 4 })
        ));
    }

    /// About a million contact events and 100,000 messages: ~5 s in the test profile,
    /// ~2.5 s in release.
    #[test]
    fn city_scenario_resolves() {
        let (s, base) = Scenario::load(&scenarios_dir().join("city-1000.toml")).unwrap();
        let c = s.contacts(&base).unwrap();
        // The count documented in city-1000.toml: a change here changes the scenario.
        assert_eq!(c.len(), 1_001_272);
        assert_eq!(c.iter().filter(|e| e.up).count() * 2, c.len());
        let m = s.messages(&base).unwrap();
        assert_eq!(m.len(), 100_000);
    }

    #[test]
    fn validation_errors_name_the_line_of_the_field() {
        // MINIMAL starts with a newline: `bitrate_bytes` is on line 7, `lifetime_s` on 5.
        let m = invalid_msg(&with("", ("bitrate_bytes = 10000", "bitrate_bytes = 0")));
        assert!(m.starts_with("line 7: link.bitrate_bytes"), "{m}");
        let m = invalid_msg(&with("", ("lifetime_s = 60", "lifetime_s = 0")));
        assert!(m.starts_with("line 5: lifetime_s"), "{m}");
        // A rule about a missing field keeps its message as it is.
        assert_eq!(
            with_line("nodes = 3\n", "link.mtu must be at least 1"),
            "link.mtu must be at least 1"
        );
    }

    #[test]
    fn city_scenarios_parse() {
        for name in ["city-1000.toml", "city-1000-wifi.toml"] {
            let (s, _) = Scenario::load(&scenarios_dir().join(name)).unwrap();
            assert_eq!(s.nodes, 1000, "{name}");
            assert!(s.contacts.random_waypoint_params().is_some(), "{name}");
        }
        // The same city: the Wi-Fi variant changes the link, buffers and sizes only.
        let (a, _) = Scenario::load(&scenarios_dir().join("city-1000.toml")).unwrap();
        let (b, _) = Scenario::load(&scenarios_dir().join("city-1000-wifi.toml")).unwrap();
        assert_eq!(a.contacts, b.contacts);
        assert_eq!((a.seed, a.duration_s), (b.seed, b.duration_s));
    }
}
