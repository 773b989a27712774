//! `chronicle setup --backend aws`: creates every resource Chronicle needs, idempotently.
//! Running it twice is harmless: what exists is left as it is.

use super::Aws;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::display::DisplayErrorContext;
use std::time::Duration;

/// Receives of one message before SQS moves it to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

#[derive(Debug, thiserror::Error)]
#[error("setup of {resource} failed: {message}")]
pub struct SetupError {
    resource: String,
    message: String,
}

fn fail<E: std::error::Error>(resource: &str, e: E) -> SetupError {
    SetupError {
        resource: resource.to_owned(),
        message: DisplayErrorContext(e).to_string(),
    }
}

/// Creates the tables, queues, bus, rule and stream. Returns a line per resource.
pub async fn setup(aws: &Aws) -> Result<Vec<String>, SetupError> {
    let mut report = Vec::new();
    report.push(events_table(aws).await?);
    report.push(views_table(aws).await?);
    let names = &aws.names;
    report.push(bus(aws).await?);
    let source = super::SOURCE;
    report.extend(
        worker_queue(
            aws,
            (&names.projector_queue, &names.projector_dlq, 10),
            &[(
                &names.projector_rule,
                "projector",
                Trigger::Pattern(serde_json::json!({ "source": [source] })),
            )],
        )
        .await?,
    );
    report.extend(
        worker_queue(
            aws,
            (&names.ai_queue, &names.ai_dlq, AI_VISIBILITY_SECS),
            &[(
                &names.ai_rule,
                "ai-worker",
                Trigger::Pattern(
                    serde_json::json!({ "source": [source], "detail-type": ["AIQuerySubmitted"] }),
                ),
            )],
        )
        .await?,
    );
    report.extend(
        worker_queue(
            aws,
            (&names.mail_queue, &names.mail_dlq, MAIL_VISIBILITY_SECS),
            &[(
                &names.mail_rule,
                "mail-worker",
                // A queued message, or the end of an AI query that may write one's body.
                Trigger::Pattern(serde_json::json!({
                    "source": [source],
                    "detail-type": ["MessageQueued", "AIQueryCompleted", "AIQueryFailed"],
                })),
            )],
        )
        .await?,
    );
    report.extend(
        worker_queue(
            aws,
            (&names.sync_queue, &names.sync_dlq, SYNC_VISIBILITY_SECS),
            &[
                (
                    &names.sync_rule,
                    "salesforce-sync",
                    Trigger::Pattern(
                        serde_json::json!({ "source": [source], "detail-type": ["CustomerSyncStarted"] }),
                    ),
                ),
                (
                    &names.sync_schedule,
                    "salesforce-poll",
                    Trigger::Schedule("rate(1 hour)".into()),
                ),
            ],
        )
        .await?,
    );
    report.extend(
        worker_queue(
            aws,
            (&names.sftp_queue, &names.sftp_dlq, SFTP_VISIBILITY_SECS),
            &[
                (
                    &names.sftp_rule,
                    "sftp-import",
                    Trigger::Pattern(
                        serde_json::json!({ "source": [source], "detail-type": ["SftpImportStarted"] }),
                    ),
                ),
                (
                    &names.sftp_schedule,
                    "sftp-poll",
                    // The connections' schedules are in minutes: the poll starts those due.
                    Trigger::Schedule("rate(1 minute)".into()),
                ),
            ],
        )
        .await?,
    );
    report.extend(
        worker_queue(
            aws,
            (&names.case_queue, &names.case_dlq, CASE_VISIBILITY_SECS),
            &[(
                &names.case_rule,
                "case-delivery",
                // The worker skips what the sync read from Salesforce (`starts_work`).
                Trigger::Pattern(serde_json::json!({
                    "source": [source],
                    "detail-type": ["CaseOpened", "CaseUpdated"],
                })),
            )],
        )
        .await?,
    );
    report.push(kinesis(aws).await?);
    Ok(report)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, SetupError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| fail(name, e))
}

fn attr(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, SetupError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| fail(name, e))
}

