//! The worker connections and their loops: a no-op quantum_flow worker (poll_tasks, then one
//! complete_task per task, or one complete_tasks per polled batch) and the same loop on plain
//! pgmq (pgmq.read, then one pgmq.delete per message), so the per-task loop and the floor make
//! the same number of round trips per task.

use crate::Result;
use serde_json::Value;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, Statement};
use uuid::Uuid;

/// Opens a connection named `qf_bench_<name>` in pg_stat_activity.
pub async fn connect(url: &str, name: &str) -> Result<Client> {
    let mut config = Config::from_str(url)?;
    config.application_name(format!("qf_bench_{name}"));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("bench: connection {e}");
        }
    });
    Ok(client)
}

/// One worker: its own connection, with every statement of its loops prepared once.
pub struct Worker {
    pub client: Client,
    pub pid: i32,
    poll: Statement,
    complete: Statement,
    complete_many: Statement,
    fail: Statement,
    read: Statement,
    delete: Statement,
}

impl Worker {
    pub async fn connect(url: &str, name: &str) -> Result<Self> {
        let client = connect(url, name).await?;
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        let poll = client
            .prepare_typed(
                "SELECT run_id, step_slug, task_index, attempt, input \
                 FROM quantum_flow.poll_tasks($1, $2, $3, $4)",
                &[Type::TEXT, Type::INT4, Type::INT4, Type::TEXT],
            )
            .await?;
        let complete = client
            .prepare_typed(
                "SELECT quantum_flow.complete_task($1, $2, $3, $4)",
                &[Type::UUID, Type::TEXT, Type::INT4, Type::JSONB],
            )
            .await?;
        let complete_many = client
            .prepare_typed(
                "SELECT quantum_flow.complete_tasks($1, $2, $3, $4)",
                &[
                    Type::UUID_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT4_ARRAY,
                    Type::JSONB_ARRAY,
                ],
            )
            .await?;
        let fail = client
            .prepare_typed(
                "SELECT quantum_flow.fail_task($1, $2, $3, $4, $5)",
                &[Type::UUID, Type::TEXT, Type::INT4, Type::TEXT, Type::INT4],
            )
            .await?;
        let read = client
            .prepare_typed(
                "SELECT msg_id, message FROM pgmq.read($1, $2, $3)",
                &[Type::TEXT, Type::INT4, Type::INT4],
            )
            .await?;
        let delete = client
            .prepare_typed("SELECT pgmq.delete($1, $2)", &[Type::TEXT, Type::INT8])
            .await?;
        Ok(Worker {
            client,
            pid,
            poll,
            complete,
            complete_many,
            fail,
            read,
            delete,
        })
    }

    /// `poll_tasks(workflow, batch_size, max_wait_ms, worker_id)`.
    pub async fn poll(
        &self,
        workflow: &str,
        batch_size: i32,
        max_wait_ms: i32,
        worker_id: &str,
    ) -> Result<Vec<Task>> {
        let rows = self
            .client
            .query(
                &self.poll,
                &[&workflow, &batch_size, &max_wait_ms, &worker_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Task {
                run_id: r.get(0),
                step_slug: r.get(1),
                task_index: r.get(2),
                attempt: r.get(3),
                input: r.get(4),
            })
            .collect())
    }

    /// `complete_task(run_id, step_slug, task_index, output)`: whether this call completed it.
    pub async fn complete(&self, task: &Task, output: &Value) -> Result<bool> {
        Ok(self
            .client
            .query_one(
                &self.complete,
                &[&task.run_id, &task.step_slug, &task.task_index, output],
            )
            .await?
            .get(0))
    }

    /// One `complete_tasks(run_ids, step_slugs, task_indexes, outputs)` for `tasks` (one
    /// commit): whether each element completed its task.
    pub async fn complete_all(&self, tasks: &[Task], outputs: &[Value]) -> Result<Vec<bool>> {
        let run_ids: Vec<Uuid> = tasks.iter().map(|t| t.run_id).collect();
        let slugs: Vec<&str> = tasks.iter().map(|t| t.step_slug.as_str()).collect();
        let indexes: Vec<i32> = tasks.iter().map(|t| t.task_index).collect();
        let done: Vec<bool> = self
            .client
            .query_one(&self.complete_many, &[&run_ids, &slugs, &indexes, &outputs])
            .await?
            .get(0);
        if done.len() != tasks.len() {
            return Err(format!(
                "complete_tasks returned {} results for {} tasks",
                done.len(),
                tasks.len()
            )
            .into());
        }
        Ok(done)
    }

    /// `fail_task(run_id, step_slug, task_index, error_message, attempt)`: the task's status
    /// after the call (`queued`: retried, `failed`, `ignored`).
    pub async fn fail(&self, task: &Task, message: &str) -> Result<String> {
        Ok(self
            .client
            .query_one(
                &self.fail,
                &[
                    &task.run_id,
                    &task.step_slug,
                    &task.task_index,
                    &message,
                    &task.attempt,
                ],
            )
            .await?
            .get(0))
    }
}

pub struct Task {
    pub run_id: Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub attempt: i32,
    pub input: Value,
}

/// What a no-op worker answers for a task: computed, never slept on.
pub type OutputFn = Arc<dyn Fn(&Task) -> Value + Send + Sync>;

/// Called with each batch a poll returned, before any of it is worked on.
pub type ClaimedFn = Arc<dyn Fn(&[Task]) + Send + Sync>;

