//! Mined message templates shared by every worker replica: counts, text, embeddings and
//! the operators' labels.
//!
//! Workers add their counts with [`upsert`] in the transaction that stores the scores, and
//! pull what other replicas (and the feedback endpoint) changed with [`changed_since`]:
//! every write stamps `updated_at` with `clock_timestamp()`.
//!
//! An operator's label ([`set_label_and_rescore`]) also re-scores the template's latest
//! entries, whatever their age ([`RESCORE_MAX_ENTRIES`]); a `normal` label covers the
//! levels of its entries of the last 24 hours ([`RESCORE_WINDOW`]), or of those latest
//! entries when none came that day.
//! [`review_candidates`] feeds the review queue (`GET /api/review/`) that asks which
//! templates to label first.

use chrono::{DateTime, Utc};
use diesel::{
    pg::PgConnection,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Double, Float4, Integer, Nullable, Text, Timestamptz},
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
    /// Separate time windows the template was seen in (every replica's lines counted as
    /// one stream, see [`upsert`] and the detector's `PresenceTally`).
    pub windows: i32,
    /// The most lines it had in any one window.
    pub max_window_lines: i64,
    /// Separate arrivals of its lines.
    pub episodes: i32,
    /// Separate arrivals of its lines at the levels that flag alone (the detector's
    /// `Presence::level_episodes`).
    pub level_episodes: i32,
    /// With a `normal` label: the most severe level among the template's entries of the
    /// last [`RESCORE_WINDOW`] when it was given (one of [`LEVELS`]), the levels the label
    /// covers (later lines, and the older entries it re-scores); none: every level.
    pub label_max_level: Option<String>,
    /// The latest presence window it was seen in (`logged_at` div the window's length;
    /// none on rows stored before it was) and its lines there.
    pub presence_window: Option<i64>,
    pub window_lines: i64,
    /// Its latest line at a level that flags alone.
    pub level_last_seen: Option<DateTime<Utc>>,
    /// How it was first seen, by the replica that stored it first: after the warm-up, and
    /// how unlike every template known then.
    pub new_after_warmup: bool,
    pub novelty: f32,
    /// The latest 64 windows it was seen in (bit `i`: `presence_window - i`; 0 on rows
    /// stored before it was), and its latest arrivals, all and at the levels that flag
    /// alone, as (first, last) line in milliseconds, flattened, oldest first.
    pub window_bits: i64,
    pub arrivals: Vec<i64>,
    pub level_arrivals: Vec<i64>,
    /// How settled the stream was when the replica that stored it first saw it (what its
    /// newness counts for).
    pub born_settled: f32,
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
    /// How the reporting replica first saw the template (stored with a new row only).
    pub new_after_warmup: bool,
    pub novelty: f32,
    pub born_settled: f32,
}

/// A template's presence tally as stored: what [`upsert`]'s `count` adds this batch's
/// lines to (the detector's `PresenceTally`, in the table's units).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredPresence {
    /// Lines counted before (0: none, the rest says nothing).
    pub lines: i64,
    /// The template's first line (read with the tally; not written from it).
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub windows: i32,
    /// The latest window; none on rows stored before it was.
    pub window: Option<i64>,
    pub window_lines: i64,
    pub max_window_lines: i64,
    pub episodes: i32,
    pub level_episodes: i32,
    pub level_last_seen: Option<DateTime<Utc>>,
    /// See [`TemplateRow::window_bits`], [`TemplateRow::arrivals`] and
    /// [`TemplateRow::level_arrivals`].
    pub window_bits: i64,
    pub arrivals: Vec<i64>,
    pub level_arrivals: Vec<i64>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Text)]
    template_key: String,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Timestamptz)]
    first_seen: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    last_seen: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    windows: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    presence_window: Option<i64>,
    #[diesel(sql_type = BigInt)]
    window_lines: i64,
    #[diesel(sql_type = BigInt)]
    max_window_lines: i64,
    #[diesel(sql_type = Integer)]
    episodes: i32,
    #[diesel(sql_type = Integer)]
    level_episodes: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    level_last_seen: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    window_bits: i64,
    #[diesel(sql_type = Array<BigInt>)]
    arrivals: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    level_arrivals: Vec<i64>,
}

