//! Byte sizes and durations as operators write them ("256MiB", "100ms").

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer};

/// Splits "1.5GiB" into (1.5, "GiB"); None without a leading number.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// A size in bytes. K, M, G, T (and KiB, MiB, ...) are powers of 1024, as in
/// systemd and the cgroup files; KB, MB, GB, TB are powers of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (value, unit) = number_and_unit(s)
            .ok_or_else(|| format!("`{s}` is not a size (expected e.g. 512MiB, 2G, 4096)"))?;
        let mult: u64 = match unit {
            "" | "B" => 1,
            "K" | "KiB" | "k" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB, TB)"
                ));
            }
        };
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("size `{s}` is out of range"));
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_bytes(self.0 as f64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Str(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// "1.5 GiB"-style rendering for people; machines get raw bytes.
pub fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v.abs() >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// A duration written as "100ms", "2s", "1.5s", "5m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (value, unit) = number_and_unit(s)
            .ok_or_else(|| format!("`{s}` is not a duration (expected e.g. 100ms, 2s, 5m)"))?;
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" | "" => value,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86400.0,
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{s}` (use ms, s, m, h, d)"
                ));
            }
        };
        Duration::try_from_secs_f64(secs)
            .map(Self)
            .map_err(|_| format!("duration `{s}` is out of range"))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("256MiB").unwrap().0, 256 << 20);
        assert_eq!(ByteSize::parse("256M").unwrap().0, 256 << 20);
        assert_eq!(ByteSize::parse("1.5G").unwrap().0, 3 << 29);
        assert_eq!(ByteSize::parse("100MB").unwrap().0, 100_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("1e30T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Span::parse("100ms").unwrap().0, Duration::from_millis(100));
        assert_eq!(Span::parse("2s").unwrap().0, Duration::from_secs(2));
        assert_eq!(Span::parse("1m").unwrap().0, Duration::from_secs(60));
        assert!(Span::parse("soon").is_err());
        assert!(Span::parse("3 fortnights").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes((300u64 << 20) as f64), "300.0 MiB");
    }
}