/// Completions counted across the workers of one phase; wakes the phase's clock when the
/// `target`-th arrives, remembering the run it belonged to (the last run to complete).
pub struct Progress {
    target: u64,
    done: AtomicU64,
    last_run: Mutex<Option<Uuid>>,
    pub reached: Notify,
}

impl Progress {
    pub fn new(target: u64) -> Arc<Self> {
        Arc::new(Progress {
            target,
            done: AtomicU64::new(0),
            last_run: Mutex::new(None),
            reached: Notify::new(),
        })
    }

    fn record(&self, run_id: Uuid) {
        if self.done.fetch_add(1, Ordering::SeqCst) + 1 == self.target {
            *self.last_run.lock().expect("progress lock") = Some(run_id);
            self.reached.notify_one();
        }
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    pub fn last_run(&self) -> Option<Uuid> {
        *self.last_run.lock().expect("progress lock")
    }
}

/// Per-worker counts and client-side time spent in each call (round trip included).
#[derive(Default, Clone, Copy)]
pub struct LoopStats {
    pub polls: u64,
    pub empty_polls: u64,
    pub poll_time: Duration,
    /// Time in the polls that returned something (an empty poll may wait `max_wait_ms`).
    pub busy_poll_time: Duration,
    pub completions: u64,
    /// complete_task / complete_tasks / pgmq.delete calls made.
    pub complete_calls: u64,
    /// completions (tasks or messages) refused: false returned (should be none).
    pub refused: u64,
    pub complete_time: Duration,
    pub complete_max: Duration,
}

impl LoopStats {
    pub fn add(&mut self, o: &LoopStats) {
        self.polls += o.polls;
        self.empty_polls += o.empty_polls;
        self.poll_time += o.poll_time;
        self.busy_poll_time += o.busy_poll_time;
        self.completions += o.completions;
        self.complete_calls += o.complete_calls;
        self.refused += o.refused;
        self.complete_time += o.complete_time;
        self.complete_max = self.complete_max.max(o.complete_max);
    }
}

pub struct QfLoop {
    pub workflow: String,
    pub batch_size: i32,
    pub max_wait_ms: i32,
    pub output: OutputFn,
    pub claimed: Option<ClaimedFn>,
    /// Complete each polled batch with one complete_tasks call instead of one complete_task
    /// per task.
    pub batched: bool,
    pub progress: Arc<Progress>,
    pub stop: Arc<AtomicBool>,
}

/// The no-op quantum_flow worker: poll (waiting up to max_wait_ms when idle, so it never
/// spins), complete each claimed task (or the whole batch at once), until told to stop.
pub async fn qf_loop(worker: Arc<Worker>, id: String, job: Arc<QfLoop>) -> Result<LoopStats> {
    let mut s = LoopStats::default();
    while !job.stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        let tasks = worker
            .poll(&job.workflow, job.batch_size, job.max_wait_ms, &id)
            .await?;
        s.poll_time += t.elapsed();
        s.polls += 1;
        if tasks.is_empty() {
            s.empty_polls += 1;
        } else {
            s.busy_poll_time += t.elapsed();
        }
        if let Some(claimed) = &job.claimed {
            claimed(&tasks);
        }
        if job.batched {
            if tasks.is_empty() {
                continue;
            }
            let outputs: Vec<Value> = tasks.iter().map(|t| (job.output)(t)).collect();
            let t = Instant::now();
            let done = worker.complete_all(&tasks, &outputs).await?;
            let took = t.elapsed();
            s.complete_time += took;
            s.complete_max = s.complete_max.max(took);
            s.complete_calls += 1;
            for (task, completed) in tasks.iter().zip(done) {
                if completed {
                    s.completions += 1;
                    job.progress.record(task.run_id);
                } else {
                    s.refused += 1;
                }
            }
            continue;
        }
        for task in &tasks {
            let output = (job.output)(task);
            let t = Instant::now();
            let completed = worker.complete(task, &output).await?;
            let took = t.elapsed();
            s.complete_time += took;
            s.complete_max = s.complete_max.max(took);
            s.complete_calls += 1;
            if completed {
                s.completions += 1;
                job.progress.record(task.run_id);
            } else {
                s.refused += 1;
            }
        }
    }
    Ok(s)
}

pub struct PgmqLoop {
    pub queue: String,
    pub batch_size: i32,
    pub progress: Arc<Progress>,
    pub stop: Arc<AtomicBool>,
}

/// The floor: the same loop on a plain pgmq queue. pgmq.read does not wait, so an empty read
/// sleeps briefly instead of spinning (it only happens once the queue is drained).
pub async fn pgmq_loop(worker: Arc<Worker>, job: Arc<PgmqLoop>) -> Result<LoopStats> {
    let mut s = LoopStats::default();
    while !job.stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        let rows = worker
            .client
            .query(&worker.read, &[&job.queue, &30i32, &job.batch_size])
            .await?;
        s.poll_time += t.elapsed();
        s.polls += 1;
        if rows.is_empty() {
            s.empty_polls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            s.busy_poll_time += t.elapsed();
        }
        for row in &rows {
            let msg_id: i64 = row.get(0);
            let t = Instant::now();
            let deleted: bool = worker
                .client
                .query_one(&worker.delete, &[&job.queue, &msg_id])
                .await?
                .get(0);
            let took = t.elapsed();
            s.complete_time += took;
            s.complete_max = s.complete_max.max(took);
            s.complete_calls += 1;
            if deleted {
                s.completions += 1;
                job.progress.record(Uuid::nil());
            } else {
                s.refused += 1;
            }
        }
    }
    Ok(s)
}
