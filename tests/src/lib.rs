//! # ferry-tests
//!
//! Helpers for Ferry's end-to-end tests, which drive the real `ferry` binary the way a
//! user does: separate processes, separate node homes, files and pipes in between.
//!
//! ## Finding the binary
//!
//! Cargo sets `CARGO_BIN_EXE_ferry` only for the integration tests of the package that
//! owns the binary (ferry-node, in router/node). Here [`ferry_bin`] works it out instead:
//!
//! 1. If `FERRY_BIN` is set, that file is used as is.
//! 2. Otherwise the profile directory is found from the running test executable
//!    (`target/<profile>/deps/<test>-<hash>` → `target/<profile>`, or
//!    `target/<triple>/<profile>` when cross-compiling), and
//!    `cargo build --workspace --bin ferry` is run once per test process with the
//!    same target directory, profile (`test` for `target/debug`, whose libraries
//!    `cargo test` has just built) and target triple. Cargo makes that a quick no-op
//!    when the binary is up to date, and rebuilds it when router, storage or core
//!    changed, so a test never runs a stale binary. Naming the binary rather than its
//!    package keeps this working if the binary moves to another workspace crate.
//! 3. `target/<profile>/ferry` is then run.
//!
//! ## Running it
//!
//! [`Ferry`] builds one invocation (arguments, environment, stdin, time limit) and
//! [`Ferry::run`] returns its [`Output`]. Every run is bounded: a process still running
//! at its time limit is killed and the test fails. Every run also fails the test if the
//! process panicked (exit code 101 or `panicked` on stderr): no input may make `ferry`
//! panic. The child gets `HOME` pointing at a directory that does not exist and no
//! `FERRY_HOME` unless a test sets it, so a test can never touch a real `~/.ferry`.
#![allow(clippy::disallowed_methods)] // a test harness must read the clock for time limits

pub mod nodes;
pub mod radio;

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Time limit of one `ferry` run unless a test sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit of the one-off `cargo build` of the binary (a cold build on two cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The `ferry` binary to test (see the crate docs for how it is found and built).
///
/// Panics, with the reason, if it cannot be built.
pub fn ferry_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| locate_ferry().map_err(|e| format!("{e:#}"))) {
        Ok(p) => p,
        Err(e) => panic!("cannot find or build the ferry binary: {e}"),
    }
}

fn locate_ferry() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FERRY_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("FERRY_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut profile_dir = exe
        .parent()
        .context("test executable has no parent directory")?;
    if profile_dir.file_name() == Some(OsStr::new("deps")) {
        profile_dir = profile_dir
            .parent()
            .context("deps directory has no parent")?;
    }
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .context("profile directory has no name")?;
    // The target directory is the nearest ancestor holding Cargo's CACHEDIR.TAG; a
    // directory between it and the profile directory is a target triple.
    let target_dir = profile_dir
        .ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .context("no Cargo target directory (with CACHEDIR.TAG) above the test executable")?;
    let triple = profile_dir
        .parent()
        .filter(|p| *p != target_dir)
        .and_then(Path::file_name);

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // `cargo test` gives each test process the variables it sets for the package under
    // test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Build scripts such as ring's
    // declare `rerun-if-env-changed` on some of them, so passing them on would make this
    // build see a changed environment, rebuild ring, rustls and QUIC over the outer
    // build's artifacts (and the next `cargo test` rebuild them back): on a cold CI
    // machine that doubled the build's time and disk. Only the user's own settings
    // (CARGO_HOME, CARGO_TARGET_DIR, CARGO_PROFILE_*, RUSTFLAGS...) are passed on.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_tests) {
            cmd.env_remove(&key);
        }
    }
    cmd.args(["build", "--quiet", "--workspace", "--bin", "ferry"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        // `cargo test` builds the test and all the libraries it links with the `test`
        // profile (in target/debug): building the binary with it too reuses them.
        "debug" => {
            cmd.args(["--profile", "test"]);
        }
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(t) = triple {
        cmd.arg("--target").arg(t);
    }
    let out = run_bounded(cmd, None, BUILD_TIMEOUT).context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "`cargo build --workspace --bin ferry` failed ({}):\n{}",
            out.status,
            out.stderr
        );
    }
    let bin = profile_dir.join("ferry");
    if !bin.is_file() {
        bail!("cargo build succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// Whether `key` is one of the variables `cargo test` sets for a test process (see
/// the Cargo book, "Environment variables Cargo sets for crates"), as opposed to one a
/// user sets to configure Cargo.
fn set_by_cargo_for_tests(key: &str) -> bool {
    const EXACT: [&str; 9] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_BIN_EXE_")
}

/// What a finished process did.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stderr ---\n{}--- stdout ({} bytes) ---\n{}",
            self.command,
            self.status,
            self.stderr,
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)])
        )
    }

    /// Asserts exit code 0 and returns `self`.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code(),
            Some(0),
            "expected success: {}",
            self.describe()
        );
        self
    }

    /// Asserts a clean failure, as every `ferry` error must be: exit code 1, nothing
    /// on stdout, and exactly one line `ferry: <reason>` on stderr. Returns the reason.
    #[track_caller]
    pub fn failure(&self) -> String {
        assert_eq!(self.code(), Some(1), "expected exit 1: {}", self.describe());
        assert!(
            self.stdout.is_empty(),
            "a failed command wrote to stdout: {}",
            self.describe()
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr: {}",
            self.describe()
        );
        assert!(
            self.stderr.ends_with('\n'),
            "stderr line not terminated: {}",
            self.describe()
        );
        let reason = lines[0].strip_prefix("ferry: ").unwrap_or_else(|| {
            panic!("stderr line must start with `ferry: `: {}", self.describe())
        });
        assert!(
            !reason.trim().is_empty(),
            "empty reason: {}",
            self.describe()
        );
        reason.to_owned()
    }

    /// [`Output::failure`], also asserting that the reason contains `needle`.
    #[track_caller]
    pub fn failure_with(&self, needle: &str) -> String {
        let reason = self.failure();
        assert!(
            reason.contains(needle),
            "expected the reason to contain {needle:?}: {}",
            self.describe()
        );
        reason
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }

    /// Asserts the process did not panic (exit code 101 or `panicked` on stderr) and
    /// was not killed by a signal.
    #[track_caller]
    pub fn assert_no_panic(&self) {
        assert!(
            self.code() != Some(101) && !self.stderr.contains("panicked"),
            "ferry panicked: {}",
            self.describe()
        );
        assert!(
            self.status.signal().is_none(),
            "ferry died of a signal: {}",
            self.describe()
        );
    }
}

