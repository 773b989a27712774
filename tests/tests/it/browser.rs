//! The console in a real browser (headless Chromium over WebDriver) against the real
//! `chronicle serve`: sign up a tenant, create a task titled with markup (shown as those
//! characters, no element made of it), move a task and see both changes appear live in a
//! second browser signed in as the same tenant, no serious or critical accessibility
//! violation (axe-core) on any page, and a MEMBER who is not shown the ADMIN's
//! actions; a reload keeps the session through the HttpOnly refresh cookie. Screenshots of each page go to `target/screenshots/`.

use chronicle_tests::browser::Browser;
use chronicle_tests::process::{Http, Server};
use std::time::Duration;

const SECRET: &str = "browser-test-secret-at-least-32-bytes";
const PASSWORD: &str = "a long enough password";
const XSS: &str = "<img src=x onerror=alert(1)>";

/// The XPath of a task row's title cell showing exactly `title`.
fn task_title(title: &str) -> String {
    format!("//tbody/tr/td/span[@class='title' and text()='{title}']")
}

/// Signs up a tenant through the console's form: its OWNER is signed in on the dashboard.
async fn sign_up(b: &Browser, server: &Server, company: &str, email: &str) {
    b.client.goto(&server.url("/#/signup")).await.expect("goto");
    b.fill("input[name=company_name]", company).await;
    b.fill("input[name=admin_email]", email).await;
    b.fill("input[name=admin_password]", PASSWORD).await;
    b.click("form button[type=submit]").await;
    b.find_xpath("//h1[text()='Dashboard']", Duration::from_secs(10))
        .await
        .expect("signed up");
}

