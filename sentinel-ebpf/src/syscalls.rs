//! Mapped bytes per process, from the mmap, munmap and brk syscalls.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use sentinel_common::{EventKind, MappedStats, counter};

use crate::{
    events::{Wake, current_tgid, emit},
    maps::{LARGE_MMAP_BYTES, MAPPED, PENDING_LEN, global},
};

/// `syscalls:sys_enter_mmap` and `sys_enter_munmap`: both carry `len` at 24.
#[tracepoint]
pub fn sys_enter_len(ctx: TracePointContext) -> i32 {
    // SAFETY: offset from the syscalls tracepoint format.
    let len: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    let _ = PENDING_LEN.insert(bpf_get_current_pid_tgid(), len, 0);
    0
}

#[inline(always)]
fn take_pending_len() -> Option<u64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before the remove.
    let len = unsafe { PENDING_LEN.get(key) }.copied();
    let _ = PENDING_LEN.remove(key);
    len
}

#[inline(always)]
fn syscall_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: `ret` is at 16 in every syscalls:sys_exit_* format.
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}

#[inline(always)]
fn add_mapped(tgid: u32, delta: i64, brk: Option<u64>) {
    match MAPPED.get_ptr_mut(tgid) {
        Some(p) => {
            // SAFETY: map value pointer, valid for this run.
            let m = unsafe { &mut *p };
            m.bytes += delta;
            if let Some(b) = brk {
                if m.brk != 0 {
                    m.bytes += b as i64 - m.brk as i64;
                }
                m.brk = b;
            }
        }
        None => {
            let m = MappedStats {
                bytes: delta,
                brk: brk.unwrap_or(0),
            };
            let _ = MAPPED.insert(tgid, m, 0);
        }
    }
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> i32 {
    let Some(len) = take_pending_len() else {
        return 0;
    };
    let ret = syscall_ret(&ctx);
    // Addresses are returned as longs; only -4095..-1 are errors.
    if (-4095..0).contains(&ret) {
        return 0;
    }
    let tgid = current_tgid();
    add_mapped(tgid, len as i64, None);
    if len >= global(&LARGE_MMAP_BYTES) {
        emit(
            EventKind::LargeMmap,
            tgid,
            &[0; counter::COUNT],
            len,
            0,
            Wake::Lazy,
        );
    }
    0
}

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> i32 {
    let Some(len) = take_pending_len() else {
        return 0;
    };
    if syscall_ret(&ctx) == 0 {
        add_mapped(current_tgid(), -(len as i64), None);
    }
    0
}

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> i32 {
    let ret = syscall_ret(&ctx);
    if ret > 0 {
        add_mapped(current_tgid(), 0, Some(ret as u64));
    }
    0
}
