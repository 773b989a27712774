//! `GET /events/stream` on the embedded backend: a task created in one session streams to
//! another once the read model shows it; each caller sees only what it may (a MEMBER
//! nothing of the tenant's settings or invitations, and under `customer_access: assigned`
//! nothing of other agents' clients; a CUSTOMER only their own customer's cases; another
//! tenant nothing); a stream resumes after its `Last-Event-ID`; a tenant
//! holds a bounded number of streams.

use crate::portal::{ACME, GLOBEX, tenant_with_customers};
use axum::http::StatusCode;
use chronicle_tests::{EventStream, Sse, TestApp};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

async fn open(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> EventStream {
    app.open_events("/events/stream", Some(token), headers)
        .await
        .unwrap_or_else(|r| panic!("stream refused: {} {:?}", r.status, r.body))
}

fn data(e: &Sse) -> Value {
    serde_json::from_str(&e.data).expect("JSON data")
}

async fn create_task(app: &TestApp, token: &str, title: &str) -> String {
    let r = app
        .post("/tasks", token, &json!({"title": title}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["task_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_task_streams_to_every_session_once_the_read_model_shows_it() {
    let app = TestApp::start();
    let admin = app
        .register_tenant("Streams", "root@streams.test", "basic")
        .await;
    let member = app.member(&admin, "mia@streams.test").await;
    let other = app
        .register_tenant("Elsewhere", "root@elsewhere.test", "basic")
        .await;
    let mut admins = open(&app, &admin.access, &[]).await;
    let mut members = open(&app, &member.access, &[]).await;
    let mut others = open(&app, &other.access, &[]).await;

    let id = create_task(&app, &member.access, "Call the bank").await;
    let seen = admins.next_event(WAIT).await.expect("the admin's event");
    assert_eq!(seen.event.as_deref(), Some("TaskCreated"));
    let d = data(&seen);
    assert_eq!(d["stream_id"], format!("task-{id}"));
    assert_eq!(d["version"], 1);
    assert_eq!(d["payload"]["title"], "Call the bank");
    assert!(seen.id.is_some(), "the page's last event carries its id");
    // Sent once applied: a read without a consistency token finds the task.
    let read = app.get(&format!("/tasks/{id}"), &admin.access, None).await;
    assert_eq!(read.status, StatusCode::OK);
    let theirs = members.next_event(WAIT).await.expect("the member's event");
    assert_eq!(data(&theirs)["event_id"], d["event_id"]);

    // The tenant's settings and an invitation: the admin's to see, not the member's.
    let r = app
        .put(
            &format!("/tenants/{}", admin.tenant_id),
            &admin.access,
            &json!({"settings": {"theme": "dark"}}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .post("/users/invitations", &admin.access, r#"{"role":"MEMBER"}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let second = create_task(&app, &admin.access, "Second").await;
    let mut admin_saw = Vec::new();
    while let Some(e) = admins.next_event(WAIT).await {
        let d = data(&e);
        admin_saw.push(d["stream_id"].as_str().unwrap_or_default().to_owned());
        if d["stream_id"] == format!("task-{second}") {
            break;
        }
    }
    assert!(
        admin_saw.iter().any(|s| s.starts_with("tenant-")),
        "{admin_saw:?}"
    );
    assert!(
        !admin_saw.iter().any(|s| s.starts_with("invitation-")),
        "private streams are never streamed: {admin_saw:?}"
    );
    let next = members.next_event(WAIT).await.expect("the member's next");
    assert_eq!(
        data(&next)["stream_id"],
        format!("task-{second}"),
        "the member sees nothing in between"
    );
    assert_eq!(others.next_event(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn a_stream_resumes_after_its_last_event_id() {
    let app = TestApp::start();
    let admin = app
        .register_tenant("Resume", "root@resume.test", "basic")
        .await;
    let mut first = open(&app, &admin.access, &[]).await;
    create_task(&app, &admin.access, "One").await;
    let one = first.next_event(WAIT).await.expect("one");
    let id = one.id.clone().expect("an id");
    drop(first);
    let two = create_task(&app, &admin.access, "Two").await;
    let three = create_task(&app, &admin.access, "Three").await;
    let mut resumed = open(&app, &admin.access, &[("last-event-id", &id)]).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let e = resumed.next_event(WAIT).await.expect("the missed events");
        got.push(
            data(&e)["stream_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(got, [format!("task-{two}"), format!("task-{three}")]);
    // The same through the query, and an id no stream issued.
    let mut again = app
        .open_events(
            &format!("/events/stream?after={id}"),
            Some(&admin.access),
            &[],
        )
        .await
        .unwrap_or_else(|r| panic!("{r:?}"));
    let e = again.next_event(WAIT).await.expect("resumed");
    assert_eq!(data(&e)["stream_id"], format!("task-{two}"));
    let bad = app
        .open_events(
            "/events/stream",
            Some(&admin.access),
            &[("last-event-id", "!!")],
        )
        .await
        .err()
        .expect("refused");
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app
        .open_events(
            "/events/stream",
            Some(&admin.access),
            &[("last-event-id", "bm90LWEtcG9zaXRpb24")],
        )
        .await
        .err()
        .expect("refused");
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_tenant_holds_a_bounded_number_of_streams() {
    let app = TestApp::start();
    let admin = app
        .register_tenant("Bounded", "root@bounded.test", "basic")
        .await;
    let mut open_ones = Vec::new();
    for _ in 0..api::events::MAX_STREAMS_PER_TENANT {
        open_ones.push(open(&app, &admin.access, &[]).await);
    }
    let refused = app
        .open_events("/events/stream", Some(&admin.access), &[])
        .await
        .err()
        .expect("one too many");
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.header("retry-after").is_some());
    // Closing one frees its place.
    open_ones.pop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    open(&app, &admin.access, &[]).await;
}

#[tokio::test]
async fn a_customer_streams_only_their_own_customers_cases() {
    let app = TestApp::start();
    let (admin, _org) = tenant_with_customers(&app, "portal-stream").await;
    let alice = app.portal_user(&admin, ACME, "alice@acme.test").await;
    let bob = app.portal_user(&admin, GLOBEX, "bob@globex.test").await;
    let mut alices = open(&app, &alice.access, &[]).await;

    create_task(&app, &admin.access, "Staff only").await;
    let case = |who: &str, subject: &str| {
        json!({"subject": subject, "description": who, "priority": "low"}).to_string()
    };
    let r = app
        .post(
            &format!("/customer/{GLOBEX}/cases"),
            &bob.access,
            &case("bob", "Globex's"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            &format!("/customer/{ACME}/cases"),
            &alice.access,
            &case("alice", "Acme's"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hers = r.body["case_id"].as_str().expect("id").to_owned();
    let e = alices.next_event(WAIT).await.expect("her case");
    assert_eq!(e.event.as_deref(), Some("CaseOpened"));
    let d = data(&e);
    assert_eq!(d["stream_id"], format!("case-{hers}"));
    assert!(
        d.get("payload").is_none(),
        "no payloads for a CUSTOMER: {d}"
    );
}

#[tokio::test]
async fn an_agent_under_assigned_access_streams_only_their_own_clients() {
    let app = TestApp::start();
    let (admin, _org) = tenant_with_customers(&app, "agent-stream").await;
    let agent = app.member(&admin, "agent@agent-stream.test").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .put(
                &format!("/customers/{ACME}/agent"),
                &admin.access,
                &json!({"user_id": agent.user_id}).to_string(),
            )
            .await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let set = app
        .put(
            &format!("/tenants/{}", admin.tenant_id),
            &admin.access,
            r#"{"settings":{"customer_access":"assigned"}}"#,
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    // Once the agent's own reads show only their client, so does their stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.get("/customers", &agent.access, None).await;
        let seen: Vec<&str> = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["customer_id"].as_str())
            .collect();
        if seen == [ACME] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut agents = open(&app, &agent.access, &[]).await;
    let mut admins = open(&app, &admin.access, &[]).await;
    // Another agent's client's account first, then the agent's own client's.
    for customer in [GLOBEX, ACME] {
        let r = app
            .post(
                &format!("/customers/{customer}/accounts"),
                &admin.access,
                &json!({"type": "checking", "currency": "USD"}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let e = agents
        .next_event(WAIT)
        .await
        .expect("their client's account");
    assert_eq!(
        data(&e)["payload"]["customer_id"],
        ACME,
        "the first event the agent sees is their own client's: {e:?}"
    );
    assert_eq!(e.event.as_deref(), Some("AccountOpened"), "{e:?}");
    // The ADMIN saw both accounts opened, Globex's first.
    let mut opened = Vec::new();
    while opened.len() < 2 {
        let e = admins.next_event(WAIT).await.expect("an event");
        if e.event.as_deref() == Some("AccountOpened") {
            opened.push(data(&e)["payload"]["customer_id"].clone());
        }
    }
    assert_eq!(opened, [GLOBEX, ACME]);
    // Nothing of Globex's reaches the agent afterwards either.
    while let Some(e) = agents.next_event(Duration::from_millis(500)).await {
        assert_ne!(data(&e)["payload"]["customer_id"], GLOBEX, "{e:?}");
    }
}
