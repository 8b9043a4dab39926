//! Loading and attaching the eBPF programs. Each probe is attached on its
//! own and may fail on its own: the agent reports which are missing and
//! degrades (classic tracepoint instead of tp_btf, or /proc polling) rather
//! than refusing to start.

pub mod btf;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use aya::{
    Btf, Ebpf, EbpfLoader, Endianness,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, TracePoint, tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
    },
};
use sentinel_common::{MappedStats, Tripwire as TripwireEntry, globals, precise, stat};
use sentinel_core::engine::Tripwire;

use self::btf::KernelOffsets;

/// The eBPF object, built by build.rs and embedded in the binary.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sentinel-probes"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "cannot load eBPF programs: {0}; Sentinel needs CAP_BPF and CAP_PERFMON (root has them) and a kernel with BPF ring buffers (5.8+)"
    )]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("eBPF map `{0}`: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
}

/// One probe's state, as shown in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub name: &'static str,
    pub attached: bool,
    /// How it is attached, or why it is not.
    pub detail: String,
}

pub struct LoadOptions {
    pub step_bytes: u64,
    pub large_mmap_bytes: u64,
    /// Probe names (as in status) not to attach.
    pub disabled: Vec<String>,
    /// Benchmark instrument: rss_stat attached but returning at once.
    pub dispatch_only: bool,
}

pub use sentinel_core::config::PROBE_NAMES;

/// How rss_stat is attached, to detach it again.
enum RssLink {
    Btf(BtfTracePointLinkId),
    Classic(TracePointLinkId),
}

/// The loaded rss_stat program: which of the two, and its link while
/// attached.
struct RssProgram {
    btf: bool,
    link: Option<RssLink>,
}

/// The loaded programs and the maps the agent keeps using.
pub struct Probes {
    // Owns the programs; dropping it detaches them.
    ebpf: Ebpf,
    rss: Option<RssProgram>,
    precise_map: Array<MapData, u64>,
    /// Whether rss_stat is attached, for the ring buffer's reader.
    precise: Arc<AtomicBool>,
    pub status: Vec<ProbeStatus>,
    pub events: Option<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    faults: BpfHashMap<MapData, u32, u64>,
    mapped: BpfHashMap<MapData, u32, MappedStats>,
    tripwires: BpfHashMap<MapData, u32, TripwireEntry>,
}

/// Offset of `field` in a tracepoint's record, from its tracefs format
/// (fields move between kernel versions).
fn tracefs_field_offset(category: &str, event: &str, field: &str) -> Option<u64> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|root| {
            let text =
                std::fs::read_to_string(format!("{root}/events/{category}/{event}/format")).ok()?;
            parse_field_offset(&text, field)
        })
}

