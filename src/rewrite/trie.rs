//! A prefix trie over `/`-separated path segments.
//!
//! Ours rather than a crate's: lookups walk one segment at a time with
//! borrowed `&str` keys (no allocation) and the engine decides at each step
//! whether a deeper match is allowed, which is where imageswap's semantics
//! live.
//!
//! The layout is flat so that 100k rules compile fast and stay small: nodes
//! sit in one `Vec`, their segment text in one `String` arena, and a single
//! hash map goes from `hash(parent, segment)` to the child. A 64-bit hash
//! collision is resolved by a chain through the nodes and a full comparison,
//! so a lookup is always exact.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Index of a node in a [`SegmentTrie`].
pub type NodeId = u32;

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
    /// The next node whose (parent, segment) hashes alike; `ROOT` (never a child) ends the chain.
    collision: NodeId,
    /// Leaves skip the hash lookup altogether.
    has_children: bool,
    value: Option<V>,
}

impl<V> Default for SegmentTrie<V> {
    fn default() -> Self {
        let root =
            Node { parent: Self::ROOT, start: 0, len: 0, collision: Self::ROOT, has_children: false, value: None };
        Self { nodes: vec![root], text: String::new(), children: HashMap::default() }
    }
}

impl<V> SegmentTrie<V> {
    /// The root node, which stands for the empty path.
    pub const ROOT: NodeId = 0;

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
        let mut node = Self::ROOT;
        for segment in segments {
            let hash = key(node, segment);
            let existing = if self.nodes[node as usize].has_children { self.find(hash, node, segment) } else { None };
            node = match existing {
                Some(child) => child,
                None => self.add_child(hash, node, segment),
            };
        }
        &mut self.nodes[node as usize].value
    }

    fn add_child(&mut self, hash: u64, parent: NodeId, segment: &str) -> NodeId {
        let id = NodeId::try_from(self.nodes.len()).expect("more than 4 billion trie nodes");
        let start = u32::try_from(self.text.len()).expect("more than 4 GiB of rule text");
        let len = u32::try_from(segment.len()).expect("segment longer than 4 GiB");
        self.text.push_str(segment);
        let collision = self.children.insert(hash, id).unwrap_or(Self::ROOT);
        self.nodes.push(Node { parent, start, len, collision, has_children: false, value: None });
        self.nodes[parent as usize].has_children = true;
        id
    }

    /// The child of `node` reached by `segment`, if any.
    #[inline]
    pub fn child(&self, node: NodeId, segment: &str) -> Option<NodeId> {
        if !self.nodes[node as usize].has_children {
            return None;
        }
        self.find(key(node, segment), node, segment)
    }

    /// The child of `node` reached by `segment`, whose key is `hash`.
    #[inline(always)]
    fn find(&self, hash: u64, node: NodeId, segment: &str) -> Option<NodeId> {
        let mut candidate = *self.children.get(&hash)?;
        loop {
            let found = &self.nodes[candidate as usize];
            let text = &self.text.as_bytes()[found.start as usize..(found.start + found.len) as usize];
            if found.parent == node && text == segment.as_bytes() {
                return Some(candidate);
            }
            if found.collision == Self::ROOT {
                return None;
            }
            candidate = found.collision;
        }
    }

    /// The value stored on `node`.
    #[inline]
    pub fn value(&self, node: NodeId) -> Option<&V> {
        self.nodes[node as usize].value.as_ref()
    }

    /// Approximate heap bytes held, for capacity planning and metrics.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node<V>>()
            + self.text.capacity()
            + self.children.capacity() * (std::mem::size_of::<(u64, NodeId)>() + 1)
    }
}

/// The map key of `segment` under `parent`: one multiply-rotate round per 8 bytes
/// (FxHash-style), then a final mix so that the low bits hashbrown indexes by depend on
/// every input byte. Built for segments of a few to a few dozen bytes.
#[inline(always)]
fn key(parent: NodeId, segment: &str) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let bytes = segment.as_bytes();
    let mut hash = (u64::from(parent) << 32 | bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = chunk.iter().rev().fold(0u64, |word, &b| word << 8 | u64::from(b));
        hash = (hash ^ word).wrapping_mul(K).rotate_left(23);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let word = rest.iter().rev().fold(0u64, |word, &b| word << 8 | u64::from(b));
        hash = (hash ^ word).wrapping_mul(K).rotate_left(23);
    }
    hash ^= hash >> 32;
    hash = hash.wrapping_mul(0xd6e8_feb8_6659_fd93);
    hash ^ (hash >> 32)
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
        let first_key = key(SegmentTrie::<u32>::ROOT, &names[0]);
        for id in 1..trie.nodes.len() as NodeId {
            trie.nodes[id as usize].collision = if id + 1 < trie.nodes.len() as NodeId { id + 1 } else { 0 };
        }
        trie.children.clear();
        for name in &names {
            trie.children.insert(key(SegmentTrie::<u32>::ROOT, name), 1);
        }
        trie.children.insert(first_key, 1);
        trie.children.insert(key(SegmentTrie::<u32>::ROOT, "absent"), 1);
        for (i, name) in names.iter().enumerate() {
            let node = trie.child(SegmentTrie::<u32>::ROOT, name).unwrap();
            assert_eq!(trie.value(node), Some(&(i as u32)), "{name}");
        }
        assert_eq!(trie.child(SegmentTrie::<u32>::ROOT, "absent"), None);
    }
}
