//! Serial ports as links: point-to-point cables and LoRa radios (KISS TNCs and RNodes),
//! each driving one `ferry_cl_session::Session` (KISS framing, signed hellos,
//! segmentation, selective ACKs, resume, priority, duty-cycle budget).
//!
//! Every neighbour the session proves (signed hello) becomes a contact of the engine
//! with its own `LinkId`; control frames and bundles the engine sends to it become
//! session messages; a bundle several neighbours of a radio lack goes on air once.
//! The port is reopened after it vanishes (a USB radio unplugged), and each reopening
//! starts a new session (a new nonce: neighbours see a restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_cl_lora::{rnode, DutyBudget, RadioSettings, Region};
use ferry_cl_session::{kiss, Class, Config as SessionConfig, Event, Kind, Medium, Session};
use ferry_core::rand_core::{OsRng, RngCore};
use ferry_core::{Bundle, NodeId, Priority};
use ferry_router::config::{SerialMode, SerialSection};
use ferry_router::engine::Input;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::daemon::{accept_batch, Cmd, LinkOut, Shared};

/// Serial link ids live in their own range, apart from QUIC's and the drives'.
static NEXT_SERIAL_LINK: AtomicU64 = AtomicU64::new(1 << 61);
/// Medium ids of radio ports ([`LinkCaps::medium`]).
static NEXT_MEDIUM: AtomicU64 = AtomicU64::new(1);
/// Queue from the engine's per-link writers to the port task.
const PORT_QUEUE: usize = 256;
/// Queue of one link's writer.
const WRITER_QUEUE: usize = 64;
/// How long to wait before reopening a port that failed.
const REOPEN: Duration = Duration::from_secs(2);

/// What a port reports in `ferry status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PortStatus {
    /// The device path.
    pub port: String,
    /// `cable`, `kiss` or `rnode`.
    pub mode: String,
    /// Whether the port is open.
    pub open: bool,
    /// The last error opening or using it.
    pub error: Option<String>,
    /// RNode firmware version, once detected.
    pub firmware: Option<String>,
    /// Neighbours up on this port.
    pub neighbors: Vec<String>,
    /// Session counters.
    pub session: Option<ferry_cl_session::Stats>,
    /// KISS frames refused on the line (oversized, bad escapes).
    pub kiss_errors: u64,
    /// Bytes of line noise outside KISS frames.
    pub noise_bytes: u64,
    /// KISS frames with a command this port does not expect (noise between frames
    /// on a cable reads as one).
    pub unexpected_commands: u64,
    /// Duty cycle kept (radios in a regulated region).
    pub duty_cycle: Option<f64>,
    /// Airtime budget available now, ms (radios with a duty cycle).
    pub budget_ms: Option<u64>,
    /// Last RSSI / SNR reported by an RNode.
    pub rssi_dbm: Option<i16>,
    /// Last SNR reported by an RNode, dB.
    pub snr_db: Option<f32>,
}

/// How long frames occupy the port, and the duty-cycle budget.
#[derive(Debug)]
pub struct PortMedium {
    kind: MediumKind,
    budget: DutyBudget,
}

#[derive(Debug, Clone, Copy)]
enum MediumKind {
    /// A cable: 10 bits per byte, KISS framing around each frame.
    Cable { baud: u32 },
    /// A radio: Semtech airtime of each packet (RNode: its header and preamble).
    Radio {
        settings: RadioSettings,
        rnode: bool,
    },
}

impl Medium for PortMedium {
    fn airtime_us(&self, len: usize) -> u64 {
        match self.kind {
            MediumKind::Cable { baud } => (len as u64 + 3) * 10_000_000 / u64::from(baud.max(1)),
            MediumKind::Radio { settings, rnode } => {
                if rnode {
                    rnode::packet_airtime_us(&settings, len)
                        .unwrap_or_else(|_| settings.airtime_us(len + rnode::AIR_HEADER_BYTES))
                } else {
                    settings.airtime_us(len)
                }
            }
        }
    }

    fn ready_at(&self, now_us: u64, airtime_us: u64) -> u64 {
        self.budget.ready_at(now_us, airtime_us)
    }

    fn spend(&mut self, now_us: u64, airtime_us: u64) {
        // `ready_at` was checked first; a refusal here only means the bucket's
        // rounding disagreed by a microsecond, and the frame is already built.
        let _ = self.budget.spend(now_us, airtime_us);
    }
}

