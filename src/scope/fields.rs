//! A scope's log fields, written straight into the formatter: its path and its trace id.
//!
//! # Invariants
//! 1. [`ScopePath`] writes exactly what the path always was: `kind:id` segments from the root
//!    down, joined by `/` (`server:1/conn:7/session:9`), read from the tree when it is written,
//!    so a re-parented scope (a session moved from its upgrade request to the server) shows
//!    its new path at once. Any depth is written in full.
//! 2. [`TraceIdHex`] writes a trace id as 32 lowercase hex digits, or `-` when there is none.
//! 3. Neither allocates for the trees the gateway builds, and neither holds a `RefCell`
//!    borrow of a node while the formatter runs.
//!
//! # Implementation
//! Both are built on every log line of a session (issue 6: a `String` per path and a `{:02x}`
//! per trace-id byte cost ~14k instructions per socket). The path walk collects `(kind, id)`
//! leaf first into a stack array of [`PATH_INLINE_DEPTH`] segments (spilling to a `Vec` only
//! for deeper trees, which the gateway never builds), then gathers them root first into a
//! [`PATH_BUF_BYTES`] stack buffer written with one `write_str`; the trace id's hex likewise.

use super::node::{Node, ScopeKind};
use std::fmt;
use std::rc::Rc;

/// Segments of a path kept on the stack while it is written. The gateway's tree is server →
/// connection → request | session, consultations under the server: four levels at most; a
/// deeper tree (tests build 20,000 levels) spills the upper segments to a `Vec`.
const PATH_INLINE_DEPTH: usize = 8;

/// Digits of `u64::MAX`.
const U64_DIGITS: usize = 20;

/// Bytes in a trace id (W3C Trace Context §3.2.2.3); written as twice as many hex digits.
pub const TRACE_ID_BYTES: usize = 16;

/// A scope's path, written by walking its parents (invariant 1). From [`super::Scope::path`].
pub struct ScopePath<'a>(pub(crate) &'a Node);

impl fmt::Display for ScopePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut inline = [(ScopeKind::Server, 0u64); PATH_INLINE_DEPTH];
        let mut inline_len = 0;
        // Upper segments of a deeper tree, leaf first like `inline`; empty (no allocation)
        // for the gateway's trees.
        let mut spill: Vec<(ScopeKind, u64)> = Vec::new();
        let mut segment = (self.0.kind, self.0.id);
        // An owned handle on the node being visited: no borrow outlives one step (invariant 3).
        let mut parent = self.0.parent.borrow().as_ref().map(|(p, _)| p.clone());
        loop {
            match inline.get_mut(inline_len) {
                Some(slot) => {
                    *slot = segment;
                    inline_len += 1;
                }
                None => spill.push(segment),
            }
            let Some(node) = parent else { break };
            segment = (node.kind, node.id);
            parent = next_parent(&node);
        }
        let upper = spill.iter().rev();
        let lower = inline.iter().take(inline_len).rev();
        let mut out = StackWriter::new(f);
        for (i, (kind, id)) in upper.chain(lower).enumerate() {
            if i > 0 {
                out.push(b"/")?;
            }
            out.push(kind.as_str().as_bytes())?;
            out.push(b":")?;
            let mut digits = [0u8; U64_DIGITS];
            out.push(decimal(*id, &mut digits))?;
        }
        out.flush()
    }
}

/// Bytes of a path gathered before one `write_str` (each `write_str` into a log line costs
/// its own call through the formatter's writer). The gateway's paths are under 60 bytes.
const PATH_BUF_BYTES: usize = 128;

/// Gathers ASCII pieces into a stack buffer and writes them in one `write_str`, flushing
/// early when the buffer is full (a deep tree). Only ASCII is pushed, so a flush never splits
/// a character.
struct StackWriter<'f, 'a> {
    f: &'f mut fmt::Formatter<'a>,
    buf: [u8; PATH_BUF_BYTES],
    len: usize,
}

impl<'f, 'a> StackWriter<'f, 'a> {
    fn new(f: &'f mut fmt::Formatter<'a>) -> Self {
        StackWriter {
            f,
            buf: [0; PATH_BUF_BYTES],
            len: 0,
        }
    }

