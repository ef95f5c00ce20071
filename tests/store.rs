//! Black-box tests of the embedded store on real files in a temp dir.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use consult_edge::store::{
    ConsultState, Consultation, NewMessage, PurgeCount, RefreshUse, Store, StoreError, FILE_NAME,
    LOG_FILE_NAME, QUEUE_CAPACITY,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const T0: u64 = 1_700_000_000_000;

fn msg(consultation: &str, from: &str, client_id: &str, body: &str) -> NewMessage {
    NewMessage {
        consultation: consultation.to_owned(),
        from: from.to_owned(),
        role: "patient".to_owned(),
        body: body.to_owned(),
        client_id: client_id.to_owned(),
        ts_ms: T0 + 1,
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    }
}

fn ids(v: Vec<Consultation>) -> Vec<String> {
    v.into_iter().map(|c| c.id).collect()
}

// ----- group commit -----------------------------------------------------------------------------

#[test]
fn append_concurrent_200_seqs_dense_and_grouped() -> TestResult {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let c = smol::block_on(store.create_consultation("p1", "d1", T0))?;
    let commits_before = store.commits();

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let id = c.id.clone();
            std::thread::spawn(move || {
                let ex = smol::LocalExecutor::new();
                let tasks: Vec<_> = (0..PER_THREAD)
                    .map(|i| {
                        let store = store.clone();
                        let m = msg(&id, "p1", &format!("t{t}-{i}"), "hi");
                        ex.spawn(async move { store.append_message(m).await })
                    })
                    .collect();
                smol::block_on(ex.run(async {
                    let mut seqs = Vec::new();
                    for task in tasks {
                        seqs.push(task.await.map(|a| a.message.seq));
                    }
                    seqs
                }))
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for w in workers {
        for r in w.join().map_err(|_| "worker panicked")? {
            seqs.push(r?);
        }
    }
    seqs.sort_unstable();
    let ops = (THREADS * PER_THREAD) as u64;
    assert_eq!(seqs, (1..=ops).collect::<Vec<_>>());

    let commits = store.commits() - commits_before;
    assert!(
        commits * 4 <= ops,
        "commits={commits} ops={ops}: not grouped"
    );
    let stored: Vec<u64> = store
        .messages_after(&c.id, 0, 1000)?
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(stored, (1..=ops).collect::<Vec<_>>());
    assert_eq!(store.consultation(&c.id)?.map(|c| c.last_seq), Some(ops));
    Ok(())
}

// ----- idempotency ------------------------------------------------------------------------------

#[test]
fn append_retry_same_client_id_returns_original_stored_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        let first = store
            .append_message(msg(&c.id, "p1", "c-1", "first"))
            .await?;
        let other = store
            .append_message(msg(&c.id, "p1", "c-2", "second"))
            .await?;
        let retry = store
            .append_message(msg(&c.id, "p1", "c-1", "retry body"))
            .await?;
        assert!(!first.duplicate);
        assert!(retry.duplicate);
        assert_eq!(retry.message, first.message);
        assert_eq!(retry.message.body, "first");
        assert_eq!(other.message.seq, 2);
        // Another sender may reuse the same client_id: the key is per sender.
        let doctor = store
            .append_message(msg(&c.id, "d1", "c-1", "from doctor"))
            .await?;
        assert!(!doctor.duplicate);
        assert_eq!(doctor.message.seq, 3);
        assert_eq!(store.messages_after(&c.id, 0, 100)?.len(), 3);
        assert_eq!(store.consultation(&c.id)?.map(|c| c.last_seq), Some(3));
        Ok(())
    })
}

#[test]
fn append_same_key_in_one_batch_second_is_duplicate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        let (a, b) = smol::future::zip(
            store.append_message(msg(&c.id, "p1", "same", "one")),
            store.append_message(msg(&c.id, "p1", "same", "two")),
        )
        .await;
        let (a, b) = (a?, b?);
        assert_eq!(a.message.seq, 1);
        assert_eq!(b.message, a.message);
        assert!(!a.duplicate && b.duplicate);
        assert_eq!(store.messages_after(&c.id, 0, 100)?.len(), 1);
        Ok(())
    })
}

