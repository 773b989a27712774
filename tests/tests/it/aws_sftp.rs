//! SFTP imports on the AWS backend (the emulator) against a real SFTP server (asyncssh):
//! the EventBridge schedule's tick, landing on the import queue, starts the import of the
//! tenant whose connection is due; its SftpImportStarted comes back to the same queue
//! through the relay and the import rule; the worker posts the file's lines into the
//! ledger and moves the file. A second tick starts nothing (the hourly run is not due).

use chronicle_tests::aws::{scheduled_tick, test_aws_with_prefix};
use chronicle_tests::ledger::{Bank, FOUR};
use chronicle_tests::replayed::tenant_events;
use chronicle_tests::sftp::{PASSWORD, SftpServer, USER, files_in};
use commands::sftp::{configure, import_stream};
use commands::{CommandHandler, CommandMeta};
use domain::sftp::{
    AuthMethod, HostKeyFingerprint, ImportStatus, ImportTrigger, RemoteDir, Schedule,
    SftpConfigured, SftpHost, SftpImport, SftpUser,
};
use domain::{Actor, Role, TenantId, UserId};
use infra::aws::{DynamoEventStore, QueueWorker, Relay};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ids of the tenant's imports, from their start events.
async fn import_ids(events: &DynamoEventStore, tenant: &TenantId) -> Vec<String> {
    tenant_events(events, tenant)
        .await
        .into_iter()
        .filter(|e| e.event_type == "SftpImportStarted")
        .map(|e| e.stream_id.instance().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sftp_imports_start_on_the_schedules_tick_and_run_through_the_import_queue() {
    let prefix = format!("sftp{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let server = SftpServer::start();
    let events = Arc::new(DynamoEventStore::new(&aws));
    let handler = CommandHandler::new(events.clone(), Arc::new(infra::SystemClock));
    let tenant = TenantId::parse("sftpbank").expect("tenant");
    let bank = Bank::open(handler.clone(), tenant.clone(), &FOUR[..1]).await;
    let number = &bank.numbers[0];
    let mut csv = String::from("account_number,kind,amount,currency,reference,value_date\n");
    for i in 0..40 {
        csv.push_str(&format!("{number},deposit,1.00,PKR,aws-{i},2026-12-01\n"));
    }
    csv.push_str(&format!("{number},deposit,1.00,EUR,aws-bad,2026-12-01\n"));
    server.drop_file("aws.csv", &csv);

    let config = api::workers::SftpConfig {
        secrets_key: b"aws-sftp-test-secrets-key".to_vec(),
        timeout: Duration::from_secs(10),
        poll_interval: None,
    };
    let admin = Actor {
        user_id: UserId::parse("admin").expect("user"),
        role: Role::Admin,
    };
    let meta = CommandMeta::of(
        tenant.clone(),
        admin.clone(),
        commands::RequestIds::fresh(),
        None,
    );
    let connection = SftpConfigured {
        host: SftpHost::parse("127.0.0.1").expect("host"),
        port: server.port,
        username: SftpUser::parse(USER).expect("user"),
        auth: AuthMethod::Password,
        secret: config.access().secrets.seal(PASSWORD),
        host_key_fingerprint: HostKeyFingerprint::parse(&server.fingerprint).expect("key"),
        inbox_dir: RemoteDir::parse("/inbox").expect("dir"),
        processed_dir: RemoteDir::parse("/processed").expect("dir"),
        schedule: Schedule::default(),
        configured_by: admin.user_id.clone(),
        configured_at: chrono::Utc::now(),
    };
    configure(&handler, &meta, connection)
        .await
        .expect("configure");

    let queue = QueueWorker::new(
        &aws,
        &aws.names.sftp_queue,
        Arc::new(config.worker(handler.clone()).expect("worker")),
        (Duration::from_secs(1), 2),
        infra::aws::SFTP_VISIBILITY_SECS,
    )
    .await
    .expect("import queue");
    let relay = Relay::new(&aws);
    assert!(import_ids(&events, &tenant).await.is_empty());
    scheduled_tick(&aws, &aws.names.sftp_queue).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let import = loop {
        queue.poll_once().await.expect("poll");
        relay.pump().await.expect("relay");
        if let Some(id) = import_ids(&events, &tenant).await.first() {
            let (i, _) = handler
                .state::<SftpImport>(&tenant, &import_stream(id))
                .await
                .expect("import");
            if i.status != Some(ImportStatus::Running) {
                break i;
            }
        }
        assert!(Instant::now() < deadline, "the tick's import never ended");
    };
    assert_eq!(import.status, Some(ImportStatus::Completed), "{import:?}");
    assert_eq!(
        import.started.as_ref().map(|s| s.trigger),
        Some(ImportTrigger::Scheduled)
    );
    let file = &import.files[0];
    assert_eq!((file.lines_read, file.posted, file.failed), (41, 40, 1));
    assert_eq!(file.failures[0].line, 42);
    assert_eq!(files_in(&server.processed()), ["aws.csv"]);

    // The next tick: the hourly run is not due, nothing starts.
    scheduled_tick(&aws, &aws.names.sftp_queue).await;
    for _ in 0..3 {
        queue.poll_once().await.expect("poll");
        relay.pump().await.expect("relay");
    }
    assert_eq!(import_ids(&events, &tenant).await.len(), 1);
}
