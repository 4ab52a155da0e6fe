//! LoRa radio arithmetic and control for Ferry, sans IO.
//!
//! - [`radio`]: [`RadioSettings`] (frequency, bandwidth, SF, CR, power, preamble,
//!   header, CRC), their validation, symbol time, raw bit rate and Semtech's
//!   time-on-air formula.
//! - [`region`]: regulatory [`Region`]s: the EU868 sub-band duty cycles and the US915
//!   400 ms dwell limit.
//! - [`budget`]: [`DutyBudget`], a token bucket of airtime that enforces a duty cycle
//!   with time supplied by the caller.
//! - [`rnode`]: the RNode KISS command set (detection, configuration, replies, echo
//!   checks) as `(command, data)` pairs; KISS framing itself is in
//!   `ferry_cl_session::kiss`.
//!
//! Nothing here reads a clock or does I/O: times are `u64` microseconds chosen by the
//! caller.
//!
//! ```
//! use ferry_cl_lora::{duty_cycle, DutyBudget, RadioSettings, Region};
//!
//! // SF9, 125 kHz, CR 4/5 on 869.525 MHz (the EU868 10 % sub-band).
//! let radio = RadioSettings::default();
//! radio.validate()?;
//! let airtime = radio.airtime_us(200);
//! assert_eq!(airtime, 1_004_544); // 245.25 symbols of 4.096 ms
//!
//! let duty = duty_cycle(Region::Eu868, radio.frequency_hz)?;
//! assert_eq!(duty, Some(0.1));
//! let mut budget = DutyBudget::for_duty(duty)?; // 360 s per one-hour window
//! let mut now_us = 0;
//! let mut sent = 0;
//! while budget.spend(now_us, airtime).is_ok() {
//!     sent += 1;
//! }
//! assert_eq!(sent, 358); // the full bucket: 360 s / 1.0045 s
//! now_us = budget.ready_at(now_us, airtime);
//! budget.spend(now_us, airtime)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod budget;
pub mod radio;
pub mod region;
pub mod rnode;

pub use budget::{BudgetError, DutyBudget, DEFAULT_WINDOW_US};
pub use radio::{RadioError, RadioSettings, MAX_PAYLOAD};
pub use region::{duty_cycle, max_dwell_us, max_payload_for_dwell, Region};
pub use rnode::{check_echo, config_commands, detect_commands, parse_reply, Reply, RnodeError};