// ----- refusals ---------------------------------------------------------------------------------

#[test]
fn append_closed_consultation_refused_missing_not_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        store.append_message(msg(&c.id, "p1", "c-1", "hi")).await?;
        let closed = store
            .close_consultation(&c.id, "closed_by_member", T0 + 5)
            .await?;
        assert_eq!(closed.state, ConsultState::Closed);
        assert_eq!(closed.closed_reason.as_deref(), Some("closed_by_member"));
        assert_eq!(closed.closed_at_ms, Some(T0 + 5));
        let again = store.close_consultation(&c.id, "idle", T0 + 9).await?;
        assert_eq!(again, closed, "closing twice changes nothing");

        let refused = store.append_message(msg(&c.id, "p1", "c-2", "late")).await;
        assert_eq!(refused, Err(StoreError::Closed));
        let missing = store
            .append_message(msg("no-such-id", "p1", "c-3", "x"))
            .await;
        assert_eq!(missing, Err(StoreError::NotFound));
        let close_missing = store.close_consultation("no-such-id", "idle", T0).await;
        assert_eq!(close_missing, Err(StoreError::NotFound));

        assert_eq!(
            store.messages_after(&c.id, 0, 100)?.len(),
            1,
            "history stays readable"
        );
        assert!(store.open_consultations()?.is_empty());
        Ok(())
    })
}

#[test]
fn append_refusal_in_batch_others_commit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        let (bad, good) = smol::future::zip(
            store.append_message(msg("missing", "p1", "x", "x")),
            store.append_message(msg(&c.id, "p1", "y", "y")),
        )
        .await;
        assert_eq!(bad, Err(StoreError::NotFound));
        assert_eq!(good?.message.seq, 1);
        Ok(())
    })
}

// ----- queries ----------------------------------------------------------------------------------

#[test]
fn consultations_of_members_see_newest_first_others_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let a = store.create_consultation("p1", "d1", T0).await?;
        let b = store.create_consultation("p1", "d2", T0 + 10).await?;
        let c = store.create_consultation("p2", "d1", T0 + 20).await?;
        // A user whose id extends p1's must not leak into p1's list.
        let d = store.create_consultation("p1x", "d3", T0 + 30).await?;
        let e = store.create_consultation("p1\0", "d3", T0 + 40).await?;

        assert_eq!(
            ids(store.consultations_of("p1", 10)?),
            vec![b.id.clone(), a.id.clone()]
        );
        assert_eq!(
            ids(store.consultations_of("d1", 10)?),
            vec![c.id.clone(), a.id.clone()]
        );
        assert_eq!(ids(store.consultations_of("p1x", 10)?), vec![d.id.clone()]);
        assert_eq!(ids(store.consultations_of("p1\0", 10)?), vec![e.id.clone()]);
        assert_eq!(ids(store.consultations_of("d1", 1)?), vec![c.id.clone()]);
        assert!(store.consultations_of("stranger", 10)?.is_empty());
        assert!(store.consultations_of("p", 10)?.is_empty());

        let mut open = ids(store.open_consultations()?);
        open.sort();
        let mut all = vec![a.id, b.id, c.id, d.id, e.id];
        all.sort();
        assert_eq!(open, all);
        Ok(())
    })
}

#[test]
fn consultations_of_same_created_at_ordered_by_id_desc() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let mut made = Vec::new();
        for _ in 0..5 {
            made.push(store.create_consultation("p1", "d1", T0).await?.id);
        }
        made.sort();
        made.reverse();
        assert_eq!(ids(store.consultations_of("p1", 10)?), made);
        Ok(())
    })
}

