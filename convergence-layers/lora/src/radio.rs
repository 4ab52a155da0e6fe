//! LoRa modem settings and the arithmetic that follows from them: symbol time, the
//! low-data-rate-optimisation rule, raw bit rate and Semtech's time-on-air formula.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest LoRa payload in bytes (the modem's FIFO and 8-bit length field).
pub const MAX_PAYLOAD: usize = 255;

/// The LoRa bandwidths, in Hz, that Semtech's SX127x/SX126x modems support.
pub const BANDWIDTHS_HZ: [u32; 10] = [
    7_800, 10_400, 15_600, 20_800, 31_250, 41_700, 62_500, 125_000, 250_000, 500_000,
];

/// The lowest carrier frequency accepted by [`RadioSettings::validate`] (137 MHz).
pub const MIN_FREQUENCY_HZ: u32 = 137_000_000;
/// The highest carrier frequency accepted by [`RadioSettings::validate`] (1020 MHz).
pub const MAX_FREQUENCY_HZ: u32 = 1_020_000_000;
/// The lowest transmit power accepted by [`RadioSettings::validate`], in dBm.
pub const MIN_TX_POWER_DBM: i8 = -9;
/// The highest transmit power accepted by [`RadioSettings::validate`], in dBm.
pub const MAX_TX_POWER_DBM: i8 = 22;

/// Symbol time at or above which low data rate optimisation must be on (16 ms).
pub const LDRO_THRESHOLD_US: f64 = 16_000.0;

/// An invalid radio setting, or a frequency a region does not allow.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum RadioError {
    /// The bandwidth is not one of [`BANDWIDTHS_HZ`].
    #[error("bandwidth {0} Hz is not a LoRa bandwidth")]
    Bandwidth(u32),
    /// The spreading factor is outside 5..=12.
    #[error("spreading factor {0} is outside 5..=12")]
    SpreadingFactor(u8),
    /// The coding rate is outside 5..=8 (4/5..4/8).
    #[error("coding rate {0} is outside 5..=8 (4/5..4/8)")]
    CodingRate(u8),
    /// The transmit power is outside -9..=22 dBm.
    #[error("transmit power {0} dBm is outside -9..=22 dBm")]
    TxPower(i8),
    /// The frequency is outside 137..=1020 MHz.
    #[error("frequency {0} Hz is outside 137..=1020 MHz")]
    Frequency(u32),
    /// The frequency lies inside the EU868 band (863–870 MHz) but in none of its
    /// sub-bands.
    #[error("frequency {0} Hz not in an EU868 sub-band")]
    NotInSubBand(u32),
    /// The frequency lies outside the band of the region.
    #[error("frequency {frequency_hz} Hz is outside the {region} band")]
    OutsideRegion {
        /// The requested frequency.
        frequency_hz: u32,
        /// The region's name.
        region: &'static str,
    },
}

/// The settings of a LoRa modem.
///
/// `coding_rate` is the denominator of the code rate: 5 means 4/5, 8 means 4/8.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadioSettings {
    /// Carrier frequency in Hz.
    pub frequency_hz: u32,
    /// Bandwidth in Hz (one of [`BANDWIDTHS_HZ`]).
    pub bandwidth_hz: u32,
    /// Spreading factor, 5..=12.
    pub spreading_factor: u8,
    /// Coding rate denominator, 5..=8 (4/5..4/8).
    pub coding_rate: u8,
    /// Transmit power in dBm, -9..=22.
    pub tx_power_dbm: i8,
    /// Programmed preamble length in symbols (default 8).
    pub preamble_symbols: u16,
    /// Explicit header mode (default true); false is implicit header mode.
    pub explicit_header: bool,
    /// Payload CRC on (default true).
    pub crc: bool,
}

impl Default for RadioSettings {
    /// 869.525 MHz (the EU868 10 % sub-band), 125 kHz, SF9, CR 4/5, 14 dBm, preamble 8,
    /// explicit header, CRC on.
    fn default() -> Self {
        RadioSettings {
            frequency_hz: 869_525_000,
            bandwidth_hz: 125_000,
            spreading_factor: 9,
            coding_rate: 5,
            tx_power_dbm: 14,
            preamble_symbols: 8,
            explicit_header: true,
            crc: true,
        }
    }
}

