//! The load generator (`consult-edge loadgen`, SPEC §8): paired patient/doctor sockets, a paced
//! message load, and one JSON report of what the gateway did with it.
//!
//! # Invariants
//!
//! - A client only: it speaks HTTP and the WebSocket protocol to a loopback address and uses
//!   nothing of the server but the key handling that mints tokens (`auth`).
//! - Bounded: at most [`args::MAX_CONNECTIONS`] sockets and [`args::MAX_DURATION_S`] of sending;
//!   every wait has a deadline (open, HTTP, drain, idle, teardown).
//! - Exactly one JSON line on stdout per run that got past argument parsing; progress lines go
//!   to stderr, and only when it is a terminal and `--json-only` is off.
//! - Exit codes: 0 all to plan, 1 sockets failed, messages lost or errors seen, 2 usage.
//!
//! # Implementation
//!
//! One `smol::LocalExecutor` on this thread. Phases, in order: mint tokens; create one
//! consultation per pair over HTTP (or `c<k>` in `--peer-mode`); open sockets in batches of
//! `--ramp-batch`, each batch up to `joined` before the next; with `--pid`, idle
//! [`RSS_IDLE`] and sample the gateway's RSS; pace the sends; drain up to [`DRAIN`]; report;
//! close every socket with 1000 (bounded by [`CLOSE_GRACE`]).
//!
//! - `args`: command line and limits; `mint`: tokens; `http_client`: consultations;
//! - `socket`: one socket's open and read loop; `pacer`: the send and ping schedules;
//! - `stats`: the shared counters; `report`: JSON, progress line, RSS.

mod args;
mod http_client;
mod mint;
mod pacer;
mod report;
mod socket;
mod stats;

use std::io::IsTerminal;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smol::{LocalExecutor, Task, Timer};

pub use args::{parse, Args, UsageError, MAX_CONNECTIONS, MAX_DURATION_S, USAGE};
pub use report::Report;

use mint::User;
use pacer::{Lane, Schedule};
use report::{Rss, Timings};
use socket::{Out, Target};
use stats::{Phase, Run};

/// How long relayed messages may still arrive after the last send (the brief's drain period).
pub const DRAIN: Duration = Duration::from_secs(2);

/// Idle time after every socket joined before the "idle" RSS sample: lets the gateway finish
/// its post-upgrade allocations so the sample shows the steady cost of a socket.
pub const RSS_IDLE: Duration = Duration::from_secs(5);

/// Longest wait for the server to echo our closes at the end; the report is already printed.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How often the drain checks whether everything arrived.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// File descriptors needed beyond one per socket: stdio, the executor's poller, the HTTP
/// client's connections, with headroom.
const FD_RESERVE: u64 = 64;

/// Exit code: everything went to plan.
const EXIT_OK: i32 = 0;
/// Exit code: sockets failed, messages were lost or errors were seen.
const EXIT_FAILED: i32 = 1;
/// Exit code: the command line or the key configuration is unusable.
const EXIT_USAGE: i32 = 2;

/// `consult-edge loadgen ARGS`: runs the load and returns the process exit code.
pub fn run_cli(raw: &[String]) -> i32 {
    let args = match parse(raw) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("consult-edge loadgen: {error}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    if args.json_only {
        // Only the JSON line: the gateway's key loader and our own progress logs stay quiet.
        log::set_max_level(log::LevelFilter::Error);
    }
    match prepare(&args) {
        Ok(users) => {
            let report = run(&args, users);
            println!("{}", report.to_json_line());
            if report.to_plan() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(error) => {
            eprintln!("consult-edge loadgen: {error}");
            EXIT_USAGE
        }
    }
}

/// Checks what can be checked before opening anything, and mints the tokens.
fn prepare(args: &Args) -> Result<Vec<User>, String> {
    let limit = raise_fd_limit();
    let needed = args.connections as u64 + FD_RESERVE;
    if limit < needed {
        return Err(format!(
            "{} connections need {needed} file descriptors but the hard limit is {limit}; \
             lower --connections or raise `ulimit -Hn`",
            args.connections
        ));
    }
    if let Some(pid) = args.pid {
        if report::rss_kib(pid).is_none() {
            return Err(format!("--pid {pid}: cannot read /proc/{pid}/status"));
        }
    }
    let per_socket = args.rate as f64 / args.connections as f64;
    if per_socket > 50.0 && !args.json_only {
        eprintln!(
            "consult-edge loadgen: warning: {per_socket:.1} msgs/s per socket is above the \
             gateway's 50/s per-socket limit (SPEC §5): expect rate_limited errors"
        );
    }
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    mint::mint_users(
        &args.keys,
        &args.data_dir,
        args.connections,
        args.duration_s,
        now_unix,
    )
    .map_err(|e| e.to_string())
}

/// Raises the soft open-files limit to the hard one; returns the limit now in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        return limit.maximum.unwrap_or(u64::MAX);
    }
    limit.current.unwrap_or(u64::MAX)
}

/// Runs every phase on a fresh single-threaded executor.
fn run(args: &Args, users: Vec<User>) -> Report {
    let ex = Rc::new(LocalExecutor::new());
    let run = Rc::new(Run::new());
    let progress = (std::io::stderr().is_terminal() && !args.json_only)
        .then(|| ex.spawn(print_progress(run.clone(), args.connections)));
    let report = async_io::block_on(ex.run(phases(&ex, args, users, &run)));
    drop(progress);
    report
}

async fn print_progress(run: Rc<Run>, target: usize) {
    let start = Instant::now();
    loop {
        Timer::after(PROGRESS_EVERY).await;
        let line =
            run.read(|s| report::progress_line(run.phase(), start.elapsed().as_secs(), target, s));
        eprintln!("{line}");
    }
}

