//! A prefix trie over `/`-separated path segments.
//!
//! Ours rather than a crate's: lookups walk one segment at a time with
//! borrowed `&str` keys (no allocation) and the engine decides at each step
//! whether a deeper match is allowed, which is where imageswap's semantics
//! live.
//!
//! The layout is flat so that 100k rules compile fast and stay small: nodes
//! sit in one `Vec`, their segment text in one `String` arena, and a single
//! hash map goes from a node's *path key* (a hash of every segment from the
//! root) to the node. A walk carries the path key along ([`At`]), so the key of
//! the next segment is computed without reading the node just found, and the
//! lookups of one walk overlap in the CPU instead of waiting on each other. A
//! 64-bit key collision is resolved by a chain through the nodes and a full
//! comparison of parent and segment, so a lookup is always exact.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
    children: HashMap<u64, NodeId, BuildHasherDefault<PreHashed>>,
}

#[derive(Debug, Clone)]
struct Node<V> {
    parent: NodeId,
    /// The segment is `text[start..start + len]`.
    start: u32,
    len: u32,
    /// The next node whose path key is alike; the root's id (never a child's) ends the chain.
    collision: NodeId,
    /// Leaves skip the hash lookup altogether.
    has_children: bool,
    value: Option<V>,
}

impl<V> Default for SegmentTrie<V> {
    fn default() -> Self {
        let root = Node { parent: 0, start: 0, len: 0, collision: 0, has_children: false, value: None };
        Self { nodes: vec![root], text: String::new(), children: HashMap::default() }
    }
}

impl<V> SegmentTrie<V> {
    /// The root node, which stands for the empty path.
    pub const ROOT: At = At { id: 0, key: ROOT_KEY };

    /// Makes room for about `nodes` more nodes holding `text` more bytes of segments.
    pub fn reserve(&mut self, nodes: usize, text: usize) {
        self.nodes.reserve(nodes);
        self.text.reserve(text);
        self.children.reserve(nodes);
    }

    /// The node for `segments`, created with its ancestors where missing.
    ///
    /// # Panics
    /// Past 4 billion nodes or 4 GiB of segment text, far beyond any rule set
    /// that fits in memory; only rule compilation calls this, never a request.
    pub fn node_mut<'s>(&mut self, segments: impl IntoIterator<Item = &'s str>) -> &mut Option<V> {
        let mut at = Self::ROOT;
        for segment in segments {
            let key = key(at.key, segment);
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
        self.text.push_str(segment);
        let collision = self.children.insert(key, id).unwrap_or(Self::ROOT.id);
        self.nodes.push(Node { parent, start, len, collision, has_children: false, value: None });
        self.nodes[parent as usize].has_children = true;
        id
    }

    /// The child of `at` reached by `segment`, if any. Always inlined: as a call, saving
    /// and restoring registers cost a quarter of a lookup.
    #[inline(always)]
    pub fn child(&self, at: At, segment: &str) -> Option<At> {
        if !self.nodes[at.id as usize].has_children {
            return None;
        }
        let key = key(at.key, segment);
        self.find(key, at.id, segment).map(|id| At { id, key })
    }

    /// The child of `parent` reached by `segment`, whose path key is `key`.
    #[inline(always)]
    fn find(&self, key: u64, parent: NodeId, segment: &str) -> Option<NodeId> {
        let mut candidate = *self.children.get(&key)?;
        loop {
            let found = &self.nodes[candidate as usize];
            let text = &self.text.as_bytes()[found.start as usize..(found.start + found.len) as usize];
            if found.parent == parent && text == segment.as_bytes() {
                return Some(candidate);
            }
            if found.collision == Self::ROOT.id {
                return None;
            }
            candidate = found.collision;
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
            + self.children.capacity() * (std::mem::size_of::<(u64, NodeId)>() + 1)
    }
}

/// The path key of `segment` under a node whose path key is `parent`. Each 8-byte word is
/// multiplied on its own and folded in with a rotation (so the multiplications overlap and
/// word order still counts); the last partial word is read with overlapping loads rather
/// than byte by byte; a final mix makes the low bits hashbrown indexes by depend on every
/// input bit. The length goes in first, so overlapping reads cannot make two segments alike.
/// Built for segments of a few to a few dozen bytes.
#[inline(always)]
fn key(parent: u64, segment: &str) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let bytes = segment.as_bytes();
    let n = bytes.len();
    let fold = |hash: u64, word: u64| hash.rotate_left(29) ^ word.wrapping_mul(K);
    let mut hash = fold(parent, n as u64 | 1 << 63);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        hash = fold(hash, word_le(chunk));
    }
    let tail = match n % 8 {
        0 => None,
        _ if n >= 8 => Some(word_le(&bytes[n - 8..])),
        4.. => Some(u64::from(half_le(&bytes[..4])) << 32 | u64::from(half_le(&bytes[n - 4..]))),
        _ => Some(u64::from(bytes[0]) << 16 | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1])),
    };
    if let Some(word) = tail {
        hash = fold(hash, word);
    }
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

/// The children map's keys are already hashes: pass them through.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in rather than fail.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    fn finish(&self) -> u64 {
        self.0
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
        // Force every (parent, segment) into one chain by inserting under the same hash slot.
        let mut trie: SegmentTrie<u32> = SegmentTrie::default();
        let names: Vec<String> = (0..50).map(|i| format!("seg{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            *trie.node_mut([name.as_str()]) = Some(i as u32);
        }
        // Rewire all children into one collision chain under the first key.
        let first_key = key(ROOT_KEY, &names[0]);
        for id in 1..trie.nodes.len() as NodeId {
            trie.nodes[id as usize].collision = if id + 1 < trie.nodes.len() as NodeId { id + 1 } else { 0 };
        }
        trie.children.clear();
        for name in &names {
            trie.children.insert(key(ROOT_KEY, name), 1);
        }
        trie.children.insert(first_key, 1);
        trie.children.insert(key(ROOT_KEY, "absent"), 1);
        for (i, name) in names.iter().enumerate() {
            let node = trie.child(SegmentTrie::<u32>::ROOT, name).unwrap();
            assert_eq!(trie.value(node), Some(&(i as u32)), "{name}");
        }
        assert_eq!(trie.child(SegmentTrie::<u32>::ROOT, "absent"), None);
    }
}
