//! The capture thread's decode step: one batch of data records (the kernel's wire layout, as a
//! reader copies them out of a ring) decoded into events whose payloads are slices of the batch.
//!
//!     cargo bench -p strata-event --bench decode

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_event::batch::RecordBatch;
use strata_event::testkit::data_record;

fn decode_batches(c: &mut Criterion) {
    const RECORDS: usize = 4096;
    let record = data_record(&[b'x'; 200], 200, 0);
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
