//! Sentinel's kernel programs. Tracepoints only (no kprobes or fentry on the
//! machines we target). The hot programs (`rss_stat`, `page_fault_user`) are
//! tp_btf so the kernel does not build a trace record per fault, and they do
//! their per-event work in a per-CPU slot: the shared hash maps are touched
//! only when the CPU switches to another process or a step is crossed.
// Built for the bpf target by sentinel/build.rs; host builds (clippy, the
// workspace check) compile it as an ordinary program that does nothing.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod events;
mod faults;
mod lifecycle;
mod maps;
mod rss;
mod syscalls;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
