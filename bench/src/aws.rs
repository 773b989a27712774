//! The AWS backend on the emulator: what each command costs in DynamoDB requests (counted
//! by the SDK interceptor, by operation), and the append-to-view lag through the relay,
//! EventBridge, SQS and the projector, from the projector's lag histogram.

use anyhow::Context;
use commands::{CommandHandler, CommandMeta};
use domain::task::{Task, TaskCommand, TaskStatus, TaskTitle};
use domain::{Actor, Role, StreamId, TenantId, UserId};
use infra::SystemClock;
use infra::aws::{Aws, DynamoEventStore, Relay, SqsProjector, setup};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn per_command(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    commands: usize,
) -> String {
    let parts: Vec<String> = after
        .iter()
        .map(|(op, n)| (op, n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {:.2}", n as f64 / commands as f64))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn kind_totals(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    commands: usize,
) -> (f64, f64) {
    const WRITES: &[&str] = &[
        "PutItem",
        "TransactWriteItems",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
    ];
    let (mut reads, mut writes) = (0, 0);
    for (op, n) in after {
        let n = n - before.get(op).copied().unwrap_or(0);
        if WRITES.contains(&op.as_str()) {
            writes += n;
        } else {
            reads += n;
        }
    }
    (
        reads as f64 / commands as f64,
        writes as f64 / commands as f64,
    )
}

pub async fn run(tasks: usize) -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    anyhow::ensure!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "run this under ./scripts/with-aws-emulator: AWS_ENDPOINT_URL must point at the local emulator"
    );
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                3.0, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;
    let prefix = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let commands_aws = Aws::load(&prefix).await;
    setup(&commands_aws).await.context("setup")?;
    // The pipeline has clients of its own, so its requests do not count against commands.
    let pipeline_aws = Aws::load(&prefix).await;
    let relay = Relay::new(&pipeline_aws);
    let projector = SqsProjector::new(
        &pipeline_aws,
        projections::queue_fed(),
        Duration::from_secs(1),
    )
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut s1 = stopped.clone();
    let relay_task = tokio::spawn(async move {
        relay
            .run(Duration::from_millis(20), async move {
                let _ = s1.wait_for(|s| *s).await;
            })
            .await;
    });
    let mut s2 = stopped.clone();
    let projector_task = tokio::spawn(async move {
        projector
            .run(async move {
                let _ = s2.wait_for(|s| *s).await;
            })
            .await;
    });

    let handler = CommandHandler::new(
        Arc::new(DynamoEventStore::new(&commands_aws)),
        Arc::new(SystemClock),
    );
    let meta = || {
        CommandMeta::of(
            TenantId::parse("bench").expect("tenant"),
            Actor {
                user_id: UserId::parse("loader").expect("user"),
                role: Role::Admin,
            },
            commands::RequestIds::fresh(),
            None,
        )
    };
    let counter = &commands_aws.counter;
    let lag_before = crate::lag_buckets(&recorder.render());
    let started = Instant::now();

    let before = counter.snapshot();
    let mut streams = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let id = Uuid::now_v7();
        let stream = StreamId::for_aggregate("task", id);
        let cmd = TaskCommand::Create {
            task_id: id.to_string(),
            title: TaskTitle::parse(&format!("bench task {i}"))?,
            description: Default::default(),
            assigned_to: None,
        };
        handler
            .create::<Task>(&meta(), &stream, &cmd)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        streams.push(stream);
    }
    let after_create = counter.snapshot();

    for stream in &streams {
        let cmd = TaskCommand::Update {
            title: None,
            description: None,
            status: Some(TaskStatus::Done),
            assigned_to: None,
        };
        handler
            .execute::<Task>(&meta(), stream, &cmd, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let after_update = counter.snapshot();
    let elapsed = started.elapsed();

    // PlaceOrder, one at a time over 10 products: the requests of an uncontended order.
    let mut products = Vec::new();
    for i in 0..10 {
        let product_id = Uuid::now_v7().to_string();
        let create = commands::commerce::CreateProduct {
            product_id: product_id.clone(),
            tier: domain::Tier::Enterprise,
            command: domain::product::ProductCommand::Create {
                product_id: product_id.clone(),
                name: domain::product::ProductName::parse(&format!("Bench {i}"))?,
                description: domain::product::ProductDescription::parse("")?,
                price: domain::money::Amount {
                    amount: domain::money::Money::parse("9.99")?,
                    currency: domain::money::Currency::default(),
                },
                category: domain::product::Category::parse("Bench")?,
                sku: domain::product::Sku::parse(&format!("AWS-{i}"))?,
                inventory: 1_000_000,
                quota_shard: 0,
            },
        };
        handler
            .run(&meta(), &create)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        products.push(product_id);
    }
    let address: domain::order::ShippingAddress = serde_json::from_value(serde_json::json!({
        "street": "1 Bench Road", "city": "Karachi", "state": "Sindh", "zip": "75500"
    }))?;
    let before_orders = counter.snapshot();
    for i in 0..tasks {
        let place = commands::commerce::PlaceOrder {
            order_id: Uuid::now_v7().to_string(),
            tier: domain::Tier::Enterprise,
            customer_email: domain::user::Email::parse("c@bench.test")?,
            lines: vec![commands::commerce::LineRequest {
                product_id: products[i % products.len()].clone(),
                quantity: 1,
            }],
            shipping_address: address.clone(),
        };
        handler
            .run(&meta(), &place)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let after_orders = counter.snapshot();

    // Let the pipeline drain: every task at version 2 in the views.
    let views = infra::aws::DynamoReadModelStore::new(&commands_aws);
    let tenant = TenantId::parse("bench")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    for stream in &streams {
        use projections::ReadModelStore;
        while views
            .row_version("tasks", &tenant, stream.instance())
            .await?
            < 2
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the pipeline did not drain in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let lag_after = crate::lag_buckets(&recorder.render());
    let _ = stop.send(true);
    let _ = relay_task.await;
    let _ = projector_task.await;

    let (cr, cw) = kind_totals(&before, &after_create, tasks);
    let (ur, uw) = kind_totals(&after_create, &after_update, tasks);
    println!(
        "aws (emulator): {tasks} CreateTask + {tasks} UpdateTask in {:.1}s",
        elapsed.as_secs_f64()
    );
    println!(
        "  CreateTask: {cr:.2} reads + {cw:.2} writes per command ({})",
        per_command(&before, &after_create, tasks)
    );
    println!(
        "  UpdateTask: {ur:.2} reads + {uw:.2} writes per command ({})",
        per_command(&after_create, &after_update, tasks)
    );
    let (or, ow) = kind_totals(&before_orders, &after_orders, tasks);
    println!(
        "  PlaceOrder (one line): {or:.2} reads + {ow:.2} writes per command ({})",
        per_command(&before_orders, &after_orders, tasks)
    );
    let fmt =
        |q: Option<f64>| q.map_or_else(|| "n/a".to_owned(), |s| format!("<= {:.0} ms", s * 1000.0));
    println!(
        "  lag, append to visible through relay -> EventBridge -> SQS -> projector: p50 {}, p99 {} (histogram bucket bounds)",
        fmt(crate::bucket_quantile(&lag_before, &lag_after, 0.50)),
        fmt(crate::bucket_quantile(&lag_before, &lag_after, 0.99)),
    );
    Ok(())
}
