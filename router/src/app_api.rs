//! Decoding what local apps send the node's API: how to seal a submission (the query
//! of `POST /v1/bundles`, the `params` message of the app stream) and the app
//! stream's text messages. Pure functions over outside bytes, with typed errors and
//! no panics, so they are fuzzed (`fuzz/fuzz_targets/app_request.rs`) and
//! property-tested apart from the daemon.

use ferry_core::{BundleId, NodeId, PayloadKind, Priority, Recipient, SealParams};
use serde::{Deserialize, Serialize};

/// Longest text message the app stream accepts (a `params` or `ack` message is a
/// few hundred bytes).
pub const MAX_STREAM_TEXT: usize = 4096;

/// Why an app's request is refused (the API answers 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn err(msg: impl Into<String>) -> RequestError {
    RequestError(msg.into())
}

/// How to seal what an app submits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitQuery {
    /// The destination node (base32 node id), unless `group`.
    pub to: Option<String>,
    /// To every member of the realm instead of one node.
    #[serde(default)]
    pub group: bool,
    /// The destination endpoint (empty: the default one).
    pub endpoint: Option<String>,
    /// Lifetime, e.g. `2h` (the config's default when absent).
    pub lifetime: Option<String>,
    /// `bulk`, `normal` (default) or `expedited`.
    pub priority: Option<String>,
    /// Not kept in custody once delivered anywhere (see the bundle format).
    #[serde(default)]
    pub ephemeral: bool,
    /// The realm (the node's first when absent).
    pub realm: Option<String>,
}

/// What the node supplies where the query is silent.
#[derive(Debug, Clone, Copy)]
pub struct SubmitDefaults<'a> {
    /// The node's first realm, if it has one.
    pub realm: Option<&'a str>,
    /// Lifetime in seconds.
    pub lifetime_secs: u32,
    /// Hop limit of new bundles.
    pub hop_limit: u8,
}

impl SubmitQuery {
    /// The sealing parameters (no creation time or sequence number yet: the node
    /// sets both when it seals each payload).
    pub fn seal_params(&self, defaults: SubmitDefaults<'_>) -> Result<SealParams, RequestError> {
        let endpoint = self.endpoint.clone().filter(|e| !e.is_empty());
        let recipient = match (self.to.as_deref(), self.group) {
            (Some(_), true) => return Err(err("give either `to` or `group=true`, not both")),
            (None, true) => Recipient::Group { endpoint },
            (Some(to), false) => Recipient::Node {
                id: to.parse::<NodeId>().map_err(|e| err(format!("to: {e}")))?,
                endpoint,
            },
            (None, false) => return Err(err("missing `to` (a node id) or `group=true`")),
        };
        let lifetime = match self.lifetime.as_deref() {
            Some(l) => ferry_core::parse_lifetime(l).map_err(|e| err(format!("lifetime: {e}")))?,
            None => defaults.lifetime_secs,
        };
        let priority: Priority = self
            .priority
            .as_deref()
            .unwrap_or("normal")
            .parse::<Priority>()
            .map_err(err)?;
        let realm = match (&self.realm, defaults.realm) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_owned(),
            (None, None) => return Err(err("this node has no realm")),
        };
        Ok(SealParams {
            recipient,
            realm,
            created: None,
            sequence: 0,
            lifetime,
            priority,
            hop_limit: defaults.hop_limit,
            kind: PayloadKind::AppData,
            ephemeral: self.ephemeral,
            fragment: None,
        })
    }
}

/// A text message an app sends on the app stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage {
    /// How to seal the binary messages that follow.
    Params(SubmitQuery),
    /// The app has what was pushed as this bundle: release it.
    Ack(BundleId),
}

/// The JSON form of [`StreamMessage`], both ways.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Params(SubmitQuery),
    Ack { id: String },
}

