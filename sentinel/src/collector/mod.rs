//! Where samples come from: the kernel's ring buffer, and /proc.

pub mod cgroup;
pub mod gpu;
pub mod host;
pub mod procfs;
pub mod ringbuf;
