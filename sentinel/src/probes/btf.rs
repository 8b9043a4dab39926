//! A minimal reader of kernel BTF: just enough to find a struct's size and
//! the byte offset of a (possibly nested, anonymous-struct) member.
//!
//! aya-ebpf programs get no CO-RE relocations, so the agent reads the few
//! offsets the tp_btf programs need from `/sys/kernel/btf/vmlinux` and hands
//! them to the programs as load-time globals.

use std::collections::HashMap;

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
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Composite {
    size: u32,
    members: Vec<Member>,
}

/// Structs and unions of a BTF blob, by type id; named ones also by name.
pub struct Btf {
    composites: HashMap<u32, Composite>,
    by_name: HashMap<String, u32>,
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, BtfError> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("read past the end"))
}

fn str_at(strings: &[u8], off: u32) -> String {
    let s = strings.get(off as usize..).unwrap_or_default();
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

impl Btf {
    pub fn from_sys_fs() -> std::io::Result<Result<Self, BtfError>> {
        std::fs::read("/sys/kernel/btf/vmlinux").map(|d| Self::parse(&d))
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
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

        let mut composites = HashMap::new();
        let mut by_name = HashMap::new();
        let mut pos = 0;
        let mut id = 1u32; // type id 0 is void
        while pos < types.len() {
            let name_off = u32_at(types, pos)?;
            let info = u32_at(types, pos + 4)?;
            let size = u32_at(types, pos + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            pos += 12;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                _ => 0,
            };
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let m = pos + i * 12;
                    let raw_offset = u32_at(types, m + 8)?;
                    members.push(Member {
                        name: str_at(strings, u32_at(types, m)?),
                        type_id: u32_at(types, m + 4)?,
                        // With kind_flag the top 8 bits hold a bitfield size.
                        bit_offset: if kind_flag {
                            raw_offset & 0x00ff_ffff
                        } else {
                            raw_offset
                        },
                    });
                }
                let name = str_at(strings, name_off);
                if kind == KIND_STRUCT && !name.is_empty() {
                    by_name.entry(name).or_insert(id);
                }
                composites.insert(id, Composite { size, members });
            }
            pos += extra;
            id += 1;
        }
        Ok(Self {
            composites,
            by_name,
        })
    }

    fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    pub fn struct_size(&self, name: &str) -> Result<u64, BtfError> {
        Ok(self.composites[&self.struct_id(name)?].size as u64)
    }

    /// Byte offset of `member` in struct `name`, looking through anonymous
    /// struct and union members (mm_struct keeps its fields in one).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u64, BtfError> {
        let id = self.struct_id(name)?;
        self.find(id, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.to_string(), member.to_string()))
    }

    fn find(&self, id: u32, member: &str, base_bits: u64) -> Option<u64> {
        let c = self.composites.get(&id)?;
        for m in &c.members {
            if m.name == member {
                return Some(base_bits + m.bit_offset as u64);
            }
        }
        c.members
            .iter()
            .filter(|m| m.name.is_empty())
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
        let strings = b"\0int\0a\0b\0inner\0x\0pad\0in\0outer\0";
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
        let btf = Btf::parse(&sample()).unwrap();
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
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, really not").is_err());
        let mut d = sample();
        d.truncate(40);
        assert!(Btf::parse(&d).is_err());
    }

    #[test]
    fn reads_this_kernel_when_available() {
        let Ok(Ok(btf)) = Btf::from_sys_fs() else {
            return; // no kernel BTF here; the privileged tests cover this path
        };
        let o = KernelOffsets::from_btf(&btf).unwrap();
        assert!(o.percpu_counter_size >= 8);
        assert_ne!(o.task_pid, o.task_tgid);
    }
}
