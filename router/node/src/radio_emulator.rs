//! `ferry radio-emulator`: pseudo-terminals joined as one emulated LoRa channel (KISS TNC
//! or RNode firmware) or as a null-modem cable, for tests and demos
//! (`ferry-radio-emulator`).
//!
//! It prints one JSON line, `{"dir": DIR, "nodes": {"a": "DIR/a", ...}}`, then reads
//! commands from stdin, one per line, until EOF or `quit`:
//!
//! ```text
//! cut A B       A and B stop hearing each other (wire mode: unplug the cable)
//! restore A B   they hear each other again (wire mode: plug it back)
//! inject A HEX  wire mode: put these bytes on the line towards A (noise, bad frames)
//! loss P        loss probability from now on
//! stats         print the counters as one JSON line
//! quit          stop
//! ```
//!
//! On EOF, `quit`, SIGTERM or SIGINT it writes the final counters (to `--stats` and as
//! one JSON line on stdout), removes its symlinks and exits 0. Commands act in order,
//! so `stats` after `cut` also tells a script that the cut is in effect.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_radio_emulator::{ChannelConfig, Emulator, Mode, RadioSettings, Stats};

/// What the emulated ports speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmulatorMode {
    /// A KISS TNC on a shared LoRa channel.
    Kiss,
    /// RNode firmware (its KISS host protocol) on a shared LoRa channel.
    Rnode,
    /// A null-modem serial cable between exactly two nodes (raw bytes).
    Wire,
}

/// `ferry radio-emulator`: emulated radios on pseudo-terminals.
#[derive(clap::Args, Debug)]
pub struct EmulatorArgs {
    /// Node names, comma separated: one port DIR/NAME each.
    #[arg(long, value_delimiter = ',', required = true, value_name = "A,B,...")]
    pub nodes: Vec<String>,
    /// What the ports speak.
    #[arg(long, value_enum, default_value_t = EmulatorMode::Kiss)]
    pub mode: EmulatorMode,
    /// Line speed in wire mode, bit/s (10 bits per byte).
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Channel frequency, Hz (default 869525000).
    #[arg(long, value_name = "HZ")]
    pub frequency: Option<u32>,
    /// Channel bandwidth, Hz.
    #[arg(long, default_value_t = 125_000, value_name = "HZ")]
    pub bandwidth: u32,
    /// Spreading factor, 5..=12.
    #[arg(long, default_value_t = 9)]
    pub sf: u8,
    /// Coding rate denominator, 5..=8 (4/5..4/8).
    #[arg(long, default_value_t = 5)]
    pub cr: u8,
    /// Transmit power, dBm (default 14).
    #[arg(long, allow_negative_numbers = true, value_name = "DBM")]
    pub tx_power: Option<i8>,
    /// Probability that a reception is lost (wire mode: that a written chunk is).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Pairs that hear each other, e.g. "a-b,b-c" (default: all hear all).
    #[arg(long, value_name = "A-B,...")]
    pub reach: Option<String>,
    /// Seed of the loss draws and back-off slots.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to make the symlinks (default: a new directory under the system's
    /// temporary directory, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rewrite the counters to this JSON file every second and at exit.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
}

/// Splits "a-b,b-c" into pairs of known node names (names may contain `-`).
fn parse_reach(spec: &str, nodes: &[String]) -> Result<Vec<(String, String)>> {
    let known = |s: &str| nodes.iter().any(|n| n == s);
    let mut pairs = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let splits: Vec<(&str, &str)> = item
            .match_indices('-')
            .map(|(i, _)| (&item[..i], &item[i + 1..]))
            .filter(|(a, b)| known(a) && known(b))
            .collect();
        match splits.as_slice() {
            [(a, b)] if a == b => bail!("--reach: `{item}` joins a node to itself"),
            [(a, b)] => pairs.push(((*a).to_string(), (*b).to_string())),
            [] => bail!("--reach: `{item}` is not NODE-NODE with nodes from --nodes"),
            _ => bail!("--reach: `{item}` is ambiguous"),
        }
    }
    Ok(pairs)
}

/// A fresh directory under the system's temporary directory.
fn make_temp_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..1000u32 {
        let dir = base.join(format!("ferry-radio-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
        }
    }
    bail!("no free directory name under {}", base.display())
}

