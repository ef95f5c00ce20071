//! Cost per operation of the deadline wheel with 1k, 100k and 1M timers pending, next to
//! `async_io::Timer` and a `BinaryHeap`, in one `cargo bench --bench wheel` run.
//!
//! # Invariants
//! 1. Building the pending timers (up to 1M) is never inside a measured interval: it happens
//!    before `bench_with_input`, in `iter_batched` setup, or in the untimed part of
//!    `iter_custom`.
//! 2. Every measured operation leaves the structure with the same number of pending timers it
//!    found (insert is paired with remove/drop; re-arm touches one extra timer), so "pending"
//!    is exactly the count in the benchmark id for the whole run.
//! 3. Pending deadlines never come due while measuring (`insert_fire` rebuilds before the wheel
//!    reaches the first pending slot), so a measured fire never pays another timer's cascade;
//!    the `drain` group measures the cascades on their own.
//!
//! # Implementation
//! Groups are named by operation, functions by implementation, parameters by pending count:
//! `insert_cancel/wheel/100000`. Pending deadlines are the gateway's three socket deadlines,
//! a third each: heartbeat (45 s), token (15 min), idle (30 min), each `base + u` with `u`
//! pseudo-random in `[0, base)` at 1 ms resolution, so they spread over many slots and levels.
//! Wheel time starts at a multiple of 2^24 ms, so no level-3+ slot boundary falls between
//! now and the first heartbeat. Entries carry a 32-byte value, the size of the driver's
//! `TimerEntry` (an `Option<Waker>` and an `Option<Weak<dyn TimerOwner>>`).

use consult_edge::wheel::{Key, Wheel};
use criterion::{
    criterion_group, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// Pending-timer counts: a small box, a busy box, and the design's ceiling.
const PENDING: [usize; 3] = [1_000, 100_000, 1_000_000];

/// The socket deadlines of SPEC §5, in ms: heartbeat read deadline, access token, idle.
const HEARTBEAT_MS: u64 = 45_000;
const TOKEN_MS: u64 = 15 * 60_000;
const IDLE_MS: u64 = 30 * 60_000;
const DEADLINES: [(u64, &str); 3] = [
    (HEARTBEAT_MS, "heartbeat"),
    (TOKEN_MS, "token"),
    (IDLE_MS, "idle"),
];

/// Wheel time at the start of every run: aligned to 2^24 ms (a level-4 slot) so that the first
/// slot holding pending timers starts no earlier than `HEARTBEAT_MS - 4096` (invariant 3).
const START_MS: u64 = 1 << 24;

/// How far `insert_fire` may advance the wheel before it is rebuilt: below the start of the
/// level-2 slot (4096 ms wide) holding the earliest heartbeat, so no pending timer cascades.
const FIRE_WINDOW_MS: u64 = HEARTBEAT_MS - 2 * 4096;

/// A re-armed heartbeat moves by this much per operation: a frame every few ms on a busy socket.
const REARM_STEP_MS: u64 = 3;

/// The value each entry carries: 32 bytes, like the driver's `TimerEntry`.
type Payload = [u64; 4];

/// Criterion settings per kind of group, tuned so the whole run stays under ~5 minutes on a
/// shared 2-core machine.
const SAMPLES: usize = 20;
const WARM_UP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_millis(1500);
/// `insert_fire` rebuilds the pending wheel every `FIRE_WINDOW_MS` fires (~0.1 s at 1M), so it
/// gets a short measurement to bound the untimed rebuilds.
const FIRE_MEASURE: Duration = Duration::from_millis(300);
const FIRE_WARM_UP: Duration = Duration::from_millis(200);

/// Deterministic pseudo-random numbers (SplitMix64), so every run arms the same deadlines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The `i`-th pending deadline, in ms after the start, with its name.
fn pending_offset(i: usize, rng: &mut Rng) -> (u64, &'static str) {
    let (base, name) = DEADLINES[i % DEADLINES.len()];
    (base + rng.next() % base, name)
}

/// A wheel at `START_MS` with `n` timers pending (the capacity leaves room for the measured
/// timers so no benchmark pays for slab growth).
fn pending_wheel(n: usize) -> Wheel<Payload> {
    let mut wheel = Wheel::with_capacity(START_MS, n + 16);
    let mut rng = Rng(n as u64);
    for i in 0..n {
        let (offset, name) = pending_offset(i, &mut rng);
        wheel.insert(START_MS + offset, name, [i as u64; 4]);
    }
    wheel
}

/// `n` registered `async_io` timers at the same offsets, kept alive by the returned vector.
fn pending_async_io(n: usize, start: Instant) -> Vec<async_io::Timer> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut rng = Rng(n as u64);
    (0..n)
        .map(|i| {
            let (offset, _) = pending_offset(i, &mut rng);
            let mut timer = async_io::Timer::at(start + Duration::from_millis(offset));
            assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
            timer
        })
        .collect()
}