#[test]
fn messages_after_returns_range_ascending_limited() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        let other = store.create_consultation("p1", "d1", T0).await?;
        for i in 0..10 {
            store
                .append_message(msg(&c.id, "p1", &format!("c{i}"), &format!("m{i}")))
                .await?;
            store
                .append_message(msg(&other.id, "p1", &format!("c{i}"), "other"))
                .await?;
        }
        let page = store.messages_after(&c.id, 3, 4)?;
        let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7]);
        assert_eq!(page.first().map(|m| m.body.as_str()), Some("m3"));
        assert!(page.iter().all(|m| m.consultation == c.id));
        assert!(store.messages_after(&c.id, 10, 100)?.is_empty());
        assert!(store.messages_after(&c.id, u64::MAX, 100)?.is_empty());
        assert!(store.messages_after(&c.id, 0, 0)?.is_empty());
        assert!(store.messages_after("missing", 0, 10)?.is_empty());
        Ok(())
    })
}

// ----- refresh rotation and revocation ----------------------------------------------------------

#[test]
fn refresh_second_use_is_reused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        assert_eq!(
            store.use_refresh("j1", "s1", 2_000).await?,
            RefreshUse::Fresh
        );
        assert_eq!(
            store.use_refresh("j1", "s1", 2_000).await?,
            RefreshUse::Reused
        );
        assert_eq!(
            store.use_refresh("j2", "s1", 2_000).await?,
            RefreshUse::Fresh
        );
        Ok(())
    })
}

#[test]
fn revoke_keeps_later_until_purge_removes_only_expired() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        store.revoke_sid("s1", 1_000).await?;
        store.revoke_sid("s1", 500).await?; // earlier: ignored
        store.revoke_sid("s2", 1_000).await?;
        store.revoke_sid("s2", 3_000).await?; // later: kept
        store.revoke_sid("s3", 5_000).await?;
        let mut rev = store.revocations()?;
        rev.sort();
        let want = vec![
            ("s1".to_owned(), 1_000),
            ("s2".to_owned(), 3_000),
            ("s3".to_owned(), 5_000),
        ];
        assert_eq!(rev, want);

        store.use_refresh("old", "s1", 1_500).await?;
        store.use_refresh("new", "s1", 4_000).await?;

        // s1 (1000) and "old" (1500) have passed at 2000; s2 moved from 1000 to 3000 and stays.
        let purged = store.purge_expired(2_000).await?;
        assert_eq!(
            purged,
            PurgeCount {
                revocations: 1,
                refresh_jtis: 1
            }
        );
        let mut rev = store.revocations()?;
        rev.sort();
        assert_eq!(
            rev,
            vec![("s2".to_owned(), 3_000), ("s3".to_owned(), 5_000)]
        );
        assert!(!store.is_refresh_used("old")?);
        assert!(store.is_refresh_used("new")?);

        // A time equal to `until` has not passed yet.
        assert_eq!(store.purge_expired(3_000).await?, PurgeCount::default());
        assert_eq!(store.purge_expired(3_001).await?.revocations, 1);
        Ok(())
    })
}

// ----- durability -------------------------------------------------------------------------------

#[test]
fn reopen_after_drop_everything_is_there() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (c, closed) = {
        let store = Store::open(dir.path())?;
        smol::block_on(async {
            let c = store.create_consultation("p1", "d1", T0).await?;
            let closed = store.create_consultation("p1", "d2", T0 + 1).await?;
            for i in 0..5 {
                store
                    .append_message(msg(&c.id, "p1", &format!("c{i}"), &format!("m{i}")))
                    .await?;
            }
            let closed = store.close_consultation(&closed.id, "idle", T0 + 2).await?;
            store.revoke_sid("s1", 9_000).await?;
            store.use_refresh("j1", "s1", 9_000).await?;
            Ok::<_, StoreError>((c, closed))
        })?
    };
    let store = Store::open(dir.path())?;
    let reopened = store.consultation(&c.id)?.ok_or("consultation lost")?;
    assert_eq!(reopened.last_seq, 5);
    assert_eq!(reopened.state, ConsultState::Open);
    assert_eq!(store.consultation(&closed.id)?, Some(closed.clone()));
    let bodies: Vec<String> = store
        .messages_after(&c.id, 0, 100)?
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, vec!["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(store.revocations()?, vec![("s1".to_owned(), 9_000)]);
    assert_eq!(ids(store.open_consultations()?), vec![c.id.clone()]);
    assert_eq!(
        ids(store.consultations_of("p1", 10)?),
        vec![closed.id.clone(), c.id.clone()]
    );
    smol::block_on(async {
        assert_eq!(
            store.use_refresh("j1", "s1", 9_000).await?,
            RefreshUse::Reused
        );
        let next = store
            .append_message(msg(&c.id, "p1", "c9", "after reopen"))
            .await?;
        assert_eq!(next.message.seq, 6);
        let retry = store
            .append_message(msg(&c.id, "p1", "c0", "retry"))
            .await?;
        assert!(retry.duplicate && retry.message.seq == 1);
        Ok(())
    })
}

