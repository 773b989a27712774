//! All black-box tests in one binary: one link instead of one per file, which keeps
//! build time and disk use down (each test binary links the AWS SDKs).

mod access;
mod agents;
mod ai;
mod analytics;
mod audit;
mod aws_ai;
mod aws_analytics;
mod aws_audit;
mod aws_cases;
mod aws_commerce;
mod aws_e2e;
mod aws_pipeline;
mod aws_replay;
mod aws_salesforce;
mod case_delivery;
mod cli;
mod commerce;
mod crash;
mod documents;
mod http_tasks;
mod ledger;
mod logs;
mod metrics;
mod oidc;
mod openapi;
mod placement;
mod portal;
mod projector;
mod rate_limits;
mod rbac;
mod replay;
mod salesforce;
mod store_dynamodb;
mod store_sqlite;