/// A min-heap of `(deadline, id)` with the same `n` pending deadlines.
fn pending_heap(n: usize) -> BinaryHeap<Reverse<(u64, u32)>> {
    let mut heap = BinaryHeap::with_capacity(n + n / 4 + 16);
    let mut rng = Rng(n as u64);
    for i in 0..n {
        let (offset, _) = pending_offset(i, &mut rng);
        heap.push(Reverse((START_MS + offset, i as u32)));
    }
    heap
}

/// The deadline of the `i`-th measured heartbeat: 45 s out, spread over 45 s of slots.
fn measured_deadline(i: u64) -> u64 {
    START_MS + HEARTBEAT_MS + (i.wrapping_mul(7919) % HEARTBEAT_MS)
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASURE)
        .throughput(Throughput::Elements(1));
}

/// 1. Insert a heartbeat then remove it: the cost of a timer that never fires.
fn insert_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_cancel");
    configure(&mut group);
    for n in PENDING {
        let mut wheel = pending_wheel(n);
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let key = wheel.insert(measured_deadline(i), "heartbeat", [i; 4]);
                black_box(wheel.remove(black_box(key)))
            })
        });
        assert_eq!(wheel.len(), n, "pending count drifted");
        drop(wheel);

        // async_io: create, poll once to register with the reactor, drop to deregister.
        let start = Instant::now();
        let pending = pending_async_io(n, start);
        let mut cx = Context::from_waker(Waker::noop());
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::new("async_io", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let offset = measured_deadline(i) - START_MS;
                let mut timer = async_io::Timer::at(start + Duration::from_millis(offset));
                black_box(Pin::new(&mut timer).poll(&mut cx).is_pending());
                drop(timer);
            })
        });
        drop(pending);

        // BinaryHeap: push + lazy cancel (a tombstone flag by id). The tombstone's later pop
        // (O(log n), when it reaches the top) and the untimed purge are not counted.
        let mut heap = pending_heap(n);
        let chunk = (n / 4).max(4096) as u64;
        let mut tombstone = vec![false; n + chunk as usize];
        group.bench_with_input(BenchmarkId::new("binary_heap", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let batch = chunk.min(iters - done);
                    let t0 = Instant::now();
                    for j in 0..batch {
                        let id = n as u32 + j as u32;
                        heap.push(Reverse((measured_deadline(done + j), id)));
                        if let Some(flag) = tombstone.get_mut(id as usize) {
                            *flag = true;
                        }
                        black_box(&heap);
                    }
                    measured += t0.elapsed();
                    heap.retain(|Reverse((_, id))| {
                        !tombstone.get(*id as usize).copied().unwrap_or(false)
                    });
                    tombstone.iter_mut().for_each(|f| *f = false);
                    done += batch;
                }
                measured
            })
        });
        assert_eq!(heap.len(), n, "pending count drifted");
    }
    group.finish();
}

