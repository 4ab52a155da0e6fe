//! Realm admission: the first message each side sends on the control stream.
//!
//! ```text
//! hello = version (1) | max_frame u32 LE | max_bundle u64 LE | max_in_flight u32 LE
//!       | n u8 (1..=16) | n × proof (32)
//! proof = Realm::link_proof(exporter (32) | client id (32) | server id (32) | role (1))
//! ```
//!
//! `exporter` is 32 bytes of TLS exporter keying material (label
//! `ferry realm proof v1`), so a proof is bound to this one TLS session and both node
//! ids and cannot be replayed on another connection; `role` is 0 for the dialer's
//! proofs and 1 for the listener's, so one side's proofs cannot be reflected back. A
//! peer is admitted if one of its proofs equals the proof one of our realms gives for
//! its role. Realm secrets never leave the node, and the proofs tell an outsider
//! nothing about which realm they are for.

use ferry_core::{NodeId, Realm};

/// Version of the hello message.
pub(crate) const HELLO_VERSION: u8 = 1;
/// Most realm proofs a hello carries (and most realms a node may have).
pub const MAX_REALMS: usize = 16;
/// TLS exporter label for realm proofs.
pub(crate) const EXPORTER_LABEL: &[u8] = b"ferry realm proof v1";
/// Bytes before the proofs.
pub(crate) const HELLO_HEADER: usize = 1 + 4 + 8 + 4 + 1;
/// Smallest frame limit a peer may announce.
pub(crate) const MIN_FRAME_LIMIT: u32 = 64;

/// Which end of the connection a proof is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The dialer (TLS client).
    Client = 0,
    /// The listener (TLS server).
    Server = 1,
}

impl Role {
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// What a hello failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloError {
    Version,
    Limits,
    RealmCount,
}

impl HelloError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Version => "unknown hello version",
            Self::Limits => "hello announces unusable limits",
            Self::RealmCount => "hello carries 0 or more than 16 realm proofs",
        }
    }
}

/// The admission message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Largest control frame the sender accepts.
    pub max_frame: u32,
    /// Largest bundle the sender accepts.
    pub max_bundle: u64,
    /// Most bundle streams the sender accepts at once.
    pub max_in_flight: u32,
    /// One proof per realm of the sender.
    pub proofs: Vec<[u8; 32]>,
}

/// Header fields, parsed before the proofs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HelloHeader {
    pub max_frame: u32,
    pub max_bundle: u64,
    pub max_in_flight: u32,
    pub proofs: usize,
}

impl HelloHeader {
    pub(crate) fn parse(b: &[u8; HELLO_HEADER]) -> Result<Self, HelloError> {
        if b[0] != HELLO_VERSION {
            return Err(HelloError::Version);
        }
        let max_frame = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        let max_bundle = u64::from_le_bytes([b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]]);
        let max_in_flight = u32::from_le_bytes([b[13], b[14], b[15], b[16]]);
        let proofs = usize::from(b[17]);
        if max_frame < MIN_FRAME_LIMIT || max_bundle == 0 || max_in_flight == 0 {
            return Err(HelloError::Limits);
        }
        if proofs == 0 || proofs > MAX_REALMS {
            return Err(HelloError::RealmCount);
        }
        Ok(Self {
            max_frame,
            max_bundle,
            max_in_flight,
            proofs,
        })
    }
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_HEADER + 32 * self.proofs.len());
        out.push(HELLO_VERSION);
        out.extend_from_slice(&self.max_frame.to_le_bytes());
        out.extend_from_slice(&self.max_bundle.to_le_bytes());
        out.extend_from_slice(&self.max_in_flight.to_le_bytes());
        // Callers hold at most MAX_REALMS realms (checked at bind).
        out.push(u8::try_from(self.proofs.len()).unwrap_or(u8::MAX));
        for p in &self.proofs {
            out.extend_from_slice(p);
        }
        out
    }

    pub(crate) fn from_parts(h: HelloHeader, body: &[u8]) -> Self {
        let proofs = body
            .chunks_exact(32)
            .take(h.proofs)
            .map(|c| {
                let mut p = [0u8; 32];
                p.copy_from_slice(c);
                p
            })
            .collect();
        Self {
            max_frame: h.max_frame,
            max_bundle: h.max_bundle,
            max_in_flight: h.max_in_flight,
            proofs,
        }
    }
}

