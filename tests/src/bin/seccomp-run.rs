//! `seccomp-run [--errno] [--deny-write-execute] [--families N,..]
//! [--eperm DENIED] ALLOWED -- PROGRAM ARGS...`:
//! runs PROGRAM under a seccomp filter that allows only the x86-64 system
//! calls numbered in the file ALLOWED (one decimal number per line) and
//! kills the whole process on any other, as systemd's SystemCallFilter=
//! does by default; with `--errno`, any other call fails with EPERM
//! instead, as with SystemCallErrorNumber=EPERM. `--deny-write-execute`
//! adds systemd's MemoryDenyWriteExecute=: no mapping both writable and
//! executable, no mprotect to executable, no executable shared memory
//! (refused the same way as a call outside the list). `--families` adds
//! RestrictAddressFamilies=: socket and socketpair of any other address
//! family fail with EAFNOSUPPORT, as systemd's do. `--eperm DENIED`: the
//! calls numbered in that file (those the unit's `~` lines take out) fail
//! with EPERM, as the unit's SystemCallErrorNumber=EPERM makes them, even
//! when any other call kills. The filter is
//! installed here and kept across exec, so the program runs under it from
//! its first instruction.

use std::{ffi::CString, os::unix::ffi::OsStrExt};

/// From <linux/audit.h>: AUDIT_ARCH_X86_64.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 system calls share the x86-64 architecture and set this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Offsets in struct seccomp_data.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low half of the third argument (little-endian): `prot` of mmap and
/// mprotect, `shmflg` of shmat.
const ARG2_LOW: u32 = 16 + 2 * 8;
/// The low half of the first: the address family of socket and socketpair.
const ARG0_LOW: u32 = 16;
const PROT_WRITE_EXEC: u32 = (libc::PROT_WRITE | libc::PROT_EXEC) as u32;
const PROT_EXEC: u32 = libc::PROT_EXEC as u32;
/// From <linux/shm.h>.
const SHM_EXEC: u32 = 0o100000;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Call `nr` whose third argument has all of `bits` set gets `refuse`;
/// the accumulator holds the call number again after the block.
fn refuse_arg(nr: i64, bits: u32, refuse: u32) -> [libc::sock_filter; 6] {
    let nr = u32::try_from(nr).expect("x86-64 call numbers fit in 32 bits");
    [
        jump(JEQ, nr, 0, 5),
        stmt(LD_W_ABS, ARG2_LOW),
        stmt(AND, bits),
        jump(JEQ, bits, 0, 1),
        stmt(RET, refuse),
        stmt(LD_W_ABS, NR),
    ]
}

/// Call `nr` whose first argument is none of `families` fails with
/// EAFNOSUPPORT; the accumulator holds the call number again after it.
fn only_families(nr: i64, families: &[u32]) -> Vec<libc::sock_filter> {
    let nr = u32::try_from(nr).expect("x86-64 call numbers fit in 32 bits");
    let n = u8::try_from(families.len()).expect("a few families");
    // nr?, load, one test per family (a match skips to the reload), refuse.
    let mut p = vec![jump(JEQ, nr, 0, n + 3), stmt(LD_W_ABS, ARG0_LOW)];
    for (i, &f) in families.iter().enumerate() {
        let to_reload = n - i as u8;
        p.push(jump(JEQ, f, to_reload, 0));
    }
    p.push(stmt(RET, SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32));
    p.push(stmt(LD_W_ABS, NR));
    p
}

/// What the filter does beside its allow list.
struct Rules {
    otherwise: u32,
    deny_write_execute: bool,
    families: Option<Vec<u32>>,
    eperm: Vec<u32>,
}