/// A port's resolved settings.
#[derive(Debug, Clone)]
pub struct PortPlan {
    /// The port's label.
    pub name: String,
    /// The section it came from.
    pub section: SerialSection,
    /// Radio settings (radios only).
    pub radio: Option<RadioSettings>,
    /// Duty cycle kept (radios in a regulated region).
    pub duty: Option<f64>,
    /// Session parameters.
    pub session: SessionConfig,
    /// What the engine is told about the link.
    pub caps: LinkCaps,
}

impl PortPlan {
    /// Resolves a `[[serial]]` section: radio settings, region, duty cycle, dwell
    /// time, session parameters and link capabilities. Errors name the port.
    pub fn new(section: &SerialSection) -> Result<Self> {
        let name = section
            .name
            .clone()
            .unwrap_or_else(|| section.port.display().to_string());
        let ctx = || format!("serial port {name}");
        let (radio, duty, mut session, bitrate) = match (&section.radio, section.mode) {
            (Some(r), SerialMode::Kiss | SerialMode::Rnode) => {
                let settings = RadioSettings {
                    frequency_hz: r.frequency,
                    bandwidth_hz: r.bandwidth,
                    spreading_factor: r.spreading_factor,
                    coding_rate: r.coding_rate,
                    tx_power_dbm: r.tx_power,
                    ..RadioSettings::default()
                };
                let settings = if section.mode == SerialMode::Rnode {
                    rnode::firmware_settings(&settings)
                } else {
                    settings
                };
                settings.validate().with_context(ctx)?;
                let region: Region = match r.region.as_str() {
                    "eu868" => Region::Eu868,
                    "us915" => Region::Us915,
                    _ => Region::Unregulated,
                };
                let limit = ferry_cl_lora::duty_cycle(region, r.frequency).with_context(ctx)?;
                let duty = match (limit, r.duty_cycle) {
                    (Some(l), Some(d)) if d > l => bail!(
                        "{}: duty_cycle {d} is above the {l} the region allows at {} Hz",
                        ctx(),
                        r.frequency
                    ),
                    (_, Some(d)) => Some(d),
                    (l, None) => l,
                };
                let mut cfg = SessionConfig::radio(settings.airtime_us(24));
                if section.mode == SerialMode::Rnode {
                    // RNode splits packets over 254 bytes (plus its 1-byte header).
                    cfg.mtu = 255 - rnode::AIR_HEADER_BYTES;
                }
                if region == Region::Us915 {
                    let dwell = ferry_cl_lora::max_payload_for_dwell(&settings, region);
                    cfg.mtu = cfg.mtu.min(dwell.saturating_sub(rnode::AIR_HEADER_BYTES));
                    if cfg.mtu < 64 {
                        bail!(
                            "{}: at SF{} a US915 frame may carry only {dwell} bytes within the 400 ms dwell time; use SF9 or lower",
                            ctx(),
                            settings.spreading_factor
                        );
                    }
                }
                (Some(settings), duty, cfg, settings.raw_bitrate_bps() as u64)
            }
            (None, SerialMode::Cable) => (
                None,
                None,
                SessionConfig::cable(section.baud),
                u64::from(section.baud) * 8 / 10,
            ),
            _ => bail!("{}: modes kiss and rnode need [serial.radio]", ctx()),
        };
        if let Some(h) = section.hello_secs {
            session.hello_interval_us = u64::from(h) * 1_000_000;
            session.idle_timeout_us = session.hello_interval_us * 3 + session.hello_interval_us / 5;
        }
        if let Some(m) = section.max_bundle_bytes {
            session.max_message_bytes = m as usize;
            session.max_queued_bytes = session.max_queued_bytes.max(m as usize);
            session.max_reassembly_bytes = session.max_reassembly_bytes.max(2 * m as usize);
        }
        let caps = LinkCaps {
            mtu: Some(session.single_max().max(128) as u32),
            reliable: true,
            bitrate_bps: Some(bitrate),
            duty_cycle: duty,
            broadcast: radio.is_some(),
            // The neighbours of one radio share its air: one medium per radio port.
            medium: radio
                .is_some()
                .then(|| NEXT_MEDIUM.fetch_add(1, Ordering::Relaxed)),
            max_bundle_bytes: session.max_message_bytes as u64,
            max_in_flight: if radio.is_some() { 4 } else { 16 },
        };
        Ok(Self {
            name,
            section: section.clone(),
            radio,
            duty,
            session,
            caps,
        })
    }

