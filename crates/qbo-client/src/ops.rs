//! The calls: query pages, whole queries, counts, read by id, CDC, create and sparse update.
//! Entities are `serde_json::Value` objects exactly as QBO sends them; turning them into
//! attributes is the service's business, so nothing here knows an entity beyond its name. A
//! caller may instead have a page's rows read straight into a type of its own
//! ([`QboClient::query_page_as`]), e.g. one that keeps only the properties it reads.
//!
//! Query answers (reference §3.2): `{"QueryResponse": {"<Entity>": [...], "startPosition",
//! "maxResults"}}`; an empty page has **no entity key** (`{"QueryResponse": {}}`), which is an
//! empty page, not an error. [`QboClient::query_all`] pages by [`crate::ClientOptions::page_size`]
//! (1000) until a short or empty page, ordered by `Id` unless the query orders itself (new rows
//! get higher ids, so they cannot shift earlier pages), and returns each `Id` once. A page that
//! brings no new row although full means QBO ignored `STARTPOSITION`: the pass fails
//! ([`Error::Protocol`]) instead of looping. Offset paging cannot see a row that moves *backwards*
//! across a page boundary while the pass runs (a hard delete before it): passes are cheap to
//! repeat and CDC/webhooks catch the rest.
//!
//! Statements longer than [`POST_QUERY_ABOVE`] characters (long `IN` lists) go by `POST /query`
//! (`Content-Type: application/text`) instead of the URL.

use std::{
    collections::{BTreeMap, HashSet},
    marker::PhantomData,
};

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};

use crate::{
    cdc::{self, Changes},
    client::{Answer, Body, Call, QboClient},
    error::{Error, Result},
    fault::Fault,
    query::{Order, Query, check_entity},
    stats::RequestKind,
};

/// Statements longer than this are sent as a `POST` body rather than in the URL.
pub const POST_QUERY_ABOVE: usize = 1500;

fn protocol(message: String) -> Error {
    Error::Protocol {
        status: 200,
        message,
    }
}

/// Takes the object under `entity` (matched case-insensitively) out of an answer.
fn take_entity(mut answer: Value, entity: &str) -> Result<Value> {
    let obj = answer
        .as_object_mut()
        .ok_or_else(|| protocol(format!("{entity} answer is not an object")))?;
    let key = obj
        .keys()
        .find(|k| k.eq_ignore_ascii_case(entity))
        .cloned()
        .ok_or_else(|| protocol(format!("answer has no {entity}")))?;
    match obj.remove(&key) {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(protocol(format!("{entity} in the answer is not an object"))),
    }
}

/// One query page as it is read: the members of `QueryResponse` that are arrays, their rows
/// read straight into `R` (a caller that needs only a few properties of each row never builds
/// the rest), every other member skipped unread.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned"))]
pub(crate) struct QueryPage<R> {
    #[serde(rename = "QueryResponse", default)]
    response: Option<BTreeMap<String, Member<R>>>,
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<IgnoredAny>,
}

impl<R: DeserializeOwned> Answer for QueryPage<R> {
    fn read(body: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(body)
    }

    /// The fault's contents were skipped while reading: read again from the body (rare).
    fn fault(&self, body: &[u8]) -> Option<Fault> {
        self.fault.as_ref().and_then(|_| Fault::parse(body))
    }
}

impl<R> QueryPage<R> {
    /// The rows under `entity` (matched case-insensitively; none when the key is absent).
    fn rows(self, entity: &str) -> Result<Vec<R>> {
        let members = self
            .response
            .ok_or_else(|| protocol("query answer without QueryResponse".into()))?;
        match members
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(entity))
        {
            None => Ok(Vec::new()),
            Some((_, Member::Rows(rows))) => Ok(rows),
            Some((_, Member::Other)) => {
                Err(protocol(format!("QueryResponse.{entity} is not an array")))
            }
        }
    }
}

