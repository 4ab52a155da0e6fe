//! An emulated LoRa channel (or serial cable) over pseudo-terminals, for Ferry's tests
//! and demos.
//!
//! [`Emulator::start`] opens one pseudo-terminal per node and links `DIR/<name>` to its
//! slave side, so that a `ferry` node configured with
//! `[[serial]] port = "DIR/a" mode = "kiss"` (or `"rnode"`) talks through it as through
//! a real radio. All the ports share ONE radio channel, modelled by [`channel::Channel`]
//! (airtime by Semtech's formula, half duplex, listen before talk, collisions between
//! hidden terminals, seeded loss, per-node reach); see that module for the model.
//!
//! - [`Mode::Kiss`]: a plain KISS TNC. Data frames (command low nibble 0, any port) are
//!   packets; other commands (TXDELAY, persistence, ...) are accepted and ignored.
//! - [`Mode::Rnode`]: RNode firmware's host protocol. Data frames are command `0x00`
//!   (packets up to 508 bytes, sent as the firmware does: header byte, its preamble,
//!   split in two LoRa frames above 254 bytes); the emulator answers detect, firmware
//!   version (1.74), platform, MCU, board and ready queries, echoes frequency,
//!   bandwidth, TX power, SF, CR and radio state with the applied value, keeps the
//!   radio off until the node turns it on (after setting frequency, bandwidth, power
//!   and SF; packets written before wait in the queue), and sends the RSSI and SNR
//!   reports before each received packet. It never sends `CMD_READY` unasked (current
//!   firmware only answers the query). Nodes configured differently from the channel
//!   are warned about (`config_mismatch`) and do not hear nodes on other settings.
//! - [`Mode::Wire`]: exactly two nodes joined by a null-modem cable: raw bytes, in order,
//!   at the baud rate's pace; [`Emulator::set_reach`] unplugs and replugs it.
//!
//! This is a test tool: it runs in real time and reads the monotonic clock.
#![forbid(unsafe_code)]
// The emulator is a real-time test tool: its driver threads read the monotonic clock
// (`Instant::now`), which `clippy.toml` bans in library crates whose time is an input.
// The timeline itself (`channel::Channel`) takes time as an input like the engine does.
#![allow(clippy::disallowed_methods)]

pub mod channel;
mod driver;
mod pty;
mod rng;
mod stats;

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use ferry_cl_lora::RadioSettings;
pub use pty::set_raw;
pub use stats::{ConfiguredRadio, NodeStats, Stats};

use driver::{Cmd, Wire};

/// What the ports speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A KISS TNC on a shared LoRa channel.
    Kiss,
    /// RNode firmware on a shared LoRa channel.
    Rnode,
    /// A null-modem serial cable between exactly two nodes.
    Wire {
        /// Line speed, bit/s (10 bits per byte).
        baud: u32,
    },
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kiss => "kiss",
            Mode::Rnode => "rnode",
            Mode::Wire { .. } => "wire",
        }
    }
}

/// How to build the channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Node names: letters, digits, `-`, `_` and `.`; unique.
    pub nodes: Vec<String>,
    /// What the ports speak.
    pub mode: Mode,
    /// The channel's radio settings (RNode nodes may configure others).
    pub radio: RadioSettings,
    /// Probability that a reception is lost (wire: that a written chunk is dropped).
    pub loss: f64,
    /// Pairs of nodes that hear each other (symmetric); `None`: all hear all.
    pub reach: Option<Vec<(String, String)>>,
    /// Seed of the loss draws and back-off slots.
    pub seed: u64,
    /// Where the symlinks `DIR/<name>` are made (created if missing).
    pub dir: PathBuf,
    /// Packets each radio queues before dropping (RNode firmware queues many more;
    /// default 32).
    pub tx_queue_frames: usize,
    /// Listen before talk: after the channel it waited for frees up, a radio waits a
    /// random 0..this many slots of 12 symbols before it transmits (RNode firmware's
    /// first contention window is 15); 0 starts right away. Default 15.
    pub csma_window_slots: u32,
}

