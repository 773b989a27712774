//! The AWS backend: the DynamoDB event store and read models, the DynamoDB Streams relay to
//! EventBridge and Kinesis, the SQS-fed projector, and `setup` for the resources. Every
//! client honours the standard AWS environment (region, credentials, `AWS_ENDPOINT_URL`).

mod counting;
mod dynamodb;
mod generations;
mod item;
mod kinesis_consumer;
mod publish;
mod queue_worker;
mod relay;
mod setup;
mod sqs;
mod view_changes;
mod views;

pub use publish::{EventBridgePublisher, KinesisPublisher, PublishError, SOURCE};
pub use queue_worker::{QueueWorker, run_message};
pub use relay::{Relay, RelayError};
pub use sqs::{SqsProjector, apply_messages, queue_projector, queue_projectors};

pub use counting::RequestCounter;
pub use dynamodb::DynamoEventStore;
pub use kinesis_consumer::{
    ConsumerConfig, KinesisConsumer, Lease, analytics_projector, apply_analytics,
};
pub use setup::{
    AI_VISIBILITY_SECS, CASE_VISIBILITY_SECS, MAIL_VISIBILITY_SECS, MAX_RECEIVES,
    SFTP_VISIBILITY_SECS, SYNC_VISIBILITY_SECS, SetupError, setup,
};
pub use view_changes::{follow as follow_view_changes, tenant_of};
pub use views::DynamoReadModelStore;

use aws_config::SdkConfig;

/// Resource names, all derived from one prefix so several deployments share an account.
#[derive(Debug, Clone)]
pub struct Names {
    pub events_table: String,
    pub views_table: String,
    pub bus: String,
    pub projector_rule: String,
    pub projector_queue: String,
    pub projector_dlq: String,
    /// The AI worker's rule, queue and dead-letter queue.
    pub ai_rule: String,
    pub ai_queue: String,
    pub ai_dlq: String,
    /// The Salesforce sync worker's rule, queue and dead-letter queue, and the schedule of
    /// the poll (on the account's default bus, where schedules run).
    pub sync_rule: String,
    pub sync_queue: String,
    pub sync_dlq: String,
    pub sync_schedule: String,
    /// The mail worker's rule, queue and dead-letter queue.
    pub mail_rule: String,
    pub mail_queue: String,
    pub mail_dlq: String,
    /// The SFTP import worker's rule, queue and dead-letter queue, and the schedule that
    /// starts the imports that are due.
    pub sftp_rule: String,
    pub sftp_queue: String,
    pub sftp_dlq: String,
    pub sftp_schedule: String,
    /// The case delivery worker's rule, queue and dead-letter queue.
    pub case_rule: String,
    pub case_queue: String,
    pub case_dlq: String,
    pub kinesis_stream: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            events_table: format!("{prefix}-events"),
            views_table: format!("{prefix}-views"),
            bus: format!("{prefix}-bus"),
            projector_rule: format!("{prefix}-projector"),
            projector_queue: format!("{prefix}-projector"),
            projector_dlq: format!("{prefix}-projector-dlq"),
            ai_rule: format!("{prefix}-ai"),
            ai_queue: format!("{prefix}-ai"),
            ai_dlq: format!("{prefix}-ai-dlq"),
            sync_rule: format!("{prefix}-salesforce-sync"),
            sync_queue: format!("{prefix}-salesforce-sync"),
            sync_dlq: format!("{prefix}-salesforce-sync-dlq"),
            sync_schedule: format!("{prefix}-salesforce-poll"),
            mail_rule: format!("{prefix}-mail"),
            mail_queue: format!("{prefix}-mail"),
            mail_dlq: format!("{prefix}-mail-dlq"),
            sftp_rule: format!("{prefix}-sftp-import"),
            sftp_queue: format!("{prefix}-sftp-import"),
            sftp_dlq: format!("{prefix}-sftp-import-dlq"),
            sftp_schedule: format!("{prefix}-sftp-poll"),
            case_rule: format!("{prefix}-case-delivery"),
            case_queue: format!("{prefix}-case-delivery"),
            case_dlq: format!("{prefix}-case-delivery-dlq"),
            kinesis_stream: format!("{prefix}-events"),
        }
    }
}

/// The SDK clients of one process, built from one loaded configuration.
#[derive(Clone)]
pub struct Aws {
    pub names: Names,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub counter: RequestCounter,
}

impl Aws {
    /// Loads the standard AWS configuration chain and builds the clients. DynamoDB requests
    /// are counted by kind in `counter`.
    pub async fn load(prefix: &str) -> Self {
        let config = aws_config::load_from_env().await;
        Self::from_config(&config, prefix)
    }

    pub fn from_config(config: &SdkConfig, prefix: &str) -> Self {
        let counter = RequestCounter::default();
        let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(counter.clone())
            .build();
        Self {
            names: Names::new(prefix),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb_config),
            streams: aws_sdk_dynamodbstreams::Client::new(config),
            eventbridge: aws_sdk_eventbridge::Client::new(config),
            kinesis: aws_sdk_kinesis::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            counter,
        }
    }
}
