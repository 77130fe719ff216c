//! A prefix trie over `/`-separated path segments.
//!
//! Ours rather than a crate's: lookups walk one segment at a time with
//! borrowed `&str` keys (no allocation) and the engine decides at each step
//! whether a deeper match is allowed, which is where imageswap's semantics
//! live. Nodes sit in one `Vec` and refer to each other by index.

use super::fxhash::FxHashMap;

/// Index of a node in a [`SegmentTrie`].
pub type NodeId = u32;

/// A trie keyed by path segments, with an optional value on every node.
#[derive(Debug, Clone)]
pub struct SegmentTrie<V> {
    nodes: Vec<Node<V>>,
}

#[derive(Debug, Clone)]
struct Node<V> {
    children: FxHashMap<Box<str>, NodeId>,
    value: Option<V>,
}

impl<V> Node<V> {
    fn empty() -> Self {
        Self { children: FxHashMap::default(), value: None }
    }
}

impl<V> Default for SegmentTrie<V> {
    fn default() -> Self {
        Self { nodes: vec![Node::empty()] }
    }
}

impl<V> SegmentTrie<V> {
    /// The root node, which stands for the empty path.
    pub const ROOT: NodeId = 0;

    /// The node for `segments`, created with its ancestors where missing.
    pub fn node_mut<'s>(&mut self, segments: impl IntoIterator<Item = &'s str>) -> &mut Option<V> {
        let mut node = Self::ROOT;
        for segment in segments {
            node = match self.nodes[node as usize].children.get(segment) {
                Some(&child) => child,
                None => {
                    let child = NodeId::try_from(self.nodes.len()).expect("more than 4 billion trie nodes");
                    self.nodes.push(Node::empty());
                    self.nodes[node as usize].children.insert(segment.into(), child);
                    child
                }
            };
        }
        &mut self.nodes[node as usize].value
    }

    /// The child of `node` reached by `segment`, if any.
    #[inline]
    pub fn child(&self, node: NodeId, segment: &str) -> Option<NodeId> {
        self.nodes[node as usize].children.get(segment).copied()
    }

    /// The value stored on `node`.
    #[inline]
    pub fn value(&self, node: NodeId) -> Option<&V> {
        self.nodes[node as usize].value.as_ref()
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
    }
}
