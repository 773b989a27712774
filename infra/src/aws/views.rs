//! The DynamoDB read-model store: one item per row, keyed `T#<tenant>#V#<view>` / row id,
//! carrying the stream version it reflects so that "row + its version" is one conditional
//! write. Top-level string fields of the row are copied to `f_<field>` attributes for the
//! list filters. Checkpoints, dead letters and relay checkpoints live in the same table.

use super::Aws;
use super::dynamodb::sdk_error;
use super::generations::{Fence, Generations, partition_of};
use super::item::{Item, get_n, get_s, n, s};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, Put, TransactWriteItem, Update, WriteRequest,
};
use domain::TenantId;
use domain::envelope::format_time;
use projections::replay::{Rebuildable, Swap, Swapped};
use projections::tally::{Merged, Tally};
use projections::{
    DeadLetter, ListQuery, ReadModelError, ReadModelStore, RowKey, RowWrite, StoredRow,
};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone)]
pub struct DynamoReadModelStore {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
    /// Which partition holds a tenant's view (`super::generations`).
    gens: Generations,
}

/// Actions in one TransactWriteItems.
const MAX_ACTIONS: usize = 100;

/// One transaction of a commit: rows (their puts first, so that a cancellation reason's
/// index names the row), the fences of the generations written, the merged changes to
/// summary rows, then the rest.
#[derive(Default)]
struct Chunk<'a> {
    rows: Vec<&'a RowWrite>,
    fences: BTreeSet<Fence>,
    tallies: Merged,
    others: Vec<TransactWriteItem>,
}

impl Chunk<'_> {
    fn size(&self) -> usize {
        self.rows.len() + self.fences.len() + self.tallies.len() + self.others.len()
    }
}

fn checkpoint_key(name: &str) -> String {
    format!("CP#{name}")
}

pub(crate) fn error(e: commands::StoreError) -> ReadModelError {
    match e {
        commands::StoreError::Retryable(m) => ReadModelError::Unavailable(m),
        other => ReadModelError::Backend(other.to_string()),
    }
}

fn corrupt(e: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Backend(e.to_string())
}

fn stored_row(item: &Item) -> Result<StoredRow, ReadModelError> {
    if item.contains_key("tally") {
        return tally_row(item);
    }
    Ok(StoredRow {
        row_id: get_s(item, "sk").map_err(corrupt)?.to_owned(),
        version: get_n(item, "version").map_err(corrupt)?,
        doc: match item.get("doc") {
            Some(_) => {
                Some(serde_json::from_str(get_s(item, "doc").map_err(corrupt)?).map_err(corrupt)?)
            }
            None => None,
        },
    })
}

/// A summary row written by tallies, its document as `Tally::to_doc` makes it.
fn tally_row(item: &Item) -> Result<StoredRow, ReadModelError> {
    let row_id = get_s(item, "sk").map_err(corrupt)?.to_owned();
    let mut t = Tally::new("", row_id.clone());
    for (k, v) in item {
        if let Some(key) = k.strip_prefix("a_") {
            let value = v
                .as_n()
                .ok()
                .and_then(|x| x.parse::<rust_decimal::Decimal>().ok())
                .ok_or_else(|| corrupt(format!("tally count {k}")))?;
            if !value.is_zero() {
                t.counts.insert(key.to_owned(), value);
            }
        } else if let Some(key) = k.strip_prefix("s_") {
            let value = v.as_s().map_err(|_| corrupt(format!("tally label {k}")))?;
            t.labels.insert(key.to_owned(), value.clone());
        }
    }
    Ok(StoredRow {
        row_id,
        version: get_n(item, "version").map_err(corrupt)?,
        doc: Some(t.to_doc()),
    })
}

impl DynamoReadModelStore {
    pub fn new(aws: &Aws) -> Self {
        Self {
            client: aws.dynamodb.clone(),
            table: aws.names.views_table.clone(),
            gens: Generations::new(aws.dynamodb.clone(), aws.names.views_table.clone()),
        }
    }

    /// The partition of a tenant's view now.
    async fn rows_key(&self, tenant: &TenantId, view: &str) -> Result<String, ReadModelError> {
        Ok(self.gens.partition(tenant.as_str(), view).await?.0)
    }

