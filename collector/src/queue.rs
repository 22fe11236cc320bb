//! The bounded queue between the capture thread and the pipeline: batches of events, at most
//! `limit` events in flight. When the pipeline falls behind, the capture thread drops new batches
//! instead of waiting (the kernel keeps filling its buffer meanwhile); every dropped event is
//! counted and delivered as an `agent_queue` loss event, and the loss events a dropped batch
//! carried are kept. Nothing is lost silently.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use strata_event::{Event, EventKind, LossSource};

/// The capture thread's end.
pub struct BatchSender {
    tx: SyncSender<Vec<Event>>,
    in_flight: Arc<AtomicUsize>,
    limit: usize,
    /// Loss events waiting for a batch to ride on: those of dropped batches, and the count of
    /// the events dropped here, by process.
    pending_losses: Vec<Event>,
    dropped: BTreeMap<u32, u64>,
}

/// The pipeline's end.
pub struct BatchReceiver {
    rx: Receiver<Vec<Event>>,
    in_flight: Arc<AtomicUsize>,
}

/// The pipeline has gone (its thread ended): capture should stop.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

pub fn bounded(limit: usize) -> (BatchSender, BatchReceiver) {
    // The channel bounds batches; `in_flight` bounds events, the unit that costs memory.
    let (tx, rx) = mpsc::sync_channel(1024);
    let in_flight = Arc::new(AtomicUsize::new(0));
    (
        BatchSender {
            tx,
            in_flight: in_flight.clone(),
            limit: limit.max(1),
            pending_losses: vec![],
            dropped: BTreeMap::new(),
        },
        BatchReceiver { rx, in_flight },
    )
}

impl BatchSender {
    /// Hands `batch` over, or drops and counts it when the queue holds `limit` events already.
    /// `now_ns` stamps the loss event of what was dropped.
    pub fn send(&mut self, mut batch: Vec<Event>, now_ns: u64) -> Result<(), Closed> {
        if batch.is_empty() && self.pending_losses.is_empty() && self.dropped.is_empty() {
            return Ok(());
        }
        let fits = self.in_flight.load(Ordering::Relaxed) + batch.len() <= self.limit;
        if !fits {
            self.drop_batch(batch);
            return Ok(());
        }
        self.dropped_as_losses(now_ns);
        batch.append(&mut self.pending_losses);
        let n = batch.len();
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(batch)) => {
                self.in_flight.fetch_sub(n, Ordering::Relaxed);
                self.drop_batch(batch);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(Closed),
        }
    }

    fn drop_batch(&mut self, batch: Vec<Event>) {
        for ev in batch {
            match ev.kind {
                EventKind::Loss(_) => self.pending_losses.push(ev),
                _ => *self.dropped.entry(ev.pid).or_default() += 1,
            }
        }
    }

    /// One `agent_queue` loss event per process whose events were dropped.
    fn dropped_as_losses(&mut self, now_ns: u64) {
        for (pid, n) in std::mem::take(&mut self.dropped) {
            let mut ev = Event::loss(now_ns, LossSource::AgentQueue, n);
            ev.pid = pid;
            self.pending_losses.push(ev);
        }
    }

    /// The last batch: waits for room instead of dropping, and delivers every pending loss.
    pub fn finish(mut self, mut batch: Vec<Event>, now_ns: u64) -> Result<(), Closed> {
        self.dropped_as_losses(now_ns);
        batch.append(&mut self.pending_losses);
        if batch.is_empty() {
            return Ok(());
        }
        self.in_flight.fetch_add(batch.len(), Ordering::Relaxed);
        self.tx.send(batch).map_err(|_| Closed)
    }

    /// Events waiting in the queue now.
    pub fn depth(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl BatchReceiver {
    /// The next batch; `None` once the capture thread finished and the queue is empty.
    pub fn recv(&self) -> Option<Vec<Event>> {
        let batch = self.rx.recv().ok()?;
        self.in_flight.fetch_sub(batch.len(), Ordering::Relaxed);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_event::Comm;

    /// `n` events that are not loss reports.
    fn data_like(n: usize) -> Vec<Event> {
        let state = strata_event::TcpState {
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            old_state: strata_event::TcpStateName(1),
            new_state: strata_event::TcpStateName(2),
        };
        (0..n)
            .map(|i| Event {
                ts_ns: i as u64,
                pid: 1,
                tid: 1,
                comm: Comm::from("x"),
                fd: 3,
                sock_id: 1,
                kind: EventKind::State(state.clone()),
            })
            .collect()
    }

    fn losses(batch: &[Event], source: LossSource) -> u64 {
        batch
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Loss(l) if l.source == source => Some(l.count),
                _ => None,
            })
            .sum()
    }

    #[test]
    fn a_full_queue_drops_counts_and_keeps_loss_events() {
        let (mut tx, rx) = bounded(10);
        tx.send(data_like(8), 0).unwrap();
        // 8 + 5 > 10: dropped, but its loss event is kept.
        let mut second = data_like(5);
        second.push(Event::loss(1, LossSource::KernelData, 3));
        tx.send(second, 1).unwrap();
        assert_eq!(tx.depth(), 8);
        assert_eq!(rx.recv().unwrap().len(), 8);
        tx.send(data_like(2), 2).unwrap();
        let third = rx.recv().unwrap();
        assert_eq!(third.len(), 2 + 2, "two events, the kept kernel loss, the queue's own loss");
        assert_eq!(losses(&third, LossSource::KernelData), 3);
        assert_eq!(losses(&third, LossSource::AgentQueue), 5);
        tx.finish(vec![], 3).unwrap();
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn finish_delivers_what_is_pending_even_when_full() {
        let (mut tx, rx) = bounded(4);
        tx.send(data_like(4), 0).unwrap();
        tx.send(data_like(3), 1).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = vec![];
            while let Some(b) = rx.recv() {
                all.extend(b);
            }
            all
        });
        tx.finish(data_like(1), 2).unwrap();
        let all = reader.join().unwrap();
        assert_eq!(all.len(), 4 + 1 + 1);
        assert_eq!(losses(&all, LossSource::AgentQueue), 3);
    }

    #[test]
    fn a_gone_pipeline_closes_the_queue() {
        let (mut tx, rx) = bounded(4);
        drop(rx);
        assert_eq!(tx.send(data_like(1), 0), Err(Closed));
    }
}
