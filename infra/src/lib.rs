//! Adapters from Chronicle's ports to the outside world, one module per system.

#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod openai;
pub mod placement;
pub mod salesforce;
pub mod secrets;
pub mod sftp;
pub mod smtp;
pub mod sqlite;

pub use clock::SystemClock;
