//! Chronicle's HTTP edge: the axum router, authentication, error mapping, and the
//! bootstrap that wires the embedded backend together for the `chronicle` binary and tests.

pub mod accounts;
pub mod agents;
pub mod ai;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod cases;
pub mod console;
pub mod customer_cases;
pub mod customer_documents;
pub mod customers;
pub mod data_reads;
pub mod downloads;
pub mod embedded;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod limits;
pub mod llm;
pub mod messages;
pub mod oidc;
pub mod openapi;
pub mod orders;
pub mod policy;
pub mod products;
mod query;
pub mod replay;
pub mod salesforce;
pub mod scope;
pub mod sftp;
pub mod tasks;
pub mod tenancy;
pub mod tenants;
pub mod tokens;
pub mod transaction_logs;
pub mod transactions;
pub mod users;
pub mod workers;

pub use app::{AppState, app, serve};
pub use embedded::{Embedded, EmbeddedConfig};
pub use error::ApiError;
pub use tokens::{Principal, TokenKeys};
