//! Hot streams: where this process's writers collide on a stream, they queue for it
//! instead of racing. A writer that meets a version conflict on a stream takes the
//! stream's turn (an async mutex, per tenant and stream) before deciding again; a writer
//! about to append to a stream others are queued on joins the queue and decides again on
//! its turn. Under many writers of one stream, the stream's commands then run one after
//! another (load, decide, append), with no wasted decisions and no backoff sleeps, while
//! streams nobody contends stay lock-free. Turns are taken in stream order, all at once,
//! so two writers never wait on each other. Across processes the store's optimistic
//! concurrency still decides: a turn only orders this process's writers.

use domain::{StreamId, TenantId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type Key = (TenantId, StreamId);

#[derive(Default)]
pub struct HotStreams {
    queues: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// How many streams have a queue: zero on the fast path, which then takes no lock.
    hot: AtomicUsize,
}

/// A writer's turn on one stream; the stream's queue goes away with its last writer.
pub struct Turn {
    streams: Arc<HotStreams>,
    key: Key,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turn {
    pub fn stream(&self) -> &StreamId {
        &self.key.1
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut queues = self
            .streams
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map holds the queue: nobody waits for a turn.
        if queues
            .get(&self.key)
            .is_some_and(|q| Arc::strong_count(q) == 1)
        {
            queues.remove(&self.key);
            self.streams.hot.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl HotStreams {
    /// Whether writers of this process are queued on `stream` of `tenant`.
    pub fn is_hot(&self, tenant: &TenantId, stream: &StreamId) -> bool {
        if self.hot.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.contains_key(&(tenant.clone(), stream.clone()))
    }

    /// Waits for a turn on each of `streams`, in stream order.
    pub async fn turns(self: &Arc<Self>, tenant: &TenantId, streams: &[StreamId]) -> Vec<Turn> {
        let mut keys: Vec<Key> = streams
            .iter()
            .map(|s| (tenant.clone(), s.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let mut turns = Vec::with_capacity(keys.len());
        for key in keys {
            let queue = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                queues
                    .entry(key.clone())
                    .or_insert_with(|| {
                        self.hot.fetch_add(1, Ordering::Relaxed);
                        Arc::default()
                    })
                    .clone()
            };
            let guard = queue.lock_owned().await;
            turns.push(Turn {
                streams: self.clone(),
                key,
                guard: Some(guard),
            });
        }
        turns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TenantId, StreamId, StreamId) {
        (
            TenantId::parse("t").unwrap(),
            StreamId::parse("account-a").unwrap(),
            StreamId::parse("account-b").unwrap(),
        )
    }

    #[tokio::test]
    async fn a_stream_is_hot_while_a_writer_has_or_awaits_its_turn() {
        let hot = Arc::new(HotStreams::default());
        let (t, a, b) = ids();
        assert!(!hot.is_hot(&t, &a));
        let turns = hot.turns(&t, &[b.clone(), a.clone(), a.clone()]).await;
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].stream(), &a, "in stream order");
        assert!(hot.is_hot(&t, &a) && hot.is_hot(&t, &b));
        let waiting = {
            let hot = hot.clone();
            let (t, a) = (t.clone(), a.clone());
            tokio::spawn(async move { hot.turns(&t, &[a]).await.len() })
        };
        tokio::task::yield_now().await;
        drop(turns);
        assert_eq!(waiting.await.unwrap(), 1, "the next writer gets its turn");
        assert!(
            !hot.is_hot(&t, &a) && !hot.is_hot(&t, &b),
            "and then it is cool again"
        );
        assert_eq!(hot.hot.load(Ordering::Relaxed), 0);
    }
}
