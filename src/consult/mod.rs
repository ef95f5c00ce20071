//! Consultations: membership, durable sequencing, fan-out, presence and their own deadlines.
//! No transport here: sessions and HTTP handlers call in with plain values.
//!
//! # Invariants
//! 1. Membership is checked on every call: a consultation's members are its patient and its
//!    doctor; anyone else is told it does not exist (`NotFound`), so ids cannot be probed.
//! 2. A message is fanned out only after the store committed it (the `ack` means durable).
//! 3. Every open consultation has a scope under the server with two deadlines, `consult_idle`
//!    (re-armed by each message) and `consult_limit` (from creation, hard); when one fires the
//!    consultation closes with reason `idle` / `time_limit` and members are told.
//! 4. Closed consultations hold no memory here: their history is read from the store.
//! 5. A patient never has more than the `max_open` given to [`Consults::create`] consultations
//!    open: a create counts itself in `open_by_patient` before it awaits the store, so creates
//!    of one patient interleaved at their awaits cannot all pass the check. The count is every
//!    open room of the patient plus their creates in flight; a failed create gives its slot
//!    back ([`Reservation`]).
//! 6. A create that reached the store opens its room, even if its caller stopped waiting (an
//!    HTTP request cancelled because the client hung up): no consultation is open in the store
//!    without its room, its deadlines and its count.
//!
//! # Implementation
//! - [`frames`]: the protocol's JSON frames (client commands, server frames).
//! - [`outbox`]: a session's bounded outbound queue.
//! - [`room`]: the live state of one open consultation.

pub mod frame_json;
pub mod frames;
pub mod outbox;
pub mod room;

use crate::observe::{Metrics, TraceParent};
use crate::scope::{CancelReason, Scope, ScopeKind};
use crate::store::{
    Appended, ConsultState, Consultation, NewMessage, PendingAppend, Store, StoreError,
    StoredMessage,
};
use bytes::Bytes;
use outbox::Outbox;
use room::Room;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{ready, Context, Poll};

/// Messages read from the store per page while replaying history: large enough to amortise a
/// read transaction, small enough that one page is a bounded amount of memory.
pub const REPLAY_PAGE: usize = 256;

/// Why a consultation call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultError {
    /// No such consultation, or the caller is not a member (invariant 1).
    NotFound,
    /// The caller may see it but not do this (an admin writing).
    Forbidden,
    /// The consultation is closed.
    Closed,
    /// The store failed (our fault): the detail is for the log.
    Internal(String),
}

/// Why [`Consults::create`] was refused: a consultation error, or the patient's cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// The patient already has `max_open` consultations open (their fault; invariant 5).
    TooManyOpen,
    /// What any consultation call can fail with.
    Consult(ConsultError),
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> CreateError {
        CreateError::Consult(e.into())
    }
}

impl From<StoreError> for ConsultError {
    fn from(e: StoreError) -> ConsultError {
        match e {
            StoreError::NotFound => ConsultError::NotFound,
            StoreError::Closed => ConsultError::Closed,
            other => ConsultError::Internal(other.to_string()),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    pub user: &'a str,
    pub role: &'a str,
    /// Admins may read any consultation, never write.
    pub admin: bool,
}

/// Timing of consultations (from the settings).
#[derive(Debug, Clone, Copy)]
pub struct ConsultTimes {
    pub idle_ms: u64,
    pub limit_ms: u64,
}

/// A message to store and relay.
pub struct Outgoing<'a> {
    pub consultation: &'a str,
    pub client_id: &'a str,
    pub body: &'a str,
    /// The send's span. Kept as the value, not its header text: the header is formatted once,
    /// straight into the store's copy ([`new_message`]).
    pub traceparent: TraceParent,
    pub ts_ms: u64,
    /// The sending socket (not relayed to).
    pub session_id: u64,
}

/// All consultations of the gateway.
pub struct Consults {
    store: Store,
    server: Rc<Scope>,
    metrics: Rc<Metrics>,
    times: Cell<ConsultTimes>,
    rooms: RefCell<HashMap<String, Rc<Room>>>,
    /// Per patient id: their open rooms plus their creates awaiting the store (invariant 5).
    /// A patient with neither has no entry, so the map is as small as the open set.
    open_by_patient: RefCell<HashMap<String, usize>>,
    self_weak: RefCell<Weak<Consults>>,
}

impl Consults {
    pub fn new(
        store: Store,
        server: Rc<Scope>,
        metrics: Rc<Metrics>,
        times: ConsultTimes,
    ) -> Rc<Consults> {
        let consults = Rc::new(Consults {
            store,
            server,
            metrics,
            times: Cell::new(times),
            rooms: RefCell::new(HashMap::new()),
            open_by_patient: RefCell::new(HashMap::new()),
            self_weak: RefCell::new(Weak::new()),
        });
        *consults.self_weak.borrow_mut() = Rc::downgrade(&consults);
        consults
    }

