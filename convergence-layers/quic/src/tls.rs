//! TLS 1.3 with node-id certificates: each node presents a self-signed Ed25519
//! certificate whose key is its identity key, and each side accepts exactly that kind
//! of certificate and nothing else (no CA, no names, no validity dates).
//!
//! - The **dialer** knows which node it wants and refuses any other key
//!   ([`ServerVerifier`]); presenting node X's id needs X's secret, because rustls
//!   checks the handshake signature (`CertificateVerify`) against the certificate key.
//! - The **listener** requires a client certificate of the same kind
//!   ([`ClientVerifier`]) and learns the client's node id from it.
//!
//! Ed25519 is the only signature scheme offered or accepted, TLS 1.2 is off, and the
//! ALPN is `ferry/1`. Certificates carry no meaningful dates and dates are not checked:
//! field nodes may have no real-time clock.

use std::sync::{Arc, Mutex, PoisonError};

use ferry_core::{Identity, NodeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, PeerMisbehaved,
    SignatureScheme,
};
use x509_parser::oid_registry::OID_SIG_ED25519;
use zeroize::Zeroizing;

use crate::error::QuicError;

/// The ALPN protocol id of Ferry's QUIC link.
pub const ALPN: &[u8] = b"ferry/1";

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The rustls provider: ring, TLS 1.3 cipher suites and key exchange groups as rustls
/// ships them.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// This node's certificate and signing key, checked to match.
pub(crate) fn certified_key(identity: &Identity) -> Result<Arc<CertifiedKey>, QuicError> {
    let cert = self_signed_cert(identity)?;
    let key = signing_key(identity)?;
    let certified = CertifiedKey::new(vec![cert], key);
    certified
        .keys_match()
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    Ok(Arc::new(certified))
}

fn pkcs8(identity: &Identity) -> Zeroizing<Vec<u8>> {
    let seed = identity.seed();
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    der.extend_from_slice(seed.as_ref());
    der
}

/// The rustls signing key of an identity (Ed25519 through ring).
pub(crate) fn signing_key(
    identity: &Identity,
) -> Result<Arc<dyn rustls::sign::SigningKey>, QuicError> {
    let der = pkcs8(identity);
    rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(der.as_slice()))
        .map_err(|e| QuicError::Tls(e.to_string()))
}

/// The QUIC endpoint configuration, with keys derived from the identity: the
/// stateless-reset key and the connection-id checksum key. A node restarted on the
/// same address then recognises the connection ids its previous run issued and
/// resets those connections with tokens the peer accepts: the peer learns at its next
/// packet (a keep-alive at the latest) that the link is gone, instead of waiting for
/// the idle timeout.
pub(crate) fn endpoint_config(identity: &Identity) -> quinn::EndpointConfig {
    let seed = identity.seed();
    let reset = Zeroizing::new(blake3::derive_key(
        "ferry v1 quic stateless reset key",
        seed.as_ref(),
    ));
    let cid = blake3::derive_key("ferry v1 quic connection id key", seed.as_ref());
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut cfg = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset.as_ref(),
    )));
    cfg.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    cfg
}

/// A self-signed Ed25519 certificate for the identity's key (common name: the node id).
pub(crate) fn self_signed_cert(identity: &Identity) -> Result<CertificateDer<'static>, QuicError> {
    let der = pkcs8(identity);
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| QuicError::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| QuicError::Certificate(e.to_string()))?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, identity.node_id().to_string());
    params.distinguished_name = name;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| QuicError::Certificate(e.to_string()))?;
    Ok(cert.der().clone())
}

/// Why a certificate is not a node certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertProblem {
    /// Not a well-formed X.509 certificate (or trailing bytes).
    Encoding,
    /// The key is not Ed25519, or the certificate not signed with Ed25519.
    NotEd25519,
    /// Issuer differs from subject, or the self-signature does not verify.
    NotSelfSigned,
    /// The key is not a valid, non-weak Ed25519 point.
    BadKey,
}

/// The node id a node certificate is for: a well-formed, self-signed certificate whose
/// subject public key is an Ed25519 key (RFC 8410: algorithm 1.3.101.112, no
/// parameters, 32 bytes).
pub(crate) fn node_id_of_cert(der: &[u8]) -> Result<NodeId, CertProblem> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| CertProblem::Encoding)?;
    if !rest.is_empty() {
        return Err(CertProblem::Encoding);
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 || spki.algorithm.parameters.is_some() {
        return Err(CertProblem::NotEd25519);
    }
    if cert.signature_algorithm.algorithm != OID_SIG_ED25519
        || cert.signature_algorithm.parameters.is_some()
    {
        return Err(CertProblem::NotEd25519);
    }
    if spki.subject_public_key.unused_bits != 0 {
        return Err(CertProblem::BadKey);
    }
    let key: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertProblem::BadKey)?;
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(CertProblem::NotSelfSigned);
    }
    cert.verify_signature(None)
        .map_err(|_| CertProblem::NotSelfSigned)?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| CertProblem::BadKey)?;
    if vk.is_weak() {
        return Err(CertProblem::BadKey);
    }
    NodeId::from_bytes(key).map_err(|_| CertProblem::BadKey)
}

