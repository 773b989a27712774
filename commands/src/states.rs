//! Recently loaded aggregate states, kept in memory so that loading a stream again reads
//! only the events appended since. A stream is append-only and its events never change,
//! so a state folded up to version n is that stream's state at n for good, whoever
//! appends after: a load starts from the kept state and folds what follows. Without it a
//! busy stream (a hot account, a product every order takes stock from) is read and folded
//! whole on every command, and its cost grows with its length.
//!
//! Bounded: two generations of at most `capacity / 2` streams each; when the young one
//! fills, the old one is dropped and the young one becomes old (a stream found in the old
//! generation moves back to the young one), so what stays is what is used.

use crate::handler::Loaded;
use domain::{Aggregate, StreamId, TenantId};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

type Key = (TenantId, StreamId);
type Kept = Arc<dyn Any + Send + Sync>;

pub struct States {
    half: usize,
    generations: Mutex<(HashMap<Key, Kept>, HashMap<Key, Kept>)>,
}

impl Default for States {
    fn default() -> Self {
        Self::with_capacity(4096)
    }
}

impl States {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            half: (capacity / 2).max(1),
            generations: Mutex::new((HashMap::new(), HashMap::new())),
        }
    }

    /// The kept state of `stream` as an `A`, if there is one.
    pub(crate) fn get<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Option<Loaded<A>> {
        let key = (tenant.clone(), stream.clone());
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let kept = match g.0.get(&key) {
            Some(k) => k.clone(),
            None => {
                let k = g.1.remove(&key)?;
                self.insert(&mut g, key, k.clone());
                k
            }
        };
        drop(g);
        kept.downcast_ref::<Loaded<A>>().cloned()
    }

    /// Keeps `loaded` as the state of `stream`, unless a later one is kept already.
    pub(crate) fn put<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        loaded: &Loaded<A>,
    ) {
        let key = (tenant.clone(), stream.clone());
        let kept: Kept = Arc::new(loaded.clone());
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newer =
            g.0.get(&key)
                .and_then(|k| k.downcast_ref::<Loaded<A>>())
                .is_some_and(|k| k.version > loaded.version);
        if !newer {
            g.1.remove(&key);
            self.insert(&mut g, key, kept);
        }
    }

    fn insert(&self, g: &mut (HashMap<Key, Kept>, HashMap<Key, Kept>), key: Key, kept: Kept) {
        if g.0.len() >= self.half && !g.0.contains_key(&key) {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(key, kept);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.0.len() + g.1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::task::Task;

    fn loaded(version: u64) -> Loaded<Task> {
        Loaded {
            state: Task::default(),
            version,
            last: None,
        }
    }

    #[test]
    fn the_latest_state_is_kept_and_the_bound_holds() {
        let states = States::with_capacity(4);
        let t = TenantId::parse("t").unwrap();
        let s = |i: u32| StreamId::parse(format!("task-{i}")).unwrap();
        states.put(&t, &s(1), &loaded(3));
        states.put(&t, &s(1), &loaded(2));
        assert_eq!(states.get::<Task>(&t, &s(1)).map(|l| l.version), Some(3));
        assert!(
            states.get::<domain::tenant::Tenant>(&t, &s(1)).is_none(),
            "another type"
        );
        for i in 2..50 {
            states.put(&t, &s(i), &loaded(1));
            assert!(states.len() <= 4);
        }
        assert!(states.get::<Task>(&t, &s(49)).is_some());
        assert!(states.get::<Task>(&t, &s(2)).is_none(), "long unused");
    }
}