/// Parses `field:<type> <name>;\toffset:<n>;` lines of a tracepoint format.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u64> {
    format.lines().find_map(|l| {
        let decl = l.trim().strip_prefix("field:")?.split(';').next()?;
        let name = decl.split_whitespace().last()?.split('[').next()?;
        if name != field {
            return None;
        }
        l.split(';')
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Totals of the per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeCounters {
    pub events: u64,
    pub lost_events: u64,
    pub tripwire_fires: u64,
    pub foreign_mm: u64,
}

/// Classic tracepoints need tracefs; mount it where a host agent would
/// expect it if nobody has.
fn ensure_tracefs() -> Result<(), String> {
    if Path::new("/sys/kernel/tracing/events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: constant C strings; the result is checked.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// The object's program `name` as the kind `T` it was built as.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| format!("{e}"))
}

/// The tracepoints with a tp_btf program in the object.
const TP_BTF: [&str; 3] = ["rss_stat", "page_fault_user", "sched_process_fork"];

/// The kernel's BTF, read once: the field offsets our tp_btf programs need,
/// and aya's parse of it, which loading a tp_btf program wants. The file
/// is freed before this returns, so at most one copy of it and one parse
/// are alive at once (the start-up peak of the agent's memory).
fn kernel_btf() -> (Result<KernelOffsets, String>, Result<Btf, String>) {
    let blob = match btf::read_sys_fs() {
        Ok(b) => b,
        Err(e) => {
            let e = format!("no kernel BTF (/sys/kernel/btf/vmlinux: {e})");
            return (Err(e.clone()), Err(e));
        }
    };
    let view = btf::Btf::parse(&blob);
    let offsets = match &view {
        Ok(v) => KernelOffsets::from_btf(v).map_err(|e| format!("kernel BTF: {e}")),
        Err(e) => Err(format!("kernel BTF: {e}")),
    };
    if let Err(e) = &offsets {
        return (Err(e.clone()), Err(e.clone()));
    }
    let typedefs = TP_BTF.map(|tp| format!("btf_trace_{tp}"));
    let prefix = view
        .ok()
        .and_then(|v| v.prefix_through(&typedefs.each_ref().map(String::as_str)));
    // Without the prefix (a typedef missing), aya reads the whole and
    // names what it did not find; with it, the whole is freed here.
    let blob = prefix.unwrap_or(blob);
    let parsed = Btf::parse(&blob, Endianness::default()).map_err(|e| format!("kernel BTF: {e}"));
    (offsets, parsed)
}

impl Probes {
    pub fn load(opts: &LoadOptions) -> Result<Self, ProbeError> {
        let mut loader = EbpfLoader::new();
        // `new` parsed the kernel's BTF for CO-RE relocations, which our
        // object has none of (pinned by a test): freed here, so that parse
        // and ours are never alive together.
        loader.btf(None);
        let (offs, kernel_btf) = kernel_btf();
        let o = offs.as_ref().ok().copied();
        let step_pages = (opts.step_bytes / page_size()).max(1);
        let nr_cpus = aya::util::nr_cpus().map(|n| n as u64).unwrap_or(1024);
        let dispatch_only = opts.dispatch_only as u64;
        // Mounted before anything else: the exit probe's format is read from
        // it, and the classic tracepoints attach through it.
        let tracefs = ensure_tracefs();
        let exit_group_dead =
            tracefs_field_offset("sched", "sched_process_exit", "group_dead").unwrap_or(0);
        let attach_pid = tracefs_field_offset("cgroup", "cgroup_attach_task", "pid").unwrap_or(0);
        loader
            .override_global(globals::STEP_PAGES, &step_pages, true)
            .override_global(globals::LARGE_MMAP_BYTES, &opts.large_mmap_bytes, true)
            .override_global(globals::NR_CPUS, &nr_cpus, true)
            .override_global(globals::RSS_DISPATCH_ONLY, &dispatch_only, true)
            .override_global(globals::EXIT_GROUP_DEAD_OFFSET, &exit_group_dead, true)
            .override_global(globals::ATTACH_PID_OFFSET, &attach_pid, true);
        let vals;
        if let Some(o) = o {
            vals = [
                o.mm_rss_stat,
                o.percpu_counter_size,
                o.percpu_counter_count,
                o.task_mm,
                o.task_pid,
                o.task_tgid,
                o.task_group_leader,
                o.task_start_boottime,
            ];
            loader
                .override_global(globals::OFF_MM_RSS_STAT, &vals[0], true)
                .override_global(globals::PERCPU_COUNTER_SIZE, &vals[1], true)
                .override_global(globals::OFF_PERCPU_COUNTER_COUNT, &vals[2], true)
                .override_global(globals::OFF_TASK_MM, &vals[3], true)
                .override_global(globals::OFF_TASK_PID, &vals[4], true)
                .override_global(globals::OFF_TASK_TGID, &vals[5], true)
                .override_global(globals::OFF_TASK_GROUP_LEADER, &vals[6], true)
                .override_global(globals::OFF_TASK_START_BOOTTIME, &vals[7], true);
        }
        let mut ebpf = loader.load(OBJECT).map_err(ProbeError::Load)?;
        drop(loader);
        let mut status = Vec::new();
        let load_btf = |ebpf: &mut Ebpf, prog: &str, tp: &str| -> Result<(), String> {
            let btf = kernel_btf.as_ref().map_err(|e| e.clone())?;
            program::<BtfTracePoint>(ebpf, prog)?
                .load(tp, btf)
                .map_err(|e| format!("tp_btf/{tp} load: {e}"))
        };
        let attach_btf = |ebpf: &mut Ebpf, prog: &str, tp: &str| -> Result<String, String> {
            load_btf(ebpf, prog, tp)?;
            program::<BtfTracePoint>(ebpf, prog)?
                .attach()
                .map_err(|e| format!("tp_btf/{tp} attach: {e}"))?;
            Ok(format!("tp_btf/{tp}"))
        };
        let load_tp = |ebpf: &mut Ebpf, prog: &str| -> Result<(), String> {
            if let Err(e) = &tracefs {
                return Err(e.clone());
            }
            program::<TracePoint>(ebpf, prog)?
                .load()
                .map_err(|e| format!("load: {e}"))
        };
        let attach_tp =
            |ebpf: &mut Ebpf, prog: &str, targets: &[(&str, &str)]| -> Result<String, String> {
                load_tp(ebpf, prog)?;
                let p = program::<TracePoint>(ebpf, prog)?;
                for (cat, name) in targets {
                    p.attach(cat, name)
                        .map_err(|e| format!("tracepoint/{cat}/{name}: {e}"))?;
                }
                Ok(targets
                    .iter()
                    .map(|(c, n)| format!("tracepoint/{c}/{n}"))
                    .collect::<Vec<_>>()
                    .join(", "))
            };
        let mut record = |name: &'static str, r: Result<String, String>| {
            let r = r.map_err(|e| summarize(&e));
            match &r {
                Ok(how) => tracing::info!(probe = name, "attached: {how}"),
                Err(why) => tracing::warn!(probe = name, "not attached: {why}"),
            }
            status.push(ProbeStatus {
                name,
                attached: r.is_ok(),
                detail: r.unwrap_or_else(|e| e),
            });
        };

        let disabled = |name: &str| opts.disabled.iter().any(|d| d == name);
        let off = || Err("disabled in the config (agent.disable_probes)".to_string());

        // rss_stat: tp_btf first (no record built per fault), classic
        // second. Loaded here, attached below through `set_precise`, which
        // keeps the link to detach it when nothing is near a line.
        let mut rss_btf = None;
        let rss = if disabled("rss_stat") {
            off()
        } else {
            match load_btf(&mut ebpf, "rss_stat_btf", "rss_stat") {
                Ok(()) => {
                    rss_btf = Some(true);
                    Ok("tp_btf/rss_stat".to_string())
                }
                Err(btf_err) => load_tp(&mut ebpf, "rss_stat_tp")
                    .map(|()| {
                        rss_btf = Some(false);
                        format!("tracepoint/kmem/rss_stat (tp_btf unavailable: {btf_err})")
                    })
                    .map_err(|e| format!("tp_btf: {btf_err}; classic: {e}")),
            }
        };
        record("rss_stat", rss);
        let btf_probes = [
            ("page_fault_user", "page_fault_user", "page_fault_user"),
            (
                "sched_process_fork",
                "sched_process_fork",
                "sched_process_fork",
            ),
        ];
        for (name, prog, tp) in btf_probes {
            let r = if disabled(name) {
                off()
            } else {
                attach_btf(&mut ebpf, prog, tp)
            };
            record(name, r);
        }
        // One program records the length for both mmap and munmap entries.
        let wants_len = !disabled("mmap") || !disabled("munmap");
        let enter = if wants_len {
            attach_tp(
                &mut ebpf,
                "sys_enter_len",
                &[
                    ("syscalls", "sys_enter_mmap"),
                    ("syscalls", "sys_enter_munmap"),
                ],
            )
        } else {
            off()
        };
        let classic: [(&'static str, &str, (&str, &str)); 7] = [
            ("mmap", "sys_exit_mmap", ("syscalls", "sys_exit_mmap")),
            ("munmap", "sys_exit_munmap", ("syscalls", "sys_exit_munmap")),
            ("brk", "sys_exit_brk", ("syscalls", "sys_exit_brk")),
            ("oom_mark_victim", "oom_mark_victim", ("oom", "mark_victim")),
            (
                "sched_process_exec",
                "sched_process_exec",
                ("sched", "sched_process_exec"),
            ),
            (
                "sched_process_exit",
                "sched_process_exit",
                ("sched", "sched_process_exit"),
            ),
            (
                "cgroup_attach_task",
                "cgroup_attach_task",
                ("cgroup", "cgroup_attach_task"),
            ),
        ];
        for (name, prog, target) in classic {
            let r = if disabled(name) {
                off()
            } else if matches!(name, "mmap" | "munmap") {
                enter
                    .clone()
                    .and_then(|_| attach_tp(&mut ebpf, prog, &[target]))
            } else {
                attach_tp(&mut ebpf, prog, &[target])
            };
            record(name, r);
        }

        fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
        where
            T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
        {
            let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
            T::try_from(map).map_err(|e| ProbeError::Map(name, e))
        }
        let mut probes = Self {
            rss: rss_btf.map(|btf| RssProgram { btf, link: None }),
            precise: Arc::default(),
            precise_map: take(&mut ebpf, "PRECISE")?,
            events: Some(take(&mut ebpf, "EVENTS")?),
            counters: take(&mut ebpf, "COUNTERS")?,
            faults: take(&mut ebpf, "FAULTS")?,
            mapped: take(&mut ebpf, "MAPPED")?,
            tripwires: take(&mut ebpf, "TRIPWIRES")?,
            status,
            ebpf,
        };
        if probes.rss.is_some()
            && let Err(e) = probes.set_precise(true)
        {
            tracing::warn!(probe = "rss_stat", "not attached: {e}");
            probes.rss = None;
            if let Some(s) = probes.status.iter_mut().find(|s| s.name == "rss_stat") {
                s.attached = false;
                s.detail = e;
            }
        }
        Ok(probes)
    }

    /// Attaches or detaches rss_stat (and so every tripwire). Attaching
    /// again starts a new epoch: what the program kept per process went
    /// stale while it was detached, and is read afresh from each mm.
    pub fn set_precise(&mut self, on: bool) -> Result<(), String> {
        let Some(rss) = self.rss.as_mut() else {
            return Err("rss_stat is not loaded".into());
        };
        if on == rss.link.is_some() {
            return Ok(());
        }
        let name = if rss.btf {
            "rss_stat_btf"
        } else {
            "rss_stat_tp"
        };
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or("rss_stat missing from the object")?;
        if let Some(link) = rss.link.take() {
            let detached = match link {
                RssLink::Btf(id) => {
                    let p: &mut BtfTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
                    p.detach(id)
                }
                RssLink::Classic(id) => {
                    let p: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
                    p.detach(id)
                }
            };
            detached.map_err(|e| format!("detaching rss_stat: {e}"))?;
            self.precise.store(false, Ordering::Relaxed);
            let _ = self.precise_map.set(precise::RESTING, 1, 0);
            return Ok(());
        }
        let epoch = self.precise_map.get(&precise::EPOCH, 0).unwrap_or(0);
        self.precise_map
            .set(precise::EPOCH, epoch.wrapping_add(1), 0)
            .map_err(|e| format!("PRECISE: {e}"))?;
        let link = if rss.btf {
            let p: &mut BtfTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            RssLink::Btf(
                p.attach()
                    .map_err(|e| format!("tp_btf/rss_stat attach: {e}"))?,
            )
        } else {
            let p: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            RssLink::Classic(
                p.attach("kmem", "rss_stat")
                    .map_err(|e| format!("tracepoint/kmem/rss_stat attach: {e}"))?,
            )
        };
        rss.link = Some(link);
        self.precise.store(true, Ordering::Relaxed);
        let _ = self.precise_map.set(precise::RESTING, 0, 0);
        Ok(())
    }

    /// Follows whether rss_stat is attached.
    pub fn precise_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.precise)
    }

    /// Whether rss_stat is attached now.
    pub fn precise_attached(&self) -> bool {
        self.rss.as_ref().is_some_and(|r| r.link.is_some())
    }

    /// True when resident-set changes arrive from the kernel.
    pub fn rss_attached(&self) -> bool {
        self.status
            .iter()
            .any(|s| s.name == "rss_stat" && s.attached)
    }

    pub fn counters(&self) -> ProbeCounters {
        ProbeCounters {
            events: self.counter(stat::EVENTS),
            lost_events: self.counter(stat::LOST_EVENTS),
            tripwire_fires: self.counter(stat::TRIPWIRE_FIRES),
            foreign_mm: self.counter(stat::FOREIGN_MM),
        }
    }

    pub fn lost_events(&self) -> u64 {
        self.counter(stat::LOST_EVENTS)
    }

    /// A per-CPU counter of the programs, summed.
    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().sum::<u64>())
            .unwrap_or(0)
    }

    pub fn faults(&self, tgid: u32) -> Option<u64> {
        self.faults.get(&tgid, 0).ok()
    }

    pub fn mapped_bytes(&self, tgid: u32) -> Option<i64> {
        self.mapped.get(&tgid, 0).ok().map(|m| m.bytes)
    }

    /// Sets a process's in-kernel entry: governed processes' events wake
    /// the agent at once, and the kernel stops one whose charged pages
    /// reach its ceiling.
    /// Arms, moves or clears the kernel's entry for the process `tgid`
    /// that started at `start_time` (clock ticks after boot): the kernel
    /// stops no later process that reuses the pid.
    pub fn set_tripwire(
        &mut self,
        tgid: u32,
        start_time: u64,
        wire: Tripwire,
    ) -> Result<(), aya::maps::MapError> {
        let ceiling_pages = match wire {
            Tripwire::Off => {
                let _ = self.tripwires.remove(&tgid);
                return Ok(());
            }
            Tripwire::WatchOnly => TripwireEntry::WATCH,
            Tripwire::Ceiling(bytes) => bytes.div_ceil(page_size()),
        };
        let entry = TripwireEntry {
            ceiling_pages,
            start_ticks: start_time,
        };
        self.tripwires.insert(tgid, entry, 0)
    }
}

