//! Wires the AWS backend for the API: the DynamoDB event store and read models, and
//! freshness by polling a row's version (the projectors run as separate SQS workers).

use crate::app::AppState;
use crate::tokens::TokenKeys;
use commands::CommandHandler;
use infra::SystemClock;
use infra::aws::{Aws, DynamoEventStore, DynamoReadModelStore};
use projections::RowVersionFreshness;
use std::sync::Arc;
use std::time::Duration;

pub fn aws_state(aws: &Aws, keys: TokenKeys, consistency_timeout: Duration) -> AppState {
    let views: Arc<DynamoReadModelStore> = Arc::new(DynamoReadModelStore::new(aws));
    AppState::new(
        CommandHandler::new(Arc::new(DynamoEventStore::new(aws)), Arc::new(SystemClock)),
        views.clone(),
        Arc::new(RowVersionFreshness::new(views)),
        keys,
        consistency_timeout,
    )
}
