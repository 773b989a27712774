//! `chronicle replay`: which projections a rebuild names, and how its progress shows (a
//! bar with events/s and ETA on a terminal, a plain line every few seconds otherwise).
//! The rebuild itself is `projections::replay::rebuild`.

use indicatif::{ProgressBar, ProgressStyle};
use projections::Projection;
use projections::replay::Progress;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The projections `names` pick out, by a view's name or the name of a view a
/// projection's tallies write (`revenue`: the orders projection); every projection for
/// none.
pub fn projections_named(names: &[String]) -> Result<Vec<Arc<dyn Projection>>, String> {
    let all = projections::all();
    if names.is_empty() {
        return Ok(all);
    }
    let mut picked: Vec<Arc<dyn Projection>> = Vec::new();
    for name in names {
        let p = all
            .iter()
            .find(|p| p.name() == name || p.tally_views().contains(&name.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = all
                    .iter()
                    .flat_map(|p| std::iter::once(p.name()).chain(p.tally_views().iter().copied()))
                    .collect();
                format!("no projection {name:?}; known: {}", known.join(", "))
            })?;
        if !picked.iter().any(|q| q.name() == p.name()) {
            picked.push(p.clone());
        }
    }
    Ok(picked)
}

/// One tenant's history through the event store's tenant feed (every event once, each
/// stream in version order): what a rebuild reads on DynamoDB, which has no log of all.
pub struct TenantHistory {
    store: Arc<dyn commands::EventStore>,
    tenant: domain::TenantId,
    cursor: tokio::sync::Mutex<commands::FeedCursor>,
}

impl TenantHistory {
    pub fn new(store: Arc<dyn commands::EventStore>, tenant: domain::TenantId) -> Self {
        Self {
            store,
            tenant,
            cursor: tokio::sync::Mutex::new(commands::FeedCursor::start()),
        }
    }
}

#[async_trait::async_trait]
impl projections::replay::History for TenantHistory {
    async fn next(
        &self,
        limit: usize,
    ) -> Result<Vec<domain::EventEnvelope>, projections::ReadModelError> {
        let mut cursor = self.cursor.lock().await;
        let page = self
            .store
            .read_tenant_feed(&self.tenant, &cursor, limit)
            .await
            .map_err(|e| projections::ReadModelError::Unavailable(e.to_string()))?;
        *cursor = page.next;
        Ok(page.events)
    }
}

/// Progress on stderr.
pub struct Shown {
    started: Instant,
    bar: Option<ProgressBar>,
    last_line: Mutex<Instant>,
}

/// A plain progress line at most this often, off a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

impl Shown {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn on_stderr() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} positions  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            started: Instant::now(),
            bar,
            last_line: Mutex::new(Instant::now()),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Shown {
    fn advanced(&self, position: u64, head: Option<u64>, read: u64) {
        if let Some(bar) = &self.bar {
            match head {
                Some(head) => {
                    bar.set_length(head);
                    bar.set_position(position);
                }
                // Without a head there is no end to show: the events read, and their rate.
                None => bar.set_position(read),
            }
            return;
        }
        let mut last = self
            .last_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < LINE_EVERY {
            return;
        }
        *last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = read as f64 / secs;
        match head {
            Some(head) => {
                let eta = if rate > 0.0 {
                    format!("{:.0}s", head.saturating_sub(position) as f64 / rate)
                } else {
                    "?".into()
                };
                eprintln!(
                    "replay: position {position} of {head} ({:.1}%), {rate:.0} events/s, ETA {eta}",
                    100.0 * position as f64 / head.max(1) as f64
                );
            }
            None => eprintln!("replay: {read} events read, {rate:.0} events/s"),
        }
    }

    fn swapping(&self) {
        match &self.bar {
            Some(bar) => bar.set_message("swapping in"),
            None => eprintln!("replay: caught up; swapping the rebuilt copy in"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_view_names_the_projection_that_writes_it() {
        let picked = projections_named(&["revenue".into(), "orders".into()]).expect("known");
        assert_eq!(
            picked.iter().map(|p| p.name()).collect::<Vec<_>>(),
            ["orders"]
        );
        assert_eq!(
            projections_named(&[]).expect("all").len(),
            projections::all().len()
        );
        let err = projections_named(&["nope".into()]).err().expect("unknown");
        assert!(err.contains("tasks") && err.contains("revenue"), "{err}");
    }
}