#[test]
fn shutdown_flushes_queued_writes_then_refuses() -> TestResult {
    const QUEUED: usize = 20;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let other = store.clone();
    let c = smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        // Poll each append once: that enqueues its op (the queue has room) without waiting for
        // the reply. Then shut down while they are queued or mid-commit.
        let mut queued: Vec<_> = (0..QUEUED)
            .map(|i| Box::pin(other.append_message(msg(&c.id, "p1", &format!("c{i}"), "x"))))
            .collect();
        for f in queued.iter_mut() {
            assert!(
                smol::future::poll_once(f).await.is_none(),
                "answered before commit"
            );
        }
        store.shutdown().await;
        for f in queued {
            f.await?;
        }
        Ok::<_, StoreError>(c)
    })?;
    let late = smol::block_on(other.append_message(msg(&c.id, "p1", "late", "x")));
    assert_eq!(late, Err(StoreError::Stopped));
    drop(other);
    let store = Store::open(dir.path())?;
    assert_eq!(store.messages_after(&c.id, 0, 100)?.len(), QUEUED);
    Ok(())
}

#[test]
fn drop_last_handle_commits_queued_writes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let c = smol::block_on(store.create_consultation("p1", "d1", T0))?;
    {
        let clone = store.clone();
        let mut queued = Box::pin(clone.append_message(msg(&c.id, "p1", "c0", "x")));
        assert!(smol::block_on(smol::future::poll_once(&mut queued)).is_none());
        // The caller stops waiting: its op is already queued and still commits.
        drop(queued);
    }
    drop(store);
    let store = Store::open(dir.path())?;
    assert_eq!(store.messages_after(&c.id, 0, 100)?.len(), 1);
    Ok(())
}

#[test]
fn open_twice_second_is_io_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let _first = Store::open(dir.path())?;
    let second = Store::open(dir.path());
    assert!(matches!(second, Err(StoreError::Io(_))), "{second:?}");
    Ok(())
}

// ----- corruption -------------------------------------------------------------------------------

fn assert_corrupt(dir: &Path) {
    let r = Store::open(dir);
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
}

#[test]
fn open_garbage_file_is_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(FILE_NAME), vec![0xA5u8; 64 * 1024])?;
    assert_corrupt(dir.path());
    Ok(())
}

#[test]
fn open_text_file_is_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(FILE_NAME), b"this is not a database\n")?;
    assert_corrupt(dir.path());
    Ok(())
}

fn store_with_data(dir: &Path) -> TestResult {
    let store = Store::open(dir)?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        for i in 0..50 {
            store
                .append_message(msg(&c.id, "p1", &format!("c{i}"), &"x".repeat(500)))
                .await?;
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(())
}

#[test]
fn open_truncated_file_is_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    store_with_data(dir.path())?;
    let path = dir.path().join(FILE_NAME);
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .set_len(len / 2)?;
    assert_corrupt(dir.path());
    Ok(())
}

#[test]
fn open_overwritten_pages_is_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    store_with_data(dir.path())?;
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path)?;
    // Keep the header page, flip every bit after it.
    for b in bytes.iter_mut().skip(4096) {
        *b = !*b;
    }
    std::fs::write(&path, bytes)?;
    assert_corrupt(dir.path());
    Ok(())
}

// ----- the message log --------------------------------------------------------------------------

