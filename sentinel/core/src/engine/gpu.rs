//! GPU memory in the engine: each device is a shared limit (its total
//! memory), judged with the same levels, victim choice and ladder as a
//! cgroup's, where each process is measured by its memory on that device.
//! The decisions' rule is `gpu:INDEX`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Engine, Host, Limit, Scope, shared::Grouping, table::ProcState, tree_root};
use crate::{
    model::{DeviceSample, GpuSample, Series},
    policy::{group, levels::Level},
};

/// How far back a process's GPU series reaches (as for host memory).
const HISTORY_SECS: f64 = 10.0;

/// The rule name decisions about GPU `device` carry.
pub fn rule_of(device: u32) -> String {
    format!("gpu:{device}")
}

pub fn device_of_rule(rule: &str) -> Option<u32> {
    rule.strip_prefix("gpu:")?.parse().ok()
}

/// What the agent knows of the GPUs.
#[derive(Default)]
pub struct GpuState {
    /// Empty while NVML answers; why GPU monitoring is off otherwise.
    pub unavailable: String,
    pub driver: String,
    devices: BTreeMap<u32, DeviceSample>,
    series: BTreeMap<u32, Series>,
    /// (device, pid) -> that process's GPU memory over time.
    procs: BTreeMap<(u32, u32), Series>,
    /// Devices NVML could not read at the last pass, and why.
    pub errors: BTreeMap<u32, String>,
    /// Device read failures since start.
    pub error_count: u64,
    /// Pids NVML reports that this agent cannot see: NVML gives host pids,
    /// so an agent outside the host's PID namespace cannot act on them.
    pub unmapped: std::collections::BTreeSet<u32>,
    /// GPU processes' pids inside their own PID namespace (containers),
    /// where that differs.
    pub ns_pids: HashMap<u32, u32>,
    /// Each process's GPU memory over all devices, summed once per pass
    /// so that listing thousands of processes does not rescan every device.
    totals: HashMap<u32, u64>,
    pub samples: u64,
}

/// A device as status and metrics show it.
#[derive(Debug, Clone)]
pub struct GpuDeviceView {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub total: u64,
    pub used: u64,
    pub level: Level,
    /// Set when the last read failed (the figures are the last good ones).
    pub error: Option<String>,
}

impl GpuState {
    pub fn device(&self, index: u32) -> Option<&DeviceSample> {
        self.devices.get(&index)
    }

    /// A process's latest GPU memory on `device`.
    pub fn last_bytes(&self, device: u32, pid: u32) -> Option<u64> {
        self.procs.get(&(device, pid))?.last().map(|l| l.bytes)
    }

    /// When `pid`'s memory on `device` was last sampled.
    pub fn last_sampled(&self, device: u32, pid: u32) -> Option<f64> {
        self.procs.get(&(device, pid))?.last().map(|l| l.t)
    }

    pub fn trend(&self, device: u32, pid: u32, now: f64) -> Option<crate::model::Trend> {
        self.procs.get(&(device, pid))?.trend(now)
    }

    /// The processes NVML lists on `device`.
    pub fn pids_on(&self, device: u32) -> Vec<u32> {
        self.procs
            .keys()
            .filter(|(d, _)| *d == device)
            .map(|(_, p)| *p)
            .collect()
    }

    /// A process's GPU memory over all devices.
    pub fn bytes_of(&self, pid: u32) -> u64 {
        self.totals.get(&pid).copied().unwrap_or(0)
    }

    fn sum_totals(&mut self) {
        self.totals.clear();
        for ((_, pid), s) in &self.procs {
            if let Some(l) = s.last() {
                *self.totals.entry(*pid).or_default() += l.bytes;
            }
        }
    }
}

impl<H: Host> Engine<H> {
    /// NVML could not be used: said once, in status and the log.
    pub fn gpu_unavailable(&mut self, why: String) {
        tracing::info!("GPU monitoring unavailable: {why}");
        self.gpu.unavailable = why;
    }

    /// NVML answers, from this driver.
    pub fn gpu_driver(&mut self, driver: String) {
        self.gpu.driver = driver;
    }

    /// A whole NVML pass failed: shown in status until one succeeds.
    pub fn gpu_pass_failed(&mut self, why: String) {
        self.gpu.unavailable = why;
        self.gpu.error_count += 1;
    }