    fn medium(&self) -> Result<PortMedium> {
        let kind = match self.radio {
            Some(settings) => MediumKind::Radio {
                settings,
                rnode: self.section.mode == SerialMode::Rnode,
            },
            None => MediumKind::Cable {
                baud: self.section.baud,
            },
        };
        Ok(PortMedium {
            kind,
            budget: DutyBudget::for_duty(self.duty).context("duty cycle")?,
        })
    }
}

/// Runs one serial port until `stop`: open, (configure an RNode), run a session,
/// reopen after failures.
pub async fn run_port(plan: PortPlan, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let name = plan.name.clone();
    set_status(&shared, &name, |s| {
        s.port = plan.section.port.display().to_string();
        s.mode = format!("{:?}", plan.section.mode).to_lowercase();
        s.duty_cycle = plan.duty;
    });
    let mut last_error = String::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let r = run_once(&plan, &shared, &mut stop).await;
        set_status(&shared, &name, |s| {
            s.open = false;
            s.neighbors.clear();
        });
        match r {
            Ok(()) => return,
            Err(e) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    tracing::warn!(port = %name, error = %msg, "serial port unavailable; retrying");
                    last_error = msg.clone();
                }
                set_status(&shared, &name, |s| s.error = Some(msg));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(REOPEN) => {}
            _ = stop.changed() => return,
        }
    }
}

fn set_status(shared: &Shared, name: &str, f: impl FnOnce(&mut PortStatus)) {
    if let Ok(mut m) = shared.serial.lock() {
        f(m.entry(name.to_owned()).or_default());
    }
}