/// The phases of one run, in order (see the module doc).
async fn phases(
    ex: &Rc<LocalExecutor<'static>>,
    args: &Args,
    users: Vec<User>,
    run: &Rc<Run>,
) -> Report {
    let rss_before = args.pid.and_then(report::rss_kib);
    let users = Rc::new(users);
    let consultations = consultations(ex, args, &users, run).await;

    run.set_phase(Phase::Connecting);
    let connect_start = Instant::now();
    let url = format!("ws://{}{}", args.host, args.ws_path);
    let mut sockets: Vec<Option<(async_channel::Sender<Out>, Task<()>)>> = Vec::new();
    for batch in (0..args.connections)
        .collect::<Vec<_>>()
        .chunks(args.ramp_batch)
    {
        let opening: Vec<_> = batch
            .iter()
            .map(|&index| {
                let consultation = consultations.get(index / 2).cloned().flatten();
                let (users, url, addr) = (users.clone(), url.clone(), args.addr);
                ex.spawn(async move {
                    let user = users.get(index).ok_or_else(|| "no_token".to_string())?;
                    let consultation = consultation.ok_or_else(|| "no_consultation".to_string())?;
                    let target = Target {
                        addr,
                        url: &url,
                        token: &user.token,
                        consultation: &consultation,
                    };
                    socket::open(target).await
                })
            })
            .collect();
        for task in opening {
            match task.await {
                Ok(ws) => {
                    let (tx, rx) = async_channel::bounded(socket::OUT_QUEUE);
                    run.record(|s| s.held += 1);
                    let task = ex.spawn(socket::drive(ws, rx, run.clone()));
                    sockets.push(Some((tx, task)));
                }
                Err(key) => {
                    // "no_consultation" was already counted as the HTTP failure behind it.
                    if key != "no_consultation" {
                        run.error(&key);
                    }
                    sockets.push(None);
                }
            }
        }
    }
    let opened = sockets.iter().flatten().count();
    let connect_secs = connect_start.elapsed().as_secs_f64();
    log::info!("loadgen connected opened={opened} secs={connect_secs:.2}");

    let pinger = (args.heartbeat_s > 0).then(|| {
        let senders = sockets.iter().flatten().map(|(tx, _)| tx.clone()).collect();
        ex.spawn(pacer::heartbeat(
            senders,
            Duration::from_secs(args.heartbeat_s),
        ))
    });

    let rss_idle = match args.pid {
        Some(pid) => {
            run.set_phase(Phase::Idle);
            Timer::after(RSS_IDLE).await;
            report::rss_kib(pid)
        }
        None => None,
    };

    // Only pairs with both sockets open send: a message to a missing partner is not "lost".
    let lanes: Vec<Lane> = sockets
        .chunks(2)
        .zip(consultations.iter())
        .filter_map(|(pair, consultation)| match (pair, consultation) {
            ([Some((p, _)), Some((d, _))], Some(c)) => Some([p, d].map(|tx| Lane {
                tx: tx.clone(),
                consultation: c.as_str().into(),
            })),
            _ => None,
        })
        .flatten()
        .collect();
    run.set_phase(Phase::Sending);
    let send_start = Instant::now();
    let schedule = Schedule {
        rate: args.rate,
        duration_s: args.duration_s,
        body_bytes: args.body_bytes,
    };
    let run_id = mint_run_id();
    pacer::send_phase(run, &lanes, schedule, &run_id).await;

    run.set_phase(Phase::Draining);
    let drain_end = Instant::now() + DRAIN;
    while Instant::now() < drain_end && run.read(|s| s.received < s.sent) {
        Timer::after(DRAIN_POLL).await;
    }
    let send_secs = send_start.elapsed().as_secs_f64();
    let rss_end = args.pid.and_then(report::rss_kib);

    let timings = Timings {
        connect_secs,
        opened,
        send_secs,
    };
    let report = run.read(|s| {
        let rss = args
            .pid
            .map(|_| Rss::new(rss_before, rss_idle, rss_end, s.held));
        Report::new(args.connections, s, timings, rss)
    });
    run.stop_counting();
    drop(pinger);
    close_all(sockets).await;
    report
}

/// Consultation ids per pair: `c<k>` in peer mode, else created over HTTP (failures counted).
async fn consultations(
    ex: &Rc<LocalExecutor<'static>>,
    args: &Args,
    users: &Rc<Vec<User>>,
    run: &Run,
) -> Vec<Option<String>> {
    let pairs = args.connections / 2;
    if args.peer_mode {
        return (0..pairs).map(|k| Some(format!("c{k}"))).collect();
    }
    run.set_phase(Phase::Creating);
    http_client::create_consultations(ex, args.addr, &args.host, users.clone())
        .await
        .into_iter()
        .map(|outcome| match outcome {
            Ok(id) => Some(id),
            Err(error) => {
                log::warn!("loadgen create_consultation failed error=\"{error}\"");
                run.error(&error.key());
                None
            }
        })
        .collect()
}

/// Asks every socket to close with 1000 and waits (bounded) for the tasks to end.
async fn close_all(sockets: Vec<Option<(async_channel::Sender<Out>, Task<()>)>>) {
    let mut tasks = Vec::with_capacity(sockets.len());
    for (tx, task) in sockets.into_iter().flatten() {
        let _ = tx.try_send(Out::Close);
        tx.close();
        tasks.push(task);
    }
    let all_closed = async {
        for task in tasks {
            task.await;
        }
    };
    let grace = async {
        Timer::after(CLOSE_GRACE).await;
    };
    smol::future::or(all_closed, grace).await;
}

/// A short random id for this run's `client_id`s.
fn mint_run_id() -> String {
    let mut id = crate::auth::random_id();
    id.truncate(8);
    id
}
