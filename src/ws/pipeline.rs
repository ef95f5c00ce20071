//! A session's sends in flight: a bounded FIFO of queued appends, answered in send order.
//!
//! # Invariants
//! 1. At most [`MAX_IN_FLIGHT`] sends are held; the session reads no frame while the FIFO is
//!    full, so a fast client is held back by its own TCP window, not by our memory.
//! 2. Outcomes come out in the order the sends were pushed: a socket's acks and send errors
//!    follow its sends, and since the store applies one task's appends in the order they were
//!    queued, its seqs do too.
//! 3. Dropping the FIFO (the session ends) drops its tickets, and a dropped ticket still relays
//!    its commit ([`SendTicket`]): nothing committed is lost to the other members; the sender
//!    misses only the ack and resumes with `after=` (SPEC).
//!
//! # Implementation
//! A `VecDeque` of entries of which only the head is polled. A send refused before it was
//! queued (rate limited, not a member, closed) enters as an already-known outcome, so its
//! error frame keeps its place among the acks. The deque gives its memory back when it drains:
//! an idle socket holds none.

use crate::consult::{ConsultError, SendTicket};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Sends one socket may have queued but not yet answered. 8 in flight per socket lets a socket
/// send 8 per commit (400/s at a 20 ms commit, far above SPEC's 50/s per socket) and lets 32
/// sockets fill a 256-op commit batch. It also bounds what one sender's commit batch relays into
/// each reader's outbox at once: 8 frames, which the default outbound queue (256 frames, 1 MiB)
/// takes even at the 64 KiB message limit, so a reader that keeps up is never a slow consumer.
pub const MAX_IN_FLIGHT: usize = 8;

// The configuration refuses outbound queues that could not take one sender's batch of relays.
const _: () = assert!(MAX_IN_FLIGHT <= crate::config::settings::MIN_OUTBOUND_QUEUE_MESSAGES);

/// How one send ended, for the frame that answers it.
#[derive(Debug)]
pub enum Outcome {
    /// Committed (or a retry of a committed `client_id`): answered with `ack`. Only what the
    /// ack needs is kept: outcomes travel in the session loop's event, which every socket's task
    /// holds room for.
    Acked { consultation: String, seq: u64 },
    /// Refused by the consultation or the store: answered with its error.
    Failed(ConsultError),
    /// Over the socket's send rate: answered with `rate_limited`.
    RateLimited,
}

enum Work {
    /// Queued in the store; resolves after the commit and the relay.
    Waiting(SendTicket),
    /// Already decided when it was pushed.
    Known(Outcome),
}

struct Entry {
    /// The client's id for the send (the error frame's `ref`).
    client_id: String,
    work: Work,
}

/// The FIFO (invariants 1–3).
pub struct Pipeline {
    entries: VecDeque<Entry>,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline {
            entries: VecDeque::new(),
        }
    }

    /// True when no more sends may be read (invariant 1).
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_IN_FLIGHT
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a queued send.
    pub fn push_waiting(&mut self, client_id: &str, ticket: SendTicket) {
        self.push(client_id, Work::Waiting(ticket));
    }

    /// Adds a send whose outcome is already known.
    pub fn push_known(&mut self, client_id: &str, outcome: Outcome) {
        self.push(client_id, Work::Known(outcome));
    }

    fn push(&mut self, client_id: &str, work: Work) {
        debug_assert!(
            self.entries.len() < MAX_IN_FLIGHT,
            "pipeline overfilled: len={} max={MAX_IN_FLIGHT}",
            self.entries.len()
        );
        self.entries.push_back(Entry {
            client_id: client_id.to_owned(),
            work,
        });
    }

    /// The head's outcome once it is known, with its `client_id`. Never resolves while the FIFO
    /// is empty: the session loop builds this future anew each turn, after any push.
    pub async fn next(&mut self) -> (String, Outcome) {
        poll_fn(|cx| self.poll_head(cx)).await
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<(String, Outcome)> {
        let Some(head) = self.entries.front_mut() else {
            return Poll::Pending;
        };
        if let Work::Waiting(ticket) = &mut head.work {
            let outcome = match std::task::ready!(Pin::new(ticket).poll(cx)) {
                Ok(appended) => Outcome::Acked {
                    consultation: appended.message.consultation,
                    seq: appended.message.seq,
                },
                Err(error) => Outcome::Failed(error),
            };
            head.work = Work::Known(outcome);
        }
        let Some(Entry {
            client_id,
            work: Work::Known(outcome),
        }) = self.entries.pop_front()
        else {
            // The head was made Known just above.
            return Poll::Pending;
        };
        if self.entries.is_empty() {
            // Invariant of the implementation: an idle socket keeps no slots.
            self.entries = VecDeque::new();
        }
        Poll::Ready((client_id, outcome))
    }
}

impl Default for Pipeline {
    fn default() -> Pipeline {
        Pipeline::new()
    }
}