/// One `ferry` invocation, built up and then [run](Ferry::run).
#[derive(Debug, Clone)]
pub struct Ferry {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Ferry {
    /// `ferry ARGS...`.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self {
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            envs: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Feeds these bytes on stdin, then closes it (without this, stdin is empty).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The command, not started: stdin, stdout and stderr are left to the caller.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(&self.args)
            .env_remove("FERRY_HOME")
            .env("HOME", "/nonexistent/ferry-tests-home")
            .env("RUST_BACKTRACE", "0");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs it to completion (or to its time limit, which fails the test) and checks
    /// that it did not panic.
    #[track_caller]
    pub fn run(self) -> Output {
        let mut out = run_bounded(self.command(), self.stdin.as_deref(), self.timeout)
            .unwrap_or_else(|e| panic!("{e:#}"));
        out.command = self.display();
        out.assert_no_panic();
        out
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut s = String::from("ferry");
        for a in &self.args {
            let _ = write!(s, " {}", a.to_string_lossy());
        }
        s
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `cmd` with `stdin` (empty if `None`), capturing stdout and stderr, and kills it
/// at `timeout` (an error).
fn run_bounded(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let command = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {command}"))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            // A process that fails early may not read its input: ignore EPIPE.
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out_reader = reader(child.stdout.take().context("stdout pipe")?);
    let err_reader = reader(child.stderr.take().context("stderr pipe")?);
    let status = wait_bounded(&mut child, timeout);
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if let Some(w) = writer {
        let _ = w.join();
    }
    match status {
        Some(status) => Ok(Output {
            command,
            status,
            stdout,
            stderr,
        }),
        None => bail!("{command} still running after {timeout:?}: killed it\nstderr: {stderr}"),
    }
}

/// Waits for `child` until `timeout`; kills and reaps it then and returns `None`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Sets `key = value` in a TOML config file by replacing the line that starts with
/// `key = ` (panics if there is none); returns the text as it was before.
pub fn set_config_line(path: &Path, key: &str, value: &str) -> String {
    let text = std::fs::read_to_string(path).expect("read config");
    let prefix = format!("{key} = ");
    assert!(
        text.lines().any(|l| l.starts_with(&prefix)),
        "no `{key}` line in {}",
        path.display()
    );
    let new: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{prefix}{value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(path, new.join("\n") + "\n").expect("write config");
    text
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes; returns
/// whether it held. For waiting on a state, never as an assertion about timing.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A node home created with `ferry init`.
#[derive(Debug, Clone)]
pub struct Node {
    /// The home directory.
    pub home: PathBuf,
    /// The node id `init` printed.
    pub id: String,
}

impl Node {
    /// `ferry init --home DIR EXTRA...`; asserts success and a well-formed node id.
    #[track_caller]
    pub fn init(home: impl AsRef<Path>, extra: &[&str]) -> Self {
        let home = home.as_ref().to_owned();
        let out = Ferry::new(["init", "--home"])
            .arg_path(&home)
            .args(extra)
            .run()
            .success();
        let id = out.stdout_text().trim().to_owned();
        assert_eq!(
            out.stdout_text(),
            format!("{id}\n"),
            "init prints the id alone"
        );
        let parsed: ferry_core::NodeId = id
            .parse()
            .unwrap_or_else(|e| panic!("init printed {id:?}, not a node id: {e}"));
        assert_eq!(parsed.to_string(), id, "node id is printed canonically");
        Self { home, id }
    }

    /// `ferry SUB... --home DIR ARGS...`: `--home DIR` goes after the leading words of
    /// `args` (the subcommand and positionals), before the first option.
    pub fn cmd(&self, args: &[&str]) -> Ferry {
        let split = args
            .iter()
            .position(|a| a.starts_with('-'))
            .unwrap_or(args.len());
        Ferry::new(&args[..split])
            .arg("--home")
            .arg_path(&self.home)
            .args(&args[split..])
    }

    /// `NAME:SECRET` of one of its realms, from `ferry realm`.
    #[track_caller]
    pub fn realm_share(&self, name: &str) -> String {
        let out = self.cmd(&["realm", name]).run().success();
        let text = out.stdout_text();
        let line = text.trim_end();
        assert!(
            line.starts_with(&format!("{name}:")) && !line.contains('\n'),
            "ferry realm {name} printed {text:?}"
        );
        line.to_owned()
    }

    /// Seals `payload` (through stdin) with extra seal arguments; returns the bundle
    /// written to stdout.
    #[track_caller]
    pub fn seal(&self, extra: &[&str], payload: &[u8]) -> Vec<u8> {
        let out = self
            .cmd(&["bundle", "seal"])
            .args(extra)
            .stdin(payload)
            .run()
            .success();
        assert!(
            out.stderr.starts_with("ferry: sealed bundle "),
            "seal stderr: {}",
            out.stderr
        );
        out.stdout
    }

    /// `ferry bundle open --home DIR -` with the bundle on stdin (not asserted).
    pub fn open(&self, bundle: &[u8]) -> Output {
        self.cmd(&["bundle", "open", "-"]).stdin(bundle).run()
    }

    /// The node's 8-byte destination hash as `inspect` prints it (`node:<hex>`).
    pub fn destination(&self) -> String {
        let id: ferry_core::NodeId = self.id.parse().unwrap_or_else(|e| panic!("{e}"));
        format!("node:{}", id.hash())
    }
}

impl Ferry {
    /// Appends a path argument.
    pub fn arg_path(self, p: &Path) -> Self {
        self.args([p.as_os_str()])
    }

    /// Appends one argument.
    pub fn arg(self, a: impl AsRef<OsStr>) -> Self {
        self.args([a])
    }
}

/// `ferry bundle inspect --json -` on `bundle`; returns its output (not asserted).
pub fn inspect(bundle: &[u8]) -> Output {
    Ferry::new(["bundle", "inspect", "--json", "-"])
        .stdin(bundle)
        .run()
}

/// `ferry bundle inspect --json -`, asserting success; returns the JSON.
#[track_caller]
pub fn inspect_ok(bundle: &[u8]) -> serde_json::Value {
    let out = inspect(bundle).success();
    let v = out.json();
    assert_eq!(v["signature_valid"], true, "{v}");
    v
}

/// A small deterministic PRNG (SplitMix64) so failures reproduce from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// `0, 1, ..., 255` repeated `times` times.
pub fn byte_ramp(times: usize) -> Vec<u8> {
    (0..=255u8).cycle().take(256 * times).collect()
}

/// Reads a field of an `inspect --json` report as u64.
#[track_caller]
pub fn field_u64(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key} is not a number: {v}"))
}

/// Reads a field of an `inspect --json` report as a string.
#[track_caller]
pub fn field_str<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} is not a string: {v}"))
}

#[cfg(test)]
mod tests {
    use super::set_by_cargo_for_tests;

    #[test]
    fn only_the_variables_cargo_sets_for_a_test_are_dropped_from_the_inner_build() {
        for key in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_BIN_EXE_ferry",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_for_tests(key), "{key} should be dropped");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_TEST_DEBUG",
            "CARGO_INCREMENTAL",
            "RUSTFLAGS",
            "PATH",
        ] {
            assert!(!set_by_cargo_for_tests(key), "{key} should be kept");
        }
    }
}
