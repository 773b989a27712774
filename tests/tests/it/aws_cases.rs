//! Case delivery on the AWS backend (the emulator): an opened case reaches the case
//! delivery worker through the relay, EventBridge's case rule and the case queue, and is
//! upserted into the fake org once, though the first answer is lost past the timeout and
//! SQS brings the message back.

use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::fake_salesforce::FakeSalesforce;
use commands::cases::{OpenCase, case_stream};
use commands::customers::{AccountRecord, apply_record, connect};
use commands::{CommandHandler, CommandMeta};
use domain::case::{Case, CaseDescription, CasePriority, CaseSubject, Delivery};
use domain::customer::CustomerFields;
use domain::salesforce::{ApiVersion, ClientId, ConnectionCommand, LoginUrl};
use domain::{Actor, Role, TenantId, Tier, UserId};
use infra::aws::{CASE_VISIBILITY_SECS, DynamoEventStore, QueueWorker, Relay};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_case_is_delivered_once_through_the_case_queue() {
    let prefix = format!("cs{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let org = FakeSalesforce::start(10).await;
    let handler = CommandHandler::new(
        Arc::new(DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    let tenant = TenantId::parse("caseshop").expect("tenant");
    let meta = CommandMeta::of(
        tenant.clone(),
        Actor {
            user_id: UserId::parse("admin").expect("user"),
            role: Role::Admin,
        },
        commands::RequestIds::fresh(),
        None,
    );
    let config = api::workers::SalesforceConfig {
        secrets_key: b"aws-test-secrets-key".to_vec(),
        timeout: Duration::from_secs(5),
        lookback: chrono::Duration::minutes(2),
        poll_interval: None,
        sftp_poll_interval: None,
        delivery: commands::worker::RetryPolicy {
            max_attempts: 1,
            timeout: Duration::from_secs(1),
            ..Default::default()
        },
        breaker: (5, Duration::from_secs(30)),
    };
    let access = config.access().expect("access");
    connect(
        &handler,
        &meta,
        ConnectionCommand::Connect {
            login_url: LoginUrl::parse(&org.url).expect("url"),
            client_id: ClientId::parse(&org.client_id).expect("id"),
            client_secret: access.secrets.seal(&org.client_secret),
            api_version: ApiVersion::default(),
            case_external_id_field: Default::default(),
        },
    )
    .await
    .expect("connect");
    let account = AccountRecord {
        id: "001AWSCASE0000AAA".into(),
        fields: CustomerFields {
            name: "Acme".into(),
            ..CustomerFields::default()
        },
        system_modstamp: chrono::Utc::now(),
        deleted: false,
    };
    apply_record(&handler, &meta, "sync-1", &account)
        .await
        .expect("customer");
    let case_id = uuid::Uuid::now_v7().to_string();
    handler
        .run(
            &meta,
            &OpenCase {
                case_id: case_id.clone(),
                customer_id: account.id.clone(),
                tier: Tier::Enterprise,
                subject: CaseSubject::parse("Lost answer").expect("subject"),
                description: CaseDescription::default(),
                priority: CasePriority::High,
            },
        )
        .await
        .expect("open");
    // The first upsert is applied but answered after the worker's timeout: the message
    // stays on the queue and comes back.
    org.delay_next_case(Duration::from_millis(1500));
    let relay = Relay::new(&aws);
    relay.pump().await.expect("relay");
    let worker = Arc::new(
        config
            .case_worker(handler.clone(), &access)
            .expect("worker"),
    );
    let queue = QueueWorker::new(
        &aws,
        &aws.names.case_queue,
        worker,
        (Duration::from_secs(1), 4),
        CASE_VISIBILITY_SECS,
    )
    .await
    .expect("queue");
    let deadline = Instant::now() + Duration::from_secs(90);
    let delivered = loop {
        queue.poll_once().await.expect("poll");
        let (case, _) = handler
            .state::<Case>(&tenant, &case_stream(&case_id))
            .await
            .expect("case");
        if let Delivery::Delivered { salesforce_id, .. } = case.delivery {
            break salesforce_id;
        }
        assert!(Instant::now() < deadline, "never delivered: {case:?}");
    };
    assert!(org.case_calls() >= 2, "the lost answer was retried");
    let cases = org.cases();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].1["Id"], delivered.as_str());
    assert_eq!(cases[0].1["AccountId"], "001AWSCASE0000AAA");
}
