//! The threads: one reader per pseudo-terminal master, one writer per master, and one
//! channel thread that owns the [`Channel`] timeline (radio modes); or one thread per
//! direction of the cable (wire mode). Every queue is bounded; every loop waits at
//! most [`pty::POLL_MS`] or the next timeline event before checking its stop flag.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::channel::Channel;
use crate::pty;
use crate::rng::SplitMix64;
use crate::stats::{Account, Stats};
use crate::EmulatorError;

/// Bytes read from a master at once.
const READ_CHUNK: usize = 4096;
/// Reader → channel queue length (messages).
pub(crate) const INPUT_QUEUE: usize = 256;
/// Channel → writer queue length per node (messages); beyond it frames are dropped
/// and counted (`dropped_output_full`).
const OUTPUT_QUEUE: usize = 256;
/// The longest the channel thread sleeps without an event.
const IDLE: Duration = Duration::from_millis(200);

/// Microseconds since `t0`.
pub(crate) fn micros_since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// What the channel thread is told.
#[derive(Debug)]
pub(crate) enum Cmd {
    Bytes(usize, Vec<u8>),
    SetReach(usize, usize, bool),
    SetLoss(f64),
    Stats(SyncSender<Stats>),
    Stop(SyncSender<Stats>),
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, EmulatorError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(EmulatorError::Spawn)
}

/// Starts the radio-mode threads over `masters` (one per node, in node order).
pub(crate) fn start_radio(
    channel: Channel,
    masters: Vec<File>,
    t0: Instant,
    stop: &Arc<AtomicBool>,
    cmd_tx: SyncSender<Cmd>,
    cmd_rx: Receiver<Cmd>,
) -> Result<Vec<JoinHandle<()>>, EmulatorError> {
    let mut threads = Vec::new();
    let mut writers = Vec::new();
    for (i, master) in masters.into_iter().enumerate() {
        let reader_file = master.try_clone().map_err(EmulatorError::Spawn)?;
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(OUTPUT_QUEUE);
        writers.push(out_tx);
        let stop_w = Arc::clone(stop);
        threads.push(spawn(format!("radio-emu-w{i}"), move || {
            writer_loop(&master, &out_rx, &stop_w);
        })?);
        let stop_r = Arc::clone(stop);
        let tx = cmd_tx.clone();
        threads.push(spawn(format!("radio-emu-r{i}"), move || {
            reader_loop(i, &reader_file, &tx, &stop_r);
        })?);
    }
    drop(cmd_tx);
    threads.push(spawn("radio-emu-channel".into(), move || {
        channel_loop(channel, &cmd_rx, &writers, t0);
    })?);
    Ok(threads)
}