impl StreamMessage {
    /// The message as an app writes it.
    pub fn encode(&self) -> String {
        let wire = match self {
            Self::Params(q) => Wire::Params(q.clone()),
            Self::Ack(id) => Wire::Ack { id: id.to_string() },
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Decodes one text message (JSON with a `type`), at most [`MAX_STREAM_TEXT`]
    /// bytes.
    pub fn decode(text: &str) -> Result<Self, RequestError> {
        if text.len() > MAX_STREAM_TEXT {
            return Err(err(format!(
                "stream message of {} bytes; at most {MAX_STREAM_TEXT}",
                text.len()
            )));
        }
        match serde_json::from_str::<Wire>(text) {
            Ok(Wire::Params(q)) => Ok(Self::Params(q)),
            Ok(Wire::Ack { id }) => id
                .parse::<BundleId>()
                .map(Self::Ack)
                .map_err(|_| err("not a bundle id")),
            Err(e) => Err(err(format!("not a stream message: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULTS: SubmitDefaults<'static> = SubmitDefaults {
        realm: Some("valley"),
        lifetime_secs: 86_400,
        hop_limit: 8,
    };

    fn node() -> NodeId {
        ferry_core::Identity::from_seed([3; 32]).node_id()
    }

    #[test]
    fn params_and_acks_decode() {
        let id = node();
        let m = StreamMessage::decode(&format!(
            r#"{{"type":"params","to":"{id}","lifetime":"2h","priority":"expedited","endpoint":"mail"}}"#
        ))
        .unwrap();
        let StreamMessage::Params(q) = m else {
            panic!("{m:?}")
        };
        let p = q.seal_params(DEFAULTS).unwrap();
        assert_eq!(
            p.recipient,
            Recipient::Node {
                id,
                endpoint: Some("mail".into())
            }
        );
        assert_eq!((p.lifetime, p.priority), (7200, Priority::Expedited));
        assert_eq!(p.realm, "valley");
        let bid = BundleId::of_signed_bytes(b"a bundle");
        assert_eq!(
            StreamMessage::decode(&format!(r#"{{"type":"ack","id":"{bid}"}}"#)),
            Ok(StreamMessage::Ack(bid))
        );
    }

    #[test]
    fn bad_requests_get_their_reason() {
        let reason = |text: &str| StreamMessage::decode(text).unwrap_err().0;
        assert!(reason("{").starts_with("not a stream message"));
        assert!(reason(r#"{"type":"nope"}"#).starts_with("not a stream message"));
        assert_eq!(reason(r#"{"type":"ack","id":"zz"}"#), "not a bundle id");
        assert!(reason(&" ".repeat(MAX_STREAM_TEXT + 1)).contains("at most"));
        let q = |json: &str| match StreamMessage::decode(json).unwrap() {
            StreamMessage::Params(q) => q.seal_params(DEFAULTS).unwrap_err().0,
            m => panic!("{m:?}"),
        };
        assert!(q(r#"{"type":"params"}"#).starts_with("missing `to`"));
        assert!(q(r#"{"type":"params","to":"x","group":true}"#).contains("not both"));
        assert!(q(r#"{"type":"params","to":"x"}"#).starts_with("to:"));
        assert!(q(r#"{"type":"params","group":true,"lifetime":"soon"}"#).starts_with("lifetime:"));
        assert!(!q(r#"{"type":"params","group":true,"priority":"now"}"#).is_empty());
        let none = SubmitDefaults {
            realm: None,
            ..DEFAULTS
        };
        assert_eq!(
            SubmitQuery {
                group: true,
                ..SubmitQuery::default()
            }
            .seal_params(none)
            .unwrap_err()
            .0,
            "this node has no realm"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,600}") {
            let _ = StreamMessage::decode(&text);
        }

        #[test]
        fn arbitrary_queries_never_panic(
            to in proptest::option::of(".{0,80}"),
            group in any::<bool>(),
            lifetime in proptest::option::of("[0-9a-z]{0,12}"),
            priority in proptest::option::of("[a-z]{0,12}"),
            realm in proptest::option::of(".{0,20}"),
        ) {
            let q = SubmitQuery { to, group, endpoint: None, lifetime, priority, ephemeral: false, realm };
            let json = serde_json::json!({
                "type": "params", "to": q.to, "group": q.group, "lifetime": q.lifetime,
                "priority": q.priority, "realm": q.realm,
            });
            // What an app writes is what the node reads.
            prop_assert_eq!(StreamMessage::decode(&json.to_string()), Ok(StreamMessage::Params(q.clone())));
            let _ = q.seal_params(DEFAULTS);
        }
    }
}
