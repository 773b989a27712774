//! The embedded read-model store: rows of every view in one SQLite file, each with the
//! stream version it reflects; checkpoints and dead letters beside them, all written in
//! one transaction per projector batch.

use super::pool::ReadPool;
use async_trait::async_trait;
use chrono::Utc;
use domain::TenantId;
use domain::envelope::format_time;
use projections::replay::{Rebuildable, Swap, Swapped, shadow_name};
use projections::tally::{Merged, Tally};
use projections::{
    DeadLetter, ListQuery, ReadModelError, ReadModelStore, RowKey, RowWrite, StoredRow,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS view_rows (
    view      TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    row_id    TEXT NOT NULL,
    version   INTEGER NOT NULL,
    doc       TEXT,
    PRIMARY KEY (view, tenant_id, row_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    epoch    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY,
    view        TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    stream_id   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    event       TEXT NOT NULL,
    error       TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
";

#[derive(Clone)]
pub struct SqliteReadModelStore {
    writer: Arc<Mutex<Connection>>,
    readers: ReadPool,
    /// The epoch of each checkpoint as this handle last read or wrote it. A replay's swap
    /// (`swap_in`, maybe from another process) bumps the epoch: a commit against a
    /// checkpoint whose epoch moved was prepared against rows that are gone, and fails.
    epochs: Arc<Mutex<HashMap<String, i64>>>,
}

fn backend(e: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Backend(e.to_string())
}

impl SqliteReadModelStore {
    /// Opens (or creates) the read models at `path`. A crash may lose the last batches
    /// (`synchronous=NORMAL`), but rows and checkpoint always together: the projector
    /// re-applies from the checkpoint.
    pub fn open(path: &Path) -> Result<Self, ReadModelError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        add_epochs(&conn).map_err(backend)?;
        // The projector's commits never checkpoint (a checkpoint syncs the database file
        // and would stall the projector, showing as lag); a background thread does.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(backend)?;
        let writer = Arc::new(Mutex::new(conn));
        super::spawn_checkpointer("views-checkpointer", path, Arc::downgrade(&writer), "views")
            .map_err(backend)?;
        Ok(Self {
            writer,
            readers: ReadPool::new(path),
            epochs: Arc::default(),
        })
    }

    /// Notes the epoch of checkpoint `name` as found; false when it differs from the one
    /// this handle saw before.
    fn saw_epoch(&self, name: &str, epoch: i64) -> bool {
        let mut seen = self
            .epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert(name.to_owned(), epoch)
            .is_none_or(|before| before == epoch)
    }

    async fn write<R, F>(&self, f: F) -> Result<R, ReadModelError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, ReadModelError> + Send + 'static,
    {
        let writer = self.writer.clone();
        super::pool::blocking(move || {
            let mut conn = writer.lock().map_err(|_| backend("view writer poisoned"))?;
            f(&mut conn)
        })
        .await
        .map_err(backend)?
    }

    async fn read<R, F>(&self, f: F) -> Result<R, ReadModelError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.readers.run(f).await.map_err(ReadModelError::Backend)
    }

    /// Dead letters of a view, oldest first, as (stream, version, error).
    pub async fn dead_letters(
        &self,
        view: &str,
    ) -> Result<Vec<(String, u64, String)>, ReadModelError> {
        let view = view.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT stream_id, version, error FROM dead_letters WHERE view = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([view], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
            })?;
            rows.collect()
        })
        .await
    }
}

fn parse_doc(doc: Option<String>) -> rusqlite::Result<Option<serde_json::Value>> {
    doc.map(|d| serde_json::from_str(&d))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn stored_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        row_id: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        doc: parse_doc(r.get(2)?)?,
    })
}

fn write_row(tx: &Connection, view: &str, w: &RowWrite) -> Result<(), ReadModelError> {
    let doc = w.doc.as_ref().map(ToString::to_string);
    let changed = if w.expected_version == 0 {
        tx.prepare_cached(
            "INSERT INTO view_rows (view, tenant_id, row_id, version, doc) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![view, w.key.tenant_id.as_str(), w.key.row_id, w.version as i64, doc]))
    } else {
        tx.prepare_cached(
            "UPDATE view_rows SET version = ?4, doc = ?5 \
             WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3 AND version = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                view,
                w.key.tenant_id.as_str(),
                w.key.row_id,
                w.version as i64,
                doc,
                w.expected_version as i64
            ])
        })
    }
    .map_err(backend)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(ReadModelError::Conflict {
            view: view.to_owned(),
            row_id: w.key.row_id.clone(),
            expected: w.expected_version,
        })
    }
}

