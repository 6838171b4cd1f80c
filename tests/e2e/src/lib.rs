//! Shared helpers for the end-to-end tests (see tests/): connecting to the cluster named by
//! `QF_TEST_DATABASE_URL`, a fresh database per test file, typed wrappers of the worker
//! protocol (poll_tasks / complete_task / fail_task) and a worker loop.

use futures::StreamExt;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

/// The cluster's URL (a database any test may connect to, to create its own).
pub fn base_url() -> String {
    std::env::var("QF_TEST_DATABASE_URL").expect(
        "QF_TEST_DATABASE_URL must name a PostgreSQL 15 cluster with quantum_flow installed, \
         e.g. postgres://postgres@127.0.0.1:5432/postgres (see tests/e2e/README.md)",
    )
}

/// `base_url()` with its database replaced by `database`.
pub fn database_url(database: &str) -> String {
    with_database(&base_url(), database)
}

/// A postgres:// URL with its database replaced (query parameters are kept).
fn with_database(base: &str, database: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_string(), format!("?{q}")),
        None => (base.to_string(), String::new()),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => &head[..],
    };
    format!("{host_part}/{database}{query}")
}

/// A connection whose driver runs on its own tokio task.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {}", describe(&e)));
    tokio::spawn(async move {
        // The connection ends with an error when the server goes away; the client's next call
        // reports it.
        let _ = connection.await;
    });
    client
}

/// A connection that keeps every NOTICE the server sends (auto_explain's plans, for one).
pub async fn connect_collecting_notices(url: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {}", describe(&e)));
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notice(notice)) => {
                    sink.lock().unwrap().push(notice.message().to_string())
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, notices)
}

/// Creates database `name` afresh (dropping a leftover one) with quantum_flow installed, and
/// returns its URL.
pub async fn fresh_database(name: &str) -> String {
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database name {name:?} must be a plain lower-case identifier"
    );
    let admin = connect(&base_url()).await;
    // Separate statements: a multi-statement query string runs as one transaction block,
    // which DROP/CREATE DATABASE refuse.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    let url = database_url(name);
    let client = connect(&url).await;
    client
        .batch_execute("SET client_min_messages = warning; CREATE EXTENSION quantum_flow CASCADE")
        .await
        .unwrap_or_else(|e| panic!("CREATE EXTENSION quantum_flow in {name}: {}", describe(&e)));
    url
}

/// Runs SQL that must succeed (definitions, setup).
pub async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", describe(&e)));
}

/// An error with its SQLSTATE and server message, for failure output.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A task handed out by poll_tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub attempt: i32,
    pub input: Value,
}

/// The identity of one claim: a task's attempt.
pub type ClaimKey = (Uuid, String, i32, i32);

impl Task {
    pub fn claim_key(&self) -> ClaimKey {
        (
            self.run_id,
            self.step_slug.clone(),
            self.task_index,
            self.attempt,
        )
    }
}

/// `quantum_flow.poll_tasks(slug, batch_size, max_wait_ms)`.
pub async fn poll(
    client: &Client,
    workflow_slug: &str,
    batch_size: i32,
    max_wait_ms: i32,
) -> Result<Vec<Task>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT run_id, step_slug, task_index, attempt, input \
             FROM quantum_flow.poll_tasks($1, batch_size => $2, max_wait_ms => $3)",
            &[&workflow_slug, &batch_size, &max_wait_ms],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Task {
            run_id: r.get(0),
            step_slug: r.get(1),
            task_index: r.get(2),
            attempt: r.get(3),
            input: r.get(4),
        })
        .collect())
}

/// `complete_task` for this task's attempt.
pub async fn complete(
    client: &Client,
    task: &Task,
    output: &Value,
) -> Result<bool, tokio_postgres::Error> {
    complete_attempt(client, task, task.attempt, output).await
}