/// A member of `QueryResponse`: an array of rows, or anything else (`startPosition`, …).
#[derive(Debug)]
enum Member<R> {
    Rows(Vec<R>),
    Other,
}

impl<'de, R: Deserialize<'de>> Deserialize<'de> for Member<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct MemberVisitor<R>(PhantomData<R>);

        impl<'de, R: Deserialize<'de>> Visitor<'de> for MemberVisitor<R> {
            type Value = Member<R>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Member<R>, A::Error> {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(row) = seq.next_element()? {
                    rows.push(row);
                }
                Ok(Member::Rows(rows))
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Member<R>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Member::Other)
            }

            fn visit_bool<E>(self, _: bool) -> std::result::Result<Member<R>, E> {
                Ok(Member::Other)
            }

            fn visit_i64<E>(self, _: i64) -> std::result::Result<Member<R>, E> {
                Ok(Member::Other)
            }

            fn visit_u64<E>(self, _: u64) -> std::result::Result<Member<R>, E> {
                Ok(Member::Other)
            }

            fn visit_f64<E>(self, _: f64) -> std::result::Result<Member<R>, E> {
                Ok(Member::Other)
            }

            fn visit_str<E>(self, _: &str) -> std::result::Result<Member<R>, E> {
                Ok(Member::Other)
            }

            fn visit_unit<E>(self) -> std::result::Result<Member<R>, E> {
                Ok(Member::Other)
            }
        }

        deserializer.deserialize_any(MemberVisitor(PhantomData))
    }
}

fn check_id(id: &str) -> Result<()> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!("{id:?} is not a QBO id")))
    }
}

fn object(body: Value, what: &str) -> Result<Map<String, Value>> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(Error::InvalidRequest(format!(
            "{what} must be a JSON object"
        ))),
    }
}

impl QboClient {
    async fn run_query<T: Answer>(&self, statement: String) -> Result<T> {
        let (method, params, body) = if statement.len() > POST_QUERY_ABOVE {
            (Method::POST, Vec::new(), Some(Body::Text(statement)))
        } else {
            (Method::GET, vec![("query", statement)], None)
        };
        self.core
            .call(&Call {
                kind: RequestKind::Query,
                method,
                path: "query".into(),
                params,
                body,
                request_id: None,
                idempotent: true,
            })
            .await
    }

    /// One page of a query: rows `start` (1-based) to `start + max − 1`.
    pub async fn query_page(&self, query: &Query, start: u32, max: u32) -> Result<Vec<Value>> {
        self.query_page_as(query, start, max).await
    }

    /// [`Self::query_page`] with each row read as `R` straight from the answer (e.g. a type
    /// that keeps only the properties its caller reads).
    pub async fn query_page_as<R: DeserializeOwned>(
        &self,
        query: &Query,
        start: u32,
        max: u32,
    ) -> Result<Vec<R>> {
        let page: QueryPage<R> = self.run_query(query.page_statement(start, max)?).await?;
        page.rows(query.entity())
    }

    /// Every row of a query, page by page (see the module docs), each `Id` once.
    pub async fn query_all(&self, query: &Query) -> Result<Vec<Value>> {
        let query = if query.has_order() {
            query.clone()
        } else {
            query.clone().order_by("Id", Order::Asc)
        };
        let page = self.core.options.page_size;
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        let mut start = 1u32;
        loop {
            let batch = self.query_page(&query, start, page).await?;
            let full = batch.len() >= page as usize;
            let mut fresh = 0usize;
            for row in batch {
                let new = match row.get("Id").and_then(Value::as_str) {
                    Some(id) => seen.insert(id.to_owned()),
                    None => true,
                };
                if new {
                    fresh += 1;
                    rows.push(row);
                }
            }
            if !full {
                return Ok(rows);
            }
            if fresh == 0 {
                return Err(protocol(format!(
                    "{} page at STARTPOSITION {start} repeated earlier rows only",
                    query.entity()
                )));
            }
            start = start
                .checked_add(page)
                .ok_or_else(|| protocol("query pass ran past 2^32 rows".into()))?;
        }
    }

