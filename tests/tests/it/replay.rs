//! `chronicle replay` on the embedded backend, run as its own process beside a live
//! Chronicle that keeps serving and projecting: a random workload over several tenants
//! (tasks, products, orders), then a rebuild of every read model that must equal the
//! live ones row for row; a rebuild while writes go on that loses none of them; a
//! tenant's rebuild that repairs only that tenant's rows.

use axum::http::StatusCode;
use chronicle_tests::process::chronicle_bin;
use chronicle_tests::read_models::live_rows;
use chronicle_tests::{Dice, SignedUp, TestApp};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn replay(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(chronicle_bin())
        .arg("replay")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run chronicle replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Shop {
    who: SignedUp,
    tasks: Vec<String>,
    products: Vec<String>,
    orders: Vec<String>,
}

/// `steps` random writes over the shops; returns the last write's consistency token.
async fn workload(app: &TestApp, shops: &mut [Shop], dice: &mut Dice, steps: usize) -> String {
    let mut token = String::new();
    for step in 0..steps {
        let shop = dice.roll(shops.len());
        let s = &mut shops[shop];
        let access = s.who.access.clone();
        let reply = match dice.roll(8) {
            0 | 1 => {
                let r = app
                    .post(
                        "/tasks",
                        &access,
                        &json!({"title": format!("task {step}")}).to_string(),
                    )
                    .await;
                if let Some(id) = r.body["task_id"].as_str() {
                    s.tasks.push(id.to_owned());
                }
                r
            }
            2 if !s.tasks.is_empty() => {
                let id = &s.tasks[dice.roll(s.tasks.len())];
                let status = ["IN_PROGRESS", "DONE"][dice.roll(2)];
                let body = json!({"title": format!("renamed {step}"), "status": status});
                app.put(&format!("/tasks/{id}"), &access, &body.to_string())
                    .await
            }
            3 if !s.tasks.is_empty() => {
                let id = s.tasks.swap_remove(dice.roll(s.tasks.len()));
                app.delete(&format!("/tasks/{id}"), &access).await
            }
            4 => {
                let body = json!({"name": format!("Item {step}"), "price": format!("{}.{:02}", 1 + dice.roll(90), dice.roll(100)),
                    "category": "Tools", "sku": format!("SKU-{shop}-{step}"), "inventory": 1000});
                let r = app.post("/products", &access, &body.to_string()).await;
                if let Some(id) = r.body["product_id"].as_str() {
                    s.products.push(id.to_owned());
                }
                r
            }
            5 | 6 if !s.products.is_empty() => {
                let item = |d: &mut Dice| json!({"product_id": s.products[d.roll(s.products.len())], "quantity": 1 + d.roll(3)});
                let items = vec![item(dice)];
                let body = json!({"customer_email": "buyer@example.test", "items": items,
                    "shipping_address": {"street": "1 Main Road", "city": "Lahore", "state": "Punjab", "zip": "54000"}});
                let r = app.post("/orders", &access, &body.to_string()).await;
                if let Some(id) = r.body["order_id"].as_str() {
                    s.orders.push(id.to_owned());
                }
                r
            }
            7 if !s.orders.is_empty() => {
                let id = &s.orders[dice.roll(s.orders.len())];
                let action = ["confirm", "ship", "deliver", "cancel"][dice.roll(4)];
                app.post(&format!("/orders/{id}/{action}"), &access, "")
                    .await
            }
            _ => continue,
        };
        // A transition the order's state forbids is refused (409), and that is fine here.
        assert!(
            reply.status.is_success() || reply.status == StatusCode::CONFLICT,
            "step {step}: {:?} {:?}",
            reply.status,
            reply.body
        );
        if let Some(t) = reply.header("x-consistency-token") {
            token = t.to_owned();
        }
    }
    token
}

/// Waits until every projector has applied the write behind `token`. A token waits only
/// for its own tenant's caller (for another it names no write), so each shop asks.
async fn caught_up(app: &TestApp, shops: &[Shop], token: &str) {
    for shop in shops {
        let r = app.get("/tasks", &shop.who.access, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

async fn shops(app: &TestApp, n: usize) -> Vec<Shop> {
    let mut out = Vec::new();
    for i in 0..n {
        let who = app
            .register_tenant(
                &format!("Shop {i}"),
                &format!("root@shop{i}.test"),
                "premium",
            )
            .await;
        out.push(Shop {
            who,
            tasks: Vec::new(),
            products: Vec::new(),
            orders: Vec::new(),
        });
    }
    out
}

#[tokio::test]
async fn a_rebuild_equals_the_live_read_models_row_for_row_even_while_writes_go_on() {
    let app = TestApp::start();
    let dir = app.dir.path().to_owned();
    let mut shops = shops(&app, 3).await;
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let token = workload(&app, &mut shops, &mut dice, 400).await;
    caught_up(&app, &shops, &token).await;
    let (before, dead_before) = live_rows(&dir);
    for view in ["tasks", "products", "orders", "revenue", "users"] {
        assert!(
            before.keys().any(|(v, _, _)| v == view),
            "the workload made {view} rows"
        );
    }

    let (code, out, err) = replay(&dir, &["--all"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("swapped in"), "{out}");
    assert!(err.contains("replay: rebuilding"), "{err}");
    let (after, dead_after) = live_rows(&dir);
    assert_eq!(before.len(), after.len(), "as many rows");
    for (key, row) in &before {
        assert_eq!(Some(row), after.get(key), "row {key:?}");
    }
    assert_eq!(dead_before, dead_after);
    // The live process serves the swapped-in rows.
    let r = app
        .get("/orders?limit=100", &shops[1].who.access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Writes while a rebuild runs, and through its swap: none is lost.
    let run = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || replay(&dir, &["--all", "--batch-size", "1"])
    });
    let token = workload(&app, &mut shops, &mut dice, 300).await;
    let (code, out, err) = run.await.expect("replay ran");
    assert_eq!(code, 0, "{out}\n{err}");
    eprintln!("under writes: {out}");
    let token = match workload(&app, &mut shops, &mut dice, 20).await {
        t if t.is_empty() => token,
        t => t,
    };
    caught_up(&app, &shops, &token).await;
    let (live, _) = live_rows(&dir);
    let (code, out, err) = replay(&dir, &["--all"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (rebuilt, _) = live_rows(&dir);
    assert_eq!(
        live, rebuilt,
        "the live models after a swap under writes are the log's"
    );
    for shop in &shops {
        for id in &shop.tasks {
            let r = app
                .get(&format!("/tasks/{id}"), &shop.who.access, None)
                .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "task {id} written during the replay"
            );
        }
    }
}

#[tokio::test]
async fn a_tenants_rebuild_repairs_its_rows_only_and_bad_arguments_change_nothing() {
    let app = TestApp::start();
    let dir = app.dir.path().to_owned();
    let mut shops = shops(&app, 2).await;
    let mut dice = Dice(7);
    workload(&app, &mut shops, &mut dice, 40).await;
    // One task per tenant that nothing else touches, to damage.
    let mut token = String::new();
    let mut target = Vec::new();
    for shop in &shops {
        let r = app
            .post(
                "/tasks",
                &shop.who.access,
                &json!({"title": "t0"}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        target.push(r.body["task_id"].as_str().expect("id").to_owned());
        token = r.header("x-consistency-token").expect("token").to_owned();
    }
    caught_up(&app, &shops, &token).await;
    let (good, _) = live_rows(&dir);

    // Damage one task row of each tenant, straight in the file.
    let db = rusqlite::Connection::open(dir.join("views.db")).expect("open");
    for (shop, task) in shops.iter().zip(&target) {
        let changed = db
            .execute(
                "UPDATE view_rows SET doc = json_set(doc, '$.title', 'damaged') \
                 WHERE view = 'tasks' AND tenant_id = ?1 AND row_id = ?2",
                [shop.who.tenant_id.as_str(), task.as_str()],
            )
            .expect("damage");
        assert_eq!(changed, 1);
    }
    drop(db);
    let title = |i: usize| {
        let (rows, _) = live_rows(&dir);
        rows[&(
            "tasks".into(),
            shops[i].who.tenant_id.clone(),
            target[i].clone(),
        )]
            .1
            .as_ref()
            .expect("live")["title"]
            .clone()
    };

    for bad in [
        &["--projection", "nope", "--all"][..],
        &["--all", "--tenant", "x", "--projection", "tasks"][..],
        &["--projection", "tasks"][..],
        &["--tenant", shops[0].who.tenant_id.as_str()][..],
    ] {
        let (code, _, err) = replay(&dir, bad);
        assert_ne!(code, 0, "{bad:?} is refused");
        assert!(!err.is_empty(), "{bad:?} says why");
    }
    assert_eq!(title(0), "damaged", "a refused replay changes nothing");

    let a = shops[0].who.tenant_id.clone();
    let (code, out, err) = replay(&dir, &["--tenant", &a, "--projection", "tasks"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(title(0), "t0", "the tenant's row is rebuilt");
    assert_eq!(title(1), "damaged", "another tenant's rows are not touched");

    let (code, out, err) = replay(&dir, &["--all", "--projection", "tasks"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (rows, _) = live_rows(&dir);
    let differ: Vec<_> = good
        .iter()
        .filter(|(k, v)| rows.get(*k) != Some(*v))
        .map(|(k, v)| (k, v, rows.get(k)))
        .chain(
            rows.iter()
                .filter(|(k, _)| !good.contains_key(*k))
                .map(|(k, v)| (k, v, None)),
        )
        .collect();
    assert!(differ.is_empty(), "every row as the log has it: {differ:?}");
}

#[tokio::test]
async fn an_interrupted_rebuild_leaves_the_live_copy_as_it_was() {
    use std::io::{BufRead, BufReader};
    let app = TestApp::start();
    let dir = app.dir.path().to_owned();
    let mut shops = shops(&app, 2).await;
    let token = workload(&app, &mut shops, &mut Dice(11), 300).await;
    caught_up(&app, &shops, &token).await;
    let before = live_rows(&dir);

    // One event at a time, so that it is still rebuilding when the interrupt comes.
    let mut child = Command::new(chronicle_bin())
        .args(["replay", "--all", "--batch-size", "1", "--data-dir"])
        .arg(&dir)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn replay");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("first line");
    assert!(line.contains("rebuilding"), "{line}");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("stderr");
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert_eq!(
        live_rows(&dir),
        before,
        "nothing swapped, no partial copy left"
    );
}