impl RadioSettings {
    /// Checks every field against what LoRa modems accept: bandwidth in
    /// [`BANDWIDTHS_HZ`], SF 5..=12, CR 5..=8, power -9..=22 dBm, frequency
    /// 137..=1020 MHz. Regional rules are in [`crate::region`].
    pub fn validate(&self) -> Result<(), RadioError> {
        if !BANDWIDTHS_HZ.contains(&self.bandwidth_hz) {
            return Err(RadioError::Bandwidth(self.bandwidth_hz));
        }
        if !(5..=12).contains(&self.spreading_factor) {
            return Err(RadioError::SpreadingFactor(self.spreading_factor));
        }
        if !(5..=8).contains(&self.coding_rate) {
            return Err(RadioError::CodingRate(self.coding_rate));
        }
        if !(MIN_TX_POWER_DBM..=MAX_TX_POWER_DBM).contains(&self.tx_power_dbm) {
            return Err(RadioError::TxPower(self.tx_power_dbm));
        }
        if !(MIN_FREQUENCY_HZ..=MAX_FREQUENCY_HZ).contains(&self.frequency_hz) {
            return Err(RadioError::Frequency(self.frequency_hz));
        }
        Ok(())
    }

    /// The spreading factor clamped to 5..=12, so the arithmetic below never overflows
    /// or divides by zero on unvalidated settings.
    fn sf(&self) -> u32 {
        u32::from(self.spreading_factor.clamp(5, 12))
    }

    /// The bandwidth, at least 1 Hz (arithmetic guard for unvalidated settings).
    fn bw(&self) -> u32 {
        self.bandwidth_hz.max(1)
    }

    /// The coding rate denominator clamped to 5..=8.
    fn cr(&self) -> u32 {
        u32::from(self.coding_rate.clamp(5, 8))
    }

    /// Symbol time T_s = 2^SF / BW, in microseconds.
    pub fn symbol_time_us(&self) -> f64 {
        f64::from(1u32 << self.sf()) * 1_000_000.0 / f64::from(self.bw())
    }

    /// Whether low data rate optimisation (LDRO, "DE" in Semtech's formula) is on:
    /// Semtech mandates it when the symbol time is 16 ms or more (SF11 and SF12 at
    /// 125 kHz, SF12 at 250 kHz), and this crate assumes the radio follows that rule.
    pub fn low_data_rate_optimize(&self) -> bool {
        // 2^SF / BW >= 16 ms  <=>  2^SF * 1000 >= 16 * BW, exactly in integers.
        u64::from(1u32 << self.sf()) * 1_000 >= 16 * u64::from(self.bw())
    }

    /// The preamble length the modem actually sends: Semtech's SX126x driver raises it to
    /// at least 12 symbols at SF5 and SF6.
    pub fn effective_preamble_symbols(&self) -> u16 {
        if self.sf() <= 6 {
            self.preamble_symbols.max(12)
        } else {
            self.preamble_symbols
        }
    }

