//! System logs of client data (seed 002): where a tenant turns `settings.audit_reads` on,
//! every successful read of a client's data by staff (a GET of a route tagged with one of
//! `policy::CLIENT_DATA_TAGS`) appends a `ClientDataRead` event, through the command
//! pipeline, before the answer leaves; a read that cannot be recorded is not served. OWNERs
//! and ADMINs read them with `GET /audit/events?type=ClientDataRead`.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::Ids;
use crate::policy::Rule;
use crate::query::meta;
use crate::tokens::Principal;
use axum::extract::Request;
use commands::RequestIds;
use domain::data_read::{DataRead, Read};
use domain::{Aggregate, StreamId};

/// A read to record once it has succeeded.
pub struct Pending {
    read: Read,
    principal: Principal,
    ids: RequestIds,
}

impl Pending {
    /// The read `req` makes of the route `rule` for `principal`.
    pub fn of(rule: &Rule, req: &Request, principal: &Principal) -> Self {
        let uri = req.uri();
        let path = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
        Self {
            read: Read {
                operation: rule.operation.to_owned(),
                customer_id: customer_of(rule.path, uri.path()),
                path,
            },
            principal: principal.clone(),
            ids: Ids::of(req.headers()).0,
        }
    }

    /// Appends the read's `ClientDataRead`, on a stream of its own.
    pub async fn record(self, state: &AppState) -> Result<(), ApiError> {
        let stream = StreamId::for_aggregate(DataRead::KIND, self.ids.command_id);
        state
            .commands
            .create::<DataRead>(&meta(&self.principal, self.ids, None), &stream, &self.read)
            .await?;
        Ok(())
    }
}

/// The client a route names: the `{id}` of `/customers/{id}/…` or `/customer/{id}/…`.
fn customer_of(route: &str, path: &str) -> Option<String> {
    let mut route = route.split('/').skip(1);
    let mut path = path.split('/').skip(1);
    match (route.next(), route.next(), path.next(), path.next()) {
        (Some("customers" | "customer"), Some("{id}"), Some(_), Some(id)) => Some(id.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::customer_of;

    #[test]
    fn the_client_is_read_from_a_customer_route_only() {
        assert_eq!(
            customer_of("/customers/{id}/accounts", "/customers/001A/accounts").as_deref(),
            Some("001A")
        );
        assert_eq!(
            customer_of("/customer/{id}/cases", "/customer/001B/cases").as_deref(),
            Some("001B")
        );
        assert_eq!(customer_of("/accounts/{id}", "/accounts/9"), None);
        assert_eq!(customer_of("/customers", "/customers"), None);
    }
}
