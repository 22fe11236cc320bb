//! Connection tracking: one entry per (pid, fd, generation), with its endpoints, role and protocol
//! session. Bounded in count and in memory; every eviction is counted.

use foldhash::HashMap;

use strata_event::Connection;

use super::session::Session;

/// Limits on what connection tracking holds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Parser buffers and waiting requests, summed over all connections.
    pub max_bytes: usize,
    /// A connection with no event for this long (in event time) is dropped.
    pub idle_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 65_536, max_bytes: 256 << 20, idle_ns: 300_000_000_000 }
    }
}

/// Which connection an event belongs to: a process's fd, and how many times that fd number has
/// named a new connection (fds are reused as soon as they are closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKey {
    pub pid: u32,
    pub fd: i32,
}

pub struct Tracked {
    pub pid: u32,
    pub generation: u32,
    /// The kernel socket behind the fd (0 when unknown): a change means the fd was reused.
    pub sock_id: u64,
    pub conn: Connection,
    pub comm: strata_event::Comm,
    pub last_seen_ns: u64,
    pub session: Session,
}

/// Why connections left the table, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Evictions {
    pub closed: u64,
    pub idle: u64,
    /// The table was full (max_connections).
    pub table_full: u64,
    /// Memory was over max_bytes: the connections holding most were dropped.
    pub memory: u64,
    /// An fd reused without a close seen (a new socket behind the same number).
    pub reused: u64,
}

#[derive(Default)]
pub struct Conntrack {
    pub limits: Limits,
    table: HashMap<ConnKey, Tracked>,
    /// (pid, socket id) to the fd it was first seen on: a socket dup'ed onto other fds (inetd-style
    /// servers read fd 0 and write fd 1) is one connection.
    by_socket: HashMap<(u32, u64), ConnKey>,
    next_generation: u32,
    pub evictions: Evictions,
}

impl Conntrack {
    pub fn new(limits: Limits) -> Conntrack {
        Conntrack { limits, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The connection an event of (pid, fd) on socket `sock_id` belongs to: the fd's own, or the
    /// one the same socket was first seen on under another fd of that process.
    pub fn resolve(&self, pid: u32, fd: i32, sock_id: u64) -> ConnKey {
        let own = ConnKey { pid, fd };
        if self.table.contains_key(&own) || sock_id == 0 {
            return own;
        }
        match self.by_socket.get(&(pid, sock_id)) {
            Some(k) if self.table.get(k).is_some_and(|t| t.sock_id == sock_id) => *k,
            _ => own,
        }
    }

    pub fn get_mut(&mut self, key: ConnKey) -> Option<&mut Tracked> {
        self.table.get_mut(&key)
    }

    /// Starts tracking a connection at `key`, replacing (and returning) whatever was there.
    /// May evict others to stay within the connection limit (returned too).
    pub fn insert(
        &mut self,
        key: ConnKey,
        sock_id: u64,
        conn: Connection,
        comm: &strata_event::Comm,
        now: u64,
    ) -> Vec<Tracked> {
        let mut gone = vec![];
        if let Some(old) = self.take(key) {
            self.evictions.reused += 1;
            gone.push(old);
        }
        if self.table.len() >= self.limits.max_connections {
            // Drop the least recently seen eighth at once: one scan pays for many inserts.
            let n = (self.limits.max_connections / 8).max(1);
            self.evictions.table_full += n as u64;
            gone.extend(self.evict_oldest(n));
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        let tracked = Tracked {
            pid: key.pid,
            generation: self.next_generation,
            sock_id,
            conn,
            comm: *comm,
            last_seen_ns: now,
            session: Session::new(),
        };
        self.table.insert(key, tracked);
        if sock_id != 0 {
            self.by_socket.insert((key.pid, sock_id), key);
        }
        gone
    }

    /// Removes a connection and the socket alias that points to it.
    fn take(&mut self, key: ConnKey) -> Option<Tracked> {
        let t = self.table.remove(&key)?;
        if self.by_socket.get(&(key.pid, t.sock_id)) == Some(&key) {
            self.by_socket.remove(&(key.pid, t.sock_id));
        }
        Some(t)
    }

    pub fn remove(&mut self, key: ConnKey) -> Option<Tracked> {
        let t = self.take(key)?;
        self.evictions.closed += 1;
        Some(t)
    }

    /// Drops idle connections and, when over the memory limit, the ones holding most.
    pub fn sweep(&mut self, now: u64) -> Vec<Tracked> {
        let idle_before = now.saturating_sub(self.limits.idle_ns);
        let idle: Vec<ConnKey> =
            self.table.iter().filter(|(_, t)| t.last_seen_ns < idle_before).map(|(k, _)| *k).collect();
        self.evictions.idle += idle.len() as u64;
        let mut gone: Vec<Tracked> = idle.into_iter().filter_map(|k| self.take(k)).collect();
        let mut total: usize = self.table.values().map(|t| t.session.footprint()).sum();
        if total > self.limits.max_bytes {
            let mut by_size: Vec<(usize, ConnKey)> =
                self.table.iter().map(|(k, t)| (t.session.footprint(), *k)).collect();
            by_size.sort_unstable_by_key(|&(size, _)| std::cmp::Reverse(size));
            for (size, k) in by_size {
                if total <= self.limits.max_bytes {
                    break;
                }
                total -= size;
                self.evictions.memory += 1;
                gone.extend(self.take(k));
            }
        }
        gone
    }

    /// Everything still tracked (the source ended).
    pub fn drain(&mut self) -> Vec<Tracked> {
        self.by_socket.clear();
        self.table.drain().map(|(_, t)| t).collect()
    }

    pub fn footprint(&self) -> usize {
        self.table.values().map(|t| t.session.footprint()).sum()
    }

    pub fn mark_all_gap(&mut self) {
        for t in self.table.values_mut() {
            t.session.mark_gap();
        }
    }

    fn evict_oldest(&mut self, n: usize) -> Vec<Tracked> {
        let mut ages: Vec<(u64, ConnKey)> = self.table.iter().map(|(k, t)| (t.last_seen_ns, *k)).collect();
        let n = n.min(ages.len());
        ages.select_nth_unstable(n.saturating_sub(1));
        ages[..n].iter().filter_map(|(_, k)| self.take(*k)).collect()
    }
}
