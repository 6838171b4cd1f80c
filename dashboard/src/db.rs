//! The dashboard's reads and actions: SQL API calls and the two status views, through a small
//! connection pool. Every statement binds its values.

use crate::{AppError, Result};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use quantum_flow_client::{GraphFormat, Run, TaskState};
use std::collections::BTreeMap;
use std::str::FromStr;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// A run with at most this many tasks has them listed on its page (`get_run(..., include_tasks
/// => true)`); a bigger one shows per-step counts only.
pub const TASKS_LISTED: i64 = 1000;

/// The longest the dashboard waits to connect or for a pooled connection.
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A row of `quantum_flow.workflow_stats`.
#[derive(Debug, Clone)]
pub struct WorkflowStat {
    pub workflow_slug: String,
    pub runs_started: i64,
    pub runs_paused: i64,
    pub runs_completed: i64,
    pub runs_failed: i64,
    pub tasks_queued: i64,
    pub tasks_started: i64,
    pub tasks_failed: i64,
    pub oldest_queued_seconds: Option<f64>,
    pub completed_last_minute: i64,
}

/// A row of `quantum_flow.run_list`.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: Uuid,
    pub workflow_slug: String,
    pub status: String,
    pub parent_run_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: f64,
    pub error_message: Option<String>,
    pub steps_total: i64,
    pub steps_done: i64,
    pub tasks_total: i64,
    pub tasks_completed: i64,
}

/// What a run's page shows.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: Run,
    /// Each step's tasks, when the run has at most [`TASKS_LISTED`].
    pub tasks: Option<BTreeMap<String, Vec<TaskState>>>,
    pub tasks_total: i64,
    /// `flow_graph(workflow, 'mermaid', run_id)`: coloured by this run's step states.
    pub graph: String,
}

/// The tokio-postgres client inside a pooled connection (what the client crate's calls take).
fn pg(client: &deadpool_postgres::Client) -> &tokio_postgres::Client {
    client
}

pub struct Db {
    pool: Pool,
}

