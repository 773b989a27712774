//! Which tenants' read models just changed, for whoever waits on them (the event stream,
//! `GET /events/stream`). Fed by the projectors' commits where they run in process (the
//! embedded backend), and on AWS, where they run elsewhere, by the views table's DynamoDB
//! stream (`infra::aws::view_changes`). A waiter subscribes before it reads, so a change
//! between its read and its wait is not lost: its next wait returns at once.

use domain::TenantId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct ViewChanges {
    /// A counter per tenant someone waits on; a tenant no one waits on has none.
    tenants: Mutex<HashMap<TenantId, watch::Sender<u64>>>,
    /// Whether something feeds this (a projector in process, or a stream follower that
    /// has found the views table's stream): until then waiters poll.
    fed: AtomicBool,
}

/// One waiter's view of a tenant's changes.
pub struct Subscription {
    rx: watch::Receiver<u64>,
}

impl ViewChanges {
    /// Changes that something feeds from the start (in-process projectors).
    pub fn fed() -> Self {
        let c = Self::default();
        c.set_fed(true);
        c
    }

    pub fn set_fed(&self, fed: bool) {
        self.fed.store(fed, Ordering::Relaxed);
    }

    pub fn is_fed(&self) -> bool {
        self.fed.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self, tenant: &TenantId) -> Subscription {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = tenants
            .entry(tenant.clone())
            .or_insert_with(|| watch::channel(0).0);
        Subscription { rx: tx.subscribe() }
    }

    /// The read models of `tenant` changed.
    pub fn changed(&self, tenant: &TenantId) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let gone = match tenants.get(tenant) {
            Some(tx) if tx.receiver_count() == 0 => true,
            Some(tx) => {
                tx.send_modify(|n| *n = n.wrapping_add(1));
                false
            }
            None => false,
        };
        if gone {
            tenants.remove(tenant);
        }
    }
}

impl Subscription {
    /// Marks every change so far as seen (call it before reading).
    pub fn seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for a change not yet seen; false after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.rx.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).expect("tenant")
    }

    #[tokio::test]
    async fn a_change_wakes_its_tenants_waiters_only_and_is_not_lost_before_the_wait() {
        let changes = ViewChanges::fed();
        let mut acme = changes.subscribe(&tenant("acme"));
        let mut globex = changes.subscribe(&tenant("globex"));
        acme.seen();
        globex.seen();
        // Changed between the read and the wait: the wait returns at once.
        changes.changed(&tenant("acme"));
        assert!(acme.wait(Duration::from_millis(50)).await);
        assert!(!globex.wait(Duration::from_millis(50)).await);
        acme.seen();
        assert!(!acme.wait(Duration::from_millis(20)).await, "seen already");
    }

    #[test]
    fn a_tenant_no_one_waits_on_is_forgotten() {
        let changes = ViewChanges::default();
        assert!(!changes.is_fed());
        let sub = changes.subscribe(&tenant("acme"));
        drop(sub);
        changes.changed(&tenant("acme"));
        assert!(changes.tenants.lock().expect("lock").is_empty());
    }
}