    /// New timing applies to consultations opened from now on (a reload).
    pub fn set_times(&self, times: ConsultTimes) {
        self.times.set(times);
    }

    /// Re-arms the timers of every consultation left open by the last run.
    pub async fn restore(&self) -> Result<usize, StoreError> {
        let store = self.store.clone();
        let open = smol::unblock(move || store.open_consultations()).await?;
        let count = open.len();
        for record in open {
            self.open_room(record);
        }
        Ok(count)
    }

    /// Open consultations in memory.
    pub fn open_count(&self) -> usize {
        self.rooms.borrow().len()
    }

    /// Consultations `patient` has open, counting creates still awaiting the store.
    pub fn open_of(&self, patient: &str) -> usize {
        self.open_by_patient
            .borrow()
            .get(patient)
            .copied()
            .unwrap_or(0)
    }

    /// A patient opens a consultation with a doctor, unless they already have `max_open` open
    /// (invariant 5): then nothing changes.
    pub async fn create(
        &self,
        patient: &str,
        doctor: &str,
        max_open: usize,
    ) -> Result<Consultation, CreateError> {
        let open = self.open_of(patient);
        if open >= max_open {
            log::warn!(
                "event=consultation_refused reason=too_many_open user={} open={open} \
                 max={max_open}",
                crate::observe::LogValue(patient)
            );
            self.metrics.consultation_refused();
            return Err(CreateError::TooManyOpen);
        }
        let Some(consults) = self.self_weak.borrow().upgrade() else {
            return Err(CreateError::Consult(ConsultError::Internal(
                "consultations are shutting down".to_owned(),
            )));
        };
        // Counted before the await (invariant 5); given back when the task below ends, after
        // `open_room` has counted the room itself.
        let reservation = Reservation::take(consults.clone(), patient);
        let now_ms = self.server.timers().unix_ms();
        let (patient, doctor) = (patient.to_owned(), doctor.to_owned());
        let (answer_tx, answer_rx) = async_channel::bounded(1);
        // The commit and the room's opening run in a task of the server scope, not in the
        // caller's future (invariant 6): a create whose request is cancelled (the client hung
        // up) after its op reached the store still opens the room it committed.
        self.server.spawn(async move {
            let _reservation = reservation;
            let outcome = consults
                .store
                .create_consultation(&patient, &doctor, now_ms)
                .await;
            let answer = match outcome {
                Ok(record) => {
                    consults.open_room(record.clone());
                    log::info!(
                        "event=consultation_opened consultation={} scope={}",
                        record.id,
                        consults.server.path()
                    );
                    Ok(record)
                }
                Err(e) => Err(CreateError::from(e)),
            };
            // The caller may be gone: the room is open either way.
            let _ = answer_tx.try_send(answer);
        });
        match answer_rx.recv().await {
            Ok(answer) => answer,
            // The task was cancelled with the server scope (shutdown): no room was opened; if
            // the op still commits, the next start restores the consultation with its room.
            Err(_) => Err(CreateError::Consult(ConsultError::Internal(
                "create ended with the server".to_owned(),
            ))),
        }
    }