fn config(args: &EmulatorArgs, dir: PathBuf) -> Result<ChannelConfig> {
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss {} is not a probability (0..=1)", args.loss);
    }
    let mode = match args.mode {
        EmulatorMode::Kiss => Mode::Kiss,
        EmulatorMode::Rnode => Mode::Rnode,
        EmulatorMode::Wire => {
            if args.nodes.len() != 2 {
                bail!(
                    "--mode wire joins exactly two nodes (got {})",
                    args.nodes.len()
                );
            }
            if args.baud == 0 {
                bail!("--baud must be positive");
            }
            Mode::Wire { baud: args.baud }
        }
    };
    let defaults = RadioSettings::default();
    let mut cfg = ChannelConfig::new(args.nodes.iter().cloned(), mode, dir);
    cfg.radio = RadioSettings {
        frequency_hz: args.frequency.unwrap_or(defaults.frequency_hz),
        bandwidth_hz: args.bandwidth,
        spreading_factor: args.sf,
        coding_rate: args.cr,
        tx_power_dbm: args.tx_power.unwrap_or(defaults.tx_power_dbm),
        ..defaults
    };
    cfg.loss = args.loss;
    cfg.seed = args.seed;
    if let Some(spec) = &args.reach {
        cfg.reach = Some(parse_reach(spec, &args.nodes)?);
    }
    Ok(cfg)
}

/// Writes `stats` to `path` atomically (temporary file, then rename).
fn write_stats(path: &Path, stats: &Stats) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut json = serde_json::to_vec_pretty(stats)?;
    json.push(b'\n');
    std::fs::write(&tmp, &json).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

/// Prints one line on stdout and flushes (a closed stdout is not an error here).
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn complain(e: &anyhow::Error) {
    let _ = writeln!(io::stderr(), "ferry radio-emulator: {e:#}");
}

enum Flow {
    Go,
    Quit,
}

fn command(emu: &Emulator, line: &str) -> Result<Flow> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => {}
        ["cut", a, b] => emu.set_reach(a, b, false)?,
        ["restore", a, b] => emu.set_reach(a, b, true)?,
        ["loss", p] => {
            let p: f64 = p.parse().with_context(|| format!("loss `{p}`"))?;
            emu.set_loss(p)?;
        }
        ["inject", node, hex] => {
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(hex.as_bytes())
                .with_context(|| format!("inject: `{hex}` is not hex"))?;
            emu.inject(node, bytes)?;
        }
        ["stats"] => say(&serde_json::to_string(&emu.stats())?),
        ["quit"] | ["exit"] => return Ok(Flow::Quit),
        _ => bail!(
            "unknown command `{line}` (cut A B, restore A B, loss P, inject A HEX, stats, quit)"
        ),
    }
    Ok(Flow::Go)
}

/// Runs `ferry radio-emulator` until EOF on stdin, `quit`, SIGTERM or SIGINT.
pub fn run(args: EmulatorArgs) -> Result<()> {
    let (dir, made_dir) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (make_temp_dir()?, true),
    };
    let cfg = match config(&args, dir.clone()) {
        Ok(c) => c,
        Err(e) => {
            if made_dir {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };
    let emu = match Emulator::start(cfg) {
        Ok(e) => e,
        Err(e) => {
            if made_dir {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e).context("cannot start the radio emulator");
        }
    };
    let nodes: serde_json::Map<String, serde_json::Value> = emu
        .nodes()
        .iter()
        .filter_map(|n| {
            let p = emu.path(n)?;
            Some((n.clone(), p.display().to_string().into()))
        })
        .collect();
    say(&serde_json::json!({ "dir": dir.display().to_string(), "nodes": nodes }).to_string());

    let (tx, mut lines) = tokio::sync::mpsc::channel::<Option<String>>(16);
    std::thread::Builder::new()
        .name("radio-emu-stdin".into())
        .spawn(move || {
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.blocking_send(None);
        })
        .context("cannot start the stdin thread")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let outcome = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    if let Some(path) = &args.stats {
                        if let Err(e) = write_stats(path, &emu.stats()) {
                            complain(&e);
                        }
                    }
                }
                line = lines.recv() => match line.flatten() {
                    None => break,
                    Some(line) => match command(&emu, &line) {
                        Ok(Flow::Go) => {}
                        Ok(Flow::Quit) => break,
                        Err(e) => complain(&e),
                    },
                },
            }
        }
        anyhow::Ok(())
    });
    let stats = emu.stop();
    if made_dir {
        let _ = std::fs::remove_dir(&dir);
    }
    outcome?;
    if let Some(path) = &args.stats {
        write_stats(path, &stats)?;
    }
    say(&serde_json::to_string(&stats)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_pairs_allow_dashes_in_names() {
        let nodes: Vec<String> = ["a", "b-1", "c"].iter().map(|s| s.to_string()).collect();
        let pairs = parse_reach("a-b-1, b-1-c", &nodes).unwrap();
        assert_eq!(
            pairs,
            vec![("a".into(), "b-1".into()), ("b-1".into(), "c".into())]
        );
        assert!(parse_reach("a-x", &nodes).is_err());
        assert!(parse_reach("a-a", &nodes).is_err());
    }
}