impl Db {
    /// A pool of up to four connections, named `quantum_flow_dashboard` in
    /// `pg_stat_activity`; the first is opened here so a wrong address or role fails at start.
    /// Nothing waits for long: 5 s to connect or to get a pooled connection, 10 s per
    /// statement (a page shows the error instead of hanging).
    pub async fn connect(database_url: &str) -> std::result::Result<Db, String> {
        let mut config = tokio_postgres::Config::from_str(database_url)
            .map_err(|e| format!("bad --database-url: {e}"))?;
        if config.get_application_name().is_none() {
            config.application_name("quantum_flow_dashboard");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(WAIT);
        }
        let options = format!(
            "{} -c statement_timeout=10s",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .build()
            .map_err(|e| format!("connection pool: {e}"))?;
        let db = Db { pool };
        db.ping()
            .await
            .map_err(|e| format!("cannot use the database: {e}"))?;
        Ok(db)
    }

    /// One round trip that also proves the role can read the views (the privilege is
    /// checked; `LIMIT 0` reads nothing).
    pub async fn ping(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .query("SELECT 1 FROM quantum_flow.workflow_stats LIMIT 0", &[])
            .await?;
        Ok(())
    }

    pub async fn workflow_stats(&self, workflow: Option<&str>) -> Result<Vec<WorkflowStat>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT workflow_slug, runs_started::bigint, runs_paused::bigint,
                        runs_completed::bigint, runs_failed::bigint, tasks_queued::bigint,
                        tasks_started::bigint, tasks_failed::bigint, oldest_queued_seconds,
                        completed_last_minute::bigint
                 FROM quantum_flow.workflow_stats
                 WHERE $1::text IS NULL OR workflow_slug = $1
                 ORDER BY workflow_slug",
                &[&workflow],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkflowStat {
                    workflow_slug: r.try_get(0)?,
                    runs_started: r.try_get(1)?,
                    runs_paused: r.try_get(2)?,
                    runs_completed: r.try_get(3)?,
                    runs_failed: r.try_get(4)?,
                    tasks_queued: r.try_get(5)?,
                    tasks_started: r.try_get(6)?,
                    tasks_failed: r.try_get(7)?,
                    oldest_queued_seconds: r.try_get(8)?,
                    completed_last_minute: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// The newest `limit` runs, of one status and one workflow if given.
    pub async fn runs(
        &self,
        status: Option<&str>,
        workflow: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT run_id, workflow_slug, status::text, parent_run_id, started_at, start_at,
                        coalesce(completed_at, failed_at),
                        extract(epoch FROM duration)::float8, error_message,
                        steps_total::bigint, steps_done::bigint, tasks_total::bigint,
                        tasks_completed::bigint
                 FROM quantum_flow.run_list
                 WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::text IS NULL OR workflow_slug = $2)
                 ORDER BY started_at DESC, run_id
                 LIMIT $3",
                &[&status, &workflow, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    run_id: r.try_get(0)?,
                    workflow_slug: r.try_get(1)?,
                    status: r.try_get(2)?,
                    parent_run_id: r.try_get(3)?,
                    started_at: r.try_get(4)?,
                    start_at: r.try_get(5)?,
                    ended_at: r.try_get(6)?,
                    duration_seconds: r.try_get(7)?,
                    error_message: r.try_get(8)?,
                    steps_total: r.try_get(9)?,
                    steps_done: r.try_get(10)?,
                    tasks_total: r.try_get(11)?,
                    tasks_completed: r.try_get(12)?,
                })
            })
            .collect()
    }

    pub async fn run_view(&self, run_id: Uuid) -> Result<RunView> {
        let client = self.pool.get().await?;
        let total = client
            .query_opt(
                "SELECT tasks_total::bigint FROM quantum_flow.run_list WHERE run_id = $1",
                &[&run_id],
            )
            .await?;
        let Some(total) = total else {
            return Err(AppError::NotFound(format!("no run {run_id}")));
        };
        let tasks_total: i64 = total.try_get(0)?;
        let (run, tasks) = if tasks_total <= TASKS_LISTED {
            let (run, tasks) = quantum_flow_client::get_run_with_tasks(pg(&client), run_id).await?;
            (run, Some(tasks))
        } else {
            (
                quantum_flow_client::get_run(pg(&client), run_id).await?,
                None,
            )
        };
        let graph = quantum_flow_client::flow_graph(
            pg(&client),
            &run.workflow_slug,
            GraphFormat::Mermaid,
            Some(run_id),
        )
        .await?;
        Ok(RunView {
            run,
            tasks,
            tasks_total,
            graph,
        })
    }

    pub async fn flow_graph(&self, workflow: &str, run_id: Option<Uuid>) -> Result<String> {
        let client = self.pool.get().await?;
        Ok(
            quantum_flow_client::flow_graph(pg(&client), workflow, GraphFormat::Mermaid, run_id)
                .await?,
        )
    }

    /// A run page's button: `cancel`, `pause`, `resume` or `retry`. True when the call changed
    /// the run (false: it was not in a state the action applies to).
    pub async fn run_action(&self, run_id: Uuid, action: &str) -> Result<bool> {
        let client = self.pool.get().await?;
        let c = pg(&client);
        Ok(match action {
            "cancel" => {
                quantum_flow_client::cancel_run(c, run_id, Some("from the dashboard")).await?
            }
            "pause" => quantum_flow_client::pause_run(c, run_id).await?,
            "resume" => quantum_flow_client::resume_run(c, run_id).await?,
            "retry" => quantum_flow_client::retry_run(c, run_id).await?,
            other => return Err(AppError::NotFound(format!("no action {other:?}"))),
        })
    }

    pub async fn metrics(&self) -> Result<String> {
        let client = self.pool.get().await?;
        let row = client
            .query_one("SELECT quantum_flow.metrics()", &[])
            .await?;
        Ok(row.try_get(0)?)
    }
}
