//! What operators and the export pipeline do to mappings over gRPC: list, upsert and delete
//! mappings; report and list mapping errors.
//!
//! An operator's mapping always wins: `UpsertMapping` replaces the (source, destination type)
//! slot whatever filled it and clears `auto_mapped` (and `auto_created`, unless it keeps the
//! same destination), and auto-mapping never writes a filled slot. Both sides must be known to mapping's projections — a mapping to a value mapping has
//! never seen could not show its state — and an id an Account and an Item share needs the
//! display name. A mapping deleted by an operator may be auto-mapped again by a later change
//! of either side (there is no "never auto-map this" marker yet).
//!
//! Failure policy: validation failures change nothing (`INVALID_ARGUMENT` / `NOT_FOUND`);
//! every write and the error resolution it implies commit in one transaction.

use attrsync_core::attribute::normalise_type_name;
use attrsync_db::{DbError, Pool};
use attrsync_proto::v1::{
    ListMappingErrorsRequest, ListMappingsRequest, Mapping, MappingError,
    ReportMappingErrorRequest, UpsertMappingRequest,
};
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Bool, Nullable, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{
    mappings::{self, MAPPING_VIEW_SQL, MappingView},
    projection,
    schema::mapping_errors as me,
    store::{Result, StoreError},
};

fn page_size(requested: u32) -> i64 {
    match requested {
        0 => 100,
        n => i64::from(n.min(1000)),
    }
}

fn required(field: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("{field} must not be empty")));
    }
    Ok(value.to_owned())
}

/// Destination types are QBO's upper-snake names (`ACCOUNT`, `VENDOR`, …).
fn destination_type(value: &str) -> Result<String> {
    Ok(required("destination_type", value)?.to_uppercase())
}

async fn view(conn: &mut AsyncPgConnection, id: i64) -> Result<Mapping> {
    let row: MappingView = diesel::sql_query(format!("{MAPPING_VIEW_SQL} WHERE m.id = $1"))
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .await?;
    Ok(row.to_proto())
}

/// `ListMappings`: keyset-paged by id, with filters.
pub(crate) async fn list(
    pool: &Pool,
    request: &ListMappingsRequest,
) -> Result<(Vec<Mapping>, i64)> {
    let limit = page_size(request.page_size);
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let rows: Vec<MappingView> = diesel::sql_query(format!(
        "{MAPPING_VIEW_SQL} \
         WHERE m.workspace_id = $1 AND m.id > $2 \
           AND ($3::text IS NULL OR m.source_type = $3) \
           AND ($4::text IS NULL OR m.destination_type = $4) \
           AND ($5::text IS NULL OR m.source_id = $5) \
           AND ($6::boolean IS NULL OR m.auto_mapped = $6) \
           AND (NOT $7 OR s.active IS NOT TRUE OR d.active IS NOT TRUE \
                OR d.value <> m.destination_value) \
         ORDER BY m.id LIMIT $8"
    ))
    .bind::<BigInt, _>(request.workspace_id)
    .bind::<BigInt, _>(request.after_id)
    .bind::<Nullable<Text>, _>(request.source_type.as_deref().map(normalise_type_name))
    .bind::<Nullable<Text>, _>(request.destination_type.as_deref().map(str::to_uppercase))
    .bind::<Nullable<Text>, _>(request.source_id.as_deref())
    .bind::<Nullable<Bool>, _>(request.auto_mapped)
    .bind::<Bool, _>(request.only_flagged)
    .bind::<BigInt, _>(limit + 1)
    .load(&mut conn)
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = if more {
        rows.last().map_or(0, |r| r.id)
    } else {
        0
    };
    Ok((rows.iter().map(MappingView::to_proto).collect(), next))
}

