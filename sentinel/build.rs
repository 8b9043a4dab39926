//! Builds the eBPF object with the Debian toolchain (it ships a prebuilt
//! `core` for bpfel-unknown-none) and bpf-linker; `cargo xtask setup`
//! installs both. The object is embedded in the agent binary.

fn main() {
    // aya-ebpf uses one unstable feature. Scoping RUSTC_BOOTSTRAP to that one
    // crate keeps aya-build from switching to `-Z build-std`, which would
    // need the Rust sources as well.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    // aya-build relays the inner cargo's progress lines as build warnings;
    // keep only real diagnostics.
    // SAFETY: as above.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let package = aya_build::Package {
        name: "sentinel-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../sentinel-ebpf"),
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom("debian")) {
        panic!(
            "building the eBPF programs failed: {e:#}\n\
             hint: run `cargo xtask setup` to install bpf-linker and the Debian Rust toolchain"
        );
    }
}
