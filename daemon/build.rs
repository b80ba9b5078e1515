//! Release builds of `tokd-daemon` place the functions a running daemon uses first and
//! together (`symbol-order.txt`, made by `scripts/symbol-order`), so its resident code is
//! a few compact pages rather than 64 KiB fault-around windows all over the binary.
//!
//! Only where the link is known to be done by lld, which understands
//! `--symbol-ordering-file`: a release build for x86_64-unknown-linux-gnu with rustc 1.90
//! or newer (rust-lld is then the default linker) and no linker chosen in the cargo
//! configuration. Anywhere else the binary is linked exactly as before.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if !links_with_rust_lld() {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("symbol-order.txt");
    if !order.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=tokd-daemon=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Names from another toolchain or dependency version are skipped, not errors.
    println!("cargo:rustc-link-arg-bin=tokd-daemon=-Wl,--no-warn-symbol-ordering");
}

fn links_with_rust_lld() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("PROFILE") != "release" || var("TARGET") != "x86_64-unknown-linux-gnu" {
        return false;
    }
    if env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    // "rustc 1.95.0 (...)": rust-lld is the default on this target from 1.90.
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