impl ChannelConfig {
    /// A configuration with the defaults: `RadioSettings::default()`, no loss, all hear
    /// all, seed 1, 32 queued packets, a 15-slot contention window.
    pub fn new<S: Into<String>>(
        nodes: impl IntoIterator<Item = S>,
        mode: Mode,
        dir: impl Into<PathBuf>,
    ) -> Self {
        ChannelConfig {
            nodes: nodes.into_iter().map(Into::into).collect(),
            mode,
            radio: RadioSettings::default(),
            loss: 0.0,
            reach: None,
            seed: 1,
            dir: dir.into(),
            tx_queue_frames: 32,
            csma_window_slots: 15,
        }
    }
}

/// Why the emulator could not start or a command was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The configuration is invalid.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// A pseudo-terminal call failed.
    #[error("pseudo-terminal: {what}: {source}")]
    Pty {
        /// The call.
        what: &'static str,
        /// The error.
        source: nix::Error,
    },
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A thread could not be started (or a descriptor duplicated).
    #[error("cannot start emulator thread: {0}")]
    Spawn(std::io::Error),
    /// No node has this name.
    #[error("no node named `{0}`")]
    UnknownNode(String),
    /// The emulator's channel thread is gone.
    #[error("the emulator has stopped")]
    Stopped,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `cfg` and returns its reach matrix.
pub(crate) fn validate(cfg: &ChannelConfig) -> Result<Vec<Vec<bool>>, EmulatorError> {
    let bad = |m: String| Err(EmulatorError::Config(m));
    if cfg.nodes.is_empty() {
        return bad("no nodes".into());
    }
    let mut seen = HashSet::new();
    for n in &cfg.nodes {
        if !valid_name(n) {
            return bad(format!("bad node name `{n}` (use letters, digits, - _ .)"));
        }
        if !seen.insert(n.as_str()) {
            return bad(format!("node `{n}` given twice"));
        }
    }
    if !(0.0..=1.0).contains(&cfg.loss) {
        return bad(format!("loss {} is not a probability", cfg.loss));
    }
    if cfg.tx_queue_frames == 0 {
        return bad("tx_queue_frames must be at least 1".into());
    }
    match cfg.mode {
        Mode::Wire { baud } => {
            if cfg.nodes.len() != 2 {
                return bad("wire mode joins exactly two nodes".into());
            }
            if baud == 0 {
                return bad("baud rate 0".into());
            }
        }
        Mode::Kiss | Mode::Rnode => {
            if let Err(e) = cfg.radio.validate() {
                return bad(format!("radio settings: {e}"));
            }
        }
    }
    let n = cfg.nodes.len();
    let index = |name: &str| cfg.nodes.iter().position(|x| x == name);
    let mut reach = vec![vec![cfg.reach.is_none(); n]; n];
    if let Some(pairs) = &cfg.reach {
        for (a, b) in pairs {
            let (Some(i), Some(j)) = (index(a), index(b)) else {
                return bad(format!("reach pair {a}-{b} names an unknown node"));
            };
            if i == j {
                return bad(format!("reach pair {a}-{b} joins a node to itself"));
            }
            reach[i][j] = true;
            reach[j][i] = true;
        }
    }
    for (i, row) in reach.iter_mut().enumerate() {
        row[i] = false;
    }
    Ok(reach)
}

#[derive(Debug)]
enum Backend {
    /// The channel thread's command queue (`None` once stopped).
    Radio(Option<SyncSender<Cmd>>),
    Wire(Arc<Mutex<Wire>>),
}

