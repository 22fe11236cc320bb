//! The pipeline thread's side of attribution: a bounded cache from pid to the process's
//! container, checked against the process's start time, and joined with the latest published
//! names.
//!
//! Per record: one hash lookup and two comparisons. Per process: `/proc/<pid>/stat` (its start
//! time) and `/proc/<pid>/cgroup`, read once, then the start time again every [`RECHECK`] (a pid
//! reused by a new process has another start time), or at once after the process connector
//! reported its exit or exec. A process already gone when its first record arrives is attributed
//! through its nearest living ancestor, when the process connector saw its fork; otherwise it
//! keeps its process identity. When new names are published (a pod's log directory appeared, the
//! API watch changed a pod), each container's attribution is joined again on its next record.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use super::cgroup::{self, ContainerId, ContainerRef};
use super::pods_log::PodsLog;
use super::proc_events::ProcLog;
use super::workloads::KubeIndex;
use super::{Attribution, Peer, Published};
use crate::pipeline::Record;

/// How long a cached process is trusted before its start time is read again.
pub const RECHECK: Duration = Duration::from_secs(2);
/// Processes cached; past it the least recently checked eighth goes.
pub const MAX_PIDS: usize = 32_768;
/// Containers cached; past it the cache starts over.
pub const MAX_CONTAINERS: usize = 8_192;
/// Ancestors walked for a process that is gone.
const MAX_ANCESTORS: usize = 8;

struct PidEntry {
    /// From /proc/<pid>/stat (clock ticks since boot); 0 when the process was already gone and
    /// attributed through an ancestor.
    start_time: u64,
    container: Option<ContainerRef>,
    attribution: Option<Arc<Attribution>>,
    /// The names' generation the attribution was joined with.
    joined: u64,
    /// When the start time was last read; None: read it on the next record (an exit or exec).
    checked: Option<Instant>,
}

/// What the resolver did, for the agent's log and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    pub records: u64,
    /// Records attributed to a container.
    pub attributed: u64,
    /// Processes whose /proc entries were read.
    pub processes_read: u64,
    /// Processes gone before their first record, attributed through an ancestor.
    pub through_ancestor: u64,
    /// Processes gone before their first record that no ancestor could attribute.
    pub unresolved: u64,
}

pub struct Resolver {
    proc_root: PathBuf,
    pids: HashMap<u32, PidEntry>,
    containers: HashMap<ContainerId, (u64, Arc<Attribution>)>,
    peers: HashMap<Box<str>, Arc<Attribution>>,
    logs: Arc<Published<PodsLog>>,
    logs_seen: (u64, Arc<PodsLog>),
    kube: Option<Arc<Published<KubeIndex>>>,
    kube_seen: (u64, Arc<KubeIndex>),
    /// Bumped whenever either published index changed: cached attributions are joined again.
    joined: u64,
    procs: Option<Arc<ProcLog>>,
    exits: Vec<u32>,
    now: Instant,
    recheck: Duration,
    stats: ResolverStats,
}

impl Resolver {
    pub fn new(
        proc_root: PathBuf,
        logs: Arc<Published<PodsLog>>,
        kube: Option<Arc<Published<KubeIndex>>>,
        procs: Option<Arc<ProcLog>>,
    ) -> Resolver {
        let logs_seen = logs.load();
        let kube_seen = kube.as_ref().map_or_else(|| (0, Arc::default()), |k| k.load());
        Resolver {
            proc_root,
            pids: HashMap::default(),
            containers: HashMap::default(),
            peers: HashMap::default(),
            logs,
            logs_seen,
            kube,
            kube_seen,
            joined: 0,
            procs,
            exits: Vec::new(),
            now: Instant::now(),
            recheck: RECHECK,
            stats: ResolverStats::default(),
        }
    }

    /// Trusts a cached process this long before reading its start time again ([`RECHECK`]).
    pub fn with_recheck(mut self, recheck: Duration) -> Resolver {
        self.recheck = recheck;
        self
    }

    pub fn stats(&self) -> ResolverStats {
        self.stats
    }

    /// Attributes a batch of records (the pipeline thread, between the pipeline and the sinks).
    pub fn attribute(&mut self, records: &mut [Record]) {
        if records.is_empty() {
            return;
        }
        self.begin_batch();
        for r in records {
            let a = self.for_pid(r.endpoint.pid);
            self.stats.records += 1;
            self.stats.attributed += u64::from(a.is_some());
            r.endpoint.attribution = a;
            if !self.kube_seen.1.is_empty() {
                r.endpoint.peer = self.peer(r.endpoint.remote.ip()).map(Peer);
            }
        }
    }

    /// Once per batch: the clock, newly published names, exits to check again.
    fn begin_batch(&mut self) {
        self.now = Instant::now();
        let mut changed = false;
        if self.logs.generation() != self.logs_seen.0 {
            self.logs_seen = self.logs.load();
            changed = true;
        }
        if let Some(k) = &self.kube {
            if k.generation() != self.kube_seen.0 {
                self.kube_seen = k.load();
                changed = true;
            }
        }
        if changed {
            self.joined += 1;
            self.peers.clear();
        }
        if let Some(p) = &self.procs {
            p.take_exits(&mut self.exits);
            for pid in self.exits.drain(..) {
                if let Some(e) = self.pids.get_mut(&pid) {
                    e.checked = None;
                }
            }
        }
    }