    /// `COUNT(*)` of a [`Query::count`]: `QueryResponse.totalCount`.
    pub async fn count(&self, query: &Query) -> Result<u64> {
        if !query.is_count() {
            return Err(Error::InvalidRequest(
                "count() takes a Query::count(…)".into(),
            ));
        }
        let answer: Value = self.run_query(query.statement()?).await?;
        answer
            .pointer("/QueryResponse/totalCount")
            .and_then(Value::as_u64)
            .ok_or_else(|| protocol("count answer without QueryResponse.totalCount".into()))
    }

    /// `GET /{entity lowercase}/{id}`: the object (e.g. `read("TaxRate", "6")`).
    pub async fn read(&self, entity: &str, id: &str) -> Result<Value> {
        check_entity(entity)?;
        check_id(id)?;
        let answer = self
            .core
            .call(&Call {
                kind: RequestKind::Read,
                method: Method::GET,
                path: format!("{}/{id}", entity.to_ascii_lowercase()),
                params: Vec::new(),
                body: None,
                request_id: None,
                idempotent: true,
            })
            .await?;
        take_entity(answer, entity)
    }

    /// Objects of `entities` changed at or after `changed_since` (see [`crate::cdc`]). A
    /// `changed_since` older than QBO's 30-day look-back (minus
    /// [`crate::ClientOptions::cdc_margin`]) fails with [`Error::CdcTooOld`] without a request:
    /// do a full pull instead.
    pub async fn cdc(&self, entities: &[&str], changed_since: DateTime<Utc>) -> Result<Changes> {
        let margin = TimeDelta::from_std(self.core.options.cdc_margin).unwrap_or(TimeDelta::MAX);
        let list = cdc::check_request(entities, changed_since, Utc::now(), margin)?;
        let answer = self
            .core
            .call(&Call {
                kind: RequestKind::Cdc,
                method: Method::GET,
                path: "cdc".into(),
                params: vec![
                    ("entities", list),
                    ("changedSince", cdc::render_since(changed_since)),
                ],
                body: None,
                request_id: None,
                idempotent: true,
            })
            .await?;
        cdc::parse(&answer)
    }