/// `UpsertMapping`: the operator's mapping replaces whatever held the slot.
pub(crate) async fn upsert(pool: &Pool, request: &UpsertMappingRequest) -> Result<Mapping> {
    let workspace_id = request.workspace_id;
    let source_type = normalise_type_name(&required("source_type", &request.source_type)?);
    let source_id = required("source_id", &request.source_id)?;
    let destination_type = destination_type(&request.destination_type)?;
    let destination_id = required("destination_id", &request.destination_id)?;
    let mut conn = pool.get().await.map_err(DbError::from)?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        mappings::lock_workspace(conn, workspace_id).await?;
        if projection::find_source(conn, workspace_id, &source_type, &source_id)
            .await?
            .is_none()
        {
            return Err(StoreError::UnknownAttribute(format!(
                "source {source_type} `{source_id}` is not known to mapping (yet)"
            )));
        }
        let mut candidates =
            projection::find_destinations(conn, workspace_id, &destination_type, &destination_id)
                .await?;
        if let Some(display) = request.destination_display_name.as_deref() {
            candidates.retain(|d| d.display_name.eq_ignore_ascii_case(display.trim()));
        }
        let destination = match candidates.as_slice() {
            [one] => one,
            [] => {
                return Err(StoreError::UnknownAttribute(format!(
                    "destination {destination_type} `{destination_id}` is not known to mapping (yet)"
                )));
            }
            _ => {
                return Err(StoreError::Invalid(format!(
                    "destination {destination_type} `{destination_id}` is ambiguous: \
                     give destination_display_name ('Account' or 'Item')"
                )));
            }
        };
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let Id { id } = diesel::sql_query(
            "INSERT INTO mappings AS m (workspace_id, source_type, source_id, destination_type, \
                 destination_display_name, destination_id, destination_value, auto_mapped) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, false) \
             ON CONFLICT (workspace_id, source_type, source_id, destination_type) DO UPDATE SET \
                 destination_display_name = excluded.destination_display_name, \
                 destination_id = excluded.destination_id, \
                 destination_value = excluded.destination_value, \
                 auto_mapped = false, \
                 auto_created = m.auto_created \
                     AND m.destination_id = excluded.destination_id \
                     AND m.destination_display_name = excluded.destination_display_name, \
                 updated_at = now() \
             RETURNING id",
        )
        .bind::<BigInt, _>(workspace_id)
        .bind::<Text, _>(&source_type)
        .bind::<Text, _>(&source_id)
        .bind::<Text, _>(&destination_type)
        .bind::<Text, _>(&destination.display_name)
        .bind::<Text, _>(&destination.destination_id)
        .bind::<Text, _>(&destination.value)
        .get_result(conn)
        .await?;
        mappings::resolve_errors(
            conn,
            workspace_id,
            &source_type,
            &source_id,
            &destination_type,
            id,
        )
        .await?;
        view(conn, id).await
    })
    .await
}

/// `DeleteMapping`.
pub(crate) async fn delete(pool: &Pool, workspace_id: i64, mapping_id: i64) -> Result<()> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let deleted = diesel::sql_query("DELETE FROM mappings WHERE workspace_id = $1 AND id = $2")
        .bind::<BigInt, _>(workspace_id)
        .bind::<BigInt, _>(mapping_id)
        .execute(&mut conn)
        .await?;
    if deleted == 0 {
        return Err(StoreError::MappingNotFound(mapping_id));
    }
    Ok(())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = me)]