    /// The attribution of a process: cached, or read now.
    pub fn for_pid(&mut self, pid: u32) -> Option<Arc<Attribution>> {
        if let Some(e) = self.pids.get(&pid) {
            let fresh = e.checked.is_some_and(|c| self.now.duration_since(c) < self.recheck);
            if e.joined == self.joined && fresh {
                return e.attribution.clone();
            }
        }
        self.refresh(pid)
    }

    fn refresh(&mut self, pid: u32) -> Option<Arc<Attribution>> {
        let start = read_start_time(&self.proc_root, pid);
        if let Some(e) = self.pids.get_mut(&pid) {
            // The same process (or one gone since, whose records still arrive): still trusted.
            let same = match start {
                Some(st) => st == e.start_time,
                None => true,
            };
            if same {
                e.checked = Some(self.now);
                if e.joined != self.joined {
                    let container = e.container.clone();
                    let a = self.join(container.as_ref());
                    let e = self.pids.get_mut(&pid).expect("present");
                    e.attribution = a;
                    e.joined = self.joined;
                }
                return self.pids[&pid].attribution.clone();
            }
        }
        let (start_time, container) = match start.and_then(|st| Some((st, self.read_container(pid)?))) {
            Some((st, c)) => (st, c),
            // Gone before its first record: its nearest living ancestor's container.
            None => (0, self.through_ancestors(pid)),
        };
        let attribution = self.join(container.as_ref());
        self.insert(
            pid,
            PidEntry {
                start_time,
                container,
                attribution: attribution.clone(),
                joined: self.joined,
                checked: Some(self.now),
            },
        );
        attribution
    }

    /// Reads the container of a living process; None when it is gone (Some(None): in no container).
    fn read_container(&mut self, pid: u32) -> Option<Option<ContainerRef>> {
        let text = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        self.stats.processes_read += 1;
        Some(cgroup::parse_proc_cgroup(&text))
    }

    fn through_ancestors(&mut self, pid: u32) -> Option<ContainerRef> {
        let Some(procs) = self.procs.clone() else {
            self.stats.unresolved += 1;
            return None;
        };
        let mut p = pid;
        for _ in 0..MAX_ANCESTORS {
            let Some(parent) = procs.parent(p) else { break };
            if let Some(e) = self.pids.get(&parent) {
                if e.start_time != 0 || e.container.is_some() {
                    self.stats.through_ancestor += 1;
                    return e.container.clone();
                }
            }
            if read_start_time(&self.proc_root, parent).is_some() {
                if let Some(c) = self.read_container(parent) {
                    self.stats.through_ancestor += 1;
                    return c;
                }
            }
            p = parent;
        }
        self.stats.unresolved += 1;
        None
    }

    /// A container's attribution with the latest names, shared by all its processes; the same
    /// `Arc` as before when nothing about it changed.
    fn join(&mut self, container: Option<&ContainerRef>) -> Option<Arc<Attribution>> {
        let c = container?;
        if let Some((joined, a)) = self.containers.get(&c.id) {
            if *joined == self.joined {
                return Some(a.clone());
            }
        }
        let fresh = Attribution::of_container(c, &self.kube_seen.1, &self.logs_seen.1);
        let a = match self.containers.get(&c.id) {
            Some((_, old)) if **old == fresh => old.clone(),
            _ => Arc::new(fresh),
        };
        if self.containers.len() >= MAX_CONTAINERS {
            self.containers.clear();
        }
        self.containers.insert(c.id.clone(), (self.joined, a.clone()));
        Some(a)
    }

    /// The pod at a peer's address, from the API's index.
    fn peer(&mut self, ip: IpAddr) -> Option<Arc<Attribution>> {
        let pod = self.kube_seen.1.pod_by_ip(ip)?;
        if let Some(a) = self.peers.get(&pod.uid) {
            return Some(a.clone());
        }
        let a = Arc::new(Attribution::of_pod(pod));
        if self.peers.len() >= MAX_CONTAINERS {
            self.peers.clear();
        }
        self.peers.insert(pod.uid.clone(), a.clone());
        Some(a)
    }

    fn insert(&mut self, pid: u32, entry: PidEntry) {
        if self.pids.len() >= MAX_PIDS && !self.pids.contains_key(&pid) {
            let mut ages: Vec<(Option<Instant>, u32)> = self.pids.iter().map(|(p, e)| (e.checked, *p)).collect();
            let n = MAX_PIDS / 8;
            ages.select_nth_unstable(n - 1);
            for (_, p) in &ages[..n] {
                self.pids.remove(p);
            }
        }
        self.pids.insert(pid, entry);
    }

    pub fn cached_processes(&self) -> usize {
        self.pids.len()
    }
}

/// A process's start time (field 22 of /proc/<pid>/stat, after the parenthesized comm, which may
/// hold spaces and parentheses itself).
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; start time is field 22.
    after_comm.split_ascii_whitespace().nth(19)?.parse().ok()
}

fn read_start_time(proc_root: &std::path::Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_start_time(&stat)
}