/// The context a realm proof of `role` covers.
pub(crate) fn proof_context(
    exporter: &[u8; 32],
    client: &NodeId,
    server: &NodeId,
    role: Role,
) -> [u8; 97] {
    let mut ctx = [0u8; 97];
    ctx[..32].copy_from_slice(exporter);
    ctx[32..64].copy_from_slice(client.as_bytes());
    ctx[64..96].copy_from_slice(server.as_bytes());
    ctx[96] = role as u8;
    ctx
}

/// This node's proofs, one per realm.
pub(crate) fn own_proofs(realms: &[Realm], ctx: &[u8]) -> Vec<[u8; 32]> {
    realms.iter().map(|r| r.link_proof(ctx)).collect()
}

/// Constant-time equality of two proofs.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether one of `theirs` is a proof one of `realms` gives for `ctx`.
pub(crate) fn shares_realm(realms: &[Realm], ctx: &[u8], theirs: &[[u8; 32]]) -> bool {
    let mut found = false;
    for r in realms {
        let mine = r.link_proof(ctx);
        for t in theirs {
            found |= ct_eq(&mine, t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        ferry_core::Identity::from_seed([n; 32]).node_id()
    }

    #[test]
    fn hello_round_trip_and_bounds() {
        let h = Hello {
            max_frame: 1 << 20,
            max_bundle: 5,
            max_in_flight: 3,
            proofs: vec![[1; 32], [2; 32]],
        };
        let enc = h.encode();
        let head: [u8; HELLO_HEADER] = enc[..HELLO_HEADER].try_into().unwrap();
        let parsed = HelloHeader::parse(&head).unwrap();
        assert_eq!(parsed.proofs, 2);
        assert_eq!(Hello::from_parts(parsed, &enc[HELLO_HEADER..]), h);

        let mut bad = head;
        bad[0] = 2;
        assert_eq!(HelloHeader::parse(&bad), Err(HelloError::Version));
        let mut bad = head;
        bad[17] = 0;
        assert_eq!(HelloHeader::parse(&bad), Err(HelloError::RealmCount));
        bad[17] = 17;
        assert_eq!(HelloHeader::parse(&bad), Err(HelloError::RealmCount));
        let mut bad = head;
        bad[1..5].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(HelloHeader::parse(&bad), Err(HelloError::Limits));
    }

    #[test]
    fn proofs_bind_realm_session_ids_and_role() {
        let valley = Realm::new("valley", [1; 32]).unwrap();
        let other = Realm::new("valley", [2; 32]).unwrap();
        let (a, b) = (id(1), id(2));
        let ex = [9u8; 32];
        let c_ctx = proof_context(&ex, &a, &b, Role::Client);
        let s_ctx = proof_context(&ex, &a, &b, Role::Server);
        let theirs = own_proofs(std::slice::from_ref(&valley), &c_ctx);
        assert!(shares_realm(std::slice::from_ref(&valley), &c_ctx, &theirs));
        assert!(shares_realm(
            &[other.clone(), valley.clone()],
            &c_ctx,
            &theirs
        ));
        assert!(!shares_realm(std::slice::from_ref(&other), &c_ctx, &theirs));
        // Reflected (wrong role), other session, swapped ids: refused.
        assert!(!shares_realm(
            std::slice::from_ref(&valley),
            &s_ctx,
            &theirs
        ));
        let ctx2 = proof_context(&[8; 32], &a, &b, Role::Client);
        assert!(!shares_realm(std::slice::from_ref(&valley), &ctx2, &theirs));
        let ctx3 = proof_context(&ex, &b, &a, Role::Client);
        assert!(!shares_realm(std::slice::from_ref(&valley), &ctx3, &theirs));
        assert_eq!(Role::Client.other(), Role::Server);
    }
}