    /// Number of symbols a frame of `payload_len` bytes occupies, times four (so the
    /// preamble's quarter symbol stays exact).
    fn quarter_symbols(&self, payload_len: usize) -> u64 {
        let sf = i64::from(self.sf());
        // Payloads beyond u32 are meaningless for LoRa; clamping keeps the arithmetic
        // overflow-free for any input.
        let pl = i64::try_from(payload_len.min(u32::MAX as usize)).unwrap_or(i64::from(u32::MAX));
        let crc = i64::from(self.crc);
        let explicit = i64::from(self.explicit_header);
        let de = i64::from(self.low_data_rate_optimize());
        let cr = i64::from(self.cr()) - 4; // 1..=4
        let (num, den, preamble_quarters) = if sf <= 6 {
            // SX126x at SF5/SF6 (SX1261/2 datasheet, Semtech's sx126x radio.c):
            // no "+8" term, no LDRO, and the preamble gets 6.25 extra symbols.
            (8 * pl + 16 * crc - 4 * sf + 20 * explicit, 4 * sf, 25)
        } else {
            // SX127x datasheet / AN1200.13; identical to SX126x for SF7..SF12.
            (
                8 * pl - 4 * sf + 28 + 16 * crc - 20 * (1 - explicit),
                4 * (sf - 2 * de),
                17,
            )
        };
        // ceil(num / den) for positive den; the max(.., 0) of the formula clamps
        // non-positive numerators to zero blocks.
        let blocks = if num <= 0 { 0 } else { (num + den - 1) / den };
        let payload_symbols = 8 + u64::try_from(blocks * (cr + 4)).unwrap_or(0);
        4 * u64::from(self.effective_preamble_symbols()) + preamble_quarters + 4 * payload_symbols
    }