    /// One NVML pass: device and per-process series, failed devices
    /// reported (a device that comes back is reported as back), and each
    /// device judged as a shared limit.
    pub fn observe_gpu(&mut self, sample: GpuSample, now: f64) {
        self.gpu.samples += 1;
        self.gpu.unavailable.clear();
        let failed: BTreeMap<u32, String> = sample.errors.into_iter().collect();
        for (d, why) in &failed {
            if self.gpu.errors.get(d) != Some(why) {
                tracing::warn!(
                    device = d,
                    "GPU read failed: {why}; using its last good figures"
                );
            }
        }
        for d in self.gpu.errors.keys() {
            if !failed.contains_key(d) {
                tracing::info!(device = d, "GPU readable again");
            }
        }
        self.gpu.error_count += failed.len() as u64;
        self.gpu.errors = failed;

        let seen: HashSet<(u32, u32)> = sample.processes.keys().copied().collect();
        let read: HashSet<u32> = sample.devices.iter().map(|d| d.index).collect();
        // Forget processes gone from a device that was read; keep those of
        // a device that failed, as they were.
        self.gpu
            .procs
            .retain(|k, _| seen.contains(k) || !read.contains(&k.0));
        let had_unmapped = !self.gpu.unmapped.is_empty();
        self.gpu.unmapped.clear();
        let seen_pids: HashSet<u32> = seen.iter().map(|k| k.1).collect();
        self.gpu.ns_pids.retain(|pid, _| seen_pids.contains(pid));
        for ((device, pid), bytes) in sample.processes {
            if !self.procs.contains_key(&pid) && self.discover(pid).is_none() {
                // NVML's pids are the host's; one this agent cannot see
                // (it runs in another PID namespace) is still counted on
                // its device, but cannot be acted on.
                self.gpu.unmapped.insert(pid);
            } else if !self.gpu.ns_pids.contains_key(&pid)
                && let Some(inner) = self.host.ns_pid(pid)
            {
                self.gpu.ns_pids.insert(pid, inner);
            }
            self.gpu
                .procs
                .entry((device, pid))
                .or_insert_with(|| Series::new(HISTORY_SECS))
                .push(now, bytes);
        }
        self.gpu.sum_totals();
        if !had_unmapped && !self.gpu.unmapped.is_empty() {
            tracing::warn!(
                pids = ?self.gpu.unmapped,
                "GPU processes NVML reports are not visible to the agent: it needs the host's PID namespace (hostPID) to act on them"
            );
        }
        self.judge_gpu_rules(now);
        self.judge_devices(sample.devices, now);
    }

    /// Each device is a shared limit at its total memory.
    fn judge_devices(&mut self, devices: Vec<DeviceSample>, now: f64) {
        for dev in devices {
            self.gpu
                .series
                .entry(dev.index)
                .or_insert_with(|| Series::new(HISTORY_SECS))
                .push(now, dev.used);
            let index = dev.index;
            let (used, total) = (dev.used, dev.total);
            self.gpu.devices.insert(index, dev);
            if total == 0 {
                continue;
            }
            let pids: Vec<u32> = self
                .gpu
                .procs
                .keys()
                .filter(|(d, _)| *d == index)
                .map(|(_, p)| *p)
                .collect();
            let limit = Limit {
                scope: Scope::Gpu(index),
                rule: rule_of(index),
                bytes: total,
                levels: self.cfg.gpu.levels,
                cap: self.cfg.gpu.action,
            };
            self.relieve(&limit, used, &pids, Grouping::Gpu(index), now);
        }
    }

    /// Each process under a rule with a `gpu_limit`, on each device it
    /// uses: its memory there against that limit.
    fn judge_gpu_rules(&mut self, now: f64) {
        let due: Vec<(u32, u32, u64, Limit)> = self
            .gpu
            .procs
            .iter()
            .filter_map(|(&(device, pid), series)| {
                let rule = &self.cfg.rules[self.procs.get(&pid)?.rule?];
                let bytes = rule.gpu_limit_bytes?;
                let used = series.last()?.bytes;
                Some((
                    device,
                    pid,
                    used,
                    Limit {
                        scope: Scope::GpuProcess { device, pid },
                        rule: rule.name.clone(),
                        bytes,
                        levels: rule.levels,
                        cap: rule.action,
                    },
                ))
            })
            .collect();
        for (device, pid, used, limit) in due {
            self.relieve(&limit, used, &[pid], Grouping::Gpu(device), now);
        }
    }

    /// The processes on `device` as the pure decision sees them, measured
    /// by their memory on it; trees are formed among them.
    pub(super) fn gpu_members(
        &self,
        device: u32,
        pids: &[u32],
        now: f64,
    ) -> Vec<group::Member<'_>> {
        let all: HashSet<u32> = pids.iter().copied().collect();
        pids.iter()
            .filter_map(|pid| {
                let series = self.gpu.procs.get(&(device, *pid))?;
                let p = self.procs.get(pid)?;
                let recent = series
                    .last()
                    .is_some_and(|l| now - l.t <= super::GROWTH_WINDOW_SECS);
                (recent || p.state.stopped()).then(|| group::Member {
                    pid: *pid,
                    root: tree_root(*pid, &p.ancestors, &all),
                    bytes: series.last().map(|l| l.bytes).unwrap_or(0),
                    series,
                    stopped: p.state.stopped(),
                    frozen: p.state == ProcState::Frozen,
                    protected: p.protected.is_some(),
                    priority: p.priority,
                })
            })
            .collect()
    }

    pub fn gpu_views(&self) -> Vec<GpuDeviceView> {
        self.gpu
            .devices
            .values()
            .map(|d| GpuDeviceView {
                index: d.index,
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                total: d.total,
                used: d.used,
                level: self
                    .scopes
                    .get(&Scope::Gpu(d.index))
                    .map(|s| s.held.level)
                    .unwrap_or_default(),
                error: self.gpu.errors.get(&d.index).cloned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_rules_name_their_device() {
        assert_eq!(rule_of(3), "gpu:3");
        assert_eq!(device_of_rule("gpu:3"), Some(3));
        assert_eq!(device_of_rule("gpu"), None);
        assert_eq!(device_of_rule("workers"), None);
    }
}
