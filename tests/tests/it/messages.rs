//! Email end to end on the embedded backend, against a real SMTP server (aiosmtpd from
//! PyPI, `chronicle_tests::smtp`): a message queued, sent and recorded by the server; a
//! 451 retried and then accepted, over STARTTLS (a server whose certificate is not trusted
//! gets nothing); a 550 failing the message at once and suppressing its
//! recipient until an ADMIN lifts it; the day's limit; and seed 002's `POST /llm`, whose
//! `send` with a prompt has the AI worker write the body first.

use axum::http::{Method, StatusCode};
use chronicle_tests::fake_openai::FakeOpenAi;
use chronicle_tests::smtp::SmtpServer;
use chronicle_tests::{SignedUp, TestApp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn send(app: &TestApp, who: &SignedUp, recipient: &str, subject: &str) -> String {
    let body = json!({"recipient": recipient, "subject": subject, "body": format!("Dear client,\n{subject}.")});
    let reply = app.post("/messages", &who.access, &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "QUEUED");
    let id = reply.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(
        reply.header("location"),
        Some(format!("/messages/{id}").as_str())
    );
    assert!(reply.header("x-consistency-token").is_some());
    id
}

/// Polls the message until it is SENT or FAILED.
async fn settled(app: &TestApp, who: &SignedUp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app.get(&format!("/messages/{id}"), &who.access, None).await;
        if reply.status == StatusCode::OK {
            let status = reply.body["status"].as_str().unwrap_or_default();
            if status == "SENT" || status == "FAILED" {
                return reply.body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "message {id} never settled: {:?}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn without_a_mail_server_sending_is_503_and_writes_nothing() {
    let app = TestApp::start();
    let bank = app.register_tenant("Bank", "root@bank.test", "basic").await;
    let body = json!({"recipient": "ayesha@client.test", "subject": "Hello", "body": "Hi"});
    for (path, body) in [
        ("/messages", body.clone()),
        (
            "/llm",
            json!({"action": "send", "recipient": "ayesha@client.test", "subject": "Hello", "body": "Hi"}),
        ),
    ] {
        let reply = app.post(path, &bank.access, &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(reply.problem(), "urn:chronicle:problem:not-configured");
        assert!(
            reply.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("CHRONICLE_SMTP_URL")),
            "{:?}",
            reply.body
        );
    }
    let list = app.get("/messages", &bank.access, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"], json!([]));
    let feed = app
        .get("/audit/events?type=MessageQueued", &bank.access, None)
        .await;
    assert_eq!(feed.body["items"], json!([]), "{:?}", feed.body);
}

#[tokio::test]
async fn a_message_is_delivered_and_a_451_is_retried_until_accepted() {
    let server = SmtpServer::start();
    let app = TestApp::start_with_mail(server.config(), None);
    let bank = app.register_tenant("Bank", "root@bank.test", "basic").await;
    let plain = send(&app, &bank, "Ayesha@Client.test", "Your statement").await;
    let flaky = send(&app, &bank, "flaky@client.test", "Your card").await;

    let m = settled(&app, &bank, &plain).await;
    assert_eq!(m["status"], "SENT", "{m:?}");
    assert_eq!(m["attempts"], 1);
    assert_eq!(m["recipient"], "ayesha@client.test");
    assert!(m["sent_at"].is_string());
    assert!(
        m["reply"].as_str().is_some_and(|r| r.starts_with("250")),
        "{m:?}"
    );

    let f = settled(&app, &bank, &flaky).await;
    assert_eq!(f["status"], "SENT", "{f:?}");
    assert_eq!(f["attempts"], 2, "one 451, then accepted: {f:?}");

    let received = server.received();
    let of = |id: &str| -> Vec<&Value> {
        received
            .iter()
            .filter(|r| r["message_id"] == format!("<{id}@chronicle>"))
            .collect()
    };
    let plain_got = of(&plain);
    assert_eq!(plain_got.len(), 1, "{received:?}");
    let got = plain_got[0];
    assert_eq!(got["reply"], "250 2.0.0 Ok: queued");
    assert_eq!(got["tls"], true, "the server offered STARTTLS: {got:?}");
    assert_eq!(got["rcpt_tos"], json!(["ayesha@client.test"]));
    assert_eq!(got["mail_from"], "noreply@bank.test");
    assert_eq!(got["from"], "Karachi Bank <noreply@bank.test>");
    assert_eq!(got["subject"], "Your statement");
    assert_eq!(got["content_type"], "text/plain");
    assert_eq!(
        got["body"].as_str().map(|b| b.replace("\r\n", "\n")),
        Some("Dear client,\nYour statement.\n".to_owned()),
        "SMTP carries lines ending in CRLF, and a final one"
    );
    let flaky_got: Vec<&str> = of(&flaky)
        .iter()
        .filter_map(|r| r["reply"].as_str())
        .collect();
    assert_eq!(
        flaky_got,
        ["451 4.3.0 Try again later", "250 2.0.0 Ok: queued"]
    );

    // The message's events tell the story: queued, two attempts, the first one failed.
    let events = app
        .get(
            &format!("/audit/events?stream=message-{flaky}"),
            &bank.access,
            None,
        )
        .await;
    assert_eq!(events.status, StatusCode::OK, "{:?}", events.body);
    let types: Vec<&str> = events.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["event_type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        types,
        [
            "MessageQueued",
            "MessageSendStarted",
            "MessageAttemptFailed",
            "MessageSendStarted",
            "MessageSent"
        ]
    );
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_trusted_gets_nothing_in_plain_text() {
    let server = SmtpServer::start();
    let mut config = server.config();
    // The server's CA is not among the roots: STARTTLS fails, and the message is never
    // sent without it.
    config.smtp.ca_file = None;
    let app = TestApp::start_with_mail(config, None);
    let bank = app.register_tenant("Bank", "root@bank.test", "basic").await;
    let id = send(&app, &bank, "ayesha@client.test", "Your statement").await;
    let m = settled(&app, &bank, &id).await;
    assert_eq!(m["status"], "FAILED", "{m:?}");
    assert_eq!(m["attempts"], 3, "a TLS failure is retried: {m:?}");
    let reply = m["reply"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reply.contains("certificate") || reply.contains("tls"),
        "{m:?}"
    );
    assert_eq!(server.received(), Vec::<Value>::new());
}

#[tokio::test]
async fn a_550_fails_the_message_and_suppresses_the_recipient_until_an_admin_lifts_it() {
    let server = SmtpServer::start();
    let app = TestApp::start_with_mail(server.config(), None);
    let bank = app.register_tenant("Bank", "root@bank.test", "basic").await;
    let clerk = app.member(&bank, "clerk@bank.test").await;
    let id = send(&app, &clerk, "reject-me@client.test", "Your loan").await;
    let m = settled(&app, &clerk, &id).await;
    assert_eq!(m["status"], "FAILED", "{m:?}");
    assert_eq!(m["attempts"], 1, "a 5xx is not retried: {m:?}");
    assert!(
        m["reply"].as_str().is_some_and(|r| r.starts_with("550")),
        "{m:?}"
    );
    assert!(m["sent_at"].is_null());

    // Suppressed: the next message to the recipient is refused and writes nothing.
    let again = json!({"recipient": "reject-me@client.test", "subject": "Again", "body": "Hi"});
    let refused = app
        .post("/messages", &clerk.access, &again.to_string())
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["field"], "recipient");
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("suppressed") && d.contains("550")),
        "{:?}",
        refused.body
    );
    let mine = app.get("/messages", &clerk.access, None).await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1));

    let path = "/messages/suppressions/reject-me@client.test";
    let seen = app.get(path, &bank.access, None).await;
    assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
    assert_eq!(seen.body["recipient"], "reject-me@client.test");
    assert_eq!(seen.body["message_id"], id.as_str());
    // Only an ADMIN may look or lift.
    assert_eq!(
        app.get(path, &clerk.access, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(path, &clerk.access).await.status,
        StatusCode::FORBIDDEN
    );
    let lifted = app.delete(path, &bank.access).await;
    assert_eq!(lifted.status, StatusCode::NO_CONTENT, "{:?}", lifted.body);
    assert_eq!(
        app.delete(path, &bank.access).await.status,
        StatusCode::NOT_FOUND,
        "not suppressed any more"
    );
    assert_eq!(
        app.get(path, &bank.access, None).await.status,
        StatusCode::NOT_FOUND
    );
    let retried = app
        .post("/messages", &clerk.access, &again.to_string())
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);

    // Another tenant's suppression list is its own.
    let other = app
        .register_tenant("Other", "root@other.test", "basic")
        .await;
    let id = send(&app, &other, "reject-me@client.test", "Hello").await;
    assert_eq!(settled(&app, &other, &id).await["status"], "FAILED");
    assert_eq!(
        app.get(&format!("/messages/{id}"), &bank.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_days_messages_are_limited_by_the_tier() {
    let server = SmtpServer::start();
    let app = TestApp::start_with_mail(server.config(), None);
    let bank = app.register_tenant("Bank", "root@bank.test", "basic").await;
    let tenant = app
        .get(&format!("/tenants/{}", bank.tenant_id), &bank.access, None)
        .await;
    let limit = tenant.body["limits"]["messages_per_day"]
        .as_u64()
        .expect("messages_per_day");
    assert_eq!(limit, 100);
    let (app_ref, token) = (&app, bank.access.as_str());
    let mut sends = Vec::new();
    for i in 0..limit {
        let body = json!({"recipient": format!("client{i}@client.test"), "subject": "Rates", "body": "New rates."});
        sends.push(async move {
            app_ref
                .post("/messages", token, &body.to_string())
                .await
                .status
        });
    }
    let statuses = futures::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    let over =
        json!({"recipient": "one-more@client.test", "subject": "Rates", "body": "New rates."});
    let refused = app.post("/messages", &bank.access, &over.to_string()).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.problem(), "urn:chronicle:problem:quota-exceeded");
    assert_eq!(refused.body["budget"], limit);
    assert!(refused.header("retry-after").is_some());
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("messages_per_day")),
        "{:?}",
        refused.body
    );
}

