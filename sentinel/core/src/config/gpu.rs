//! `[gpu]`: GPU memory through NVML, judged by the same levels and ladder
//! as host memory. Each device is a shared limit (its total memory); the
//! victim is the process with the largest share of the device's growth.

use std::time::Duration;

use serde::Deserialize;

use super::parse::RawLevels;
use crate::{
    policy::{Action, Levels},
    units::Span,
};

/// The NVIDIA driver's library, as the loader finds it.
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

#[derive(Debug, Clone, PartialEq)]
pub struct GpuPolicy {
    /// Off: NVML is not even loaded.
    pub enabled: bool,
    /// NVML's shared library: a name the loader resolves, or a path.
    pub library: String,
    /// How often every device and its processes are sampled.
    pub interval: Duration,
    /// Highest rung at device scope. Alert by default, as at host scope:
    /// stopping GPU jobs is something an operator turns on knowingly.
    pub action: Action,
    pub levels: Levels,
}

impl Default for GpuPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            library: DEFAULT_LIBRARY.to_string(),
            interval: Duration::from_millis(100),
            action: Action::Alert,
            levels: Levels::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGpu {
    pub(super) enabled: Option<bool>,
    pub(super) library: Option<String>,
    pub(super) interval: Option<toml::Spanned<Span>>,
    #[serde(default = "super::parse::alert")]
    pub(super) action: Action,
    pub(super) levels: Option<toml::Spanned<RawLevels>>,
}

impl RawGpu {
    /// Everything but the levels, which the caller resolves against the
    /// global ones.
    pub(super) fn check(&self, levels: Levels) -> Result<GpuPolicy, super::api::Problem> {
        let d = GpuPolicy::default();
        let interval = match &self.interval {
            None => d.interval,
            Some(s) if s.get_ref().0 < Duration::from_millis(10) => {
                return Err((s.span().start, "must be at least 10ms".into()));
            }
            Some(s) => s.get_ref().0,
        };
        Ok(GpuPolicy {
            enabled: self.enabled.unwrap_or(d.enabled),
            library: self
                .library
                .clone()
                .filter(|l| !l.is_empty())
                .unwrap_or(d.library),
            interval,
            action: self.action,
            levels,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{config::Config, policy::Action};

    #[test]
    fn gpu_defaults_watch_and_only_alert() {
        let c = Config::parse("", "t").unwrap();
        assert!(c.gpu.enabled);
        assert_eq!(c.gpu.action, Action::Alert);
        assert_eq!(c.gpu.library, "libnvidia-ml.so.1");
        assert_eq!(c.gpu.interval.as_millis(), 100);
        let c = Config::parse(
            "[levels]\nwarn = 0.6\n[gpu]\naction = \"kill\"\nlevels = { preempt = 0.9 }\ninterval = \"50ms\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.gpu.action, Action::Kill);
        assert_eq!(c.gpu.levels.warn, 0.6, "inherits the global levels");
        assert_eq!(c.gpu.levels.preempt, 0.9);
        let e = Config::parse("[gpu]\ninterval = \"1ms\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `gpu.interval`") && e.contains("at least 10ms"),
            "{e}"
        );
        let e = Config::parse("[gpu]\nlevels = { warn = 0.9, preempt = 0.8 }\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gpu.levels"), "{e}");
    }

    #[test]
    fn a_rule_may_bound_its_processes_gpu_memory() {
        let rule = "[[rule]]\nname = \"t\"\nlimit = \"1G\"\ngpu_limit = \"8GiB\"\nmatch = { comm = \"^t$\" }\n";
        let c = Config::parse(rule, "t").unwrap();
        assert_eq!(c.rules[0].gpu_limit_bytes, Some(8 << 30));
        let c = Config::parse(&rule.replace("gpu_limit = \"8GiB\"\n", ""), "t").unwrap();
        assert_eq!(c.rules[0].gpu_limit_bytes, None);
        let e = Config::parse(&rule.replace("8GiB", "0"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gpu_limit must be above 0"), "{e}");
    }
}