struct ErrorRow {
    id: i64,
    workspace_id: i64,
    error_type: String,
    source_type: String,
    source_id: String,
    source_value: String,
    destination_type: String,
    occurrences: i32,
    is_resolved: bool,
    resolved_at: Option<DateTime<Utc>>,
    resolved_by_mapping_id: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ErrorRow {
    fn to_proto(&self) -> MappingError {
        use attrsync_proto::time::to_proto;
        MappingError {
            id: self.id,
            error_type: self.error_type.clone(),
            source_type: self.source_type.clone(),
            source_id: self.source_id.clone(),
            source_value: self.source_value.clone(),
            is_resolved: self.is_resolved,
            workspace_id: self.workspace_id,
            destination_type: self.destination_type.clone(),
            occurrences: u32::try_from(self.occurrences).unwrap_or(0),
            resolved_by_mapping_id: self.resolved_by_mapping_id,
            created_at: Some(to_proto(self.created_at)),
            updated_at: Some(to_proto(self.updated_at)),
            resolved_at: self.resolved_at.map(to_proto),
        }
    }
}

/// `ReportMappingError`: records (or reopens, counting occurrences) the error, then resolves
/// it at once if a mapping that answers it already exists.
pub(crate) async fn report_error(
    pool: &Pool,
    request: &ReportMappingErrorRequest,
) -> Result<MappingError> {
    let workspace_id = request.workspace_id;
    let error_type = required("error_type", &request.error_type)?.to_uppercase();
    let source_type = normalise_type_name(&required("source_type", &request.source_type)?);
    let source_id = required("source_id", &request.source_id)?;
    let wanted = request.destination_type.trim().to_uppercase();
    let mut conn = pool.get().await.map_err(DbError::from)?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        mappings::lock_workspace(conn, workspace_id).await?;
        let known: bool = diesel::select(diesel::dsl::exists(
            crate::schema::workspaces::table.find(workspace_id),
        ))
        .get_result(conn)
        .await?;
        if !known {
            return Err(StoreError::NotFound(workspace_id));
        }
        let id: i64 = diesel::insert_into(me::table)
            .values((
                me::workspace_id.eq(workspace_id),
                me::error_type.eq(&error_type),
                me::source_type.eq(&source_type),
                me::source_id.eq(&source_id),
                me::source_value.eq(request.source_value.trim()),
                me::destination_type.eq(&wanted),
            ))
            .on_conflict((
                me::workspace_id,
                me::error_type,
                me::source_type,
                me::source_id,
            ))
            .do_update()
            .set((
                me::occurrences.eq(me::occurrences + 1),
                me::source_value.eq(request.source_value.trim()),
                me::destination_type.eq(&wanted),
                me::is_resolved.eq(false),
                me::resolved_at.eq(None::<DateTime<Utc>>),
                me::resolved_by_mapping_id.eq(None::<i64>),
                me::updated_at.eq(diesel::dsl::now),
            ))
            .returning(me::id)
            .get_result(conn)
            .await?;
        // A mapping that exists already answers the report.
        #[derive(QueryableByName)]
        struct Existing {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            destination_type: String,
        }
        let existing: Vec<Existing> = diesel::sql_query(
            "SELECT id, destination_type FROM mappings \
             WHERE workspace_id = $1 AND source_type = $2 AND source_id = $3 ORDER BY id",
        )
        .bind::<BigInt, _>(workspace_id)
        .bind::<Text, _>(&source_type)
        .bind::<Text, _>(&source_id)
        .load(conn)
        .await?;
        for mapping in existing {
            if mappings::resolve_errors(
                conn,
                workspace_id,
                &source_type,
                &source_id,
                &mapping.destination_type,
                mapping.id,
            )
            .await?
                > 0
            {
                break;
            }
        }
        let row: ErrorRow = me::table
            .find(id)
            .select(ErrorRow::as_select())
            .first(conn)
            .await?;
        if !row.is_resolved {
            metrics::counter!("mapping_errors_reported_total").increment(1);
        }
        Ok(row.to_proto())
    })
    .await
}

/// `ListMappingErrors`: open errors (or all), filtered, keyset-paged by id.
pub(crate) async fn list_errors(
    pool: &Pool,
    request: &ListMappingErrorsRequest,
) -> Result<(Vec<MappingError>, i64)> {
    let limit = page_size(request.page_size);
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let mut query = me::table
        .filter(me::workspace_id.eq(request.workspace_id))
        .filter(me::id.gt(request.after_id))
        .order(me::id)
        .limit(limit + 1)
        .select(ErrorRow::as_select())
        .into_boxed();
    if !request.include_resolved {
        query = query.filter(me::is_resolved.eq(false));
    }
    if let Some(t) = &request.error_type {
        query = query.filter(me::error_type.eq(t.trim().to_uppercase()));
    }
    if let Some(t) = &request.source_type {
        query = query.filter(me::source_type.eq(normalise_type_name(t)));
    }
    if let Some(id) = &request.source_id {
        query = query.filter(me::source_id.eq(id.trim().to_owned()));
    }
    let rows: Vec<ErrorRow> = query.load(&mut conn).await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = if more {
        rows.last().map_or(0, |r| r.id)
    } else {
        0
    };
    Ok((rows.iter().map(ErrorRow::to_proto).collect(), next))
}
