//! Keeping a connection to a dialed peer up: reconnect with exponential backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::NodeId;
use rand_core::{OsRng, RngCore};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::error::ConnectError;
use crate::link::{connect_once, Dial, Inner};

/// Starts (or restarts, with a new address) the reconnect task for `peer`.
pub(crate) fn dial(inner: &Arc<Inner>, peer: NodeId, addr: String) {
    if peer == inner.node_id || inner.cancel.is_cancelled() {
        return;
    }
    let token = inner.cancel.child_token();
    let kick = Arc::new(Notify::new());
    let old = inner.state().dials.insert(
        peer,
        Dial {
            token: token.clone(),
            kick: kick.clone(),
        },
    );
    if let Some(old) = old {
        old.token.cancel();
    }
    let span = tracing::info_span!("dial", peer = %peer.short());
    inner
        .tasks
        .spawn(run(inner.clone(), peer, addr, token, kick).instrument(span));
}

/// Stops the reconnect task for `peer` (an existing link stays up).
pub(crate) fn undial(inner: &Inner, peer: &NodeId) {
    if let Some(d) = inner.state().dials.remove(peer) {
        d.token.cancel();
    }
}

/// Wakes the reconnect task of `peer` early (a beacon says it is back).
pub(crate) fn kick(inner: &Inner, peer: &NodeId) {
    if let Some(d) = inner.state().dials.get(peer) {
        d.kick.notify_one();
    }
}

/// Resolves `host:port`, keeping addresses the endpoint's socket can reach.
async fn resolve(addr: &str, local: SocketAddr) -> Result<SocketAddr, ConnectError> {
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ConnectError::Address(e.to_string()))?;
    let mut first = None;
    for a in addrs {
        // An IPv4 socket reaches IPv4 only; an IPv6 socket is usually dual-stack.
        if local.is_ipv6() || a.is_ipv4() {
            first = Some(a);
            break;
        }
    }
    first.ok_or_else(|| ConnectError::Address("no usable address".into()))
}

/// A random wait between half and one and a half times `d`.
fn jitter(d: Duration) -> Duration {
    let r = f64::from(OsRng.next_u32()) / f64::from(u32::MAX);
    d.mul_f64(0.5 + r)
}

async fn run(
    inner: Arc<Inner>,
    peer: NodeId,
    addr: String,
    token: CancellationToken,
    kick: Arc<Notify>,
) {
    let policy = inner.cfg.reconnect;
    let mut backoff = policy.initial;
    let mut changed = inner.changed.subscribe();
    loop {
        // Wait while a link (or an attempt) with the peer exists, in either direction.
        while inner.is_connected(&peer) {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = token.cancelled() => return,
            }
        }
        let attempt = async {
            let target = resolve(&addr, inner.local_addr).await?;
            debug!(%target, "dialing");
            connect_once(&inner, peer, target).await
        };
        let outcome = tokio::select! {
            r = attempt => r,
            _ = token.cancelled() => return,
        };
        match outcome {
            Ok(link) => {
                let stable = tokio::select! {
                    _ = link.down.cancelled() => false,
                    _ = tokio::time::sleep(policy.stable_after) => true,
                    _ = token.cancelled() => return,
                };
                if stable {
                    backoff = policy.initial;
                    tokio::select! {
                        _ = link.down.cancelled() => {}
                        _ = token.cancelled() => return,
                    }
                }
            }
            // Another connection with the peer exists or is being set up: not a
            // failure; the loop waits for it to go away.
            Err(ConnectError::Duplicate) => {
                backoff = policy.initial;
            }
            Err(ConnectError::ShuttingDown) => return,
            Err(e) => {
                info!(error = %e, "dial failed");
            }
        }
        let wait = jitter(backoff).min(policy.max);
        backoff = (backoff * 2).min(policy.max);
        debug!(?wait, "reconnecting after");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = kick.notified() => debug!("woken early by a beacon"),
            _ = token.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let d = Duration::from_secs(2);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(3),
                "{j:?}"
            );
        }
    }
}
