//! A minimal index-stable slab for a scope's children, tasks and waiters.
//!
//! # Invariants
//! 1. An index returned by `insert` or `reserve` names the same entry until `remove(index)`.
//! 2. `len` counts entries that are reserved or full.
//!
//! # Implementation
//! A vector of entries whose vacant ones chain into a free list (no second vector): O(1) insert
//! and remove, memory bounded by the high-water mark. Most slabs hold one or two entries (a
//! session's waiters), so the first insert allocates room for exactly one.

/// End of the free list.
const NIL: usize = usize::MAX;

enum Entry<T> {
    /// Free; the next free index (or [`NIL`]).
    Vacant(usize),
    /// Taken by `reserve`, value to come (a task's own slot, known before the task exists).
    Reserved,
    Full(T),
}

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list of vacant indices ([`NIL`] when there is none).
    free: usize,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: NIL,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> usize {
        let index = self.reserve();
        self.fill(index, value);
        index
    }

    /// Reserves an index without a value; `fill` or `remove` it later.
    pub fn reserve(&mut self) -> usize {
        if let Some(slot) = self.entries.get_mut(self.free) {
            let index = self.free;
            if let Entry::Vacant(next) = std::mem::replace(slot, Entry::Reserved) {
                self.free = next;
            }
            self.len += 1;
            return index;
        }
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(1);
        }
        self.entries.push(Entry::Reserved);
        self.len += 1;
        self.entries.len() - 1
    }

    /// Puts `value` at a reserved index; ignored for any other index.
    pub fn fill(&mut self, index: usize, value: T) {
        if let Some(slot @ Entry::Reserved) = self.entries.get_mut(index) {
            *slot = Entry::Full(value);
        }
    }

    /// Frees `index`, returning its value if it had one; a vacant index is left alone.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let slot = self.entries.get_mut(index)?;
        if matches!(slot, Entry::Vacant(_)) {
            return None;
        }
        let taken = std::mem::replace(slot, Entry::Vacant(self.free));
        self.free = index;
        self.len -= 1;
        match taken {
            Entry::Full(value) => Some(value),
            Entry::Vacant(_) | Entry::Reserved => None,
        }
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match self.entries.get_mut(index) {
            Some(Entry::Full(value)) => Some(value),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Full(value) => Some((i, value)),
                _ => None,
            })
    }

    /// Takes every value out, leaving the slab empty.
    pub fn drain(&mut self) -> Vec<T> {
        self.free = NIL;
        self.len = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|e| match e {
                Entry::Full(value) => Some(value),
                _ => None,
            })
            .collect()
    }
}

/// A [`Slab`] allocated on first use: most scopes (every session, every consultation) never
/// own a child or a task, and an empty `Slab` inline costs 40 B in each of them.
pub struct LazySlab<T>(Option<Box<Slab<T>>>);

impl<T> Default for LazySlab<T> {
    fn default() -> Self {
        LazySlab(None)
    }
}

impl<T> LazySlab<T> {
    fn slab(&mut self) -> &mut Slab<T> {
        self.0.get_or_insert_with(Box::default)
    }

    pub fn insert(&mut self, value: T) -> usize {
        self.slab().insert(value)
    }

    pub fn reserve(&mut self) -> usize {
        self.slab().reserve()
    }

    pub fn fill(&mut self, index: usize, value: T) {
        if let Some(slab) = &mut self.0 {
            slab.fill(index, value);
        }
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        self.0.as_mut()?.remove(index)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |slab| slab.len())
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.0.iter().flat_map(|slab| slab.iter())
    }

    pub fn drain(&mut self) -> Vec<T> {
        self.0.as_mut().map(|slab| slab.drain()).unwrap_or_default()
    }
}

/// Registers `waker` in `waiters`, re-using this waiter's `slot` across polls so a future
/// polled many times holds one entry. The caller removes `slot` when it is dropped.
pub fn register_waker(
    waiters: &std::cell::RefCell<Slab<std::task::Waker>>,
    slot: &mut Option<usize>,
    waker: &std::task::Waker,
) {
    let mut waiters = waiters.borrow_mut();
    match slot.and_then(|s| waiters.get_mut(s)) {
        Some(existing) => existing.clone_from(waker),
        None => *slot = Some(waiters.insert(waker.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_indices_are_stable_and_reused() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None, "double remove is harmless");
        assert_eq!(s.len(), 1);
        let c = s.insert("c");
        assert_eq!(c, a);
        assert_eq!(s.get_mut(b), Some(&mut "b"));
        let r = s.reserve();
        assert_eq!(s.len(), 3);
        s.fill(r, "r");
        assert_eq!(s.iter().count(), 3);
        assert_eq!(s.drain().len(), 3);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn slab_free_list_reuses_every_vacant_index_before_growing() {
        let mut s = Slab::default();
        let indices: Vec<usize> = (0..5).map(|i| s.insert(i)).collect();
        for &i in &[1, 3, 4] {
            assert!(s.remove(i).is_some());
        }
        let mut reused: Vec<usize> = (0..3).map(|i| s.insert(10 + i)).collect();
        reused.sort_unstable();
        assert_eq!(reused, vec![1, 3, 4]);
        assert_eq!(
            s.insert(99),
            indices.len(),
            "grows only once the free list is empty"
        );
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn lazy_slab_allocates_on_first_insert_and_behaves_like_a_slab() {
        let mut s = LazySlab::default();
        assert!(s.0.is_none());
        assert_eq!((s.len(), s.iter().count(), s.remove(0)), (0, 0, None));
        assert!(s.drain().is_empty());
        let a = s.insert("a");
        let r = s.reserve();
        s.fill(r, "r");
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec!["r"]);
        assert_eq!(s.drain(), vec!["r"]);
    }

    #[test]
    fn slab_first_insert_allocates_one_entry() {
        let mut s = Slab::default();
        s.insert(1u64);
        assert_eq!(s.entries.capacity(), 1);
    }
}
