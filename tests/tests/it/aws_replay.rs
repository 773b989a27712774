//! `chronicle replay --backend aws` on the emulator: a tenant's read model rebuilt from its
//! feed into the next generation of its partition and swapped in by one conditional
//! write; another tenant's rows untouched; a live projector's handle that still writes to
//! the old generation is fenced off and lands in the new one; the old generation's rows
//! are removed.

use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::conformance::{request, tenant, write};
use chronicle_tests::process::chronicle_bin;
use commands::{EventStore, ExpectedVersion, NewEvent};
use domain::{EventEnvelope, StreamId, TenantId};
use infra::aws::{Aws, DynamoEventStore, DynamoReadModelStore, queue_projector};
use projections::replay::{Rebuildable, Swap, Swapped};
use projections::tasks::{TasksProjection, VIEW};
use projections::{ReadModelError, ReadModelStore, RowKey, RowWrite};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

fn created(id: &Uuid, title: &str) -> NewEvent {
    NewEvent {
        event_type: "TaskCreated".into(),
        schema_version: 1,
        payload: json!({"task_id": id.to_string(), "title": title, "description": "", "assigned_to": null,
               "created_by": "alice", "created_at": "2026-12-01T00:00:00Z"}),
    }
}

fn renamed(title: &str) -> NewEvent {
    NewEvent {
        event_type: "TaskUpdated".into(),
        schema_version: 1,
        payload: json!({"title": title, "updated_at": "2026-12-01T00:00:01Z"}),
    }
}

async fn append(aws: &Aws, t: &TenantId, stream: &StreamId, e: NewEvent) -> Vec<EventEnvelope> {
    DynamoEventStore::new(aws)
        .append(request(
            t,
            vec![write(stream, ExpectedVersion::Any, vec![e])],
        ))
        .await
        .expect("append")
        .into_events()
}

async fn damage(aws: &Aws, t: &TenantId, id: &Uuid) {
    aws.dynamodb
        .update_item()
        .table_name(&aws.names.views_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{t}#V#{VIEW}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
        )
        .update_expression("SET doc = :d")
        .expression_attribute_values(
            ":d",
            aws_sdk_dynamodb::types::AttributeValue::S(r#"{"title":"damaged"}"#.into()),
        )
        .send()
        .await
        .expect("damage");
}

async fn title(t: &TenantId, id: &Uuid, aws: &Aws) -> String {
    // A fresh handle: nothing cached of the generations.
    let row = DynamoReadModelStore::new(aws)
        .get(VIEW, t, &id.to_string())
        .await
        .expect("get")
        .expect("row");
    row.doc.expect("doc")["title"]
        .as_str()
        .expect("title")
        .to_owned()
}

fn replay(prefix: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(chronicle_bin())
        .args(["replay", "--backend", "aws", "--aws-prefix", prefix])
        .args(args)
        .output()
        .expect("run chronicle replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_rebuild_swaps_a_generation_in_and_fences_the_old_one() {
    let prefix = format!("rp{}", &Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let (a, b) = (tenant(), tenant());
    let (ta, tb) = (Uuid::now_v7(), Uuid::now_v7());
    let (sa, sb) = (
        StreamId::for_aggregate("task", ta),
        StreamId::for_aggregate("task", tb),
    );
    // The live projector, as the queue consumer runs it, with a handle kept from before.
    let live = queue_projector(&aws, Arc::new(TasksProjection));
    let mut events = append(&aws, &a, &sa, created(&ta, "first")).await;
    events.extend(append(&aws, &a, &sa, renamed("second")).await);
    events.extend(append(&aws, &b, &sb, created(&tb, "theirs")).await);
    live.apply_batch(&events, None).await.expect("projected");
    damage(&aws, &a, &ta).await;
    damage(&aws, &b, &tb).await;
    assert_eq!(title(&a, &ta, &aws).await, "damaged");

    let (code, _, err) = replay(&prefix, &["--all"]);
    assert_ne!(code, 0);
    assert!(err.contains("--tenant"), "{err}");

    let (code, out, err) = replay(&prefix, &["--tenant", a.as_str(), "--projection", VIEW]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("swapped in 1 rows"), "{out}");
    assert_eq!(
        title(&a, &ta, &aws).await,
        "second",
        "rebuilt from the feed"
    );
    assert_eq!(
        title(&b, &tb, &aws).await,
        "damaged",
        "another tenant's rows are not touched"
    );

    // The live projector goes on into the live generation.
    let next = append(&aws, &a, &sa, renamed("third")).await;
    live.apply_batch(&next, None)
        .await
        .expect("applied after the swap");
    assert_eq!(title(&a, &ta, &aws).await, "third");

    // The old generation's partition is gone.
    let old = aws
        .dynamodb
        .query()
        .table_name(&aws.names.views_table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{a}#V#{VIEW}")),
        )
        .send()
        .await
        .expect("query");
    assert_eq!(old.count(), 0, "{:?}", old.items());

    // A handle that cached the generation before another swapped the next one in: its
    // write is refused, nothing lands, and once it has reloaded it writes where readers
    // look.
    let stale = DynamoReadModelStore::new(&aws);
    let row = stale
        .get(VIEW, &a, &ta.to_string())
        .await
        .expect("get")
        .expect("row");
    let swap = Swap {
        views: vec![VIEW.into()],
        checkpoints: vec![],
        tenant: Some(a.clone()),
        position: 0,
    };
    let other = DynamoReadModelStore::new(&aws);
    assert!(matches!(
        other.swap_in(&swap).await.expect("swap"),
        Swapped::Done {
            rows: 0,
            tail: true
        }
    ));
    let key = RowKey {
        tenant_id: a.clone(),
        row_id: ta.to_string(),
    };
    let write = |expected| RowWrite {
        key: key.clone(),
        expected_version: expected,
        version: row.version + 1,
        doc: Some(json!({"title": "late"})),
        tallies: vec![],
    };
    let fenced = stale
        .commit(VIEW, vec![write(row.version)], vec![], None)
        .await;
    assert!(
        matches!(fenced, Err(ReadModelError::Conflict { .. })),
        "{fenced:?}"
    );
    assert!(
        other
            .get(VIEW, &a, &ta.to_string())
            .await
            .expect("get")
            .is_none(),
        "nothing landed"
    );
    stale
        .commit(VIEW, vec![write(0)], vec![], None)
        .await
        .expect("after the reload");
    assert_eq!(title(&a, &ta, &aws).await, "late");
}
