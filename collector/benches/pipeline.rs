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

use std::sync::Arc;

use collector::capture_file;
use collector::metadata::{pods_log, Published, Resolver};
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

/// What attribution costs per record (docs/records.md): every fixture's records, their processes
/// put in containers of one pod on a made-up /proc and kubelet log layout.
///
/// - `resolve_cached`: the pipeline thread's per-record cost once each process is known (a hash
///   lookup and two comparisons; the start time read again every 2 s is not in it);
/// - `resolve_first`: a process seen for the first time: its /proc/<pid>/stat and cgroup read and
///   parsed, joined with the names (per process, not per record);
/// - `converge_and_store_attributed`: the telemetry bench's work on the same records attributed
///   (six more labels each), against `telemetry/converge_and_store`.
fn attribution(c: &mut Criterion) {
    let mut records = vec![];
    for (_, events) in fixtures() {
        let mut p = Pipeline::new(Default::default());
        for ev in &events {
            p.push(ev, &mut records);
        }
        p.finish(&mut records);
    }
    let tmp = tempfile::tempdir().unwrap();
    let uid = "5d6c2a2e-8a6b-4f5e-9a1b-2c3d4e5f6a7b";
    let mut pids: Vec<u32> = records.iter().map(|r| r.endpoint.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    for (i, pid) in pids.iter().enumerate() {
        let id = format!("{i:064x}");
        let dir = tmp.path().join("proc").join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!("{pid} (app) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0\n", 1000 + i);
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("cgroup"), format!("0::/kubepods/burstable/pod{uid}/{id}\n")).unwrap();
        let logs = tmp.path().join("logs/pods").join(format!("shop_web-1_{uid}")).join(format!("c{i}"));
        std::fs::create_dir_all(&logs).unwrap();
    }
    let proc_root = tmp.path().join("proc");
    let index =
        || Arc::new(Published::new(pods_log::scan(&tmp.path().join("logs/pods"), &tmp.path().join("logs/containers"))));
    let reps = 10_000 / records.len().max(1) + 1;
    let mut work: Vec<_> = std::iter::repeat_n(records.iter().cloned(), reps).flatten().collect();
    let mut g = c.benchmark_group("attribution");
    g.throughput(Throughput::Elements(work.len() as u64));
    let mut resolver = Resolver::new(proc_root.clone(), index(), None, None);
    resolver.attribute(&mut work);
    assert_eq!(resolver.stats().attributed, work.len() as u64, "every record attributed");
    g.bench_function("resolve_cached", |b| b.iter(|| resolver.attribute(&mut work)));
    g.throughput(Throughput::Elements(1));
    let one = pids[0];
    g.bench_function("resolve_first", |b| {
        b.iter_batched(
            || {
                (
                    Resolver::new(proc_root.clone(), index(), None, None),
                    vec![records.iter().find(|r| r.endpoint.pid == one).unwrap().clone()],
                )
            },
            |(mut r, mut batch)| r.attribute(&mut batch),
            criterion::BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(work.len() as u64));
    g.bench_function("converge_and_store_attributed", |b| {
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

criterion_group!(benches, parsers, pipeline, telemetry, attribution);
criterion_main!(benches);
