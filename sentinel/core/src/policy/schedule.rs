//! Preemption as a scheduler at a shared limit. When several members grow
//! together toward the line (a stampede), freezing them all deadlocks the
//! group (frozen members keep their memory, so the pressure never clears)
//! and killing them all loses the work. Instead just enough of them wait,
//! frozen, for the rest to stay under the line; they resume, one at a
//! time, as memory frees. Pure: units in, whom to queue or resume out.

/// A process tree at a shared limit, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub root: u32,
    /// Growth now (bytes per second over its running members); 0 when
    /// steady.
    pub slope: f64,
    /// Its priority class (lower waits first).
    pub priority: i32,
    /// Start time of its newest member (clock ticks after boot): the work
    /// that has made the least progress waits first.
    pub started: u64,
    /// Never frozen (a protected process, or growth inside a reservation).
    pub protected: bool,
    /// Already let run while others grew (or resumed from the queue): its
    /// growth is counted, it is not asked to wait again before the line.
    pub admitted: bool,
}

/// What the scheduler does with the trees that have started growing beside
/// others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Let run: their growth fits beside what runs.
    pub admit: Vec<u32>,
    /// Made to wait, frozen.
    pub queue: Vec<u32>,
}

/// A queued tree, waiting for memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub root: u32,
    pub priority: i32,
    /// When it was queued (monotonic seconds).
    pub since: f64,
    /// How fast it grew before it was queued.
    pub slope: f64,
    /// What it holds against the limit: the progress it has made.
    pub held: u64,
}

/// Growth rates within this factor of each other count as alike, so that
/// the noise between workers doing the same thing does not order them.
const ALIKE: f64 = 1.5;

/// A growth rate's band: rates in one band are alike.
fn band(slope: f64) -> i64 {
    (slope.max(1.0).ln() / ALIKE.ln()).floor() as i64
}

/// The order in which growing units are made to wait: lowest priority
/// class first; then the fastest growing (each stop then takes the most
/// growth off the forecast, so the fewest wait); among alike growers, the
/// latest started (the work that has made the least progress), then the
/// highest root (the last forked). Protected units never wait.
fn wait_order(units: &[Unit]) -> Vec<&Unit> {
    let mut v: Vec<&Unit> = units
        .iter()
        .filter(|u| u.slope > 0.0 && !u.protected)
        .collect();
    v.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(band(b.slope).cmp(&band(a.slope)))
            .then(b.started.cmp(&a.started))
            .then(b.root.cmp(&a.root))
    });
    v
}

/// The median of the growing units' rates: what a tree just starting is
/// taken to grow at when its own first samples say less (a stampede's
/// workers are alike, and a rate read off a few samples is noisy).
pub fn typical(slopes: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = slopes.filter(|s| *s > 0.0).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Whether `usage` growing at `slope` stays under `line` for `horizon`.
fn fits(usage: u64, slope: f64, line: u64, horizon: f64) -> bool {
    (usage as f64) + slope.max(0.0) * horizon < line as f64
}

/// The trees that have started growing beside others (not yet admitted)
/// are let run, in the reverse of the wait order (highest priority,
/// slowest, oldest first), while what runs, at its growth now, stays under
/// `line` for `horizon` seconds, making lower classes already running wait
/// where that makes room; the rest wait. Deciding once per tree, as
/// it starts, is what lets a stampede finish: the trees let run are not
/// asked to wait again as they fill the room (only at the line itself),
/// and the waiting ones hold little. One grower always runs: a lone tree is
/// judged at the line, where it is a runaway.
pub fn plan(units: &[Unit], usage: u64, line: u64, horizon: f64) -> Plan {
    let mut plan = Plan::default();
    if horizon <= 0.0 {
        return plan;
    }
    let running = |u: &&Unit| u.slope > 0.0 && (u.admitted || u.protected);
    let mut slope: f64 = units.iter().filter(running).map(|u| u.slope).sum();
    let mut anyone = units.iter().any(|u| running(&u));
    let alike = typical(units.iter().map(|u| u.slope));
    let mut arrivals: Vec<&Unit> = wait_order(units)
        .into_iter()
        .filter(|u| !u.admitted)
        .collect();
    arrivals.reverse();
    for u in arrivals {
        let rate = u.slope.max(alike);
        if !anyone || fits(usage, slope + rate, line, horizon) {
            plan.admit.push(u.root);
            slope += rate;
            anyone = true;
            continue;
        }
        // A higher class may take the place of lower ones already running.
        let mut yielded = Vec::new();
        let mut left = slope;
        for v in wait_order(units) {
            if v.priority >= u.priority || fits(usage, left + rate, line, horizon) {
                break;
            }
            if v.admitted && !plan.queue.contains(&v.root) {
                yielded.push(v.root);
                left -= v.slope;
            }
        }
        if fits(usage, left + rate, line, horizon) {
            plan.queue.extend(yielded);
            plan.admit.push(u.root);
            slope = left + rate;
        } else {
            plan.queue.push(u.root);
        }
    }
    plan
}

/// At the line itself, the unit that waits when others still grow (`None`
/// when the unit driving the growth grows alone: then it is a runaway, and
/// the rule's ladder applies to it).
pub fn at_the_line(units: &[Unit], growing: usize) -> Option<u32> {
    if growing < 2 {
        return None;
    }
    wait_order(units).first().map(|u| u.root)
}

/// Where a shared limit stands for its queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Room {
    pub usage: u64,
    /// The preempt line.
    pub line: u64,
    /// Growth of what runs there now.
    pub running_slope: f64,
    /// What the trees let run there (growing or holding) hold: memory
    /// that frees as they end.
    pub workers_hold: u64,
    /// Nothing there runs at all.
    pub idle: bool,
}

