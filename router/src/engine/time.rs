//! The engine's monotonic clock.

use std::fmt;
use std::ops::{Add, Sub};

/// Milliseconds on a monotonic clock chosen by the driver (since the process started,
/// or simulated time). Only differences matter; the engine never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// Zero.
    pub const ZERO: Millis = Millis(0);

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }

    /// Whole seconds, rounded up (held time is never under-counted).
    pub fn ceil_secs(self) -> u64 {
        self.0.div_ceil(1000)
    }

    /// From seconds, saturating.
    pub fn from_secs(secs: u64) -> Millis {
        Millis(secs.saturating_mul(1000))
    }
}

impl Add for Millis {
    type Output = Millis;
    fn add(self, rhs: Millis) -> Millis {
        Millis(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Millis {
    type Output = Millis;
    fn sub(self, rhs: Millis) -> Millis {
        self.since(rhs)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5) - Millis(9), Millis(0));
        assert_eq!(Millis(u64::MAX) + Millis(1), Millis(u64::MAX));
        assert_eq!(Millis(1001).ceil_secs(), 2);
        assert_eq!(Millis(1000).ceil_secs(), 1);
        assert_eq!(Millis(0).ceil_secs(), 0);
        assert_eq!(Millis::from_secs(3), Millis(3000));
    }
}