    /// The consultation as its member (or an admin) sees it.
    pub async fn get(&self, id: &str, caller: &Caller<'_>) -> Result<Consultation, ConsultError> {
        if let Some(room) = self.room(id) {
            let record = room.record.borrow().clone();
            return visible(record, caller);
        }
        let store = self.store.clone();
        let key = id.to_owned();
        let record = smol::unblock(move || store.consultation(&key)).await?;
        visible(record.ok_or(ConsultError::NotFound)?, caller)
    }

    /// The caller's consultations, newest first.
    pub async fn list(&self, user: &str, limit: usize) -> Result<Vec<Consultation>, ConsultError> {
        let store = self.store.clone();
        let user = user.to_owned();
        let mut list = smol::unblock(move || store.consultations_of(&user, limit)).await?;
        // Open ones: the live record has the current last_seq.
        for record in list.iter_mut() {
            if let Some(room) = self.room(&record.id) {
                *record = room.record.borrow().clone();
            }
        }
        Ok(list)
    }

    /// History: messages with seq > after, ascending, at most `limit`.
    pub async fn history(
        &self,
        id: &str,
        caller: &Caller<'_>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ConsultError> {
        self.get(id, caller).await?;
        let store = self.store.clone();
        let key = id.to_owned();
        Ok(smol::unblock(move || store.messages_after(&key, after, limit)).await?)
    }

    /// Subscribes `outbox` to consultation `id` in replay mode if it is open. Returns the
    /// record's `last_seq`; if it is open, the caller replays history, then calls
    /// [`Consults::go_live`]. An open one is checked on its live record, not a copy of it
    /// (three `String`s per join).
    pub async fn join(
        &self,
        id: &str,
        caller: &Caller<'_>,
        outbox: &Outbox,
    ) -> Result<u64, ConsultError> {
        let Some(room) = self.room(id) else {
            return Ok(self.get(id, caller).await?.last_seq);
        };
        let (last_seq, open) = {
            let record = room.record.borrow();
            if !may_see(&record, caller) {
                return Err(ConsultError::NotFound);
            }
            (record.last_seq, record.state == ConsultState::Open)
        };
        if open {
            room.subscribe(caller.user, outbox);
        }
        Ok(last_seq)
    }

    /// The highest seq of open consultation `id` fanned out so far (every seq up to it is
    /// committed); `None` when it is not open.
    pub fn delivered_seq(&self, id: &str) -> Option<u64> {
        self.room(id).map(|room| room.last_seq())
    }

    /// Ends `session_id`'s replay of `id` after seq `replayed`; returns the presence frames the
    /// joiner should see and the consultation's last seq.
    pub fn go_live(&self, id: &str, session_id: u64, replayed: u64) -> (Vec<Bytes>, Option<u64>) {
        match self.room(id) {
            Some(room) => (room.go_live(session_id, replayed), Some(room.last_seq())),
            None => (Vec::new(), None),
        }
    }

    /// Stops live delivery of `id` to `session_id`.
    pub fn leave(&self, id: &str, session_id: u64) -> bool {
        self.room(id)
            .is_some_and(|room| room.unsubscribe(session_id))
    }

    /// Stores a message durably and relays it to every other joined socket (invariant 2):
    /// [`Consults::begin_send`], then the ticket's commit.
    pub async fn send(
        &self,
        caller: &Caller<'_>,
        msg: Outgoing<'_>,
    ) -> Result<Appended, ConsultError> {
        self.begin_send(caller, msg).await?.await
    }

