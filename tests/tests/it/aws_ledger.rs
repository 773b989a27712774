//! The ledger on the DynamoDB backend (the AWS emulator): 64 transfers in flight between
//! four accounts. Each posts or is refused for want of funds, none for contention; the sum
//! over the accounts does not move; no posting leaves a balance below its overdraft; and
//! the read models the SQS projector keeps in DynamoDB equal a fresh replay of the store.

use chronicle_tests::aws::{converge, test_aws};
use chronicle_tests::ledger::{Bank, FOUR, projections, sixty_four_in_flight};
use chronicle_tests::replayed::{replay, tenant_events};
use commands::CommandHandler;
use domain::TenantId;
use infra::SystemClock;
use infra::aws::DynamoEventStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sixty_four_transfers_in_flight_on_dynamodb() {
    let aws = test_aws().await;
    let events = Arc::new(DynamoEventStore::new(&aws));
    let handler = CommandHandler::new(events.clone(), Arc::new(SystemClock));
    let tenant = TenantId::parse("bank").expect("tenant");
    let mut bank = Bank::open(handler, tenant.clone(), &FOUR).await;
    sixty_four_in_flight(&mut bank, 0x5EED_0017).await;
    let all = tenant_events(events.as_ref(), &tenant).await;
    assert!(
        bank.check_postings(&all) >= 4,
        "the postings are in the store"
    );
    let replayed = replay(events, &tenant, &projections()).await;
    converge(&aws, &tenant, projections(), &replayed).await;
}
