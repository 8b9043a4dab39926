//! A minimal reader of kernel BTF: just enough to find a struct's size and
//! the byte offset of a (possibly nested, anonymous-struct) member.
//!
//! aya-ebpf programs get no CO-RE relocations, so the agent reads the few
//! offsets the tp_btf programs need from `/sys/kernel/btf/vmlinux` and hands
//! them to the programs as load-time globals.

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("BTF data is truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("struct `{0}` has no member `{1}`")]
    NoMember(String, String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// A view of a BTF blob: where each type's record starts, by type id.
/// Names and members are read from the blob when asked, so the view costs
/// four bytes per type beside the blob (a vmlinux BTF has about 130,000
/// types): the agent parses it at start, when its peak memory is set.
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Byte position of type id `i + 1` in `types` (id 0 is void).
    starts: Vec<u32>,
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, BtfError> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("read past the end"))
}

fn str_at(strings: &[u8], off: u32) -> &[u8] {
    let s = strings.get(off as usize..).unwrap_or_default();
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    &s[..end]
}

/// A struct or union member as the blob holds it.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

/// The kernel's BTF, read whole: it is freed as soon as the probes are
/// loaded.
pub fn read_sys_fs() -> std::io::Result<Vec<u8>> {
    std::fs::read("/sys/kernel/btf/vmlinux")
}

impl<'a> Btf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed(
                "bad magic (only little-endian BTF is read)",
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?;

        let mut starts = Vec::new();
        let mut pos = 0;
        while pos < types.len() {
            let info = u32_at(types, pos + 4)?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                _ => 0,
            };
            starts.push(pos as u32);
            pos += 12 + extra;
        }
        if pos != types.len() {
            return Err(BtfError::Malformed("last type runs past the section"));
        }
        Ok(Self {
            types,
            strings,
            starts,
        })
    }

    /// Size and members of type `id` when it is a struct or union.
    fn composite(&self, id: u32) -> Option<(u32, impl Iterator<Item = Member> + '_)> {
        let pos = *self.starts.get((id as usize).checked_sub(1)?)? as usize;
        let info = u32_at(self.types, pos + 4).ok()?;
        let kind = (info >> 24) & 0x1f;
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        let size = u32_at(self.types, pos + 8).ok()?;
        let kind_flag = info >> 31 == 1;
        let members = (0..(info & 0xffff) as usize).filter_map(move |i| {
            let m = pos + 12 + i * 12;
            let raw_offset = u32_at(self.types, m + 8).ok()?;
            Some(Member {
                name_off: u32_at(self.types, m).ok()?,
                type_id: u32_at(self.types, m + 4).ok()?,
                // With kind_flag the top 8 bits hold a bitfield size.
                bit_offset: if kind_flag {
                    raw_offset & 0x00ff_ffff
                } else {
                    raw_offset
                },
            })
        });
        Some((size, members))
    }

    /// The first type of `kind` called `name` (the parse bounds-checked
    /// every record, so reading one back cannot fail).
    fn id_of(&self, kind: u32, name: &str) -> Option<u32> {
        (1..=self.starts.len() as u32).find(|&id| {
            let pos = self.starts[id as usize - 1] as usize;
            let info = u32_at(self.types, pos + 4).unwrap_or(0);
            (info >> 24) & 0x1f == kind
                && u32_at(self.types, pos)
                    .is_ok_and(|off| str_at(self.strings, off) == name.as_bytes())
        })
    }

    fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.id_of(KIND_STRUCT, name)
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    /// A BTF blob holding this one's types up to the last of `typedefs`,
    /// and all its strings; `None` when one of them is missing. Loading a
    /// tp_btf program only looks up the id of its tracepoint's typedef
    /// (`btf_trace_<name>`), and type ids are positions, so that prefix
    /// answers the same: parsing it costs a fraction of the whole (on this
    /// kernel the three typedefs are among the first 16,200 of 125,850
    /// types).
    pub fn prefix_through(&self, typedefs: &[&str]) -> Option<Vec<u8>> {
        let mut last = 0;
        for name in typedefs {
            last = last.max(self.id_of(KIND_TYPEDEF, name)?);
        }
        let end = self
            .starts
            .get(last as usize)
            .map_or(self.types.len(), |&next| next as usize);
        let mut blob = Vec::with_capacity(24 + end + self.strings.len());
        // Version 1 header of 24 bytes: magic, version, flags, hdr_len,
        // then type_off, type_len, str_off, str_len after the header.
        blob.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        for v in [24, 0, end as u32, end as u32, self.strings.len() as u32] {
            blob.extend_from_slice(&v.to_le_bytes());
        }
        blob.extend_from_slice(&self.types[..end]);
        blob.extend_from_slice(self.strings);
        Some(blob)
    }

    pub fn struct_size(&self, name: &str) -> Result<u64, BtfError> {
        let id = self.struct_id(name)?;
        Ok(self.composite(id).map_or(0, |(size, _)| size as u64))
    }

    /// Byte offset of `member` in struct `name`, looking through anonymous
    /// struct and union members (mm_struct keeps its fields in one).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u64, BtfError> {
        let id = self.struct_id(name)?;
        self.find(id, member.as_bytes(), 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.to_string(), member.to_string()))
    }

    fn find(&self, id: u32, member: &[u8], base_bits: u64) -> Option<u64> {
        let (_, members) = self.composite(id)?;
        let mut anonymous = Vec::new();
        for m in members {
            let name = str_at(self.strings, m.name_off);
            if name == member {
                return Some(base_bits + m.bit_offset as u64);
            }
            if name.is_empty() {
                anonymous.push(m);
            }
        }
        anonymous
            .iter()
            .find_map(|m| self.find(m.type_id, member, base_bits + m.bit_offset as u64))
    }
}