    fn row_item(&self, pk: String, w: &RowWrite) -> Item {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(w.key.row_id.clone())),
            ("version".to_owned(), n(w.version)),
        ]);
        if let Some(doc) = &w.doc {
            item.insert("doc".to_owned(), s(doc.to_string()));
            if let Some(fields) = doc.as_object() {
                for (k, v) in fields {
                    if let Some(text) = v.as_str() {
                        item.insert(format!("f_{k}"), s(text));
                        // For searches, which ignore ASCII case.
                        item.insert(format!("l_{k}"), s(text.to_ascii_lowercase()));
                    }
                }
            }
        }
        item
    }

    fn put(
        &self,
        item: Item,
        condition: Option<(&str, Option<u64>)>,
    ) -> Result<TransactWriteItem, ReadModelError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some((expr, expected)) = condition {
            put = put.condition_expression(expr);
            if let Some(v) = expected {
                put = put.expression_attribute_values(":expected", n(v));
            }
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(corrupt)?)
            .build())
    }

    /// Adds a tally's change into its summary row: counts as numbers under `a_<key>`
    /// (DynamoDB adds them exactly, in any order), labels under `s_<key>`.
    fn tally_update(&self, pk: String, t: &Tally) -> Result<TransactWriteItem, ReadModelError> {
        let mut names = HashMap::new();
        let mut values = HashMap::from([(":one".to_owned(), n(1))]);
        let mut adds = vec!["version :one".to_owned()];
        let mut sets = vec!["tally = :one".to_owned()];
        for (i, (k, v)) in t.counts.iter().enumerate() {
            names.insert(format!("#a{i}"), format!("a_{k}"));
            values.insert(
                format!(":a{i}"),
                AttributeValue::N(v.normalize().to_string()),
            );
            adds.push(format!("#a{i} :a{i}"));
        }
        // A label is set once, as `Tally::absorb` does.
        for (i, (k, v)) in t.labels.iter().enumerate() {
            names.insert(format!("#s{i}"), format!("s_{k}"));
            values.insert(format!(":s{i}"), s(v.clone()));
            sets.push(format!("#s{i} = if_not_exists(#s{i}, :s{i})"));
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(t.row_id.clone()))
            .update_expression(format!("ADD {} SET {}", adds.join(", "), sets.join(", ")))
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(corrupt)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn transact(
        &self,
        view: &str,
        actions: Vec<TransactWriteItem>,
        rows: &[&RowWrite],
        fences: &[Fence],
    ) -> Result<(), ReadModelError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.cancelled(view, rows, fences, e)),
        }
    }

    fn cancelled<R: std::fmt::Debug>(
        &self,
        view: &str,
        rows: &[&RowWrite],
        fences: &[Fence],
        e: SdkError<TransactWriteItemsError, R>,
    ) -> ReadModelError {
        if let SdkError::ServiceError(se) = &e
            && let TransactWriteItemsError::TransactionCanceledException(c) = se.err()
        {
            let lost = c
                .cancellation_reasons()
                .iter()
                .position(|r| r.code() == Some("ConditionalCheckFailed"));
            if let Some(w) = lost.and_then(|i| rows.get(i)) {
                return ReadModelError::Conflict {
                    view: view.to_owned(),
                    row_id: w.key.row_id.clone(),
                    expected: w.expected_version,
                };
            }
            if let Some(f) = lost.and_then(|i| fences.get(i.checked_sub(rows.len())?)) {
                // A replay swapped a new generation in: what was cached of it is stale.
                self.gens.forget(&f.tenant, &f.view);
                return ReadModelError::Conflict {
                    view: view.to_owned(),
                    row_id: format!("generation {} of {}", f.generation, f.view),
                    expected: f.generation,
                };
            }
            return ReadModelError::Unavailable(format!(
                "transaction cancelled: {:?}",
                c.cancellation_reasons()
            ));
        }
        error(sdk_error(e))
    }

    /// A value kept under `key` in this table (relay checkpoints).
    pub(crate) async fn get_value(&self, key: &str) -> Result<Option<Item>, ReadModelError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", s("0"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        Ok(out.item().cloned())
    }

    pub(crate) async fn put_value(&self, key: &str, mut attrs: Item) -> Result<(), ReadModelError> {
        attrs.insert("pk".to_owned(), s(key));
        attrs.insert("sk".to_owned(), s("0"));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        Ok(())
    }

    /// Dead letters of a view: (stream, version, error).
    pub async fn dead_letters(
        &self,
        view: &str,
    ) -> Result<Vec<(String, u64, String)>, ReadModelError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("DL#{view}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        out.items()
            .iter()
            .map(|i| {
                Ok((
                    get_s(i, "stream_id").map_err(corrupt)?.to_owned(),
                    get_n(i, "version").map_err(corrupt)?,
                    get_s(i, "error").map_err(corrupt)?.to_owned(),
                ))
            })
            .collect()
    }

    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), ReadModelError> {
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(corrupt)
                })
                .collect::<Result<_, _>>()?;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| error(sdk_error(e)))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ReadModelStore for DynamoReadModelStore {
    async fn load(
        &self,
        view: &str,
        keys: &[RowKey],
    ) -> Result<HashMap<RowKey, StoredRow>, ReadModelError> {
        let mut found = HashMap::with_capacity(keys.len());
        let mut partitions: HashMap<&TenantId, String> = HashMap::new();
        for k in keys {
            if !partitions.contains_key(&k.tenant_id) {
                partitions.insert(&k.tenant_id, self.rows_key(&k.tenant_id, view).await?);
            }
        }
        for chunk in keys.chunks(100) {
            let mut wanted = KeysAndAttributes::builder().consistent_read(true);
            for k in chunk {
                wanted = wanted.keys(HashMap::from([
                    ("pk".to_owned(), s(partitions[&k.tenant_id].clone())),
                    ("sk".to_owned(), s(k.row_id.clone())),
                ]));
            }
            let mut pending = Some(wanted.build().map_err(corrupt)?);
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| error(sdk_error(e)))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let row = stored_row(item)?;
                    let pk = get_s(item, "pk").map_err(corrupt)?;
                    if let Some(k) = chunk
                        .iter()
                        .find(|k| k.row_id == row.row_id && partitions[&k.tenant_id] == pk)
                    {
                        found.insert(k.clone(), row);
                    }
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(found)
    }

    async fn commit(
        &self,
        view: &str,
        writes: Vec<RowWrite>,
        dead_letters: Vec<DeadLetter>,
        checkpoint: Option<(String, u64)>,
    ) -> Result<(), ReadModelError> {
        let mut others = Vec::with_capacity(dead_letters.len() + 1);
        for d in &dead_letters {
            let item = HashMap::from([
                ("pk".to_owned(), s(format!("DL#{}", d.view))),
                ("sk".to_owned(), s(d.event.event_id.to_string())),
                ("tenant_id".to_owned(), s(d.event.tenant_id.as_str())),
                ("stream_id".to_owned(), s(d.event.stream_id.as_str())),
                ("version".to_owned(), n(d.event.version)),
                (
                    "event".to_owned(),
                    s(serde_json::to_string(&d.event).map_err(corrupt)?),
                ),
                ("error".to_owned(), s(d.error.clone())),
                (
                    "recorded_at".to_owned(),
                    s(format_time(&chrono::Utc::now())),
                ),
            ]);
            others.push(self.put(item, None)?);
        }
        if let Some((name, position)) = &checkpoint {
            let item = HashMap::from([
                ("pk".to_owned(), s(checkpoint_key(name))),
                ("sk".to_owned(), s("0")),
                ("position".to_owned(), n(*position)),
            ]);
            others.push(self.put(item, None)?);
        }
        // The service takes 100 actions per transaction and one action per item. Rows
        // carry their own versions, so a batch split between rows stays exactly-once (a
        // re-run skips what landed), provided each row's tallies go in its transaction:
        // they are merged per summary row there.
        // Where each row and each summary row goes, and the fence of that generation.
        let mut places: HashMap<(String, String), (String, Fence)> = HashMap::new();
        for w in &writes {
            let tenant = w.key.tenant_id.as_str();
            for v in std::iter::once(view).chain(w.tallies.iter().map(|t| t.view.as_str())) {
                let key = (tenant.to_owned(), v.to_owned());
                if let std::collections::hash_map::Entry::Vacant(slot) = places.entry(key) {
                    slot.insert(self.gens.partition(tenant, v).await?);
                }
            }
        }
        let place = |tenant: &TenantId, v: &str| -> Result<&(String, Fence), ReadModelError> {
            places
                .get(&(tenant.to_string(), v.to_owned()))
                .ok_or_else(|| ReadModelError::Backend(format!("no partition for {v}")))
        };
        let mut chunks: Vec<Chunk<'_>> = vec![Chunk::default()];
        for w in &writes {
            let tenant = &w.key.tenant_id;
            let mut fences = vec![place(tenant, view)?.1.clone()];
            for t in &w.tallies {
                fences.push(place(tenant, &t.view)?.1.clone());
            }
            let chunk = chunks.last_mut().expect("a chunk");
            let new = w
                .tallies
                .iter()
                .filter(|t| !chunk.tallies.has(tenant, t))
                .count()
                + fences.iter().filter(|f| !chunk.fences.contains(f)).count();
            if chunk.size() + 1 + new > MAX_ACTIONS {
                chunks.push(Chunk::default());
            }
            let chunk = chunks.last_mut().expect("a chunk");
            chunk.rows.push(w);
            chunk.fences.extend(fences);
            for t in &w.tallies {
                chunk.tallies.add(tenant, t)?;
            }
        }
        for action in others {
            if chunks.last().is_some_and(|c| c.size() >= MAX_ACTIONS) {
                chunks.push(Chunk::default());
            }
            chunks.last_mut().expect("a chunk").others.push(action);
        }
        for chunk in chunks.into_iter().filter(|c| c.size() > 0) {
            let mut actions = Vec::with_capacity(chunk.size());
            for w in &chunk.rows {
                let item = self.row_item(place(&w.key.tenant_id, view)?.0.clone(), w);
                actions.push(if w.expected_version == 0 {
                    self.put(item, Some(("attribute_not_exists(pk)", None)))?
                } else {
                    self.put(
                        item,
                        Some(("version = :expected", Some(w.expected_version))),
                    )?
                });
            }
            let fences: Vec<Fence> = chunk.fences.into_iter().collect();
            for f in &fences {
                actions.push(self.gens.check(f)?);
            }
            for (tenant, t) in chunk.tallies.iter() {
                actions.push(self.tally_update(place(tenant, &t.view)?.0.clone(), t)?);
            }
            actions.extend(chunk.others);
            self.transact(view, actions, &chunk.rows, &fences).await?;
        }
        Ok(())
    }

    async fn checkpoint(&self, name: &str) -> Result<u64, ReadModelError> {
        match self.get_value(&checkpoint_key(name)).await? {
            Some(item) => get_n(&item, "position").map_err(corrupt),
            None => Ok(0),
        }
    }

    async fn get(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<Option<StoredRow>, ReadModelError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(self.rows_key(tenant, view).await?))
            .key("sk", s(row_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        out.item()
            .map(stored_row)
            .transpose()
            .map(|r| r.filter(|r| r.doc.is_some()))
    }

    async fn row_version(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<u64, ReadModelError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(self.rows_key(tenant, view).await?))
            .key("sk", s(row_id))
            .consistent_read(true)
            .projection_expression("version")
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        out.item()
            .map_or(Ok(0), |i| get_n(i, "version").map_err(corrupt))
    }

    async fn list(
        &self,
        view: &str,
        tenant: &TenantId,
        query: &ListQuery,
    ) -> Result<Vec<StoredRow>, ReadModelError> {
        let mut filter = vec!["(attribute_exists(doc) OR attribute_exists(tally))".to_owned()];
        let mut names = HashMap::new();
        let mut values = HashMap::from([(":pk".to_owned(), s(self.rows_key(tenant, view).await?))]);
        for (i, (field, value)) in query.filters.iter().enumerate() {
            filter.push(format!("#f{i} = :f{i}"));
            names.insert(format!("#f{i}"), format!("f_{field}"));
            values.insert(format!(":f{i}"), s(value.clone()));
        }
        if let Some(search) = query.search.as_ref().filter(|s| !s.fields.is_empty()) {
            values.insert(":q".to_owned(), s(search.text.to_ascii_lowercase()));
            let any: Vec<String> = search
                .fields
                .iter()
                .enumerate()
                .map(|(i, field)| {
                    names.insert(format!("#l{i}"), format!("l_{field}"));
                    format!("contains(#l{i}, :q)")
                })
                .collect();
            filter.push(format!("({})", any.join(" OR ")));
        }
        let condition = match &query.after {
            Some(after) => {
                values.insert(":after".to_owned(), s(after.clone()));
                "pk = :pk AND sk > :after"
            }
            None => "pk = :pk",
        };
        let mut rows = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .filter_expression(filter.join(" AND "))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| error(sdk_error(e)))?;
            for item in out.items() {
                if rows.len() < query.limit {
                    let row = stored_row(item)?;
                    // A scope is a set of any size, past what one filter expression holds
                    // (100 values to an IN): applied to each row the query returns.
                    let inside = match (&query.within, &row.doc) {
                        (Some(w), Some(doc)) => w.admits(doc),
                        _ => true,
                    };
                    if inside {
                        rows.push(row);
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(key) if rows.len() < query.limit => start = Some(key.clone()),
                _ => return Ok(rows),
            }
        }
    }

    async fn reset(&self, view: &str, tenant: Option<&TenantId>) -> Result<(), ReadModelError> {
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        let partition = match tenant {
            Some(t) => Some(self.rows_key(t, view).await?),
            None => None,
        };
        loop {
            let out = match &partition {
                Some(pk) => {
                    let q = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("pk = :pk")
                        .expression_attribute_values(":pk", s(pk.clone()))
                        .projection_expression("pk, sk")
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| error(sdk_error(e)))?;
                    (q.items().to_vec(), q.last_evaluated_key().cloned())
                }
                None => {
                    let q = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .filter_expression("begins_with(pk, :t) AND contains(pk, :v)")
                        .expression_attribute_values(":t", s("T#"))
                        .expression_attribute_values(":v", s(format!("#V#{view}")))
                        .projection_expression("pk, sk")
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| error(sdk_error(e)))?;
                    (q.items().to_vec(), q.last_evaluated_key().cloned())
                }
            };
            keys.extend(out.0);
            match out.1 {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        if tenant.is_none() {
            keys.push(HashMap::from([
                ("pk".to_owned(), s(checkpoint_key(view))),
                ("sk".to_owned(), s("0")),
            ]));
        }
        self.delete_keys(keys).await
    }
}

