//! A staff user's read of a client's data (seed 002's system logs), recorded only where the
//! tenant turns `settings.audit_reads` on: each read is a stream of its own, written once,
//! so recording never contends with anything. The envelope says who read, when, and under
//! which request; the event says what.

use crate::aggregate::{Aggregate, CommandContext};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The route's operation, e.g. `GetAccount`.
    pub operation: String,
    /// The request's path and query.
    pub path: String,
    /// The client the path names, where it names one.
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDataRead {
    pub operation: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(DataReadEvent, "data read" {
    Read(ClientDataRead) = "ClientDataRead",
});

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataRead {
    pub read: Option<ClientDataRead>,
}

impl Aggregate for DataRead {
    const KIND: &'static str = "dataread";
    type Command = Read;
    type Event = DataReadEvent;
    type Error = std::convert::Infallible;

    fn decide(&self, read: &Read, ctx: &CommandContext) -> Result<Vec<DataReadEvent>, Self::Error> {
        Ok(vec![DataReadEvent::Read(ClientDataRead {
            operation: read.operation.clone(),
            path: read.path.clone(),
            customer_id: read.customer_id.clone(),
            at: ctx.now,
        })])
    }

    fn apply(&mut self, event: &DataReadEvent) {
        let DataReadEvent::Read(r) = event;
        self.read = Some(r.clone());
    }
}
