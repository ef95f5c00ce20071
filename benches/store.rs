//! Durable append cost, on a real store in a temp dir on this machine's disk: one message
//! alone (a commit of one: write + fdatasync), and 64 appended concurrently from 64
//! consultations (one group commit), which is the shape of the relay under load. Also the
//! layout that was replaced: redb with each message keyed by (consultation, seq), committed the
//! same way, to keep the reason for the message log measurable (`src/store/msglog.rs`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use consult_edge::store::{NewMessage, Store};
use criterion::{criterion_group, criterion_main, Criterion};
use redb::{Database, TableDefinition};

const T0: u64 = 1_700_000_000_000;
/// Consultations a group-commit batch spreads over: one message each, as at 20k msgs/s over
/// 500 consultations.
const BATCH: usize = 64;
const BODY: &str = "The patient reports a mild headache since this morning, no fever.";

fn message(consultation: &str, n: u64) -> NewMessage {
    NewMessage {
        consultation: consultation.to_owned(),
        from: "p-00042".to_owned(),
        role: "patient".to_owned(),
        body: BODY.to_owned(),
        client_id: format!("c-{n}"),
        ts_ms: T0 + n,
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    }
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let ids: Vec<String> = smol::block_on(async {
        let mut ids = Vec::new();
        for i in 0..BATCH {
            let c = store
                .create_consultation(&format!("p{i}"), "d1", T0)
                .await
                .expect("create");
            ids.push(c.id);
        }
        ids
    });
    let mut n = 0u64;
    let mut group = c.benchmark_group("store_append");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("one_message_one_commit", |b| {
        b.iter(|| {
            n += 1;
            let first = ids.first().map_or("", String::as_str);
            black_box(smol::block_on(store.append_message(message(first, n))).expect("append"))
        })
    });
    group.bench_function("batch_of_64_over_64_consultations_per_message", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                smol::block_on(async {
                    let mut pending = Vec::with_capacity(BATCH);
                    for id in &ids {
                        n += 1;
                        pending.push(store.begin_append(message(id, n)).await.expect("queue"));
                    }
                    for p in pending {
                        black_box(p.wait().await.expect("append"));
                    }
                });
            }
            started.elapsed() / BATCH as u32
        })
    });
    group.finish();
    drop(store);
    bench_redb_keyed(c, &ids);
}

/// The replaced layout: one redb insert per message keyed by (consultation, seq), one commit
/// (redb's default durability: fsync) per batch of [`BATCH`] consultations.
fn bench_redb_keyed(c: &mut Criterion, ids: &[String]) {
    const TABLE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
    let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let db = Database::create(dir.path().join("keyed.redb")).expect("redb");
    let value = vec![b'x'; 220];
    let mut seq = 0u64;
    let mut group = c.benchmark_group("redb_keyed");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("batch_of_64_over_64_consultations_per_message", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                seq += 1;
                let txn = db.begin_write().expect("begin");
                {
                    let mut table = txn.open_table(TABLE).expect("table");
                    for id in ids {
                        table
                            .insert((id.as_str(), seq), value.as_slice())
                            .expect("insert");
                    }
                }
                txn.commit().expect("commit");
            }
            started.elapsed() / BATCH as u32
        })
    });
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
