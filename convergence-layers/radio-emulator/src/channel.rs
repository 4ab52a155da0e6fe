//! The shared radio channel as a pure state machine: bytes from the nodes and the
//! time (µs since the start) go in, bytes for the nodes come out. No clock, no I/O;
//! the threads in `driver.rs` feed it real time, the unit tests virtual time.
//!
//! # Model
//!
//! Each node has one radio with a bounded FIFO transmit queue. A KISS data frame is
//! one packet. In KISS mode it is one LoRa frame of `data.len()` bytes lasting
//! `RadioSettings::airtime_us(data.len())`; over 255 bytes it is dropped. In RNode mode
//! it is sent as the firmware sends it: one header byte added, the firmware's own
//! preamble, and packets of 255 to 508 bytes split into two LoRa frames sent back to
//! back (`ferry_cl_lora::rnode::packet_airtime_us`, treated as one transmission);
//! over 508 bytes it is dropped. A radio transmits its queued packets one at a time.
//!
//! Listen before talk: a radio does not start while it hears a transmission in
//! progress (one from a node in its reach, on its frequency, bandwidth and spreading
//! factor, that has been on air for at least two symbols: detecting a preamble takes
//! that long, so radios starting within two symbols of each other still collide). When that transmission ends it waits a random contention window of
//! 0..`csma_window_slots` slots of 12 symbols (as RNode firmware's CSMA does; 0 slots
//! means it starts right away), then starts if the channel is still free, else waits
//! again. A radio with an idle channel starts at once. Hidden terminals (out of each
//! other's reach) do not hear each other and so can collide.
//!
//! At its end a transmission is delivered, as a KISS data frame, to every node in the
//! sender's reach except one whose radio is off, one on other settings, one that was
//! itself transmitting at any moment of it (half duplex), one that heard any other
//! transmission overlapping it (collision: both are lost there), and one where the
//! loss draw (probability `loss`) hits. One draw is taken per transmission and node in
//! reach, in node order, whatever the outcome, so a seed repeats for the same frames.

use std::collections::VecDeque;

use ferry_cl_lora::rnode;
use ferry_cl_lora::RadioSettings;
use ferry_cl_session::kiss::{self, Decoder, Frame, KissError};
use tracing::{debug, warn};

use crate::rng::SplitMix64;
use crate::stats::{Account, ConfiguredRadio, Stats};
use crate::{ChannelConfig, EmulatorError, Mode};

/// The largest packet in KISS mode (one LoRa frame), bytes.
pub const MAX_KISS_PACKET: usize = 255;
/// The largest KISS frame a node may write (longer ones are dropped as oversize).
const MAX_KISS_FRAME: usize = 4096;
/// CSMA slot length, in symbols (RNode firmware's `CSMA_SLOT_SYMBOLS`).
const CSMA_SLOT_SYMBOLS: f64 = 12.0;
/// How long a transmission must have been on air before other radios sense it, in
/// symbols (a channel-activity detection takes about two).
const SENSE_SYMBOLS: f64 = 2.0;
/// The most timeline steps one `handle_timeout` call takes (a bound; the rest are
/// taken by the next call).
const MAX_STEPS: usize = 100_000;

/// What the emulated RNode reports: signal values and its identity.
mod fw {
    /// Reported RSSI of every packet: -60 dBm, plus the firmware's offset.
    pub(super) const RSSI_BYTE: u8 = (-60 + ferry_cl_lora::rnode::RSSI_OFFSET) as u8;
    /// Reported SNR of every packet: 10 dB, in quarter dB.
    pub(super) const SNR_BYTE: u8 = 40;
    /// Firmware version 1.74.
    pub(super) const VERSION: [u8; 2] = [0x01, 0x4A];
    /// `PLATFORM_ESP32`.
    pub(super) const PLATFORM: u8 = 0x80;
    /// `MCU_ESP32`.
    pub(super) const MCU: u8 = 0x81;
    /// `BOARD_GENERIC_ESP32`.
    pub(super) const BOARD: u8 = 0x35;
    /// The highest transmit power the firmware accepts (SX1262), dBm.
    pub(super) const MAX_TX_POWER: u8 = 22;
    /// Query argument of the one-byte setting commands (`RADIO_STATE_ASK`).
    pub(super) const QUERY: u8 = ferry_cl_lora::rnode::RADIO_STATE_ASK;
}

