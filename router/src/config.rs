//! The node's TOML configuration (`ferry.toml` in the node's home).
//!
//! Every field has an embedded default suited to a small field node, so an empty file
//! is a valid configuration. Unknown keys are errors, so a typo never goes unnoticed.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use ferry_core::{NodeId, DEFAULT_MAX_BUNDLE_BYTES};
use serde::{Deserialize, Serialize};

/// Default QUIC listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4556";
/// Default local API address (loopback only).
pub const DEFAULT_API: &str = "127.0.0.1:4557";
/// Default Unix socket of the local API, in the home directory.
pub const DEFAULT_API_SOCKET: &str = "api.sock";
/// Default realm name.
pub const DEFAULT_REALM: &str = "default";
/// Longest config file accepted.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML, or a key with the wrong type or an unknown key.
    #[error("ferry.toml: {0}")]
    Syntax(String),
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("ferry.toml is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge,
    /// The API must listen on a loopback address.
    #[error("api address {0} is not a loopback address: the local API is for this machine only")]
    ApiNotLoopback(SocketAddr),
    /// A peer is not `NODE_ID@host:port`.
    #[error("peer `{0}`: expected NODE_ID@host:port")]
    Peer(String),
    /// No realm configured.
    #[error("at least one realm must be configured")]
    NoRealm,
    /// A bad value.
    #[error("{0}")]
    Value(String),
}

/// A statically configured peer: `NODE_ID@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's node id.
    pub id: NodeId,
    /// Host name or address and port.
    pub addr: String,
}

impl FromStr for PeerAddr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::Peer(s.to_owned());
        let (id, addr) = s.trim().split_once('@').ok_or_else(bad)?;
        let id: NodeId = id.parse().map_err(|_| bad())?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        Ok(Self {
            id,
            addr: addr.to_owned(),
        })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

/// Routing policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Copy to every peer that lacks the bundle.
    Epidemic,
    /// Binary spray-and-wait.
    #[default]
    SprayAndWait,
    /// PRoPHET (RFC 6693).
    Prophet,
    /// Hand the bundle only to its destination.
    Direct,
    /// Static routes (destination → next hop).
    Static,
}

impl FromStr for Policy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "epidemic" => Self::Epidemic,
            "spray-and-wait" => Self::SprayAndWait,
            "prophet" => Self::Prophet,
            "direct" => Self::Direct,
            "static" => Self::Static,
            other => {
                return Err(ConfigError::Value(format!(
                    "unknown routing policy `{other}` (expected epidemic, spray-and-wait, prophet, direct or static)"
                )))
            }
        })
    }
}

impl Policy {
    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epidemic => "epidemic",
            Self::SprayAndWait => "spray-and-wait",
            Self::Prophet => "prophet",
            Self::Direct => "direct",
            Self::Static => "static",
        }
    }
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Local app API address; must be loopback.
    pub api: SocketAddr,
    /// The same API on a Unix socket, relative to the home directory (or absolute);
    /// empty: none. Only the node's user can reach it (the home is 0700, the
    /// socket 0600).
    pub api_socket: String,
    /// Realms this node belongs to; each has `realms/NAME.key` in the home.
    pub realms: Vec<String>,
    /// Log level (error, warn, info, debug, trace).
    pub log_level: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| unreachable_addr()),
            api: DEFAULT_API.parse().unwrap_or_else(|_| unreachable_addr()),
            api_socket: DEFAULT_API_SOCKET.to_owned(),
            realms: vec![DEFAULT_REALM.to_owned()],
            log_level: "info".to_owned(),
        }
    }
}