#[async_trait]
impl Rebuildable for DynamoReadModelStore {
    /// One tenant's views: the generations move on in one transaction, conditional on
    /// each being the one the rebuild wrote next to. There are no log positions to check
    /// here; the queue projectors write through the fence into the new generation from
    /// then on, and the rebuild folds in what came after its read (`Swapped::Done.tail`).
    async fn swap_in(&self, swap: &Swap) -> Result<Swapped, ReadModelError> {
        let tenant = swap.tenant.as_ref().ok_or_else(|| {
            ReadModelError::Backend(
                "on DynamoDB a rebuild is of one tenant: name it (there is no log of all)".into(),
            )
        })?;
        let mut fences = Vec::new();
        let mut actions = Vec::new();
        for view in &swap.views {
            let generation = self.gens.read(tenant.as_str(), view).await?;
            let fence = Fence {
                tenant: tenant.to_string(),
                view: view.clone(),
                generation,
            };
            actions.push(self.gens.advance(&fence)?);
            fences.push(fence);
        }
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        for f in &fences {
            self.gens.forget(&f.tenant, &f.view);
        }
        if let Err(e) = out {
            return Err(self.cancelled(&swap.views.join(","), &[], &fences, e));
        }
        let mut rows = 0;
        for f in &fences {
            rows += self
                .count(&partition_of(&f.tenant, &f.view, f.generation + 1))
                .await?;
        }
        Ok(Swapped::Done { rows, tail: true })
    }