/// A store with one consultation and `n` messages `m0..`, closed again; returns the id.
fn log_with_messages(dir: &Path, n: usize, body_len: usize) -> Result<String, StoreError> {
    let store = Store::open(dir)?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        for i in 0..n {
            let mut body = format!("m{i}-");
            body.push_str(&"x".repeat(body_len));
            store
                .append_message(msg(&c.id, "p1", &format!("c{i}"), &body))
                .await?;
        }
        Ok(c.id)
    })
}

/// The offset just past the log's last non-zero byte: where its records end (the rest is the
/// writer's pre-written zeros).
fn records_end(log: &[u8]) -> Result<usize, &'static str> {
    Ok(log.iter().rposition(|&b| b != 0).ok_or("empty log")? + 1)
}

/// The seqs of consultation `id`'s stored messages, in order.
fn stored_seqs(store: &Store, id: &str) -> Result<Vec<u64>, StoreError> {
    Ok(store
        .messages_after(id, 0, 100)?
        .iter()
        .map(|m| m.seq)
        .collect())
}

#[test]
fn log_torn_last_record_dropped_at_open_seqs_continue_dense() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = log_with_messages(dir.path(), 10, 20)?;
    let path = dir.path().join(LOG_FILE_NAME);
    let mut bytes = std::fs::read(&path)?;
    // The idle writer pre-wrote zeros after the last record.
    let end = records_end(&bytes)?;
    assert!(bytes.len() > end, "no pre-written tail");
    // A crash in the middle of the last write: its record's last bytes never reached the disk.
    bytes.get_mut(end - 5..end).ok_or("log too short")?.fill(0);
    std::fs::write(&path, bytes)?;
    let store = Store::open(dir.path())?;
    let kept = store.messages_after(&id, 0, 100)?;
    assert_eq!(kept.len(), 9);
    assert_eq!(
        kept.last().map(|m| m.body.as_str()),
        Some("m8-xxxxxxxxxxxxxxxxxxxx")
    );
    let record = store.consultation(&id)?.ok_or("consultation lost")?;
    assert_eq!(record.last_seq, 9);
    smol::block_on(async {
        // The torn message was never acked: a retry of it is a new message with the next seq.
        let retried = store.append_message(msg(&id, "p1", "c9", "again")).await?;
        assert!(!retried.duplicate);
        assert_eq!(retried.message.seq, 10);
        Ok::<_, StoreError>(())
    })?;
    drop(store);
    let reopened = Store::open(dir.path())?;
    assert_eq!(stored_seqs(&reopened, &id)?, (1..=10).collect::<Vec<u64>>());
    Ok(())
}

#[test]
fn log_idle_writer_prewrites_zeros_reopen_keeps_them_and_appends_land_before_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = log_with_messages(dir.path(), 3, 20)?;
    let path = dir.path().join(LOG_FILE_NAME);
    let len = std::fs::metadata(&path)?.len();
    let bytes = std::fs::read(&path)?;
    let end = records_end(&bytes)?;
    assert!(
        len >= end as u64 + 512 * 1024,
        "len {len}, records end at {end}"
    );
    let store = Store::open(dir.path())?;
    smol::block_on(store.append_message(msg(&id, "p1", "c3", "after reopen")))?;
    drop(store);
    let bytes = std::fs::read(&path)?;
    let new_end = records_end(&bytes)?;
    assert!(new_end > end && new_end < len as usize);
    let reopened = Store::open(dir.path())?;
    assert_eq!(stored_seqs(&reopened, &id)?, vec![1, 2, 3, 4]);
    Ok(())
}

#[test]
fn log_damage_before_the_last_batch_is_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 200 messages of ~16 KiB: far more than one batch can span.
    log_with_messages(dir.path(), 200, 16 * 1024)?;
    let path = dir.path().join(LOG_FILE_NAME);
    let mut bytes = std::fs::read(&path)?;
    let byte = bytes.get_mut(100).ok_or("log too short")?;
    *byte ^= 0xff;
    std::fs::write(&path, bytes)?;
    assert_corrupt(dir.path());
    Ok(())
}