fn reader_loop(node: usize, master: &File, tx: &SyncSender<Cmd>, stop: &AtomicBool) {
    let mut buf = vec![0u8; READ_CHUNK];
    while !stop.load(Ordering::Relaxed) {
        match pty::read_some(master, &mut buf) {
            Ok(0) => {}
            Ok(n) => {
                // Blocks while the channel thread is behind: backpressure to the node.
                if tx.send(Cmd::Bytes(node, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(node, error = %e, "pseudo-terminal read failed");
                std::thread::sleep(Duration::from_millis(u64::from(pty::POLL_MS)));
            }
        }
    }
}

fn writer_loop(master: &File, rx: &Receiver<Vec<u8>>, stop: &AtomicBool) {
    loop {
        match rx.recv_timeout(Duration::from_millis(u64::from(pty::POLL_MS))) {
            Ok(bytes) => {
                pty::write_all(master, &bytes, stop);
            }
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn flush(channel: &mut Channel, writers: &[SyncSender<Vec<u8>>]) {
    while let Some(out) = channel.poll_output() {
        let Some(w) = writers.get(out.node) else {
            continue;
        };
        match w.try_send(out.bytes) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                channel.output_dropped(out.node);
            }
        }
    }
}

fn channel_loop(
    mut channel: Channel,
    rx: &Receiver<Cmd>,
    writers: &[SyncSender<Vec<u8>>],
    t0: Instant,
) {
    loop {
        let now = micros_since(t0);
        channel.handle_timeout(now);
        flush(&mut channel, writers);
        let wait = channel
            .poll_timeout()
            .map_or(IDLE, |t| Duration::from_micros(t.saturating_sub(now)))
            .min(IDLE);
        let cmd = match rx.recv_timeout(wait) {
            Ok(cmd) => cmd,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = micros_since(t0);
        channel.handle_timeout(now);
        match cmd {
            Cmd::Bytes(node, bytes) => channel.input(now, node, &bytes),
            Cmd::SetReach(a, b, hears) => channel.set_reach(a, b, hears),
            Cmd::SetLoss(p) => channel.set_loss(p),
            Cmd::Stats(reply) => {
                let _ = reply.send(channel.stats(now));
            }
            Cmd::Stop(reply) => {
                flush(&mut channel, writers);
                let _ = reply.send(channel.stats(now));
                return;
            }
        }
        flush(&mut channel, writers);
    }
}

/// The null-modem cable's shared state.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) plugged: bool,
    pub(crate) loss: f64,
    rngs: [SplitMix64; 2],
    pub(crate) accounts: [Account; 2],
    /// Bytes to put on the line towards node 0 / node 1 (line noise, test frames).
    pub(crate) inject: [Vec<Vec<u8>>; 2],
}

impl Wire {
    pub(crate) fn new(seed: u64, loss: f64) -> Self {
        Wire {
            plugged: true,
            loss,
            rngs: [
                SplitMix64::new(seed.wrapping_add(1)),
                SplitMix64::new(seed.wrapping_add(2)),
            ],
            accounts: [Account::default(), Account::default()],
            inject: [Vec::new(), Vec::new()],
        }
    }
}

pub(crate) fn lock(w: &Mutex<Wire>) -> std::sync::MutexGuard<'_, Wire> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the two directions of the cable between `masters[0]` and `masters[1]`.
pub(crate) fn start_wire(
    masters: Vec<File>,
    baud: u32,
    wire: &Arc<Mutex<Wire>>,
    t0: Instant,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, EmulatorError> {
    let [a, b]: [File; 2] = masters
        .try_into()
        .map_err(|_| EmulatorError::Config("wire mode needs exactly two nodes".into()))?;
    let a2 = a.try_clone().map_err(EmulatorError::Spawn)?;
    let b2 = b.try_clone().map_err(EmulatorError::Spawn)?;
    let mut threads = Vec::new();
    for (dir, (from, to)) in [(a, b2), (b, a2)].into_iter().enumerate() {
        let wire = Arc::clone(wire);
        let stop = Arc::clone(stop);
        threads.push(spawn(format!("radio-emu-wire{dir}"), move || {
            wire_loop(dir, &from, &to, baud, &wire, t0, &stop);
        })?);
    }
    Ok(threads)
}

/// Sleeps until `t0 + until_us`, in steps of at most [`pty::POLL_MS`]; false if stopped.
fn sleep_until(t0: Instant, until_us: u64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = micros_since(t0);
        if now >= until_us {
            return true;
        }
        let step = (until_us - now).min(u64::from(pty::POLL_MS) * 1_000);
        std::thread::sleep(Duration::from_micros(step));
    }
}

/// Moves bytes from node `dir`'s master to the other node's, at `baud` (10 bits per
/// byte: start, 8 data, stop), in order.
fn wire_loop(
    dir: usize,
    from: &File,
    to: &File,
    baud: u32,
    wire: &Mutex<Wire>,
    t0: Instant,
    stop: &AtomicBool,
) {
    let other = 1 - dir;
    let bytes_per_s = (u64::from(baud) / 10).max(1);
    // About 10 ms of line time per chunk, so pacing stays smooth.
    let chunk = usize::try_from(bytes_per_s / 100)
        .unwrap_or(READ_CHUNK)
        .clamp(1, READ_CHUNK);
    let mut buf = vec![0u8; chunk];
    let mut line_free = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let injected = std::mem::take(&mut lock(wire).inject[other]);
        for bytes in injected {
            if pty::write_all(to, &bytes, stop) {
                lock(wire).accounts[other].received(bytes.len());
            }
        }
        let n = match pty::read_some(from, &mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) => {
                debug!(dir, error = %e, "pseudo-terminal read failed");
                std::thread::sleep(Duration::from_millis(u64::from(pty::POLL_MS)));
                continue;
            }
        };
        let now = micros_since(t0);
        let line_us = (n as u64 * 10 * 1_000_000).div_ceil(u64::from(baud.max(1)));
        let start = now.max(line_free);
        let end = start + line_us;
        line_free = end;
        let mut drop_it = {
            let mut w = lock(wire);
            w.accounts[dir].transmitted(n, start, end);
            let draw = w.rngs[dir].next_f64();
            !w.plugged || draw < w.loss
        };
        if !sleep_until(t0, end, stop) {
            return;
        }
        drop_it |= !lock(wire).plugged;
        if drop_it {
            lock(wire).accounts[other].s.lost += 1;
            continue;
        }
        if pty::write_all(to, &buf[..n], stop) {
            lock(wire).accounts[other].received(n);
        } else {
            lock(wire).accounts[other].s.dropped_output_full += 1;
        }
    }
}