async fn events_table(aws: &Aws) -> Result<String, SetupError> {
    let name = &aws.names.events_table;
    let feed = GlobalSecondaryIndex::builder()
        .index_name(super::item::FEED_INDEX)
        .key_schema(key("gsi1pk", KeyType::Hash)?)
        .key_schema(key("gsi1sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| fail(name, e))?;
    let created = aws
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::N)?)
        .attribute_definitions(attr("gsi1pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("gsi1sk", ScalarAttributeType::S)?)
        .global_secondary_indexes(feed)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|e| fail(name, e))?,
        )
        .send()
        .await;
    table_result(aws, name, created).await
}

async fn views_table(aws: &Aws) -> Result<String, SetupError> {
    let name = &aws.names.views_table;
    let created = aws
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .stream_specification(keys_only(name)?)
        .send()
        .await;
    let line = table_result(aws, name, created).await?;
    // A table set up before it had its stream gets it now.
    let table = aws
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| fail(name, e))?;
    let streaming = table
        .table()
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if streaming {
        return Ok(line);
    }
    aws.dynamodb
        .update_table()
        .table_name(name)
        .stream_specification(keys_only(name)?)
        .send()
        .await
        .map_err(|e| fail(name, e))?;
    table_result(aws, name, Ok::<(), aws_sdk_dynamodb::Error>(()))
        .await
        .map(|_| format!("table {name}: stream added"))
}

/// The views table's stream: keys only, which name the tenant whose rows changed.
fn keys_only(name: &str) -> Result<StreamSpecification, SetupError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::KeysOnly)
        .build()
        .map_err(|e| fail(name, e))
}

/// Reads a CreateTable answer ("in use" means it exists) and waits for the table to be ACTIVE.
async fn table_result<T, E>(
    aws: &Aws,
    name: &str,
    created: Result<T, E>,
) -> Result<String, SetupError>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let line = match created {
        Ok(_) => format!("table {name}: created"),
        Err(e) if e.code() == Some("ResourceInUseException") => format!("table {name}: exists"),
        Err(e) => return Err(fail(name, e)),
    };
    for _ in 0..120 {
        let out = aws
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| fail(name, e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(line);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SetupError {
        resource: name.to_owned(),
        message: "not ACTIVE after 60 s".into(),
    })
}

async fn queue_arn(aws: &Aws, url: &str) -> Result<String, SetupError> {
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(url, e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| SetupError {
            resource: url.to_owned(),
            message: "no QueueArn".into(),
        })
}

/// A worker's queue and its dead-letter queue (after `MAX_RECEIVES` receives); returns
/// the report lines and the queue's ARN and URL.
async fn queue_pair(
    aws: &Aws,
    name: &str,
    dlq_name: &str,
    visibility_secs: u32,
) -> Result<(Vec<String>, String, String), SetupError> {
    let dlq = aws
        .sqs
        .create_queue()
        .queue_name(dlq_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| fail(dlq_name, e))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let dlq_arn = queue_arn(aws, &dlq_url).await?;
    let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES.to_string() });
    let queue = aws
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .send()
        .await
        .map_err(|e| fail(name, e))?;
    let url = queue.queue_url().unwrap_or_default().to_owned();
    aws.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(|e| fail(name, e))?;
    let arn = queue_arn(aws, &url).await?;
    Ok((
        vec![
            format!("queue {dlq_name}: ready"),
            format!("queue {name}: ready, dead letters after {MAX_RECEIVES} receives"),
        ],
        arn,
        url,
    ))
}

async fn bus(aws: &Aws) -> Result<String, SetupError> {
    let names = &aws.names;
    match aws
        .eventbridge
        .create_event_bus()
        .name(&names.bus)
        .send()
        .await
    {
        Ok(_) => Ok(format!("event bus {}: created", names.bus)),
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {
            Ok(format!("event bus {}: exists", names.bus))
        }
        Err(e) => Err(fail(&names.bus, e)),
    }
}

/// What a rule fires on.
enum Trigger {
    /// Events on Chronicle's bus matching this pattern.
    Pattern(serde_json::Value),
    /// A schedule (`rate(1 hour)`), on the account's default bus.
    Schedule(String),
}