#[test]
fn append_retry_after_close_and_restart_returns_original() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = log_with_messages(dir.path(), 3, 1)?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        store
            .close_consultation(&id, "closed_by_member", T0 + 9)
            .await?;
        // A retry of seq 2, accepted while open, is still answered with the original.
        let retry = store.append_message(msg(&id, "p1", "c1", "retry")).await?;
        assert!(retry.duplicate);
        assert_eq!(
            (retry.message.seq, retry.message.body.as_str()),
            (2, "m1-x")
        );
        let fresh = store.append_message(msg(&id, "p1", "c-new", "late")).await;
        assert_eq!(fresh, Err(StoreError::Closed));
        Ok::<_, StoreError>(())
    })?;
    assert_eq!(store.messages_after(&id, 0, 100)?.len(), 3);
    Ok(())
}

#[test]
fn log_file_is_owner_only() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    log_with_messages(dir.path(), 1, 1)?;
    let mode = std::fs::metadata(dir.path().join(LOG_FILE_NAME))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

// ----- fault injection --------------------------------------------------------------------------

#[test]
fn fail_commits_on_appends_fail_nothing_visible_off_recovers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        store.append_message(msg(&c.id, "p1", "c0", "ok")).await?;
        let commits = store.commits();

        store.set_fail_commits(true);
        let (a, b) = smol::future::zip(
            store.append_message(msg(&c.id, "p1", "c1", "lost")),
            store.append_message(msg(&c.id, "p1", "c2", "lost")),
        )
        .await;
        assert!(matches!(a, Err(StoreError::Io(_))), "{a:?}");
        assert!(matches!(b, Err(StoreError::Io(_))), "{b:?}");
        let created = store.create_consultation("p9", "d9", T0).await;
        assert!(matches!(created, Err(StoreError::Io(_))), "{created:?}");
        assert_eq!(store.commits(), commits);
        assert_eq!(store.consultation(&c.id)?.map(|c| c.last_seq), Some(1));
        assert_eq!(store.messages_after(&c.id, 0, 100)?.len(), 1);
        assert!(store.consultations_of("p9", 10)?.is_empty());

        store.set_fail_commits(false);
        let retry = store.append_message(msg(&c.id, "p1", "c1", "now")).await?;
        assert!(
            !retry.duplicate,
            "the failed attempt left no idempotency key"
        );
        assert_eq!(retry.message.seq, 2);
        assert!(store.stats().failed_batches >= 2);
        Ok(())
    })
}

/// The writer reuses one list of staged ops from batch to batch: each batch answers its own ops
/// only, once each, whether the batch before it failed or committed.
#[test]
fn batches_after_a_failed_one_answer_only_their_own_ops() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    smol::block_on(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        store.set_fail_commits(true);
        let (a, created) = smol::future::zip(
            store.append_message(msg(&c.id, "p1", "c1", "lost")),
            store.create_consultation("p9", "d9", T0),
        )
        .await;
        assert!(matches!(a, Err(StoreError::Io(_))), "{a:?}");
        assert!(matches!(created, Err(StoreError::Io(_))), "{created:?}");
        store.set_fail_commits(false);
        let before = store.stats();
        for (seq, client_id) in [(1, "c1"), (2, "c2"), (3, "c3")] {
            let appended = store
                .append_message(msg(&c.id, "p1", client_id, "kept"))
                .await?;
            assert_eq!(
                (appended.message.seq, appended.message.client_id.as_str()),
                (seq, client_id)
            );
        }
        let other = store.create_consultation("p9", "d9", T0).await?;
        assert_eq!(other.patient, "p9");
        let after = store.stats();
        assert_eq!(after.ops_committed - before.ops_committed, 4);
        assert_eq!(
            after.commits - before.commits,
            4,
            "one batch per sequential op"
        );
        Ok(())
    })
}

// ----- crash ------------------------------------------------------------------------------------

/// Env var naming the data dir of the crash child; unset, the child test does nothing.
const CRASH_DIR_ENV: &str = "CONSULT_EDGE_STORE_CRASH_DIR";
/// Acks the parent waits for before killing the child.
const CRASH_ACKS: usize = 200;
/// Upper bound on the crash test's wait for the child's acks.
const CRASH_WAIT: Duration = Duration::from_secs(4);