/// `complete_task` naming an explicit attempt (a late answer, for instance).
pub async fn complete_attempt(
    client: &Client,
    task: &Task,
    attempt: i32,
    output: &Value,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT quantum_flow.complete_task($1, $2, $3, $4, $5)",
            &[
                &task.run_id,
                &task.step_slug,
                &task.task_index,
                output,
                &attempt,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// `fail_task` for this task's attempt; returns the task's status after the call.
pub async fn fail(
    client: &Client,
    task: &Task,
    error_message: &str,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT quantum_flow.fail_task($1, $2, $3, $4, $5)",
            &[
                &task.run_id,
                &task.step_slug,
                &task.task_index,
                &error_message,
                &task.attempt,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// `start_flow(slug, input)`; returns the run id.
pub async fn start_flow(client: &Client, workflow_slug: &str, input: &Value) -> Uuid {
    client
        .query_one(
            "SELECT quantum_flow.start_flow($1, $2)",
            &[&workflow_slug, input],
        )
        .await
        .unwrap_or_else(|e| panic!("start_flow({workflow_slug}): {}", describe(&e)))
        .get(0)
}

/// `get_run(run_id)`.
pub async fn get_run(client: &Client, run_id: Uuid) -> Value {
    client
        .query_one("SELECT quantum_flow.get_run($1)", &[&run_id])
        .await
        .unwrap_or_else(|e| panic!("get_run({run_id}): {}", describe(&e)))
        .get(0)
}

/// Runs among `run_ids` whose status is still `started`.
pub async fn unfinished_runs(client: &Client, run_ids: &[Uuid]) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM unnest($1::uuid[]) AS id \
             WHERE quantum_flow.get_run(id)->>'status' = 'started'",
            &[&run_ids],
        )
        .await
        .unwrap_or_else(|e| panic!("counting unfinished runs: {}", describe(&e)))
        .get(0)
}

/// Messages in the workflow's pgmq queue (`pgmq.q_qf_<slug>`), visible or not.
pub async fn queue_len(client: &Client, workflow_slug: &str) -> i64 {
    count_rows(
        client,
        &format!("pgmq.q_qf_{}", workflow_slug.to_lowercase()),
    )
    .await
}

/// Messages in the workflow's pgmq archive (`pgmq.a_qf_<slug>`).
pub async fn archive_len(client: &Client, workflow_slug: &str) -> i64 {
    count_rows(
        client,
        &format!("pgmq.a_qf_{}", workflow_slug.to_lowercase()),
    )
    .await
}

async fn count_rows(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count of {table}: {}", describe(&e)))
        .get(0)
}

/// What a handler decided for a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Complete(Value),
    Fail(String),
}

/// What the worker did with one claimed task, and what the engine answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    /// complete_task's result.
    Completed(bool),
    /// fail_task's result (`queued`, `failed` or `ignored`).
    Failed(String),
}

/// One claimed task, as the worker loop saw it.
#[derive(Debug, Clone)]
pub struct Processed {
    pub task: Task,
    pub answered: Answered,
}

/// One worker round: poll, run the handler on every claimed task, answer each with
/// complete_task / fail_task naming the claimed attempt.
pub async fn work_once<H>(
    client: &Client,
    workflow_slug: &str,
    batch_size: i32,
    max_wait_ms: i32,
    handler: &mut H,
) -> Result<Vec<Processed>, tokio_postgres::Error>
where
    H: FnMut(&Task) -> Outcome,
{
    let tasks = poll(client, workflow_slug, batch_size, max_wait_ms).await?;
    let mut processed = Vec::with_capacity(tasks.len());
    for task in tasks {
        let answered = match handler(&task) {
            Outcome::Complete(output) => {
                Answered::Completed(complete(client, &task, &output).await?)
            }
            Outcome::Fail(message) => Answered::Failed(fail(client, &task, &message).await?),
        };
        processed.push(Processed { task, answered });
    }
    Ok(processed)
}

/// Works on `workflow_slug` until `stop` is set, reporting every processed task to `record`.
pub async fn work_until<H, R>(
    client: &Client,
    workflow_slug: &str,
    batch_size: i32,
    max_wait_ms: i32,
    stop: &AtomicBool,
    mut handler: H,
    mut record: R,
) -> Result<(), tokio_postgres::Error>
where
    H: FnMut(&Task) -> Outcome,
    R: FnMut(Processed),
{
    while !stop.load(Ordering::SeqCst) {
        for p in work_once(client, workflow_slug, batch_size, max_wait_ms, &mut handler).await? {
            record(p);
        }
    }
    Ok(())
}

/// Reads an integer the handlers exchange as JSON.
pub fn as_i64(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v}"))
}

/// The handler of the `crash` workflow (used by tests/crash.rs and the e2e_worker binary):
/// map step `scale` multiplies each item by 10, single step `total` sums scale's output.
pub fn crash_handler(task: &Task) -> Outcome {
    match task.step_slug.as_str() {
        "scale" => Outcome::Complete(Value::from(as_i64(&task.input["item"]) * 10)),
        "total" => {
            let items = task.input["scale"]
                .as_array()
                .unwrap_or_else(|| panic!("total's input lacks scale's array: {}", task.input));
            Outcome::Complete(Value::from(items.iter().map(as_i64).sum::<i64>()))
        }
        other => Outcome::Fail(format!("e2e_worker has no handler for step {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
                "qf_e2e_x"
            ),
            "postgres://postgres@127.0.0.1:5432/qf_e2e_x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "d"), "postgres://u@h:1/d");
    }
}
