//! Email on the AWS backend (the emulator) against a real SMTP server (aiosmtpd): queued
//! messages reach the mail worker through the relay, EventBridge's mail rule and the mail
//! queue; one is sent, one after a 451, one refused with a 550 suppresses its recipient;
//! and a message whose body an AI query writes is sent once the AI worker (on its own
//! queue) has answered and the mail rule has passed on the AIQueryCompleted.

use chronicle_tests::ai_config;
use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::fake_openai::FakeOpenAi;
use chronicle_tests::smtp::SmtpServer;
use commands::ai::SubmitAiQuery;
use commands::messages::{SendGeneratedMessage, SendMessage, message_stream, suppression_of};
use commands::{CommandHandler, CommandMeta};
use domain::ai_query::{ModelName, Prompt};
use domain::message::{Body, Message, MessageStatus, Subject};
use domain::user::Email;
use domain::{Actor, Role, TenantId, UserId};
use infra::aws::{DynamoEventStore, QueueWorker, Relay};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_run_through_the_mail_queue_and_an_ai_query_writes_one() {
    let prefix = format!("mail{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let smtp = SmtpServer::start();
    let fake = FakeOpenAi::start().await;
    let store = Arc::new(DynamoEventStore::new(&aws));
    let handler = CommandHandler::new(store, Arc::new(infra::SystemClock));
    let tenant = TenantId::parse("mailbank").expect("tenant");
    let meta = CommandMeta::of(
        tenant.clone(),
        Actor {
            user_id: UserId::parse("clerk").expect("user"),
            role: Role::Member,
        },
        commands::RequestIds::fresh(),
        None,
    );
    let mut ids = Vec::new();
    for recipient in [
        "ayesha@client.test",
        "flaky@client.test",
        "reject@client.test",
    ] {
        let id = uuid::Uuid::now_v7().to_string();
        handler
            .run(
                &meta,
                &SendMessage {
                    message_id: id.clone(),
                    tier: domain::Tier::Basic,
                    recipient: Email::parse(recipient).expect("email"),
                    subject: Subject::parse("Your statement").expect("subject"),
                    body: Some(Body::parse("Attached.").expect("body")),
                    ai_query_id: None,
                },
            )
            .await
            .expect("send");
        ids.push(id);
    }
    let written = uuid::Uuid::now_v7().to_string();
    handler
        .run(
            &meta,
            &SendGeneratedMessage {
                query: SubmitAiQuery {
                    query_id: written.clone(),
                    tier: domain::Tier::Basic,
                    prompt: Prompt::parse("summarise the month").expect("prompt"),
                    model: ModelName::parse("gpt-test").expect("model"),
                },
                recipient: Email::parse("ayesha@client.test").expect("email"),
                subject: Subject::parse("Your month").expect("subject"),
            },
        )
        .await
        .expect("send generated");
    ids.push(written.clone());

    let mail = QueueWorker::new(
        &aws,
        &aws.names.mail_queue,
        Arc::new(smtp.config().worker(handler.clone()).expect("mail worker")),
        (Duration::from_secs(1), 4),
        infra::aws::MAIL_VISIBILITY_SECS,
    )
    .await
    .expect("mail queue");
    let ai = QueueWorker::new(
        &aws,
        &aws.names.ai_queue,
        Arc::new(ai_config(&fake).worker(handler.clone()).expect("ai worker")),
        (Duration::from_secs(1), 4),
        infra::aws::AI_VISIBILITY_SECS,
    )
    .await
    .expect("ai queue");
    let relay = Relay::new(&aws);
    let deadline = Instant::now() + Duration::from_secs(120);
    let states = loop {
        relay.pump().await.expect("relay");
        ai.poll_once().await.expect("ai poll");
        relay.pump().await.expect("relay");
        mail.poll_once().await.expect("mail poll");
        let mut states = Vec::new();
        for id in &ids {
            let (m, _) = handler
                .state::<Message>(&tenant, &message_stream(id))
                .await
                .expect("message");
            states.push(m);
        }
        if states
            .iter()
            .all(|m| m.status.is_some_and(MessageStatus::is_final))
        {
            break states;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {:?}",
            states.iter().map(|m| m.status).collect::<Vec<_>>()
        );
    };
    let outcome: Vec<(Option<MessageStatus>, u32)> =
        states.iter().map(|m| (m.status, m.attempts)).collect();
    assert_eq!(
        outcome,
        [
            (Some(MessageStatus::Sent), 1),
            (Some(MessageStatus::Sent), 2),
            (Some(MessageStatus::Failed), 1),
            (Some(MessageStatus::Sent), 1),
        ]
    );
    assert_eq!(
        states[3].body.as_ref().map(Body::as_str),
        Some("echo: summarise the month")
    );
    let received = smtp.received();
    let accepted = |id: &str| {
        received
            .iter()
            .filter(|r| {
                r["message_id"] == format!("<{id}@chronicle>")
                    && r["reply"] == "250 2.0.0 Ok: queued"
            })
            .count()
    };
    assert_eq!(
        ids.iter().map(|id| accepted(id)).collect::<Vec<_>>(),
        [1, 1, 0, 1],
        "{received:?}"
    );
    let suppressed = suppression_of(
        &handler,
        &tenant,
        &Email::parse("reject@client.test").expect("email"),
    )
    .await
    .expect("suppression");
    assert_eq!(
        suppressed.suppressed.map(|s| s.message_id),
        Some(ids[2].clone())
    );
}
