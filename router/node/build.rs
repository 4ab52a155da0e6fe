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
//! Only for release builds on x86_64 Linux with GNU libc, where rustc links with its
//! own LLD, which knows `--symbol-ordering-file`. `FERRY_NO_LINK_ORDER=1` turns it off
//! (for a linker without the option).

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=link-order/symbols.txt");
    println!("cargo:rerun-if-env-changed=FERRY_NO_LINK_ORDER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let wanted = var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("PROFILE") == "release"
        && env::var_os("FERRY_NO_LINK_ORDER").is_none();
    if !wanted {
        return;
    }
    let file = format!("{}/link-order/symbols.txt", var("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bin=ferry=-Wl,--symbol-ordering-file={file}");
    println!("cargo:rustc-link-arg-bin=ferry=-Wl,--no-warn-symbol-ordering");
}