fn unreachable_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `[routing]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSection {
    /// Policy.
    pub policy: Policy,
    /// Copies per bundle for spray-and-wait (L).
    pub spray_copies: u32,
    /// Hop limit of bundles this node creates.
    pub hop_limit: u8,
    /// Default lifetime of bundles this node creates, e.g. "1d".
    pub default_lifetime: String,
}

impl Default for RoutingSection {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            spray_copies: 8,
            hop_limit: ferry_core::DEFAULT_HOP_LIMIT,
            default_lifetime: "1d".to_owned(),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Byte quota of the custody store.
    pub max_bytes: u64,
    /// Bundle count quota.
    pub max_bundles: u64,
    /// Largest bundle accepted, in bytes.
    pub max_bundle_bytes: usize,
    /// A submitted payload that would make a bundle larger than this travels as
    /// fragments, bundles of at most this many bytes each (0: never fragment).
    pub fragment_bytes: usize,
}

/// Default `[store] fragment_bytes`: 4 MiB, the default bundle limit of a serial
/// cable, so that fragments of large payloads cross cables too.
pub const DEFAULT_FRAGMENT_BYTES: usize = 4 << 20;

/// Smallest `[store] fragment_bytes` other than 0.
pub const MIN_FRAGMENT_BYTES: usize = 64 << 10;

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024 * 1024,
            max_bundles: 1_000_000,
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            fragment_bytes: DEFAULT_FRAGMENT_BYTES,
        }
    }
}

/// Default UDP address LAN discovery listens on.
pub const DEFAULT_DISCOVERY_LISTEN: &str = "0.0.0.0:4558";
/// Default beacon destination (IPv4 broadcast).
pub const DEFAULT_DISCOVERY_TARGET: &str = "255.255.255.255:4558";

/// `[discovery]`: LAN discovery by signed, realm-scoped UDP beacons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// Send and listen for beacons.
    pub enabled: bool,
    /// UDP address beacons are received on.
    pub listen: SocketAddr,
    /// Where beacons are sent.
    pub targets: Vec<SocketAddr>,
    /// Seconds between beacons.
    pub interval_secs: u32,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_DISCOVERY_LISTEN
                .parse()
                .unwrap_or_else(|_| unreachable_addr()),
            targets: vec![DEFAULT_DISCOVERY_TARGET
                .parse()
                .unwrap_or_else(|_| unreachable_addr())],
            interval_secs: 5,
        }
    }
}

/// `[drives]`: USB drives as carrier contacts (sneakernet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrivesSection {
    /// Mount roots to watch (e.g. "/media"): a directory `ROOT/NAME` or
    /// `ROOT/USER/NAME` holding a `ferry/` folder is a drive; its appearance starts
    /// a sync, its removal ends the contact. Empty: no watching.
    pub watch: Vec<std::path::PathBuf>,
    /// Seconds between looks at the mount roots.
    pub poll_secs: u32,
    /// Most bundle bytes written to one drive per sync (0: no limit but the drive's
    /// free space).
    pub max_bytes: u64,
}

impl Default for DrivesSection {
    fn default() -> Self {
        Self {
            watch: Vec::new(),
            poll_secs: 2,
            max_bytes: 0,
        }
    }
}

/// How a `[[serial]]` port is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialMode {
    /// A point-to-point serial cable between two nodes (KISS framing on the line).
    Cable,
    /// A KISS TNC radio: each KISS frame goes out as one radio packet.
    Kiss,
    /// An RNode LoRa radio, configured over its KISS command set at start.
    Rnode,
}

/// `[serial.radio]`: LoRa radio settings (mode `kiss` or `rnode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadioSection {
    /// Centre frequency, Hz.
    pub frequency: u32,
    /// Bandwidth, Hz.
    pub bandwidth: u32,
    /// Spreading factor (5..=12).
    pub spreading_factor: u8,
    /// Coding rate denominator (5..=8 for 4/5..4/8).
    pub coding_rate: u8,
    /// Transmit power, dBm.
    pub tx_power: i8,
    /// Regulatory region: `eu868`, `us915` or `none`.
    pub region: String,
    /// Duty cycle to keep (at most the region's limit for the frequency).
    pub duty_cycle: Option<f64>,
}

impl Default for RadioSection {
    fn default() -> Self {
        Self {
            frequency: 869_525_000,
            bandwidth: 125_000,
            spreading_factor: 9,
            coding_rate: 5,
            tx_power: 14,
            region: "eu868".into(),
            duty_cycle: None,
        }
    }
}

