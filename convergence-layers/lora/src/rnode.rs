//! The RNode host protocol: the KISS command set spoken by Mark Qvist's RNode firmware
//! and Reticulum's `RNodeInterface`.
//!
//! This module deals in `(command, data)` pairs only; KISS framing and escaping (FEND,
//! FESC) live in `ferry_cl_session::kiss`. Constants and reply formats are those of
//! `Framing.h`, `Utilities.h` and `RNode_Firmware.ino` in markqvist/RNode_Firmware
//! (firmware 1.x) and of `RNS/Interfaces/RNodeInterface.py` in markqvist/Reticulum.
//!
//! A host detects an RNode with [`detect_commands`], configures it with
//! [`config_commands`], feeds each frame the RNode sends to [`parse_reply`] and checks
//! the echoed settings with [`check_echo`]. Every setting command is answered with the
//! value the firmware applied, which may differ from the request (it clamps the power
//! to what the modem supports, for instance).
//!
//! # On air
//!
//! In its normal (non-promiscuous) mode the firmware prepends [`AIR_HEADER_BYTES`] = 1
//! header byte to every LoRa frame: a random sequence number in the high nibble and the
//! split flag [`FLAG_SPLIT`] in the low one. A packet of more than 254 bytes (up to
//! [`MAX_PACKET`] = 508) is sent as two LoRa frames carrying the same header, the first
//! with 254 packet bytes ([`packet_airtime_us`]). The firmware also chooses its own
//! preamble length ([`firmware_preamble_symbols`]), always uses an explicit header and
//! always turns the payload CRC on.

use thiserror::Error;

use crate::radio::{RadioError, RadioSettings};

/// Data frame: a packet to send, or one received.
pub const CMD_DATA: u8 = 0x00;
/// Carrier frequency, u32 big-endian Hz (0 asks for the current value).
pub const CMD_FREQUENCY: u8 = 0x01;
/// Bandwidth, u32 big-endian Hz (0 asks for the current value).
pub const CMD_BANDWIDTH: u8 = 0x02;
/// Transmit power, one byte in dBm (0xFF asks for the current value).
pub const CMD_TXPOWER: u8 = 0x03;
/// Spreading factor, one byte (0xFF asks).
pub const CMD_SF: u8 = 0x04;
/// Coding rate denominator 5..=8, one byte (0xFF asks).
pub const CMD_CR: u8 = 0x05;
/// Radio state: [`RADIO_STATE_OFF`], [`RADIO_STATE_ON`] or [`RADIO_STATE_ASK`].
pub const CMD_RADIO_STATE: u8 = 0x06;
/// Radio lock state (whether the radio lacks a complete configuration).
pub const CMD_RADIO_LOCK: u8 = 0x07;
/// Detection: the host sends [`DETECT_REQ`], an RNode answers [`DETECT_RESP`].
pub const CMD_DETECT: u8 = 0x08;
/// Implicit header length (0 for explicit header mode).
pub const CMD_IMPLICIT: u8 = 0x09;
/// The host leaves (data 0xFF).
pub const CMD_LEAVE: u8 = 0x0A;
/// Short-term airtime limit, u16 big-endian in hundredths of a percent.
pub const CMD_ST_ALOCK: u8 = 0x0B;
/// Long-term airtime limit, u16 big-endian in hundredths of a percent.
pub const CMD_LT_ALOCK: u8 = 0x0C;
/// Promiscuous mode on (0x01) or off (0x00).
pub const CMD_PROMISC: u8 = 0x0E;
/// Flow control: the RNode reports whether its transmit queue has room (0x01) or not.
pub const CMD_READY: u8 = 0x0F;
/// Received-packet counter, u32 big-endian.
pub const CMD_STAT_RX: u8 = 0x21;
/// Transmitted-packet counter, u32 big-endian.
pub const CMD_STAT_TX: u8 = 0x22;
/// RSSI of the last packet: one byte, dBm + [`RSSI_OFFSET`].
pub const CMD_STAT_RSSI: u8 = 0x23;
/// SNR of the last packet: one signed byte in quarter dB.
pub const CMD_STAT_SNR: u8 = 0x24;
/// Board model, one byte.
pub const CMD_BOARD: u8 = 0x47;
/// Platform (AVR, ESP32, nRF52...), one byte.
pub const CMD_PLATFORM: u8 = 0x48;
/// MCU variant, one byte.
pub const CMD_MCU: u8 = 0x49;
/// Firmware version: major and minor bytes.
pub const CMD_FW_VERSION: u8 = 0x50;
/// An error report: one byte, one of the `ERROR_*` codes.
pub const CMD_ERROR: u8 = 0x90;

