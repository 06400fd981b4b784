//! Task counts for the dashboard's "what Flower showed" panel.

use diesel::{dsl::count_star, pg::PgConnection, prelude::*};

use crate::{schema::tasks, DbError};

/// How many tasks of one name on one queue are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCount {
    pub queue: String,
    pub task_name: String,
    pub status: String,
    pub count: i64,
}

/// Every task row counted by queue, name and status (one grouped query), sorted so the
/// output is stable.
pub fn task_counts(conn: &mut PgConnection) -> Result<Vec<TaskCount>, DbError> {
    Ok(tasks::table
        .group_by((tasks::queue, tasks::task_name, tasks::status))
        .select((tasks::queue, tasks::task_name, tasks::status, count_star()))
        .order((tasks::queue, tasks::task_name, tasks::status))
        .load::<(String, String, String, i64)>(conn)?
        .into_iter()
        .map(|(queue, task_name, status, count)| TaskCount {
            queue,
            task_name,
            status,
            count,
        })
        .collect())
}

/// Tables whose planner statistics the hot queries depend on: the worker's lookups by id
/// (`log_entries` partitions), task state and templates.
const PLANNED_TABLES: [&str; 3] = ["log_entries", "tasks", "templates"];

/// Runs `ANALYZE` on every table (a partition counts) of ours with more than
/// `min_changed` rows, and more than a tenth of its rows, changed since its statistics
/// were last taken, and on the `log_entries` parent when one of its partitions was
/// analysed. Autovacuum never analyses a partitioned parent, and may be off or behind:
/// with stale statistics a freshly filled day's partition looks empty, and the scoring
/// transaction's lookups by id turn into sequential scans of the whole partition (60 ms
/// instead of 2 ms per batch at 270 000 rows). Returns the tables analysed.
///
/// # Errors
///
/// The statistics view cannot be read or `ANALYZE` fails.
pub fn refresh_planner_statistics(
    conn: &mut PgConnection,
    min_changed: i64,
) -> Result<Vec<String>, DbError> {
    #[derive(QueryableByName)]
    struct Stale {
        #[diesel(sql_type = diesel::sql_types::Text)]
        relname: String,
    }
    let stale: Vec<Stale> = diesel::sql_query(
        "SELECT s.relname::text AS relname FROM pg_stat_user_tables s \
         WHERE s.schemaname = current_schema() \
           AND (s.relname = ANY($1) OR s.relname LIKE 'log\\_entries\\_%') \
           AND s.n_mod_since_analyze > GREATEST($2, s.n_live_tup / 10) \
         ORDER BY s.relname",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&PLANNED_TABLES[..])
    .bind::<diesel::sql_types::BigInt, _>(min_changed)
    .load(conn)?;
    let mut analysed = Vec::new();
    for table in stale.into_iter().map(|s| s.relname) {
        // Names come from the catalogue, quoted as identifiers all the same.
        diesel::sql_query(format!("ANALYZE \"{}\"", table.replace('"', "\"\""))).execute(conn)?;
        analysed.push(table);
    }
    if analysed.iter().any(|t| t.starts_with("log_entries_")) {
        diesel::sql_query("ANALYZE log_entries").execute(conn)?;
        analysed.push("log_entries".to_owned());
    }
    Ok(analysed)
}
