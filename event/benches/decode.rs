//! The capture thread's decode step: one batch of data records (the kernel's wire layout, as a
//! reader copies them out of a ring) decoded into events whose payloads are slices of the batch.
//!
//!     cargo bench -p strata-event --bench decode

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_event::batch::RecordBatch;
use strata_event::decode::as_bytes;
use strata_event::wire;

/// A received HTTP response of `payload` bytes, as the probes write it.
fn data_record(payload: usize) -> Vec<u8> {
    let mut ev = wire::DataEvent::default();
    ev.hdr.kind = wire::KIND_DATA;
    ev.hdr.tgid = 42;
    ev.hdr.tid = 42;
    ev.hdr.fd = 7;
    ev.hdr.sock_id = 777;
    ev.hdr.ts_ns = 2_000;
    ev.hdr.comm[..3].copy_from_slice(b"wrk");
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    ev.sock = wire::Socket {
        protocol: wire::IPPROTO_TCP,
        role: 1,
        _pad0: 0,
        local: wire::Endpoint { family: wire::AF_INET, port: 40000, addr },
        remote: wire::Endpoint { family: wire::AF_INET, port: 80, addr },
    };
    ev.enter_ns = 1_000;
    ev.byte_count = payload as u64;
    ev.captured_len = payload as u32;
    ev.syscall = 1;
    ev.direction = 2;
    let mut bytes = as_bytes(&ev);
    bytes.resize(bytes.len() + payload, b'x');
    bytes
}

fn decode_batches(c: &mut Criterion) {
    const RECORDS: usize = 4096;
    let record = data_record(200);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("batch of 4096 data records", |b| {
        b.iter_batched(
            || {
                let mut batch = RecordBatch::with_capacity(RecordBatch::FIRST_BYTES);
                for _ in 0..RECORDS {
                    batch.push(&record);
                }
                (batch, Vec::with_capacity(RECORDS))
            },
            |(batch, mut out)| {
                let mut undecodable = 0;
                batch.decode_counting(&mut out, &mut undecodable);
                assert_eq!((out.len(), undecodable), (RECORDS, 0));
                out
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decode_batches);
criterion_main!(benches);
