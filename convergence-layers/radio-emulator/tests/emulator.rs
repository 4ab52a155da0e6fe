//! The emulator over real pseudo-terminals: each test opens the ports as a node would
//! (through the symlinks) and checks what arrives, when, and what was counted.
// Real-time tests of a real-time tool: they read the monotonic clock.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_cl_lora::rnode;
use ferry_cl_session::kiss::{self, Decoder, Frame};
use ferry_radio_emulator::{set_raw, ChannelConfig, Emulator, Mode, RadioSettings, Stats};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// SF7 at 500 kHz: a short frame lasts a few milliseconds.
fn fast() -> RadioSettings {
    RadioSettings {
        spreading_factor: 7,
        bandwidth_hz: 500_000,
        ..RadioSettings::default()
    }
}

/// SF9 at 125 kHz: a 20-byte frame lasts about 185 ms.
fn slow() -> RadioSettings {
    RadioSettings {
        spreading_factor: 9,
        bandwidth_hz: 125_000,
        ..RadioSettings::default()
    }
}

fn config(dir: &Path, nodes: &[&str], mode: Mode, radio: RadioSettings) -> ChannelConfig {
    let mut c = ChannelConfig::new(nodes.iter().copied(), mode, dir.join("ports"));
    c.radio = radio;
    c
}

/// A node's end of a port, opened through the symlink like a serial port.
struct Port {
    file: File,
    decoder: Decoder,
    frames: VecDeque<(Frame, Instant)>,
}

