//! Regional rules for the ISM bands LoRa radios use: EU868 duty cycles per sub-band and
//! the US915 dwell time.
//!
//! # EU868 (ETSI EN 300 220, ERC Recommendation 70-03)
//!
//! The 863–870 MHz band is split into sub-bands with their own duty-cycle limits. This
//! table is the one LoRaWAN stacks enforce for the EU863-870 plan (Semtech's
//! LoRaMac-node `RegionEU868.c` `VerifyRfFreq` and the `EU868_BAND*` definitions in
//! `RegionEU868.h`):
//!
//! | sub-band (MHz)      | duty cycle |
//! | ------------------- | ---------- |
//! | 863.000 – <865.000  | 0.1 %      |
//! | 865.000 – 868.000   | 1 %        |
//! | >868.000 – 868.600  | 1 %        |
//! | 868.700 – 869.200   | 0.1 %      |
//! | 869.400 – 869.650   | 10 %       |
//! | 869.700 – 870.000   | 1 %        |
//!
//! 868.6–868.7, 869.2–869.4 and 869.65–869.7 MHz belong to no sub-band here
//! ([`RadioError::NotInSubBand`]). Note that 863–865 MHz is 0.1 %, not 1 %: the 1 %
//! applies from 865 MHz. The duty cycle is the fraction of ETSI's one-hour observation
//! period the transmitter may be on (hence [`crate::budget::DEFAULT_WINDOW_US`]). Only the carrier frequency is checked;
//! keeping the whole channel (± bandwidth / 2) inside the sub-band is the caller's
//! choice of frequency.
//!
//! # US915 (FCC Part 15.247)
//!
//! 902–928 MHz with no duty cycle but a dwell limit of 400 ms per channel for
//! frequency-hopping systems with narrow (under 250 kHz) channels, which LoRaWAN's
//! US902-928 plan applies to every transmission ([`max_dwell_us`]).

use serde::{Deserialize, Serialize};

use crate::radio::{RadioError, RadioSettings, MAX_PAYLOAD};

/// A regulatory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Region {
    /// Europe, 863–870 MHz (serialised as `"eu868"`).
    #[serde(rename = "eu868")]
    Eu868,
    /// North America, 902–928 MHz (serialised as `"us915"`).
    #[serde(rename = "us915")]
    Us915,
    /// No regulation applied: a lab, a cable, an emulator (serialised as `"none"`).
    #[serde(rename = "none")]
    Unregulated,
}