/// Why a queued unit resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Its growth beside what runs fits under the line for the horizon.
    Fits,
    /// Nothing running grows, and its growth would not fit even once every
    /// tree let run had ended, while none of them still holds memory (or
    /// it has waited its patience for them): waiting cannot make the room,
    /// so it shows whether it fits.
    Hopeless,
    /// Nothing there runs at all, below the line: a group never sits with
    /// everything frozen and room to run one.
    Idle,
}

impl Resume {
    /// A trial rather than a fit: alone at the line it is a runaway.
    pub fn is_trial(self) -> bool {
        self != Resume::Fits
    }
}

/// Progress as the queue orders by it: held memory in steps of 64 MiB, so
/// that work queued early with little (the noise of a few pages apart)
/// keeps its order of arrival.
pub fn progress(held: u64) -> u64 {
    held >> 26
}

/// The queued unit to resume now, and why, if any: the first of the
/// highest priority, then the one holding the most (alike work that has
/// made the most progress needs the least more to finish, and frees the
/// most when it does), then the longest waiting (see [`Resume`]). Its growth
/// is taken to be at least the typical rate of those waiting. `patience`
/// is how long it waits for trees let run to end and free their memory
/// before it tries anyway (at `now`).
pub fn to_resume(
    waiting: &[Waiting],
    room: &Room,
    horizon: f64,
    now: f64,
    patience: f64,
) -> Option<(u32, Resume)> {
    let next = waiting.iter().min_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(progress(b.held).cmp(&progress(a.held)))
            .then(a.since.total_cmp(&b.since))
            .then(a.root.cmp(&b.root))
    })?;
    let r = room;
    let rate = next.slope.max(typical(waiting.iter().map(|w| w.slope)));
    let below = r.usage < r.line;
    let why = if fits(r.usage, r.running_slope + rate, r.line, horizon) {
        Resume::Fits
    } else if r.idle && below {
        Resume::Idle
    } else if r.running_slope <= 0.0
        && below
        && !fits(
            r.usage.saturating_sub(r.workers_hold),
            rate,
            r.line,
            horizon,
        )
        && (r.workers_hold == 0 || now - next.since >= patience)
    {
        Resume::Hopeless
    } else {
        return None;
    };
    Some((next.root, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn unit(root: u32, slope_mb: f64, started: u64) -> Unit {
        Unit {
            root,
            slope: slope_mb * 1e6,
            priority: 0,
            started,
            protected: false,
            admitted: false,
        }
    }

    #[test]
    fn a_stampede_runs_as_many_as_fit_and_the_youngest_wait() {
        // Eight workers at 300 MB/s into a 6 GiB cgroup (line 85%): at
        // a 5 s horizon three run.
        let units: Vec<Unit> = (0..8)
            .map(|i| unit(10 + i, 300.0, 100 + u64::from(i)))
            .collect();
        let line = 6 * 1024 * MIB * 85 / 100;
        let p = plan(&units, 80 * MIB, line, 5.0);
        assert_eq!(p.admit, [10, 11, 12]);
        assert_eq!(p.queue, [13, 14, 15, 16, 17], "the last started wait");
        // Once let run, they are not asked again as they fill the room.
        let mut running = units.clone();
        for u in &mut running[..3] {
            u.admitted = true;
        }
        assert_eq!(plan(&running[..3], 4000 * MIB, line, 5.0), Plan::default());
    }

    #[test]
    fn a_lone_grower_or_a_group_far_from_its_line_runs() {
        let line = 1024 * MIB;
        let alone = plan(&[unit(1, 500.0, 1)], 0, line, 5.0);
        assert_eq!((alone.admit, alone.queue), (vec![1], vec![]));
        let two = [unit(1, 10.0, 1), unit(2, 10.0, 2)];
        assert!(plan(&two, 0, line, 5.0).queue.is_empty());
        assert_eq!(
            plan(&two, 0, line, 0.0),
            Plan::default(),
            "a zero horizon turns it off"
        );
    }

    #[test]
    fn the_third_of_three_loads_waits_while_the_two_that_fit_run() {
        // Seed 003: 12 GB loads at 2 GB/s on a 32 GB board (line 85%),
        // two seconds apart.
        let line = 32 * 1024 * MIB * 85 / 100;
        let mut a = unit(1, 2000.0, 1);
        a.admitted = true;
        let p = plan(&[a.clone(), unit(2, 2000.0, 2)], 4000 * MIB, line, 5.0);
        assert_eq!(p.admit, [2]);
        let mut b = unit(2, 2000.0, 2);
        b.admitted = true;
        let c = unit(3, 2000.0, 3);
        assert_eq!(plan(&[a, b, c], 12000 * MIB, line, 5.0).queue, [3]);
    }

    #[test]
    fn the_fastest_grower_waits_before_slower_ones_whatever_its_age() {
        // Twenty small growers and one fast one, all starting: stopping
        // the fast one is enough.
        let mut units: Vec<Unit> = (10..30).map(|r| unit(r, 2.0, u64::from(r))).collect();
        units.push(unit(2, 30.0, 1));
        let p = plan(&units, 600 * MIB, 870 * MIB, 5.0);
        assert_eq!(p.queue, [2]);
    }

    #[test]
    fn priority_decides_before_age_and_protected_units_never_wait() {
        let mut units = vec![unit(1, 300.0, 1), unit(2, 300.0, 2), unit(3, 300.0, 3)];
        units[0].priority = -10; // batch: waits first, though oldest
        units[2].protected = true;
        // 900 MB/s over 5 s is past a 4 GiB line; 600 MB/s is not.
        let p = plan(&units, 0, 4096 * MIB, 5.0);
        assert_eq!((p.admit, p.queue), (vec![2], vec![1]));
        assert_eq!(at_the_line(&units, 3), Some(1));
        assert_eq!(at_the_line(&units, 1), None, "alone: a runaway");
    }

    #[test]
    fn queued_work_resumes_in_order_as_room_returns() {
        let w = [
            Waiting {
                root: 5,
                priority: 0,
                since: 2.0,
                slope: 300e6,
                held: 0,
            },
            Waiting {
                root: 6,
                priority: 0,
                since: 1.0,
                slope: 300e6,
                held: 0,
            },
        ];
        let room = |usage: u64, running_slope: f64, workers_hold: u64, idle: bool| Room {
            usage: usage * MIB,
            line: 5000 * MIB,
            running_slope,
            workers_hold: workers_hold * MIB,
            idle,
        };
        let next = |room: Room| to_resume(&w, &room, 5.0, 10.0, 30.0);
        // Room for its growth over the horizon: the longest waiting first.
        assert_eq!(next(room(1000, 0.0, 900, false)), Some((6, Resume::Fits)));
        // Others grow into what is left: it waits.
        assert_eq!(next(room(4000, 300e6, 3900, false)), None);
        // Others run but hold their memory, and will free it as they end:
        // it waits for them, also where its growth would not fit beside
        // what else the limit holds (its pace over the horizon may be more
        // than it will take)...
        assert_eq!(next(room(4900, 0.0, 4800, false)), None);
        assert_eq!(next(room(4900, 0.0, 1000, false)), None);
        assert_eq!(
            to_resume(&w, &room(4900, 0.0, 4800, false), 5.0, 31.0, 30.0),
            None
        );
        // ... for its patience, then it tries.
        assert_eq!(
            to_resume(&w, &room(4900, 0.0, 1000, false), 5.0, 31.0, 30.0),
            Some((6, Resume::Hopeless))
        );
        // What runs is not work that will end (a steady parent, a daemon),
        // and its growth would never fit: waiting is no use.
        assert_eq!(next(room(4900, 0.0, 0, false)), Some((6, Resume::Hopeless)));
        // Nothing runs at all and there is room: one resumes, whatever
        // the forecast; at the line, none does.
        assert_eq!(next(room(4900, 0.0, 4900, true)), Some((6, Resume::Idle)));
        assert_eq!(next(room(5000, 0.0, 0, true)), None);
        assert!(Resume::Idle.is_trial() && Resume::Hopeless.is_trial() && !Resume::Fits.is_trial());
        // Stopped at the line, one had grown the most: it needs the least
        // more, so it goes first, before those queued early with little.
        let mut progressed = w.clone();
        progressed[0].held = 1300 * MIB;
        // (A few pages apart is no progress: the order of arrival holds.)
        assert_eq!(progress(3 * MIB), progress(0));
        let pick = to_resume(&progressed, &room(4000, 0.0, 0, true), 5.0, 10.0, 30.0);
        assert_eq!(pick.map(|n| n.0), Some(5));
    }

    proptest! {
        /// Whatever the group: every arrival is decided; protected trees
        /// never wait, and trees already running only for a higher class
        /// let in; a grower always runs; and what runs fits unless it did
        /// not before any arrival.
        #[test]
        fn one_grower_runs_and_what_runs_fits(
            slopes in proptest::collection::vec(
                (0u32..2000, any::<bool>(), any::<bool>(), -2i32..2),
                0..20,
            ),
            usage in 0u64..8_000,
            line in 1u64..8_000,
        ) {
            let units: Vec<Unit> = slopes
                .iter()
                .enumerate()
                .map(|(i, &(s, protected, admitted, priority))| Unit {
                    root: i as u32,
                    slope: f64::from(s) * 1e6,
                    priority,
                    started: i as u64,
                    protected,
                    admitted,
                })
                .collect();
            let (usage, line) = (usage * MIB, line * MIB);
            let p = plan(&units, usage, line, 5.0);
            let mut arrivals: Vec<u32> = units
                .iter()
                .filter(|u| u.slope > 0.0 && !u.admitted && !u.protected)
                .map(|u| u.root)
                .collect();
            let yielded: Vec<u32> = p
                .queue
                .iter()
                .copied()
                .filter(|r| !arrivals.contains(r))
                .collect();
            for r in &yielded {
                let v = &units[*r as usize];
                prop_assert!(v.admitted && !v.protected);
                prop_assert!(p.admit.iter().any(|a| units[*a as usize].priority > v.priority));
            }
            let mut decided: Vec<u32> = p
                .admit
                .iter()
                .chain(&p.queue)
                .copied()
                .filter(|r| !yielded.contains(r))
                .collect();
            decided.sort();
            arrivals.sort();
            prop_assert_eq!(decided, arrivals);
            let growing = units.iter().filter(|u| u.slope > 0.0).count();
            prop_assert!(growing == 0 || p.queue.len() < growing);
            let slope = |keep: &dyn Fn(&Unit) -> bool| -> f64 {
                units.iter().filter(|u| u.slope > 0.0 && keep(u)).map(|u| u.slope).sum()
            };
            let runs = slope(&|u| !p.queue.contains(&u.root));
            let before = slope(&|u| (u.admitted || u.protected) && !yielded.contains(&u.root));
            prop_assert!(
                fits(usage, runs, line, 5.0)
                    || !fits(usage, before, line, 5.0)
                    || (before == 0.0 && p.admit.len() == 1)
            );
        }
    }
}
