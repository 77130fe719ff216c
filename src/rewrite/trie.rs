//! A prefix trie over `/`-separated path segments.
//!
//! Ours rather than a crate's: lookups walk one segment at a time with
//! borrowed `&str` keys (no allocation) and the engine decides at each step
//! whether a deeper match is allowed, which is where imageswap's semantics
//! live.
//!
//! The layout is flat so that 100k rules compile fast and stay small: nodes
//! sit in one `Vec`, their segment text in one `String` arena, and one
//! open-addressing table (linear probing, at most half full, 8 bytes a slot)
//! goes from a node's *path key* (a hash of every segment from the root) to the
//! node. A walk carries the path key along ([`At`]), so the key of the next
//! segment is computed without reading the node just found, and the lookups of
//! one walk overlap in the CPU instead of waiting on each other. A slot keeps 32
//! bits of the key as a tag; a tag match is confirmed by comparing the node's
//! parent and segment, so a lookup is always exact.

/// Index of a node in a [`SegmentTrie`].
pub type NodeId = u32;

/// A node reached by a walk: its index and its path key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    id: NodeId,
    key: u64,
}

/// The path key of the root, the empty path.
const ROOT_KEY: u64 = 0x2f2f_6d69_7272_6f72;

/// A trie keyed by path segments, with an optional value on every node.
#[derive(Debug, Clone)]
pub struct SegmentTrie<V> {
    nodes: Vec<Node<V>>,
    text: String,
    /// Every node but the root, by path key; a power of two long, at most half full.
    slots: Box<[Slot]>,
}

#[derive(Debug, Clone)]
struct Node<V> {
    parent: NodeId,
    /// The segment is `text[start..start + len]`.
    start: u32,
    len: u32,
    /// Leaves skip the table lookup altogether.
    has_children: bool,
    value: Option<V>,
}

/// A table slot: a node and the high half of its path key. `node == 0` (the root, never
/// anyone's child) marks an empty slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    tag: u32,
    node: NodeId,
}

/// Slots in an empty trie's table.
const MIN_SLOTS: usize = 8;

impl<V> Default for SegmentTrie<V> {
    fn default() -> Self {
        let root = Node { parent: 0, start: 0, len: 0, has_children: false, value: None };
        Self { nodes: vec![root], text: String::new(), slots: vec![Slot::default(); MIN_SLOTS].into() }
    }
}

impl<V> SegmentTrie<V> {
    /// The root node, which stands for the empty path.
    pub const ROOT: At = At { id: 0, key: ROOT_KEY };

    /// Makes room for about `nodes` more nodes holding `text` more bytes of segments.
    pub fn reserve(&mut self, nodes: usize, text: usize) {
        self.nodes.reserve(nodes);
        self.text.reserve(text);
        self.grow_to(self.nodes.len() + nodes);
    }

