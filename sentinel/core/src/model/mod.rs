//! Per-process memory series and their forecasts, and the plain values
//! the host reports. Pure: plain data in, plain data out, no clock and no
//! I/O, so it is tested without a kernel.

mod process;
mod series;

pub use process::{DeviceSample, GpuSample, HostMem, Mem, Psi, Stat};
pub use series::{Sample, Series, Trend};

/// Seconds until `current` reaches `limit` at `bytes_per_sec`; `None` when
/// it is not growing. Zero when the limit is already reached.
pub fn seconds_to_limit(current: u64, limit: u64, bytes_per_sec: f64) -> Option<f64> {
    if current >= limit {
        return Some(0.0);
    }
    if bytes_per_sec <= 0.0 || !bytes_per_sec.is_finite() {
        return None;
    }
    Some((limit - current) as f64 / bytes_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_limit() {
        assert_eq!(seconds_to_limit(100, 300, 100.0), Some(2.0));
        assert_eq!(seconds_to_limit(300, 300, 0.0), Some(0.0));
        assert_eq!(seconds_to_limit(100, 300, 0.0), None);
        assert_eq!(seconds_to_limit(100, 300, -5.0), None);
    }
}