/// The kernel layout facts the tp_btf programs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOffsets {
    pub mm_rss_stat: u64,
    pub percpu_counter_size: u64,
    pub percpu_counter_count: u64,
    pub task_mm: u64,
    pub task_pid: u64,
    pub task_tgid: u64,
    pub task_group_leader: u64,
    pub task_start_boottime: u64,
}

impl KernelOffsets {
    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        Ok(Self {
            mm_rss_stat: btf.member_offset("mm_struct", "rss_stat")?,
            percpu_counter_size: btf.struct_size("percpu_counter")?,
            percpu_counter_count: btf.member_offset("percpu_counter", "count")?,
            task_mm: btf.member_offset("task_struct", "mm")?,
            task_pid: btf.member_offset("task_struct", "pid")?,
            task_tgid: btf.member_offset("task_struct", "tgid")?,
            task_group_leader: btf.member_offset("task_struct", "group_leader")?,
            task_start_boottime: btf.member_offset("task_struct", "start_boottime")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: `struct inner { int a; long b; }` and
    /// `struct outer { int x; struct { int pad; struct inner in; }; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0x\0pad\0in\0outer\0btf_trace_t\0late\0";
        let off = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int
        push(off("int"));
        push(KIND_INT << 24);
        push(4);
        push(32);
        // 2: struct inner, 16 bytes, 2 members
        push(off("inner"));
        push((KIND_STRUCT << 24) | 2);
        push(16);
        push(off("a"));
        push(1);
        push(0);
        push(off("b"));
        push(1);
        push(64);
        // 3: anonymous struct { int pad; struct inner in; }
        push(0);
        push((KIND_STRUCT << 24) | 2);
        push(24);
        push(off("pad"));
        push(1);
        push(0);
        push(off("in"));
        push(2);
        push(64);
        // 4: struct outer { int x; <anon> }
        push(off("outer"));
        push((KIND_STRUCT << 24) | 2);
        push(32);
        push(off("x"));
        push(1);
        push(0);
        push(0);
        push(3);
        push(64);
        // 5: typedef btf_trace_t = int
        push(off("btf_trace_t"));
        push(KIND_TYPEDEF << 24);
        push(1);
        // 6: struct late { int a; }
        push(off("late"));
        push((KIND_STRUCT << 24) | 1);
        push(4);
        push(off("a"));
        push(1);
        push(0);
        let mut d = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&t);
        d.extend_from_slice(strings);
        d
    }

    #[test]
    fn finds_members_through_anonymous_structs() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.struct_size("inner").unwrap(), 16);
        assert_eq!(btf.member_offset("inner", "b").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "x").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "pad").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "in").unwrap(), 16);
        assert!(matches!(
            btf.member_offset("outer", "nope"),
            Err(BtfError::NoMember(..))
        ));
        assert!(matches!(
            btf.struct_size("nope"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn a_prefix_ends_at_the_last_typedef_asked_for_and_keeps_ids() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.starts.len(), 6);
        assert!(
            btf.prefix_through(&["btf_trace_t", "btf_trace_nope"])
                .is_none()
        );
        let prefix = btf.prefix_through(&["btf_trace_t"]).unwrap();
        let short = Btf::parse(&prefix).unwrap();
        assert_eq!(short.starts.len(), 5, "`late` comes after the typedef");
        assert_eq!(short.id_of(KIND_TYPEDEF, "btf_trace_t"), Some(5));
        assert_eq!(short.member_offset("outer", "in").unwrap(), 16);
        assert!(short.struct_size("late").is_err());
        // What loading a tp_btf program asks of it, through aya itself.
        let aya = aya::Btf::parse(&prefix, aya::Endianness::default()).unwrap();
        let id = aya.id_by_type_name_kind("btf_trace_t", aya_obj::btf::BtfKind::Typedef);
        assert_eq!(id.unwrap(), 5);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, really not").is_err());
        let mut d = sample();
        d.truncate(40);
        assert!(Btf::parse(&d).is_err());
    }

    #[test]
    fn reads_this_kernel_when_available() {
        let Ok(blob) = read_sys_fs() else {
            return; // no kernel BTF here; the privileged tests cover this path
        };
        let btf = Btf::parse(&blob).unwrap();
        let o = KernelOffsets::from_btf(&btf).unwrap();
        assert!(o.percpu_counter_size >= 8);
        assert_ne!(o.task_pid, o.task_tgid);
        // aya finds each tracepoint's typedef at the same id in the prefix
        // as in the whole.
        let names = ["btf_trace_rss_stat", "btf_trace_sched_process_fork"];
        let prefix = btf.prefix_through(&names).unwrap();
        let aya = aya::Btf::parse(&prefix, aya::Endianness::default()).unwrap();
        for name in names {
            let id = aya.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Typedef);
            assert_eq!(id.unwrap(), btf.id_of(KIND_TYPEDEF, name).unwrap());
        }
    }
}