    /// The node for `segments`, created with its ancestors where missing.
    ///
    /// # Panics
    /// Past 4 billion nodes or 4 GiB of segment text, far beyond any rule set
    /// that fits in memory; only rule compilation calls this, never a request.
    pub fn node_mut<'s>(&mut self, segments: impl IntoIterator<Item = &'s str>) -> &mut Option<V> {
        let mut at = Self::ROOT;
        for segment in segments {
            let key = key(at.key, segment.as_bytes());
            let existing = if self.nodes[at.id as usize].has_children { self.find(key, at.id, segment) } else { None };
            let id = match existing {
                Some(child) => child,
                None => self.add_child(key, at.id, segment),
            };
            at = At { id, key };
        }
        &mut self.nodes[at.id as usize].value
    }

    fn add_child(&mut self, key: u64, parent: NodeId, segment: &str) -> NodeId {
        let id = NodeId::try_from(self.nodes.len()).expect("more than 4 billion trie nodes");
        let start = u32::try_from(self.text.len()).expect("more than 4 GiB of rule text");
        let len = u32::try_from(segment.len()).expect("segment longer than 4 GiB");
        // Grown before the node is added: growing re-places every node already there.
        self.grow_to(self.nodes.len() + 1);
        self.text.push_str(segment);
        self.nodes.push(Node { parent, start, len, has_children: false, value: None });
        self.nodes[parent as usize].has_children = true;
        self.place(key, id);
        id
    }

    /// Puts `id` in the first free slot from `key`'s. The table always has one.
    fn place(&mut self, key: u64, id: NodeId) {
        let mask = self.slots.len() - 1;
        let mut index = key as usize & mask;
        while self.slots[index].node != 0 {
            index = (index + 1) & mask;
        }
        self.slots[index] = Slot { tag: (key >> 32) as u32, node: id };
    }

    /// Makes the table at least twice as large as `nodes`, re-placing every node. The path
    /// keys are recomputed from the nodes: a parent always comes before its children.
    fn grow_to(&mut self, nodes: usize) {
        let wanted = (nodes * 2).next_power_of_two().max(MIN_SLOTS);
        if wanted <= self.slots.len() {
            return;
        }
        self.slots = vec![Slot::default(); wanted].into();
        let mut keys = Vec::with_capacity(self.nodes.len());
        keys.push(ROOT_KEY);
        for id in 1..self.nodes.len() {
            let node = &self.nodes[id];
            let key = key(keys[node.parent as usize], self.segment(node));
            keys.push(key);
            self.place(key, id as NodeId);
        }
    }

    /// The segment `node` is reached by.
    #[inline(always)]
    fn segment(&self, node: &Node<V>) -> &[u8] {
        &self.text.as_bytes()[node.start as usize..(node.start + node.len) as usize]
    }

    /// The child of `at` reached by `segment`, if any. Always inlined: as a call, saving
    /// and restoring registers cost a quarter of a lookup.
    #[inline(always)]
    pub fn child(&self, at: At, segment: &str) -> Option<At> {
        if !self.nodes[at.id as usize].has_children {
            return None;
        }
        let key = key(at.key, segment.as_bytes());
        self.find(key, at.id, segment).map(|id| At { id, key })
    }

    /// The child of `parent` reached by `segment`, whose path key is `key`: linear probing
    /// from the key's slot to an empty one, each tag match confirmed on the node.
    #[inline(always)]
    fn find(&self, key: u64, parent: NodeId, segment: &str) -> Option<NodeId> {
        let mask = self.slots.len() - 1;
        let tag = (key >> 32) as u32;
        let mut index = key as usize & mask;
        loop {
            let slot = self.slots[index];
            if slot.node == 0 {
                return None;
            }
            if slot.tag == tag {
                let found = &self.nodes[slot.node as usize];
                if found.parent == parent && same_bytes(self.segment(found), segment.as_bytes()) {
                    return Some(slot.node);
                }
            }
            index = (index + 1) & mask;
        }
    }

    /// The value stored on `at`.
    #[inline]
    pub fn value(&self, at: At) -> Option<&V> {
        self.nodes[at.id as usize].value.as_ref()
    }

    /// Approximate heap bytes held, for capacity planning and metrics.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node<V>>()
            + self.text.capacity()
            + self.slots.len() * std::mem::size_of::<Slot>()
    }
}

/// The path key of the segment `bytes` under a node whose path key is `parent`. Each 8-byte word is
/// multiplied on its own and folded in with a rotation (so the multiplications overlap and
/// word order still counts). Segments of up to 32 bytes, nearly all, are read as two or four
/// overlapping words with no loop; a final mix makes the low bits the table indexes by
/// depend on every input bit. The length goes in first, so overlapping reads cannot make two
/// segments alike.
#[inline(always)]
fn key(parent: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let n = bytes.len();
    let fold = |hash: u64, word: u64| hash.rotate_left(29) ^ word.wrapping_mul(K);
    let mut hash = fold(parent, n as u64 | 1 << 63);
    hash = match n {
        0 => hash,
        1..=3 => fold(hash, u64::from(bytes[0]) << 16 | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1])),
        4..=7 => fold(hash, u64::from(half_le(bytes)) << 32 | u64::from(half_le(&bytes[n - 4..]))),
        8..=16 => fold(fold(hash, word_le(bytes)), word_le(&bytes[n - 8..])),
        17..=32 => {
            let hash = fold(fold(hash, word_le(bytes)), word_le(&bytes[8..]));
            fold(fold(hash, word_le(&bytes[n - 16..])), word_le(&bytes[n - 8..]))
        }
        _ => {
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                hash = fold(hash, word_le(chunk));
            }
            if chunks.remainder().is_empty() { hash } else { fold(hash, word_le(&bytes[n - 8..])) }
        }
    };
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(0xd6e8_feb8_6659_fd93);
    hash ^ (hash >> 32)
}