    async fn write(
        &self,
        entity: &str,
        body: Map<String, Value>,
        request_id: Option<&str>,
    ) -> Result<Value> {
        let request_id = match request_id {
            Some("") => return Err(Error::InvalidRequest("empty requestid".into())),
            Some(id) => id.to_owned(),
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let answer = self
            .core
            .call(&Call {
                kind: RequestKind::Write,
                method: Method::POST,
                path: entity.to_ascii_lowercase(),
                params: Vec::new(),
                body: Some(Body::Json(Value::Object(body))),
                request_id: Some(request_id),
                idempotent: false,
            })
            .await?;
        take_entity(answer, entity)
    }

    /// `POST /{entity lowercase}`: creates an object from `body` (an object without `Id`) and
    /// returns it as QBO stored it (`Id`, `SyncToken "0"`). `request_id` makes the create
    /// idempotent across retries (QBO answers a repeat with the first answer); without one the
    /// client makes one per call. A taken name is [`Error::DuplicateName`].
    pub async fn create(
        &self,
        entity: &str,
        body: Value,
        request_id: Option<&str>,
    ) -> Result<Value> {
        check_entity(entity)?;
        let body = object(body, "a create body")?;
        if body.contains_key("Id") {
            return Err(Error::InvalidRequest(
                "a create body has no Id (that is an update)".into(),
            ));
        }
        self.write(entity, body, request_id).await
    }

    /// `POST /{entity lowercase}` with `{…fields, "Id", "SyncToken", "sparse": true}`: changes
    /// only `fields` of object `id` at version `sync_token`, and returns the updated object (its
    /// `SyncToken` incremented). A stale `sync_token` is [`Error::StaleObject`]: read the object
    /// again and repeat.
    pub async fn update_sparse(
        &self,
        entity: &str,
        id: &str,
        sync_token: &str,
        fields: Value,
        request_id: Option<&str>,
    ) -> Result<Value> {
        check_entity(entity)?;
        check_id(id)?;
        let mut body = object(fields, "sparse update fields")?;
        if ["Id", "SyncToken", "sparse"]
            .iter()
            .any(|k| body.contains_key(*k))
        {
            return Err(Error::InvalidRequest(
                "sparse update fields name Id, SyncToken or sparse; pass them as arguments".into(),
            ));
        }
        body.insert("Id".into(), Value::from(id));
        body.insert("SyncToken".into(), Value::from(sync_token));
        body.insert("sparse".into(), Value::Bool(true));
        self.write(entity, body, request_id).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page_rows(answer: Value, entity: &str) -> Result<Vec<Value>> {
        let body = serde_json::to_vec(&answer).expect("JSON");
        QueryPage::<Value>::read(&body)
            .expect("a page")
            .rows(entity)
    }

    #[test]
    fn pages_without_the_entity_key_are_empty() {
        assert_eq!(
            page_rows(json!({"QueryResponse": {}, "time": "t"}), "Account").expect("empty"),
            Vec::<Value>::new()
        );
        let rows = page_rows(
            json!({"QueryResponse": {"Account": [{"Id": "7"}], "startPosition": 1, "maxResults": 1}}),
            "Account",
        )
        .expect("rows");
        assert_eq!(rows, vec![json!({"Id": "7"})]);
        assert!(page_rows(json!({"time": "t"}), "Account").is_err());
        assert!(
            page_rows(
                json!({"QueryResponse": {"Account": {"Id": "7"}}}),
                "Account"
            )
            .is_err()
        );
    }

    #[test]
    fn a_page_reads_rows_as_the_callers_type_and_skips_every_other_member() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Named {
            #[serde(rename = "Name")]
            name: String,
        }
        let body = br#"{"QueryResponse": {"startPosition": 1, "maxResults": 2,
            "customer": [{"Name": "A", "BillAddr": {"Line1": "x"}}, {"Name": "B"}],
            "Other": [{"no": "name"}], "flag": true, "none": null, "text": "t", "n": -1.5},
            "time": "2024-01-01T00:00:00Z"}"#;
        let page = QueryPage::<Named>::read(body);
        // "Other" is an array too, and its rows are not `Named`: the whole page is refused
        // rather than read in part.
        assert!(page.is_err());
        let body = br#"{"QueryResponse": {"startPosition": 1, "maxResults": 2,
            "customer": [{"Name": "A", "BillAddr": {"Line1": "x"}}, {"Name": "B"}],
            "flag": true, "none": null, "text": "t", "n": -1.5, "obj": {"a": [1]}}}"#;
        let rows = QueryPage::<Named>::read(body)
            .expect("a page")
            .rows("Customer")
            .expect("rows");
        assert_eq!(
            rows,
            [Named { name: "A".into() }, Named { name: "B".into() }]
        );
        let fault = br#"{"Fault": {"Error": [{"code": "3001"}], "type": "ThrottlingFault"}}"#;
        let page = QueryPage::<Named>::read(fault).expect("a body with a Fault reads");
        assert_eq!(
            page.fault(fault).and_then(|f| f.code()),
            Some(3001),
            "a 200 with a Fault is judged by the Fault"
        );
        assert!(page.rows("Customer").is_err());
    }

    #[test]
    fn read_answers_are_unwrapped_by_entity_name() {
        let v = take_entity(json!({"TaxRate": {"Id": "6"}, "time": "t"}), "TaxRate").expect("obj");
        assert_eq!(v["Id"], "6");
        assert!(take_entity(json!({"time": "t"}), "TaxRate").is_err());
        assert!(check_id("58").is_ok() && check_id("../x").is_err() && check_id("").is_err());
    }
}