/// One life of the port: returns `Ok` on stop, `Err` when the port failed.
async fn run_once(
    plan: &PortPlan,
    shared: &Arc<Shared>,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let section = &plan.section;
    let mut port = tokio_serial::SerialStream::open(&tokio_serial::new(
        section.port.to_string_lossy(),
        section.baud,
    ))
    .with_context(|| format!("opening {}", section.port.display()))?;
    let mut decoder = kiss::Decoder::new(2 * plan.session.mtu + 16);
    if section.mode == SerialMode::Rnode {
        let settings = plan.radio.context("rnode without radio settings")?;
        let fw = configure_rnode(&mut port, &mut decoder, &settings).await?;
        tracing::info!(port = %plan.name, firmware = %fw, "RNode configured");
        set_status(shared, &plan.name, |s| s.firmware = Some(fw));
    }
    set_status(shared, &plan.name, |s| {
        s.open = true;
        s.error = None;
    });
    let realm = match &section.realm {
        Some(r) => shared.keyring.realms().iter().find(|x| x.name() == r),
        None => shared.keyring.realms().first(),
    }
    .context("no realm for the serial port")?
    .clone();
    let mut nonce = [0u8; 4];
    OsRng.fill_bytes(&mut nonce);
    let clock = shared.clock;
    let mut session = Session::new(
        shared.keyring.identity(),
        &realm,
        nonce,
        plan.session.clone(),
        plan.medium()?,
        clock.micros(),
    );
    let (out_tx, mut out_rx) = mpsc::channel::<(LinkId, LinkOut)>(PORT_QUEUE);
    let mut links: BTreeMap<NodeId, LinkId> = BTreeMap::new();
    let mut peers: HashMap<LinkId, NodeId> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    let mut wire = Vec::with_capacity(600);
    let mut last_status = 0u64;
    let mut unexpected = 0u64;
    let result: Result<()> = loop {
        let now = clock.micros();
        // Transmit what the session wants now.
        wire.clear();
        while let Some(frame) = session.poll_transmit(now) {
            kiss::encode_into(kiss::CMD_DATA, &frame, &mut wire);
        }
        if !wire.is_empty() {
            if let Err(e) = port.write_all(&wire).await {
                break Err(e).context("writing to the port");
            }
        }
        // Pass the session's events on.
        while let Some(ev) = session.poll_event() {
            if let Err(e) = handle_event(ev, plan, shared, &out_tx, &mut links, &mut peers).await {
                tracing::debug!(error = %e, "engine gone");
                return Ok(());
            }
        }
        if now >= last_status + 1_000_000 {
            last_status = now;
            let stats = session.stats();
            let ks = decoder.stats();
            let neighbors: Vec<String> =
                session.neighbors().iter().map(|n| n.to_string()).collect();
            let budget = plan
                .duty
                .map(|_| session.medium().budget.available_us(now) / 1000);
            set_status(shared, &plan.name, |s| {
                s.session = Some(stats);
                s.kiss_errors = ks.oversized + ks.bad_escapes;
                s.noise_bytes = ks.noise_bytes;
                s.unexpected_commands = unexpected;
                s.neighbors = neighbors;
                s.budget_ms = budget;
            });
        }
        let deadline = session
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.instant_of_micros(t)))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1))
            .min(tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = port.read(&mut buf) => {
                let n = match r {
                    Ok(0) => break Err(anyhow::anyhow!("the port closed")),
                    Ok(n) => n,
                    Err(e) => break Err(e).context("reading from the port"),
                };
                let now = clock.micros();
                for f in decoder.feed(&buf[..n]) {
                    match f {
                        Ok(f) if f.command & 0x0f == kiss::CMD_DATA => session.handle_frame(now, &f.data),
                        Ok(f) => {
                            if !radio_reply(shared, plan, f.command, &f.data) {
                                unexpected += 1;
                            }
                        }
                        Err(e) => tracing::debug!(port = %plan.name, error = %e, "KISS frame refused"),
                    }
                }
            }
            Some((link, out)) = out_rx.recv() => {
                let Some(peer) = peers.get(&link).copied() else { continue };
                match out {
                    LinkOut::Frame(bytes) => {
                        if let Err(e) = session.send(&peer, Kind::Frame, Class::Control, 0, bytes) {
                            tracing::debug!(%link, error = %e, "control frame dropped");
                        }
                    }
                    LinkOut::Bundle(transfer, bytes) => {
                        let class = match Bundle::decode(&bytes, shared.keyring.limits()).map(|b| b.header().priority) {
                            Ok(Priority::Expedited) => Class::Expedited,
                            Ok(Priority::Bulk) => Class::Bulk,
                            _ => Class::Normal,
                        };
                        tracing::debug!(%link, transfer = transfer.0, bytes = bytes.len(), "bundle queued on the port");
                        if let Err(e) = session.send(&peer, Kind::Bundle, class, transfer.0 * 2 + 1, bytes.to_vec()) {
                            tracing::debug!(%link, error = %e, "bundle not queued");
                            let input = Input::TransferFailed { link, transfer };
                            if shared.cmds.send(Cmd::Input(input)).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                session.handle_timeout(clock.micros());
            }
            _ = stop.changed() => break Ok(()),
        }
    };
    // The port is gone (or we stop): every contact on it ends.
    for (_, link) in links {
        shared.links.lock().map(|mut l| l.remove(&link)).ok();
        let _ = shared
            .cmds
            .send(Cmd::Input(Input::ContactDown { link }))
            .await;
    }
    result
}

async fn handle_event(
    ev: Event,
    plan: &PortPlan,
    shared: &Arc<Shared>,
    out_tx: &mpsc::Sender<(LinkId, LinkOut)>,
    links: &mut BTreeMap<NodeId, LinkId>,
    peers: &mut HashMap<LinkId, NodeId>,
) -> Result<(), mpsc::error::SendError<Cmd>> {
    let cmd = match ev {
        Event::NeighborUp { peer } => {
            let link = LinkId(NEXT_SERIAL_LINK.fetch_add(1, Ordering::Relaxed));
            links.insert(peer, link);
            peers.insert(link, peer);
            shared.links.lock().map(|mut l| l.insert(link, peer)).ok();
            tracing::info!(peer = %peer.short(), port = %plan.name, %link, "contact up");
            let (tx, mut rx) = mpsc::channel::<LinkOut>(WRITER_QUEUE);
            let out = out_tx.clone();
            tokio::spawn(async move {
                while let Some(o) = rx.recv().await {
                    if out.send((link, o)).await.is_err() {
                        return;
                    }
                }
            });
            Cmd::LinkUp {
                link,
                writer: tx,
                input: Input::ContactUp {
                    link,
                    peer,
                    caps: plan.caps,
                },
            }
        }
        Event::NeighborDown { peer } => {
            let Some(link) = links.remove(&peer) else {
                return Ok(());
            };
            peers.remove(&link);
            shared.links.lock().map(|mut l| l.remove(&link)).ok();
            tracing::info!(peer = %peer.short(), port = %plan.name, %link, "contact down");
            Cmd::Input(Input::ContactDown { link })
        }
        Event::Received { peer, kind, bytes } => {
            let Some(&link) = links.get(&peer) else {
                return Ok(());
            };
            match kind {
                Kind::Frame => Cmd::Input(Input::Frame { link, bytes }),
                Kind::Bundle => {
                    tracing::debug!(%link, bytes = bytes.len(), "bundle received on the port");
                    let keyring = shared.keyring.clone();
                    let mut verified = accept_batch(&keyring, vec![(link, bytes)]);
                    match verified.pop() {
                        Some((_, Ok(bundle))) => Cmd::Input(Input::Received {
                            link,
                            transfer: TransferId(0),
                            bundle,
                        }),
                        Some((_, Err((e, _)))) => {
                            shared.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, port = %plan.name, "bundle refused on arrival");
                            return Ok(());
                        }
                        None => return Ok(()),
                    }
                }
            }
        }
        Event::Sent { peer, tag } | Event::Failed { peer, tag } if tag % 2 == 0 => {
            let _ = peer;
            return Ok(());
        }
        Event::Sent { peer, tag } => {
            let Some(&link) = links.get(&peer) else {
                return Ok(());
            };
            tracing::debug!(%link, transfer = tag / 2, "bundle sent on the port");
            Cmd::Input(Input::TransferDone {
                link,
                transfer: TransferId(tag / 2),
            })
        }
        Event::Failed { peer, tag } => {
            let Some(&link) = links.get(&peer) else {
                return Ok(());
            };
            tracing::debug!(%link, transfer = tag / 2, "bundle not delivered on the port");
            Cmd::Input(Input::TransferFailed {
                link,
                transfer: TransferId(tag / 2),
            })
        }
    };
    shared.cmds.send(cmd).await
}