/// 2. Insert a timer 1 ms ahead, advance `poll` past it and drain what fired, remove it.
fn insert_fire(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_fire");
    configure(&mut group);
    group
        .warm_up_time(FIRE_WARM_UP)
        .measurement_time(FIRE_MEASURE);
    for n in PENDING {
        let mut wheel = pending_wheel(n);
        group.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let room = (START_MS + FIRE_WINDOW_MS).saturating_sub(wheel.elapsed());
                    if room == 0 {
                        // Untimed: pending timers would start cascading (invariant 3).
                        wheel = pending_wheel(n);
                        continue;
                    }
                    let batch = room.min(iters - done);
                    let mut fired = 0u64;
                    let t0 = Instant::now();
                    for _ in 0..batch {
                        let now = wheel.elapsed() + 1;
                        wheel.insert(now, "heartbeat", [now; 4]);
                        while let Some(key) = wheel.poll(now) {
                            fired += 1;
                            black_box(wheel.remove(key));
                        }
                    }
                    measured += t0.elapsed();
                    assert_eq!(fired, batch, "a pending timer fired during the window");
                    done += batch;
                }
                measured
            })
        });
        drop(wheel);

        // BinaryHeap: push a deadline earlier than every pending one, then pop it.
        let mut heap = pending_heap(n);
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::new("binary_heap", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                let now = START_MS + 1 + i % FIRE_WINDOW_MS;
                heap.push(Reverse((now, u32::MAX)));
                black_box(heap.pop())
            })
        });
        assert_eq!(heap.len(), n, "pending count drifted");
    }
    group.finish();
}

/// 3. Re-arm one heartbeat later by a few ms (lazy path), and earlier (relinking path).
fn rearm(c: &mut Criterion) {
    let mut group = c.benchmark_group("rearm_later");
    configure(&mut group);
    for n in PENDING {
        let mut wheel = pending_wheel(n);
        let mut deadline = START_MS + HEARTBEAT_MS;
        let key = wheel.insert(deadline, "heartbeat", [0; 4]);
        group.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, _| {
            b.iter(|| {
                deadline += REARM_STEP_MS;
                black_box(wheel.reset(black_box(key), deadline))
            })
        });
        drop(wheel);

        // async_io: `set_at` deregisters and registers again (the waker is kept).
        let start = Instant::now();
        let pending = pending_async_io(n, start);
        let mut cx = Context::from_waker(Waker::noop());
        let mut at = start + Duration::from_millis(HEARTBEAT_MS);
        let mut timer = async_io::Timer::at(at);
        assert!(Pin::new(&mut timer).poll(&mut cx).is_pending());
        group.bench_with_input(BenchmarkId::new("async_io", n), &n, |b, _| {
            b.iter(|| {
                at += Duration::from_millis(REARM_STEP_MS);
                timer.set_at(black_box(at));
            })
        });
        drop(timer);
        drop(pending);
    }
    group.finish();

    let mut group = c.benchmark_group("rearm_earlier");
    configure(&mut group);
    for n in PENDING {
        let mut wheel = pending_wheel(n);
        // Walks from 30 min down to 45 s, 3 ms per step, so every step is earlier than the
        // deadline the entry is filed under and relinks it (often into another slot or level).
        // At the bottom it is disarmed and re-armed at the top (once per ~585k operations):
        // a plain later `reset` would be lazy and leave it filed low, making every later step
        // lazy too.
        let top = START_MS + IDLE_MS;
        let bottom = START_MS + HEARTBEAT_MS;
        let mut deadline = top;
        let key: Key = wheel.insert(deadline, "idle", [0; 4]);
        group.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, _| {
            b.iter(|| {
                deadline -= REARM_STEP_MS;
                if deadline < bottom {
                    deadline = top;
                    wheel.cancel(key);
                }
                black_box(wheel.reset(black_box(key), deadline))
            })
        });
    }
    group.finish();
}