#[test]
fn crash_kill9_every_acked_seq_survives() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "crash_child_appends_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + CRASH_WAIT;
    let mut consultation = None;
    let mut acked = Vec::new();
    let mut take = |line: String, acked: &mut Vec<u64>| {
        if let Some(id) = line.strip_prefix("consultation ") {
            consultation = Some(id.to_owned());
        } else if let Some(seq) = line.strip_prefix("acked ").and_then(|s| s.parse().ok()) {
            acked.push(seq);
        }
    };
    while acked.len() < CRASH_ACKS {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        take(line, &mut acked);
    }
    child.kill()?; // SIGKILL: no destructor, no flush
    child.wait()?;
    // Acks printed between the last read and the kill are durable too: check them as well.
    let _ = reader.join();
    for line in rx.try_iter() {
        take(line, &mut acked);
    }

    let consultation = consultation.ok_or("child never created its consultation")?;
    assert!(
        acked.len() >= CRASH_ACKS,
        "child acked only {} in {CRASH_WAIT:?}",
        acked.len()
    );
    let store = Store::open(dir.path())?;
    let seqs: Vec<u64> = store
        .messages_after(&consultation, 0, 1_000_000)?
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seqs not dense"
    );
    for seq in &acked {
        assert!(
            seqs.binary_search(seq).is_ok(),
            "acked seq={seq} lost after kill -9"
        );
    }
    Ok(())
}