/// Adds a batch's deltas (keys must be distinct) and returns each key's row id.
///
/// Counts are added in the statement, so concurrent workers never lose an increment. The
/// presence tally is counted on under the row's lock: `count` is called with each delta
/// and the row's tally before this batch (none for a row this call creates) and returns
/// the tally with the batch's lines counted in, which is stored. So presence is the one
/// a single scorer would count from every replica's lines, in the order their batches
/// commit. Rows are written in key order, so two workers lock them in the same order and
/// cannot deadlock.
pub fn upsert(
    conn: &mut PgConnection,
    deltas: &[TemplateDelta],
    mut count: impl FnMut(&TemplateDelta, Option<StoredPresence>) -> StoredPresence,
) -> Result<Vec<(String, i64)>, DbError> {
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = deltas.iter().map(|d| d.key.as_str()).collect();
    let texts: Vec<&str> = deltas.iter().map(|d| d.template.as_str()).collect();
    let counts: Vec<i64> = deltas.iter().map(|d| d.count).collect();
    let first: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.first_seen).collect();
    let last: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.last_seen).collect();
    let new_after_warmup: Vec<bool> = deltas.iter().map(|d| d.new_after_warmup).collect();
    let novelty: Vec<f32> = deltas.iter().map(|d| d.novelty).collect();
    let born_settled: Vec<f32> = deltas.iter().map(|d| d.born_settled).collect();
    // Arrays of arrays do not exist in Postgres: each embedding travels as an array literal.
    let embeddings: Vec<Option<String>> = deltas
        .iter()
        .map(|d| d.embedding.as_deref().map(array_literal))
        .collect();
    // The conflict branch leaves `last_seen` and the tally as they were, so RETURNING
    // reads the tally before this batch (and `count` after it).
    let locked: Vec<Locked> = diesel::sql_query(
        "INSERT INTO templates \
             (template_key, template, count, first_seen, last_seen, embedding, new_after_warmup, novelty, \
              born_settled, updated_at) \
         SELECT k, t, c, f, l, e::real[], n, v, b, clock_timestamp() \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::text[], \
                     $7::boolean[], $8::real[], $9::real[]) \
             AS u(k, t, c, f, l, e, n, v, b) \
         ORDER BY k \
         ON CONFLICT (template_key) DO UPDATE SET \
             count = templates.count + EXCLUDED.count, \
             template = EXCLUDED.template, \
             first_seen = LEAST(templates.first_seen, EXCLUDED.first_seen), \
             embedding = COALESCE(templates.embedding, EXCLUDED.embedding), \
             updated_at = clock_timestamp() \
         RETURNING template_key, id, count, first_seen, last_seen, windows, presence_window, window_lines, \
                   max_window_lines, episodes, level_episodes, level_last_seen, window_bits, \
                   arrivals, level_arrivals",
    )
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Text>, _>(&texts)
    .bind::<Array<BigInt>, _>(&counts)
    .bind::<Array<Timestamptz>, _>(&first)
    .bind::<Array<Timestamptz>, _>(&last)
    .bind::<Array<Nullable<Text>>, _>(&embeddings)
    .bind::<Array<Bool>, _>(&new_after_warmup)
    .bind::<Array<Float4>, _>(&novelty)
    .bind::<Array<Float4>, _>(&born_settled)
    .load(conn)?;
    let by_key: std::collections::HashMap<&str, &Locked> = locked
        .iter()
        .map(|r| (r.template_key.as_str(), r))
        .collect();
    let mut tallies = Vec::with_capacity(deltas.len());
    for d in deltas {
        let Some(row) = by_key.get(d.key.as_str()) else {
            continue;
        };
        let lines = row.count - d.count;
        let before = (lines > 0).then_some(StoredPresence {
            lines,
            first_seen: Some(row.first_seen),
            last_seen: Some(row.last_seen),
            windows: row.windows,
            window: row.presence_window,
            window_lines: row.window_lines,
            max_window_lines: row.max_window_lines,
            episodes: row.episodes,
            level_episodes: row.level_episodes,
            level_last_seen: row.level_last_seen,
            window_bits: row.window_bits,
            arrivals: row.arrivals.clone(),
            level_arrivals: row.level_arrivals.clone(),
        });
        tallies.push((d, count(d, before)));
    }
    let keys: Vec<&str> = tallies.iter().map(|(d, _)| d.key.as_str()).collect();
    let last: Vec<DateTime<Utc>> = tallies.iter().map(|(d, _)| d.last_seen).collect();
    let windows: Vec<i32> = tallies.iter().map(|(_, t)| t.windows).collect();
    let window: Vec<Option<i64>> = tallies.iter().map(|(_, t)| t.window).collect();
    let window_lines: Vec<i64> = tallies.iter().map(|(_, t)| t.window_lines).collect();
    let max_lines: Vec<i64> = tallies.iter().map(|(_, t)| t.max_window_lines).collect();
    let episodes: Vec<i32> = tallies.iter().map(|(_, t)| t.episodes).collect();
    let level_episodes: Vec<i32> = tallies.iter().map(|(_, t)| t.level_episodes).collect();
    let level_last: Vec<Option<DateTime<Utc>>> =
        tallies.iter().map(|(_, t)| t.level_last_seen).collect();
    let bits: Vec<i64> = tallies.iter().map(|(_, t)| t.window_bits).collect();
    let arrivals: Vec<String> = tallies
        .iter()
        .map(|(_, t)| int_array_literal(&t.arrivals))
        .collect();
    let level_arrivals: Vec<String> = tallies
        .iter()
        .map(|(_, t)| int_array_literal(&t.level_arrivals))
        .collect();
    diesel::sql_query(
        "UPDATE templates AS t SET \
             last_seen = GREATEST(t.last_seen, u.l), windows = u.w, presence_window = u.pw, \
             window_lines = u.wl, max_window_lines = u.m, episodes = u.p, level_episodes = u.v, \
             level_last_seen = u.ll, window_bits = u.b, arrivals = u.a::bigint[], \
             level_arrivals = u.la::bigint[] \
         FROM unnest($1::text[], $2::timestamptz[], $3::integer[], $4::bigint[], $5::bigint[], \
                     $6::bigint[], $7::integer[], $8::integer[], $9::timestamptz[], $10::bigint[], \
                     $11::text[], $12::text[]) \
             AS u(k, l, w, pw, wl, m, p, v, ll, b, a, la) \
         WHERE t.template_key = u.k",
    )
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Timestamptz>, _>(&last)
    .bind::<Array<Integer>, _>(&windows)
    .bind::<Array<Nullable<BigInt>>, _>(&window)
    .bind::<Array<BigInt>, _>(&window_lines)
    .bind::<Array<BigInt>, _>(&max_lines)
    .bind::<Array<Integer>, _>(&episodes)
    .bind::<Array<Integer>, _>(&level_episodes)
    .bind::<Array<Nullable<Timestamptz>>, _>(&level_last)
    .bind::<Array<BigInt>, _>(&bits)
    .bind::<Array<Text>, _>(&arrivals)
    .bind::<Array<Text>, _>(&level_arrivals)
    .execute(conn)?;
    Ok(locked.into_iter().map(|r| (r.template_key, r.id)).collect())
}