/// A rule that sends what `trigger` matches to a queue (the rule's target `target_id`);
/// returns its ARN.
async fn rule(
    aws: &Aws,
    (rule_name, target_id): (&str, &str),
    trigger: &Trigger,
    queue_arn: &str,
) -> Result<String, SetupError> {
    let names = &aws.names;
    let mut put = aws.eventbridge.put_rule().name(rule_name);
    let bus = match trigger {
        Trigger::Pattern(p) => {
            put = put.event_bus_name(&names.bus).event_pattern(p.to_string());
            Some(names.bus.as_str())
        }
        Trigger::Schedule(expr) => {
            put = put.schedule_expression(expr);
            None
        }
    };
    let rule = put.send().await.map_err(|e| fail(rule_name, e))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id(target_id)
        .arn(queue_arn)
        .build()
        .map_err(|e| fail(rule_name, e))?;
    let put = aws
        .eventbridge
        .put_targets()
        .rule(rule_name)
        .set_event_bus_name(bus.map(str::to_owned))
        .targets(target)
        .send()
        .await
        .map_err(|e| fail(rule_name, e))?;
    if put.failed_entry_count() > 0 {
        return Err(SetupError {
            resource: rule_name.to_owned(),
            message: format!("target not attached: {:?}", put.failed_entries()),
        });
    }
    Ok(rule.rule_arn().unwrap_or_default().to_owned())
}

/// Lets the rules `rule_arns` send to the queue, and only them.
async fn allow(
    aws: &Aws,
    (queue_url, queue_arn): (&str, &str),
    rule_arns: &[String],
) -> Result<(), SetupError> {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": rule_arns } }
        }]
    });
    aws.sqs
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| fail(queue_url, e))?;
    Ok(())
}

/// A worker's queue pair and the rules that feed it; the report lines.
async fn worker_queue(
    aws: &Aws,
    (queue, dlq, visibility_secs): (&str, &str, u32),
    rules: &[(&str, &str, Trigger)],
) -> Result<Vec<String>, SetupError> {
    let (mut lines, arn, url) = queue_pair(aws, queue, dlq, visibility_secs).await?;
    let mut arns = Vec::new();
    for (name, target, trigger) in rules {
        arns.push(rule(aws, (name, target), trigger, &arn).await?);
        let what = match trigger {
            Trigger::Pattern(p) => p.to_string(),
            Trigger::Schedule(s) => s.clone(),
        };
        lines.push(format!("rule {name} ({what}) -> queue {queue}: ready"));
    }
    allow(aws, (&url, &arn), &arns).await?;
    Ok(lines)
}

/// The case queue's visibility: longer than a delivery's attempts and pauses in one go.
pub const CASE_VISIBILITY_SECS: u32 = 120;

/// The sync queue's visibility: the worker extends it while a sync runs.
pub const SYNC_VISIBILITY_SECS: u32 = 300;

/// The SFTP queue's visibility: the worker extends it while an import runs.
pub const SFTP_VISIBILITY_SECS: u32 = 300;

/// The AI queue's visibility: the worker extends it while a query runs.
pub const AI_VISIBILITY_SECS: u32 = 120;

/// The mail queue's visibility: the worker extends it while a message's attempts run.
pub const MAIL_VISIBILITY_SECS: u32 = 120;

async fn kinesis(aws: &Aws) -> Result<String, SetupError> {
    let name = &aws.names.kinesis_stream;
    let line = match aws
        .kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(1)
        .send()
        .await
    {
        Ok(_) => format!("kinesis stream {name}: created"),
        Err(e) if e.code() == Some("ResourceInUseException") => {
            format!("kinesis stream {name}: exists")
        }
        Err(e) => return Err(fail(name, e)),
    };
    for _ in 0..120 {
        let out = aws
            .kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| fail(name, e))?;
        if out.stream_description_summary().map(|s| s.stream_status())
            == Some(&aws_sdk_kinesis::types::StreamStatus::Active)
        {
            return Ok(line);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SetupError {
        resource: name.clone(),
        message: "not ACTIVE after 60 s".into(),
    })
}