/// The child of `crash_kill9_every_acked_seq_survives`: appends from several tasks and prints
/// each acked seq until it is killed. Runs only when the parent sets [`CRASH_DIR_ENV`].
#[test]
#[ignore = "helper process for crash_kill9_every_acked_seq_survives"]
fn crash_child_appends_until_killed() -> TestResult {
    /// Concurrent senders, so kills land in the middle of group commits.
    const SENDERS: usize = 8;
    /// Bound on the child's work if nobody kills it.
    const MAX_PER_SENDER: usize = 100_000;
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return Ok(());
    };
    let store = Store::open(Path::new(&dir))?;
    let ex = smol::LocalExecutor::new();
    let io = |e: std::io::Error| StoreError::Io(e.to_string());
    smol::block_on(ex.run(async {
        let c = store.create_consultation("p1", "d1", T0).await?;
        let mut out = std::io::stdout();
        writeln!(out, "consultation {}", c.id).map_err(io)?;
        out.flush().map_err(io)?;
        let tasks: Vec<_> = (0..SENDERS)
            .map(|s| {
                let store = store.clone();
                let id = c.id.clone();
                ex.spawn(async move {
                    for i in 0..MAX_PER_SENDER {
                        let m = msg(&id, "p1", &format!("s{s}-{i}"), "crash");
                        let a = store.append_message(m).await?;
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "acked {}", a.message.seq).map_err(io)?;
                        out.flush().map_err(io)?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        Ok::<_, StoreError>(())
    }))?;
    Ok(())
}

// ----- model ------------------------------------------------------------------------------------

/// One step of the model test: an append by sender `from` (0 patient, 1 doctor) with a client id
/// from a small pool (so retries happen), or a close.
#[derive(Clone, Debug)]
enum Step {
    Append { from: usize, client: u8 },
    Close,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        12 => (0usize..2, 0u8..6).prop_map(|(from, client)| Step::Append { from, client }),
        1 => Just(Step::Close),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]

    /// Against a plain model: seqs are dense from 1, a repeated (from, client_id) returns the
    /// original seq and body, a closed consultation refuses new keys, and the stored history
    /// after reopen is exactly the model's.
    #[test]
    fn append_random_steps_match_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir()?;
        let senders = ["p1", "d1"];
        let mut model: Vec<(String, String, String)> = Vec::new(); // (from, client_id, body)
        let mut closed = false;
        let id = {
            let store = Store::open(dir.path())?;
            let c = smol::block_on(store.create_consultation("p1", "d1", T0))?;
            for (n, s) in steps.iter().enumerate() {
                match *s {
                    Step::Close => {
                        smol::block_on(store.close_consultation(&c.id, "idle", T0))?;
                        closed = true;
                    }
                    Step::Append { from, client } => {
                        let from = senders.get(from).copied().unwrap_or("p1");
                        let client_id = format!("c{client}");
                        let body = format!("body{n}");
                        let got = smol::block_on(
                            store.append_message(msg(&c.id, from, &client_id, &body)),
                        );
                        let original = model
                            .iter()
                            .position(|(f, k, _)| f == from && *k == client_id);
                        match (original, closed) {
                            (Some(i), _) => {
                                let a = got?;
                                proptest::prop_assert!(a.duplicate);
                                proptest::prop_assert_eq!(a.message.seq, i as u64 + 1);
                                let want = model.get(i).map(|(_, _, b)| b.as_str());
                                proptest::prop_assert_eq!(Some(a.message.body.as_str()), want);
                            }
                            (None, true) => proptest::prop_assert_eq!(got, Err(StoreError::Closed)),
                            (None, false) => {
                                let a = got?;
                                model.push((from.to_owned(), client_id, body));
                                proptest::prop_assert!(!a.duplicate);
                                proptest::prop_assert_eq!(a.message.seq, model.len() as u64);
                            }
                        }
                    }
                }
            }
            c.id
        };
        let store = Store::open(dir.path())?;
        let stored: Vec<(String, String, String)> = store
            .messages_after(&id, 0, 1000)?
            .into_iter()
            .map(|m| (m.from, m.client_id, m.body))
            .collect();
        proptest::prop_assert_eq!(stored, model);
    }
}

#[test]
fn queue_full_try_begin_append_refuses_begin_append_waits_all_commit_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let c = smol::block_on(store.create_consultation("p1", "d1", T0))?;
    store.hold_writer(true);
    // Every early return below must release the writer, or dropping the store would wait on it.
    let filled = fill_held_queue(&store, &c.id);
    let outcome = filled.and_then(|pending| {
        smol::block_on(async {
            let mut waiting =
                std::pin::pin!(store.begin_append(msg(&c.id, "p1", "last", "waited")));
            let waited_for_room = smol::future::poll_once(waiting.as_mut()).await.is_none();
            store.hold_writer(false);
            let last = waiting.await?;
            let mut seqs = Vec::new();
            for p in pending {
                seqs.push(p.await?.message.seq);
            }
            seqs.push(last.await?.message.seq);
            Ok((waited_for_room, seqs))
        })
    });
    store.hold_writer(false);
    let (waited_for_room, seqs) = outcome?;
    assert!(
        waited_for_room,
        "begin_append did not wait for room in a full queue"
    );
    let expected: Vec<u64> = (1..=QUEUE_CAPACITY as u64 + 2).collect();
    assert_eq!(
        seqs, expected,
        "every op committed, in queue order, the refused one not at all"
    );
    assert_eq!(
        store.messages_after(&c.id, 0, 2_000)?.len(),
        QUEUE_CAPACITY + 2
    );
    Ok(())
}

/// With the writer held: one op taken by the writer, then exactly `QUEUE_CAPACITY` queued, and
/// the next one refused. Returns the queued appends.
fn fill_held_queue(
    store: &Store,
    id: &str,
) -> Result<Vec<consult_edge::store::PendingAppend>, Box<dyn std::error::Error>> {
    let mut pending = vec![store
        .try_begin_append(msg(id, "p1", "c0", "taken"))?
        .ok_or("an empty queue refused an op")?];
    // The writer takes that op and holds it: wait (bounded) until the queue is empty again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.queued_ops() > 0 {
        if Instant::now() > deadline {
            return Err("the writer never took the first op".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for n in 1..=QUEUE_CAPACITY {
        let queued = store.try_begin_append(msg(id, "p1", &format!("c{n}"), "queued"))?;
        pending.push(queued.ok_or(format!("refused op {n} with room in the queue"))?);
    }
    let refused = store.try_begin_append(msg(id, "p1", "over", "refused"))?;
    if refused.is_some() {
        return Err("a full queue took one more op".into());
    }
    Ok(pending)
}