/// Bytes for one node's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Index of the node (in `ChannelConfig::nodes` order).
    pub node: usize,
    /// Channel time it became due, µs.
    pub at_us: u64,
    /// KISS-encoded bytes to write to the node's port.
    pub bytes: Vec<u8>,
    /// Set when this is a received packet.
    pub delivery: Option<Delivery>,
}

/// Where a received packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The sender's index.
    pub from: usize,
    /// When its transmission started, µs.
    pub start_us: u64,
    /// Its payload length.
    pub payload_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spoil {
    Clean,
    HalfDuplex,
    Collided,
}

#[derive(Debug)]
struct Tx {
    sender: usize,
    start: u64,
    end: u64,
    data: Vec<u8>,
    /// Per receiver: what overlapped this transmission there.
    spoiled: Vec<Spoil>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mac {
    Idle,
    /// Waiting for the channel to become free.
    Deferred,
    /// Channel was free; waiting out the contention window until this time.
    Backoff(u64),
    Transmitting,
}

/// What a node configured through RNode host commands.
#[derive(Debug, Clone, Copy, Default)]
struct Firmware {
    frequency: Option<u32>,
    bandwidth: Option<u32>,
    sf: Option<u8>,
    cr: Option<u8>,
    tx_power: Option<u8>,
    on: bool,
}

#[derive(Debug)]
struct Node {
    decoder: Decoder,
    queue: VecDeque<Vec<u8>>,
    mac: Mac,
    fw: Firmware,
    /// The mismatched settings last warned about.
    warned: Option<(u32, u32, u8, u8)>,
    acct: Account,
}

/// The emulated channel. See the module documentation.
#[derive(Debug)]
pub struct Channel {
    names: Vec<String>,
    rnode: bool,
    radio: RadioSettings,
    reach: Vec<Vec<bool>>,
    loss: f64,
    loss_rng: SplitMix64,
    backoff_rng: SplitMix64,
    csma_window_slots: u32,
    tx_queue_frames: usize,
    nodes: Vec<Node>,
    active: Vec<Tx>,
    /// Drained by the caller after every call (`poll_output`).
    outputs: VecDeque<Output>,
}

impl Channel {
    /// A channel for `cfg` (its mode must be `Kiss` or `Rnode`).
    pub fn new(cfg: &ChannelConfig) -> Result<Self, EmulatorError> {
        let reach = crate::validate(cfg)?;
        let rnode = match cfg.mode {
            Mode::Kiss => false,
            Mode::Rnode => true,
            Mode::Wire { .. } => {
                return Err(EmulatorError::Config(
                    "a radio channel needs mode kiss or rnode".into(),
                ))
            }
        };
        let nodes = cfg
            .nodes
            .iter()
            .map(|_| Node {
                decoder: Decoder::new(MAX_KISS_FRAME),
                queue: VecDeque::new(),
                mac: Mac::Idle,
                fw: Firmware::default(),
                warned: None,
                acct: Account::default(),
            })
            .collect();
        Ok(Channel {
            names: cfg.nodes.clone(),
            rnode,
            radio: cfg.radio,
            reach,
            loss: cfg.loss,
            loss_rng: SplitMix64::new(cfg.seed),
            backoff_rng: SplitMix64::new(cfg.seed ^ 0x5EED_BAC0_FF00_0001),
            csma_window_slots: cfg.csma_window_slots,
            tx_queue_frames: cfg.tx_queue_frames.max(1),
            nodes,
            active: Vec::new(),
            outputs: VecDeque::new(),
        })
    }

    /// The index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Bytes node `node` wrote to its port at `now_us`. Call
    /// [`handle_timeout`](Self::handle_timeout)`(now_us)` first.
    pub fn input(&mut self, now_us: u64, node: usize, bytes: &[u8]) {
        if node >= self.nodes.len() {
            return;
        }
        let frames: Vec<Result<Frame, KissError>> = self.nodes[node].decoder.feed(bytes).collect();
        for f in frames {
            match f {
                Ok(frame) => self.frame(now_us, node, frame),
                Err(KissError::Oversized { .. }) => {
                    self.nodes[node].acct.s.dropped_oversize += 1;
                    debug!(node = %self.names[node], "oversize KISS frame dropped");
                }
                Err(e) => {
                    self.nodes[node].acct.s.kiss_errors += 1;
                    debug!(node = %self.names[node], error = %e, "bad KISS frame");
                }
            }
        }
    }

