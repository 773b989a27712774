//! The event-store conformance suite on the DynamoDB backend, against the AWS emulator that
//! `./scripts/test` starts. Without the emulator these tests fail, naming the command.

use chronicle_tests::aws::test_aws;
use chronicle_tests::conformance::Store;
use infra::aws::DynamoEventStore;
use std::sync::Arc;

async fn dynamodb_store() -> Store {
    Arc::new(DynamoEventStore::new(&test_aws().await))
}

chronicle_tests::store_conformance!(dynamodb_store);
