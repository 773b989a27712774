//! The read models as stored, straight from `views.db`, for tests that compare them.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// (view, tenant, row) → (version, doc) of every live row, tombstones included, and the
/// dead letters. A summary row's version counts the commits that changed it, which
/// depends on how the events were batched, so it is left out for tally views. Rows are
/// stored under their view's generation (`<view>#G<n>`); once a replay is over, only live
/// generations are left.
/// Dead letters as (view, stream, version).
pub type DeadLetters = Vec<(String, String, i64)>;

pub type Rows = BTreeMap<(String, String, String), (Option<i64>, Option<Value>)>;

pub fn live_rows(dir: &Path) -> (Rows, DeadLetters) {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("views.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open views");
    let mut stmt = db
        .prepare("SELECT view, tenant_id, row_id, version, doc FROM view_rows ORDER BY 1, 2, 3")
        .expect("prepare");
    let rows: Rows = stmt
        .query_map([], |r| {
            let stored: String = r.get(0)?;
            let view = stored
                .split_once("#G")
                .map_or(stored.clone(), |(v, _)| v.to_owned());
            let doc: Option<String> = r.get(4)?;
            let tally = projections::all()
                .iter()
                .any(|p| p.tally_views().contains(&view.as_str()));
            let version = if tally { None } else { Some(r.get(3)?) };
            Ok((
                (view, r.get(1)?, r.get(2)?),
                (
                    version,
                    doc.map(|d| serde_json::from_str(&d).expect("json")),
                ),
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // Each tenant's rows of a view are in one generation: no partial or replaced copy is
    // left behind.
    let mut stmt = db
        .prepare("SELECT DISTINCT view, tenant_id FROM view_rows")
        .expect("prepare");
    let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for pair in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
    {
        let (stored, tenant) = pair.expect("row");
        let view = stored
            .split_once("#G")
            .map_or(stored.clone(), |(v, _)| v.to_owned());
        seen.entry((view, tenant)).or_default().push(stored);
    }
    for (key, stored) in &seen {
        assert_eq!(stored.len(), 1, "{key:?} is stored as {stored:?}");
    }
    let mut stmt = db
        .prepare("SELECT view, stream_id, version FROM dead_letters ORDER BY 1, 2, 3")
        .expect("prepare");
    let dead = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("dead letters");
    (rows, dead)
}
