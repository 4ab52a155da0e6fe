//! # ferry-cl-api
//!
//! The contract between links (convergence layers) and the router. A link is described
//! by its [`LinkCaps`], not by its kind, so the router treats a QUIC connection, a
//! serial cable, a LoRa channel or a USB drive alike (smoltcp's `DeviceCapabilities`).
//! A link carries two things for the router: small control **frames** (the router's
//! link protocol: summaries, offers, acknowledgments) and whole **bundles**, each with a
//! transfer id the router chose. Links never depend on the router.
//!
//! ```
//! use ferry_cl_api::{LinkCaps, LinkId};
//! let caps = LinkCaps::ip_stream();
//! assert!(caps.reliable && !caps.broadcast);
//! assert_eq!(LinkId(7).to_string(), "link-7");
//! ```
#![forbid(unsafe_code)]

use std::fmt;

use ferry_core::NodeId;
use serde::{Deserialize, Serialize};

/// A link instance (one contact with one peer, or one shared medium), unique within a
/// node's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link-{}", self.0)
    }
}

/// A bundle transfer on a link, chosen by the router and echoed by the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferId(pub u64);

/// What a link can do; the router plans with these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkCaps {
    /// Largest frame the link carries in one piece (`None`: a byte stream, any size).
    pub mtu: Option<u32>,
    /// Whether the link itself retransmits until delivery.
    pub reliable: bool,
    /// Nominal bitrate in bits per second, if known.
    pub bitrate_bps: Option<u64>,
    /// Fraction of time the node may transmit (e.g. 0.01 for a 1% duty cycle).
    pub duty_cycle: Option<f64>,
    /// One transmission reaches every neighbour in range.
    pub broadcast: bool,
    /// Links that share one transmission medium (the neighbours of one radio) carry
    /// the same value, so the router can send a bundle several of them want once.
    #[serde(default)]
    pub medium: Option<u64>,
    /// Largest bundle this link accepts, in bytes.
    pub max_bundle_bytes: u64,
    /// Most bundle transfers the router should have in flight at once on this link.
    pub max_in_flight: u32,
}

impl LinkCaps {
    /// A reliable, unicast, high-rate IP stream link (QUIC).
    pub fn ip_stream() -> Self {
        Self {
            mtu: None,
            reliable: true,
            bitrate_bps: None,
            duty_cycle: None,
            broadcast: false,
            medium: None,
            max_bundle_bytes: ferry_core::DEFAULT_MAX_BUNDLE_BYTES as u64,
            max_in_flight: 64,
        }
    }
}

/// Why a link went down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownReason {
    /// The peer or this node closed it.
    Closed,
    /// Nothing heard for the idle timeout.
    Timeout,
    /// The peer failed authentication or belongs to another realm.
    Refused(String),
    /// Any other transport error.
    Error(String),
}

/// What a link reports to the node.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// A contact began with an authenticated peer.
    Up {
        /// The link.
        link: LinkId,
        /// The peer, authenticated by the link.
        peer: NodeId,
        /// What the link can do.
        caps: LinkCaps,
    },
    /// The contact ended.
    Down {
        /// The link.
        link: LinkId,
        /// Why.
        reason: DownReason,
    },
    /// A control frame from the peer.
    Frame {
        /// The link.
        link: LinkId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A whole bundle from the peer.
    Bundle {
        /// The link.
        link: LinkId,
        /// The sender's transfer id.
        transfer: TransferId,
        /// The encoded bundle.
        bytes: Vec<u8>,
    },
    /// A bundle this node sent left the link completely (not yet acknowledged by the
    /// peer's router: custody acknowledgments are router frames).
    Sent {
        /// The link.
        link: LinkId,
        /// The transfer.
        transfer: TransferId,
    },
    /// A bundle transfer failed; the router may retry it later.
    SendFailed {
        /// The link.
        link: LinkId,
        /// The transfer.
        transfer: TransferId,
    },
}
