//! The embedded read-model store: rows of every view in one SQLite file, each with the
//! stream version it reflects; checkpoints and dead letters beside them, all written in
//! one transaction per projector batch.
//!
//! A tenant's rows of a view are stored under the name of the view's live *generation*
//! for that tenant (`view_generations`: a tenant's own entry, else the view's `*` entry,
//! else 0; generation 0 is the view's own name, g is `<view>#G<g>`). A rebuild writes a
//! new generation for every tenant it covers (`view_rebuilds`, what the shadow name
//! `<view>~rebuild` resolves to) and its swap points those tenants at it: a few small
//! writes, however many rows; the old generation's rows are deleted afterwards in small
//! transactions (`Rebuildable::retire`). Readers resolve the generation and read the rows
//! in one read transaction.

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
CREATE TABLE IF NOT EXISTS view_generations (
    view       TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (view, tenant_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_rebuilds (
    view       TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view_retired (
    stored_as TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (stored_as, tenant_id)
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
    writer: super::Writer,
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

/// The name a generation of a view is stored under.
fn generation_name(view: &str, generation: i64) -> String {
    match generation {
        0 => view.to_owned(),
        g => format!("{view}#G{g}"),
    }
}

/// The live generation of `view` for `tenant`.
fn live_generation(c: &Connection, view: &str, tenant: &str) -> rusqlite::Result<i64> {
    // Two key lookups: `tenant_id IN (?2, '*')` built a temporary index of the list on
    // every call (5% of the projector's time under `POST /tasks`).
    let mut entry = c.prepare_cached(
        "SELECT generation FROM view_generations WHERE view = ?1 AND tenant_id = ?2",
    )?;
    for key in [tenant, "*"] {
        if let Some(g) = entry
            .query_row(params![view, key], |r| r.get(0))
            .optional()?
        {
            return Ok(g);
        }
    }
    Ok(0)
}

/// The generation a rebuild of `view` under way writes.
fn rebuild_generation(c: &Connection, view: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT generation FROM view_rebuilds WHERE view = ?1")?
        .query_row([view], |r| r.get(0))
        .optional()
}

/// The name the rows of `view` (a live or a shadow name) for `tenant` are stored under.
fn physical(c: &Connection, view: &str, tenant: &str) -> rusqlite::Result<String> {
    match view.strip_suffix(shadow_name("").as_str()) {
        Some(live) => match rebuild_generation(c, live)? {
            Some(g) => Ok(generation_name(live, g)),
            None => Err(rusqlite::Error::InvalidParameterName(format!(
                "no rebuild of {live} is under way"
            ))),
        },
        None => Ok(generation_name(view, live_generation(c, view, tenant)?)),
    }
}

/// Physical names resolved once per (view, tenant) within one transaction. A commit touches
/// one or two views of a few tenants, so a list looked through beats a map: a hit costs no
/// allocation and no hashing (with a map, 5% of the projector's time under `POST /tasks`).
#[derive(Default)]
struct Names(Vec<(String, String, String)>);

impl Names {
    fn of(&mut self, c: &Connection, view: &str, tenant: &str) -> Result<&str, ReadModelError> {
        let at = match self.0.iter().position(|(v, t, _)| v == view && t == tenant) {
            Some(at) => at,
            None => {
                let name = physical(c, view, tenant).map_err(backend)?;
                self.0.push((view.to_owned(), tenant.to_owned(), name));
                self.0.len() - 1
            }
        };
        Ok(&self.0[at].2)
    }
}

fn write_row(tx: &Connection, view: &str, w: &RowWrite) -> Result<(), ReadModelError> {
    // `to_string` writes through `fmt`, a few bytes per call; this writes into one buffer.
    let doc = w
        .doc
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(backend)?;
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
fn add_tally(
    tx: &Connection,
    stored_as: &str,
    tenant: &TenantId,
    change: &Tally,
) -> Result<(), ReadModelError> {
    let found = tx
        .prepare_cached(
            "SELECT version, doc FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![stored_as, tenant.as_str(), change.row_id], |r| {
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
    let doc = serde_json::to_string(&row.to_doc()).map_err(backend)?;
    tx.prepare_cached(
        "INSERT INTO view_rows (view, tenant_id, row_id, version, doc) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (view, tenant_id, row_id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
    )
    .and_then(|mut s| {
        s.execute(params![
            stored_as,
            tenant.as_str(),
            change.row_id,
            (version + 1) as i64,
            doc
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
            let mut names = Names::default();
            let mut stmt = c
                .prepare_cached("SELECT row_id, version, doc FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3")
                .map_err(backend)?;
            let mut found = HashMap::with_capacity(keys.len());
            for key in keys {
                let stored_as = names.of(c, &view, key.tenant_id.as_str())?;
                let row = stmt
                    .query_row(params![stored_as, key.tenant_id.as_str(), key.row_id], stored_row)
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
            let mut names = Names::default();
            let mut tallies = Merged::default();
            for w in &writes {
                let stored_as = names.of(&tx, &view, w.key.tenant_id.as_str())?;
                write_row(&tx, stored_as, w)?;
                for t in &w.tallies {
                    tallies.add(&w.key.tenant_id, t)?;
                }
            }
            for (tenant, change) in tallies.iter() {
                let stored_as = names.of(&tx, &change.view, tenant.as_str())?;
                add_tally(&tx, stored_as, tenant, change)?;
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
            let tx = c.unchecked_transaction()?;
            let stored_as = physical(&tx, &view, &tenant)?;
            tx.prepare_cached(
                "SELECT row_id, version, doc FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3 \
                 AND doc IS NOT NULL",
            )?
            .query_row(params![stored_as, tenant, row_id], stored_row)
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
            let tx = c.unchecked_transaction()?;
            let stored_as = physical(&tx, &view, &tenant)?;
            tx.prepare_cached(
                "SELECT version FROM view_rows WHERE view = ?1 AND tenant_id = ?2 AND row_id = ?3",
            )?
            .query_row(params![stored_as, tenant, row_id], |r| r.get::<_, i64>(0))
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
        // The first argument, the view's stored name, is resolved in the read's transaction.
        let mut args: Vec<String> = vec![String::new(), tenant.to_string()];
        let (view, tenant) = (view.to_owned(), tenant.to_string());
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
        if let Some(within) = &query.within {
            sql.push_str(
                " AND (json_type(doc, ?) IS NULL OR json_type(doc, ?) = 'null' \
                 OR (json_type(doc, ?) = 'text' AND json_extract(doc, ?) IN (SELECT value FROM json_each(?))))",
            );
            let path = format!("$.{}", within.field);
            args.extend([path.clone(), path.clone(), path.clone(), path]);
            args.push(serde_json::Value::from_iter(within.values.iter().cloned()).to_string());
        }
        if let Some(after) = &query.after {
            sql.push_str(" AND row_id > ?");
            args.push(after.clone());
        }
        sql.push_str(&format!(" ORDER BY row_id LIMIT {}", query.limit.min(1000)));
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            args[0] = physical(&tx, &view, &tenant)?;
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), stored_row)?;
            rows.collect()
        })
        .await
    }

    /// A shadow name's reset starts a new generation for the rebuild (any rows of an
    /// interrupted one are dropped); a live name's drops the rows of every generation.
    async fn reset(&self, view: &str, tenant: Option<&TenantId>) -> Result<(), ReadModelError> {
        let (view, tenant) = (view.to_owned(), tenant.map(ToString::to_string));
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if let Some(live) = view.strip_suffix(shadow_name("").as_str()) {
                if let Some(old) = rebuild_generation(&tx, live).map_err(backend)? {
                    tx.execute(
                        "DELETE FROM view_rows WHERE view = ?1",
                        [generation_name(live, old)],
                    )
                    .map_err(backend)?;
                }
                let next: i64 = tx
                    .query_row(
                        "SELECT max(coalesce((SELECT max(generation) FROM view_generations WHERE view = ?1), 0), \
                                    coalesce((SELECT max(generation) FROM view_rebuilds WHERE view = ?1), 0)) + 1",
                        [live],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                tx.execute(
                    "INSERT INTO view_rebuilds (view, generation) VALUES (?1, ?2) \
                     ON CONFLICT (view) DO UPDATE SET generation = excluded.generation",
                    params![live, next],
                )
                .map_err(backend)?;
            } else {
                match &tenant {
                    Some(t) => {
                        let stored_as = physical(&tx, &view, t).map_err(backend)?;
                        tx.execute(
                            "DELETE FROM view_rows WHERE view = ?1 AND tenant_id = ?2",
                            params![stored_as, t],
                        )
                    }
                    None => tx
                        .execute(
                            "DELETE FROM view_rows WHERE view = ?1 OR substr(view, 1, length(?1) + 2) = ?1 || '#G'",
                            params![view],
                        )
                        .and_then(|_| tx.execute("DELETE FROM view_generations WHERE view = ?1", [&view]))
                        .and_then(|_| {
                            tx.execute("DELETE FROM checkpoints WHERE name = ?1", params![view])
                        }),
                }
                .map_err(backend)?;
            }
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
                let Some(generation) = rebuild_generation(&tx, view).map_err(backend)? else {
                    return Err(backend(format!("no rebuild of {view} is under way")));
                };
                let stored_as = generation_name(view, generation);
                rows += tx
                    .query_row(
                        "SELECT count(*) FROM view_rows WHERE view = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                        params![stored_as, tenant],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(backend)? as u64;
                // What the swap replaces, for `retire` to delete (kept here so that a crash
                // in between leaves nothing behind for good).
                let replaced: Vec<(String, String)> = match &tenant {
                    Some(t) => vec![(
                        generation_name(view, live_generation(&tx, view, t).map_err(backend)?),
                        t.clone(),
                    )],
                    None => {
                        let mut stmt = tx
                            .prepare("SELECT DISTINCT generation FROM view_generations WHERE view = ?1")
                            .map_err(backend)?;
                        let mut old: Vec<i64> = stmt
                            .query_map([view], |r| r.get(0))
                            .and_then(|rows| rows.collect())
                            .map_err(backend)?;
                        old.push(0);
                        old.into_iter()
                            .map(|g| (generation_name(view, g), "*".to_owned()))
                            .collect()
                    }
                };
                for (stored, whose) in &replaced {
                    tx.execute(
                        "INSERT OR IGNORE INTO view_retired (stored_as, tenant_id) VALUES (?1, ?2)",
                        params![stored, whose],
                    )
                    .map_err(backend)?;
                }
                match &tenant {
                    Some(t) => tx.execute(
                        "INSERT INTO view_generations (view, tenant_id, generation) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (view, tenant_id) DO UPDATE SET generation = excluded.generation",
                        params![view, t, generation],
                    ),
                    None => tx
                        .execute("DELETE FROM view_generations WHERE view = ?1", [view])
                        .and_then(|_| {
                            tx.execute(
                                "INSERT INTO view_generations (view, tenant_id, generation) VALUES (?1, '*', ?2)",
                                params![view, generation],
                            )
                        }),
                }
                .map_err(backend)?;
                tx.execute("DELETE FROM view_rebuilds WHERE view = ?1", [view])
                    .map_err(backend)?;
                // Dead letters are few: they move.
                let shadow = shadow_name(view);
                tx.execute(
                    "DELETE FROM dead_letters WHERE view = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![view, tenant],
                )
                .map_err(backend)?;
                tx.execute(
                    "UPDATE dead_letters SET view = ?1 WHERE view = ?2",
                    params![view, shadow],
                )
                .map_err(backend)?;
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

    /// Deletes the rows the swaps replaced, a few thousand per transaction, so the live
    /// projector is never held up for long.
    async fn retire(&self, _swap: &Swap) -> Result<(), ReadModelError> {
        loop {
            let deleted = self
                .write(move |conn| {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(backend)?;
                    let next: Option<(String, String)> = tx
                        .query_row(
                            "SELECT stored_as, tenant_id FROM view_retired LIMIT 1",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(backend)?;
                    let Some((stored, whose)) = next else {
                        return Ok(None);
                    };
                    let n = tx
                        .execute(
                            "DELETE FROM view_rows WHERE (view, tenant_id, row_id) IN ( \
                               SELECT view, tenant_id, row_id FROM view_rows \
                               WHERE view = ?1 AND (?2 = '*' OR tenant_id = ?2) LIMIT 5000)",
                            params![stored, whose],
                        )
                        .map_err(backend)?;
                    if n == 0 {
                        tx.execute(
                            "DELETE FROM view_retired WHERE stored_as = ?1 AND tenant_id = ?2",
                            params![stored, whose],
                        )
                        .map_err(backend)?;
                    }
                    tx.commit().map_err(backend)?;
                    Ok(Some(n))
                })
                .await?;
            if deleted.is_none() {
                return Ok(());
            }
        }
    }
}
