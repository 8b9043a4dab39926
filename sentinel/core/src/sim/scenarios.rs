//! Synthetic traces, sampled the way the kernel reports (a sample whenever
//! a process moved by a step), for the replay simulator's scenario table.

use super::Sample;

pub const MIB: u64 = 1 << 20;
pub const STEP: u64 = MIB;

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// This pid (or tree root) is chosen first, before the limit; others may
    /// follow if the rest of the group keeps growing.
    Victim(u32),
    /// This pid is chosen before the limit, and nobody else.
    OnlyVictim(u32),
    /// No action at all.
    Nothing,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub limit: u64,
    pub samples: Vec<Sample>,
    pub expect: Expect,
}

impl Scenario {
    /// Whether the engine's `decisions` on this scenario are what it
    /// expects: the grower stopped first, below the kill level (and alone
    /// when so expected); nothing stopped in the plateau scenarios.
    /// Warnings never count as acting.
    pub fn check(&self, decisions: &[super::SimDecision]) -> Result<(), String> {
        let d = super::stops(decisions);
        let kill_line =
            crate::policy::Levels::default().line(crate::policy::Level::Kill, self.limit);
        match self.expect {
            Expect::Victim(pid) | Expect::OnlyVictim(pid) => {
                let first = d.first().ok_or("nothing was stopped")?;
                if first.root != pid {
                    return Err(format!("stopped pid {} first, not {pid}", first.root));
                }
                if first.group_bytes >= kill_line {
                    return Err(format!(
                        "acted only at {} B, past the kill level",
                        first.group_bytes
                    ));
                }
                if self.expect == Expect::OnlyVictim(pid) && d.len() != 1 {
                    return Err(format!("{} processes stopped, expected one", d.len()));
                }
                Ok(())
            }
            Expect::Nothing if d.is_empty() => Ok(()),
            Expect::Nothing => Err(format!("stopped pid {} in a plateau", d[0].pid)),
        }
    }
}

impl Scenario {
    /// Whether a floor-and-biggest killer's first kill (see
    /// [`super::biggest_at_the_floor`]) chose right: the grower in the
    /// growth scenarios, nobody in the plateaus. Only the choice is judged;
    /// when it came (at the floor, by kill) is shown beside it.
    pub fn check_kill(&self, kill: Option<(f64, u32, u64)>) -> Result<(), String> {
        match (&self.expect, kill) {
            (Expect::Nothing, None) => Ok(()),
            (Expect::Nothing, Some((_, pid, _))) => Err(format!("killed pid {pid} in a plateau")),
            (_, None) => Err("killed nobody".into()),
            (Expect::Victim(want) | Expect::OnlyVictim(want), Some((_, pid, _)))
                if pid != *want =>
            {
                Err(format!("killed pid {pid}, not the grower {want}"))
            }
            _ => Ok(()),
        }
    }
}

/// Samples `bytes(t)` every millisecond over [0, until) and keeps those a
/// step away from the last kept one (the first is always kept).
pub(crate) fn reported(
    pid: u32,
    comm: &str,
    root: Option<u32>,
    until: f64,
    bytes: impl Fn(f64) -> u64,
) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let mut last: Option<u64> = None;
    let mut i = 0u64;
    loop {
        let t = i as f64 * 0.001;
        if t >= until {
            break;
        }
        let b = bytes(t);
        if last.is_none_or(|l| l.abs_diff(b) >= STEP) {
            out.push(Sample {
                t,
                pid,
                comm: comm.to_string(),
                bytes: b,
                root,
            });
            last = Some(b);
        }
        i += 1;
    }
    out
}

fn steady(pid: u32, bytes: u64, until: f64) -> Vec<Sample> {
    reported(pid, "steady", None, until, |_| bytes)
}

pub fn linear_leak_beside_steady() -> Scenario {
    let mut s = steady(1, 600 * MIB, 10.0);
    s.extend(reported(2, "leaker", None, 10.0, |t| (200e6 * t) as u64));
    Scenario {
        name: "linear leak beside a big steady process",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::OnlyVictim(2),
    }
}