/// The data byte of a detection request.
pub const DETECT_REQ: u8 = 0x73;
/// The data byte of a detection answer.
pub const DETECT_RESP: u8 = 0x46;
/// Radio off.
pub const RADIO_STATE_OFF: u8 = 0x00;
/// Radio on.
pub const RADIO_STATE_ON: u8 = 0x01;
/// Asks for the radio state (used by Reticulum).
pub const RADIO_STATE_ASK: u8 = 0xFF;

/// Error code: the radio could not be initialised.
pub const ERROR_INITRADIO: u8 = 0x01;
/// Error code: a transmission failed.
pub const ERROR_TXFAILED: u8 = 0x02;
/// Error code: the EEPROM is locked.
pub const ERROR_EEPROM_LOCKED: u8 = 0x03;
/// Error code: the transmit queue is full.
pub const ERROR_QUEUE_FULL: u8 = 0x04;
/// Error code: the firmware is low on memory.
pub const ERROR_MEMORY_LOW: u8 = 0x05;
/// Error code: the modem timed out.
pub const ERROR_MODEM_TIMEOUT: u8 = 0x06;

/// What the firmware adds to the RSSI in dBm before sending it as one byte (157, the
/// SX127x packet-RSSI offset).
pub const RSSI_OFFSET: i16 = 157;
/// The split flag in the low nibble of the on-air header byte.
pub const FLAG_SPLIT: u8 = 0x01;
/// Header bytes the firmware adds on air to each LoRa frame (its `HEADER_L`).
pub const AIR_HEADER_BYTES: usize = 1;
/// The largest LoRa frame the firmware sends, header included (its `SINGLE_MTU`).
pub const SINGLE_FRAME_BYTES: usize = 255;
/// The largest packet a host may hand the firmware (its `MTU`): two frames' worth.
pub const MAX_PACKET: usize = 508;
/// How far the echoed frequency may be from the requested one, in Hz: the modem
/// rounds to its synthesiser step (Reticulum allows the same 100 Hz).
pub const FREQUENCY_TOLERANCE_HZ: u32 = 100;

/// A setting the RNode echoes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Setting {
    /// [`CMD_FREQUENCY`].
    Frequency,
    /// [`CMD_BANDWIDTH`].
    Bandwidth,
    /// [`CMD_TXPOWER`].
    TxPower,
    /// [`CMD_SF`].
    SpreadingFactor,
    /// [`CMD_CR`].
    CodingRate,
    /// [`CMD_RADIO_STATE`].
    RadioState,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Setting::Frequency => "frequency",
            Setting::Bandwidth => "bandwidth",
            Setting::TxPower => "tx power",
            Setting::SpreadingFactor => "spreading factor",
            Setting::CodingRate => "coding rate",
            Setting::RadioState => "radio state",
        })
    }
}