/// `{1,2,3}`: a bigint array as text, for arrays inside `unnest` (see [`array_literal`]).
fn int_array_literal(v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(i64::to_string).collect();
    format!("{{{}}}", items.join(","))
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
struct Key {
    #[diesel(sql_type = Text)]
    template_key: String,
}

/// What a line is routed by when the templates a worker holds have none for it: its
/// token count and, when the miner routes by more than one token, its second token (one
/// probe per spelling that routes alike, e.g. each placeholder).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteProbe {
    pub tokens: i32,
    pub second: Option<String>,
}

/// Stored templates a line with one of these `probes` could join (same token count, same
/// second token when given), most recently seen first, at most `limit`. Uses the
/// `templates_routing` index.
pub fn route_candidates(
    conn: &mut PgConnection,
    probes: &[RouteProbe],
    limit: i64,
) -> Result<Vec<TemplateRow>, DbError> {
    if probes.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<i32> = probes.iter().map(|p| p.tokens).collect();
    let seconds: Vec<Option<&str>> = probes.iter().map(|p| p.second.as_deref()).collect();
    let keys: Vec<Key> = diesel::sql_query(
        "SELECT t.template_key FROM templates t \
         JOIN unnest($1::integer[], $2::text[]) AS p(n, second) \
           ON cardinality(string_to_array(t.template, ' ')) = p.n \
          AND (p.second IS NULL OR split_part(t.template, ' ', 2) = p.second) \
         GROUP BY t.template_key, t.last_seen \
         ORDER BY t.last_seen DESC \
         LIMIT $3",
    )
    .bind::<Array<Integer>, _>(&counts)
    .bind::<Array<Nullable<Text>>, _>(&seconds)
    .bind::<BigInt, _>(limit)
    .load(conn)?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = keys.into_iter().map(|k| k.template_key).collect();
    Ok(templates::table
        .filter(templates::template_key.eq_any(&keys))
        .select(TemplateRow::as_select())
        .order(templates::id.asc())
        .load(conn)?)
}

/// The rows of `keys` (keys without a row are absent).
pub fn by_keys(conn: &mut PgConnection, keys: &[String]) -> Result<Vec<TemplateRow>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(templates::table
        .filter(templates::template_key.eq_any(keys))
        .select(TemplateRow::as_select())
        .order(templates::id.asc())
        .load(conn)?)
}

