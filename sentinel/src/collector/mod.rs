//! Where samples come from: the kernel's ring buffer, and /proc.

pub mod cgroup;
pub mod host;
pub mod procfs;
pub mod ringbuf;