pub fn burst_then_plateau() -> Scenario {
    let mut s = steady(1, 300 * MIB, 10.0);
    s.extend(reported(2, "loader", None, 10.0, |t| {
        ((t / 0.2).min(1.0) * (400 * MIB) as f64) as u64
    }));
    Scenario {
        name: "burst then plateau below the limit",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::Nothing,
    }
}

pub fn jump_to_70_percent_and_hold() -> Scenario {
    let s = reported(
        2,
        "jumper",
        None,
        10.0,
        |t| if t < 0.1 { 0 } else { 700 * MIB },
    );
    Scenario {
        name: "jump to 70% and hold",
        limit: 1000 * MIB,
        samples: s,
        expect: Expect::Nothing,
    }
}

pub fn sawtooth() -> Scenario {
    let mut s = steady(1, 500 * MIB, 10.0);
    // Allocates 200 MiB over 0.5 s, frees it, every second.
    s.extend(reported(2, "sawtooth", None, 10.0, |t| {
        let phase = t % 1.0;
        if phase < 0.5 {
            (phase / 0.5 * (200 * MIB) as f64) as u64
        } else {
            0
        }
    }));
    Scenario {
        name: "sawtooth (alloc/free cycles)",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::Nothing,
    }
}

pub fn slow_leak() -> Scenario {
    let mut s = steady(1, 100 * MIB, 60.0);
    s.extend(reported(2, "slowleak", None, 60.0, |t| {
        800 * MIB + (5e6 * t) as u64
    }));
    Scenario {
        name: "slow leak (5 MB/s)",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::OnlyVictim(2),
    }
}

pub fn noisy_steady() -> Scenario {
    // ±3 MiB of deterministic noise around 700 MiB.
    let s = reported(1, "noisy", None, 20.0, |t| {
        let k = (t * 37.0).floor() as u64;
        let noise = (k.wrapping_mul(2_654_435_761) % 7) as i64 - 3;
        (700 * MIB as i64 + noise * MIB as i64) as u64
    });
    Scenario {
        name: "noisy steady state",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::Nothing,
    }
}

pub fn step_growth() -> Scenario {
    let mut s = steady(1, 300 * MIB, 20.0);
    // +50 MiB at once every half second.
    s.extend(reported(2, "stairs", None, 20.0, |t| {
        300 * MIB + (t / 0.5).floor() as u64 * 50 * MIB
    }));
    Scenario {
        name: "step growth (+50 MiB every 0.5 s)",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::OnlyVictim(2),
    }
}

pub fn many_small_growers() -> Scenario {
    let mut s = Vec::new();
    for pid in 10..30 {
        s.extend(reported(pid, "small", None, 20.0, |t| {
            20 * MIB + (2e6 * t) as u64
        }));
    }
    s.extend(reported(2, "leaker", None, 20.0, |t| {
        50 * MIB + (30e6 * t) as u64
    }));
    Scenario {
        name: "many small growers and one leaker",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::Victim(2),
    }
}

pub fn fork_splitting_leaker() -> Scenario {
    // Pid 50's ten children grow 20 MB/s each; pid 7 alone grows 60 MB/s.
    let mut s = Vec::new();
    for pid in 100..110 {
        s.extend(reported(pid, "child", Some(50), 20.0, |t| {
            10 * MIB + (20e6 * t) as u64
        }));
    }
    s.extend(reported(7, "single", None, 20.0, |t| {
        10 * MIB + (60e6 * t) as u64
    }));
    Scenario {
        name: "fork-splitting leaker",
        limit: 1024 * MIB,
        samples: s,
        expect: Expect::Victim(50),
    }
}

pub fn all() -> Vec<Scenario> {
    vec![
        linear_leak_beside_steady(),
        burst_then_plateau(),
        jump_to_70_percent_and_hold(),
        sawtooth(),
        slow_leak(),
        noisy_steady(),
        step_growth(),
        many_small_growers(),
        fork_splitting_leaker(),
    ]
}
