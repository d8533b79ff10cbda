//! A map split into shards behind `Arc`s, so that a snapshot is cheap to clone and an update
//! copies one shard, not the whole map.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::{FixedState, RandomState};

type Shard<K, V> = HashMap<K, V, RandomState>;

const SHARDS: usize = 64;

/// A copy-on-write sharded hash map: `clone` copies 64 pointers; `get_mut` copies at most the one
/// shard that a published snapshot still shares.
#[derive(Clone, Debug)]
pub struct ShardedMap<K, V> {
    shards: Vec<Arc<Shard<K, V>>>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
        }
    }
}

fn shard_of<K: Hash>(key: &K) -> usize {
    // A fixed seed: the shard of a key must not change between snapshots.
    (FixedState::with_seed(0x006b_7562_6564_6e73).hash_one(key) as usize) % SHARDS
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[shard_of(key)].get(key)
    }

    /// The shard holding `key`, unshared first if a snapshot shares it.
    pub fn shard_mut(&mut self, key: &K) -> &mut Shard<K, V> {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }
}