impl Port {
    fn open(emu: &Emulator, name: &str) -> Result<Port> {
        let path = emu.path(name).context("no such node")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        set_raw(&file)?;
        Ok(Port {
            file,
            decoder: Decoder::new(1024),
            frames: VecDeque::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write(&bytes[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        bail!("write timed out");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn send(&mut self, command: u8, data: &[u8]) -> Result<()> {
        self.write(&kiss::encode(command, data))
    }

    /// Reads whatever arrives within `wait` (at most) into the frame buffer.
    fn pump(&mut self, wait: Duration) -> Result<()> {
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms))? == 0 {
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let now = Instant::now();
                    for f in self.decoder.feed(&buf[..n]) {
                        self.frames.push_back((f?, now));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next frame within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Result<Option<(Frame, Instant)>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.pump(left.min(Duration::from_millis(50)))?;
        }
    }

    /// The next data frame within `timeout`, skipping others (RNode signal reports).
    fn recv_data(&mut self, timeout: Duration) -> Result<Option<(Vec<u8>, Instant)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left)? {
                Some((f, at)) if f.command == kiss::CMD_DATA => return Ok(Some((f.data, at))),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Every frame arriving within `wait`.
    fn drain(&mut self, wait: Duration) -> Result<Vec<Frame>> {
        let mut out = Vec::new();
        while let Some((f, _)) = self.recv(wait)? {
            out.push(f);
        }
        Ok(out)
    }
}

/// Polls the stats until `done` holds (or 10 s pass).
fn wait_stats(emu: &Emulator, done: impl Fn(&Stats) -> bool) -> Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = emu.stats();
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("stats never got there: {s:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_frame_reaches_every_other_node_after_its_airtime() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let emu = Emulator::start(config(dir.path(), &["a", "b", "c"], Mode::Kiss, fast()))?;
    let link = emu.path("a").context("path")?;
    assert!(std::fs::read_link(&link)?.starts_with("/dev/pts"));
    let (mut a, mut b, mut c) = (
        Port::open(&emu, "a")?,
        Port::open(&emu, "b")?,
        Port::open(&emu, "c")?,
    );
    let payload = b"hello over the air, 0xC0 \xC0 and 0xDB \xDB".to_vec();
    let airtime = Duration::from_micros(fast().airtime_us(payload.len()));
    let sent = Instant::now();
    a.send(kiss::CMD_DATA, &payload)?;
    for port in [&mut b, &mut c] {
        let (got, at) = port
            .recv_data(Duration::from_secs(3))?
            .context("not delivered")?;
        assert_eq!(got, payload);
        assert!(
            at.duration_since(sent) >= airtime,
            "{:?} < {airtime:?}",
            at.duration_since(sent)
        );
    }
    assert!(
        a.drain(Duration::from_millis(100))?.is_empty(),
        "the sender heard itself"
    );
    let s = emu.stop();
    assert_eq!(
        (
            s.nodes["a"].tx_frames,
            s.nodes["b"].rx_frames,
            s.nodes["c"].rx_frames
        ),
        (1, 1, 1)
    );
    assert_eq!(s.nodes["a"].rx_frames, 0);
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "symlink left behind"
    );
    Ok(())
}

#[test]
fn out_of_reach_nodes_do_not_hear_and_a_reopened_port_still_works() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path(), &["a", "b", "c"], Mode::Kiss, fast());
    cfg.reach = Some(vec![("a".into(), "b".into()), ("b".into(), "c".into())]);
    let emu = Emulator::start(cfg)?;
    let (mut b, mut c) = (Port::open(&emu, "b")?, Port::open(&emu, "c")?);
    {
        // The node opens, writes and closes its port; the emulator carries on.
        let mut a = Port::open(&emu, "a")?;
        a.send(kiss::CMD_DATA, b"from a")?;
    }
    assert_eq!(
        b.recv_data(Duration::from_secs(3))?.context("b")?.0,
        b"from a"
    );
    assert!(
        c.drain(Duration::from_millis(200))?.is_empty(),
        "c is out of a's reach"
    );
    let mut a = Port::open(&emu, "a")?;
    c.send(kiss::CMD_DATA, b"from c")?;
    assert_eq!(
        b.recv_data(Duration::from_secs(3))?.context("b")?.0,
        b"from c"
    );
    assert!(
        a.drain(Duration::from_millis(200))?.is_empty(),
        "a is out of c's reach"
    );
    // Cut a-b: nothing gets through; restore it: it does again.
    emu.set_reach("a", "b", false)?;
    a.send(kiss::CMD_DATA, b"cut")?;
    assert!(b.drain(Duration::from_millis(200))?.is_empty());
    emu.set_reach("a", "b", true)?;
    a.send(kiss::CMD_DATA, b"restored")?;
    assert_eq!(
        b.recv_data(Duration::from_secs(3))?.context("b")?.0,
        b"restored"
    );
    let s = emu.stop();
    assert_eq!(
        (
            s.nodes["b"].rx_frames,
            s.nodes["c"].rx_frames,
            s.nodes["a"].rx_frames
        ),
        (3, 0, 0)
    );
    Ok(())
}

/// Sends `n` one-byte frames from a to b with `loss` and returns how many b read.
fn lossy_run(seed: u64, n: usize, loss: f64) -> Result<(usize, Stats)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path(), &["a", "b"], Mode::Kiss, fast());
    cfg.loss = loss;
    cfg.seed = seed;
    cfg.tx_queue_frames = n;
    let emu = Emulator::start(cfg)?;
    let (mut a, mut b) = (Port::open(&emu, "a")?, Port::open(&emu, "b")?);
    let mut wire = Vec::new();
    for i in 0..n {
        kiss::encode_into(kiss::CMD_DATA, &[(i % 100) as u8], &mut wire);
    }
    a.write(&wire)?;
    let want = n as u64;
    let s = wait_stats(&emu, |s| s.nodes["b"].rx_frames + s.nodes["b"].lost == want)?;
    let got = b.drain(Duration::from_millis(100))?.len();
    emu.stop();
    Ok((got, s))
}

#[test]
fn loss_is_seeded_and_within_bounds() -> Result<()> {
    let (first, s) = lossy_run(42, 200, 0.2)?;
    assert_eq!(first as u64, s.nodes["b"].rx_frames);
    let fraction = first as f64 / 200.0;
    assert!((0.68..=0.92).contains(&fraction), "delivered {fraction}");
    assert_eq!(
        s.nodes["b"].collided + s.nodes["b"].missed_while_transmitting,
        0
    );
    let (second, _) = lossy_run(42, 200, 0.2)?;
    assert_eq!(first, second, "same seed, same draws");
    Ok(())
}

