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

/// The read-model store's `within` contract, on any backend: a list returns the rows whose
/// `customer_id` is absent, null or in the set, and only those, with the other filters,
/// the cursor and the limit applied as without it.
pub async fn within_is_applied(views: &dyn projections::ReadModelStore) {
    use domain::TenantId;
    use projections::{ListQuery, RowKey, RowWrite, Within};
    use serde_json::json;
    let tenant = TenantId::parse(format!(
        "w{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .expect("tenant");
    let other = TenantId::parse(format!(
        "x{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .expect("tenant");
    let docs = [
        ("r1", json!({"customer_id": "A", "kind": "x"})),
        ("r2", json!({"customer_id": "B", "kind": "x"})),
        ("r3", json!({"customer_id": null, "kind": "x"})),
        ("r4", json!({"kind": "x"})),
        ("r5", json!({"customer_id": "C", "kind": "y"})),
        ("r6", json!({"customer_id": "A", "kind": "y"})),
        ("r7", json!({"customer_id": 7, "kind": "x"})),
    ];
    let writes = |tenant: &TenantId| -> Vec<RowWrite> {
        docs.iter()
            .map(|(id, doc)| RowWrite {
                key: RowKey {
                    tenant_id: tenant.clone(),
                    row_id: (*id).to_owned(),
                },
                expected_version: 0,
                version: 1,
                doc: Some(doc.clone()),
                tallies: vec![],
            })
            .collect()
    };
    views
        .commit("scoped", writes(&tenant), vec![], None)
        .await
        .expect("commit");
    views
        .commit("scoped", writes(&other), vec![], None)
        .await
        .expect("commit");
    let within = |ids: &[&str]| {
        Some(Within {
            field: "customer_id".into(),
            values: ids.iter().map(|s| (*s).to_owned()).collect(),
        })
    };
    let list = |query: ListQuery| {
        let tenant = tenant.clone();
        async move {
            views
                .list("scoped", &tenant, &query)
                .await
                .expect("list")
                .into_iter()
                .map(|r| r.row_id)
                .collect::<Vec<_>>()
        }
    };
    let all = list(ListQuery {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all, ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
    let scoped = list(ListQuery {
        within: within(&["A", "C"]),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(scoped, ["r1", "r3", "r4", "r5", "r6"]);
    let none = list(ListQuery {
        within: within(&[]),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        none,
        ["r3", "r4"],
        "an empty set leaves only rows of no customer"
    );
    let filtered = list(ListQuery {
        filters: vec![("kind".into(), "x".into())],
        within: within(&["A", "B"]),
        after: Some("r1".into()),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(filtered, ["r2", "r3"]);
}