/// A non-data KISS frame from a radio: RNode status and errors. `false` if the port
/// expects no such frame.
fn radio_reply(shared: &Shared, plan: &PortPlan, command: u8, data: &[u8]) -> bool {
    if plan.section.mode != SerialMode::Rnode {
        return false;
    }
    match rnode::parse_reply(command, data) {
        Ok(rnode::Reply::Rssi(r)) => set_status(shared, &plan.name, |s| s.rssi_dbm = Some(r)),
        Ok(rnode::Reply::Snr(q)) => {
            set_status(shared, &plan.name, |s| s.snr_db = Some(f32::from(q) / 4.0))
        }
        Ok(rnode::Reply::Error(code)) => {
            tracing::warn!(port = %plan.name, code, "RNode reports an error")
        }
        Ok(_) => {}
        Err(_) => return false,
    }
    true
}

/// Detects an RNode and sets its radio; returns its firmware version.
async fn configure_rnode(
    port: &mut tokio_serial::SerialStream,
    decoder: &mut kiss::Decoder,
    settings: &RadioSettings,
) -> Result<String> {
    let mut wire = Vec::new();
    for (c, d) in rnode::detect_commands() {
        kiss::encode_into(c, &d, &mut wire);
    }
    port.write_all(&wire)
        .await
        .context("writing to the radio")?;
    let replies = read_replies(port, decoder, Duration::from_secs(3), |r| {
        r.iter().any(|x| matches!(x, rnode::Reply::Detected))
            && r.iter()
                .any(|x| matches!(x, rnode::Reply::FirmwareVersion { .. }))
    })
    .await?;
    if !replies.iter().any(|x| matches!(x, rnode::Reply::Detected)) {
        bail!("no RNode answered on the port (is it an RNode, at this baud rate?)");
    }
    let fw = replies
        .iter()
        .find_map(|r| match r {
            rnode::Reply::FirmwareVersion { major, minor } => Some(format!("{major}.{minor:02}")),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into());
    wire.clear();
    for (c, d) in rnode::config_commands(settings)? {
        kiss::encode_into(c, &d, &mut wire);
    }
    port.write_all(&wire)
        .await
        .context("configuring the radio")?;
    let replies = read_replies(port, decoder, Duration::from_secs(3), |r| {
        rnode::check_echo(settings, r).is_ok()
    })
    .await?;
    rnode::check_echo(settings, &replies).context("the RNode did not take the radio settings")?;
    Ok(fw)
}

async fn read_replies(
    port: &mut tokio_serial::SerialStream,
    decoder: &mut kiss::Decoder,
    wait: Duration,
    done: impl Fn(&[rnode::Reply]) -> bool,
) -> Result<Vec<rnode::Reply>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut replies = Vec::new();
    let mut buf = [0u8; 512];
    while !done(&replies) {
        let n = match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => bail!("the port closed"),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e).context("reading from the radio"),
        };
        for f in decoder.feed(&buf[..n]).flatten() {
            if let Ok(r) = rnode::parse_reply(f.command, &f.data) {
                if replies.len() < 256 {
                    replies.push(r);
                }
            }
        }
    }
    Ok(replies)
}