/// Adds a tally's change into its summary row, creating it.
fn add_tally(tx: &Connection, tenant: &TenantId, change: &Tally) -> Result<(), ReadModelError> {
    let found = tx
        .prepare_cached(
            "SELECT version, doc FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![change.view, tenant.as_str(), change.row_id], |r| {
                Ok((r.get::<_, i64>(0)? as u64, parse_doc(r.get(1)?)?))
            })
            .optional()
        })
        .map_err(backend)?;
    let (version, mut row) = match found {
        Some((v, Some(doc))) => (v, Tally::from_doc(&change.view, &change.row_id, &doc)?),
        Some((v, None)) => (v, Tally::new(&change.view, change.row_id.clone())),
        None => (0, Tally::new(&change.view, change.row_id.clone())),
    };
    row.absorb(change)?;
    tx.prepare_cached(
        "INSERT INTO view_rows (view, tenant_id, row_id, version, doc) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (view, tenant_id, row_id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
    )
    .and_then(|mut s| {
        s.execute(params![
            change.view,
            tenant.as_str(),
            change.row_id,
            (version + 1) as i64,
            row.to_doc().to_string()
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// A checkpoint's position and epoch; zeros when it has none.
fn read_checkpoint(c: &Connection, name: &str) -> rusqlite::Result<(u64, i64)> {
    c.prepare_cached("SELECT position, epoch FROM checkpoints WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()
        .map(Option::unwrap_or_default)
}

/// Adds the checkpoints' epoch to a file made before replays had one.
fn add_epochs(c: &Connection) -> rusqlite::Result<()> {
    let has: bool = c.query_row(
        "SELECT count(*) FROM pragma_table_info('checkpoints') WHERE name = 'epoch'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        c.execute_batch("ALTER TABLE checkpoints ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

fn write_dead_letter(tx: &Connection, d: &DeadLetter) -> Result<(), ReadModelError> {
    let event = serde_json::to_string(&d.event).map_err(backend)?;
    tx.prepare_cached(
        "INSERT INTO dead_letters (view, tenant_id, stream_id, version, event, error, recorded_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.view,
            d.event.tenant_id.as_str(),
            d.event.stream_id.as_str(),
            d.event.version as i64,
            event,
            d.error,
            format_time(&Utc::now())
        ])
    })
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl ReadModelStore for SqliteReadModelStore {
    async fn load(
        &self,
        view: &str,
        keys: &[RowKey],
    ) -> Result<HashMap<RowKey, StoredRow>, ReadModelError> {
        let (view, keys) = (view.to_owned(), keys.to_vec());
        // Through the writer: only the projector loads, right before it commits, and the
        // writer's page cache is always current.
        self.write(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT row_id, version, doc FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3")
                .map_err(backend)?;
            let mut found = HashMap::with_capacity(keys.len());
            for key in keys {
                let row = stmt
                    .query_row(params![view, key.tenant_id.as_str(), key.row_id], stored_row)
                    .optional()
                    .map_err(backend)?;
                if let Some(row) = row {
                    found.insert(key, row);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn commit(
        &self,
        view: &str,
        writes: Vec<RowWrite>,
        dead_letters: Vec<DeadLetter>,
        checkpoint: Option<(String, u64)>,
    ) -> Result<(), ReadModelError> {
        let view = view.to_owned();
        let this = self.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if let Some((name, _)) = &checkpoint {
                let (_, epoch) = read_checkpoint(&tx, name).map_err(backend)?;
                if !this.saw_epoch(name, epoch) {
                    return Err(ReadModelError::Conflict {
                        view: view.clone(),
                        row_id: format!("checkpoint {name} (replaced by a replay)"),
                        expected: 0,
                    });
                }
            }
            let mut tallies = Merged::default();
            for w in &writes {
                write_row(&tx, &view, w)?;
                for t in &w.tallies {
                    tallies.add(&w.key.tenant_id, t)?;
                }
            }
            for (tenant, change) in tallies.iter() {
                add_tally(&tx, tenant, change)?;
            }
            for d in &dead_letters {
                write_dead_letter(&tx, d)?;
            }
            if let Some((name, position)) = &checkpoint {
                tx.prepare_cached(
                    "INSERT INTO checkpoints (name, position) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                )
                .and_then(|mut s| s.execute(params![name, *position as i64]))
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn checkpoint(&self, name: &str) -> Result<u64, ReadModelError> {
        let key = name.to_owned();
        let (position, epoch) = self.read(move |c| read_checkpoint(c, &key)).await?;
        self.saw_epoch(name, epoch);
        Ok(position)
    }

    async fn get(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<Option<StoredRow>, ReadModelError> {
        let (view, tenant, row_id) = (view.to_owned(), tenant.to_string(), row_id.to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT row_id, version, doc FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3 \
                 AND doc IS NOT NULL",
            )?
            .query_row(params![view, tenant, row_id], stored_row)
            .optional()
        })
        .await
    }

    async fn row_version(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<u64, ReadModelError> {
        let (view, tenant, row_id) = (view.to_owned(), tenant.to_string(), row_id.to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT version FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3",
            )?
            .query_row(params![view, tenant, row_id], |r| r.get::<_, i64>(0))
            .optional()
            .map(|v| v.unwrap_or(0) as u64)
        })
        .await
    }

    async fn list(
        &self,
        view: &str,
        tenant: &TenantId,
        query: &ListQuery,
    ) -> Result<Vec<StoredRow>, ReadModelError> {
        let mut sql = String::from(
            "SELECT row_id, version, doc FROM view_rows WHERE view = ? AND tenant_id = ? AND doc IS NOT NULL",
        );
        let mut args: Vec<String> = vec![view.to_owned(), tenant.to_string()];
        for (field, value) in &query.filters {
            sql.push_str(" AND json_extract(doc, ?) = ?");
            args.push(format!("$.{field}"));
            args.push(value.clone());
        }
        if let Some(search) = query.search.as_ref().filter(|s| !s.fields.is_empty()) {
            let any: Vec<&str> = search
                .fields
                .iter()
                .map(|_| "instr(lower(json_extract(doc, ?)), ?) > 0")
                .collect();
            sql.push_str(&format!(" AND ({})", any.join(" OR ")));
            for field in &search.fields {
                args.push(format!("$.{field}"));
                args.push(search.text.to_ascii_lowercase());
            }
        }
        if let Some(after) = &query.after {
            sql.push_str(" AND row_id > ?");
            args.push(after.clone());
        }
        sql.push_str(&format!(" ORDER BY row_id LIMIT {}", query.limit.min(1000)));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), stored_row)?;
            rows.collect()
        })
        .await
    }

    async fn reset(&self, view: &str, tenant: Option<&TenantId>) -> Result<(), ReadModelError> {
        let (view, tenant) = (view.to_owned(), tenant.map(ToString::to_string));
        self.write(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            match &tenant {
                Some(t) => tx.execute(
                    "DELETE FROM view_rows WHERE view = ?1 AND tenant_id = ?2",
                    params![view, t],
                ),
                None => tx
                    .execute("DELETE FROM view_rows WHERE view = ?1", params![view])
                    .and_then(|_| {
                        tx.execute("DELETE FROM checkpoints WHERE name = ?1", params![view])
                    }),
            }
            .map_err(backend)?;
            // The rebuild records them again.
            tx.execute(
                "DELETE FROM dead_letters WHERE view = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                params![view, tenant],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl Rebuildable for SqliteReadModelStore {
    async fn swap_in(&self, swap: &Swap) -> Result<Swapped, ReadModelError> {
        let swap = swap.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            for name in &swap.checkpoints {
                let (at, _) = read_checkpoint(&tx, name).map_err(backend)?;
                if at > swap.position {
                    return Ok(Swapped::Behind {
                        checkpoint: name.clone(),
                        at,
                    });
                }
            }
            let tenant = swap.tenant.as_ref().map(ToString::to_string);
            let mut rows = 0;
            for view in &swap.views {
                let shadow = shadow_name(view);
                for table in ["view_rows", "dead_letters"] {
                    // `?2`: the tenant, or null for every tenant.
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE view = ?1 AND (?2 IS NULL OR tenant_id = ?2)"),
                        params![view, tenant],
                    )
                    .map_err(backend)?;
                    let moved = tx
                        .execute(
                            &format!(
                                "UPDATE {table} SET view = ?1 WHERE view = ?3 AND (?2 IS NULL OR tenant_id = ?2)"
                            ),
                            params![view, tenant, shadow],
                        )
                        .map_err(backend)?;
                    if table == "view_rows" {
                        rows += moved as u64;
                    }
                    // Nothing of other tenants is left in a tenant's shadow; to be sure.
                    tx.execute(&format!("DELETE FROM {table} WHERE view = ?1"), [&shadow])
                        .map_err(backend)?;
                }
            }
            for name in &swap.checkpoints {
                let position = if tenant.is_some() {
                    read_checkpoint(&tx, name).map_err(backend)?.0
                } else {
                    swap.position
                };
                tx.execute(
                    "INSERT INTO checkpoints (name, position, epoch) VALUES (?1, ?2, 1) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position, epoch = epoch + 1",
                    params![name, position as i64],
                )
                .map_err(backend)?;
                tx.execute("DELETE FROM checkpoints WHERE name = ?1", [shadow_name(name)])
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Swapped::Done { rows, tail: false })
        })
        .await
    }
}
