//! Errors, one enum per operation.

use std::io;
use std::net::SocketAddr;

use ferry_cl_api::LinkId;
use ferry_core::NodeId;

/// Why [`QuicLink::bind`](crate::QuicLink::bind) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// A configuration value is out of range.
    #[error("invalid QUIC link configuration: {0}")]
    Config(&'static str),
    /// A node needs 1 to [`MAX_REALMS`](crate::MAX_REALMS) realms to admit peers.
    #[error("a QUIC link needs 1 to {max} realms, got {0}", max = crate::MAX_REALMS)]
    Realms(usize),
    /// The UDP socket could not be bound.
    #[error("cannot bind QUIC socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// The discovery socket could not be set up.
    #[error("cannot bind discovery socket {addr}: {source}")]
    Discovery {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// Building the TLS configuration failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Building the node certificate failed.
    #[error("node certificate: {0}")]
    Certificate(String),
}

/// Why a frame or bundle was not accepted for sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The link is not up (never was, or went down).
    #[error("{0} is not up")]
    UnknownLink(LinkId),
    /// Larger than the peer accepts (its advertised maximum, carried in the `Up`
    /// event's [`LinkCaps`](ferry_cl_api::LinkCaps)).
    #[error("{len} bytes is more than the {max} bytes the peer accepts")]
    TooLarge {
        /// Size of what was offered.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// Why a connection attempt ([`QuicLink::connect`](crate::QuicLink::connect)) did not
/// produce a link. Failed attempts produce no [`LinkEvent`](ferry_cl_api::LinkEvent):
/// the router never saw a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A node does not connect to itself.
    #[error("refusing to connect to this node's own id")]
    SelfDial,
    /// The link is shutting down.
    #[error("the QUIC link is shutting down")]
    ShuttingDown,
    /// The address could not be resolved or used.
    #[error("bad peer address: {0}")]
    Address(String),
    /// The peer presented another node's certificate than the one dialed.
    #[error("expected node {expected:?} but the peer is {presented:?}")]
    WrongPeer {
        /// The node dialed.
        expected: NodeId,
        /// The node that answered.
        presented: NodeId,
    },
    /// The QUIC or TLS handshake failed (bad certificate, bad handshake signature,
    /// unreachable peer, ...).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// No answer within the handshake timeout.
    #[error("timed out")]
    TimedOut,
    /// The peer shares no realm with this node (decided by either side).
    #[error("peer refused: foreign realm")]
    ForeignRealm,
    /// The peer broke the admission protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Another connection with this peer is kept instead, or an attempt to it is
    /// already under way (one connection per pair of nodes).
    #[error("another connection with this peer is kept or being set up")]
    Duplicate,
    /// The peer closed the connection during admission.
    #[error("closed by peer: {0}")]
    Closed(String),
}
