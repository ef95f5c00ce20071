//! The wheel's driver on a real executor: bounded firing under bursts (manual clock), and
//! deadlines firing on the real clock while sockets are busy (async-io's reported hazard of
//! timers not firing under heavy I/O with ~10k timers).

use consult_edge::scope::Runtime;
use consult_edge::wheel::{Clock, Timers, FIRE_BUDGET};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use std::cell::Cell;
use std::rc::Rc;

#[test]
fn burst_of_expiries_is_fired_in_bounded_batches() {
    let timers = Timers::new(Clock::manual(0));
    let n = FIRE_BUDGET * 3 + 5;
    let handles: Vec<_> = (0..n).map(|_| timers.arm("burst", 1000, None)).collect();
    timers.advance(1000);
    assert!(timers.turn(), "more than one budget is due");
    let fired = handles.iter().filter(|h| h.has_fired()).count();
    assert_eq!(fired, FIRE_BUDGET, "one turn fires one budget");
    assert!(timers.turn());
    assert!(timers.turn());
    assert!(!timers.turn(), "the rest fit the fourth turn");
    assert!(handles.iter().all(|h| h.has_fired()));
    assert_eq!(timers.fired_by_name(), vec![("burst", n as u64)]);
    drop(handles);
    assert_eq!(timers.entries(), 0);
}

#[test]
fn other_tasks_run_between_burst_batches() {
    let rt = Runtime::new(Timers::new(Clock::manual(0)));
    let rt2 = rt.clone();
    rt.block_on(async move {
        let total = FIRE_BUDGET * 4;
        let handles: Rc<Vec<_>> = Rc::new(
            (0..total)
                .map(|_| rt2.timers.arm("burst", 10, None))
                .collect(),
        );
        rt2.timers.advance(10);
        // Scheduled after the driver, which the advance woke: it runs at the driver's first
        // yield and must see a partly fired burst.
        let seen = Rc::new(Cell::new(usize::MAX));
        let probe = {
            let handles = handles.clone();
            let seen = seen.clone();
            rt2.executor.spawn(async move {
                seen.set(handles.iter().filter(|h| h.has_fired()).count());
            })
        };
        probe.await;
        assert!(
            seen.get() >= FIRE_BUDGET && seen.get() < total,
            "probe saw {} of {total} fired",
            seen.get()
        );
        for h in handles.iter() {
            h.fired().await;
        }
    });
}

#[test]
fn real_clock_deadlines_fire_while_sockets_are_busy() {
    let rt = Runtime::new(Timers::new(Clock::monotonic()));
    let rt2 = rt.clone();
    rt.block_on(async move {
        // A pair of sockets pumping data as fast as the loop goes.
        let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let busy = Rc::new(Cell::new(true));
        let bytes = Rc::new(Cell::new(0u64));
        let server = rt2.executor.spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let client = {
            let busy = busy.clone();
            let bytes = bytes.clone();
            rt2.executor.spawn(async move {
                let mut c = async_io::Async::<std::net::TcpStream>::connect(addr)
                    .await
                    .unwrap();
                let chunk = vec![7u8; 4096];
                let mut back = vec![0u8; 4096];
                while busy.get() {
                    c.write_all(&chunk).await.unwrap();
                    c.read_exact(&mut back).await.unwrap();
                    bytes.set(bytes.get() + 4096);
                }
            })
        };
        // 10,000 timers spread over 50..550 ms.
        let start = rt2.timers.refresh_now();
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| rt2.timers.arm("load", start + 50 + i % 500, None))
            .collect();
        let mut early = 0;
        for h in &handles {
            h.fired().await;
            let now = rt2.timers.refresh_now();
            if now < h.deadline().0 {
                early += 1;
            }
        }
        assert_eq!(early, 0, "no deadline fires before its time");
        assert!(busy.get());
        let pumped = bytes.get();
        busy.set(false);
        client.await;
        drop(server);
        assert!(pumped > 0, "the sockets were busy while the timers fired");
    });
}