    /// The first half of [`Consults::send`]: checks membership and queues the append, waiting
    /// only while the store's queue is full. Sends begun one after another by one task commit
    /// in that order. The returned ticket resolves after the commit, once the room is updated
    /// and the message relayed (invariant 2); a ticket dropped before that still relays when
    /// the commit lands ([`SendTicket`]).
    pub async fn begin_send(
        &self,
        caller: &Caller<'_>,
        msg: Outgoing<'_>,
    ) -> Result<SendTicket, ConsultError> {
        let Some(room) = self.writable_room(caller, msg.consultation) else {
            // Not open in memory: closed, missing, or not the caller's.
            let record = self.get(msg.consultation, caller).await?;
            return Err(match record.state {
                ConsultState::Closed => ConsultError::Closed,
                ConsultState::Open => ConsultError::NotFound,
            });
        };
        let room = room?;
        let started = std::time::Instant::now();
        let pending = self.store.begin_append(new_message(caller, &msg)).await?;
        Ok(self.ticket(room, pending, &msg, started))
    }

    /// [`Consults::begin_send`] when it needs no wait, the common case: the consultation is
    /// open in memory and the store's queue has room. `None` when it would wait (the caller
    /// then uses `begin_send`): nothing was queued.
    pub fn try_begin_send(
        &self,
        caller: &Caller<'_>,
        msg: &Outgoing<'_>,
    ) -> Option<Result<SendTicket, ConsultError>> {
        let room = match self.writable_room(caller, msg.consultation)? {
            Ok(room) => room,
            Err(error) => return Some(Err(error)),
        };
        let started = std::time::Instant::now();
        match self.store.try_begin_append(new_message(caller, msg)) {
            Ok(Some(pending)) => Some(Ok(self.ticket(room, pending, msg, started))),
            Ok(None) => None,
            Err(error) => Some(Err(error.into())),
        }
    }

    /// The open room `caller` may send into; `None` if `id` is not open in memory.
    fn writable_room(
        &self,
        caller: &Caller<'_>,
        id: &str,
    ) -> Option<Result<Rc<Room>, ConsultError>> {
        let room = self.room(id)?;
        if room.is_member(caller.user) {
            return Some(Ok(room));
        }
        // Admins read any consultation; they never write into one.
        Some(Err(if caller.admin {
            ConsultError::Forbidden
        } else {
            ConsultError::NotFound
        }))
    }

    fn ticket(
        &self,
        room: Rc<Room>,
        pending: PendingAppend,
        msg: &Outgoing<'_>,
        started: std::time::Instant,
    ) -> SendTicket {
        SendTicket {
            state: Some(InFlightSend {
                commit: pending,
                relay: Relay {
                    room,
                    metrics: self.metrics.clone(),
                    idle_ms: self.times.get().idle_ms,
                    sender_session: msg.session_id,
                    started,
                },
            }),
        }
    }

    /// A member closes the consultation.
    pub async fn close(&self, id: &str, caller: &Caller<'_>) -> Result<Consultation, ConsultError> {
        let record = self.get(id, caller).await?;
        if caller.admin && record.patient != caller.user && record.doctor != caller.user {
            return Err(ConsultError::Forbidden);
        }
        if record.state == ConsultState::Closed {
            return Err(ConsultError::Closed);
        }
        self.close_with(id, "closed_by_member").await
    }

    async fn close_with(&self, id: &str, reason: &str) -> Result<Consultation, ConsultError> {
        let now_ms = self.server.timers().unix_ms();
        let record = self.store.close_consultation(id, reason, now_ms).await?;
        let room = self.rooms.borrow_mut().remove(id);
        if let Some(room) = room {
            self.uncount(&room.record.borrow().patient);
            room.close_all(reason);
            log::info!(
                "event=consultation_closed consultation={id} reason={reason} scope={}",
                room.scope.path()
            );
            room.scope.cancel(CancelReason::Finished);
        }
        Ok(record)
    }

    fn room(&self, id: &str) -> Option<Rc<Room>> {
        self.rooms.borrow().get(id).cloned()
    }