/// Firing everything pending, cascades included: the amortised cost `insert_fire` leaves out.
fn drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("drain");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASURE);
    for n in PENDING {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("wheel", n), &n, |b, &n| {
            b.iter_batched(
                || pending_wheel(n),
                |mut wheel| {
                    let mut fired = 0usize;
                    while let Some(now) = wheel.next_deadline() {
                        while let Some(key) = wheel.poll(now) {
                            fired += 1;
                            black_box(key);
                        }
                        if fired == n {
                            break;
                        }
                    }
                    assert_eq!(fired, n);
                    wheel
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("binary_heap", n), &n, |b, &n| {
            b.iter_batched(
                || pending_heap(n),
                |mut heap| {
                    while let Some(top) = heap.pop() {
                        black_box(top);
                    }
                    heap
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Environment variable that switches the binary to instruction-count mode: its value is
/// `<op> <pending> <ops>`; the binary then runs `ops` operations inside one `#[inline(never)]`
/// function, for `valgrind --tool=callgrind --toggle-collect=<that function>`, which counts
/// instructions exactly where wall time on a shared machine is noisy.
const COUNT_ENV: &str = "WHEEL_BENCH_COUNT";

#[inline(never)]
fn count_insert_cancel(wheel: &mut Wheel<Payload>, ops: u64) {
    for i in 0..ops {
        let key = wheel.insert(measured_deadline(i), "heartbeat", [i; 4]);
        black_box(wheel.remove(black_box(key)));
    }
}

#[inline(never)]
fn count_insert_fire(wheel: &mut Wheel<Payload>, ops: u64) {
    for _ in 0..ops {
        let now = wheel.elapsed() + 1;
        wheel.insert(now, "heartbeat", [now; 4]);
        while let Some(key) = wheel.poll(now) {
            black_box(wheel.remove(key));
        }
    }
}

#[inline(never)]
fn count_rearm_later(wheel: &mut Wheel<Payload>, key: Key, ops: u64) {
    for i in 0..ops {
        black_box(wheel.reset(black_box(key), START_MS + HEARTBEAT_MS + i * REARM_STEP_MS));
    }
}

#[inline(never)]
fn count_rearm_earlier(wheel: &mut Wheel<Payload>, key: Key, ops: u64) {
    for i in 0..ops {
        black_box(wheel.reset(black_box(key), START_MS + IDLE_MS - i * REARM_STEP_MS));
    }
}

/// Fires every pending timer (cascades included); `ops` is not used: the count is `pending`.
#[inline(never)]
fn count_drain(wheel: &mut Wheel<Payload>) -> usize {
    let mut fired = 0usize;
    while let Some(now) = wheel.next_deadline() {
        while let Some(key) = wheel.poll(now) {
            fired += 1;
            black_box(key);
        }
        if fired == wheel.len() {
            break;
        }
    }
    fired
}

#[inline(never)]
fn count_async_io_insert_cancel(start: Instant, ops: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..ops {
        let offset = measured_deadline(i) - START_MS;
        let mut timer = async_io::Timer::at(start + Duration::from_millis(offset));
        black_box(Pin::new(&mut timer).poll(&mut cx).is_pending());
    }
}

/// Runs one counted operation (see [`COUNT_ENV`]); `None` if the spec does not parse.
fn count_mode(spec: &str) -> Option<()> {
    let mut words = spec.split_whitespace();
    let op = words.next()?;
    let n: usize = words.next()?.parse().ok()?;
    let ops: u64 = words.next()?.parse().ok()?;
    // Keeps the re-armed deadlines inside the ranges the wall-clock groups use.
    let ops = ops
        .min((IDLE_MS - HEARTBEAT_MS) / REARM_STEP_MS)
        .min(FIRE_WINDOW_MS);
    let mut wheel = pending_wheel(n);
    match op {
        "insert_cancel" => count_insert_cancel(&mut wheel, ops),
        "insert_fire" => count_insert_fire(&mut wheel, ops),
        "rearm_later" => {
            let key = wheel.insert(START_MS + HEARTBEAT_MS, "heartbeat", [0; 4]);
            count_rearm_later(&mut wheel, key, ops);
        }
        "rearm_earlier" => {
            let key = wheel.insert(START_MS + IDLE_MS + 1, "idle", [0; 4]);
            count_rearm_earlier(&mut wheel, key, ops);
        }
        "drain" => {
            let fired = count_drain(&mut wheel);
            println!("op=drain pending={n} fired={fired}");
            return Some(());
        }
        "async_io_insert_cancel" => {
            let start = Instant::now();
            let pending = pending_async_io(n, start);
            count_async_io_insert_cancel(start, ops);
            drop(pending);
        }
        _ => return None,
    }
    println!("op={op} pending={n} ops={ops} wheel_len={}", wheel.len());
    Some(())
}

criterion_group!(benches, insert_cancel, insert_fire, rearm, drain);

fn main() {
    if let Ok(spec) = std::env::var(COUNT_ENV) {
        if count_mode(&spec).is_none() {
            eprintln!("{COUNT_ENV}: expected '<op> <pending> <ops>', got '{spec}'");
            std::process::exit(2);
        }
        return;
    }
    // What `criterion_main!` expands to.
    benches();
    Criterion::default().configure_from_args().final_summary();
}