#[test]
fn hidden_terminals_collide_at_the_middle_node() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path(), &["a", "b", "c"], Mode::Kiss, slow());
    cfg.reach = Some(vec![("a".into(), "b".into()), ("b".into(), "c".into())]);
    let emu = Emulator::start(cfg)?;
    let (mut a, mut b, mut c) = (
        Port::open(&emu, "a")?,
        Port::open(&emu, "b")?,
        Port::open(&emu, "c")?,
    );
    a.send(kiss::CMD_DATA, &[0xA; 20])?;
    c.send(kiss::CMD_DATA, &[0xC; 20])?;
    let s = wait_stats(&emu, |s| s.nodes["b"].collided == 2)?;
    assert!(b.drain(Duration::from_millis(100))?.is_empty());
    assert_eq!(
        (
            s.nodes["a"].tx_frames,
            s.nodes["c"].tx_frames,
            s.nodes["b"].rx_frames
        ),
        (1, 1, 0)
    );
    // a and c never heard each other, so neither deferred.
    assert_eq!(s.nodes["a"].deferred + s.nodes["c"].deferred, 0);
    // Alone, the same frame gets through.
    a.send(kiss::CMD_DATA, &[0xA; 20])?;
    assert_eq!(
        b.recv_data(Duration::from_secs(3))?.context("b")?.0,
        vec![0xA; 20]
    );
    emu.stop();
    Ok(())
}

/// Semtech's time-on-air formula (SX1276 datasheet §4.1.1.7), in µs, computed here
/// independently of `ferry-cl-lora`.
fn semtech_us(r: &RadioSettings, payload: usize) -> f64 {
    let sf = f64::from(r.spreading_factor);
    let ts = 2f64.powf(sf) / f64::from(r.bandwidth_hz) * 1e6;
    let de = if ts >= 16_000.0 { 1.0 } else { 0.0 };
    let ih = if r.explicit_header { 0.0 } else { 1.0 };
    let crc = if r.crc { 1.0 } else { 0.0 };
    let cr = f64::from(r.coding_rate - 4);
    let num = 8.0 * payload as f64 - 4.0 * sf + 28.0 + 16.0 * crc - 20.0 * ih;
    let blocks = (num / (4.0 * (sf - 2.0 * de))).ceil().max(0.0);
    let symbols = f64::from(r.preamble_symbols) + 4.25 + 8.0 + blocks * (cr + 4.0);
    symbols * ts
}

#[test]
fn airtime_stats_are_the_sum_of_semtech_airtimes() -> Result<()> {
    let radio = RadioSettings {
        spreading_factor: 7,
        bandwidth_hz: 125_000,
        coding_rate: 5,
        preamble_symbols: 8,
        explicit_header: true,
        crc: true,
        ..RadioSettings::default()
    };
    // The textbook case: SF7, 125 kHz, 4/5, 10 bytes = 41.216 ms.
    assert!((semtech_us(&radio, 10) - 41_216.0).abs() < 0.01);
    let dir = tempfile::tempdir()?;
    let emu = Emulator::start(config(dir.path(), &["a", "b"], Mode::Kiss, radio))?;
    let (mut a, mut b) = (Port::open(&emu, "a")?, Port::open(&emu, "b")?);
    let sizes = [10usize, 20, 51, 1];
    for &n in &sizes {
        a.send(kiss::CMD_DATA, &vec![0x55; n])?;
    }
    let s = wait_stats(&emu, |s| s.nodes["b"].rx_frames == sizes.len() as u64)?;
    let expected: f64 = sizes.iter().map(|&n| semtech_us(&radio, n)).sum();
    let a_stats = &s.nodes["a"];
    // The crate rounds each frame up to a whole µs.
    assert!(
        (a_stats.airtime_us as f64 - expected).abs() <= sizes.len() as f64,
        "{} vs {expected}",
        a_stats.airtime_us
    );
    assert_eq!(a_stats.tx_bytes, sizes.iter().sum::<usize>() as u64);
    assert_eq!(a_stats.max_airtime_in_any_hour_ms, a_stats.airtime_ms);
    assert!(a_stats.airtime_per_hour_ms > a_stats.airtime_ms);
    assert_eq!(s.nodes["b"].airtime_us, 0);
    assert_eq!(b.drain(Duration::from_millis(100))?.len(), sizes.len());
    emu.stop();
    Ok(())
}