    /// Creates the live state and scope of an open consultation, with its two deadlines.
    fn open_room(&self, record: Consultation) {
        let times = self.times.get();
        let clock = self.server.timers().clock();
        let idle_at =
            clock.tick_at_unix_ms(record.last_message_at_ms.saturating_add(times.idle_ms));
        let limit_at = clock.tick_at_unix_ms(record.created_at_ms.saturating_add(times.limit_ms));
        let scope = self.server.child(ScopeKind::Consultation, &record.id);
        let idle = scope.deadline("consult_idle", idle_at);
        let limit = scope.deadline("consult_limit", limit_at);
        let id = record.id.clone();
        let consults = self.self_weak.borrow().clone();
        // A hook, not a watcher task per consultation; the close it starts runs in the server
        // scope: the consultation's own scope is what ends.
        let close_id = id.clone();
        scope.on_cancel(move |reason| {
            let reason = match reason {
                CancelReason::Deadline("consult_idle") => "idle",
                CancelReason::Deadline("consult_limit") => "time_limit",
                _ => return,
            };
            let Some(consults) = consults.upgrade() else {
                return;
            };
            let server = consults.server.clone();
            server.spawn(async move {
                if let Err(error) = consults.close_with(&close_id, reason).await {
                    log::warn!(
                        "event=consultation_close_failed consultation={close_id} error={error:?}"
                    );
                }
            });
        });
        let patient = record.patient.clone();
        let room = Rc::new(Room::new(record, scope, idle, limit));
        if self.rooms.borrow_mut().insert(id, room).is_none() {
            self.count(patient);
        }
    }

    /// One more open consultation (or create in flight) of `patient`.
    fn count(&self, patient: String) {
        *self
            .open_by_patient
            .borrow_mut()
            .entry(patient)
            .or_insert(0) += 1;
    }

    /// One fewer; the entry goes when it reaches zero.
    fn uncount(&self, patient: &str) {
        let mut counts = self.open_by_patient.borrow_mut();
        if let Some(n) = counts.get_mut(patient) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(patient);
            }
        }
    }
}

/// A create's slot in its patient's count, held across the store's await (invariant 5). Its
/// drop gives the slot back whatever happened: on success the room counts itself by then, on
/// failure nothing was opened.
struct Reservation {
    consults: Rc<Consults>,
    patient: String,
}

impl Reservation {
    fn take(consults: Rc<Consults>, patient: &str) -> Reservation {
        consults.count(patient.to_owned());
        Reservation {
            consults,
            patient: patient.to_owned(),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.consults.uncount(&self.patient);
    }
}

/// An append's commit: a named, unboxed future, so a ticket is storable in a session's FIFO
/// and movable into a task if the session goes away.
type Commit = PendingAppend;

/// A queued send (see [`Consults::begin_send`]). Awaiting it gives the send's outcome after the
/// commit, with the room updated and the message relayed.
///
/// # Invariants
/// Every committed message is handed to [`Room::deliver`] exactly once, whether or not the
/// ticket is awaited to the end: the room delivers in seq order, so a seq never handed over
/// would hold back every later message of the consultation. Dropping an unfinished ticket
/// therefore moves its commit into a task of the consultation's scope, which relays it.
pub struct SendTicket {
    /// The commit and what to do after it; `None` once the outcome was returned.
    state: Option<InFlightSend>,
}

struct InFlightSend {
    commit: Commit,
    relay: Relay,
}

/// What a send does once its commit is known: the second half of [`Consults::send`].
struct Relay {
    room: Rc<Room>,
    metrics: Rc<Metrics>,
    /// The consultation's idle timeout, re-armed by the message.
    idle_ms: u64,
    /// The sending socket (not relayed to).
    sender_session: u64,
    /// When the send was begun: the commit latency metric includes the queueing.
    started: std::time::Instant,
}

impl Relay {
    /// Updates the room and relays a new message (invariant 2: only after its commit).
    fn finish(self, outcome: Result<Appended, StoreError>) -> Result<Appended, ConsultError> {
        let appended = outcome?;
        self.metrics
            .observe_commit(self.started.elapsed().as_secs_f64());
        if !appended.duplicate {
            self.metrics.inc_stored(1);
            let m = &appended.message;
            {
                let mut record = self.room.record.borrow_mut();
                record.last_seq = record.last_seq.max(m.seq);
                record.last_message_at_ms = m.ts_ms;
            }
            self.room.idle.reset_after(self.idle_ms);
            let relayed = self
                .room
                .deliver(m.seq, message_frame(m), self.sender_session);
            self.metrics.inc_relayed(relayed as u64);
        }
        Ok(appended)
    }
}

impl Future for SendTicket {
    type Output = Result<Appended, ConsultError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(in_flight) = self.state.as_mut() else {
            return Poll::Ready(Err(ConsultError::Internal(
                "send ticket polled after its outcome".to_owned(),
            )));
        };
        let outcome = ready!(Pin::new(&mut in_flight.commit).poll(cx));
        match self.state.take() {
            Some(in_flight) => Poll::Ready(in_flight.relay.finish(outcome)),
            None => Poll::Ready(Err(ConsultError::Internal(
                "send ticket lost its state".to_owned(),
            ))),
        }
    }
}

