//! Throughput of the shared pipeline and of each protocol parser, on the captures kept under
//! tests/fixtures/ (real clients and servers, recorded by tests/records.rs) and on synthetic
//! header-heavy streams built from them.
//!
//!     cargo bench -p collector --bench pipeline
//!
//! Parsers are measured in bytes per second on one core: each fixture's connections are split
//! into the chunks each side sent, and fed to a fresh parser of the detected protocol. The
//! pipeline is measured in events per second: the whole fixture replayed through it.

use std::collections::HashMap;
use std::path::PathBuf;

use collector::capture_file;
use collector::pipeline::{detect, Pipeline};
use collector::sinks::prometheus::MetricStore;
use collector::telemetry::semconv::Converger;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocols::message::{Protocol, Side};
use strata_event::{Direction, Event, EventKind, Role, Transport};

fn fixtures() -> Vec<(String, Vec<Event>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut out = vec![];
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("tests/fixtures").flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "cap")) {
        let mut events = vec![];
        capture_file::replay(&path, |ev, _| events.push(ev)).expect("fixture replays");
        out.push((path.file_stem().unwrap().to_string_lossy().into_owned(), events));
    }
    out
}

/// One connection's chunks, in order, with the side each came from.
struct Stream {
    protocol: Protocol,
    transport: Transport,
    chunks: Vec<(Side, Vec<u8>)>,
}

/// Splits events into per-connection chunk streams and detects each one's protocol the way the
/// pipeline does.
fn streams(events: &[Event]) -> Vec<Stream> {
    type Chunks = Vec<(Direction, Vec<u8>)>;
    let mut by_conn: HashMap<(u32, i32), (Transport, Role, Chunks)> = HashMap::new();
    for ev in events {
        if let EventKind::Data(d) = &ev.kind {
            let e = by_conn.entry((ev.pid, ev.fd)).or_insert((d.conn.transport, d.conn.role, vec![]));
            e.2.push((d.direction, d.payload.to_vec()));
        }
    }
    let mut out = vec![];
    for (_, (transport, role, chunks)) in by_conn {
        let Some((first_dir, first)) = chunks.first() else { continue };
        let request_dir = match role {
            Role::Client => Direction::Egress,
            Role::Server => Direction::Ingress,
            Role::Unknown => *first_dir,
        };
        let side = |d: Direction| if d == request_dir { Side::Request } else { Side::Response };
        let Some(protocol) = detect::detect(transport, side(*first_dir), first) else { continue };
        let chunks = chunks.into_iter().map(|(d, b)| (side(d), b)).collect();
        out.push(Stream { protocol, transport, chunks });
    }
    out
}

fn parse_all(streams: &[&Stream]) -> usize {
    let mut messages = vec![];
    let mut n = 0;
    for s in streams {
        let mut p = detect::parser(s.protocol, s.transport);
        for (side, chunk) in &s.chunks {
            let _ = p.feed(*side, chunk, 0, false, &mut messages);
            n += messages.len();
            messages.clear();
        }
    }
    n
}

fn parsers(c: &mut Criterion) {
    let mut all: Vec<Stream> = vec![];
    for (_, events) in fixtures() {
        all.extend(streams(&events));
    }
    let mut g = c.benchmark_group("parser");
    let mut protocols: Vec<Protocol> = all.iter().map(|s| s.protocol).collect();
    protocols.sort_by_key(|p| p.name());
    protocols.dedup();
    for protocol in protocols {
        // The recorded connections, repeated so one iteration parses at least 1 MiB.
        let mine: Vec<&Stream> = all.iter().filter(|s| s.protocol == protocol).collect();
        let bytes: usize = mine.iter().flat_map(|s| s.chunks.iter()).map(|(_, c)| c.len()).sum();
        let reps = (1 << 20) / bytes.max(1) + 1;
        let work: Vec<&Stream> = std::iter::repeat_n(mine.iter().copied(), reps).flatten().collect();
        g.throughput(Throughput::Bytes((bytes * reps) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(protocol.name()), &work, |b, w| b.iter(|| parse_all(w)));
    }
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    for (name, events) in fixtures() {
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(&name), &events, |b, evs| {
            b.iter(|| {
                let mut p = Pipeline::new(Default::default());
                let mut records = Vec::with_capacity(1024);
                for ev in evs {
                    p.push(ev, &mut records);
                    records.clear();
                }
                p.finish(&mut records);
                records.len()
            })
        });
    }
    g.finish();
}

/// Records per second through convergence and the Prometheus store (what the telemetry thread
/// does for each record, without the OTLP SDK): every fixture's records, with a fresh converger
/// and store per iteration so label learning is included.
fn telemetry(c: &mut Criterion) {
    let mut records = vec![];
    for (_, events) in fixtures() {
        let mut p = Pipeline::new(Default::default());
        for ev in &events {
            p.push(ev, &mut records);
        }
        p.finish(&mut records);
    }
    let reps = 10_000 / records.len().max(1) + 1;
    let work: Vec<_> = std::iter::repeat_n(records.iter(), reps).flatten().collect();
    let mut g = c.benchmark_group("telemetry");
    g.throughput(Throughput::Elements(work.len() as u64));
    g.bench_function("converge_and_store", |b| {
        b.iter(|| {
            let mut converger = Converger::new(100);
            let mut store = MetricStore::default();
            for r in &work {
                if let Some(o) = converger.observe(r) {
                    store.observe(&o);
                }
            }
            store.series()
        })
    });
    g.finish();
}

criterion_group!(benches, parsers, pipeline, telemetry);
criterion_main!(benches);
