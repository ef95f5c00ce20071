//! The live state of one open consultation: its scope and timers, the sockets that joined it,
//! presence, and in-order fan-out.
//!
//! # Invariants
//! 1. Messages are fanned out in seq order, each exactly once per live subscriber: a commit
//!    that completes out of order waits in `pending` until the gap before it is delivered.
//! 2. A subscriber that is still replaying history buffers live frames instead of receiving them;
//!    `go_live` hands over only frames with a seq above what it replayed, and later fan-outs
//!    skip seqs it replayed (committed before their relay ran) — no gap, no duplicate.
//! 3. `online[user]` counts that user's live subscribed sockets; `presence` is told when it goes
//!    0 → 1 or 1 → 0.
//!
//! # Implementation
//! A frame is serialised once into shared `Bytes` and queued to every recipient's outbox.

use super::frames::ServerFrame;
use super::outbox::Outbox;
use crate::scope::{Scope, ScopeTimer};
use crate::store::Consultation;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

/// Live frames a replaying subscriber may buffer before it counts as a slow consumer.
pub const MAX_REPLAY_BUFFER: usize = 1024;

enum SubState {
    /// Replaying history; live frames wait here with their seq.
    Replaying(Vec<(u64, Bytes)>),
    /// Receiving live frames with a seq above `after`, the last one it replayed. A message can
    /// be committed (and so readable by the replay) before its relay reaches the room: the
    /// store answers the writer's commit on another thread. Without this bound such a message
    /// would reach the joiner twice, once replayed and once live.
    Live { after: u64 },
}

struct Subscriber {
    user: String,
    outbox: Outbox,
    state: SubState,
}

pub struct Room {
    pub id: String,
    pub record: RefCell<Consultation>,
    /// The consultation's own scope under the server: its timers live here, not on a socket.
    pub scope: Scope,
    pub idle: ScopeTimer,
    pub limit: ScopeTimer,
    subscribers: RefCell<Vec<Subscriber>>,
    online: RefCell<HashMap<String, usize>>,
    /// Highest seq fanned out (invariant 1).
    delivered: Cell<u64>,
    /// Committed frames waiting for an earlier seq to be delivered.
    pending: RefCell<BTreeMap<u64, Bytes>>,
}

impl Room {
    pub fn new(record: Consultation, scope: Scope, idle: ScopeTimer, limit: ScopeTimer) -> Room {
        let delivered = record.last_seq;
        Room {
            id: record.id.clone(),
            record: RefCell::new(record),
            scope,
            idle,
            limit,
            // Its two members: a `Vec` would otherwise start with room for four.
            subscribers: RefCell::new(Vec::with_capacity(2)),
            online: RefCell::new(HashMap::new()),
            delivered: Cell::new(delivered),
            pending: RefCell::new(BTreeMap::new()),
        }
    }

    pub fn is_member(&self, user: &str) -> bool {
        let r = self.record.borrow();
        r.patient == user || r.doctor == user
    }

    pub fn last_seq(&self) -> u64 {
        self.delivered.get()
    }

    /// Adds a socket that will replay history first (invariant 2). A socket already subscribed
    /// starts over (a second `join` replays again).
    pub fn subscribe(&self, user: &str, outbox: &Outbox) {
        self.unsubscribe(outbox.session_id);
        self.subscribers.borrow_mut().push(Subscriber {
            user: user.to_owned(),
            outbox: outbox.clone(),
            state: SubState::Replaying(Vec::new()),
        });
    }

    /// Ends the replay of `session_id` after seq `replayed`: buffered frames above it go out,
    /// then live delivery. Returns the presence frames the joiner should see (other members
    /// online), after telling the others when this user just came online.
    pub fn go_live(&self, session_id: u64, replayed: u64) -> Vec<Bytes> {
        // The subscriber stays borrowed while `online` is updated (another `RefCell`), so its
        // user is not copied out; only what goes to the others waits for the borrow's end.
        let (announce, others) = {
            let mut subs = self.subscribers.borrow_mut();
            let Some(sub) = subs.iter_mut().find(|s| s.outbox.session_id == session_id) else {
                return Vec::new();
            };
            if let SubState::Replaying(buffer) =
                std::mem::replace(&mut sub.state, SubState::Live { after: replayed })
            {
                for (seq, frame) in buffer {
                    if seq > replayed && !sub.outbox.push(frame) {
                        break;
                    }
                }
            }
            let user = sub.user.as_str();
            let mut online = self.online.borrow_mut();
            let first = match online.get_mut(user) {
                Some(count) => {
                    *count += 1;
                    false
                }
                None => {
                    online.insert(user.to_owned(), 1);
                    true
                }
            };
            let others: Vec<Bytes> = online
                .keys()
                .filter(|u| u.as_str() != user)
                .map(|u| self.presence_frame(u, true))
                .collect();
            (first.then(|| self.presence_frame(user, true)), others)
        };
        if let Some(frame) = announce {
            self.broadcast_except(session_id, &frame);
        }
        others
    }

