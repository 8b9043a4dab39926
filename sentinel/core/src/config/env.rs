//! `SENTINEL_<KEY>` environment variables over the file's `[agent]` keys.

use std::path::Path;

use super::{Config, ConfigError, DEFAULT_PATH, KeyLabel};

/// `[agent]` keys that a `SENTINEL_<KEY>` environment variable overrides.
pub const ENV_KEYS: &[&str] = &[
    "socket",
    "reaction_horizon",
    "step",
    "rescan_interval",
    "reconcile_interval",
    "precise_probe",
    "rest_interval",
    "fastest_growth",
    "poll_interval",
    "history",
    "dry_run",
    "tripwire",
    "disable_probes",
    "protected",
    "decision_log",
    "journal",
    "journal_max_entries",
    "journal_max_age",
    "socket_group",
    "admin_group",
    "crash_loop_count",
    "crash_loop_window",
    "max_grace",
    "settle_timeout",
    "freeze_timeout",
    "schedule_horizon",
    "lock_memory",
    "freezer",
];

impl Config {
    /// Reads the config at `path` (the built-in defaults when `path` is the
    /// default location and nothing is there), then applies `SENTINEL_<KEY>` environment variables over its
    /// `[agent]` keys.
    pub fn load_with_env(path: &Path) -> Result<Self, ConfigError> {
        let text = if path == Path::new(DEFAULT_PATH) && !path.exists() {
            String::new()
        } else {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::parse_with_env(&text, &path.display().to_string(), &env)
    }

    /// `parse`, then the `SENTINEL_<KEY>` variables of `env` over the
    /// `[agent]` keys of the same name (`SENTINEL_DRY_RUN=true`,
    /// `SENTINEL_STEP=2MiB`). The file is checked first on its own, so its
    /// errors keep their lines; an error from an override names it.
    pub fn parse_with_env(
        text: &str,
        path: &str,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let base = Self::parse(text, path)?;
        let overrides: Vec<(String, &str, &str)> = env
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("SENTINEL_")?.to_ascii_lowercase();
                ENV_KEYS
                    .contains(&key.as_str())
                    .then_some((key, k.as_str(), v.as_str()))
            })
            .collect();
        if overrides.is_empty() {
            return Ok(base);
        }
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: path.to_string(),
                    line: 1,
                    column: 1,
                    key: KeyLabel(None),
                    message: e.message().to_string(),
                })?;
        let agent = table
            .entry("agent")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let names: Vec<&str> = overrides.iter().map(|o| o.1).collect();
        if let toml::Value::Table(agent) = agent {
            for (key, _, value) in &overrides {
                // A TOML value as written (true, 3, ["a"]), else a string.
                let v = format!("v = {value}")
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|t| t.get("v").cloned())
                    .unwrap_or_else(|| toml::Value::String(value.to_string()));
                agent.insert(key.clone(), v);
            }
        }
        let merged = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            line: 1,
            column: 1,
            key: KeyLabel(None),
            message: e.to_string(),
        })?;
        Self::parse(&merged, &format!("{path} with {}", names.join(", ")))
    }
}
