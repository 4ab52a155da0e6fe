//! `ferry`: the Ferry node's command line and daemon.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod api;
mod client;
mod daemon;
mod drive;
mod radio_emulator;
mod reassembly;
mod serial;
mod sim;
mod stream;

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ferry_core::rand_core::OsRng;
use ferry_core::{Bundle, Limits, NodeId, PayloadKind, Priority, Realm, Recipient, SealParams};
use ferry_router::config::{Config, PeerAddr, Policy};
use ferry_router::home::{self, Home, InitOptions};
use ferry_router::inspect::inspect;
use ferry_storage::CustodyStore;

use daemon::now_dtn;

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: a delay-tolerant store-carry-forward bundle router"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct HomeArg {
    /// Node home directory (default: $FERRY_HOME, else ~/.ferry).
    #[arg(long, env = "FERRY_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
}

impl HomeArg {
    fn dir(&self) -> Result<PathBuf> {
        if let Some(h) = &self.home {
            return Ok(h.clone());
        }
        let base = std::env::var_os("HOME")
            .ok_or_else(|| anyhow!("no --home given and $HOME is not set"))?;
        Ok(PathBuf::from(base).join(".ferry"))
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a node: identity, realm keys, commented config and custody store.
    Init(InitArgs),
    /// Print this node's id.
    Id {
        #[command(flatten)]
        home: HomeArg,
        /// Print the short form (first 10 characters) only.
        #[arg(long)]
        short: bool,
    },
    /// Print realm secrets as NAME:SECRET, to set up other nodes of the realm.
    Realm {
        #[command(flatten)]
        home: HomeArg,
        /// Only this realm.
        name: Option<String>,
    },
    /// Work with bundle files.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Run the node: links, routing, custody store and the local app API
    /// (a first run creates the node).
    Run {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Send a payload through the running node; prints the bundle id.
    Send(SendArgs),
    /// Receive payloads from the running node and acknowledge them.
    Recv {
        #[command(flatten)]
        home: HomeArg,
        /// Service endpoint (default: the default endpoint).
        #[arg(long)]
        endpoint: Option<String>,
        /// Seconds to wait for the first payload.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Write each payload to DIR/<bundle id> instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Take at most this many payloads.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Show the running node's status.
    Status {
        #[command(flatten)]
        home: HomeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the running node's links and configured peers.
    Peers {
        #[command(flatten)]
        home: HomeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// USB drives carried between sites (sneakernet).
    #[command(subcommand)]
    Drive(DriveCmd),
    /// Simulate many nodes running Ferry's real routing engine over a contact trace.
    #[command(subcommand)]
    Sim(SimCmd),
    /// Serial-attached LoRa radios.
    #[command(subcommand)]
    Radio(RadioCmd),
    /// An emulated LoRa channel (or serial cable) over pseudo-terminals, for tests and
    /// demos without radios.
    RadioEmulator(radio_emulator::EmulatorArgs),
    /// List the bundles in the running node's store.
    Bundles {
        #[command(flatten)]
        home: HomeArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Most bundles to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
enum RadioCmd {
    /// Check that an RNode radio answers on a serial port (firmware, platform).
    Check {
        /// The serial device, e.g. /dev/ttyUSB0.
        #[arg(long)]
        port: PathBuf,
        /// Line speed.
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
    },
}

#[derive(Subcommand, Debug)]
enum DriveCmd {
    /// Exchange bundles with a drive mounted at PATH: import what it carries for or
    /// through this node, then export what should travel on (by routing policy and
    /// priority, within --max-bytes). Uses the running node if there is one.
    Sync {
        #[command(flatten)]
        home: HomeArg,
        /// The drive's mount point (a `ferry/` folder is created there if missing).
        path: PathBuf,
        /// Most bundle bytes to write to the drive (e.g. 500M, 2G).
        #[arg(long, value_name = "BYTES")]
        max_bytes: Option<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SimCmd {
    /// Run a scenario (with its own routing policy, or --policy).
    Run {
        /// The scenario file (TOML; see docs/simulation.md).
        scenario: PathBuf,
        /// Routing policy instead of the scenario's: epidemic, spray-and-wait,
        /// prophet or direct.
        #[arg(long)]
        policy: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: sim::Format,
        /// Also write an SVG chart of the result here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Run a scenario once per policy and print the results side by side.
    Compare {
        /// The scenario file.
        scenario: PathBuf,
        /// Comma-separated policies.
        #[arg(long, default_value = "epidemic,spray-and-wait,prophet,direct")]
        policies: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: sim::Format,
        /// Also write an SVG chart (delivery ratio and latency per policy) here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Policies simulated at the same time (default: one per CPU). Each run
        /// holds its own copy of every node's state: lower it if memory is short.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
    },
}

#[derive(Args, Debug)]
struct SendArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Destination node id.
    #[arg(long, value_name = "NODE_ID", required_unless_present = "group")]
    to: Option<String>,
    /// Send to every node of the realm.
    #[arg(long, conflicts_with = "to")]
    group: bool,
    /// Service endpoint on the destination.
    #[arg(long)]
    endpoint: Option<String>,
    /// Lifetime, e.g. 90s, 30m, 2h, 7d.
    #[arg(long)]
    lifetime: Option<String>,
    /// bulk, normal or expedited.
    #[arg(long)]
    priority: Option<String>,
    /// Use a fresh ephemeral key for this bundle.
    #[arg(long)]
    ephemeral: bool,
    /// Payload file, or - for stdin (default: stdin).
    file: Option<String>,
}

#[derive(Args, Debug)]
struct InitArgs {
    #[command(flatten)]
    home: HomeArg,
    /// QUIC listen address.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Local API address (loopback only).
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// Static peer NODE_ID@host:port (repeatable).
    #[arg(long = "peer", value_name = "NODE_ID@HOST:PORT")]
    peers: Vec<String>,
    /// Realm NAME (new random secret) or NAME:SECRET to join an existing realm
    /// (repeatable; default: a new realm named "default").
    #[arg(long = "realm", value_name = "NAME[:SECRET]")]
    realms: Vec<String>,
    /// Routing policy: epidemic, spray-and-wait, prophet, direct or static.
    #[arg(long, value_name = "POLICY")]
    routing: Option<String>,
    /// Custody store byte quota.
    #[arg(long, value_name = "BYTES")]
    max_store_bytes: Option<u64>,
    /// Turn LAN discovery off.
    #[arg(long)]
    no_discovery: bool,
}

#[derive(Subcommand, Debug)]
enum BundleCmd {
    /// Seal a payload into a signed, encrypted bundle written to stdout or --out.
    Seal(SealArgs),
    /// Verify and decrypt a bundle addressed to this node; the payload goes to stdout.
    Open {
        #[command(flatten)]
        home: HomeArg,
        /// Bundle file, or - for stdin.
        file: String,
        /// Write the payload here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also print source, kind and endpoint on stderr.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Show a bundle's outer fields and check its signature, without any key.
    /// Exits 3 if the signature does not verify.
    Inspect {
        /// Bundle file, or - for stdin.
        file: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Largest bundle to read, in bytes.
        #[arg(long, default_value_t = ferry_core::DEFAULT_MAX_BUNDLE_BYTES)]
        max_bytes: usize,
    },
}

#[derive(Args, Debug)]
struct SealArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Destination node id.
    #[arg(long, value_name = "NODE_ID", required_unless_present = "group")]
    to: Option<String>,
    /// Address every node of the realm instead of one node.
    #[arg(long, conflicts_with = "to")]
    group: bool,
    /// Service endpoint on the destination (sealed inside the ciphertext).
    #[arg(long, value_name = "NAME")]
    endpoint: Option<String>,
    /// Lifetime, e.g. 90s, 30m, 2h, 7d (default: routing.default_lifetime).
    #[arg(long)]
    lifetime: Option<String>,
    /// bulk, normal or expedited.
    #[arg(long, default_value = "normal")]
    priority: String,
    /// Realm to send in (default: the node's first realm).
    #[arg(long)]
    realm: Option<String>,
    /// Use a fresh ephemeral key for this bundle (+32 bytes; forward secrecy
    /// against a later compromise of this node's key).
    #[arg(long)]
    ephemeral: bool,
    /// Write the bundle here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Payload file, or - for stdin (default: stdin).
    file: Option<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line, like every other error.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("ferry: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, without repeating a cause that an outer
/// message already includes.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        let c = c.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        if msg.contains(&c) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&c);
    }
    msg
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Init(args) => init(args),
        Cmd::Id { home, short } => {
            let id = home::node_id(&home.dir()?)?;
            println!("{}", if short { id.short() } else { id.to_string() });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Realm { home, name } => {
            let h = Home::open(&home.dir()?)?;
            let mut found = false;
            for r in h.keyring().realms() {
                if name.as_deref().is_none_or(|n| n == r.name()) {
                    println!("{}", r.to_share_string().as_str());
                    found = true;
                }
            }
            if !found {
                bail!("this node is not in realm `{}`", name.unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { home } => {
            daemon::run(home.dir()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Send(args) => {
            let c = client::Client::for_home(&args.home.dir()?)?;
            let payload = read_input(args.file.as_deref().unwrap_or("-"), c.max_bundle_bytes())?;
            let id = c.send(
                &client::SendOptions {
                    to: args.to,
                    group: args.group,
                    endpoint: args.endpoint,
                    lifetime: args.lifetime,
                    priority: args.priority,
                    ephemeral: args.ephemeral,
                },
                &payload,
            )?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Recv {
            home,
            endpoint,
            wait,
            out,
            max,
        } => {
            let c = client::Client::for_home(&home.dir()?)?;
            let n = c.recv(endpoint.as_deref(), wait, out.as_deref(), max)?;
            eprintln!("ferry: received {n} payload(s)");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { home, json } => {
            client::Client::for_home(&home.dir()?)?.show("/v1/status", json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Peers { home, json } => {
            client::Client::for_home(&home.dir()?)?.show("/v1/peers", json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bundles { home, json, limit } => {
            client::Client::for_home(&home.dir()?)?
                .show(&format!("/v1/bundles?limit={limit}"), json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Drive(DriveCmd::Sync {
            home,
            path,
            max_bytes,
            json,
        }) => drive_sync(&home.dir()?, &path, max_bytes.as_deref(), json),
        Cmd::RadioEmulator(a) => {
            radio_emulator::run(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Radio(RadioCmd::Check { port, baud }) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let text = rt.block_on(serial::check(&port, baud))?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sim(SimCmd::Run {
            scenario,
            policy,
            format,
            svg,
        }) => {
            sim::run(&sim::SimArgs {
                scenario,
                policies: policy.map(|p| vec![p]),
                format,
                svg,
                jobs: None,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sim(SimCmd::Compare {
            scenario,
            policies,
            format,
            svg,
            jobs,
        }) => {
            sim::run(&sim::SimArgs {
                scenario,
                policies: Some(sim::parse_policies(&policies)?),
                format,
                svg,
                jobs: jobs.map(usize::from),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bundle(BundleCmd::Seal(args)) => seal(args),
        Cmd::Bundle(BundleCmd::Open {
            home,
            file,
            out,
            verbose,
        }) => open(&home, &file, out.as_deref(), verbose),
        Cmd::Bundle(BundleCmd::Inspect {
            file,
            json,
            max_bytes,
        }) => {
            let bytes = read_input(&file, max_bytes)?;
            let bundle = Bundle::decode(
                &bytes,
                &Limits {
                    max_bundle_bytes: max_bytes,
                },
            )
            .context("not a valid bundle")?;
            let report = inspect(&bundle);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.signature_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

/// Parses a byte count with an optional K/M/G suffix (powers of 1024).
fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => bail!("bad byte count `{s}`: use a number with K, M, G or T"),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow!("bad byte count `{s}`: use a number with K, M, G or T"))?;
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("byte count `{s}` is too large"))
}

fn drive_sync(home: &Path, path: &Path, max_bytes: Option<&str>, json: bool) -> Result<ExitCode> {
    let max_bytes = max_bytes.map(parse_bytes).transpose()?;
    if !path.is_dir() {
        bail!(
            "{} is not a directory (is the drive mounted?)",
            path.display()
        );
    }
    let mount = path
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let summary = match home::HomeLock::try_take(home) {
        Ok(lock) => {
            let r = drive_sync_here(home, &mount, max_bytes);
            drop(lock);
            r?
        }
        Err(home::HomeError::Locked(_)) => {
            client::Client::for_home(home)?.drive_sync(&mount, max_bytes)?
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for m in &summary.messages {
            eprintln!("ferry: {m}");
        }
        println!("{}", summary.line());
    }
    Ok(ExitCode::SUCCESS)
}

/// A sync with no node running: this process runs the engine for the duration.
fn drive_sync_here(
    home: &Path,
    mount: &Path,
    max_bytes: Option<u64>,
) -> Result<drive::SyncSummary> {
    let h = Home::open(home)?;
    let store = std::sync::Arc::new(h.open_store()?);
    let (_dir, config, keyring) = h.into_parts();
    let write_budget = match std::env::var("FERRY_DRIVE_WRITE_BUDGET") {
        Ok(v) => Some(parse_bytes(&v).context("FERRY_DRIVE_WRITE_BUDGET")?),
        Err(_) => None,
    };
    let opts = drive::SyncOptions {
        max_bytes,
        write_budget,
    };
    let progress: Option<drive::Progress> = if io::stdout().is_terminal() {
        Some(Box::new(progress_line))
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let home = home.to_path_buf();
    rt.block_on(async move {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let core = daemon::Core::start(
            home.clone(),
            config,
            std::sync::Arc::new(keyring),
            store,
            None,
            listen,
        )?;
        let shared = core.shared.clone();
        let r = drive::sync(&shared, &home, mount, &opts, progress).await;
        drop(shared);
        let stopped = core.stop().await;
        if progress_shown() {
            println!();
        }
        let s = r?;
        stopped?;
        Ok(s)
    })
}

static PROGRESS_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn progress_shown() -> bool {
    PROGRESS_SHOWN.load(std::sync::atomic::Ordering::Relaxed)
}

/// A progress bar on one terminal line.
fn progress_line(phase: &str, done: u64, total: u64) {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    print!("\r{phase:<10} [{bar}] {done}/{total}   ");
    let _ = io::stdout().flush();
    PROGRESS_SHOWN.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn init(args: InitArgs) -> Result<ExitCode> {
    let dir = args.home.dir()?;
    let mut config = Config::default();
    if let Some(l) = args.listen {
        config.node.listen = l;
    }
    if let Some(a) = args.api {
        config.node.api = a;
    }
    for p in &args.peers {
        p.parse::<PeerAddr>()?;
    }
    config.peers = args.peers;
    if let Some(r) = args.routing {
        config.routing.policy = r.parse::<Policy>()?;
    }
    if let Some(b) = args.max_store_bytes {
        config.store.max_bytes = b;
    }
    if args.no_discovery {
        config.discovery.enabled = false;
    }
    let mut secrets = Vec::new();
    if !args.realms.is_empty() {
        config.node.realms.clear();
        for r in &args.realms {
            let realm = if r.contains(':') {
                let realm = Realm::from_share_string(r).context("--realm")?;
                secrets.push(realm.clone());
                realm
            } else {
                Realm::new(r, [0; 32]).context("--realm")?
            };
            if config.node.realms.iter().any(|n| n == realm.name()) {
                bail!("--realm `{}` given twice", realm.name());
            }
            config.node.realms.push(realm.name().to_owned());
        }
    }
    let (id, realms) = Home::init(
        &dir,
        InitOptions {
            config,
            realm_secrets: secrets,
        },
    )?;
    println!("{id}");
    let names: Vec<&str> = realms.iter().map(Realm::name).collect();
    eprintln!(
        "ferry: created node {} in {} (realms: {})",
        id.short(),
        dir.display(),
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &str, max: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let limit = max as u64 + 1;
    if file == "-" {
        io::stdin().lock().take(limit).read_to_end(&mut buf)?;
    } else {
        File::open(file)
            .with_context(|| format!("cannot open {file}"))?
            .take(limit)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {file}"))?;
    }
    if buf.len() > max {
        bail!("{file} is larger than the {max}-byte limit");
    }
    Ok(buf)
}

fn write_output(out: Option<&Path>, data: &[u8], binary: bool) -> Result<()> {
    match out {
        Some(p) => {
            let mut f =
                File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        None => {
            let mut stdout = io::stdout().lock();
            if binary && stdout.is_terminal() {
                bail!("refusing to write a binary bundle to a terminal: redirect stdout or use --out FILE");
            }
            stdout.write_all(data)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

fn seal(args: SealArgs) -> Result<ExitCode> {
    let home = Home::open(&args.home.dir()?)?;
    let cfg = home.config();
    let priority: Priority = args.priority.parse().map_err(|e: String| anyhow!(e))?;
    let lifetime = match &args.lifetime {
        Some(l) => ferry_core::parse_lifetime(l).context("--lifetime")?,
        None => cfg.default_lifetime_secs(),
    };
    let recipient = if args.group {
        Recipient::Group {
            endpoint: args.endpoint.clone(),
        }
    } else {
        let to = args.to.as_deref().unwrap_or_default();
        let id: NodeId = to.parse().with_context(|| format!("--to {to}"))?;
        Recipient::Node {
            id,
            endpoint: args.endpoint.clone(),
        }
    };
    let realm = match args.realm {
        Some(r) => r,
        None => home
            .keyring()
            .realms()
            .first()
            .map(|r| r.name().to_owned())
            .ok_or_else(|| anyhow!("this node has no realm"))?,
    };
    let max = cfg.store.max_bundle_bytes;
    let payload = read_input(args.file.as_deref().unwrap_or("-"), max)?;
    // The sequence number is reserved durably before use, so it is never reused,
    // even after a crash: per-bundle keys depend on it.
    let sequence = home.open_store()?.reserve_sequence(1)?.start;
    let params = SealParams {
        recipient,
        realm,
        created: now_dtn(),
        sequence,
        lifetime,
        priority,
        hop_limit: cfg.routing.hop_limit,
        kind: PayloadKind::AppData,
        ephemeral: args.ephemeral,
        fragment: None,
    };
    let bundle = home.keyring().seal(&params, &payload, &mut OsRng)?;
    write_output(args.out.as_deref(), &bundle.encode(), true)?;
    eprintln!("ferry: sealed bundle {}", bundle.id());
    Ok(ExitCode::SUCCESS)
}

fn open(home: &HomeArg, file: &str, out: Option<&Path>, verbose: bool) -> Result<ExitCode> {
    let home = Home::open(&home.dir()?)?;
    let max = home.config().store.max_bundle_bytes;
    let bytes = read_input(file, max)?;
    let keyring = home.keyring();
    let bundle = keyring.accept(&bytes, now_dtn())?;
    let opened = keyring.open_verified(&bundle)?;
    if verbose {
        eprintln!(
            "ferry: bundle {} from {} kind {:?} endpoint {}",
            bundle.id(),
            bundle.header().source,
            opened.kind,
            opened.endpoint.as_deref().unwrap_or("(default)")
        );
    }
    write_output(out, &opened.payload, false)?;
    Ok(ExitCode::SUCCESS)
}
