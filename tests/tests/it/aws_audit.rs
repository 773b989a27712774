//! `chronicle audit verify --backend aws` on the emulator: a stream whose event item was
//! deleted from DynamoDB is named, with the version where the sequence breaks.

use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::conformance::{request, tenant, write};
use chronicle_tests::process::chronicle_bin;
use commands::{EventStore, ExpectedVersion, NewEvent};
use domain::StreamId;
use infra::aws::DynamoEventStore;
use serde_json::json;
use std::process::Command;

fn verify(prefix: &str, tenant: &str) -> (i32, String, String) {
    let out = Command::new(chronicle_bin())
        .args([
            "audit",
            "verify",
            "--backend",
            "aws",
            "--aws-prefix",
            prefix,
            "--tenant",
            tenant,
        ])
        .output()
        .expect("run chronicle audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn verify_names_a_stream_whose_event_was_deleted_from_dynamodb() {
    let prefix = format!("au{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let store = DynamoEventStore::new(&aws);
    let t = tenant();
    let stream = StreamId::for_aggregate("task", uuid::Uuid::now_v7());
    for (i, expected) in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(2),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .append(request(
                &t,
                vec![write(
                    &stream,
                    expected,
                    vec![NewEvent {
                        event_type: "Noted".into(),
                        schema_version: 1,
                        payload: json!({"n": i}),
                    }],
                )],
            ))
            .await
            .expect("append");
    }
    let (code, out, err) = verify(&prefix, t.as_str());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified 1 streams, 3 events"), "{out}");
    aws.dynamodb
        .delete_item()
        .table_name(&aws.names.events_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{t}#S#{stream}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("2".into()))
        .send()
        .await
        .expect("delete");
    let (code, _, err) = verify(&prefix, t.as_str());
    assert_eq!(code, 1);
    assert!(
        err.contains(stream.as_str()) && err.contains("version 3"),
        "{err}"
    );
}
