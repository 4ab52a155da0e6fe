//! Time types. Core never reads a clock: callers pass the time in.
//!
//! [`DtnTime`] is wall-clock time in whole seconds since 2000-01-01T00:00:00Z (the
//! BPv7 epoch). A node without a real-time clock does not know it; bundles it creates
//! then carry no creation time and their lifetime counts from their age, which every
//! node adds to as it holds the bundle (as BPv7's bundle age block does).

use serde::{Deserialize, Serialize};

/// Seconds between the Unix epoch and the DTN epoch (2000-01-01T00:00:00Z).
pub const DTN_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Wall-clock time in seconds since 2000-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DtnTime(pub u32);

impl DtnTime {
    /// From Unix seconds; `None` before 2000 or after 2136 (an unset clock).
    pub fn from_unix_secs(unix: u64) -> Option<Self> {
        let s = unix.checked_sub(DTN_EPOCH_UNIX_SECS)?;
        u32::try_from(s).ok().map(DtnTime)
    }

    /// Unix seconds.
    pub fn to_unix_secs(self) -> u64 {
        u64::from(self.0) + DTN_EPOCH_UNIX_SECS
    }

    /// Seconds since the DTN epoch.
    pub fn secs(self) -> u32 {
        self.0
    }

    /// This time plus `secs`, saturating.
    pub fn plus(self, secs: u64) -> u64 {
        u64::from(self.0).saturating_add(secs)
    }
}

/// Parses a lifetime such as `90s`, `30m`, `2h`, `7d` or a bare number of seconds.
pub fn parse_lifetime(s: &str) -> Result<u32, LifetimeError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| LifetimeError)?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(LifetimeError),
    };
    let secs = n.checked_mul(mult).ok_or(LifetimeError)?;
    match u32::try_from(secs) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(LifetimeError),
    }
}

/// A lifetime that is not `<number>[s|m|h|d|w]`, is zero, or exceeds 136 years.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lifetime must be a positive number followed by s, m, h, d or w (e.g. 2h)")]
pub struct LifetimeError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("2h"), Ok(7200));
        assert_eq!(parse_lifetime("45"), Ok(45));
        assert_eq!(parse_lifetime("7d"), Ok(604_800));
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("2y").is_err());
        assert!(parse_lifetime("").is_err());
        assert!(parse_lifetime("h").is_err());
        assert!(parse_lifetime("99999999999999999999s").is_err());
    }

    #[test]
    fn epoch_conversion() {
        assert_eq!(
            DtnTime::from_unix_secs(DTN_EPOCH_UNIX_SECS),
            Some(DtnTime(0))
        );
        assert_eq!(DtnTime::from_unix_secs(0), None);
        assert_eq!(DtnTime(5).to_unix_secs(), DTN_EPOCH_UNIX_SECS + 5);
    }
}
