//! The read side: the ports it owns (event feed, stream source, read-model store), the
//! projector engine that applies each (stream, version) once, and the read models.

pub mod account_lines;
pub mod accounts;
pub mod ai_queries;
pub mod analytics;
pub mod cases;
pub mod changes;
pub mod customer_syncs;
pub mod customers;
pub mod documents;
pub mod engine;
pub mod messages;
pub mod orders;
pub mod ports;
pub mod products;
pub mod replay;
pub mod revenue;
pub mod sftp_imports;
pub mod tally;
pub mod tasks;
pub mod transactions;
pub mod users;

pub use changes::ViewChanges;
pub use engine::{
    AllProjections, BatchOutcome, Freshness, IDLE_CHECKPOINT_EVERY, PACE, ProjectionProgress,
    Projector, ProjectorConfig, RowVersionFreshness, run_group,
};
pub use ports::{
    DeadLetter, EventFeed, ListQuery, Matched, Projection, ProjectionError, ReadModelError,
    ReadModelStore, RowKey, RowWrite, Search, StoredRow, StreamSource, Wanted, Within,
};

/// The view that holds the row of a stream, by the stream's aggregate kind.
pub fn view_for(stream: &domain::StreamId) -> Option<&'static str> {
    match stream.kind() {
        "task" => Some(tasks::VIEW),
        "user" => Some(users::VIEW),
        "product" => Some(products::VIEW),
        "order" => Some(orders::VIEW),
        "aiquery" => Some(ai_queries::VIEW),
        "customer" => Some(customers::VIEW),
        "customersync" => Some(customer_syncs::VIEW),
        "case" => Some(cases::VIEW),
        "document" => Some(documents::VIEW),
        "account" => Some(accounts::VIEW),
        "transaction" => Some(transactions::VIEW),
        "message" => Some(messages::VIEW),
        "sftpimport" => Some(sftp_imports::VIEW),
        _ => None,
    }
}

/// Every read model, for the embedded backend and rebuilds.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    let mut all = queue_fed();
    all.push(std::sync::Arc::new(analytics::AnalyticsProjection));
    all
}

/// The read models the event bus feeds on AWS (one SQS queue each): all but the analytics
/// figures, which the Kinesis consumer (`chronicle analytics`) keeps.
pub fn queue_fed() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(tasks::TasksProjection),
        std::sync::Arc::new(users::UsersProjection),
        std::sync::Arc::new(products::ProductsProjection),
        std::sync::Arc::new(orders::OrdersProjection),
        std::sync::Arc::new(ai_queries::AiQueriesProjection),
        std::sync::Arc::new(customers::CustomersProjection),
        std::sync::Arc::new(customer_syncs::CustomerSyncsProjection),
        std::sync::Arc::new(cases::CasesProjection),
        std::sync::Arc::new(documents::DocumentsProjection),
        std::sync::Arc::new(accounts::AccountsProjection),
        std::sync::Arc::new(account_lines::AccountLinesProjection),
        std::sync::Arc::new(transactions::TransactionsProjection),
        std::sync::Arc::new(messages::MessagesProjection),
        std::sync::Arc::new(sftp_imports::SftpImportsProjection),
    ]
}
