//! Compact storage for the large per-client tables (entity profiles, rate and volume
//! baselines) and the strings their records share.
//!
//! A `hashbrown::HashMap<K, V>` keeps each record in its bucket array, which is a power of two
//! at most 7/8 full: at a million records it has two million buckets, so a 64-byte record costs
//! ~134 bytes. Here the records sit in fixed chunks of [`CHUNK`] (a table grows by one chunk,
//! never by copying and doubling) and the hash index holds only their u32 positions (5 bytes a
//! bucket). A removal moves the last record into the hole, so the records stay dense.

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

/// Records per chunk.
const CHUNK: usize = 1024;

/// A vector in fixed chunks: pushing never copies what is there, and wastes at most one
/// chunk's spare room (the first chunk grows as a vector does, for small tables).
pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, x: T) -> u32 {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(x),
            _ => {
                let mut c = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                c.push(x);
                self.chunks.push(c);
            }
        }
        self.len += 1;
        (self.len - 1) as u32
    }

    pub(super) fn pop(&mut self) -> Option<T> {
        let c = self.chunks.last_mut()?;
        let x = c.pop();
        if c.is_empty() {
            self.chunks.pop();
        }
        self.len -= x.is_some() as usize;
        x
    }

    pub(super) fn get(&self, i: u32) -> &T {
        &self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    pub(super) fn get_mut(&mut self, i: u32) -> &mut T {
        &mut self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

/// A record that carries its own key.
pub(super) trait Keyed {
    type K: Hash + Eq + Copy;
    fn key(&self) -> Self::K;
}

/// A hash map of records that carry their key, stored densely (see the module notes).
pub(super) struct Dense<T: Keyed> {
    recs: Chunked<T>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl<T: Keyed> Default for Dense<T> {
    fn default() -> Self {
        Dense {
            recs: Chunked::default(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<T: Keyed> Dense<T> {
    pub(super) fn len(&self) -> usize {
        self.recs.len()
    }

    pub(super) fn find(&self, k: T::K) -> Option<u32> {
        let h = self.hasher.hash_one(k);
        let recs = &self.recs;
        self.index.find(h, |&i| recs.get(i).key() == k).copied()
    }

    pub(super) fn get(&self, k: T::K) -> Option<&T> {
        self.find(k).map(|i| self.recs.get(i))
    }

    pub(super) fn at(&self, i: u32) -> &T {
        self.recs.get(i)
    }

    /// The record at `i`; its key must not be changed.
    pub(super) fn at_mut(&mut self, i: u32) -> &mut T {
        self.recs.get_mut(i)
    }

    /// Add a record whose key is not in the map yet; its position.
    pub(super) fn insert_new(&mut self, rec: T) -> u32 {
        let h = self.hasher.hash_one(rec.key());
        let i = self.recs.push(rec);
        let (recs, hasher) = (&self.recs, &self.hasher);
        self.index.insert_unique(h, i, |&j| hasher.hash_one(recs.get(j).key()));
        i
    }

    pub(super) fn remove(&mut self, k: T::K) -> Option<T> {
        let i = self.find(k)?;
        Some(self.remove_at(i))
    }

    /// Remove the record at `i` (the last record takes its place).
    pub(super) fn remove_at(&mut self, i: u32) -> T {
        let h = self.hasher.hash_one(self.recs.get(i).key());
        if let Ok(e) = self.index.find_entry(h, |&j| j == i) {
            e.remove();
        }
        let last = (self.recs.len() - 1) as u32;
        // cannot fail: record `i` was just read above, so there is at least one
        let moved = self.recs.pop().expect("a record at i");
        if i == last {
            return moved;
        }
        let hm = self.hasher.hash_one(moved.key());
        if let Some(j) = self.index.find_mut(hm, |&j| j == last) {
            *j = i;
        }
        std::mem::replace(self.recs.get_mut(i), moved)
    }

    /// Keep the records for which `f` is true; the removed ones go to `gone`.
    pub(super) fn retain(&mut self, mut f: impl FnMut(&T) -> bool, mut gone: impl FnMut(T)) {
        let mut i = 0;
        while (i as usize) < self.recs.len() {
            if f(self.recs.get(i)) {
                i += 1;
            } else {
                gone(self.remove_at(i));
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.recs.iter()
    }
}

/// Strings many records share (endpoint templates, user agents, principals, entity values),
/// each stored once and referred to by a u32, with a count of references: the last record to
/// let go frees it, so the table is bounded by the records that use it.
#[derive(Default)]
pub(super) struct Strings {
    strs: Chunked<(Box<str>, u32)>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Strings {
    pub(super) fn find(&self, s: &str) -> Option<u32> {
        let h = self.hasher.hash_one(s);
        let strs = &self.strs;
        self.index.find(h, |&i| &*strs.get(i).0 == s).copied()
    }

    /// [`Strings::find`], trying `hint` first: the id a string had when last looked up, which
    /// may since have been freed or reused (checked: a live id holding `s` is `s`'s, the texts
    /// held being distinct). Leaves `s`'s id in `hint`. The two profiles a call updates look
    /// up its endpoint once, not twice.
    pub(super) fn find_hinted(&self, s: &str, hint: &mut u32) -> Option<u32> {
        if (*hint as usize) < self.strs.len() {
            let (t, refs) = self.strs.get(*hint);
            if *refs > 0 && **t == *s {
                return Some(*hint);
            }
        }
        let id = self.find(s);
        if let Some(i) = id {
            *hint = i;
        }
        id
    }

    /// The id of `s`, one more reference to it.
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.find(s) {
            self.strs.get_mut(i).1 += 1;
            return i;
        }
        let text: Box<str> = s.into();
        let i = match self.free.pop() {
            Some(i) => {
                *self.strs.get_mut(i) = (text, 1);
                i
            }
            None => self.strs.push((text, 1)),
        };
        let h = self.hasher.hash_one(s);
        let (strs, hasher) = (&self.strs, &self.hasher);
        self.index.insert_unique(h, i, |&j| hasher.hash_one(&*strs.get(j).0));
        i
    }

    pub(super) fn get(&self, i: u32) -> &str {
        &self.strs.get(i).0
    }

    /// One reference fewer; the string goes with the last.
    pub(super) fn release(&mut self, i: u32) {
        let e = self.strs.get_mut(i);
        if e.1 == 0 {
            // already free: releasing it again must not put its id on the free list twice
            debug_assert!(false, "string {i} released more often than interned");
            return;
        }
        e.1 -= 1;
        if e.1 > 0 {
            return;
        }
        let text = std::mem::take(&mut e.0);
        let h = self.hasher.hash_one(&*text);
        if let Ok(x) = self.index.find_entry(h, |&j| j == i) {
            x.remove();
        }
        self.free.push(i);
    }

    /// Strings held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct R(u64, u64);

    impl Keyed for R {
        type K = u64;
        fn key(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_dense_map_finds_every_record_after_removals_move_the_last_one() {
        let mut d = Dense::<R>::default();
        for k in 0..5000u64 {
            d.insert_new(R(k * 7, k));
        }
        // every third removed: each removal moves the last record into the hole
        for k in (0..5000u64).step_by(3) {
            assert_eq!(d.remove(k * 7), Some(R(k * 7, k)));
        }
        d.retain(|r| r.1 % 3 != 1, |_| {});
        for k in 0..5000u64 {
            let want = (k % 3 == 2).then_some(k);
            assert_eq!(d.get(k * 7).map(|r| r.1), want, "key {}", k * 7);
        }
        assert_eq!(d.len(), (0..5000).filter(|k| k % 3 == 2).count());
        assert_eq!(d.iter().count(), d.len());
    }

    #[test]
    fn a_shared_string_lives_until_its_last_reference_goes() {
        let mut s = Strings::default();
        let a = s.intern("GET /a");
        assert_eq!(s.intern("GET /a"), a);
        let b = s.intern("GET /b");
        assert_ne!(a, b);
        s.release(a);
        assert_eq!(s.find("GET /a"), Some(a), "one reference left");
        s.release(a);
        assert_eq!(s.find("GET /a"), None);
        // the freed slot is reused
        assert_eq!(s.intern("GET /c"), a);
        assert_eq!((s.get(a), s.get(b), s.len()), ("GET /c", "GET /b", 2));
    }

    /// A hinted look-up answers what a plain one does, whatever the hint (stale, freed,
    /// reused, out of range), over generated interning and releasing.
    #[test]
    fn a_hinted_find_is_a_find() {
        let mut s = Strings::default();
        let mut held: Vec<u32> = Vec::new();
        let mut hint = u32::MAX;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut hits = 0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text = format!("GET /e{}", x % 40);
            match x >> 60 {
                0..=5 => held.push(s.intern(&text)),
                6..=9 if !held.is_empty() => {
                    let i = held.swap_remove((x >> 8) as usize % held.len());
                    s.release(i);
                }
                10 => hint = (x >> 20) as u32 % 64,
                _ => {}
            }
            let before = hint;
            let got = s.find_hinted(&text, &mut hint);
            assert_eq!(got, s.find(&text), "{text} hint {before}");
            if got.is_some() {
                assert_eq!(got, Some(hint));
                hits += (before == hint) as usize;
            }
        }
        assert!(hits > 100, "{hits}");
    }
}