    /// Removes `session_id`'s subscription; true if it had one.
    pub fn unsubscribe(&self, session_id: u64) -> bool {
        let removed = {
            let mut subs = self.subscribers.borrow_mut();
            let Some(index) = subs.iter().position(|s| s.outbox.session_id == session_id) else {
                return false;
            };
            subs.swap_remove(index)
        };
        if matches!(removed.state, SubState::Live { .. }) {
            let last = {
                let mut online = self.online.borrow_mut();
                let count = online.entry(removed.user.clone()).or_insert(1);
                *count = count.saturating_sub(1);
                let last = *count == 0;
                if last {
                    online.remove(&removed.user);
                }
                last
            };
            if last {
                self.broadcast_except(session_id, &self.presence_frame(&removed.user, false));
            }
        }
        true
    }

    /// Fans out the committed message `seq` (invariant 1) to every subscriber except the
    /// sending socket. Returns how many sockets it was queued to.
    pub fn deliver(&self, seq: u64, frame: Bytes, sender_session: u64) -> usize {
        self.pending.borrow_mut().insert(seq, frame);
        let mut relayed = 0;
        // Bounded by the pending map, which only holds committed messages.
        loop {
            let next = self.delivered.get() + 1;
            let Some(frame) = self.pending.borrow_mut().remove(&next) else {
                break;
            };
            self.delivered.set(next);
            relayed += self.fan_out(next, &frame, sender_session);
        }
        if seq <= self.delivered.get() {
            self.pending
                .borrow_mut()
                .retain(|s, _| *s > self.delivered.get());
        }
        relayed
    }

    fn fan_out(&self, seq: u64, frame: &Bytes, sender_session: u64) -> usize {
        let mut count = 0;
        let mut subs = self.subscribers.borrow_mut();
        for sub in subs.iter_mut() {
            if sub.outbox.session_id == sender_session {
                continue;
            }
            match &mut sub.state {
                SubState::Live { after } => {
                    if seq > *after && sub.outbox.push(frame.clone()) {
                        count += 1;
                    }
                }
                SubState::Replaying(buffer) => {
                    if buffer.len() >= MAX_REPLAY_BUFFER {
                        // Like a full queue: the session closes (4029) and resumes later.
                        sub.outbox.overflow();
                        continue;
                    }
                    buffer.push((seq, frame.clone()));
                }
            }
        }
        count
    }

    /// Queues `frame` to every live subscriber but `except`.
    pub fn broadcast_except(&self, except: u64, frame: &Bytes) {
        for sub in self.subscribers.borrow().iter() {
            if sub.outbox.session_id != except && matches!(sub.state, SubState::Live { .. }) {
                sub.outbox.push(frame.clone());
            }
        }
    }

    /// Tells every subscriber the consultation closed, and drops them all.
    pub fn close_all(&self, reason: &str) {
        let frame: Bytes = ServerFrame::ConsultationClosed {
            consultation: &self.id,
            reason,
        }
        .to_json()
        .into();
        let subs = std::mem::take(&mut *self.subscribers.borrow_mut());
        for sub in subs {
            sub.outbox.push(frame.clone());
        }
        self.online.borrow_mut().clear();
    }

    fn presence_frame(&self, user: &str, online: bool) -> Bytes {
        super::frame_json::presence_json(&self.id, user, online).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consult::outbox::{outbox, OutboxRx};
    use crate::observe::Metrics;
    use crate::scope::{Runtime, ScopeKind};
    use crate::store::ConsultState;
    use crate::wheel::{Clock, Timers};
    use std::rc::Rc;

    fn room(rt: &Rc<Runtime>) -> Room {
        let scope = rt.root(ScopeKind::Consultation, "c1");
        let idle = scope.deadline("consult_idle", u64::MAX);
        let limit = scope.deadline("consult_limit", u64::MAX);
        let record = Consultation {
            id: "c1".to_owned(),
            patient: "p".to_owned(),
            doctor: "d".to_owned(),
            state: ConsultState::Open,
            created_at_ms: 0,
            last_seq: 0,
            last_message_at_ms: 0,
            closed_reason: None,
            closed_at_ms: None,
        };
        Room::new(record, scope, idle, limit)
    }

    fn frame(seq: u64) -> Bytes {
        Bytes::from(format!("m{seq}"))
    }

    fn drain(rx: &OutboxRx) -> Vec<Bytes> {
        std::iter::from_fn(|| rx.try_recv()).collect()
    }

    #[test]
    fn room_replay_then_live_delivers_each_seq_once() {
        let rt = Runtime::new(Timers::new(Clock::manual(0)));
        let server = rt.root(ScopeKind::Server, "s");
        let session = server.child(ScopeKind::Session, "d");
        let (tx, rx) = outbox(7, session.downgrade(), 64, 1 << 20, Rc::new(Metrics::new()));
        let room = room(&rt);
        room.deliver(1, frame(1), 1);
        room.subscribe("d", &tx);
        // Seq 2 is relayed while the joiner replays: it waits in the replay buffer.
        room.deliver(2, frame(2), 1);
        // Seqs 3 and 4 were committed, so the replay read them from the store, but their
        // relay had not reached the room yet when the joiner went live after seq 4.
        room.go_live(7, 4);
        assert_eq!(
            drain(&rx),
            Vec::<Bytes>::new(),
            "seq 2 was replayed, not resent"
        );
        room.deliver(3, frame(3), 1);
        room.deliver(4, frame(4), 1);
        room.deliver(5, frame(5), 1);
        assert_eq!(
            drain(&rx),
            vec![frame(5)],
            "3 and 4 were replayed; 5 is new"
        );
    }
}