/// A running emulator. Dropping it stops it too (without the final stats).
#[derive(Debug)]
pub struct Emulator {
    names: Vec<String>,
    links: Vec<PathBuf>,
    slave_paths: Vec<PathBuf>,
    mode: Mode,
    t0: Instant,
    stop: Arc<AtomicBool>,
    backend: Backend,
    threads: Vec<JoinHandle<()>>,
    /// The slave sides, held open for the emulator's lifetime.
    _slaves: Vec<File>,
    stopped: bool,
}

impl Emulator {
    /// Opens the ports, links them into `cfg.dir` and starts the channel.
    pub fn start(cfg: ChannelConfig) -> Result<Emulator, EmulatorError> {
        validate(&cfg)?;
        let channel = match cfg.mode {
            Mode::Kiss | Mode::Rnode => Some(channel::Channel::new(&cfg)?),
            Mode::Wire { .. } => None,
        };
        std::fs::create_dir_all(&cfg.dir).map_err(|source| EmulatorError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
        let mut ports = Vec::new();
        for name in &cfg.nodes {
            match pty::open(&cfg.dir, name) {
                Ok(p) => ports.push(p),
                Err(e) => {
                    for p in &ports {
                        pty::remove_link(&p.link, &p.slave_path);
                    }
                    return Err(e);
                }
            }
        }
        let links = ports.iter().map(|p| p.link.clone()).collect();
        let slave_paths = ports.iter().map(|p| p.slave_path.clone()).collect();
        let mut masters = Vec::new();
        let mut slaves = Vec::new();
        for p in ports {
            masters.push(p.master);
            slaves.push(p.slave);
        }
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (backend, cmd) = match cfg.mode {
            Mode::Wire { .. } => (
                Backend::Wire(Arc::new(Mutex::new(Wire::new(cfg.seed, cfg.loss)))),
                None,
            ),
            Mode::Kiss | Mode::Rnode => {
                let (tx, rx) = std::sync::mpsc::sync_channel(driver::INPUT_QUEUE);
                (Backend::Radio(Some(tx.clone())), Some((tx, rx)))
            }
        };
        let mut emu = Emulator {
            names: cfg.nodes.clone(),
            links,
            slave_paths,
            mode: cfg.mode,
            t0,
            stop: Arc::clone(&stop),
            backend,
            threads: Vec::new(),
            _slaves: slaves,
            stopped: false,
        };
        // On an error below, dropping `emu` stops what started and removes the links.
        emu.threads = match (&emu.backend, cfg.mode, channel, cmd) {
            (Backend::Wire(w), Mode::Wire { baud }, _, _) => {
                driver::start_wire(masters, baud, w, t0, &stop)?
            }
            (Backend::Radio(_), _, Some(channel), Some((tx, rx))) => {
                driver::start_radio(channel, masters, t0, &stop, tx, rx)?
            }
            _ => return Err(EmulatorError::Stopped),
        };
        tracing::info!(
            dir = %cfg.dir.display(),
            nodes = cfg.nodes.len(),
            mode = cfg.mode.name(),
            "radio emulator started"
        );
        Ok(emu)
    }

    /// The symlink for `node` (`DIR/<node>`).
    pub fn path(&self, node: &str) -> Option<PathBuf> {
        self.index(node).map(|i| self.links[i].clone())
    }

    /// The node names, in configuration order.
    pub fn nodes(&self) -> &[String] {
        &self.names
    }

    fn index(&self, node: &str) -> Option<usize> {
        self.names.iter().position(|n| n == node)
    }

    fn send(&self, cmd: Cmd) -> Result<(), EmulatorError> {
        match &self.backend {
            Backend::Radio(Some(tx)) => tx.send(cmd).map_err(|_| EmulatorError::Stopped),
            Backend::Radio(None) => Err(EmulatorError::Stopped),
            Backend::Wire(_) => Err(EmulatorError::Stopped),
        }
    }

    /// Whether `a` and `b` hear each other from now on (wire mode: plugs or unplugs the
    /// cable). Takes effect before any byte written after this returns.
    pub fn set_reach(&self, a: &str, b: &str, hears: bool) -> Result<(), EmulatorError> {
        let i = self
            .index(a)
            .ok_or_else(|| EmulatorError::UnknownNode(a.into()))?;
        let j = self
            .index(b)
            .ok_or_else(|| EmulatorError::UnknownNode(b.into()))?;
        if i == j {
            return Err(EmulatorError::Config(format!(
                "{a}-{b} joins a node to itself"
            )));
        }
        match &self.backend {
            Backend::Wire(w) => {
                driver::lock(w).plugged = hears;
                Ok(())
            }
            Backend::Radio(_) => self.send(Cmd::SetReach(i, j, hears)),
        }
    }

    /// The loss probability from now on.
    /// Puts `bytes` on the cable towards `node`, as if the other end had written
    /// them (line noise, malformed frames). Wire mode only; at most 64 KiB waiting.
    pub fn inject(&self, node: &str, bytes: Vec<u8>) -> Result<(), EmulatorError> {
        let i = self
            .index(node)
            .ok_or_else(|| EmulatorError::UnknownNode(node.into()))?;
        match &self.backend {
            Backend::Wire(w) => {
                let mut w = driver::lock(w);
                let waiting: usize = w.inject[i].iter().map(Vec::len).sum();
                if waiting + bytes.len() > 64 * 1024 {
                    return Err(EmulatorError::Config(
                        "too many injected bytes waiting".into(),
                    ));
                }
                w.inject[i].push(bytes);
                Ok(())
            }
            Backend::Radio(_) => Err(EmulatorError::Config(
                "inject is for wire mode (a radio channel carries only KISS frames)".into(),
            )),
        }
    }

    /// Sets the loss probability.
    pub fn set_loss(&self, p: f64) -> Result<(), EmulatorError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(EmulatorError::Config(format!(
                "loss {p} is not a probability"
            )));
        }
        match &self.backend {
            Backend::Wire(w) => {
                driver::lock(w).loss = p;
                Ok(())
            }
            Backend::Radio(_) => self.send(Cmd::SetLoss(p)),
        }
    }

    fn empty_stats(&self) -> Stats {
        Stats {
            elapsed_ms: driver::micros_since(self.t0) / 1_000,
            mode: self.mode.name().into(),
            nodes: Default::default(),
        }
    }

    fn wire_stats(&self, w: &Mutex<Wire>) -> Stats {
        let now = driver::micros_since(self.t0);
        let w = driver::lock(w);
        let mut s = self.empty_stats();
        for (name, acct) in self.names.iter().zip(&w.accounts) {
            s.nodes.insert(name.clone(), acct.snapshot(now));
        }
        s
    }

    fn ask(&self, make: impl FnOnce(SyncSender<Stats>) -> Cmd) -> Stats {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.send(make(tx)).is_err() {
            return self.empty_stats();
        }
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| self.empty_stats())
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        match &self.backend {
            Backend::Wire(w) => self.wire_stats(w),
            Backend::Radio(_) => self.ask(Cmd::Stats),
        }
    }

    /// Stops the threads, removes the symlinks and returns the final counters.
    pub fn stop(mut self) -> Stats {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Stats {
        if self.stopped {
            return self.empty_stats();
        }
        self.stopped = true;
        let radio_stats = match &self.backend {
            Backend::Radio(_) => Some(self.ask(Cmd::Stop)),
            Backend::Wire(_) => None,
        };
        self.stop.store(true, Ordering::Relaxed);
        if let Backend::Radio(tx) = &mut self.backend {
            // Without our sender the channel thread ends even if it missed Stop.
            tx.take();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let stats = match (&self.backend, radio_stats) {
            (Backend::Wire(w), _) => self.wire_stats(w),
            (Backend::Radio(_), s) => s.unwrap_or_else(|| self.empty_stats()),
        };
        for (link, target) in self.links.iter().zip(&self.slave_paths) {
            pty::remove_link(link, target);
        }
        tracing::info!("radio emulator stopped");
        stats
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