#[test]
fn oversize_frames_are_dropped_and_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let emu = Emulator::start(config(dir.path(), &["a", "b"], Mode::Kiss, fast()))?;
    let (mut a, mut b) = (Port::open(&emu, "a")?, Port::open(&emu, "b")?);
    a.send(kiss::CMD_DATA, &[1; 256])?;
    a.send(kiss::CMD_DATA, &[2; 255])?;
    // KISS parameters (TXDELAY, persistence) are accepted and ignored.
    a.send(0x01, &[50])?;
    a.send(0x02, &[63])?;
    let (got, _) = b.recv_data(Duration::from_secs(3))?.context("b")?;
    assert_eq!(got, vec![2; 255]);
    wait_stats(&emu, |s| s.nodes["a"].ignored_commands == 2)?;
    let s = emu.stop();
    assert_eq!(s.nodes["a"].dropped_oversize, 1);
    assert_eq!(s.nodes["a"].tx_frames, 1);
    assert_eq!(s.nodes["a"].ignored_commands, 2);
    assert_eq!(s.nodes["b"].rx_frames, 1);
    Ok(())
}

/// Sends `commands` and collects the replies until `n` have come.
fn exchange(port: &mut Port, commands: &[(u8, Vec<u8>)], n: usize) -> Result<Vec<Frame>> {
    for (c, d) in commands {
        port.send(*c, d)?;
    }
    let mut replies = Vec::new();
    while replies.len() < n {
        let (f, _) = port
            .recv(Duration::from_secs(3))?
            .context("missing reply")?;
        replies.push(f);
    }
    Ok(replies)
}

#[test]
fn rnode_mode_answers_like_the_firmware() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let radio = fast();
    let emu = Emulator::start(config(dir.path(), &["a", "b", "c"], Mode::Rnode, radio))?;
    let (mut a, mut b, mut c) = (
        Port::open(&emu, "a")?,
        Port::open(&emu, "b")?,
        Port::open(&emu, "c")?,
    );
    let mut detect_cmds = rnode::detect_commands();
    detect_cmds.push((rnode::CMD_BOARD, vec![0x00]));
    let detect = exchange(&mut a, &detect_cmds, 5)?;
    let pairs: Vec<(u8, Vec<u8>)> = detect.into_iter().map(|f| (f.command, f.data)).collect();
    assert_eq!(
        pairs,
        vec![
            (rnode::CMD_DETECT, vec![rnode::DETECT_RESP]),
            (rnode::CMD_FW_VERSION, vec![1, 74]),
            (rnode::CMD_PLATFORM, vec![0x80]),
            (rnode::CMD_MCU, vec![0x81]),
            (rnode::CMD_BOARD, vec![0x35]),
        ]
    );
    // Configure a and b like the channel, c on another spreading factor.
    let config_cmds = rnode::config_commands(&radio)?;
    for port in [&mut a, &mut b] {
        let replies = exchange(port, &config_cmds, config_cmds.len())?;
        let parsed = replies
            .iter()
            .map(|f| rnode::parse_reply(f.command, &f.data))
            .collect::<Result<Vec<_>, _>>()?;
        rnode::check_echo(&radio, &parsed)?;
    }
    let other = RadioSettings {
        spreading_factor: 8,
        ..radio
    };
    exchange(&mut c, &rnode::config_commands(&other)?, config_cmds.len())?;
    // The ready query reports room in the queue.
    let ready = exchange(&mut a, &[(rnode::CMD_READY, vec![0x00])], 1)?;
    assert_eq!(
        (ready[0].command, ready[0].data.clone()),
        (rnode::CMD_READY, vec![1])
    );
    let packet = vec![0x42; 300]; // split into two LoRa frames by the firmware
    let sent = Instant::now();
    a.send(rnode::CMD_DATA, &packet)?;
    // b gets the signal reports, then the packet.
    let mut seen = Vec::new();
    let at = loop {
        let (f, at) = b.recv(Duration::from_secs(3))?.context("b got nothing")?;
        seen.push(f.command);
        if f.command == rnode::CMD_DATA {
            assert_eq!(f.data, packet);
            break at;
        }
    };
    assert_eq!(
        seen,
        vec![rnode::CMD_STAT_RSSI, rnode::CMD_STAT_SNR, rnode::CMD_DATA]
    );
    let airtime = rnode::packet_airtime_us(&radio, packet.len())?;
    assert!(at.duration_since(sent) >= Duration::from_micros(airtime));
    assert!(
        c.drain(Duration::from_millis(100))?.is_empty(),
        "c is on SF8"
    );
    a.send(rnode::CMD_DATA, &[0; 509])?;
    wait_stats(&emu, |s| s.nodes["a"].dropped_oversize == 1)?;
    let s = emu.stop();
    let (sa, sc) = (&s.nodes["a"], &s.nodes["c"]);
    assert_eq!(sa.airtime_us, airtime);
    assert_eq!(sa.dropped_oversize, 1);
    assert_eq!(sa.config_mismatch, 0);
    assert_eq!(sc.config_mismatch, 1);
    assert_eq!(sc.missed_config_mismatch, 1);
    let cr = sc.radio.as_ref().context("radio")?;
    assert_eq!((cr.spreading_factor, cr.on), (Some(8), true));
    Ok(())
}