    fn push(&mut self, piece: &[u8]) -> fmt::Result {
        let end = self.len + piece.len();
        if end > PATH_BUF_BYTES {
            self.flush()?;
            return self.push_fresh(piece);
        }
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(piece);
        self.len = end;
        Ok(())
    }

    /// `piece` into an empty buffer (or straight through when it is larger).
    fn push_fresh(&mut self, piece: &[u8]) -> fmt::Result {
        match self.buf.get_mut(..piece.len()) {
            Some(slot) => {
                slot.copy_from_slice(piece);
                self.len = piece.len();
                Ok(())
            }
            None => self
                .f
                .write_str(std::str::from_utf8(piece).map_err(|_| fmt::Error)?),
        }
    }

    fn flush(&mut self) -> fmt::Result {
        let filled = self.buf.get(..self.len).ok_or(fmt::Error)?;
        self.len = 0;
        self.f
            .write_str(std::str::from_utf8(filled).map_err(|_| fmt::Error)?)
    }
}

fn next_parent(node: &Rc<Node>) -> Option<Rc<Node>> {
    node.parent.borrow().as_ref().map(|(p, _)| p.clone())
}

/// `n` in decimal, written at the end of `buf`; the digits returned.
fn decimal(mut n: u64, buf: &mut [u8; U64_DIGITS]) -> &[u8] {
    let mut start = U64_DIGITS;
    for slot in buf.iter_mut().rev() {
        // `n % 10` is a digit: the cast cannot truncate.
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        start -= 1;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// A trace id as a log field (invariant 2). From [`super::Scope::trace_id_hex`], or built from
/// a `TraceParent`'s id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIdHex(pub Option<[u8; TRACE_ID_BYTES]>);

impl fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("-"),
            Some(bytes) => {
                let mut buf = [0u8; TRACE_ID_BYTES * 2];
                f.write_str(hex_lower(bytes, &mut buf)?)
            }
        }
    }
}