async fn sign_in(b: &Browser, server: &Server, tenant: &str, email: &str) {
    b.client.goto(&server.url("/#/signin")).await.expect("goto");
    b.fill("input[name=tenant_id]", tenant).await;
    b.fill("input[name=email]", email).await;
    b.fill("input[name=password]", PASSWORD).await;
    b.click("form button[type=submit]").await;
    b.find_xpath("//h1[text()='Dashboard']", Duration::from_secs(10))
        .await
        .expect("signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_up_and_keeps_two_sessions_live_on_one_tenants_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SECRET);
    let admin = Browser::start().await;

    // Sign up: the console signs the new OWNER in.
    admin.client.goto(&server.url("/")).await.expect("goto");
    admin
        .find_xpath("//h1[text()='Sign in']", Duration::from_secs(10))
        .await
        .expect("the sign-in page first");
    let violations = admin.accessibility_violations().await;
    assert!(violations.is_empty(), "sign-in page: {violations:#?}");
    admin.click("nav a[href='#/signup']").await;
    admin.fill("input[name=company_name]", "Browser Bank").await;
    admin
        .fill("input[name=admin_email]", "owner@browser.test")
        .await;
    admin.fill("input[name=admin_password]", PASSWORD).await;
    admin.click("form button[type=submit]").await;
    admin
        .find_xpath("//h1[text()='Dashboard']", Duration::from_secs(10))
        .await
        .expect("the dashboard after sign-up");
    admin.screenshot("dashboard").await;
    let violations = admin.accessibility_violations().await;
    assert!(violations.is_empty(), "dashboard: {violations:#?}");
    // The refresh token is a cookie no script can read, and a reload signs in with it.
    let readable = admin
        .client
        .execute("return document.cookie", vec![])
        .await
        .expect("script");
    assert_eq!(readable, serde_json::json!(""), "HttpOnly");
    admin.client.refresh().await.expect("reload");
    admin
        .find_xpath("//h1[text()='Dashboard']", Duration::from_secs(10))
        .await
        .expect("still signed in after a reload");
    let who = admin
        .text_at("//*[@id='who']", Duration::from_secs(5))
        .await
        .expect("who");
    let tenant = who.rsplit(" · ").next().expect("tenant id").to_owned();
    assert!(who.contains("(OWNER)"), "{who}");

    // A task titled with markup is shown as those characters.
    admin.click("nav a[href='#/tasks']").await;
    admin.fill("input[name=title]", XSS).await;
    admin.click("form[aria-label='New task'] button").await;
    let cell = admin
        .text_at(&task_title(XSS), Duration::from_secs(5))
        .await
        .expect("the markup title shown as text");
    assert_eq!(cell, XSS);
    let made = admin
        .client
        .find_all(fantoccini::Locator::Css("tbody img"))
        .await
        .expect("find");
    assert!(made.is_empty(), "no element was made of the title");

    // A second session of the same tenant sees the first's changes without reloading.
    let second = Browser::start().await;
    sign_in(&second, &server, &tenant, "owner@browser.test").await;
    second.click("nav a[href='#/tasks']").await;
    second
        .find_xpath(&task_title(XSS), Duration::from_secs(5))
        .await
        .expect("the existing task");
    admin.fill("input[name=title]", "Call the bank").await;
    admin.click("form[aria-label='New task'] button").await;
    second
        .find_xpath(&task_title("Call the bank"), Duration::from_secs(3))
        .await
        .expect("the new task appears live in the second session");
    let select = "//tr[td/span[text()='Call the bank']]//select";
    // The live list re-renders its rows: an element found just before may be replaced
    // (stale), and is then found again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let moved = admin
            .find_xpath(select, Duration::from_secs(5))
            .await
            .expect("the status control");
        if moved.select_by_value("DONE").await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "could not move it");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let theirs = second
            .find_xpath(select, Duration::from_secs(1))
            .await
            .expect("the row in the second session");
        if theirs.prop("value").await.ok().flatten().as_deref() == Some("DONE") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the move did not appear live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.screenshot("tasks").await;
    let violations = admin.accessibility_violations().await;
    assert!(violations.is_empty(), "tasks page: {violations:#?}");
    assert!(
        !admin
            .client
            .find_all(fantoccini::Locator::Css("button.danger"))
            .await
            .expect("find")
            .is_empty(),
        "an OWNER may delete"
    );
    second.close().await;

    // Settings: the tier and its limits, the users, an invitation; connections without
    // secrets (none here).
    admin.click("nav a[href='#/settings']").await;
    admin
        .text_at(
            "//dl[@aria-label='Limits']/dt[text()='max users']",
            Duration::from_secs(5),
        )
        .await
        .expect("the tier's limits");
    admin
        .text_at(
            "//tbody[@id='users']/tr/td[text()='owner@browser.test']",
            Duration::from_secs(5),
        )
        .await
        .expect("the users");
    admin.click("form[aria-label='Invite a user'] button").await;
    let code = admin
        .text_at(
            "//p[@id='invitation' and contains(text(), 'Invitation code')]",
            Duration::from_secs(5),
        )
        .await
        .expect("an invitation code");
    assert!(code.contains("MEMBER"), "{code}");
    admin
        .text_at(
            "//div[@id='connections']/p[text()='Not connected.']",
            Duration::from_secs(5),
        )
        .await
        .expect("no connections");
    let violations = admin.accessibility_violations().await;
    assert!(violations.is_empty(), "settings page: {violations:#?}");
    admin.screenshot("settings").await;

    // A MEMBER of the tenant is not shown the delete action at all.
    let http = Http::default();
    let signed = http
        .send(
            "POST",
            &server.url("/auth/signin"),
            "",
            &[],
            Some(
                serde_json::json!({"tenant_id": tenant, "email": "owner@browser.test", "password": PASSWORD})
                    .to_string(),
            ),
        )
        .await
        .expect("sign in");
    let token = signed.body["access_token"].as_str().expect("token");
    let added = http
        .send(
            "POST",
            &server.url("/users"),
            token,
            &[],
            Some(
                serde_json::json!({"email": "mia@browser.test", "password": PASSWORD, "role": "MEMBER"})
                    .to_string(),
            ),
        )
        .await
        .expect("add a member");
    assert_eq!(added.status, 201, "{:?}", added.body);
    let member = Browser::start().await;
    sign_in(&member, &server, &tenant, "mia@browser.test").await;
    member.click("nav a[href='#/tasks']").await;
    member
        .find_xpath(&task_title("Call the bank"), Duration::from_secs(5))
        .await
        .expect("the member sees the tasks");
    let deletes = member
        .client
        .find_all(fantoccini::Locator::Css("button.danger"))
        .await
        .expect("find");
    assert!(deletes.is_empty(), "a MEMBER is shown no delete buttons");
    member.screenshot("tasks-member").await;
    member.close().await;

    // The checker itself finds what it should: an image without a text alternative.
    admin
        .client
        .goto("data:text/html,<html lang=en><title>t</title><main><img src=x></main></html>")
        .await
        .expect("goto");
    let found = admin.accessibility_violations().await;
    assert!(
        found.iter().any(|v| v.starts_with("image-alt")),
        "axe-core ran: {found:?}"
    );
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_query_completes_on_screen_without_a_reload() {
    let fake = chronicle_tests::fake_openai::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        SECRET,
        &[
            "--openai-api-key",
            &fake.key,
            "--openai-base-url",
            &fake.base_url,
        ],
    );
    let b = Browser::start().await;
    sign_up(&b, &server, "Asking Co", "owner@asking.test").await;
    b.click("nav a[href='#/ai']").await;
    b.fill("textarea[name=prompt]", "summarise the month").await;
    b.click("form[aria-label='Ask'] button").await;
    let answer = b
        .text_at(
            "//li[.//span[@class='ai-status' and text()='COMPLETED']]//span[@class='answer']",
            Duration::from_secs(15),
        )
        .await
        .expect("the answer appears without a reload");
    assert_eq!(answer, "echo: summarise the month");
    let usage = b
        .text_at(
            "//*[@id='ai-usage' and contains(text(), 'tokens')]",
            Duration::from_secs(5),
        )
        .await
        .expect("the month's usage");
    assert!(usage.contains("tokens"), "{usage}");
    let violations = b.accessibility_violations().await;
    assert!(violations.is_empty(), "AI page: {violations:#?}");
    b.screenshot("ai").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_and_cancelled_shows_the_stock_go_and_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SECRET);
    let b = Browser::start().await;
    sign_up(&b, &server, "Shop Co", "owner@shop.test").await;
    b.click("nav a[href='#/shop']").await;
    b.fill("input[name=name]", "Widget").await;
    b.fill("input[name=sku]", "WID-1").await;
    b.fill("input[name=price]", "2.50").await;
    b.fill("input[name=category]", "Tools").await;
    b.fill("input[name=inventory]", "5").await;
    b.click("form[aria-label='New product'] button").await;
    let stock = "//tr[td/span[@class='name' and text()='Widget']]//span[@class='stock']";
    let shows = |want: &'static str| {
        let b = &b;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let got = b.text_at(stock, Duration::from_secs(5)).await;
                if got.as_deref() == Some(want) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "stock {got:?}, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    shows("5").await;
    // The product list re-renders the picker: wait for the product in it.
    b.find_xpath(
        "//select[@name='product_id']/option[starts-with(text(), 'Widget')]",
        Duration::from_secs(5),
    )
    .await
    .expect("the product to order");
    b.fill("input[name=quantity]", "2").await;
    b.fill("input[name=customer_email]", "buyer@shop.test")
        .await;
    b.fill("input[name=street]", "1 Market St").await;
    b.fill("input[name=city]", "Karachi").await;
    b.fill("input[name=state]", "Sindh").await;
    b.fill("input[name=zip]", "75500").await;
    b.click("form[aria-label='Place an order'] button").await;
    shows("3").await;
    let status = "//tr[td[text()='buyer@shop.test']]//span[@class='order-status']";
    let total = "//tr[td[text()='buyer@shop.test']]/td[3]";
    assert_eq!(
        b.text_at(total, Duration::from_secs(5)).await.as_deref(),
        Some("5.00 USD")
    );
    assert_eq!(
        b.text_at(status, Duration::from_secs(5)).await.as_deref(),
        Some("pending")
    );
    b.screenshot("shop").await;
    let violations = b.accessibility_violations().await;
    assert!(violations.is_empty(), "shop page: {violations:#?}");
    let cancel = "//button[@aria-label='cancel the order of buyer@shop.test']";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let button = b
            .find_xpath(cancel, Duration::from_secs(5))
            .await
            .expect("the cancel action");
        if button.click().await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "could not cancel");
    }
    shows("5").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.text_at(status, Duration::from_secs(5)).await.as_deref() != Some("cancelled") {
        assert!(std::time::Instant::now() < deadline, "never cancelled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await;
}
