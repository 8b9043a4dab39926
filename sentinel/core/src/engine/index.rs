//! The process table with what the host timer asks of it on every tick
//! kept ready: which processes the agent holds, which a rule governs, and
//! which cgroups have members. A tick then costs nothing per process when
//! nothing moves (issue 17), and a thousand idle processes are not walked
//! several times a second to find the two that are frozen.
//!
//! The indexes cannot drift from the table: a process is only changed
//! through [`ProcMut`], which puts it back in the right indexes when it is
//! dropped, and `cgroup` is never changed once a process is in the table.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::{Deref, DerefMut},
};

use super::table::{Proc, ProcState};

pub(super) struct ProcTable<F> {
    /// Ordered, so that every pass over processes (and so every tie
    /// between equal growers) goes the same way in the agent and in replay.
    /// Boxed: a B-tree node holds eleven entries and is often half full,
    /// and an empty slot of a 400-byte process costs 400 bytes.
    procs: BTreeMap<u32, Box<Proc<F>>>,
    /// Not running: frozen, queued, terminating or killed.
    held: BTreeSet<u32>,
    /// Under a rule of their own.
    governed: BTreeSet<u32>,
    /// Members per memory cgroup path.
    cgroups: BTreeMap<String, usize>,
}

impl<F> Default for ProcTable<F> {
    fn default() -> Self {
        Self {
            procs: BTreeMap::new(),
            held: BTreeSet::new(),
            governed: BTreeSet::new(),
            cgroups: BTreeMap::new(),
        }
    }
}

/// What the indexes follow of one process.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Indexed {
    held: bool,
    governed: bool,
}

impl Indexed {
    fn of<F>(p: &Proc<F>) -> Self {
        Self {
            held: p.state != ProcState::Running,
            governed: p.rule.is_some(),
        }
    }
}

fn place(set: &mut BTreeSet<u32>, pid: u32, member: bool) {
    if member {
        set.insert(pid);
    } else {
        set.remove(&pid);
    }
}

impl<F> ProcTable<F> {
    pub fn get(&self, pid: &u32) -> Option<&Proc<F>> {
        self.procs.get(pid).map(|p| &**p)
    }

    pub fn contains_key(&self, pid: &u32) -> bool {
        self.procs.contains_key(pid)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Proc<F>> {
        self.procs.values().map(|p| &**p)
    }

    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.procs.keys()
    }

    /// The process, to change: the indexes follow when the guard drops.
    pub fn get_mut(&mut self, pid: &u32) -> Option<ProcMut<'_, F>> {
        let p = self.procs.get_mut(pid)?;
        Some(ProcMut {
            before: Indexed::of(p),
            p: &mut **p,
            held: &mut self.held,
            governed: &mut self.governed,
        })
    }

    pub fn insert(&mut self, p: Proc<F>) {
        let pid = p.pid;
        self.remove(&pid);
        let i = Indexed::of(&p);
        place(&mut self.held, pid, i.held);
        place(&mut self.governed, pid, i.governed);
        *self.cgroups.entry(p.cgroup.clone()).or_default() += 1;
        self.procs.insert(pid, Box::new(p));
    }

    pub fn remove(&mut self, pid: &u32) -> Option<Box<Proc<F>>> {
        let p = self.procs.remove(pid)?;
        self.held.remove(pid);
        self.governed.remove(pid);
        if let Some(n) = self.cgroups.get_mut(&p.cgroup) {
            *n -= 1;
            if *n == 0 {
                self.cgroups.remove(&p.cgroup);
            }
        }
        Some(p)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&u32, &Proc<F>) -> bool) {
        let gone: Vec<u32> = self
            .procs
            .iter()
            .filter(|(pid, p)| !keep(pid, p))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            self.remove(&pid);
        }
    }

    /// Changes every process (a new policy): the indexes are rebuilt after.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Proc<F>)) {
        for p in self.procs.values_mut() {
            f(p);
        }
        self.held.clear();
        self.governed.clear();
        for (pid, p) in &self.procs {
            let i = Indexed::of(p);
            place(&mut self.held, *pid, i.held);
            place(&mut self.governed, *pid, i.governed);
        }
    }

    /// Processes the agent holds (not running), by pid.
    pub fn held(&self) -> impl Iterator<Item = &Proc<F>> {
        self.held.iter().filter_map(|pid| self.get(pid))
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Processes under a rule of their own, by pid.
    pub fn governed(&self) -> impl Iterator<Item = &Proc<F>> {
        self.governed.iter().filter_map(|pid| self.get(pid))
    }

    /// Memory cgroups with at least one known process.
    pub fn cgroups(&self) -> impl Iterator<Item = &str> {
        self.cgroups.keys().map(String::as_str)
    }

    /// Whether the indexes say what a full pass over the table would (the
    /// debug builds every test runs check it on each tick).
    pub fn consistent(&self) -> bool {
        let held = self.procs.values().filter(|p| Indexed::of(*p).held);
        let governed = self.procs.values().filter(|p| Indexed::of(*p).governed);
        let mut cgroups: BTreeMap<&str, usize> = BTreeMap::new();
        for p in self.procs.values() {
            *cgroups.entry(p.cgroup.as_str()).or_default() += 1;
        }
        held.map(|p| p.pid).eq(self.held.iter().copied())
            && governed.map(|p| p.pid).eq(self.governed.iter().copied())
            && cgroups
                .into_iter()
                .eq(self.cgroups.iter().map(|(c, n)| (c.as_str(), *n)))
    }
}