fn cert_error(p: CertProblem) -> TlsError {
    TlsError::InvalidCertificate(match p {
        CertProblem::Encoding => CertificateError::BadEncoding,
        CertProblem::NotSelfSigned => CertificateError::BadSignature,
        CertProblem::NotEd25519 | CertProblem::BadKey => {
            CertificateError::ApplicationVerificationFailure
        }
    })
}

/// Checks a TLS 1.3 handshake signature: Ed25519 only, with rustls's ring verifier.
fn verify_ed25519(
    msg: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, TlsError> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(msg, cert, dss, algs)
}

fn tls12_refused() -> TlsError {
    TlsError::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

/// Where a dialer's verifier records the id a wrong peer presented.
pub(crate) type Presented = Arc<Mutex<Option<NodeId>>>;

/// Dialer side: accept only the self-signed Ed25519 certificate of the expected node.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    expected: NodeId,
    /// The id the server presented when it was not the expected one.
    presented: Presented,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    pub(crate) fn new(expected: NodeId, provider: &CryptoProvider) -> (Self, Presented) {
        let presented = Arc::new(Mutex::new(None));
        (
            Self {
                expected,
                presented: presented.clone(),
                algs: provider.signature_verification_algorithms,
            },
            presented,
        )
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if !intermediates.is_empty() {
            return Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        let id = node_id_of_cert(end_entity).map_err(cert_error)?;
        if id != self.expected {
            *self
                .presented
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(id);
            return Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_ed25519(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Listener side: require a client certificate, of the node kind.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    pub(crate) fn new(provider: &CryptoProvider) -> Self {
        Self {
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        if !intermediates.is_empty() {
            return Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        node_id_of_cert(end_entity).map_err(cert_error)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_ed25519(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Always presents this node's certificate (client and server side).
#[derive(Debug)]
pub(crate) struct OwnCert(pub(crate) Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ED25519)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        client_hello
            .signature_schemes()
            .contains(&SignatureScheme::ED25519)
            .then(|| self.0.clone())
    }
}

/// rustls server configuration: TLS 1.3, mandatory node-certificate client auth.
pub(crate) fn server_config(
    provider: Arc<CryptoProvider>,
    own: Arc<CertifiedKey>,
) -> Result<rustls::ServerConfig, QuicError> {
    let verifier = Arc::new(ClientVerifier::new(&provider));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OwnCert(own)));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// rustls client configuration for dialing `expected`; the returned slot holds the id
/// the server presented if it was another node.
pub(crate) fn client_config(
    provider: Arc<CryptoProvider>,
    own: Arc<CertifiedKey>,
    expected: NodeId,
) -> Result<(rustls::ClientConfig, Presented), QuicError> {
    let (verifier, presented) = ServerVerifier::new(expected, &provider);
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(OwnCert(own)));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // The server name means nothing here (peers are named by key); don't send it.
    cfg.enable_sni = false;
    Ok((cfg, presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_certificate_names_own_node_id() {
        let id = Identity::from_seed([5; 32]);
        let cert = self_signed_cert(&id).unwrap();
        assert_eq!(node_id_of_cert(&cert).unwrap(), id.node_id());
        let ck = certified_key(&id).unwrap();
        assert_eq!(ck.cert.len(), 1);
    }

    #[test]
    fn damaged_certificates_are_refused() {
        let id = Identity::from_seed([6; 32]);
        let cert = self_signed_cert(&id).unwrap().to_vec();
        let mut long = cert.clone();
        long.push(0);
        assert_eq!(node_id_of_cert(&long), Err(CertProblem::Encoding));
        assert_eq!(
            node_id_of_cert(&cert[..cert.len() - 1]),
            Err(CertProblem::Encoding)
        );
        // Flip a byte of the signature: parses, but the self-signature fails.
        let mut bad_sig = cert.clone();
        let last = bad_sig.len() - 1;
        bad_sig[last] ^= 1;
        assert_eq!(node_id_of_cert(&bad_sig), Err(CertProblem::NotSelfSigned));
        // Flip every byte once: never panics, never yields another valid id.
        for i in 0..cert.len() {
            let mut c = cert.clone();
            c[i] ^= 0x40;
            if let Ok(other) = node_id_of_cert(&c) {
                assert_eq!(other, id.node_id(), "byte {i}");
            }
        }
    }
}