#[test]
fn wire_mode_is_a_paced_cable_that_can_be_unplugged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let baud = 9_600; // 960 bytes/s
    let emu = Emulator::start(config(dir.path(), &["a", "b"], Mode::Wire { baud }, fast()))?;
    let (mut a, mut b) = (Port::open(&emu, "a")?, Port::open(&emu, "b")?);
    let read_n = |p: &mut Port, n: usize, within: Duration| -> Result<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < n && Instant::now() < deadline {
            let mut fds = [PollFd::new(p.file.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(50u8))? > 0 {
                match p.file.read(&mut buf) {
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(got)
    };
    // Raw bytes, including KISS specials, in order.
    let data: Vec<u8> = (0..=255u8).cycle().take(192).collect();
    let sent = Instant::now();
    a.write(&data)?;
    let long = Duration::from_secs(5);
    assert_eq!(read_n(&mut b, data.len(), long)?, data);
    // 192 bytes at 960 bytes/s take 200 ms on the line.
    assert!(
        sent.elapsed() >= Duration::from_millis(190),
        "{:?}",
        sent.elapsed()
    );
    b.write(b"back")?;
    assert_eq!(read_n(&mut a, 4, long)?, b"back");
    emu.set_reach("a", "b", false)?;
    a.write(b"into the void")?;
    assert!(read_n(&mut b, 1, Duration::from_millis(300))?.is_empty());
    emu.set_reach("a", "b", true)?;
    a.write(b"plugged")?;
    assert_eq!(read_n(&mut b, 7, long)?, b"plugged");
    let s = emu.stop();
    assert!(s.nodes["b"].lost >= 1);
    assert_eq!(s.nodes["b"].rx_bytes, 192 + 7);
    assert_eq!(s.nodes["a"].rx_bytes, 4);
    Ok(())
}

#[test]
fn a_radio_waits_for_the_transmission_it_hears() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let emu = Emulator::start(config(dir.path(), &["a", "b", "c"], Mode::Kiss, slow()))?;
    let (mut a, mut b, mut c) = (
        Port::open(&emu, "a")?,
        Port::open(&emu, "b")?,
        Port::open(&emu, "c")?,
    );
    let long = vec![0xA; 60];
    let short = vec![0xB; 10];
    a.send(kiss::CMD_DATA, &long)?;
    // Well into a's transmission (about 400 ms), b has something to send.
    std::thread::sleep(Duration::from_millis(60));
    b.send(kiss::CMD_DATA, &short)?;
    let (first, t_a) = c.recv_data(Duration::from_secs(3))?.context("a's frame")?;
    let (second, t_b) = c.recv_data(Duration::from_secs(3))?.context("b's frame")?;
    assert_eq!((first, second), (long.clone(), short.clone()));
    // b started no earlier than a's end, so its frame came a full airtime later.
    let b_air = Duration::from_micros(slow().airtime_us(short.len()));
    let gap = t_b.duration_since(t_a);
    assert!(
        gap + Duration::from_millis(5) >= b_air,
        "{gap:?} < {b_air:?}"
    );
    assert_eq!(
        b.recv_data(Duration::from_secs(1))?.context("b hears a")?.0,
        long
    );
    assert_eq!(
        a.recv_data(Duration::from_secs(3))?.context("a hears b")?.0,
        short
    );
    let s = emu.stop();
    assert_eq!(s.nodes["b"].deferred, 1);
    let spoiled: u64 = s
        .nodes
        .values()
        .map(|n| n.collided + n.missed_while_transmitting)
        .sum();
    assert_eq!(spoiled, 0);
    Ok(())
}