/// A process being changed; back in its indexes when dropped.
pub(super) struct ProcMut<'a, F> {
    p: &'a mut Proc<F>,
    before: Indexed,
    held: &'a mut BTreeSet<u32>,
    governed: &'a mut BTreeSet<u32>,
}

impl<F> Deref for ProcMut<'_, F> {
    type Target = Proc<F>;
    fn deref(&self) -> &Proc<F> {
        self.p
    }
}

impl<F> DerefMut for ProcMut<'_, F> {
    fn deref_mut(&mut self) -> &mut Proc<F> {
        self.p
    }
}

impl<F> Drop for ProcMut<'_, F> {
    fn drop(&mut self) {
        let now = Indexed::of(self.p);
        if now != self.before {
            place(self.held, self.p.pid, now.held);
            place(self.governed, self.p.pid, now.governed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, cgroup: &str, rule: Option<usize>) -> Proc<()> {
        let mut p = Proc::bare(pid, 10.0);
        p.cgroup = cgroup.to_string();
        p.rule = rule;
        p
    }

    /// The indexes agree with a full pass over the table.
    fn consistent(t: &ProcTable<()>) {
        assert!(t.consistent());
        let held: Vec<u32> = t
            .values()
            .filter(|p| p.state != ProcState::Running)
            .map(|p| p.pid)
            .collect();
        assert_eq!(t.held().map(|p| p.pid).collect::<Vec<_>>(), held);
        assert_eq!(t.held_count(), held.len());
        let governed: Vec<u32> = t
            .values()
            .filter(|p| p.rule.is_some())
            .map(|p| p.pid)
            .collect();
        assert_eq!(t.governed().map(|p| p.pid).collect::<Vec<_>>(), governed);
        let cgroups: BTreeSet<&str> = t.values().map(|p| p.cgroup.as_str()).collect();
        assert_eq!(t.cgroups().collect::<BTreeSet<_>>(), cgroups);
    }

    #[test]
    fn the_indexes_follow_every_change() {
        let mut t = ProcTable::default();
        t.insert(proc(1, "/a", None));
        t.insert(proc(2, "/a", Some(0)));
        t.insert(proc(3, "/b", Some(1)));
        consistent(&t);
        t.get_mut(&2).unwrap().state = ProcState::Frozen;
        t.get_mut(&3).unwrap().state = ProcState::Queued;
        consistent(&t);
        assert_eq!(t.held_count(), 2);
        t.get_mut(&3).unwrap().state = ProcState::Running;
        t.get_mut(&1).unwrap().rule = Some(2);
        consistent(&t);
        t.remove(&3);
        consistent(&t);
        assert_eq!(t.cgroups().collect::<Vec<_>>(), ["/a"]);
        // The same pid again (reused): its old entries go first.
        t.insert(proc(2, "/c", None));
        consistent(&t);
        t.retain(|pid, _| *pid != 1);
        consistent(&t);
        t.for_each_mut(|p| {
            p.rule = Some(0);
            p.state = ProcState::Killed;
        });
        consistent(&t);
        assert_eq!(t.held_count(), 1);
    }
}