/// `ferry radio check`: detects an RNode on a port and prints what it says.
pub async fn check(port: &std::path::Path, baud: u32) -> Result<String> {
    let mut p = tokio_serial::SerialStream::open(&tokio_serial::new(port.to_string_lossy(), baud))
        .with_context(|| format!("opening {}", port.display()))?;
    let mut decoder = kiss::Decoder::new(1024);
    let mut wire = Vec::new();
    for (c, d) in rnode::detect_commands() {
        kiss::encode_into(c, &d, &mut wire);
    }
    p.write_all(&wire).await.context("writing to the port")?;
    let replies = read_replies(&mut p, &mut decoder, Duration::from_secs(3), |r| {
        r.iter().any(|x| matches!(x, rnode::Reply::Detected))
            && r.iter()
                .any(|x| matches!(x, rnode::Reply::FirmwareVersion { .. }))
            && r.iter().any(|x| matches!(x, rnode::Reply::Platform(_)))
    })
    .await?;
    if !replies.iter().any(|x| matches!(x, rnode::Reply::Detected)) {
        bail!(
            "nothing answered the RNode detect command on {} at {baud} baud: check the cable, the baud rate and that the radio runs RNode firmware",
            port.display()
        );
    }
    let mut out = format!("RNode detected on {}", port.display());
    for r in &replies {
        match r {
            rnode::Reply::FirmwareVersion { major, minor } => {
                out.push_str(&format!("\nfirmware: {major}.{minor:02}"))
            }
            rnode::Reply::Platform(p) => out.push_str(&format!("\nplatform: 0x{p:02x}")),
            rnode::Reply::Mcu(m) => out.push_str(&format!("\nmcu: 0x{m:02x}")),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_router::config::Config;

    #[test]
    fn every_hardware_profile_resolves_to_a_port_plan() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hardware/profiles");
        for entry in std::fs::read_dir(&dir).expect("profiles") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let cfg = Config::parse(&text).expect("valid config");
            for s in &cfg.serial {
                let plan = PortPlan::new(s).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert!(plan.caps.mtu.unwrap_or(0) >= 128);
            }
        }
    }

    fn radio(mode: &str, extra: &str) -> Result<PortPlan> {
        let text = format!(
            "[node]\nrealms = [\"v\"]\n[[serial]]\nport = \"/dev/x\"\nmode = \"{mode}\"\n[serial.radio]\n{extra}\n"
        );
        PortPlan::new(&Config::parse(&text).expect("config").serial[0])
    }

    #[test]
    fn radio_plans_follow_region_rules() {
        // 869.525 MHz is EU868's 10% sub-band; 868.1 MHz 1%; 869.0 MHz 0.1%.
        assert_eq!(
            radio("kiss", "frequency = 869525000").unwrap().duty,
            Some(0.1)
        );
        assert_eq!(
            radio("kiss", "frequency = 868100000").unwrap().duty,
            Some(0.01)
        );
        assert_eq!(
            radio("kiss", "frequency = 869000000").unwrap().duty,
            Some(0.001)
        );
        // Asking for more than the region allows is refused; less is kept.
        let e = radio("kiss", "frequency = 868100000\nduty_cycle = 0.05").unwrap_err();
        assert!(format!("{e:#}").contains("above"), "{e:#}");
        assert_eq!(
            radio("kiss", "frequency = 868100000\nduty_cycle = 0.005")
                .unwrap()
                .duty,
            Some(0.005)
        );
        // Outside the band, a bad bandwidth: clear errors.
        assert!(radio("kiss", "frequency = 915000000").is_err());
        assert!(radio("kiss", "bandwidth = 100000").is_err());
        // US915: no duty cycle, frames within the 400 ms dwell time.
        let us = radio(
            "kiss",
            "frequency = 915000000\nregion = \"us915\"\nspreading_factor = 9",
        )
        .unwrap();
        assert_eq!(us.duty, None);
        assert!(us.session.mtu < 255);
        assert!(radio(
            "kiss",
            "frequency = 915000000\nregion = \"us915\"\nspreading_factor = 12"
        )
        .is_err());
        // An RNode's frames leave room for its on-air header.
        let r = radio("rnode", "").unwrap();
        assert_eq!(r.session.mtu, 254);
        assert!(r.caps.broadcast && r.caps.duty_cycle == Some(0.1));
    }
}