/// The first 8 bytes of `bytes` (at least 8) as a little-endian word.
#[inline(always)]
fn word_le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// The first 4 bytes of `bytes` (at least 4) as a little-endian word.
#[inline(always)]
fn half_le(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

/// `a == b` for segments, inline: up to 32 bytes with two or four overlapping loads each
/// side instead of a call to `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half_le(a) == half_le(b) && half_le(&a[n - 4..]) == half_le(&b[n - 4..]),
        8..=16 => word_le(a) == word_le(b) && word_le(&a[n - 8..]) == word_le(&b[n - 8..]),
        17..=32 => {
            word_le(a) == word_le(b)
                && word_le(&a[8..]) == word_le(&b[8..])
                && word_le(&a[n - 16..]) == word_le(&b[n - 16..])
                && word_le(&a[n - 8..]) == word_le(&b[n - 8..])
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_inserted_paths() {
        let mut trie = SegmentTrie::default();
        *trie.node_mut(["gcr.io"]) = Some(1);
        *trie.node_mut(["gcr.io", "foo"]) = Some(2);
        let gcr = trie.child(SegmentTrie::<i32>::ROOT, "gcr.io").unwrap();
        assert_eq!(trie.value(gcr), Some(&1));
        let foo = trie.child(gcr, "foo").unwrap();
        assert_eq!(trie.value(foo), Some(&2));
        assert_eq!(trie.child(gcr, "foobar"), None);
        assert_eq!(trie.child(SegmentTrie::<i32>::ROOT, "foo"), None);
        assert_eq!(trie.nodes.len(), 3);
    }

    #[test]
    fn colliding_keys_are_told_apart() {
        // Every node placed under one and the same key: a lookup must walk the whole run of
        // matching tags and tell the nodes apart by parent and segment.
        let mut trie: SegmentTrie<u32> = SegmentTrie::default();
        let names: Vec<String> = (0..50).map(|i| format!("seg{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            *trie.node_mut([name.as_str(), "leaf"]) = Some(i as u32);
        }
        let shared = key(ROOT_KEY, b"shared");
        trie.slots.fill(Slot::default());
        for id in 1..trie.nodes.len() as NodeId {
            trie.place(shared, id);
        }
        for (i, name) in names.iter().enumerate() {
            let node = trie.find(shared, 0, name).expect(name);
            let leaf = trie.find(shared, node, "leaf").expect("leaf");
            assert_eq!(trie.nodes[leaf as usize].value, Some(i as u32), "{name}");
        }
        assert_eq!(trie.find(shared, 0, "absent"), None);
        assert_eq!(trie.find(shared, 0, "leaf"), None, "a segment under another parent");
    }

    #[test]
    fn the_table_grows_and_keeps_every_node() {
        let mut trie: SegmentTrie<usize> = SegmentTrie::default();
        let paths: Vec<[String; 2]> = (0..5_000).map(|i| [format!("reg{}.io", i % 700), format!("p{i}")]).collect();
        for (i, [first, second]) in paths.iter().enumerate() {
            *trie.node_mut([first.as_str(), second.as_str()]) = Some(i);
        }
        assert!(trie.slots.len() >= 2 * trie.nodes.len(), "at most half full");
        let placed = trie.slots.iter().filter(|slot| slot.node != 0).count();
        assert_eq!(placed, trie.nodes.len() - 1, "each node but the root in exactly one slot");
        for (i, [first, second]) in paths.iter().enumerate() {
            let registry = trie.child(SegmentTrie::<usize>::ROOT, first).expect("registry");
            let leaf = trie.child(registry, second).expect("path");
            assert_eq!(trie.value(leaf), Some(&i));
        }
        assert_eq!(trie.child(SegmentTrie::<usize>::ROOT, "p1"), None);
    }

    #[test]
    fn segment_comparison_matches_slice_equality() {
        let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.-_";
        let words: Vec<&str> = (0..=alphabet.len()).map(|n| &alphabet[..n]).collect();
        for &a in &words {
            for &b in &words {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
            for position in 0..a.len() {
                let mut changed = a.as_bytes().to_vec();
                changed[position] ^= 1;
                assert!(!same_bytes(a.as_bytes(), &changed), "{a:?} at {position}");
            }
        }
    }
}