impl Drop for SendTicket {
    fn drop(&mut self) {
        // The store commits the op anyway; the room must still see it (the invariant above).
        if let Some(InFlightSend { commit, relay }) = self.state.take() {
            let room = relay.room.clone();
            room.scope.spawn(async move {
                if let Err(ConsultError::Internal(detail)) = relay.finish(commit.await) {
                    log::warn!(
                        "event=orphan_send_failed error={}",
                        crate::observe::LogValue(&detail)
                    );
                }
            });
        }
    }
}

/// The store's copy of an outgoing message.
fn new_message(caller: &Caller<'_>, msg: &Outgoing<'_>) -> NewMessage {
    NewMessage {
        consultation: msg.consultation.to_owned(),
        from: caller.user.to_owned(),
        role: caller.role.to_owned(),
        body: msg.body.to_owned(),
        client_id: msg.client_id.to_owned(),
        ts_ms: msg.ts_ms,
        traceparent: msg.traceparent.to_header(),
    }
}

fn visible(record: Consultation, caller: &Caller<'_>) -> Result<Consultation, ConsultError> {
    if may_see(&record, caller) {
        Ok(record)
    } else {
        Err(ConsultError::NotFound)
    }
}

/// A member, or an admin (invariant 1).
fn may_see(record: &Consultation, caller: &Caller<'_>) -> bool {
    caller.admin || record.patient == caller.user || record.doctor == caller.user
}