impl Eq for RadioSection {}

/// `[[serial]]`: one serial port (cable or radio).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSection {
    /// A label for logs and status.
    #[serde(default)]
    pub name: Option<String>,
    /// The device (e.g. `/dev/ttyUSB0`, `/dev/serial0`).
    pub port: std::path::PathBuf,
    /// Line speed.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// `cable`, `kiss` or `rnode`.
    pub mode: SerialMode,
    /// Seconds between hellos (default 5 on a cable, 600 on a radio).
    #[serde(default)]
    pub hello_secs: Option<u32>,
    /// Largest bundle sent over this port (default 4 MiB on a cable, 256 KiB on a
    /// radio).
    #[serde(default)]
    pub max_bundle_bytes: Option<u64>,
    /// The realm whose members this port talks to (default: the node's first).
    #[serde(default)]
    pub realm: Option<String>,
    /// Radio settings (modes `kiss` and `rnode`).
    #[serde(default)]
    pub radio: Option<RadioSection>,
}

fn default_baud() -> u32 {
    115_200
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[node]`
    pub node: NodeSection,
    /// Static peers, `NODE_ID@host:port`.
    pub peers: Vec<String>,
    /// `[routing]`
    pub routing: RoutingSection,
    /// `[store]`
    pub store: StoreSection,
    /// `[discovery]`
    pub discovery: DiscoverySection,
    /// `[drives]`
    pub drives: DrivesSection,
    /// `[[serial]]`: serial cables and radios.
    pub serial: Vec<SerialSection>,
    /// `[routes]`: static routes for the `static` policy, destination node id →
    /// next-hop node id.
    pub routes: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Parses and validates a config file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge);
        }
        let cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(toml_error_line(text, &e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Where the API's Unix socket goes for a node whose home is `home` (`None`:
    /// no socket).
    pub fn api_socket_path(&self, home: &std::path::Path) -> Option<std::path::PathBuf> {
        (!self.node.api_socket.is_empty()).then(|| home.join(&self.node.api_socket))
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.node.api.ip().is_loopback() {
            return Err(ConfigError::ApiNotLoopback(self.node.api));
        }
        if self.node.realms.is_empty() {
            return Err(ConfigError::NoRealm);
        }
        // A Unix socket path has at most 107 bytes (`sun_path`); the home's path
        // is checked when the socket is bound.
        if self.node.api_socket.len() > 100 || self.node.api_socket.contains('\0') {
            return Err(ConfigError::Value(format!(
                "node.api_socket `{}`: at most 100 bytes, no NUL",
                self.node.api_socket.escape_debug()
            )));
        }
        for p in &self.peers {
            p.parse::<PeerAddr>()?;
        }
        ferry_core::parse_lifetime(&self.routing.default_lifetime)
            .map_err(|e| ConfigError::Value(format!("routing.default_lifetime: {e}")))?;
        if self.routing.spray_copies == 0 {
            return Err(ConfigError::Value(
                "routing.spray_copies must be at least 1".into(),
            ));
        }
        if !matches!(
            self.node.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(ConfigError::Value(format!(
                "node.log_level `{}`: expected error, warn, info, debug or trace",
                self.node.log_level
            )));
        }
        if self.drives.poll_secs == 0 {
            return Err(ConfigError::Value(
                "drives.poll_secs must be at least 1".into(),
            ));
        }
        if let Some(p) = self.drives.watch.iter().find(|p| !p.is_absolute()) {
            return Err(ConfigError::Value(format!(
                "drives.watch: `{}` must be an absolute path",
                p.display()
            )));
        }
        for (i, port) in self.serial.iter().enumerate() {
            let at = |what: &str| {
                ConfigError::Value(format!(
                    "serial #{} ({}): {what}",
                    i + 1,
                    port.port.display()
                ))
            };
            if port.baud == 0 {
                return Err(at("baud must be above 0"));
            }
            if port.hello_secs == Some(0) {
                return Err(at("hello_secs must be at least 1"));
            }
            if port.max_bundle_bytes.is_some_and(|b| b < 256) {
                return Err(at("max_bundle_bytes must be at least 256"));
            }
            if let Some(r) = &port.realm {
                if !self.node.realms.contains(r) {
                    return Err(at(&format!("realm `{r}` is not one of node.realms")));
                }
            }
            match (port.mode, &port.radio) {
                (SerialMode::Cable, Some(_)) => {
                    return Err(at("[serial.radio] is for modes kiss and rnode, not cable"))
                }
                (SerialMode::Kiss | SerialMode::Rnode, None) => {
                    return Err(at("modes kiss and rnode need a [serial.radio] section"))
                }
                (_, Some(r)) => {
                    if !matches!(r.region.as_str(), "eu868" | "us915" | "none") {
                        return Err(at(&format!(
                            "radio.region `{}`: expected eu868, us915 or none",
                            r.region
                        )));
                    }
                    if r.duty_cycle.is_some_and(|d| !(d > 0.0 && d <= 1.0)) {
                        return Err(at("radio.duty_cycle must be in (0, 1]"));
                    }
                }
                (SerialMode::Cable, None) => {}
            }
        }
        if self.discovery.interval_secs == 0 {
            return Err(ConfigError::Value(
                "discovery.interval_secs must be at least 1".into(),
            ));
        }
        self.static_routes()?;
        if self.store.max_bundle_bytes < 1024 {
            return Err(ConfigError::Value(
                "store.max_bundle_bytes must be at least 1024".into(),
            ));
        }
        if self.store.fragment_bytes != 0 && self.store.fragment_bytes < MIN_FRAGMENT_BYTES {
            return Err(ConfigError::Value(format!(
                "store.fragment_bytes must be 0 (never fragment) or at least {MIN_FRAGMENT_BYTES}"
            )));
        }
        Ok(())
    }

    /// Parsed static routes (destination → next hop).
    pub fn static_routes(&self) -> Result<std::collections::BTreeMap<NodeId, NodeId>, ConfigError> {
        self.routes
            .iter()
            .map(|(d, h)| {
                let bad = |what: &str, v: &str| {
                    ConfigError::Value(format!("routes: {what} `{v}` is not a node id"))
                };
                Ok((
                    d.parse().map_err(|_| bad("destination", d))?,
                    h.parse().map_err(|_| bad("next hop", h))?,
                ))
            })
            .collect()
    }

    /// Parsed static peers.
    pub fn peer_addrs(&self) -> Result<Vec<PeerAddr>, ConfigError> {
        self.peers.iter().map(|p| p.parse()).collect()
    }

    /// The default lifetime in seconds.
    pub fn default_lifetime_secs(&self) -> u32 {
        ferry_core::parse_lifetime(&self.routing.default_lifetime).unwrap_or(86_400)
    }

    /// The commented config file `ferry init` writes.
    pub fn to_commented_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            r#"# Ferry node configuration. Every key is optional: a missing key takes the
# default shown in its comment. Unknown keys are errors.

# Static peers as "NODE_ID@host:port".
peers = {peers}

[node]
# QUIC listen address for other nodes (default "{DEFAULT_LISTEN}").
listen = {listen}
# Local app API; must be a loopback address (default "{DEFAULT_API}").
api = {api}
# The same API on a Unix socket that only this user can open, relative to the
# home directory or absolute; "" for none (default "{DEFAULT_API_SOCKET}").
api_socket = {api_socket}
# Realms this node belongs to. Each needs its secret in realms/NAME.key
# (created by `ferry init --realm NAME[:SECRET]`). Nodes of other realms
# never exchange bundles with this one.
realms = {realms}
# error | warn | info | debug | trace (default "info"). Payloads, keys and IP
# addresses are never logged at info level.
log_level = {log_level}

[routing]
# epidemic | spray-and-wait | prophet | direct | static (default "spray-and-wait").
policy = {policy}
# Copies per bundle for spray-and-wait (default 8).
spray_copies = {spray}
# Hop limit of bundles this node creates (default {hop_default}).
hop_limit = {hop}
# Lifetime of bundles this node creates when none is given (default "1d").
default_lifetime = {lifetime}

[discovery]
# Find peers of this node's realms on the LAN by signed UDP beacons (default true).
enabled = {disc_enabled}
# Where beacons are received (default "{DEFAULT_DISCOVERY_LISTEN}") and sent
# (default ["{DEFAULT_DISCOVERY_TARGET}"]).
listen = {disc_listen}
targets = {disc_targets}
# Seconds between beacons (default 5).
interval_secs = {disc_interval}

[drives]
# Mount roots watched for USB drives holding a `ferry/` folder, e.g. ["/media"]
# (default [], no watching). `ferry drive sync PATH` works without this.
watch = {drives_watch}
# Seconds between looks at the mount roots (default 2).
poll_secs = {drives_poll}
# Most bundle bytes written to one drive per sync; 0 = as much as fits (default 0).
max_bytes = {drives_max}

# Static routes for the "static" policy: "DESTINATION_NODE_ID" = "NEXT_HOP_NODE_ID".
[routes]
{routes}
[store]
# Custody store quotas: when full, new bundles are refused with "store full";
# nothing already accepted is dropped to make room.
max_bytes = {max_bytes}
max_bundles = {max_bundles}
# Largest bundle accepted from peers or apps, in bytes (an app's payload too).
max_bundle_bytes = {max_bundle_bytes}
# A larger payload travels as fragments: bundles of at most this many bytes,
# each forwarded and kept in custody on its own, delivered whole once all are in
# (default 4 MiB; 0 = never fragment).
fragment_bytes = {fragment_bytes}
"#,
            listen = q(&self.node.listen.to_string()),
            api = q(&self.node.api.to_string()),
            api_socket = q(&self.node.api_socket),
            realms = list(&self.node.realms),
            log_level = q(&self.node.log_level),
            peers = list(&self.peers),
            policy = q(self.routing.policy.as_str()),
            spray = self.routing.spray_copies,
            hop_default = ferry_core::DEFAULT_HOP_LIMIT,
            hop = self.routing.hop_limit,
            lifetime = q(&self.routing.default_lifetime),
            max_bytes = self.store.max_bytes,
            max_bundles = self.store.max_bundles,
            max_bundle_bytes = self.store.max_bundle_bytes,
            fragment_bytes = self.store.fragment_bytes,
            disc_enabled = self.discovery.enabled,
            disc_listen = q(&self.discovery.listen.to_string()),
            disc_targets = list(
                &self
                    .discovery
                    .targets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
            disc_interval = self.discovery.interval_secs,
            drives_watch = list(
                &self
                    .drives
                    .watch
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            ),
            drives_poll = self.drives.poll_secs,
            drives_max = self.drives.max_bytes,
            routes = self
                .routes
                .iter()
                .map(|(d, h)| format!("{} = {}\n", q(d), q(h)))
                .collect::<String>(),
        )
    }
}

/// A TOML error on one line (toml's messages may span several), with the line it
/// points at: `reason; detail (line N)`. Shared by every TOML file Ferry reads.
pub fn toml_error_line(text: &str, e: &toml::de::Error) -> String {
    let msg: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let note = match e.span() {
        Some(r) => {
            let end = r.start.min(text.len());
            let line = text.as_bytes()[..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    };
    msg.join("; ") + &note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn commented_default_round_trips() {
        let mut c = Config {
            peers: vec![format!(
                "{}@10.0.0.2:4556",
                ferry_core::Identity::from_seed([1; 32]).node_id()
            )],
            ..Config::default()
        };
        c.routing.policy = Policy::Prophet;
        c.discovery.enabled = false;
        c.discovery.targets = vec!["127.0.0.1:5000".parse().unwrap()];
        let a = ferry_core::Identity::from_seed([2; 32])
            .node_id()
            .to_string();
        let b = ferry_core::Identity::from_seed([3; 32])
            .node_id()
            .to_string();
        c.routes.insert(a.clone(), b.clone());
        let text = c.to_commented_toml();
        let parsed = Config::parse(&text).unwrap();
        assert_eq!(parsed, c);
        assert_eq!(parsed.static_routes().unwrap().len(), 1);
        let e = Config::parse("[routes]\nx = \"y\"\n").unwrap_err();
        assert!(e.to_string().contains("routes"), "{e}");
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        let e = Config::parse("[node]\napi = \"0.0.0.0:4557\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::ApiNotLoopback(_)), "{e}");
        let e = Config::parse("[node]\nlisten = 5\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Config::parse("bogus = 1\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax(_)));
        let e = Config::parse("peers = [\"nope\"]\n").unwrap_err();
        assert!(matches!(e, ConfigError::Peer(_)));
        let e = Config::parse("[routing]\npolicy = \"flood\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax(_)));
        let e = Config::parse("[routing]\ndefault_lifetime = \"forever\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Value(_)));
        let e = Config::parse("[node]\nrealms = []\n").unwrap_err();
        assert!(matches!(e, ConfigError::NoRealm));
        let big = "#".repeat(MAX_CONFIG_BYTES + 1);
        assert!(matches!(Config::parse(&big), Err(ConfigError::TooLarge)));
    }

    #[test]
    fn the_hardware_profiles_are_valid_configs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware/profiles");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("hardware/profiles") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("read profile");
                let cfg =
                    Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    !cfg.serial.is_empty(),
                    "{} has a [[serial]] port",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 3, "three profiles");
    }

    #[test]
    fn serial_sections_are_checked() {
        let base = "[node]\nrealms = [\"valley\"]\n";
        let parse = |extra: &str| Config::parse(&format!("{base}{extra}"));
        let ok = parse("[[serial]]\nport = \"/dev/ttyUSB0\"\nmode = \"cable\"\n").unwrap();
        assert_eq!(ok.serial[0].baud, 115_200);
        assert_eq!(ok.serial[0].mode, SerialMode::Cable);
        let radio = "[[serial]]\nport = \"/dev/ttyUSB0\"\nmode = \"rnode\"\n[serial.radio]\nspreading_factor = 7\n";
        let r = parse(radio).unwrap();
        assert_eq!(r.serial[0].radio.as_ref().unwrap().spreading_factor, 7);
        assert_eq!(r.serial[0].radio.as_ref().unwrap().frequency, 869_525_000);
        for (bad, why) in [
            ("[[serial]]\nport = \"/dev/x\"\nmode = \"rnode\"\n", "need a [serial.radio]"),
            ("[[serial]]\nport = \"/dev/x\"\nmode = \"cable\"\n[serial.radio]\n", "not cable"),
            ("[[serial]]\nport = \"/dev/x\"\nmode = \"cable\"\nbaud = 0\n", "baud"),
            ("[[serial]]\nport = \"/dev/x\"\nmode = \"kiss\"\n[serial.radio]\nregion = \"mars\"\n", "region"),
            ("[[serial]]\nport = \"/dev/x\"\nmode = \"cable\"\nrealm = \"other\"\n", "not one of node.realms"),
            ("[[serial]]\nport = \"/dev/x\"\nmode = \"modem\"\n", "modem"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn peer_addresses() {
        let id = ferry_core::Identity::from_seed([1; 32]).node_id();
        let p: PeerAddr = format!("{id}@pi.local:4556").parse().unwrap();
        assert_eq!(p.id, id);
        assert_eq!(p.addr, "pi.local:4556");
        assert_eq!(p.to_string().parse::<PeerAddr>().unwrap(), p);
        assert!(format!("{id}@[::1]:4556").parse::<PeerAddr>().is_ok());
        assert!(format!("{id}@host").parse::<PeerAddr>().is_err());
        assert!(format!("{id}@host:0").parse::<PeerAddr>().is_err());
        assert!("x@host:1".parse::<PeerAddr>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = Config::parse(&s);
        }
    }
}