    /// Time on air of one frame with `payload_len` payload bytes, in microseconds,
    /// rounded up, by Semtech's formula (SX1276/77/78/79 datasheet, "Time on air"; AN1200.13):
    ///
    /// ```text
    /// T_s            = 2^SF / BW
    /// T_preamble     = (n_preamble + 4.25) · T_s
    /// payloadSymbNb  = 8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)
    /// T_packet       = T_preamble + payloadSymbNb · T_s
    /// ```
    ///
    /// with CR = `coding_rate` − 4 (1..=4), IH = 1 in implicit header mode, CRC = 1 when
    /// the payload CRC is on and DE = [`low_data_rate_optimize`](Self::low_data_rate_optimize).
    ///
    /// SF5 and SF6 exist as such only on SX126x modems, whose datasheet and
    /// Semtech's reference driver use a different variant, applied here:
    /// T_preamble = (max(n_preamble, 12) + 6.25) · T_s and
    /// payloadSymbNb = 8 + ceil(max(8·PL + 16·CRC − 4·SF + 20·(1 − IH), 0) / (4·SF)) · (CR + 4).
    ///
    /// The computation is exact (integer arithmetic) before the final rounding up; the
    /// payload length is not checked against [`MAX_PAYLOAD`].
    pub fn airtime_us(&self, payload_len: usize) -> u64 {
        let quarter_symbols = u128::from(self.quarter_symbols(payload_len));
        // T = (q/4) · 2^SF / BW seconds = q · 2^SF · 10^6 / (4 · BW) µs, rounded up.
        let num = quarter_symbols * (1u128 << self.sf()) * 1_000_000;
        let den = 4 * u128::from(self.bw());
        u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX)
    }

    /// Raw (physical layer) bit rate SF · BW / 2^SF · 4 / CR in bits per second,
    /// where CR is the coding rate denominator (5..=8). SF9/125 kHz/4/5 gives
    /// 1757.8125 bit/s.
    pub fn raw_bitrate_bps(&self) -> f64 {
        f64::from(self.sf()) * f64::from(self.bw()) / f64::from(1u32 << self.sf()) * 4.0
            / f64::from(self.cr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(sf: u8, bw: u32, cr: u8) -> RadioSettings {
        RadioSettings {
            spreading_factor: sf,
            bandwidth_hz: bw,
            coding_rate: cr,
            ..RadioSettings::default()
        }
    }

    #[test]
    fn default_is_valid_and_as_documented() {
        let d = RadioSettings::default();
        assert_eq!(d.frequency_hz, 869_525_000);
        assert_eq!(d.bandwidth_hz, 125_000);
        assert_eq!(d.spreading_factor, 9);
        assert_eq!(d.coding_rate, 5);
        assert_eq!(d.tx_power_dbm, 14);
        assert_eq!(d.preamble_symbols, 8);
        assert!(d.explicit_header && d.crc);
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_each_field() {
        let d = RadioSettings::default();
        let bad = [
            (
                RadioSettings {
                    bandwidth_hz: 100_000,
                    ..d
                },
                RadioError::Bandwidth(100_000),
            ),
            (
                RadioSettings {
                    spreading_factor: 4,
                    ..d
                },
                RadioError::SpreadingFactor(4),
            ),
            (
                RadioSettings {
                    spreading_factor: 13,
                    ..d
                },
                RadioError::SpreadingFactor(13),
            ),
            (
                RadioSettings {
                    coding_rate: 4,
                    ..d
                },
                RadioError::CodingRate(4),
            ),
            (
                RadioSettings {
                    coding_rate: 9,
                    ..d
                },
                RadioError::CodingRate(9),
            ),
            (
                RadioSettings {
                    tx_power_dbm: -10,
                    ..d
                },
                RadioError::TxPower(-10),
            ),
            (
                RadioSettings {
                    tx_power_dbm: 23,
                    ..d
                },
                RadioError::TxPower(23),
            ),
            (
                RadioSettings {
                    frequency_hz: 136_999_999,
                    ..d
                },
                RadioError::Frequency(136_999_999),
            ),
            (
                RadioSettings {
                    frequency_hz: 1_020_000_001,
                    ..d
                },
                RadioError::Frequency(1_020_000_001),
            ),
        ];
        for (settings, err) in bad {
            assert_eq!(settings.validate(), Err(err));
        }
        for bw in BANDWIDTHS_HZ {
            assert_eq!(
                RadioSettings {
                    bandwidth_hz: bw,
                    ..d
                }
                .validate(),
                Ok(())
            );
        }
        for f in [MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ] {
            assert_eq!(
                RadioSettings {
                    frequency_hz: f,
                    ..d
                }
                .validate(),
                Ok(())
            );
        }
    }

    #[test]
    fn symbol_time_and_ldro() {
        assert_eq!(lora(7, 125_000, 5).symbol_time_us(), 1_024.0);
        assert_eq!(lora(12, 125_000, 5).symbol_time_us(), 32_768.0);
        // 16 ms rule: SF11/SF12 at 125 kHz, SF12 at 250 kHz, SF10 at 62.5 kHz.
        assert!(!lora(10, 125_000, 5).low_data_rate_optimize());
        assert!(lora(11, 125_000, 5).low_data_rate_optimize());
        assert!(lora(12, 125_000, 5).low_data_rate_optimize());
        assert!(!lora(11, 250_000, 5).low_data_rate_optimize());
        assert!(lora(12, 250_000, 5).low_data_rate_optimize());
        assert!(lora(10, 62_500, 5).low_data_rate_optimize());
        assert!(!lora(9, 62_500, 5).low_data_rate_optimize());
        assert!(!lora(12, 500_000, 5).low_data_rate_optimize());
        // Exactly 16 ms: 2^7 / 8000 Hz would be 16 ms; 7.8 kHz gives 16.41 ms.
        assert!(lora(7, 7_800, 5).low_data_rate_optimize());
    }

    /// Published time-on-air figures (all preamble 8, explicit header, CRC on).
    #[test]
    fn airtime_matches_published_figures() {
        let cases: [(u8, u32, u8, usize, u64, &str); 9] = [
            // rfwireless-world.com LoRaWAN airtime calculator, example 1.
            (7, 125_000, 5, 10, 41_216, "rfwireless-world ex. 1"),
            // rfwireless-world.com example 2 (SF11, LDRO on).
            (11, 125_000, 5, 10, 577_536, "rfwireless-world ex. 2"),
            // AN1200.13 airtime spreadsheet (13 bytes, SF9): Tpacket 164.864 ms.
            (9, 125_000, 5, 13, 164_864, "AN1200.13 spreadsheet"),
            // TTN LoRaWAN airtime calculator figures, as reproduced in test suites.
            (7, 125_000, 5, 13, 46_336, "TTN SF7 13 B"),
            (7, 125_000, 5, 20, 56_576, "TTN SF7 20 B"),
            (12, 125_000, 5, 13, 1_155_072, "TTN SF12 13 B"),
            (12, 125_000, 5, 51, 2_465_792, "TTN SF12 51 B"),
            (12, 125_000, 5, 64, 2_793_472, "SF12 64 B LDRO"),
            (7, 500_000, 5, 255, 99_904, "SF7 500 kHz 255 B"),
        ];
        for (sf, bw, cr, len, want, source) in cases {
            assert_eq!(lora(sf, bw, cr).airtime_us(len), want, "{source}");
        }
    }

    #[test]
    fn a_full_frame_at_sf12_takes_about_nine_seconds() {
        // 12.25 + 8 + ceil(2036 / 40) * 5 = 275.25 symbols of 32.768 ms.
        assert_eq!(lora(12, 125_000, 5).airtime_us(MAX_PAYLOAD), 9_019_392);
    }

    #[test]
    fn airtime_rounds_up_to_whole_microseconds() {
        // SF7 at 41.7 kHz, 10 bytes: 40.25 symbols of 128/41700 s = 123_549.16 µs.
        assert_eq!(lora(7, 41_700, 5).airtime_us(10), 123_550);
    }

    #[test]
    fn header_crc_and_coding_rate_change_airtime() {
        let base = lora(7, 125_000, 5);
        // Implicit header: (80 - 28 + 28 + 16 - 20) / 28 -> 3 blocks -> 23 symbols.
        let implicit = RadioSettings {
            explicit_header: false,
            ..base
        };
        assert_eq!(implicit.airtime_us(10), 36_096);
        // No CRC: (80 - 28 + 28) / 28 -> 3 blocks.
        let no_crc = RadioSettings { crc: false, ..base };
        assert_eq!(no_crc.airtime_us(10), 36_096);
        // CR 4/8: 4 blocks of 8 symbols -> 40 payload symbols, 52.25 total.
        assert_eq!(lora(7, 125_000, 8).airtime_us(10), 53_504);
        // An empty payload still has the 8 fixed symbols (plus one block).
        assert_eq!(base.airtime_us(0), (12_250 + 13_000) * 1_024 / 1_000);
    }

    #[test]
    fn sf5_and_sf6_use_the_sx126x_variant() {
        // Semtech sx126x radio.c: ceil((80 + 16 - 20 + 20) / 20) = 5 blocks of 5 symbols,
        // preamble raised to 12: 12 + 6.25 + 8 + 25 = 51.25 symbols of 256 µs.
        assert_eq!(lora(5, 125_000, 5).airtime_us(10), 13_120);
        assert_eq!(lora(5, 125_000, 5).effective_preamble_symbols(), 12);
        // SF6: ceil((80 + 16 - 24 + 20) / 24) = 4 blocks -> 12 + 6.25 + 8 + 20 = 46.25.
        assert_eq!(lora(6, 125_000, 5).airtime_us(10), 23_680);
        assert_eq!(lora(7, 125_000, 5).effective_preamble_symbols(), 8);
    }

    #[test]
    fn raw_bitrate() {
        assert_eq!(lora(9, 125_000, 5).raw_bitrate_bps(), 1757.8125);
        assert!((lora(12, 125_000, 5).raw_bitrate_bps() - 292.97).abs() < 0.01);
        assert!((lora(7, 125_000, 5).raw_bitrate_bps() - 5_468.75).abs() < 1e-9);
    }

    #[test]
    fn arithmetic_is_total_on_garbage_settings() {
        let garbage = RadioSettings {
            frequency_hz: 0,
            bandwidth_hz: 0,
            spreading_factor: 255,
            coding_rate: 0,
            tx_power_dbm: i8::MIN,
            preamble_symbols: u16::MAX,
            explicit_header: false,
            crc: false,
        };
        assert!(garbage.validate().is_err());
        let _ = garbage.airtime_us(usize::MAX);
        let _ = garbage.symbol_time_us();
        let _ = garbage.raw_bitrate_bps();
        let _ = garbage.low_data_rate_optimize();
    }

    #[test]
    fn airtime_is_monotonic_in_payload() {
        for sf in 5..=12 {
            let s = lora(sf, 125_000, 5);
            for len in 0..MAX_PAYLOAD {
                assert!(s.airtime_us(len) <= s.airtime_us(len + 1));
            }
        }
    }
}