/// Verifier logs run to hundreds of lines; status keeps the error and the
/// verifier's final complaint.
fn summarize(err: &str) -> String {
    let Some((head, log)) = err.split_once("Verifier output:") else {
        return err.to_string();
    };
    let last = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && *l != ")"
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("processed ")
        })
        .unwrap_or("");
    format!(
        "{}verifier: {last}",
        head.trim_end_matches(['.', ' ']).to_string() + ". "
    )
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of section `name` of a little-endian ELF64 object.
    fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
        let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
        let (shoff, shentsize, shnum, shstrndx) =
            (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
        let header = |i: usize| shoff + i * shentsize;
        let names = u64_at(header(shstrndx) + 0x18);
        (0..shnum).find_map(|i| {
            let h = header(i);
            let n = &elf[names + u32_at(h)..];
            let n = &n[..n.iter().position(|&b| b == 0)?];
            let (off, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
            (n == name.as_bytes()).then(|| &elf[off..off + size])
        })
    }

    /// The loader is given no kernel BTF (parsing it would double the
    /// agent's start-up peak), which is right only while the object asks
    /// for no CO-RE relocation: aya-ebpf emits none, and the kernel offsets
    /// the programs need come in as load-time globals instead. A program
    /// that starts using CO-RE must pass the kernel's BTF to the loader.
    #[test]
    fn the_object_has_no_core_relocations() {
        let ext = elf_section(OBJECT, ".BTF.ext").expect("the object has a .BTF.ext section");
        let hdr_len = u32::from_le_bytes(ext[4..8].try_into().unwrap());
        // core_relo_off and core_relo_len follow func and line info.
        if hdr_len >= 32 {
            let core_relo_len = u32::from_le_bytes(ext[28..32].try_into().unwrap());
            assert_eq!(core_relo_len, 0, "the eBPF object has CO-RE relocations");
        }
    }

    #[test]
    fn tracepoint_format_offsets() {
        let f = "name: sched_process_exit\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        assert_eq!(parse_field_offset(f, "group_dead"), Some(32));
        assert_eq!(parse_field_offset(f, "pid"), Some(24));
        assert_eq!(parse_field_offset(f, "comm"), Some(8));
        assert_eq!(parse_field_offset(f, "prio"), None);
    }

    #[test]
    fn verifier_logs_are_summarized() {
        let e = "the BPF_PROG_LOAD syscall failed. Verifier output: 0: R1=ctx()\n29: (0f) r3 += r1\nvalue -8 makes pointer be out of bounds\nverification time 383 usec\nstack depth 64+0+0\n)";
        let s = summarize(e);
        assert!(
            s.ends_with("verifier: value -8 makes pointer be out of bounds"),
            "{s}"
        );
    }
}