impl Region {
    /// The region's configuration name: `"eu868"`, `"us915"` or `"none"`.
    pub fn name(self) -> &'static str {
        match self {
            Region::Eu868 => "eu868",
            Region::Us915 => "us915",
            Region::Unregulated => "none",
        }
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The EU868 band edges, in Hz.
pub const EU868_BAND_HZ: (u32, u32) = (863_000_000, 870_000_000);
/// The US915 band edges, in Hz.
pub const US915_BAND_HZ: (u32, u32) = (902_000_000, 928_000_000);
/// The US915 dwell limit per transmission, in microseconds (400 ms).
pub const US915_MAX_DWELL_US: u64 = 400_000;

/// The EU868 sub-bands (lowest Hz, highest Hz, lowest inclusive, duty cycle), as in the
/// module docs. The highest edge is always inclusive.
const EU868_SUB_BANDS: [(u32, u32, bool, f64); 6] = [
    (863_000_000, 864_999_999, true, 0.001),
    (865_000_000, 868_000_000, true, 0.01),
    (868_000_000, 868_600_000, false, 0.01),
    (868_700_000, 869_200_000, true, 0.001),
    (869_400_000, 869_650_000, true, 0.1),
    (869_700_000, 870_000_000, true, 0.01),
];

/// The duty-cycle limit (a fraction: 0.01 is 1 %) for transmitting on `frequency_hz`
/// in `region`, `None` when the region sets none (US915, unregulated).
///
/// Errors when the frequency is outside the region's band or, in EU868, outside every
/// sub-band of the table in the module docs.
pub fn duty_cycle(region: Region, frequency_hz: u32) -> Result<Option<f64>, RadioError> {
    match region {
        Region::Unregulated => Ok(None),
        Region::Us915 => {
            check_band(region, frequency_hz, US915_BAND_HZ)?;
            Ok(None)
        }
        Region::Eu868 => {
            check_band(region, frequency_hz, EU868_BAND_HZ)?;
            EU868_SUB_BANDS
                .iter()
                .find(|&&(lo, hi, lo_inclusive, _)| {
                    (frequency_hz > lo || (lo_inclusive && frequency_hz == lo))
                        && frequency_hz <= hi
                })
                .map(|&(_, _, _, duty)| Some(duty))
                .ok_or(RadioError::NotInSubBand(frequency_hz))
        }
    }
}

fn check_band(region: Region, frequency_hz: u32, (lo, hi): (u32, u32)) -> Result<(), RadioError> {
    if (lo..=hi).contains(&frequency_hz) {
        Ok(())
    } else {
        Err(RadioError::OutsideRegion {
            frequency_hz,
            region: region.name(),
        })
    }
}

/// The longest a single transmission may last in `region`, in microseconds: 400 ms in
/// US915, `None` elsewhere.
pub fn max_dwell_us(region: Region) -> Option<u64> {
    match region {
        Region::Us915 => Some(US915_MAX_DWELL_US),
        Region::Eu868 | Region::Unregulated => None,
    }
}

/// The largest payload (at most [`MAX_PAYLOAD`]) whose airtime with `settings` fits
/// the region's dwell limit; [`MAX_PAYLOAD`] when the region has none.
///
/// Returns 0 both when only an empty payload fits and when nothing fits at all;
/// compare `settings.airtime_us(0)` with [`max_dwell_us`] to tell them apart. At US915
/// and 125 kHz this gives 24, 66 and 138 bytes at SF10, SF9 and SF8: LoRaWAN's US915
/// DR0..DR2 maximum payloads (11, 53 and 125 application bytes) plus its 13 bytes of
/// overhead.
pub fn max_payload_for_dwell(settings: &RadioSettings, region: Region) -> usize {
    let Some(dwell) = max_dwell_us(region) else {
        return MAX_PAYLOAD;
    };
    // Airtime grows with the payload, so the answer is the last length that fits.
    (0..=MAX_PAYLOAD)
        .take_while(|&len| settings.airtime_us(len) <= dwell)
        .last()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu868_sub_bands() {
        let cases: [(u32, Option<f64>); 14] = [
            (863_000_000, Some(0.001)),
            (864_999_999, Some(0.001)),
            (865_000_000, Some(0.01)),
            (867_500_000, Some(0.01)),
            (868_000_000, Some(0.01)),
            (868_100_000, Some(0.01)),
            (868_600_000, Some(0.01)),
            (868_700_000, Some(0.001)),
            (869_200_000, Some(0.001)),
            (869_400_000, Some(0.1)),
            (869_525_000, Some(0.1)),
            (869_650_000, Some(0.1)),
            (869_700_000, Some(0.01)),
            (870_000_000, Some(0.01)),
        ];
        for (f, want) in cases {
            assert_eq!(duty_cycle(Region::Eu868, f), Ok(want), "{f} Hz");
        }
        for gap in [
            868_600_001,
            868_650_000,
            869_300_000,
            869_650_001,
            869_699_999,
        ] {
            assert_eq!(
                duty_cycle(Region::Eu868, gap),
                Err(RadioError::NotInSubBand(gap))
            );
        }
        for outside in [862_999_999, 870_000_001, 915_000_000] {
            assert_eq!(
                duty_cycle(Region::Eu868, outside),
                Err(RadioError::OutsideRegion {
                    frequency_hz: outside,
                    region: "eu868"
                })
            );
        }
        assert_eq!(
            RadioError::NotInSubBand(869_300_000).to_string(),
            "frequency 869300000 Hz not in an EU868 sub-band"
        );
    }

    #[test]
    fn us915_and_unregulated() {
        assert_eq!(duty_cycle(Region::Us915, 902_000_000), Ok(None));
        assert_eq!(duty_cycle(Region::Us915, 928_000_000), Ok(None));
        assert!(duty_cycle(Region::Us915, 868_100_000).is_err());
        assert_eq!(duty_cycle(Region::Unregulated, 1), Ok(None));
        assert_eq!(max_dwell_us(Region::Us915), Some(400_000));
        assert_eq!(max_dwell_us(Region::Eu868), None);
        assert_eq!(max_dwell_us(Region::Unregulated), None);
    }

    #[test]
    fn dwell_payloads_match_lorawan_us915() {
        let at = |sf: u8, bw: u32| RadioSettings {
            frequency_hz: 903_900_000,
            spreading_factor: sf,
            bandwidth_hz: bw,
            ..RadioSettings::default()
        };
        assert_eq!(max_payload_for_dwell(&at(10, 125_000), Region::Us915), 24);
        assert_eq!(max_payload_for_dwell(&at(9, 125_000), Region::Us915), 66);
        assert_eq!(max_payload_for_dwell(&at(8, 125_000), Region::Us915), 138);
        assert_eq!(
            max_payload_for_dwell(&at(7, 125_000), Region::Us915),
            MAX_PAYLOAD
        );
        // SF12/125k: not even an empty frame fits in 400 ms.
        assert!(at(12, 125_000).airtime_us(0) > US915_MAX_DWELL_US);
        assert_eq!(max_payload_for_dwell(&at(12, 125_000), Region::Us915), 0);
        assert_eq!(
            max_payload_for_dwell(&at(12, 125_000), Region::Eu868),
            MAX_PAYLOAD
        );
        for sf in 5..=12 {
            let s = at(sf, 125_000);
            let n = max_payload_for_dwell(&s, Region::Us915);
            if n < MAX_PAYLOAD && s.airtime_us(0) <= US915_MAX_DWELL_US {
                assert!(s.airtime_us(n) <= US915_MAX_DWELL_US);
                assert!(s.airtime_us(n + 1) > US915_MAX_DWELL_US);
            }
        }
    }

    #[test]
    fn serde_names() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Conf {
            region: Region,
        }
        for (region, name) in [
            (Region::Eu868, "eu868"),
            (Region::Us915, "us915"),
            (Region::Unregulated, "none"),
        ] {
            assert_eq!(region.name(), name);
            assert_eq!(region.to_string(), name);
            let json = serde_json::to_string(&Conf { region }).unwrap();
            assert_eq!(json, format!("{{\"region\":\"{name}\"}}"));
            assert_eq!(
                serde_json::from_str::<Conf>(&json).unwrap(),
                Conf { region }
            );
        }
        assert!(serde_json::from_str::<Conf>("{\"region\":\"Eu868\"}").is_err());
    }
}
