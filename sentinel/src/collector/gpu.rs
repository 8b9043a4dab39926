//! GPU memory through NVML (nvml-wrapper, which loads the driver's
//! library at run time): per device used and total memory, and per
//! process GPU memory (compute and graphics). No subprocess, no polling of
//! nvidia-smi.

use std::ffi::OsStr;

use nvml_wrapper::{Nvml, enums::device::UsedGpuMemory, error::NvmlError};

pub use sentinel_core::model::{DeviceSample, GpuSample};

pub struct Gpu {
    nvml: Nvml,
}

/// Why GPU monitoring is off, for status (said once).
pub fn unavailable_reason(e: &NvmlError, library: &str) -> String {
    match e {
        // The unit's MemoryDenyWriteExecute=yes refuses a library that asks
        // for an executable stack; the loader's message names the stack.
        NvmlError::LibloadingError(err) if err.to_string().contains("executable stack") => {
            format!(
                "the NVIDIA driver library needs an executable stack, which the service's MemoryDenyWriteExecute=yes refuses ({library}: {err}); a drop-in with MemoryDenyWriteExecute=no lets it load"
            )
        }
        NvmlError::LibloadingError(err) => {
            format!("no NVIDIA driver library ({library}: {err})")
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_string(),
        other => format!("NVML did not initialize: {other}"),
    }
}

impl Gpu {
    /// Loads NVML from `library` (a name the loader resolves, or a path).
    pub fn open(library: &str) -> Result<Self, String> {
        Nvml::builder()
            .lib_path(OsStr::new(library))
            .init()
            .map(|nvml| Self { nvml })
            .map_err(|e| unavailable_reason(&e, library))
    }

    pub fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    /// One pass over every device. A device that fails is reported in
    /// `errors` and left out; the others are still read.
    pub fn sample(&self) -> Result<GpuSample, String> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| format!("NVML device count: {e}"))?;
        let mut s = GpuSample::default();
        for index in 0..count {
            let dev = match self.nvml.device_by_index(index) {
                Ok(d) => d,
                Err(e) => {
                    s.errors.push((index, e.to_string()));
                    continue;
                }
            };
            let mem = match dev.memory_info() {
                Ok(m) => m,
                Err(e) => {
                    s.errors.push((index, format!("memory: {e}")));
                    continue;
                }
            };
            s.devices.push(DeviceSample {
                index,
                uuid: dev.uuid().unwrap_or_default(),
                name: dev.name().unwrap_or_default(),
                total: mem.total,
                used: mem.used,
            });
            let listed = dev.running_compute_processes().and_then(|mut c| {
                c.extend(dev.running_graphics_processes()?);
                Ok(c)
            });
            match listed {
                Ok(procs) => {
                    for p in procs {
                        if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
                            // A process with both kinds of context is one
                            // allocation seen twice, not two.
                            let e = s.processes.entry((index, p.pid)).or_default();
                            *e = (*e).max(bytes);
                        }
                    }
                }
                Err(e) => s.errors.push((index, format!("processes: {e}"))),
            }
        }
        Ok(s)
    }
}