/// `bytes` as lowercase hex in `out` (two digits a byte); `Err` if `out` is too short.
pub fn hex_lower<'o>(bytes: &[u8], out: &'o mut [u8]) -> Result<&'o str, fmt::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let len = bytes.len() * 2;
    let out = out.get_mut(..len).ok_or(fmt::Error)?;
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        if let [high, low] = pair {
            // Both nibbles are < 16: `get` always finds a digit.
            *high = DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *low = DIGITS
                .get(usize::from(byte & 0x0f))
                .copied()
                .unwrap_or(b'0');
        }
    }
    std::str::from_utf8(out).map_err(|_| fmt::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The encoding the log lines had before (`{:02x}` per byte).
    fn old_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    use crate::scope::{Runtime, Scope};
    use crate::wheel::{Clock, Timers};

    /// The path as it was built before (a `String` from the collected chain).
    fn old_path(scope: &Scope) -> String {
        let mut chain = vec![(scope.kind(), scope.id())];
        let mut cursor = scope.node.parent.borrow().as_ref().map(|(p, _)| p.clone());
        while let Some(node) = cursor {
            chain.push((node.kind, node.id));
            cursor = next_parent(&node);
        }
        let segments: Vec<String> = chain
            .iter()
            .rev()
            .map(|(kind, id)| format!("{}:{id}", kind.as_str()))
            .collect();
        segments.join("/")
    }

    fn runtime() -> Rc<Runtime> {
        Runtime::new(Timers::new(Clock::manual(0)))
    }

    #[test]
    fn scope_path_gateway_tree_matches_the_old_string() {
        let rt = runtime();
        let server = rt.root(ScopeKind::Server, "s");
        let conn = server.child(ScopeKind::Connection, "c");
        let request = conn.child(ScopeKind::Request, "r");
        let session = request.child(ScopeKind::Session, "u");
        let consult = server.child(ScopeKind::Consultation, "k");
        for scope in [&server, &conn, &request, &session, &consult] {
            assert_eq!(scope.path().to_string(), old_path(scope));
        }
        assert_eq!(
            session.path().to_string(),
            format!(
                "server:{}/conn:{}/req:{}/session:{}",
                server.id(),
                conn.id(),
                request.id(),
                session.id()
            )
        );
    }

    #[test]
    fn scope_path_reparented_session_shows_the_new_parent() {
        let rt = runtime();
        let server = rt.root(ScopeKind::Server, "s");
        let conn = server.child(ScopeKind::Connection, "c");
        let request = conn.child(ScopeKind::Request, "r");
        let session = request.child(ScopeKind::Session, "u");
        let before = session.path().to_string();
        session.reparent(&server.downgrade());
        drop(request);
        let after = session.path().to_string();
        assert_ne!(before, after);
        assert_eq!(
            after,
            format!("server:{}/session:{}", server.id(), session.id())
        );
        assert_eq!(after, old_path(&session));
    }

    #[test]
    fn scope_path_deeper_than_inline_depth_is_written_in_full() {
        let rt = runtime();
        let root = rt.root(ScopeKind::Server, "s");
        let mut chain = vec![root.child(ScopeKind::Task, "0")];
        for depth in 1..3 * PATH_INLINE_DEPTH {
            let next = chain.last().map(|s| s.child(ScopeKind::Task, "n"));
            chain.extend(next);
            let leaf = chain.last().map(|s| (s.path().to_string(), old_path(s)));
            let (new, old) = leaf.unwrap_or_default();
            assert_eq!(new, old, "depth {depth}");
            assert_eq!(new.matches('/').count(), depth + 1, "depth {depth}");
        }
        while chain.pop().is_some() {}
    }

    #[test]
    fn trace_id_hex_none_writes_dash() {
        assert_eq!(TraceIdHex(None).to_string(), "-");
    }

    #[test]
    fn trace_id_hex_every_byte_value_matches_the_old_encoding() {
        for b in 0..=u8::MAX {
            let bytes = [b; TRACE_ID_BYTES];
            assert_eq!(
                TraceIdHex(Some(bytes)).to_string(),
                old_hex(&bytes),
                "byte {b}"
            );
        }
    }

    #[test]
    fn hex_lower_short_buffer_is_an_error() {
        let mut out = [0u8; 3];
        assert!(hex_lower(&[1, 2], &mut out).is_err());
    }

    fn decimal_string(n: u64) -> String {
        let mut buf = [0u8; U64_DIGITS];
        String::from_utf8_lossy(decimal(n, &mut buf)).into_owned()
    }

    #[test]
    fn decimal_boundaries_match_display() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(decimal_string(n), n.to_string());
        }
    }

    proptest! {
        #[test]
        fn trace_id_hex_matches_the_old_encoding(bytes in any::<[u8; TRACE_ID_BYTES]>()) {
            prop_assert_eq!(TraceIdHex(Some(bytes)).to_string(), old_hex(&bytes));
        }

        #[test]
        fn trace_id_set_from_hex_reads_back_the_same(bytes in any::<[u8; TRACE_ID_BYTES]>()) {
            let rt = runtime();
            let scope = rt.root(ScopeKind::Request, "r");
            scope.set_trace_id(&old_hex(&bytes));
            prop_assert_eq!(scope.trace_id_hex(), TraceIdHex(Some(bytes)));
            prop_assert_eq!(scope.trace_id(), Some(old_hex(&bytes)));
        }

        #[test]
        fn trace_id_set_from_bytes_reads_back_as_from_hex(bytes in any::<[u8; TRACE_ID_BYTES]>()) {
            let rt = runtime();
            let from_hex = rt.root(ScopeKind::Request, "r");
            from_hex.set_trace_id(&old_hex(&bytes));
            let from_bytes = rt.root(ScopeKind::Request, "r");
            from_bytes.set_trace_id_bytes(bytes);
            prop_assert_eq!(from_bytes.trace_id_hex(), TraceIdHex(Some(bytes)));
            prop_assert_eq!(from_bytes.trace_id(), from_hex.trace_id());
        }

        #[test]
        fn decimal_matches_display(n in any::<u64>()) {
            prop_assert_eq!(decimal_string(n), n.to_string());
        }
    }
}
