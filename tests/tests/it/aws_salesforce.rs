//! The Salesforce sync on the AWS backend (the emulator): a started sync reaches the sync
//! worker through the relay, EventBridge's CustomerSyncStarted rule and the sync queue, and
//! imports the fake org's Accounts; a scheduled tick on the same queue (as the EventBridge
//! schedule sends it) starts the incremental poll of every connected tenant.

use chronicle_tests::aws::{scheduled_tick, test_aws_with_prefix};
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
use commands::customers::{StartSync, connect, customer_stream, sync_stream};
use commands::{CommandHandler, CommandMeta};
use domain::customer::Customer;
use domain::customer_sync::{CustomerSync, SyncMode, SyncStatus};
use domain::salesforce::{ApiVersion, ClientId, ConnectionCommand, LoginUrl};
use domain::{Actor, Role, TenantId, UserId};
use infra::aws::{DynamoEventStore, QueueWorker, Relay, SYNC_VISIBILITY_SECS};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn ended(handler: &CommandHandler, tenant: &TenantId, id: &str) -> bool {
    let (s, _) = handler
        .state::<CustomerSync>(tenant, &sync_stream(id))
        .await
        .expect("sync");
    s.status.is_some_and(|s| s != SyncStatus::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_runs_through_the_sync_queue_and_a_tick_starts_the_poll() {
    let prefix = format!("sf{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let org = FakeSalesforce::start(2).await;
    let t = chrono::Utc::now() - chrono::Duration::hours(1);
    for id in [
        "001AWS00000000AAA",
        "001AWS00000000BBB",
        "001AWS00000000CCC",
    ] {
        org.put(Account::new(id, id, "Karachi", t));
    }
    let handler = CommandHandler::new(
        Arc::new(DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    let tenant = TenantId::parse("sfshop").expect("tenant");
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
        delivery: Default::default(),
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
    let sync_id = uuid::Uuid::now_v7().to_string();
    handler
        .run(
            &meta,
            &StartSync {
                sync_id: sync_id.clone(),
                mode: SyncMode::Full,
            },
        )
        .await
        .expect("start");
    let relay = Relay::new(&aws);
    relay.pump().await.expect("relay");
    let worker = Arc::new(config.worker(handler.clone(), &access).expect("worker"));
    let queue = QueueWorker::new(
        &aws,
        &aws.names.sync_queue,
        worker,
        (Duration::from_secs(1), 4),
        SYNC_VISIBILITY_SECS,
    )
    .await
    .expect("queue");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ended(&handler, &tenant, &sync_id).await {
        queue.poll_once().await.expect("poll");
        assert!(Instant::now() < deadline, "the sync never ended");
    }
    let (s, _) = handler
        .state::<CustomerSync>(&tenant, &sync_stream(&sync_id))
        .await
        .expect("sync");
    assert_eq!(s.status, Some(SyncStatus::Completed), "{s:?}");
    assert_eq!((s.counts.fetched, s.counts.imported), (3, 3));
    let (c, _) = handler
        .state::<Customer>(&tenant, &customer_stream("001AWS00000000BBB"))
        .await
        .expect("customer");
    assert!(c.is_live());
    assert_eq!(c.fields.billing_city.as_deref(), Some("Karachi"));

    // The EventBridge schedule's event, as it lands on the queue.
    scheduled_tick(&aws, &aws.names.sync_queue).await;
    let before = org.queries().len();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        queue.poll_once().await.expect("poll");
        relay.pump().await.expect("relay");
        let incremental = org.queries()[before..]
            .iter()
            .any(|q| q.contains("SystemModstamp >="));
        if incremental {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tick started no incremental sync: {:?}",
            org.queries()
        );
    }
}