    /// Advances the timeline to `now_us`: ends transmissions, delivers them, starts the
    /// next ones.
    pub fn handle_timeout(&mut self, now_us: u64) {
        for _ in 0..MAX_STEPS {
            let Some(t) = self.poll_timeout() else { return };
            if t > now_us {
                return;
            }
            // Ends first: a transmission ending at t does not overlap one starting at t.
            let ending = self
                .active
                .iter()
                .enumerate()
                .filter(|(_, tx)| tx.end == t)
                .min_by_key(|(_, tx)| tx.sender)
                .map(|(k, _)| k);
            if let Some(k) = ending {
                self.end_tx(k, t);
            } else if let Some(n) =
                (0..self.nodes.len()).find(|&n| self.nodes[n].mac == Mac::Backoff(t))
            {
                self.try_start(n, t);
            } else {
                return;
            }
        }
    }

    /// The next time something happens on the channel, µs.
    pub fn poll_timeout(&self) -> Option<u64> {
        let ends = self.active.iter().map(|tx| tx.end);
        let backoffs = self.nodes.iter().filter_map(|n| match n.mac {
            Mac::Backoff(t) => Some(t),
            _ => None,
        });
        ends.chain(backoffs).min()
    }

    /// The next bytes to write to a node's port.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether `a` and `b` hear each other (symmetric).
    pub fn set_reach(&mut self, a: usize, b: usize, hears: bool) {
        if a < self.nodes.len() && b < self.nodes.len() && a != b {
            self.reach[a][b] = hears;
            self.reach[b][a] = hears;
        }
    }

    /// The loss probability, clamped to [0, 1].
    pub fn set_loss(&mut self, p: f64) {
        self.loss = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
    }