/// The `message` frame of a stored message, serialised once for all its recipients.
pub fn message_frame(m: &StoredMessage) -> Bytes {
    frame_json::message_json(m).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Runtime;
    use crate::wheel::{Clock, Timers};

    /// Consultations live for an hour in these tests: no deadline fires during one.
    const TIMES: ConsultTimes = ConsultTimes {
        idle_ms: 60 * 60 * 1_000,
        limit_ms: 60 * 60 * 1_000,
    };

    const PATIENT: Caller<'static> = Caller {
        user: "p1",
        role: "patient",
        admin: false,
    };

    /// Runs `test` with consultations over a real store in `dir`; shuts the store down after.
    fn with_consults<F, Fut>(dir: &std::path::Path, test: F)
    where
        F: FnOnce(Rc<Consults>) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let store = Store::open(dir).expect("store opens");
        let rt = Runtime::new(Timers::new(Clock::monotonic()));
        let server = Rc::new(rt.root(ScopeKind::Server, "test"));
        rt.block_on(async move {
            let consults = Consults::new(store.clone(), server, Rc::new(Metrics::new()), TIMES);
            consults.restore().await.expect("restore");
            test(consults).await;
            store.shutdown().await;
        });
    }

    #[test]
    fn consult_create_at_cap_refused_and_nothing_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_consults(dir.path(), |consults| async move {
            assert!(consults.create("p1", "d1", 2).await.is_ok());
            assert!(consults.create("p1", "d1", 2).await.is_ok());
            let refused = consults.create("p1", "d1", 2).await;
            assert_eq!(refused, Err(CreateError::TooManyOpen));
            assert_eq!(consults.open_of("p1"), 2);
            assert_eq!(consults.open_count(), 2);
            // Another patient has their own count.
            assert!(consults.create("p2", "d1", 2).await.is_ok());
        });
    }

    #[test]
    fn consult_creates_interleaved_at_their_awaits_open_exactly_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_consults(dir.path(), |consults| async move {
            // Four creates of one patient polled together: each passes its check before any
            // store commit lands.
            let create = || consults.create("p1", "d1", 2);
            let ((a, b), (c, d)) = smol::future::zip(
                smol::future::zip(create(), create()),
                smol::future::zip(create(), create()),
            )
            .await;
            let outcomes = [a, b, c, d];
            let opened = outcomes.iter().filter(|o| o.is_ok()).count();
            let refused = outcomes
                .iter()
                .filter(|o| **o == Err(CreateError::TooManyOpen))
                .count();
            assert_eq!((opened, refused), (2, 2));
            assert_eq!(consults.open_of("p1"), 2);
            assert_eq!(consults.open_count(), 2);
        });
    }

    #[test]
    fn consult_close_frees_a_slot() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_consults(dir.path(), |consults| async move {
            let first = consults.create("p1", "d1", 1).await.expect("first opens");
            assert_eq!(
                consults.create("p1", "d1", 1).await,
                Err(CreateError::TooManyOpen)
            );
            consults.close(&first.id, &PATIENT).await.expect("closes");
            assert_eq!(consults.open_of("p1"), 0);
            assert!(consults.create("p1", "d1", 1).await.is_ok());
        });
    }

    #[test]
    fn consult_create_store_failure_gives_slot_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_consults(dir.path(), |consults| async move {
            consults.store.set_fail_commits(true);
            let failed = consults.create("p1", "d1", 1).await;
            assert!(
                matches!(failed, Err(CreateError::Consult(ConsultError::Internal(_)))),
                "{failed:?}"
            );
            assert_eq!(consults.open_of("p1"), 0);
            consults.store.set_fail_commits(false);
            assert!(consults.create("p1", "d1", 1).await.is_ok());
        });
    }

    #[test]
    fn consult_create_dropped_mid_await_still_opens_its_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_consults(dir.path(), |consults| async move {
            let mut create = Box::pin(consults.create("p1", "d1", 1));
            let first = smol::future::poll_once(create.as_mut()).await;
            assert!(first.is_none(), "the create waits for the store");
            assert_eq!(consults.open_of("p1"), 1, "reserved while in flight");
            // The caller stops waiting (an HTTP request cancelled): the op is in the store.
            drop(create);
            // A later create of another patient commits after it (the writer is FIFO) and is
            // answered through the same kind of task, queued after the first one's.
            assert!(consults.create("p2", "d1", 1).await.is_ok());
            assert_eq!(
                consults.open_count(),
                2,
                "the dropped create's room is open"
            );
            assert_eq!(consults.open_of("p1"), 1, "and counted: the cap holds");
            assert_eq!(
                consults.create("p1", "d1", 1).await,
                Err(CreateError::TooManyOpen)
            );
        });
    }

    #[test]
    fn consult_restart_counts_restored_rooms() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_consults(dir.path(), |consults| async move {
            assert!(consults.create("p1", "d1", 2).await.is_ok());
            assert!(consults.create("p1", "d1", 2).await.is_ok());
        });
        with_consults(dir.path(), |consults| async move {
            assert_eq!(consults.open_of("p1"), 2);
            assert_eq!(
                consults.create("p1", "d1", 2).await,
                Err(CreateError::TooManyOpen)
            );
        });
    }
}