/// Those of `keys` that have a row.
pub fn existing_keys(
    conn: &mut PgConnection,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, DbError> {
    if keys.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    Ok(templates::table
        .filter(templates::template_key.eq_any(keys))
        .select(templates::template_key)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Holds, until the transaction ends, the right to store new templates on `routes` (how
/// the miner routes them, e.g. token count and second token): two workers that mined one
/// new message under different ids (each from its own first line) take turns, so the
/// second sees the first's row and can write to it instead of starting another. Locks
/// are taken in one order, so two workers cannot deadlock on them; a worker takes them
/// after its task and entry rows and before [`upsert`] locks template rows, as every
/// worker does.
pub fn lock_new_templates(conn: &mut PgConnection, routes: &[String]) -> Result<(), DbError> {
    let mut routes: Vec<&String> = routes.iter().collect();
    routes.sort_unstable();
    routes.dedup();
    for route in routes {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(format!("new-template:{route}"))
            .execute(conn)?;
    }
    Ok(())
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

#[derive(QueryableByName)]
struct MaxLevel {
    #[diesel(sql_type = Nullable<Text>)]
    level: Option<String>,
}

/// The most severe level (one of [`LEVELS`]) among the entries of template `id` received
/// within [`RESCORE_WINDOW`], what the operator most likely looked at; without any there
/// (an answer given from a longer view of the review queue, on a quiet source), among its
/// latest [`RESCORE_MAX_ENTRIES`] entries, the ones the answer re-scores: the levels the
/// pattern had come at. `None` only for a template without entries.
pub fn recent_max_level(conn: &mut PgConnection, id: i64) -> Result<Option<String>, DbError> {
    let row: MaxLevel = diesel::sql_query(
        "SELECT coalesce( \
             (SELECT ($2::text[])[max(array_position($2::text[], severity))] \
              FROM log_entries \
              WHERE template_id = $1 AND received_at >= now() - make_interval(secs => $3)), \
             (SELECT ($2::text[])[max(array_position($2::text[], severity))] \
              FROM (SELECT severity FROM log_entries WHERE template_id = $1 \
                    ORDER BY received_at DESC LIMIT $4) latest)) AS level",
    )
    .bind::<BigInt, _>(id)
    .bind::<Array<Text>, _>(&LEVELS[..])
    .bind::<Double, _>(RESCORE_WINDOW.as_secs_f64())
    .bind::<BigInt, _>(RESCORE_MAX_ENTRIES)
    .get_result(conn)?;
    Ok(row.level)
}

/// The labels of those of the templates `ids` that have one: `(id, label,
/// label_max_level)`. Read in a batch's write transaction after [`upsert`] (which locks the
/// rows), it is the label the batch's entries must follow even when the scoring replica
/// has not pulled it yet.
pub fn labels_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<Vec<(i64, String, Option<String>)>, DbError> {
    Ok(templates::table
        .filter(templates::id.eq_any(ids))
        .filter(templates::label.is_not_null())
        .select((
            templates::id,
            templates::label.assume_not_null(),
            templates::label_max_level,
        ))
        .load(conn)?)
}

/// Whether an entry at `severity` takes `label`'s verdict: an anomaly label covers every
/// level, a normal one the levels up to `covers` (its `label_max_level`; none: every
/// level), as [`rescore_latest`] decides.
pub fn label_covers(label: &str, covers: Option<&str>, severity: &str) -> bool {
    let rank = |level: &str| LEVELS.iter().position(|l| *l == level);
    label == "anomaly" || covers.is_none_or(|c| rank(severity).unwrap_or(0) <= rank(c).unwrap_or(0))
}

/// Records an operator's label on a template; `None` when there is no such template. A
/// `normal` label also records the levels it covers: the most severe among the template's
/// entries of the last day, or of its latest entries without any ([`recent_max_level`]).
pub fn set_label(
    conn: &mut PgConnection,
    id: i64,
    label: &str,
) -> Result<Option<TemplateRow>, DbError> {
    let covers = if label == "normal" {
        recent_max_level(conn, id)?
    } else {
        None
    };
    Ok(diesel::update(templates::table.find(id))
        .set((
            templates::label.eq(Some(label)),
            templates::label_max_level.eq(covers),
            templates::labelled_at.eq(crate::db_now()),
            templates::updated_at.eq(diesel::dsl::sql::<Timestamptz>("clock_timestamp()")),
        ))
        .returning(TemplateRow::as_returning())
        .get_result(conn)
        .optional()?)
}

/// The feedback unit of work: [`set_label`], then [`rescore_latest`] of the template's
/// latest [`RESCORE_MAX_ENTRIES`] entries with the same label (a `normal` one at the levels
/// it covers), in one transaction. `None` (and nothing changed) when there is no such
/// template; otherwise the labelled row and how many entries were re-scored.
pub fn set_label_and_rescore(
    conn: &mut PgConnection,
    id: i64,
    label: &str,
) -> Result<Option<(TemplateRow, usize)>, DbError> {
    conn.transaction(|conn| {
        let Some(row) = set_label(conn, id, label)? else {
            return Ok(None);
        };
        let covers = row.label_max_level.as_deref();
        let rescored = rescore_latest(conn, id, label, covers, RESCORE_MAX_ENTRIES)?;
        Ok(Some((row, rescored)))
    })
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

/// The window whose entries decide the levels a `normal` label covers (the most severe
/// of them, `label_max_level`): one day, the window of the dashboard's counts and of the
/// review queue's default, what the operator most likely looked at (without entries that
/// day, the template's latest ones decide: [`recent_max_level`]). A later line at a more
/// severe level is judged by its prior, and an older one keeps its verdict.
pub const RESCORE_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// How many of a template's latest stored entries (by `received_at`) an operator's label
/// re-scores, whatever their age: on a quiet source a template's lines are spread over days
/// or weeks, and those flagged before the answer would otherwise stay flagged on the
/// dashboard and in `GET /api/logs/` (alerts already sent stay sent). A count, not a time,
/// so that one answer on a busy template rewrites a bounded number of rows; the index on
/// `(template_id, received_at)` finds them newest first.
pub const RESCORE_MAX_ENTRIES: i64 = 10_000;

/// The note a re-scored entry's summary ends with; a later label replaces it, so it is
/// never there twice.
pub fn rescore_note(label: &str) -> String {
    let marked = if label == "anomaly" {
        "anomalous"
    } else {
        "normal"
    };
    format!("re-scored: its pattern was marked {marked} by an operator")
}

/// A re-scoring note at the end of a summary (alone or after `"; "`): an operator's
/// ([`rescore_note`]) or learning's ([`LEARNED_NORMAL_NOTE`]). A later re-scoring replaces
/// it, so a summary carries one at most.
const RESCORE_NOTE_PATTERN: &str = "(^|; )re-scored: its pattern was (marked (normal|anomalous) by an operator|learned as normal: seen steadily)$";

/// The note an entry's summary ends with once [`rescore_learned_normal`] re-scored it.
pub const LEARNED_NORMAL_NOTE: &str = "re-scored: its pattern was learned as normal: seen steadily";

/// What [`rescore_learned_normal`] re-scores, as the detector's `scorer::relearn` rule
/// says (the scoring workers fill it from the detector's settings).
#[derive(Debug, Clone, PartialEq)]
pub struct RelearnRule {
    /// How many of the template's latest analysed entries (by `received_at`), whatever
    /// their age.
    pub max_entries: i64,
    /// The presence window, in milliseconds of `logged_at`.
    pub presence_window_ms: i64,
    /// Levels whose lines are re-scored (those the level alone flags) ...
    pub levels: Vec<String>,
    /// ... when the template's entries at those levels among them came in at least
    /// this many episodes (runs of entries at most `episode_gap` apart by `logged_at`): a
    /// burst at the highest level, or one that comes back once, keeps its verdicts.
    pub level_min_episodes: i64,
    pub episode_gap: std::time::Duration,
    /// A window holding more than `max(burst_min_lines, ceil(burst_rate_factor x` the
    /// template's mean lines per window in its other windows`))` is a burst and keeps its
    /// verdicts (the lifetime from the row's `count` and `windows`).
    pub burst_rate_factor: f64,
    pub burst_min_lines: i64,
    /// A template seen among them in at least this share of the presence windows
    /// from its `first_seen` to its `last_seen` is a continuous stream: its flagged
    /// entries of every level are re-scored, not only those of `levels`.
    pub continuous_coverage: f64,
}

/// A template as it was on the line it was learned as normal on, for
/// [`rescore_learned_normal`]: its lifetime is the `templates` row's count and windows (every
/// replica's lines) less what came after that line: what the same batch added after it
/// (this replica's `relearn::Lifetime` at the batch's end less at that line) or, when more,
/// the stored entries logged after it and received at most a day before the entries it
/// re-scores (another replica may have written lines from later in the log first), so that the verdicts do not depend on how a client batched its
/// lines, nor on which worker wrote first, and replicas scoring side by side still count
/// each other's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedAt {
    /// Lines and presence windows of the template that the batch added after the learning
    /// line. The stored entries logged after it count too (the larger count is taken):
    /// another worker may have written lines from later in the log before this batch.
    pub lines_after: i64,
    pub windows_after: i64,
    /// The presence windows (`logged_at div presence_window_ms`) of its first line (as
    /// this replica knows it; the row's `first_seen` counts too) and of the learning line.
    pub first_window: i64,
    pub last_window: i64,
    /// The learning line's `logged_at`: entries logged after it are not re-scored.
    pub at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct StoredLine {
    #[diesel(sql_type = Timestamptz)]
    logged_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    severity: String,
}

/// The analysed entries of template `id`, its latest `limit` by `received_at`, as (time
/// logged, severity) in the order they were logged: the lines a scorer reading the
/// template's stored stream in time order would count (all of them when the template has
/// at most `limit`).
pub fn stored_lines(
    conn: &mut PgConnection,
    id: i64,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, String)>, DbError> {
    let rows: Vec<StoredLine> = diesel::sql_query(
        "SELECT logged_at, severity FROM ( \
             SELECT logged_at, severity, id FROM log_entries \
             WHERE template_id = $1 AND analyzed_at IS NOT NULL \
             ORDER BY received_at DESC LIMIT $2) latest \
         ORDER BY logged_at, id",
    )
    .bind::<BigInt, _>(id)
    .bind::<BigInt, _>(limit)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.logged_at, r.severity))
        .collect())
}

/// The template `id` was just learned as normal (steady presence), as `learned` says: its
/// flagged entries among its latest `rule.max_entries` analysed ones logged up to
/// `learned.at` (whatever their age), at one of `rule.levels` (at any level when it is a
/// continuous stream), outside burst windows, become normal, and their summary ends with
/// [`LEARNED_NORMAL_NOTE`]. Nothing changes for a labelled template (the label decides
/// its lines). Returns how many entries changed; running it again changes nothing. Run it
/// after the batch's entries and the template's row are written: the windows are counted
/// over those entries, whatever their level or verdict, and the lifetime is the row's as of
/// the learning line (`learned`).
pub fn rescore_learned_normal(
    conn: &mut PgConnection,
    id: i64,
    rule: &RelearnRule,
    learned: &LearnedAt,
) -> Result<usize, DbError> {
    rescore_learned(conn, id, rule, learned, None)
}

/// Entries of the template `id` logged after it was learned as normal on the line at
/// `after` that other writes stored first (another worker, scoring a later part of the log
/// on a view that had not learned it): they are judged as [`rescore_learned_normal`] judges
/// the earlier ones, as of the latest line `learned` gives, except the entries `skip` (the
/// batch's own, which its scorer judged knowing the learning). One worker writing in time
/// order never has such entries.
pub fn rescore_learned_later(
    conn: &mut PgConnection,
    id: i64,
    rule: &RelearnRule,
    learned: &LearnedAt,
    after: DateTime<Utc>,
    skip: &[i64],
) -> Result<usize, DbError> {
    rescore_learned(conn, id, rule, learned, Some((after, skip)))
}

fn rescore_learned(
    conn: &mut PgConnection,
    id: i64,
    rule: &RelearnRule,
    learned: &LearnedAt,
    later: Option<(DateTime<Utc>, &[i64])>,
) -> Result<usize, DbError> {
    const NEW_SUMMARY: &str =
        "concat_ws('; ', nullif(regexp_replace(coalesce(e.summary, ''), $7, ''), ''), $8)";
    let sql = format!(
        "WITH cut AS ( \
             SELECT min(received_at) AS at FROM ( \
                 SELECT received_at FROM log_entries \
                 WHERE template_id = $1 AND analyzed_at IS NOT NULL AND logged_at <= $12 \
                 ORDER BY received_at DESC LIMIT $3) latest), \
         lines AS ( \
             SELECT id, received_at, logged_at, severity, is_anomaly, \
                    floor(extract(epoch FROM logged_at) * 1000 / $2)::bigint AS win \
             FROM log_entries \
             WHERE template_id = $1 AND analyzed_at IS NOT NULL AND logged_at <= $12 \
               AND received_at >= (SELECT at FROM cut)), \
         per_window AS (SELECT win, count(*) AS n FROM lines GROUP BY win), \
         after AS ( \
             SELECT count(*) AS n, count(DISTINCT win) FILTER (WHERE win > $16) AS w \
             FROM (SELECT floor(extract(epoch FROM logged_at) * 1000 / $2)::bigint AS win \
                   FROM log_entries \
                   WHERE template_id = $1 AND analyzed_at IS NOT NULL AND logged_at > $12 \
                     AND received_at >= (SELECT at FROM cut) - interval '1 day') later), \
         life AS ( \
             SELECT greatest(count - greatest($13::bigint, (SELECT n FROM after)), 1) AS count, \
                    greatest(windows - greatest($14::bigint, (SELECT w FROM after)) - 1, 1) \
                        AS others, \
                    greatest($16::bigint - least($15::bigint, \
                             floor(extract(epoch FROM first_seen) * 1000 / $2)::bigint) + 1, 1) \
                        AS spanned \
             FROM templates WHERE id = $1 AND label IS NULL), \
         rule AS ( \
             SELECT count, others, \
                    (SELECT count(*) FROM per_window) >= $9 * spanned AS continuous, \
                    (SELECT count(*) FROM ( \
                         SELECT logged_at - lag(logged_at) OVER (ORDER BY logged_at) AS gap \
                         FROM lines WHERE severity = ANY($6)) g \
                     WHERE gap IS NULL OR gap > make_interval(secs => $11)) >= $10 \
                        AS level_steady \
             FROM life) \
         UPDATE log_entries e SET is_anomaly = false, summary = {NEW_SUMMARY} \
         FROM lines l JOIN per_window w ON w.win = l.win CROSS JOIN rule \
         WHERE e.id = l.id AND e.received_at = l.received_at \
           AND e.template_id = $1 AND e.received_at >= (SELECT at FROM cut) \
           AND l.is_anomaly \
           AND ($17::timestamptz IS NULL OR (l.logged_at > $17 AND NOT (l.id = ANY($18)))) \
           AND ((l.severity = ANY($6) AND rule.level_steady) OR rule.continuous) \
           AND w.n <= greatest($4::bigint, \
                               ceil($5 * greatest(rule.count - w.n, 0)::float8 / rule.others)::bigint)"
    );
    Ok(diesel::sql_query(sql)
        .bind::<BigInt, _>(id)
        .bind::<Double, _>(rule.presence_window_ms.max(1) as f64)
        .bind::<BigInt, _>(rule.max_entries)
        .bind::<BigInt, _>(rule.burst_min_lines)
        .bind::<Double, _>(rule.burst_rate_factor)
        .bind::<Array<Text>, _>(&rule.levels)
        .bind::<Text, _>(RESCORE_NOTE_PATTERN)
        .bind::<Text, _>(LEARNED_NORMAL_NOTE)
        .bind::<Double, _>(rule.continuous_coverage)
        .bind::<BigInt, _>(rule.level_min_episodes)
        .bind::<Double, _>(rule.episode_gap.as_secs_f64())
        .bind::<Timestamptz, _>(learned.at)
        .bind::<BigInt, _>(learned.lines_after)
        .bind::<BigInt, _>(learned.windows_after)
        .bind::<BigInt, _>(learned.first_window)
        .bind::<BigInt, _>(learned.last_window)
        .bind::<Nullable<Timestamptz>, _>(later.map(|(after, _)| after))
        .bind::<Array<BigInt>, _>(later.map_or(&[][..], |(_, skip)| skip))
        .execute(conn)?)
}

/// Re-scores the latest `limit` entries of template `id` (by `received_at`, whatever their
/// age; entries received at the same instant as the `limit`-th are in too) with an
/// operator's `label`: `is_anomaly` becomes `label == "anomaly"` and the
/// summary gets `"; re-scored: its pattern was marked <normal|anomalous> by an operator"`
/// (replacing an earlier such note). A `normal` label with `covers` (its
/// `label_max_level`) re-scores only entries at that level or below: the others keep their
/// verdicts and notes. Returns how many entries changed; entries already so are left alone,
/// so repeating a label changes nothing. Run it in the transaction of [`set_label`].
pub fn rescore_latest(
    conn: &mut PgConnection,
    id: i64,
    label: &str,
    covers: Option<&str>,
    limit: i64,
) -> Result<usize, DbError> {
    const NEW_SUMMARY: &str =
        "concat_ws('; ', nullif(regexp_replace(coalesce(summary, ''), $3, ''), ''), $4)";
    // The oldest `received_at` among the latest `limit` (an index scan of the newest
    // partitions, stopped at `limit`), then every entry of the template from then on: ties
    // at the cut are all in, and the partitions before it are pruned when the query runs.
    let sql = format!(
        "UPDATE log_entries SET is_anomaly = $2, summary = {NEW_SUMMARY} \
         WHERE template_id = $1 \
           AND received_at >= (SELECT min(received_at) FROM ( \
                   SELECT received_at FROM log_entries \
                   WHERE template_id = $1 ORDER BY received_at DESC LIMIT $5) latest) \
           AND ($2 OR $6::text IS NULL \
                OR coalesce(array_position($7::text[], severity), 0) \
                   <= array_position($7::text[], $6::text)) \
           AND (is_anomaly IS DISTINCT FROM $2 OR summary IS DISTINCT FROM {NEW_SUMMARY})"
    );
    Ok(diesel::sql_query(sql)
        .bind::<BigInt, _>(id)
        .bind::<Bool, _>(label == "anomaly")
        .bind::<Text, _>(RESCORE_NOTE_PATTERN)
        .bind::<Text, _>(rescore_note(label))
        .bind::<BigInt, _>(limit)
        .bind::<Nullable<Text>, _>(covers)
        .bind::<Array<Text>, _>(&LEVELS[..])
        .execute(conn)?)
}

/// Log levels from the least to the most severe, as stored in `log_entries.severity`.
pub const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// The prior severity of a log level in [0, 1], as the detector weighs levels: DEBUG 0,
/// INFO 0.1, WARNING 0.4, ERROR 0.8, CRITICAL 1 (unknown: 0).
pub fn level_weight(level: &str) -> f32 {
    match level {
        "INFO" => 0.1,
        "WARNING" => 0.4,
        "ERROR" => 0.8,
        "CRITICAL" => 1.0,
        _ => 0.0,
    }
}

/// What the review queue needs about one unlabelled template: its scored lines received
/// in the window ([`review_candidates`]).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct ReviewCandidate {
    #[diesel(sql_type = BigInt)]
    pub template_id: i64,
    #[diesel(sql_type = Text)]
    pub template: String,
    /// Lines seen with this template, ever.
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    /// Scored lines in the window.
    #[diesel(sql_type = BigInt)]
    pub lines: i64,
    /// Of those, the ones flagged anomalous.
    #[diesel(sql_type = BigInt)]
    pub flagged: i64,
    /// Mean anomaly score of those lines.
    #[diesel(sql_type = Double)]
    pub mean_score: f64,
    /// Mean prior score of those lines (`log_entries.prior_score`; a line scored before
    /// that column existed counts with its anomaly score).
    #[diesel(sql_type = Double)]
    pub mean_prior: f64,
    /// The most severe level among them (one of [`LEVELS`]).
    #[diesel(sql_type = Text)]
    pub max_severity: String,
    /// The newest of those lines (highest id: ids follow arrival).
    #[diesel(sql_type = BigInt)]
    pub sample_log_entry_id: i64,
    /// The template's presence as the workers report it (see [`TemplateRow::windows`]).
    #[diesel(sql_type = Integer)]
    pub windows: i32,
    #[diesel(sql_type = BigInt)]
    pub max_window_lines: i64,
    #[diesel(sql_type = Integer)]
    pub episodes: i32,
    #[diesel(sql_type = Timestamptz)]
    pub first_seen: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub last_seen: DateTime<Utc>,
    /// When the stream started: the first line of any template (the scorer's
    /// `stream_start_ms`, as the workers restore it).
    #[diesel(sql_type = Timestamptz)]
    pub stream_start: DateTime<Utc>,
}

impl ReviewCandidate {
    /// [`level_weight`] of the most severe level seen.
    pub fn severity_weight(&self) -> f32 {
        level_weight(&self.max_severity)
    }
}

/// Unlabelled templates with scored lines received in the last `hours`, aggregated per
/// template, the `limit_rows` with most lines first (a bound on what the caller ranks).
/// Reads only the partitions of the window (`received_at` is the partition key).
pub fn review_candidates(
    conn: &mut PgConnection,
    hours: i32,
    limit_rows: i64,
) -> Result<Vec<ReviewCandidate>, DbError> {
    Ok(diesel::sql_query(
        "SELECT t.id AS template_id, t.template, t.count, \
                count(*) AS lines, \
                count(*) FILTER (WHERE e.is_anomaly) AS flagged, \
                avg(e.anomaly_score) AS mean_score, \
                avg(coalesce(e.prior_score, e.anomaly_score)) AS mean_prior, \
                ($2::text[])[max(array_position($2::text[], e.severity))] AS max_severity, \
                max(e.id) AS sample_log_entry_id, \
                t.windows, t.max_window_lines, t.episodes, t.first_seen, t.last_seen, \
                (SELECT min(first_seen) FROM templates) AS stream_start \
         FROM log_entries e \
         JOIN templates t ON t.id = e.template_id AND t.label IS NULL \
         WHERE e.received_at >= now() - make_interval(hours => $1) \
           AND e.anomaly_score IS NOT NULL \
         GROUP BY t.id \
         ORDER BY lines DESC, t.id \
         LIMIT $3",
    )
    .bind::<Integer, _>(hours)
    .bind::<Array<Text>, _>(&LEVELS[..])
    .bind::<BigInt, _>(limit_rows)
    .load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_weights_rise_with_the_level() {
        let weights: Vec<f32> = LEVELS.iter().map(|l| level_weight(l)).collect();
        assert_eq!(weights, vec![0.0, 0.1, 0.4, 0.8, 1.0]);
        assert_eq!(level_weight("NOPE"), 0.0);
    }

    #[test]
    fn a_normal_label_covers_the_levels_it_was_given_at_and_an_anomaly_label_all() {
        assert!(label_covers("anomaly", None, "DEBUG"));
        assert!(label_covers("anomaly", Some("INFO"), "CRITICAL"));
        assert!(label_covers("normal", None, "CRITICAL"));
        assert!(label_covers("normal", Some("ERROR"), "ERROR"));
        assert!(label_covers("normal", Some("ERROR"), "INFO"));
        assert!(!label_covers("normal", Some("ERROR"), "CRITICAL"));
    }

    #[test]
    fn the_rescore_note_names_the_label() {
        assert_eq!(
            rescore_note("normal"),
            "re-scored: its pattern was marked normal by an operator"
        );
        assert_eq!(
            rescore_note("anomaly"),
            "re-scored: its pattern was marked anomalous by an operator"
        );
        assert_eq!(RESCORE_WINDOW.as_secs(), 24 * 3600);
    }
}
