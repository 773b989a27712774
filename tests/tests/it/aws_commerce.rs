//! PlaceOrder on the DynamoDB backend (the AWS emulator): 200 orders of one unit, 64 in
//! flight, at a product with 50 in stock, mixed with cancels. Exactly the stock sells, no
//! order fails for contention, the final stock is what the orders say, and the read models
//! the SQS projector keeps in DynamoDB (fed by the relay through EventBridge) equal a fresh
//! replay of the store.

use chronicle_tests::aws::{converge, test_aws};
use chronicle_tests::replayed::replay;
use commands::commerce::{ChangeOrder, CreateProduct, LineRequest, PlaceOrder, product_stream};
use commands::{CommandError, CommandHandler, CommandMeta, RequestIds};
use domain::money::{Amount, Currency, Money};
use domain::order::{OrderCommand, OrderStatus, ShippingAddress};
use domain::product::{Category, Product, ProductCommand, ProductDescription, ProductName, Sku};
use domain::user::Email;
use domain::{Actor, Role, TenantId, UserId};
use infra::aws::DynamoEventStore;
use projections::Projection;
use projections::orders::OrdersProjection;
use projections::products::ProductsProjection;
use std::sync::Arc;

fn meta(tenant: &TenantId, role: Role) -> CommandMeta {
    let actor = Actor {
        user_id: UserId::parse("buyer").expect("user"),
        role,
    };
    CommandMeta::of(tenant.clone(), actor, RequestIds::fresh(), None)
}

fn address() -> ShippingAddress {
    serde_json::from_value(serde_json::json!({
        "street": "1 Main Road", "city": "Karachi", "state": "Sindh", "zip": "75500"
    }))
    .expect("address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overselling_on_dynamodb() {
    let aws = test_aws().await;
    let handler = CommandHandler::new(
        Arc::new(DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    let tenant = TenantId::parse("shop").expect("tenant");
    let product_id = uuid::Uuid::now_v7().to_string();
    let create = CreateProduct {
        product_id: product_id.clone(),
        tier: domain::Tier::Premium,
        command: ProductCommand::Create {
            product_id: product_id.clone(),
            name: ProductName::parse("Hot").expect("name"),
            description: ProductDescription::parse("").expect("d"),
            price: Amount {
                amount: Money::parse("2.50").expect("price"),
                currency: Currency::default(),
            },
            category: Category::parse("Hot").expect("c"),
            sku: Sku::parse("HOT-1").expect("sku"),
            inventory: 50,
            quota_shard: 0,
        },
    };
    handler
        .run(&meta(&tenant, Role::Admin), &create)
        .await
        .expect("product");
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let (handler, tenant, limit, product_id) = (
            handler.clone(),
            tenant.clone(),
            limit.clone(),
            product_id.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire().await.expect("permit");
            let order_id = uuid::Uuid::now_v7().to_string();
            let place = PlaceOrder {
                order_id: order_id.clone(),
                tier: domain::Tier::Premium,
                customer_email: Email::parse("c@shop.test").expect("email"),
                lines: vec![LineRequest {
                    product_id,
                    quantity: 1,
                }],
                shipping_address: address(),
            };
            let placed = handler.run(&meta(&tenant, Role::Member), &place).await;
            let mut cancelled = false;
            if placed.is_ok() && i % 5 == 0 {
                let cancel = ChangeOrder {
                    order_id,
                    command: OrderCommand::Transition {
                        to: OrderStatus::Cancelled,
                    },
                    if_match: None,
                };
                handler
                    .run(&meta(&tenant, Role::Admin), &cancel)
                    .await
                    .expect("cancel");
                cancelled = true;
            }
            (placed.map(|_| ()), cancelled)
        });
    }
    let (mut placed, mut refused, mut cancels) = (0u64, 0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let (outcome, cancelled) = done.expect("task");
        match outcome {
            Ok(()) => placed += 1,
            Err(CommandError::Rejected(e)) if e.to_string().contains("in stock") => refused += 1,
            Err(e) => panic!("an order failed for contention or worse: {e}"),
        }
        cancels += u64::from(cancelled);
    }
    assert_eq!(placed + refused, 200);
    assert!(placed >= 50, "every unit was sold: {placed}");
    let (product, _) = handler
        .state::<Product>(&tenant, &product_stream(&product_id))
        .await
        .expect("product");
    assert_eq!(u64::from(product.inventory), 50 + cancels - placed);

    read_models_equal_a_replay(&aws, &tenant).await;
}

fn projections_under_test() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(ProductsProjection), Arc::new(OrdersProjection)]
}

async fn read_models_equal_a_replay(aws: &infra::aws::Aws, tenant: &TenantId) {
    let events = Arc::new(DynamoEventStore::new(aws));
    let replayed = replay(events, tenant, &projections_under_test()).await;
    assert!(
        replayed.iter().any(|r| r.0 == "revenue"),
        "the replay has revenue rows"
    );
    converge(aws, tenant, projections_under_test(), &replayed).await;
}
