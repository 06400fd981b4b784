//! Mined message templates shared by every worker replica: counts, text, embeddings and
//! the operators' labels.
//!
//! Workers add their counts with [`upsert`] in the transaction that stores the scores, and
//! pull what other replicas (and the feedback endpoint) changed with [`changed_since`]:
//! every write stamps `updated_at` with `clock_timestamp()`.

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{Array, BigInt, Float4, Nullable, Text, Timestamptz},
};

use crate::{schema::templates, DbError};

/// Labels an operator can give a template.
pub const LABELS: [&str; 2] = ["normal", "anomaly"];

/// One template row, without its embedding.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct TemplateRow {
    pub id: i64,
    /// The detector's stable template id.
    pub template_key: String,
    pub template: String,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// `normal`, `anomaly` or none.
    pub label: Option<String>,
    pub labelled_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What one batch adds to a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateDelta {
    pub key: String,
    /// The template's current text (replaces the stored one).
    pub template: String,
    /// Lines of this batch (added to the stored count).
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Stored only when the row has none yet.
    pub embedding: Option<Vec<f32>>,
}

#[derive(QueryableByName)]
struct KeyId {
    #[diesel(sql_type = Text)]
    template_key: String,
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Adds a batch's deltas (keys must be distinct) and returns each key's row id. Counts
/// are added in the statement, so concurrent workers never lose an increment; rows are
/// written in key order, so two workers lock them in the same order and cannot deadlock.
pub fn upsert(
    conn: &mut PgConnection,
    deltas: &[TemplateDelta],
) -> Result<Vec<(String, i64)>, DbError> {
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = deltas.iter().map(|d| d.key.as_str()).collect();
    let texts: Vec<&str> = deltas.iter().map(|d| d.template.as_str()).collect();
    let counts: Vec<i64> = deltas.iter().map(|d| d.count).collect();
    let first: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.first_seen).collect();
    let last: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.last_seen).collect();
    // Arrays of arrays do not exist in Postgres: each embedding travels as an array literal.
    let embeddings: Vec<Option<String>> = deltas
        .iter()
        .map(|d| d.embedding.as_deref().map(array_literal))
        .collect();
    let rows: Vec<KeyId> = diesel::sql_query(
        "INSERT INTO templates (template_key, template, count, first_seen, last_seen, embedding, updated_at) \
         SELECT k, t, c, f, l, e::real[], clock_timestamp() \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::text[]) \
             AS u(k, t, c, f, l, e) \
         ORDER BY k \
         ON CONFLICT (template_key) DO UPDATE SET \
             count = templates.count + EXCLUDED.count, \
             template = EXCLUDED.template, \
             first_seen = LEAST(templates.first_seen, EXCLUDED.first_seen), \
             last_seen = GREATEST(templates.last_seen, EXCLUDED.last_seen), \
             embedding = COALESCE(templates.embedding, EXCLUDED.embedding), \
             updated_at = clock_timestamp() \
         RETURNING template_key, id",
    )
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Text>, _>(&texts)
    .bind::<Array<BigInt>, _>(&counts)
    .bind::<Array<Timestamptz>, _>(&first)
    .bind::<Array<Timestamptz>, _>(&last)
    .bind::<Array<Nullable<Text>>, _>(&embeddings)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.template_key, r.id)).collect())
}

fn array_literal(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 12 + 2);
    out.push('{');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Display of f32 is the shortest text that reads back to the same value.
        out.push_str(&x.to_string());
    }
    out.push('}');
    out
}

/// Rows changed at or after `since` (all rows when `None`), and the database clock read
/// before the query: pass it (minus a margin for transactions still committing) as the
/// next `since`.
pub fn changed_since(
    conn: &mut PgConnection,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<TemplateRow>, DateTime<Utc>), DbError> {
    let now: DateTime<Utc> =
        diesel::select(diesel::dsl::sql::<Timestamptz>("clock_timestamp()")).get_result(conn)?;
    let mut q = templates::table
        .select(TemplateRow::as_select())
        .order(templates::id.asc())
        .into_boxed();
    if let Some(since) = since {
        q = q.filter(templates::updated_at.ge(since));
    }
    Ok((q.load(conn)?, now))
}

#[derive(QueryableByName)]
struct KeyEmbedding {
    #[diesel(sql_type = Text)]
    template_key: String,
    #[diesel(sql_type = Array<Float4>)]
    embedding: Vec<f32>,
}

/// Stored embeddings of `keys` (keys without one are absent).
pub fn embeddings(
    conn: &mut PgConnection,
    keys: &[String],
) -> Result<Vec<(String, Vec<f32>)>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<KeyEmbedding> = diesel::sql_query(
        "SELECT template_key, embedding FROM templates \
         WHERE template_key = ANY($1) AND embedding IS NOT NULL",
    )
    .bind::<Array<Text>, _>(keys)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.template_key, r.embedding))
        .collect())
}

/// Records an operator's label on a template; `None` when there is no such template.
pub fn set_label(
    conn: &mut PgConnection,
    id: i64,
    label: &str,
) -> Result<Option<TemplateRow>, DbError> {
    Ok(diesel::update(templates::table.find(id))
        .set((
            templates::label.eq(Some(label)),
            templates::labelled_at.eq(crate::db_now()),
            templates::updated_at.eq(diesel::dsl::sql::<Timestamptz>("clock_timestamp()")),
        ))
        .returning(TemplateRow::as_returning())
        .get_result(conn)
        .optional()?)
}

/// Orders of [`list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateOrder {
    /// Most lines first.
    MostFrequent,
    /// Most recently seen first.
    Newest,
}

/// Templates in `order`, at most `limit`.
pub fn list(
    conn: &mut PgConnection,
    order: TemplateOrder,
    limit: i64,
) -> Result<Vec<TemplateRow>, DbError> {
    let q = templates::table.select(TemplateRow::as_select());
    let rows = match order {
        TemplateOrder::MostFrequent => q
            .order((templates::count.desc(), templates::id.desc()))
            .limit(limit)
            .load(conn)?,
        TemplateOrder::Newest => q
            .order((templates::last_seen.desc(), templates::id.desc()))
            .limit(limit)
            .load(conn)?,
    };
    Ok(rows)
}
