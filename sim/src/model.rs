//! The types every part of the simulator shares: time, events, the link model.

use serde::{Deserialize, Serialize};

/// Simulated time in milliseconds since the start of the run.
pub type SimMillis = u64;

/// A node index, `0..n` (The ONE's host address).
pub type NodeIndex = u32;

/// A contact starts or ends between two nodes (`a < b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEvent {
    /// When.
    pub time: SimMillis,
    /// The lower node index.
    pub a: NodeIndex,
    /// The higher node index.
    pub b: NodeIndex,
    /// `true` for up, `false` for down.
    pub up: bool,
}

/// An application message is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEvent {
    /// When.
    pub time: SimMillis,
    /// The workload's id for it (e.g. `M12`).
    pub id: String,
    /// Source node.
    pub from: NodeIndex,
    /// Destination node.
    pub to: NodeIndex,
    /// Payload size in bytes (modelled: the simulator does not allocate it).
    pub size: u64,
}

/// What happens to a node's buffer when a new bundle does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BufferPolicy {
    /// Ferry's behaviour: the new bundle is refused ("store full"); nothing held is
    /// dropped.
    #[default]
    Refuse,
    /// The ONE's default: the oldest bundles are dropped until it fits.
    DropOldest,
}

/// A link model, the same for every contact of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkModel {
    /// Bytes per second each way.
    pub bitrate_bytes: u64,
    /// One-way latency in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Probability that one transmission attempt is lost (it is then sent again).
    #[serde(default)]
    pub loss: f64,
    /// Largest frame in bytes (`None`: a stream).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Fraction of time a node may transmit (`None`: no limit).
    #[serde(default)]
    pub duty_cycle: Option<f64>,
    /// Each node sends one bundle at a time over all its links (The ONE's model).
    #[serde(default)]
    pub one_transfer_per_node: bool,
}
