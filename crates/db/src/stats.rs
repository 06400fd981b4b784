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