#[tokio::test]
async fn the_llm_endpoint_generates_and_sends_with_a_body_written_by_the_ai_worker() {
    let server = SmtpServer::start();
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_mail(server.config(), Some(&fake));
    let bank = app
        .register_tenant("Bank", "root@bank.test", "premium")
        .await;

    let unknown = app
        .post(
            "/llm",
            &bank.access,
            r#"{"action": "summarise", "prompt": "hi"}"#,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["field"], "action");
    let detail = unknown.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("generate") && detail.contains("send"),
        "{detail}"
    );
    for (body, field) in [
        (json!({"action": "generate"}), "prompt"),
        (
            json!({"action": "generate", "prompt": "x", "recipient": "a@b.test"}),
            "recipient",
        ),
        (
            json!({"action": "send", "subject": "s", "body": "b"}),
            "recipient",
        ),
        (
            json!({"action": "send", "recipient": "a@b.test", "subject": "s"}),
            "body",
        ),
        (
            json!({"action": "send", "recipient": "a@b.test", "subject": "s", "body": "b", "prompt": "p"}),
            "body",
        ),
    ] {
        let reply = app.post("/llm", &bank.access, &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reply.body["field"], field, "{body}: {:?}", reply.body);
    }

    let generated = app
        .post(
            "/llm",
            &bank.access,
            r#"{"action": "generate", "prompt": "rates today"}"#,
        )
        .await;
    assert_eq!(
        generated.status,
        StatusCode::ACCEPTED,
        "{:?}",
        generated.body
    );
    let query_id = generated.body["query_id"].as_str().expect("query id");
    assert_eq!(
        generated.header("location"),
        Some(format!("/ai/query/{query_id}").as_str())
    );

    let sent = app
        .post(
            "/llm",
            &bank.access,
            r#"{"action": "send", "recipient": "ayesha@client.test", "subject": "Hello", "body": "Plain text."}"#,
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let plain = sent.body["message_id"].as_str().expect("id").to_owned();
    assert!(sent.body["ai_query_id"].is_null());

    let written = app
        .post(
            "/llm",
            &bank.access,
            r#"{"action": "send", "recipient": "ayesha@client.test", "subject": "Your summary", "prompt": "summarise my month"}"#,
        )
        .await;
    assert_eq!(written.status, StatusCode::ACCEPTED, "{:?}", written.body);
    let id = written.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(written.body["ai_query_id"], id.as_str());

    assert_eq!(settled(&app, &bank, &plain).await["status"], "SENT");
    let m = settled(&app, &bank, &id).await;
    assert_eq!(m["status"], "SENT", "{m:?}");
    assert_eq!(m["ai_query_id"], id.as_str());
    assert_eq!(m["body"], "echo: summarise my month");
    let q = app
        .get(&format!("/ai/query/{id}"), &bank.access, None)
        .await;
    assert_eq!(q.body["status"], "COMPLETED", "{:?}", q.body);
    let got: Vec<Value> = server
        .received()
        .into_iter()
        .filter(|r| r["message_id"] == format!("<{id}@chronicle>"))
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["body"].as_str().map(str::trim_end),
        Some("echo: summarise my month")
    );
    assert_eq!(got[0]["subject"], "Your summary");

    // A retry under the same key answers the first run's message.
    let key = [("idempotency-key", "monthly-summary")];
    let body = r#"{"action": "send", "recipient": "ayesha@client.test", "subject": "Once", "prompt": "once"}"#;
    let first = app
        .send(Method::POST, "/llm", Some(&bank.access), &key, Some(body))
        .await;
    let second = app
        .send(Method::POST, "/llm", Some(&bank.access), &key, Some(body))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["message_id"], second.body["message_id"]);
}
