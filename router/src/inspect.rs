//! What `ferry bundle inspect` shows: a bundle's outer fields, without any key.

use ferry_core::{Bundle, Destination, DtnTime};
use serde::Serialize;

/// A bundle's visible fields and whether its signature verifies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Inspection {
    /// Wire version.
    pub version: u8,
    /// Bundle id (hex).
    pub id: String,
    /// Source node id.
    pub source: String,
    /// `node:<hash>` or `realm-group`.
    pub destination: String,
    /// Realm tag (hex).
    pub realm_tag: String,
    /// Creation time (RFC 3339, UTC), if the source's clock was set.
    pub created: Option<String>,
    /// Creation time in DTN seconds.
    pub created_dtn: Option<u32>,
    /// Age in seconds (bundles without creation time).
    pub age_secs: Option<u64>,
    /// Sequence number.
    pub sequence: u64,
    /// Lifetime in seconds.
    pub lifetime_secs: u32,
    /// Expiry time (RFC 3339), if known.
    pub expires: Option<String>,
    /// Priority name.
    pub priority: String,
    /// Hops taken.
    pub hop_count: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// `pair`, `ephemeral` or `group`.
    pub key_mode: String,
    /// Ciphertext length (tag included).
    pub ciphertext_bytes: usize,
    /// Encoded size.
    pub encoded_bytes: usize,
    /// Whether the Ed25519 signature verifies.
    pub signature_valid: bool,
}

/// Inspects a decoded bundle.
pub fn inspect(bundle: &Bundle) -> Inspection {
    let h = bundle.header();
    let key_mode = match (h.destination, h.ephemeral_key.is_some()) {
        (Destination::Group, _) => "group",
        (Destination::Node(_), true) => "ephemeral",
        (Destination::Node(_), false) => "pair",
    };
    Inspection {
        version: ferry_core::VERSION,
        id: bundle.id().to_string(),
        source: h.source.to_string(),
        destination: match h.destination {
            Destination::Node(n) => format!("node:{n}"),
            Destination::Group => "realm-group".to_owned(),
        },
        realm_tag: h.realm_tag.to_string(),
        created: h.created.map(rfc3339),
        created_dtn: h.created.map(|c| c.0),
        age_secs: bundle.envelope().age,
        sequence: h.sequence,
        lifetime_secs: h.lifetime,
        expires: bundle
            .expires_at()
            .and_then(|e| u32::try_from(e).ok())
            .map(|e| rfc3339(DtnTime(e))),
        priority: h.priority.as_str().to_owned(),
        hop_count: bundle.envelope().hop_count,
        hop_limit: h.hop_limit,
        key_mode: key_mode.to_owned(),
        ciphertext_bytes: bundle.ciphertext().len(),
        encoded_bytes: bundle.encoded_len(),
        signature_valid: ferry_core::verify(bundle).is_ok(),
    }
}

impl Inspection {
    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            out.push_str(&format!("{k:<12} {v}\n"));
        };
        line("id", self.id.clone());
        line("version", self.version.to_string());
        line("source", self.source.clone());
        line("destination", self.destination.clone());
        line("realm tag", self.realm_tag.clone());
        line(
            "created",
            match (&self.created, self.age_secs) {
                (Some(c), _) => c.clone(),
                (None, Some(age)) => format!("unknown (source had no clock); age {age} s"),
                (None, None) => "unknown".to_owned(),
            },
        );
        line("sequence", self.sequence.to_string());
        line(
            "lifetime",
            match &self.expires {
                Some(e) => format!("{} s (expires {e})", self.lifetime_secs),
                None => format!("{} s of age", self.lifetime_secs),
            },
        );
        line("priority", self.priority.clone());
        line("hops", format!("{} of {}", self.hop_count, self.hop_limit));
        line("key mode", self.key_mode.clone());
        line("ciphertext", format!("{} bytes", self.ciphertext_bytes));
        line("size", format!("{} bytes", self.encoded_bytes));
        line(
            "signature",
            if self.signature_valid {
                "valid".to_owned()
            } else {
                "INVALID".to_owned()
            },
        );
        out
    }
}

/// Formats DTN time as RFC 3339 UTC (`2026-11-22T00:40:54Z`).
pub fn rfc3339(t: DtnTime) -> String {
    let unix = t.to_unix_secs();
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(DtnTime(0)), "2000-01-01T00:00:00Z");
        // 2026-11-22T00:40:54Z = Unix 1795308054.
        assert_eq!(
            rfc3339(DtnTime::from_unix_secs(1_795_308_054).unwrap()),
            "2026-11-22T00:40:54Z"
        );
        assert_eq!(
            rfc3339(DtnTime::from_unix_secs(951_782_400).unwrap()),
            "2000-02-29T00:00:00Z"
        );
    }
}