    /// Each view's generation before the live one, once readers' cached generations have
    /// expired.
    async fn retire(&self, swap: &Swap) -> Result<(), ReadModelError> {
        let Some(tenant) = &swap.tenant else {
            return Ok(());
        };
        tokio::time::sleep(super::generations::FRESH_FOR * 2).await;
        for view in &swap.views {
            let live = self.gens.read(tenant.as_str(), view).await?;
            if let Some(old) = live.checked_sub(1) {
                let keys = self
                    .keys_of(&partition_of(tenant.as_str(), view, old))
                    .await?;
                self.delete_keys(keys).await?;
            }
        }
        Ok(())
    }
}

impl DynamoReadModelStore {
    /// The items of a partition.
    async fn count(&self, pk: &str) -> Result<u64, ReadModelError> {
        Ok(self.keys_of(pk).await?.len() as u64)
    }

    async fn keys_of(&self, pk: &str) -> Result<Vec<Item>, ReadModelError> {
        self.items_of(pk, Some("pk, sk")).await
    }

    /// Every item of a partition (consistent reads), or only the `projection` attributes.
    pub(crate) async fn items_of(
        &self,
        pk: &str,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, ReadModelError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .set_projection_expression(projection.map(str::to_owned))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| error(sdk_error(e)))?;
            items.extend(q.items().iter().cloned());
            match q.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }
}
