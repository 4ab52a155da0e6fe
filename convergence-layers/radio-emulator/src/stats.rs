//! What the emulator counts, per node, and the sliding one-hour airtime window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of the emulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Time since the emulator started, in milliseconds.
    pub elapsed_ms: u64,
    /// `kiss`, `rnode` or `wire`.
    pub mode: String,
    /// Per node, by name.
    pub nodes: BTreeMap<String, NodeStats>,
}

/// One node's counters.
///
/// Radio modes count frames (radio packets); wire mode counts chunks (one `read` from
/// the pseudo-terminal) and its "airtime" is the line time at the configured baud rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Packets (wire: chunks) this node put on the air (the line).
    pub tx_frames: u64,
    /// Their payload bytes (without the RNode air header).
    pub tx_bytes: u64,
    /// Its total time on air, in microseconds (exact sum of the per-frame airtimes).
    pub airtime_us: u64,
    /// The same in milliseconds.
    pub airtime_ms: f64,
    /// Airtime extrapolated to one hour from the run so far (`airtime_ms` · 1 h / elapsed).
    pub airtime_per_hour_ms: f64,
    /// The most airtime in any one-hour window (windows aligned to whole seconds since
    /// the start); equals `airtime_ms` for runs shorter than an hour.
    pub max_airtime_in_any_hour_ms: f64,
    /// Packets (chunks) delivered to this node.
    pub rx_frames: u64,
    /// Their payload bytes.
    pub rx_bytes: u64,
    /// Receptions dropped by the loss draw (wire: chunks dropped by the draw or while the
    /// cable was unplugged).
    pub lost: u64,
    /// Receptions destroyed by another transmission this node heard at the same time.
    pub collided: u64,
    /// Receptions missed because this node was itself transmitting (half duplex).
    pub missed_while_transmitting: u64,
    /// Receptions missed because this node's radio was off (RNode mode).
    pub missed_radio_off: u64,
    /// Transmissions not heard because sender and receiver use different frequency,
    /// bandwidth or spreading factor (RNode mode).
    pub missed_config_mismatch: u64,
    /// Times this node's radio found the channel busy and waited (listen before talk).
    pub deferred: u64,
    /// Data frames over 255 bytes on air, dropped.
    pub dropped_oversize: u64,
    /// Data frames dropped because this node's transmit queue was full.
    pub dropped_queue_full: u64,
    /// Frames for this node dropped because it did not read its port fast enough.
    pub dropped_output_full: u64,
    /// Malformed KISS frames from this node (bad escapes).
    pub kiss_errors: u64,
    /// Commands accepted and ignored (KISS parameters, unknown RNode commands).
    pub ignored_commands: u64,
    /// Times this node configured its radio differently from the channel (RNode mode).
    pub config_mismatch: u64,
    /// The radio settings the node configured (RNode mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<ConfiguredRadio>,
}

/// What a node configured through RNode host commands (`None`: never set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfiguredRadio {
    /// `CMD_FREQUENCY`, Hz.
    pub frequency_hz: Option<u32>,
    /// `CMD_BANDWIDTH`, Hz.
    pub bandwidth_hz: Option<u32>,
    /// `CMD_SF`.
    pub spreading_factor: Option<u8>,
    /// `CMD_CR` (5..=8).
    pub coding_rate: Option<u8>,
    /// `CMD_TXPOWER`, dBm.
    pub tx_power_dbm: Option<i8>,
    /// `CMD_RADIO_STATE`: the radio is on.
    pub on: bool,
}

const US_PER_S: u64 = 1_000_000;
const HOUR_S: u64 = 3_600;

/// Airtime per whole second over the last hour, for the sliding-window maximum.
///
/// Fixed memory (3600 counters) however long the run. Each transmission is added
/// when it starts, split over the seconds it covers; the window considered ends with
/// the second of the transmission's end, and only grows when a transmission is added,
/// so checking after each addition finds the maximum over all second-aligned windows.
#[derive(Debug, Clone)]
pub(crate) struct AirtimeWindow {
    bins: Box<[u64]>,
    /// The latest second the bins cover (`None` before the first transmission).
    head: Option<u64>,
    sum: u64,
    max: u64,
}

impl Default for AirtimeWindow {
    fn default() -> Self {
        AirtimeWindow {
            bins: vec![0; HOUR_S as usize].into_boxed_slice(),
            head: None,
            sum: 0,
            max: 0,
        }
    }
}