/// Native architecture only, no x32 numbers, with `deny_write_execute`
/// the argument checks of MemoryDenyWriteExecute=, the address families,
/// the calls refused with EPERM, then one comparison per allowed call: a
/// match falls through to ALLOW, a miss skips it; what is left gets
/// `otherwise`.
fn program(allowed: &[u32], rules: &Rules) -> Vec<libc::sock_filter> {
    let otherwise = rules.otherwise;
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET, SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JGE, X32_SYSCALL_BIT, 0, 1),
        stmt(RET, SECCOMP_RET_KILL_PROCESS),
    ];
    if rules.deny_write_execute {
        p.extend(refuse_arg(libc::SYS_mmap, PROT_WRITE_EXEC, otherwise));
        p.extend(refuse_arg(libc::SYS_mprotect, PROT_EXEC, otherwise));
        p.extend(refuse_arg(libc::SYS_pkey_mprotect, PROT_EXEC, otherwise));
        p.extend(refuse_arg(libc::SYS_shmat, SHM_EXEC, otherwise));
    }
    if let Some(families) = &rules.families {
        p.extend(only_families(libc::SYS_socket, families));
        p.extend(only_families(libc::SYS_socketpair, families));
    }
    for &nr in &rules.eperm {
        p.push(jump(JEQ, nr, 0, 1));
        p.push(stmt(RET, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    }
    for &nr in allowed {
        p.push(jump(JEQ, nr, 0, 1));
        p.push(stmt(RET, SECCOMP_RET_ALLOW));
    }
    p.push(stmt(RET, otherwise));
    p
}

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let errno = take(&mut args, "--errno").is_some();
    let deny_write_execute = take(&mut args, "--deny-write-execute").is_some();
    let families = take_value(&mut args, "--families").map(|list| {
        list.split(',')
            .map(|f| {
                f.parse()
                    .unwrap_or_else(|_| fail(&format!("`{f}` is not a family number")))
            })
            .collect()
    });
    let eperm = take_value(&mut args, "--eperm")
        .map(|f| numbers(&f))
        .unwrap_or_default();
    let rules = Rules {
        otherwise: if errno {
            SECCOMP_RET_ERRNO | libc::EPERM as u32
        } else {
            SECCOMP_RET_KILL_PROCESS
        },
        deny_write_execute,
        families,
        eperm,
    };
    let (Some(list), Some(sep)) = (args.first(), args.get(1)) else {
        usage();
    };
    if sep != "--" || args.len() < 3 {
        usage();
    }
    let allowed = numbers(&list.to_string_lossy());
    let filter = program(&allowed, &rules);
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap_or_else(|_| fail("too many system calls")),
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let argv: Vec<CString> = args[2..]
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_else(|_| fail("a NUL in an argument")))
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: prctl and execvp with valid pointers: the filter and the
    // argument vector outlive both calls (execvp replaces the process or
    // returns an error).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(&format!(
                "no_new_privs: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            fail(&format!("seccomp: {}", std::io::Error::last_os_error()));
        }
        libc::execvp(ptrs[0], ptrs.as_ptr());
    }
    fail(&format!(
        "exec {}: {}",
        args[2].to_string_lossy(),
        std::io::Error::last_os_error()
    ));
}

/// Takes option `name` out of those before `--`, returning where it stood
/// (where its value, if it has one, now stands).
fn take(args: &mut Vec<std::ffi::OsString>, name: &str) -> Option<usize> {
    let at = args
        .iter()
        .take_while(|a| *a != "--")
        .position(|a| a == name)?;
    args.remove(at);
    Some(at)
}

/// Takes option `name` and the value after it.
fn take_value(args: &mut Vec<std::ffi::OsString>, name: &str) -> Option<String> {
    let at = take(args, name)?;
    (at < args.len()).then(|| args.remove(at).to_string_lossy().into_owned())
}

/// The system call numbers in the file at `path`, one per line.
fn numbers(path: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| fail(&format!("`{l}` is not a system call number")))
        })
        .collect()
}

fn usage() -> ! {
    fail(
        "usage: seccomp-run [--errno] [--deny-write-execute] [--families N,..] [--eperm DENIED] ALLOWED -- PROGRAM [ARGS...]",
    )
}

fn fail(msg: &str) -> ! {
    eprintln!("seccomp-run: {msg}");
    std::process::exit(2)
}
