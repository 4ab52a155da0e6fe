//! Lays out the `ferry` binary so that the code an idle node runs sits together.
//!
//! `link-order/symbols.txt` lists the functions that run while a node starts, links to a
//! peer and idles, then those that move bundles (made by `link-order/profile.sh`, which
//! records a real node under callgrind). The linker places them first, in that order.
//! Without it, the few thousand functions an idle node runs are spread over the whole
//! text, and the kernel maps their 64 KiB neighbourhoods on each page fault: an idle
//! node then has almost all of `ferry` resident. Names that no longer exist (after a
//! dependency update) are skipped; the order only changes the layout, never the code.
//!
//! Only for release builds for `x86_64-unknown-linux-gnu`, and only when the linker
//! of this build takes LLD's `--symbol-ordering-file` (rustc links with its own LLD
//! there since 1.90; GNU ld does not know the option): a one-line program is linked
//! with it first, with the build's own flags and linker. `FERRY_NO_LINK_ORDER=1`
//! turns it off.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=link-order/symbols.txt");
    println!("cargo:rerun-if-env-changed=FERRY_NO_LINK_ORDER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let off = !matches!(var("FERRY_NO_LINK_ORDER").as_str(), "" | "0");
    if off || var("TARGET") != "x86_64-unknown-linux-gnu" || var("PROFILE") != "release" {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order/symbols.txt");
    let args = [
        "-Xlinker".to_owned(),
        format!("--symbol-ordering-file={}", order.display()),
        "-Xlinker".to_owned(),
        "--no-warn-symbol-ordering".to_owned(),
    ];
    if !linker_takes(&args) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file: `ferry` keeps \
             the default layout (a larger idle RSS, see docs/performance.md#idle-memory)"
        );
        return;
    }
    for a in &args {
        println!("cargo:rustc-link-arg-bin=ferry={a}");
    }
}

/// Whether a program links with `args` added, as `ferry` will be linked: the same
/// rustc, target, flags (`RUSTFLAGS`, a linker chosen there) and configured linker.
fn linker_takes(args: &[String]) -> bool {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let src = out.join("link_order_probe.rs");
    if std::fs::write(&src, "fn main() {}\n").is_err() {
        return false;
    }
    let mut cmd = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    cmd.arg("--target")
        .arg(env::var("TARGET").unwrap_or_default())
        .arg("-o")
        .arg(out.join("link_order_probe"))
        .arg(&src);
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg(format!("-Clinker={linker}"));
    }
    for a in args {
        cmd.arg(format!("-Clink-arg={a}"));
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