/// A malformed reply, a refused configuration, or an RNode that did not apply it.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum RnodeError {
    /// A reply has the wrong number of data bytes for its command.
    #[error("RNode reply 0x{command:02x} has {got} data bytes, expected {expected}")]
    Length {
        /// The command byte.
        command: u8,
        /// The length the firmware sends.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A data frame or packet is longer than [`MAX_PACKET`].
    #[error("RNode packet of {len} bytes exceeds {max}")]
    TooLong {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A reply byte outside the values the firmware sends.
    #[error("RNode reply 0x{command:02x} has unexpected value 0x{value:02x}")]
    UnexpectedValue {
        /// The command byte.
        command: u8,
        /// The value received.
        value: u8,
    },
    /// The RNode applied a different value than requested.
    #[error("RNode {setting} is {reported}, requested {requested}")]
    Mismatch {
        /// Which setting.
        setting: Setting,
        /// The value sent.
        requested: i64,
        /// The value echoed.
        reported: i64,
    },
    /// The RNode never echoed a setting.
    #[error("RNode did not report its {0}")]
    MissingEcho(Setting),
    /// The RNode reported an error (one of the `ERROR_*` codes).
    #[error("RNode reported error 0x{0:02x}")]
    Device(u8),
    /// The settings ask for something the RNode protocol cannot express.
    #[error("RNode cannot be configured with {0}")]
    Unsupported(&'static str),
    /// The settings are invalid.
    #[error(transparent)]
    Radio(#[from] RadioError),
}

/// One frame from the RNode, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The answer to a detection request ([`DETECT_RESP`]).
    Detected,
    /// The frequency applied, in Hz.
    Frequency(u32),
    /// The bandwidth applied, in Hz.
    Bandwidth(u32),
    /// The transmit power applied, in dBm. The firmware sends an unsigned byte; it is
    /// read as two's complement, so a fresh RNode's "unset" 0xFF reads as -1.
    TxPower(i8),
    /// The spreading factor applied.
    SpreadingFactor(u8),
    /// The coding rate denominator applied (5..=8).
    CodingRate(u8),
    /// The radio state ([`RADIO_STATE_ON`] or [`RADIO_STATE_OFF`]).
    RadioState(u8),
    /// The firmware version.
    FirmwareVersion {
        /// Major version.
        major: u8,
        /// Minor version (firmware 1.55 sends 0x55 = 85; Reticulum prints it in decimal).
        minor: u8,
    },
    /// The platform byte.
    Platform(u8),
    /// The MCU byte.
    Mcu(u8),
    /// The board model byte.
    Board(u8),
    /// Flow control: whether the transmit queue has room.
    Ready(bool),
    /// RSSI of the last received packet, in dBm.
    Rssi(i16),
    /// SNR of the last received packet, in quarter dB (see [`Reply::snr_db`]).
    Snr(i8),
    /// Packets received since boot.
    RxPackets(u32),
    /// Packets transmitted since boot.
    TxPackets(u32),
    /// An error report (one of the `ERROR_*` codes).
    Error(u8),
    /// A received packet (the on-air header already removed by the firmware).
    Data(Vec<u8>),
    /// Any other command, undecoded.
    Other {
        /// The command byte.
        command: u8,
        /// Its data bytes.
        data: Vec<u8>,
    },
}

impl Reply {
    /// The SNR in dB, for a [`Reply::Snr`].
    pub fn snr_db(&self) -> Option<f32> {
        match self {
            Reply::Snr(quarter_db) => Some(f32::from(*quarter_db) * 0.25),
            _ => None,
        }
    }
}

/// The commands a host sends to detect an RNode, as Reticulum does: a detection
/// request and queries for the firmware version, platform and MCU.
pub fn detect_commands() -> Vec<(u8, Vec<u8>)> {
    vec![
        (CMD_DETECT, vec![DETECT_REQ]),
        (CMD_FW_VERSION, vec![0x00]),
        (CMD_PLATFORM, vec![0x00]),
        (CMD_MCU, vec![0x00]),
    ]
}

/// The commands that configure an RNode for `settings` and turn its radio on:
/// frequency and bandwidth (u32 big-endian), power, SF and CR (one byte each), then
/// [`RADIO_STATE_ON`], in Reticulum's order.
///
/// Refuses invalid settings and those the protocol cannot express: a negative power
/// (the firmware reads the byte as unsigned and would clamp it to its maximum),
/// implicit header mode or no CRC (the firmware always uses an explicit header and a
/// CRC). The preamble length is not sent: the firmware chooses it
/// ([`firmware_preamble_symbols`]).
pub fn config_commands(settings: &RadioSettings) -> Result<Vec<(u8, Vec<u8>)>, RnodeError> {
    settings.validate()?;
    let power = u8::try_from(settings.tx_power_dbm)
        .map_err(|_| RnodeError::Unsupported("a negative transmit power"))?;
    if !settings.explicit_header {
        return Err(RnodeError::Unsupported("implicit header mode"));
    }
    if !settings.crc {
        return Err(RnodeError::Unsupported("the payload CRC off"));
    }
    Ok(vec![
        (CMD_FREQUENCY, settings.frequency_hz.to_be_bytes().to_vec()),
        (CMD_BANDWIDTH, settings.bandwidth_hz.to_be_bytes().to_vec()),
        (CMD_TXPOWER, vec![power]),
        (CMD_SF, vec![settings.spreading_factor]),
        (CMD_CR, vec![settings.coding_rate]),
        (CMD_RADIO_STATE, vec![RADIO_STATE_ON]),
    ])
}

fn exact<const N: usize>(command: u8, data: &[u8]) -> Result<[u8; N], RnodeError> {
    <[u8; N]>::try_from(data).map_err(|_| RnodeError::Length {
        command,
        expected: N,
        got: data.len(),
    })
}

/// Decodes one (unescaped) frame from the RNode. Never panics; unknown commands become
/// [`Reply::Other`].
pub fn parse_reply(command: u8, data: &[u8]) -> Result<Reply, RnodeError> {
    let byte = |c| exact::<1>(c, data).map(|[b]| b);
    let word = |c| exact::<4>(c, data).map(u32::from_be_bytes);
    Ok(match command {
        CMD_DATA => {
            if data.len() > MAX_PACKET {
                return Err(RnodeError::TooLong {
                    len: data.len(),
                    max: MAX_PACKET,
                });
            }
            Reply::Data(data.to_vec())
        }
        CMD_DETECT => match byte(command)? {
            DETECT_RESP => Reply::Detected,
            value => return Err(RnodeError::UnexpectedValue { command, value }),
        },
        CMD_FREQUENCY => Reply::Frequency(word(command)?),
        CMD_BANDWIDTH => Reply::Bandwidth(word(command)?),
        CMD_TXPOWER => Reply::TxPower(i8::from_ne_bytes([byte(command)?])),
        CMD_SF => Reply::SpreadingFactor(byte(command)?),
        CMD_CR => Reply::CodingRate(byte(command)?),
        CMD_RADIO_STATE => Reply::RadioState(byte(command)?),
        CMD_FW_VERSION => {
            let [major, minor] = exact::<2>(command, data)?;
            Reply::FirmwareVersion { major, minor }
        }
        CMD_PLATFORM => Reply::Platform(byte(command)?),
        CMD_MCU => Reply::Mcu(byte(command)?),
        CMD_BOARD => Reply::Board(byte(command)?),
        CMD_READY => match byte(command)? {
            0x00 => Reply::Ready(false),
            0x01 => Reply::Ready(true),
            value => return Err(RnodeError::UnexpectedValue { command, value }),
        },
        CMD_STAT_RSSI => Reply::Rssi(i16::from(byte(command)?) - RSSI_OFFSET),
        CMD_STAT_SNR => Reply::Snr(i8::from_ne_bytes([byte(command)?])),
        CMD_STAT_RX => Reply::RxPackets(word(command)?),
        CMD_STAT_TX => Reply::TxPackets(word(command)?),
        CMD_ERROR => Reply::Error(byte(command)?),
        _ => Reply::Other {
            command,
            data: data.to_vec(),
        },
    })
}

/// Checks that the RNode applied `settings`, from the replies received after
/// [`config_commands`]: the last echo of each setting must match (the frequency within
/// [`FREQUENCY_TOLERANCE_HZ`]) and the radio must be on. Any [`Reply::Error`] among the
/// replies fails the check with [`RnodeError::Device`].
pub fn check_echo(settings: &RadioSettings, replies: &[Reply]) -> Result<(), RnodeError> {
    if let Some(code) = replies.iter().find_map(|r| match r {
        Reply::Error(code) => Some(*code),
        _ => None,
    }) {
        return Err(RnodeError::Device(code));
    }
    let last = |setting: Setting| {
        replies
            .iter()
            .rev()
            .find_map(|r| match (setting, r) {
                (Setting::Frequency, Reply::Frequency(v)) => Some(i64::from(*v)),
                (Setting::Bandwidth, Reply::Bandwidth(v)) => Some(i64::from(*v)),
                (Setting::TxPower, Reply::TxPower(v)) => Some(i64::from(*v)),
                (Setting::SpreadingFactor, Reply::SpreadingFactor(v)) => Some(i64::from(*v)),
                (Setting::CodingRate, Reply::CodingRate(v)) => Some(i64::from(*v)),
                (Setting::RadioState, Reply::RadioState(v)) => Some(i64::from(*v)),
                _ => None,
            })
            .ok_or(RnodeError::MissingEcho(setting))
    };
    let expected = [
        (Setting::Frequency, i64::from(settings.frequency_hz)),
        (Setting::Bandwidth, i64::from(settings.bandwidth_hz)),
        (Setting::TxPower, i64::from(settings.tx_power_dbm)),
        (
            Setting::SpreadingFactor,
            i64::from(settings.spreading_factor),
        ),
        (Setting::CodingRate, i64::from(settings.coding_rate)),
        (Setting::RadioState, i64::from(RADIO_STATE_ON)),
    ];
    for (setting, requested) in expected {
        let reported = last(setting)?;
        let tolerance = match setting {
            Setting::Frequency => i64::from(FREQUENCY_TOLERANCE_HZ),
            _ => 0,
        };
        if (reported - requested).abs() > tolerance {
            return Err(RnodeError::Mismatch {
                setting,
                requested,
                reported,
            });
        }
    }
    Ok(())
}

/// The preamble length, in symbols, the RNode firmware (ESP32 and nRF52 builds, its
/// `updateBitrate()`) programs for `settings`: enough symbols for 24 ms (6 ms above
/// 30 kbit/s), at least 18. Earlier AVR builds do not adapt it.
pub fn firmware_preamble_symbols(settings: &RadioSettings) -> u16 {
    let sf = settings.spreading_factor.clamp(5, 12);
    let bw = f64::from(settings.bandwidth_hz.max(1));
    let cr = f64::from(settings.coding_rate.clamp(5, 8));
    let chips = f64::from(1u32 << sf);
    // The firmware truncates the bit rate to an integer before comparing it.
    let bitrate = (f64::from(sf) * ((4.0 / cr) / (chips / (bw / 1000.0))) * 1000.0).floor();
    let target_ms = if bitrate > 30_000.0 {
        24.0 - 18.0
    } else {
        24.0
    };
    let symbol_ms = chips / bw * 1000.0;
    let symbols = target_ms / symbol_ms;
    if symbols < 18.0 {
        18
    } else {
        // At most 6 ms / 0.064 ms (SF5 at 500 kHz) = 94 symbols; the cast cannot wrap.
        symbols.ceil().min(f64::from(u16::MAX)) as u16
    }
}

/// `settings` as an RNode actually transmits them: its own preamble length
/// ([`firmware_preamble_symbols`]), an explicit header and the CRC on.
pub fn firmware_settings(settings: &RadioSettings) -> RadioSettings {
    RadioSettings {
        preamble_symbols: firmware_preamble_symbols(settings),
        explicit_header: true,
        crc: true,
        ..*settings
    }
}

/// Total airtime, in µs, of a packet of `packet_len` bytes handed to an RNode: one LoRa
/// frame of `packet_len + 1` bytes, or for more than 254 bytes two frames of 255 and
/// `packet_len - 254 + 1` bytes, with [`firmware_settings`]. Errors beyond
/// [`MAX_PACKET`].
pub fn packet_airtime_us(settings: &RadioSettings, packet_len: usize) -> Result<u64, RnodeError> {
    if packet_len > MAX_PACKET {
        return Err(RnodeError::TooLong {
            len: packet_len,
            max: MAX_PACKET,
        });
    }
    let air = firmware_settings(settings);
    let first = SINGLE_FRAME_BYTES - AIR_HEADER_BYTES;
    Ok(if packet_len <= first {
        air.airtime_us(packet_len + AIR_HEADER_BYTES)
    } else {
        air.airtime_us(SINGLE_FRAME_BYTES) + air.airtime_us(packet_len - first + AIR_HEADER_BYTES)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constants_match_the_firmware() {
        let table = [
            (CMD_DATA, 0x00),
            (CMD_FREQUENCY, 0x01),
            (CMD_BANDWIDTH, 0x02),
            (CMD_TXPOWER, 0x03),
            (CMD_SF, 0x04),
            (CMD_CR, 0x05),
            (CMD_RADIO_STATE, 0x06),
            (CMD_RADIO_LOCK, 0x07),
            (CMD_DETECT, 0x08),
            (CMD_IMPLICIT, 0x09),
            (CMD_LEAVE, 0x0A),
            (CMD_ST_ALOCK, 0x0B),
            (CMD_LT_ALOCK, 0x0C),
            (CMD_PROMISC, 0x0E),
            (CMD_READY, 0x0F),
            (CMD_STAT_RX, 0x21),
            (CMD_STAT_TX, 0x22),
            (CMD_STAT_RSSI, 0x23),
            (CMD_STAT_SNR, 0x24),
            (CMD_BOARD, 0x47),
            (CMD_PLATFORM, 0x48),
            (CMD_MCU, 0x49),
            (CMD_FW_VERSION, 0x50),
            (CMD_ERROR, 0x90),
            (DETECT_REQ, 0x73),
            (DETECT_RESP, 0x46),
            (RADIO_STATE_OFF, 0x00),
            (RADIO_STATE_ON, 0x01),
            (RADIO_STATE_ASK, 0xFF),
        ];
        for (constant, value) in table {
            assert_eq!(constant, value);
        }
        assert_eq!(
            (AIR_HEADER_BYTES, SINGLE_FRAME_BYTES, MAX_PACKET),
            (1, 255, 508)
        );
    }

    #[test]
    fn detect_is_what_reticulum_sends() {
        // RNodeInterface.detect(): FEND 08 73 FEND 50 00 FEND 48 00 FEND 49 00 FEND.
        assert_eq!(
            detect_commands(),
            vec![
                (0x08, vec![0x73]),
                (0x50, vec![0x00]),
                (0x48, vec![0x00]),
                (0x49, vec![0x00])
            ]
        );
    }

    #[test]
    fn config_encodes_big_endian_and_ends_with_radio_on() {
        let s = RadioSettings::default();
        assert_eq!(
            config_commands(&s).unwrap(),
            vec![
                (CMD_FREQUENCY, vec![0x33, 0xD3, 0xE6, 0x08]), // 869_525_000
                (CMD_BANDWIDTH, vec![0x00, 0x01, 0xE8, 0x48]), // 125_000
                (CMD_TXPOWER, vec![14]),
                (CMD_SF, vec![9]),
                (CMD_CR, vec![5]),
                (CMD_RADIO_STATE, vec![RADIO_STATE_ON]),
            ]
        );
        let refuse = |s: RadioSettings| config_commands(&s).unwrap_err();
        assert!(matches!(
            refuse(RadioSettings {
                tx_power_dbm: -3,
                ..s
            }),
            RnodeError::Unsupported(_)
        ));
        assert!(matches!(
            refuse(RadioSettings {
                explicit_header: false,
                ..s
            }),
            RnodeError::Unsupported(_)
        ));
        assert!(matches!(
            refuse(RadioSettings { crc: false, ..s }),
            RnodeError::Unsupported(_)
        ));
        assert_eq!(
            refuse(RadioSettings {
                spreading_factor: 13,
                ..s
            }),
            RnodeError::Radio(RadioError::SpreadingFactor(13))
        );
    }

    #[test]
    fn replies_decode() {
        let ok = |c, d: &[u8]| parse_reply(c, d).unwrap();
        assert_eq!(ok(CMD_DETECT, &[DETECT_RESP]), Reply::Detected);
        assert_eq!(
            ok(CMD_FREQUENCY, &[0x33, 0xD3, 0xE6, 0x08]),
            Reply::Frequency(869_525_000)
        );
        assert_eq!(
            ok(CMD_BANDWIDTH, &[0, 1, 0xE8, 0x48]),
            Reply::Bandwidth(125_000)
        );
        assert_eq!(ok(CMD_TXPOWER, &[17]), Reply::TxPower(17));
        assert_eq!(ok(CMD_TXPOWER, &[0xFF]), Reply::TxPower(-1));
        assert_eq!(ok(CMD_SF, &[7]), Reply::SpreadingFactor(7));
        assert_eq!(ok(CMD_CR, &[8]), Reply::CodingRate(8));
        assert_eq!(ok(CMD_RADIO_STATE, &[1]), Reply::RadioState(RADIO_STATE_ON));
        assert_eq!(
            ok(CMD_FW_VERSION, &[1, 0x55]),
            Reply::FirmwareVersion {
                major: 1,
                minor: 0x55
            }
        );
        assert_eq!(ok(CMD_PLATFORM, &[0x80]), Reply::Platform(0x80));
        assert_eq!(ok(CMD_MCU, &[0x81]), Reply::Mcu(0x81));
        assert_eq!(ok(CMD_BOARD, &[0x32]), Reply::Board(0x32));
        assert_eq!(ok(CMD_READY, &[1]), Reply::Ready(true));
        assert_eq!(ok(CMD_READY, &[0]), Reply::Ready(false));
        // RSSI byte = dBm + 157; SNR is a signed quarter-dB byte.
        assert_eq!(ok(CMD_STAT_RSSI, &[57]), Reply::Rssi(-100));
        assert_eq!(ok(CMD_STAT_SNR, &[0xF6]), Reply::Snr(-10));
        assert_eq!(ok(CMD_STAT_SNR, &[0xF6]).snr_db(), Some(-2.5));
        assert_eq!(ok(CMD_STAT_SNR, &[40]).snr_db(), Some(10.0));
        assert_eq!(ok(CMD_STAT_RX, &[0, 0, 1, 0]), Reply::RxPackets(256));
        assert_eq!(ok(CMD_STAT_TX, &[0, 0, 0, 3]), Reply::TxPackets(3));
        assert_eq!(
            ok(CMD_ERROR, &[ERROR_TXFAILED]),
            Reply::Error(ERROR_TXFAILED)
        );
        assert_eq!(ok(CMD_DATA, b"hello"), Reply::Data(b"hello".to_vec()));
        assert_eq!(ok(CMD_DATA, &[]), Reply::Data(vec![]));
        assert_eq!(
            ok(0x25, &[1, 2, 3]),
            Reply::Other {
                command: 0x25,
                data: vec![1, 2, 3]
            }
        );
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        assert_eq!(
            parse_reply(CMD_FREQUENCY, &[1, 2, 3]),
            Err(RnodeError::Length {
                command: CMD_FREQUENCY,
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            parse_reply(CMD_SF, &[]),
            Err(RnodeError::Length {
                command: CMD_SF,
                expected: 1,
                got: 0
            })
        );
        assert_eq!(
            parse_reply(CMD_FW_VERSION, &[1]),
            Err(RnodeError::Length {
                command: CMD_FW_VERSION,
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            parse_reply(CMD_DETECT, &[0x00]),
            Err(RnodeError::UnexpectedValue {
                command: CMD_DETECT,
                value: 0
            })
        );
        assert_eq!(
            parse_reply(CMD_READY, &[2]),
            Err(RnodeError::UnexpectedValue {
                command: CMD_READY,
                value: 2
            })
        );
        assert_eq!(
            parse_reply(CMD_DATA, &[0; MAX_PACKET + 1]),
            Err(RnodeError::TooLong {
                len: MAX_PACKET + 1,
                max: MAX_PACKET
            })
        );
        assert!(parse_reply(CMD_DATA, &[0; MAX_PACKET]).is_ok());
    }

    fn echoes(s: &RadioSettings) -> Vec<Reply> {
        config_commands(s)
            .unwrap()
            .into_iter()
            .map(|(c, d)| parse_reply(c, &d).unwrap())
            .collect()
    }

    #[test]
    fn check_echo_accepts_a_faithful_rnode() {
        let s = RadioSettings::default();
        assert_eq!(check_echo(&s, &echoes(&s)), Ok(()));
        // The synthesiser step may move the frequency a little.
        let mut r = echoes(&s);
        r.push(Reply::Frequency(s.frequency_hz - 61));
        r.push(Reply::Rssi(-90));
        assert_eq!(check_echo(&s, &r), Ok(()));
    }

    #[test]
    fn check_echo_reports_what_differs() {
        let s = RadioSettings {
            tx_power_dbm: 22,
            ..RadioSettings::default()
        };
        // An SX1276 RNode clamps 22 dBm to 17.
        let mut r = echoes(&s);
        r[2] = Reply::TxPower(17);
        assert_eq!(
            check_echo(&s, &r),
            Err(RnodeError::Mismatch {
                setting: Setting::TxPower,
                requested: 22,
                reported: 17
            })
        );
        let mut r = echoes(&s);
        r.push(Reply::Frequency(s.frequency_hz + 101));
        assert!(matches!(
            check_echo(&s, &r),
            Err(RnodeError::Mismatch {
                setting: Setting::Frequency,
                ..
            })
        ));
        let mut r = echoes(&s);
        r.push(Reply::RadioState(RADIO_STATE_OFF));
        assert!(matches!(
            check_echo(&s, &r),
            Err(RnodeError::Mismatch {
                setting: Setting::RadioState,
                ..
            })
        ));
        let mut r = echoes(&s);
        r.remove(4);
        assert_eq!(
            check_echo(&s, &r),
            Err(RnodeError::MissingEcho(Setting::CodingRate))
        );
        let mut r = echoes(&s);
        r.push(Reply::Error(ERROR_INITRADIO));
        assert_eq!(check_echo(&s, &r), Err(RnodeError::Device(ERROR_INITRADIO)));
        assert_eq!(
            RnodeError::Mismatch {
                setting: Setting::TxPower,
                requested: 22,
                reported: 17
            }
            .to_string(),
            "RNode tx power is 17, requested 22"
        );
    }

    #[test]
    fn firmware_preamble() {
        let at = |sf, bw| RadioSettings {
            spreading_factor: sf,
            bandwidth_hz: bw,
            ..RadioSettings::default()
        };
        // 24 ms at 1.024 ms per symbol: 23.4 -> 24.
        assert_eq!(firmware_preamble_symbols(&at(7, 125_000)), 24);
        // Long symbols: the minimum of 18.
        assert_eq!(firmware_preamble_symbols(&at(9, 125_000)), 18);
        assert_eq!(firmware_preamble_symbols(&at(12, 125_000)), 18);
        // Above 30 kbit/s (SF5/500 kHz: 62.5 kbit/s): 6 ms / 64 µs = 93.75 -> 94.
        assert_eq!(firmware_preamble_symbols(&at(5, 500_000)), 94);
        let f = firmware_settings(&RadioSettings {
            explicit_header: false,
            crc: false,
            ..at(7, 125_000)
        });
        assert!(f.explicit_header && f.crc);
        assert_eq!(f.preamble_symbols, 24);
    }

    #[test]
    fn packet_airtime_counts_header_and_split() {
        let s = RadioSettings::default(); // SF9/125k: preamble 18
        let air = firmware_settings(&s);
        assert_eq!(packet_airtime_us(&s, 0).unwrap(), air.airtime_us(1));
        assert_eq!(packet_airtime_us(&s, 254).unwrap(), air.airtime_us(255));
        assert_eq!(
            packet_airtime_us(&s, 255).unwrap(),
            air.airtime_us(255) + air.airtime_us(2)
        );
        assert_eq!(
            packet_airtime_us(&s, MAX_PACKET).unwrap(),
            2 * air.airtime_us(255)
        );
        assert!(packet_airtime_us(&s, MAX_PACKET + 1).is_err());
        // SF9, 100-byte packet: 101 bytes on air, (808 - 36 + 44) / 36 -> 23 blocks,
        // 18 + 4.25 + 8 + 115 = 145.25 symbols of 4.096 ms.
        assert_eq!(packet_airtime_us(&s, 100).unwrap(), 594_944);
    }

    proptest! {
        #[test]
        fn parse_reply_never_panics(command: u8, data in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_reply(command, &data);
        }

        #[test]
        fn settings_round_trip_through_echoes(
            sf in 5u8..=12, cr in 5u8..=8, power in 0i8..=22,
            bw in prop::sample::select(crate::radio::BANDWIDTHS_HZ.to_vec()),
            freq in 137_000_000u32..=1_020_000_000,
        ) {
            let s = RadioSettings {
                frequency_hz: freq, bandwidth_hz: bw, spreading_factor: sf,
                coding_rate: cr, tx_power_dbm: power, ..RadioSettings::default()
            };
            prop_assert_eq!(check_echo(&s, &echoes(&s)), Ok(()));
        }
    }
}