impl AirtimeWindow {
    fn bin(sec: u64) -> usize {
        // Always < 3600, so the cast is lossless.
        (sec % HOUR_S) as usize
    }

    /// Adds a transmission over [start, end) µs. Transmissions of one node never
    /// overlap and come in time order.
    pub(crate) fn add(&mut self, start_us: u64, end_us: u64) {
        if end_us <= start_us {
            return;
        }
        let end_sec = (end_us - 1) / US_PER_S;
        match self.head {
            None => self.head = Some(end_sec),
            Some(head) if end_sec > head => {
                // Clear the seconds that leave the window (at most one hour's worth).
                let from = head + 1;
                let to = end_sec.min(head + HOUR_S);
                for sec in from..=to {
                    let b = Self::bin(sec);
                    self.sum -= self.bins[b];
                    self.bins[b] = 0;
                }
                self.head = Some(end_sec);
            }
            Some(_) => {}
        }
        let first_sec = start_us / US_PER_S;
        // Only seconds still inside the window ending at end_sec count; a LoRa frame
        // lasts seconds at most, so this loop is short.
        let lowest = (end_sec + 1).saturating_sub(HOUR_S);
        for sec in first_sec.max(lowest)..=end_sec {
            let lo = start_us.max(sec * US_PER_S);
            let hi = end_us.min((sec + 1) * US_PER_S);
            let piece = hi.saturating_sub(lo);
            self.bins[Self::bin(sec)] += piece;
            self.sum += piece;
        }
        self.max = self.max.max(self.sum);
    }

    pub(crate) fn max_us(&self) -> u64 {
        self.max
    }
}

/// A node's counters plus its airtime window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Account {
    pub(crate) s: NodeStats,
    pub(crate) window: AirtimeWindow,
}

impl Account {
    /// Records a transmission of `payload_len` bytes over [start, end) µs.
    pub(crate) fn transmitted(&mut self, payload_len: usize, start_us: u64, end_us: u64) {
        self.s.tx_frames += 1;
        self.s.tx_bytes += payload_len as u64;
        self.s.airtime_us += end_us.saturating_sub(start_us);
        self.window.add(start_us, end_us);
    }

    pub(crate) fn received(&mut self, payload_len: usize) {
        self.s.rx_frames += 1;
        self.s.rx_bytes += payload_len as u64;
    }

    /// The public view at `elapsed_us`.
    pub(crate) fn snapshot(&self, elapsed_us: u64) -> NodeStats {
        let mut s = self.s.clone();
        s.airtime_ms = s.airtime_us as f64 / 1_000.0;
        s.max_airtime_in_any_hour_ms = self.window.max_us() as f64 / 1_000.0;
        s.airtime_per_hour_ms = if elapsed_us == 0 {
            0.0
        } else {
            s.airtime_us as f64 * (HOUR_S * US_PER_S) as f64 / elapsed_us as f64 / 1_000.0
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_runs_have_max_equal_total() {
        let mut w = AirtimeWindow::default();
        w.add(0, 150_000);
        w.add(900_000, 1_300_000);
        w.add(5_000_000, 5_000_001);
        assert_eq!(w.max_us(), 150_000 + 400_000 + 1);
    }

    #[test]
    fn the_window_slides_over_hours() {
        let mut w = AirtimeWindow::default();
        // 10 s in the first second-hour, then 1 s two hours later, then 3 s shortly after.
        w.add(0, 10_000_000);
        w.add(2 * 3_600_000_000, 2 * 3_600_000_000 + 1_000_000);
        w.add(2 * 3_600_000_000 + 5_000_000, 2 * 3_600_000_000 + 8_000_000);
        assert_eq!(w.max_us(), 10_000_000);
        // Within one hour of those: 1 s + 3 s + 7 s = 11 s.
        w.add(
            2 * 3_600_000_000 + 60_000_000,
            2 * 3_600_000_000 + 67_000_000,
        );
        assert_eq!(w.max_us(), 11_000_000);
        // An hour later the first of them has left the window: 3 + 7 + 2 = 12 s.
        let t = 3 * 3_600_000_000 + 3_000_000;
        w.add(t, t + 2_000_000);
        assert_eq!(w.max_us(), 12_000_000);
    }
}