    /// The driver could not hand an output to `node` (its port is not being read).
    pub fn output_dropped(&mut self, node: usize) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.acct.s.dropped_output_full += 1;
        }
    }

    /// The counters at `now_us`.
    pub fn stats(&self, now_us: u64) -> Stats {
        let nodes = self
            .names
            .iter()
            .zip(&self.nodes)
            .map(|(name, n)| {
                let mut s = n.acct.snapshot(now_us);
                if self.rnode {
                    s.radio = Some(ConfiguredRadio {
                        frequency_hz: n.fw.frequency,
                        bandwidth_hz: n.fw.bandwidth,
                        spreading_factor: n.fw.sf,
                        coding_rate: n.fw.cr,
                        tx_power_dbm: n.fw.tx_power.map(|p| p.min(fw::MAX_TX_POWER) as i8),
                        on: n.fw.on,
                    });
                }
                (name.clone(), s)
            })
            .collect();
        Stats {
            elapsed_ms: now_us / 1_000,
            mode: if self.rnode { "rnode" } else { "kiss" }.to_string(),
            nodes,
        }
    }

    /// The largest packet a node may send in this channel's mode.
    fn max_packet(&self) -> usize {
        if self.rnode {
            rnode::MAX_PACKET
        } else {
            MAX_KISS_PACKET
        }
    }

    /// How long node `i` takes to send a packet of `len` bytes, µs (at least 1).
    pub fn airtime_us(&self, i: usize, len: usize) -> u64 {
        let s = self.settings(i);
        let t = if self.rnode {
            // len <= MAX_PACKET here; a longer one is refused before it is queued.
            rnode::packet_airtime_us(&s, len).unwrap_or(u64::MAX / 4)
        } else {
            s.airtime_us(len)
        };
        t.max(1)
    }

    /// Node `i`'s radio settings: the channel's, with what it configured in RNode mode.
    fn settings(&self, i: usize) -> RadioSettings {
        let mut s = self.radio;
        if self.rnode {
            let fw = &self.nodes[i].fw;
            if let Some(f) = fw.frequency {
                s.frequency_hz = f;
            }
            if let Some(b) = fw.bandwidth {
                s.bandwidth_hz = b;
            }
            if let Some(sf) = fw.sf {
                s.spreading_factor = sf;
            }
            if let Some(cr) = fw.cr {
                s.coding_rate = cr;
            }
            if let Some(p) = fw.tx_power {
                s.tx_power_dbm = p.min(fw::MAX_TX_POWER) as i8;
            }
        }
        s
    }

    fn radio_on(&self, i: usize) -> bool {
        !self.rnode || self.nodes[i].fw.on
    }

    /// Whether two radios can demodulate each other (same frequency, bandwidth, SF).
    fn compatible(&self, a: usize, b: usize) -> bool {
        if !self.rnode {
            return true;
        }
        let (x, y) = (self.settings(a), self.settings(b));
        x.frequency_hz == y.frequency_hz
            && x.bandwidth_hz == y.bandwidth_hz
            && x.spreading_factor == y.spreading_factor
    }

    /// Whether `r` hears transmissions from `s`.
    fn hears(&self, r: usize, s: usize) -> bool {
        r != s && self.reach[r][s] && self.radio_on(r) && self.compatible(r, s)
    }

    /// Whether `i` senses a transmission in progress at `t`.
    fn busy(&self, i: usize, t: u64) -> bool {
        let sense_us = (self.settings(i).symbol_time_us() * SENSE_SYMBOLS).ceil() as u64;
        self.active
            .iter()
            .any(|tx| tx.start + sense_us <= t && t < tx.end && self.hears(i, tx.sender))
    }

    fn frame(&mut self, now: u64, node: usize, frame: Frame) {
        let is_data = if self.rnode {
            frame.command == rnode::CMD_DATA
        } else {
            frame.command & 0x0F == kiss::CMD_DATA
        };
        if is_data {
            self.enqueue(now, node, frame.data);
        } else if self.rnode {
            self.rnode_command(now, node, frame.command, &frame.data);
        } else {
            self.nodes[node].acct.s.ignored_commands += 1;
        }
    }

    fn enqueue(&mut self, now: u64, i: usize, data: Vec<u8>) {
        let max = self.max_packet();
        let n = &mut self.nodes[i];
        if data.is_empty() {
            n.acct.s.ignored_commands += 1;
            return;
        }
        if data.len() > max {
            n.acct.s.dropped_oversize += 1;
            debug!(node = %self.names[i], bytes = data.len(), max, "oversize packet dropped");
            return;
        }
        if n.queue.len() >= self.tx_queue_frames {
            n.acct.s.dropped_queue_full += 1;
            debug!(node = %self.names[i], "transmit queue full, frame dropped");
            return;
        }
        n.queue.push_back(data);
        self.try_start(i, now);
    }

    fn reply(&mut self, now: u64, node: usize, command: u8, data: &[u8]) {
        self.outputs.push_back(Output {
            node,
            at_us: now,
            bytes: kiss::encode(command, data),
            delivery: None,
        });
    }

    /// Answers an RNode host command as the firmware does (RNode_Firmware.ino,
    /// `serial_callback`): settings are echoed with the value applied.
    fn rnode_command(&mut self, now: u64, i: usize, command: u8, data: &[u8]) {
        let first = data.first().copied();
        let be32 = |d: &[u8]| -> Option<u32> {
            d.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match command {
            rnode::CMD_DETECT if first == Some(rnode::DETECT_REQ) => {
                self.reply(now, i, rnode::CMD_DETECT, &[rnode::DETECT_RESP]);
            }
            rnode::CMD_FW_VERSION => self.reply(now, i, rnode::CMD_FW_VERSION, &fw::VERSION),
            rnode::CMD_PLATFORM => self.reply(now, i, rnode::CMD_PLATFORM, &[fw::PLATFORM]),
            rnode::CMD_MCU => self.reply(now, i, rnode::CMD_MCU, &[fw::MCU]),
            rnode::CMD_BOARD => self.reply(now, i, rnode::CMD_BOARD, &[fw::BOARD]),
            rnode::CMD_FREQUENCY | rnode::CMD_BANDWIDTH => {
                let Some(v) = be32(data) else {
                    self.nodes[i].acct.s.ignored_commands += 1;
                    return;
                };
                let fw = &mut self.nodes[i].fw;
                let slot = if command == rnode::CMD_FREQUENCY {
                    &mut fw.frequency
                } else {
                    &mut fw.bandwidth
                };
                // 0 is a query.
                if v != 0 {
                    *slot = Some(v);
                }
                let applied = slot.unwrap_or(0);
                if v != 0 {
                    self.settings_changed(i);
                }
                self.reply(now, i, command, &applied.to_be_bytes());
            }
            rnode::CMD_TXPOWER | rnode::CMD_SF | rnode::CMD_CR => {
                let Some(b) = first else {
                    self.nodes[i].acct.s.ignored_commands += 1;
                    return;
                };
                let fw = &mut self.nodes[i].fw;
                let (slot, lo, hi, unset) = match command {
                    rnode::CMD_TXPOWER => (&mut fw.tx_power, 0, fw::MAX_TX_POWER, 0xFF),
                    rnode::CMD_SF => (&mut fw.sf, 5, 12, 0),
                    _ => (&mut fw.cr, 5, 8, 5),
                };
                if b != fw::QUERY {
                    *slot = Some(b.clamp(lo, hi));
                }
                let applied = slot.unwrap_or(unset);
                if b != fw::QUERY {
                    self.settings_changed(i);
                }
                self.reply(now, i, command, &[applied]);
            }
            rnode::CMD_RADIO_STATE => match first {
                Some(fw::QUERY) => {
                    let on = u8::from(self.nodes[i].fw.on);
                    self.reply(now, i, command, &[on]);
                }
                Some(0x00) => {
                    self.nodes[i].fw.on = false;
                    self.reply(now, i, command, &[0x00]);
                }
                Some(0x01) => {
                    let fw = &self.nodes[i].fw;
                    // The firmware keeps the radio locked until frequency, bandwidth,
                    // power and SF are set (`update_radio_lock`).
                    let unlocked = fw.frequency.is_some()
                        && fw.bandwidth.is_some()
                        && fw.tx_power.is_some()
                        && fw.sf.is_some();
                    if unlocked {
                        self.nodes[i].fw.on = true;
                        self.settings_changed(i);
                    } else {
                        warn!(
                            node = %self.names[i],
                            "radio-on refused: set frequency, bandwidth, TX power and SF first"
                        );
                    }
                    let on = u8::from(self.nodes[i].fw.on);
                    self.reply(now, i, command, &[on]);
                    self.try_start(i, now);
                }
                _ => self.nodes[i].acct.s.ignored_commands += 1,
            },
            rnode::CMD_READY => {
                let ready = self.nodes[i].queue.len() < self.tx_queue_frames;
                self.reply(now, i, rnode::CMD_READY, &[u8::from(ready)]);
            }
            _ => self.nodes[i].acct.s.ignored_commands += 1,
        }
    }

    /// Warns (once per distinct setting) when a node with its radio on is configured
    /// differently from the channel.
    fn settings_changed(&mut self, i: usize) {
        if !self.nodes[i].fw.on {
            return;
        }
        let s = self.settings(i);
        let mine = (
            s.frequency_hz,
            s.bandwidth_hz,
            s.spreading_factor,
            s.coding_rate,
        );
        let r = self.radio;
        let chan = (
            r.frequency_hz,
            r.bandwidth_hz,
            r.spreading_factor,
            r.coding_rate,
        );
        if mine == chan {
            self.nodes[i].warned = None;
        } else if self.nodes[i].warned != Some(mine) {
            warn!(
                node = %self.names[i],
                frequency_hz = mine.0, bandwidth_hz = mine.1, sf = mine.2, cr = mine.3,
                channel_frequency_hz = chan.0, channel_bandwidth_hz = chan.1,
                channel_sf = chan.2, channel_cr = chan.3,
                "node's radio settings differ from the channel's"
            );
            self.nodes[i].acct.s.config_mismatch += 1;
            self.nodes[i].warned = Some(mine);
        }
    }

    /// Starts node `i`'s next packet at `t` if its radio may.
    fn try_start(&mut self, i: usize, t: u64) {
        let was = self.nodes[i].mac;
        match was {
            Mac::Transmitting => return,
            Mac::Backoff(until) if t < until => return,
            _ => {}
        }
        if self.nodes[i].queue.is_empty() || !self.radio_on(i) {
            self.nodes[i].mac = Mac::Idle;
            return;
        }
        if self.busy(i, t) {
            if was == Mac::Idle {
                self.nodes[i].acct.s.deferred += 1;
            }
            self.nodes[i].mac = Mac::Deferred;
            return;
        }
        if was == Mac::Deferred {
            let slots = self.backoff_rng.below(u64::from(self.csma_window_slots));
            if slots > 0 {
                let slot_us = (self.settings(i).symbol_time_us() * CSMA_SLOT_SYMBOLS).ceil() as u64;
                self.nodes[i].mac = Mac::Backoff(t + slots * slot_us.max(1));
                return;
            }
        }
        self.start(i, t);
    }

    fn start(&mut self, i: usize, t: u64) {
        let Some(data) = self.nodes[i].queue.pop_front() else {
            self.nodes[i].mac = Mac::Idle;
            return;
        };
        let end = t + self.airtime_us(i, data.len());
        let n = self.nodes.len();
        let mut spoiled = vec![Spoil::Clean; n];
        for k in 0..self.active.len() {
            let (other, other_end) = (self.active[k].sender, self.active[k].end);
            if other_end <= t {
                continue;
            }
            // Half duplex: neither can receive the other's packet.
            self.active[k].spoiled[i] = Spoil::HalfDuplex;
            spoiled[other] = Spoil::HalfDuplex;
            // Collision wherever both are heard.
            let both: Vec<usize> = (0..n)
                .filter(|&r| r != i && r != other && self.hears(r, i) && self.hears(r, other))
                .collect();
            for r in both {
                for mark in [&mut self.active[k].spoiled[r], &mut spoiled[r]] {
                    if *mark == Spoil::Clean {
                        *mark = Spoil::Collided;
                    }
                }
            }
        }
        self.nodes[i].acct.transmitted(data.len(), t, end);
        self.nodes[i].mac = Mac::Transmitting;
        self.active.push(Tx {
            sender: i,
            start: t,
            end,
            data,
            spoiled,
        });
    }

    fn end_tx(&mut self, k: usize, t: u64) {
        let tx = self.active.swap_remove(k);
        let s = tx.sender;
        self.nodes[s].mac = Mac::Idle;
        for r in 0..self.nodes.len() {
            if r == s || !self.reach[s][r] {
                continue;
            }
            let draw = self.loss_rng.next_f64();
            let on = self.radio_on(r);
            let compatible = self.compatible(s, r);
            let loss = self.loss;
            let acct = &mut self.nodes[r].acct;
            if !on {
                acct.s.missed_radio_off += 1;
            } else if !compatible {
                acct.s.missed_config_mismatch += 1;
            } else {
                match tx.spoiled[r] {
                    Spoil::HalfDuplex => acct.s.missed_while_transmitting += 1,
                    Spoil::Collided => acct.s.collided += 1,
                    Spoil::Clean if draw < loss => acct.s.lost += 1,
                    Spoil::Clean => {
                        acct.received(tx.data.len());
                        let mut bytes = Vec::with_capacity(tx.data.len() + 16);
                        if self.rnode {
                            kiss::encode_into(rnode::CMD_STAT_RSSI, &[fw::RSSI_BYTE], &mut bytes);
                            kiss::encode_into(rnode::CMD_STAT_SNR, &[fw::SNR_BYTE], &mut bytes);
                        }
                        kiss::encode_into(rnode::CMD_DATA, &tx.data, &mut bytes);
                        self.outputs.push_back(Output {
                            node: r,
                            at_us: t,
                            bytes,
                            delivery: Some(Delivery {
                                from: s,
                                start_us: tx.start,
                                payload_len: tx.data.len(),
                            }),
                        });
                    }
                }
            }
        }
        // The sender goes on with its queue first (RNode firmware flushes its queue
        // back to back), then the radios that were waiting for this one.
        self.try_start(s, t);
        for j in 0..self.nodes.len() {
            if j != s {
                self.try_start(j, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn cfg(nodes: &[&str], mode: Mode) -> ChannelConfig {
        let mut c = ChannelConfig::new(nodes.iter().copied(), mode, PathBuf::from("/nonexistent"));
        c.radio = RadioSettings {
            spreading_factor: 7,
            bandwidth_hz: 500_000,
            ..RadioSettings::default()
        };
        c
    }

    fn data_frame(payload: &[u8]) -> Vec<u8> {
        kiss::encode(0, payload)
    }

    fn drain(ch: &mut Channel) -> Vec<Output> {
        std::iter::from_fn(|| ch.poll_output()).collect()
    }

    fn run_to_end(ch: &mut Channel) -> Vec<Output> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            out.extend(drain(ch));
            match ch.poll_timeout() {
                Some(t) => ch.handle_timeout(t),
                None => break,
            }
        }
        out.extend(drain(ch));
        out
    }

    #[test]
    fn all_hear_all_and_never_self() {
        let mut ch = Channel::new(&cfg(&["a", "b", "c"], Mode::Kiss)).unwrap();
        ch.input(0, 0, &data_frame(b"hello"));
        let air = ch.radio.airtime_us(5);
        assert_eq!(ch.poll_timeout(), Some(air));
        let out = run_to_end(&mut ch);
        let mut to: Vec<usize> = out.iter().map(|o| o.node).collect();
        to.sort_unstable();
        assert_eq!(to, vec![1, 2]);
        assert!(out
            .iter()
            .all(|o| o.at_us == air && o.bytes == data_frame(b"hello")));
    }

    #[test]
    fn hidden_terminals_collide() {
        let mut c = cfg(&["a", "b", "c"], Mode::Kiss);
        c.reach = Some(vec![("a".into(), "b".into()), ("b".into(), "c".into())]);
        let mut ch = Channel::new(&c).unwrap();
        ch.input(0, 0, &data_frame(&[1; 20]));
        ch.input(1_000, 2, &data_frame(&[2; 20]));
        let out = run_to_end(&mut ch);
        assert!(out.is_empty(), "{out:?}");
        let s = ch.stats(1_000_000);
        assert_eq!(s.nodes["b"].collided, 2);
        assert_eq!(s.nodes["a"].rx_frames + s.nodes["c"].rx_frames, 0);
    }

    #[test]
    fn radios_starting_within_the_sense_time_miss_each_other() {
        let mut ch = Channel::new(&cfg(&["a", "b", "c"], Mode::Kiss)).unwrap();
        ch.input(0, 0, &data_frame(&[1; 20]));
        ch.input(1, 1, &data_frame(&[2; 20]));
        let out = run_to_end(&mut ch);
        assert!(out.is_empty(), "{out:?}");
        let s = ch.stats(1_000_000);
        assert_eq!(s.nodes["a"].missed_while_transmitting, 1);
        assert_eq!(s.nodes["b"].missed_while_transmitting, 1);
        assert_eq!(s.nodes["c"].collided, 2);
        assert_eq!(s.nodes["b"].deferred, 0);
    }

    #[test]
    fn listen_before_talk_defers_until_the_end() {
        let mut c = cfg(&["a", "b", "c"], Mode::Kiss);
        c.csma_window_slots = 0;
        let mut ch = Channel::new(&c).unwrap();
        ch.input(0, 0, &data_frame(&[1; 50]));
        let a_end = ch.radio.airtime_us(50);
        // Two symbols (512 µs at SF7/500 kHz) in, the transmission is sensed.
        ch.handle_timeout(1_000);
        ch.input(1_000, 1, &data_frame(&[2; 10]));
        let out = run_to_end(&mut ch);
        let to_c: Vec<&Output> = out.iter().filter(|o| o.node == 2).collect();
        assert_eq!(to_c.len(), 2);
        assert_eq!(to_c[1].delivery.unwrap().start_us, a_end);
        let s = ch.stats(a_end * 3);
        assert_eq!(s.nodes["b"].deferred, 1);
        assert_eq!(s.nodes["c"].collided, 0);
    }

    #[test]
    fn rnode_radio_must_be_configured_and_on() {
        let mut ch = Channel::new(&cfg(&["a", "b"], Mode::Rnode)).unwrap();
        ch.input(0, 0, &data_frame(&[1, 2, 3]));
        ch.input(0, 1, &kiss::encode(rnode::CMD_RADIO_STATE, &[1]));
        // b's radio stays off (locked), a's packet waits in its queue.
        let out = run_to_end(&mut ch);
        assert_eq!(
            out,
            vec![Output {
                node: 1,
                at_us: 0,
                bytes: kiss::encode(rnode::CMD_RADIO_STATE, &[0]),
                delivery: None
            }]
        );
        let r = ch.radio;
        for i in 0..2 {
            let mut w = Vec::new();
            kiss::encode_into(rnode::CMD_FREQUENCY, &r.frequency_hz.to_be_bytes(), &mut w);
            kiss::encode_into(rnode::CMD_BANDWIDTH, &r.bandwidth_hz.to_be_bytes(), &mut w);
            kiss::encode_into(rnode::CMD_TXPOWER, &[14], &mut w);
            kiss::encode_into(rnode::CMD_SF, &[r.spreading_factor], &mut w);
            kiss::encode_into(rnode::CMD_CR, &[r.coding_rate], &mut w);
            kiss::encode_into(rnode::CMD_RADIO_STATE, &[1], &mut w);
            ch.input(10, i, &w);
        }
        let out = run_to_end(&mut ch);
        let got: Vec<&Output> = out.iter().filter(|o| o.delivery.is_some()).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].node, 1);
        assert_eq!(ch.stats(0).nodes["a"].config_mismatch, 0);
    }

    proptest! {
        #[test]
        fn airtime_is_the_sum_of_frame_airtimes_and_nothing_arrives_early(
            frames in proptest::collection::vec((0usize..4, 1usize..200, 0u64..200_000), 1..40),
            reach_bits in any::<u8>(),
            loss in 0.0f64..0.5,
            seed in any::<u64>(),
        ) {
            let names = ["a", "b", "c", "d"];
            let mut c = cfg(&names, Mode::Kiss);
            c.loss = loss;
            c.seed = seed;
            c.tx_queue_frames = 100;
            // Six possible pairs, each in or out of reach.
            let pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)];
            c.reach = Some(pairs.iter().enumerate()
                .filter(|(k, _)| reach_bits & (1 << k) != 0)
                .map(|(_, (x, y))| (names[*x].to_string(), names[*y].to_string()))
                .collect());
            let mut ch = Channel::new(&c).unwrap();
            let mut sorted = frames.clone();
            sorted.sort_by_key(|f| f.2);
            let mut expected = [0u64; 4];
            let mut outputs = Vec::new();
            for (idx, (node, len, at)) in sorted.iter().enumerate() {
                ch.handle_timeout(*at);
                outputs.extend(drain(&mut ch));
                // The first byte names the frame (indexes stay below 0xC0).
                let mut payload = vec![7u8; *len];
                payload[0] = idx as u8;
                ch.input(*at, *node, &data_frame(&payload));
                expected[*node] += ch.radio.airtime_us(*len);
            }
            outputs.extend(run_to_end(&mut ch));
            let s = ch.stats(10_000_000);
            for (k, name) in names.iter().enumerate() {
                prop_assert_eq!(s.nodes[*name].airtime_us, expected[k]);
            }
            for o in &outputs {
                let d = o.delivery.unwrap();
                prop_assert!(o.node != d.from);
                let airtime = ch.radio.airtime_us(d.payload_len);
                prop_assert_eq!(o.at_us - d.start_us, airtime);
                let mut dec = Decoder::new(1024);
                let got: Vec<_> = dec.feed(&o.bytes).collect();
                prop_assert_eq!(got.len(), 1);
                let frame = got[0].clone().unwrap();
                let (sender, len, written_at) = sorted[usize::from(frame.data[0])];
                prop_assert_eq!(sender, d.from);
                prop_assert_eq!(len, d.payload_len);
                // Never before it was written plus its airtime.
                prop_assert!(o.at_us >= written_at + airtime);
            }
        }
    }
}
