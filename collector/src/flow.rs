//! What happens to each batch of events between the queue and the sinks: either the events go
//! to event sinks as they are (`--raw-events`, `strata record`), or through the pipeline, whose
//! records go to record sinks (lines, telemetry). Runs on the pipeline thread (or the replay's).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use strata_event::{Event, EventKind};

use crate::metadata::Resolver;
use crate::pipeline::conntrack::Limits;
use crate::pipeline::{Pipeline, Record, Stats};
use crate::telemetry::agent_stats::AgentStats;

/// A consumer of normalized events.
pub trait EventSink: Send {
    /// Writes a batch and makes it visible (flushes).
    fn write_batch(&mut self, events: &[Event]) -> std::io::Result<()>;
    /// The source ended: write whatever is still held.
    fn finish(&mut self) -> std::io::Result<()>;
}

/// A consumer of request/response records.
pub trait RecordSink: Send {
    fn write_batch(&mut self, records: &[Record]) -> std::io::Result<()>;
    /// The same, for the last sink of a flow, which may keep the records rather than copy them
    /// (telemetry hands them to its own thread).
    fn take_batch(&mut self, records: Vec<Record>) -> std::io::Result<()> {
        self.write_batch(&records)
    }
    fn finish(&mut self) -> std::io::Result<()>;
}

pub enum Flow {
    Events(Vec<Box<dyn EventSink>>),
    Records(Box<RecordFlow>),
}

pub struct RecordFlow {
    pipeline: Pipeline,
    records: Vec<Record>,
    sinks: Vec<Box<dyn RecordSink>>,
    /// The agent's own counters, when it exports telemetry.
    stats: Option<Arc<AgentStats>>,
    /// Attributes records to their process's container, pod and workload (live capture only).
    metadata: Option<Resolver>,
}

impl Flow {
    pub fn events(sinks: Vec<Box<dyn EventSink>>) -> Flow {
        Flow::Events(sinks)
    }

    pub fn records(limits: Limits, sinks: Vec<Box<dyn RecordSink>>, stats: Option<Arc<AgentStats>>) -> Flow {
        Flow::Records(Box::new(RecordFlow {
            pipeline: Pipeline::new(limits),
            records: vec![],
            sinks,
            stats,
            metadata: None,
        }))
    }

    /// Attributes each record to its container, pod and workload before the sinks see it
    /// (records mode; events pass as they are).
    pub fn with_metadata(mut self, resolver: Option<Resolver>) -> Flow {
        if let Flow::Records(f) = &mut self {
            f.metadata = resolver;
        }
        self
    }

    /// One batch through: every sink sees it before the next batch starts.
    pub fn consume(&mut self, batch: &[Event]) -> std::io::Result<()> {
        match self {
            Flow::Events(sinks) => {
                for s in sinks {
                    s.write_batch(batch)?;
                }
                Ok(())
            }
            Flow::Records(f) => f.consume(batch),
        }
    }

    /// The source ended: records still held (requests without responses) come out, sinks finish.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Flow::Events(sinks) => {
                for s in sinks {
                    s.finish()?;
                }
                Ok(())
            }
            Flow::Records(f) => f.finish(),
        }
    }

    /// The pipeline's counters (records mode).
    pub fn stats(&self) -> Option<Stats> {
        match self {
            Flow::Events(_) => None,
            Flow::Records(f) => Some(f.pipeline.stats()),
        }
    }
}

impl RecordFlow {
    fn consume(&mut self, batch: &[Event]) -> std::io::Result<()> {
        for ev in batch {
            if let (Some(stats), EventKind::Loss(l)) = (&self.stats, &ev.kind) {
                stats.add_lost(l.source, l.count);
            }
            self.pipeline.push(ev, &mut self.records);
        }
        if let Some(stats) = &self.stats {
            stats.events.fetch_add(batch.len() as u64, Relaxed);
            stats.parse_errors.store(self.pipeline.parse_errors(), Relaxed);
        }
        self.write_records()
    }

    fn write_records(&mut self) -> std::io::Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        if let Some(m) = &mut self.metadata {
            m.attribute(&mut self.records);
        }
        let Some((last, others)) = self.sinks.split_last_mut() else {
            self.records.clear();
            return Ok(());
        };
        let written = others.iter_mut().try_for_each(|s| s.write_batch(&self.records));
        let capacity = self.records.len();
        let records = std::mem::replace(&mut self.records, Vec::with_capacity(capacity));
        written.and(last.take_batch(records))
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.pipeline.finish(&mut self.records);
        let written = self.write_records();
        if let Some(stats) = &self.stats {
            stats.parse_errors.store(self.pipeline.parse_errors(), Relaxed);
        }
        let finished = self.sinks.iter_mut().try_for_each(|s| s.finish());
        let s = self.pipeline.stats();
        log::info!(
            "pipeline: {} events, {} records ({} unanswered, {} orphan responses), {} parse errors, {} lost events reported",
            s.events,
            s.records,
            s.unanswered,
            s.orphans,
            s.parse_errors,
            s.lost_events
        );
        if let Some(m) = &self.metadata {
            let a = m.stats();
            log::info!(
                "attribution: {} of {} records to a container; {} /proc reads; {} processes already gone resolved \
                 through their parent, {} not",
                a.attributed,
                a.records,
                a.processes_read,
                a.through_ancestor,
                a.unresolved
            );
        }
        written.and(finished)
    }
}
