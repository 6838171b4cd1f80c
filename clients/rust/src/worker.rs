//! A worker: claims a workflow's tasks with `poll_tasks`, runs the step's async handler for
//! each, and answers with `complete_task` / `fail_task`.
//!
//! Connections: a worker opens two connections of its own from a connection string.
//! * the **poll connection** runs only `poll_tasks` (which waits server-side up to
//!   `max_wait_ms`), one call at a time;
//! * the **answer connection** is shared by every in-flight task; tokio-postgres pipelines
//!   their `complete_task` / `fail_task` calls on it, so answers never wait behind a poll and
//!   the worker needs no pool. Both statements are prepared once.
//!
//! Concurrency: at most `concurrency` handlers run at once. With `complete_in_batches`, a task
//! gives its slot back once its completion is queued for the batcher, so the next tasks run
//! while a batch is on its way; claiming pauses while `MAX_COMPLETION_BATCH` queued
//! completions wait for their answer.
//!
//! Shutdown: when the shutdown signal turns true the worker stops claiming. A `poll_tasks`
//! that is waiting is cancelled (a cancelled poll rolls back, so it claimed nothing; a poll
//! that returned first hands its tasks to handlers as usual). Then it waits for the tasks it
//! holds until `shutdown_deadline`; handlers still running then are dropped unanswered
//! (`abandoned`), and their tasks become visible again after their step's timeout.

use crate::api::{self, PollOptions};
use crate::error::{Error, Result};
use crate::types::{FailOutcome, FlowDefinition, StepType, Task, WorkerStats};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_postgres::{CancelToken, Client, NoTls, Statement};

/// What a handler fails with: anything that converts into a boxed error (`String`, `&str`,
/// `std::io::Error`, `anyhow::Error`, ...). Its message, followed by the messages of its
/// sources (`error: cause: cause`), becomes the task's error message. The attempt is retried
/// while attempts are left, unless the error is a [`Permanent`] (or a `serde_json::Error`:
/// input that does not decode will not decode next time either).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A handler error that another attempt cannot fix (invalid input, a bug): the task fails at
/// once (`fail_task(..., retry => false)`), and with it its run.
///
/// ```
/// # use quantum_flow_client::{HandlerResult, Permanent};
/// fn parse(input: &serde_json::Value) -> HandlerResult {
///     match input["run"]["amount"].as_i64() {
///         Some(n) => Ok(serde_json::json!(n * 2)),
///         None => Err(Permanent::new("amount must be an integer").into()),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Permanent(pub HandlerError);

impl Permanent {
    pub fn new(error: impl Into<HandlerError>) -> Self {
        Permanent(error.into())
    }
}

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether another attempt could succeed.
fn is_permanent(error: &HandlerError) -> bool {
    error.downcast_ref::<Permanent>().is_some()
        || error.downcast_ref::<serde_json::Error>().is_some()
}

/// An error's message with its sources': `error: cause: cause`.
fn message_with_sources(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// What a handler returns: the step's output, or an error.
pub type HandlerResult = std::result::Result<Value, HandlerError>;

type Handler = Arc<dyn Fn(Value) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// Step slug -> async handler. A handler receives the task's input (see the SQL API's data
/// flow rules) and returns its output.
#[derive(Clone, Default)]
pub struct StepFunctions {
    handlers: HashMap<String, Handler>,
}

impl StepFunctions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the handler of `step_slug`; builder style.
    pub fn step<F, Fut>(mut self, step_slug: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.insert(step_slug, handler);
        self
    }

    /// Adds (or replaces) the handler of `step_slug`.
    pub fn insert<F, Fut>(&mut self, step_slug: impl Into<String>, handler: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |input| handler(input).boxed());
        self.handlers.insert(step_slug.into(), handler);
    }

    pub fn contains(&self, step_slug: &str) -> bool {
        self.handlers.contains_key(step_slug)
    }

    /// The steps of `flow` that have no handler, in step order. Event steps (completed by
    /// `send_event`) and sub-flow steps (whose tasks are runs of another workflow) have no tasks
    /// for a worker, so they need none.
    pub fn missing_for(&self, flow: &FlowDefinition) -> Vec<String> {
        flow.steps
            .iter()
            .filter(|s| s.step_type != StepType::Event && s.flow.is_none())
            .filter(|s| !self.contains(&s.step_slug))
            .map(|s| s.step_slug.clone())
            .collect()
    }

    fn get(&self, step_slug: &str) -> Option<Handler> {
        self.handlers.get(step_slug).cloned()
    }
}

impl std::fmt::Debug for StepFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut slugs: Vec<&String> = self.handlers.keys().collect();
        slugs.sort();
        f.debug_struct("StepFunctions")
            .field("steps", &slugs)
            .finish()
    }
}

/// How a [`Worker`] works.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub workflow_slug: String,
    /// Handlers running at once at most. A task holds its slot until it is answered, or, with
    /// `complete_in_batches`, until its completion is queued for the next batch. Default 10;
    /// [`Worker::connect`] takes 0 as 1 and caps it at `i32::MAX`.
    pub concurrency: usize,
    /// Tasks claimed per `poll_tasks` call at most (never more than the free slots). Default 10.
    pub batch_size: i32,
    /// How long one `poll_tasks` waits for work server-side. Default 1000 ms.
    pub max_wait_ms: i32,
    /// Recorded with claimed tasks. Default `rust-<pid>-<random>`.
    pub worker_id: String,
    /// After the shutdown signal, how long to wait for running handlers. Default 30 s.
    pub shutdown_deadline: Duration,
    /// Send completions in batches with `complete_tasks` (those that finish while an earlier
    /// batch is on its way go together, in one commit). Default true.
    pub complete_in_batches: bool,
}

impl WorkerConfig {
    pub fn new(workflow_slug: impl Into<String>) -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        WorkerConfig {
            workflow_slug: workflow_slug.into(),
            concurrency: 10,
            batch_size: 10,
            max_wait_ms: 1000,
            worker_id: format!("rust-{}-{}", std::process::id(), &random[..8]),
            shutdown_deadline: Duration::from_secs(30),
            complete_in_batches: true,
        }
    }
    pub fn complete_in_batches(mut self, batched: bool) -> Self {
        self.complete_in_batches = batched;
        self
    }
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    pub fn batch_size(mut self, n: i32) -> Self {
        self.batch_size = n.max(1);
        self
    }
    pub fn max_wait_ms(mut self, ms: i32) -> Self {
        self.max_wait_ms = ms.max(0);
        self
    }
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }
}

/// A shutdown signal for [`Worker::run`]: `send(true)` on the sender stops the worker.
pub fn shutdown_channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Resolves when the signal is true. A dropped sender never signals.
async fn signalled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Opens a connection (without TLS) and drives it on the current runtime.
pub async fn connect(conn_str: &str, application_name: &str) -> Result<Client> {
    let (client, connection) = config(conn_str, application_name)?.connect(NoTls).await?;
    tokio::spawn(async move {
        // The error (if any) surfaces on the client's next call as a closed connection.
        let _ = connection.await;
    });
    Ok(client)
}

/// The connection string's configuration, with `application_name` and TCP keepalive after
/// 30 s idle unless it sets its own: a connection that died half-open (the server's host
/// gone, a partition) is then noticed in about a minute instead of the system's two hours,
/// so a waiting poll or an answer does not hang on it.
pub(crate) fn config(conn_str: &str, application_name: &str) -> Result<tokio_postgres::Config> {
    let mut config = tokio_postgres::Config::from_str(conn_str).map_err(Error::Db)?;
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    // tokio-postgres' defaults: keepalives on, two hours idle
    if config.get_keepalives_idle() == std::time::Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(std::time::Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(std::time::Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    Ok(config)
}

/// A completion waiting for the batcher: the task, its output, and where its answer goes.
type Pending = (Task, Value, oneshot::Sender<Result<bool>>);

/// How long the worker waits before polling again after a poll was cancelled by someone
/// else (see `Worker::run`).
const FOREIGN_CANCEL_PAUSE: Duration = Duration::from_millis(100);

/// How many completions one `complete_tasks` call carries at most.
const MAX_COMPLETION_BATCH: usize = 100;

struct Answerer {
    client: Arc<Client>,
    complete: Statement,
    fail: Statement,
    /// With `complete_in_batches`, completions go to the batcher task.
    batcher: Option<mpsc::UnboundedSender<Pending>>,
}

impl Answerer {
    async fn new(client: Client, batched: bool) -> Result<Answerer> {
        let client = Arc::new(client);
        let complete = client
            .prepare("SELECT quantum_flow.complete_task($1, $2, $3, $4::jsonb, $5)")
            .await?;
        let fail = client
            .prepare("SELECT quantum_flow.fail_task($1, $2, $3, $4, $5, $6)")
            .await?;
        let batcher = if batched {
            let batch = client
                .prepare(
                    "SELECT quantum_flow.complete_tasks($1::uuid[], $2::text[], $3::int[], \
                            $4::jsonb[], $5::int[])",
                )
                .await?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_completions(
                client.clone(),
                batch,
                complete.clone(),
                rx,
            ));
            Some(tx)
        } else {
            None
        };
        Ok(Answerer {
            client,
            complete,
            fail,
            batcher,
        })
    }

    /// Completes the task. `slot` is the task's concurrency slot: once the completion is
    /// queued for the batcher, the slot is given back, so that the next task runs while the
    /// batch is on its way; answering on its own, the task keeps its slot until answered.
    async fn complete(
        &self,
        task: &Task,
        output: &Value,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<bool> {
        if let Some(batcher) = &self.batcher {
            let (tx, rx) = oneshot::channel();
            if batcher.send((task.clone(), output.clone(), tx)).is_ok() {
                drop(slot);
                if let Ok(answer) = rx.await {
                    return answer;
                }
            }
            // the batcher is gone (its connection closed): answer directly, which reports it
        }
        complete_one(&self.client, &self.complete, task, output).await
    }

    async fn fail(&self, task: &Task, message: &str, retry: bool) -> Result<FailOutcome> {
        let row = self
            .client
            .query_one(
                &self.fail,
                &[
                    &task.run_id,
                    &task.step_slug,
                    &task.task_index,
                    &message,
                    &Some(task.attempt),
                    &retry,
                ],
            )
            .await?;
        let status: String = row.try_get(0)?;
        FailOutcome::parse(&status)
            .ok_or_else(|| Error::Decode(format!("fail_task returned {status:?}")))
    }
}

async fn complete_one(
    client: &Client,
    statement: &Statement,
    task: &Task,
    output: &Value,
) -> Result<bool> {
    let row = client
        .query_one(
            statement,
            &[
                &task.run_id,
                &task.step_slug,
                &task.task_index,
                output,
                &Some(task.attempt),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The batcher: waits for a completion, takes every other one already waiting (up to
/// `MAX_COMPLETION_BATCH`), and sends them in one `complete_tasks` call, one commit. Under
/// load, completions batch up by themselves; an idle worker's single completion goes at once.
/// When a batch fails (one output the server refuses fails the whole call), each of its
/// completions is sent on its own, so that only the bad one reports the error.
async fn batch_completions(
    client: Arc<Client>,
    batch: Statement,
    single: Statement,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while pending.len() < MAX_COMPLETION_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let run_ids: Vec<uuid::Uuid> = pending.iter().map(|p| p.0.run_id).collect();
        let steps: Vec<&str> = pending.iter().map(|p| p.0.step_slug.as_str()).collect();
        let indexes: Vec<i32> = pending.iter().map(|p| p.0.task_index).collect();
        let outputs: Vec<&Value> = pending.iter().map(|p| &p.1).collect();
        let attempts: Vec<i32> = pending.iter().map(|p| p.0.attempt).collect();
        let answered = client
            .query_one(&batch, &[&run_ids, &steps, &indexes, &outputs, &attempts])
            .await
            .map_err(Error::from)
            .and_then(|row| Ok(row.try_get::<_, Vec<bool>>(0)?));
        match answered {
            Ok(results) if results.len() == pending.len() => {
                for ((_, _, tx), done) in pending.into_iter().zip(results) {
                    let _ = tx.send(Ok(done));
                }
            }
            _ => {
                for (task, output, tx) in pending {
                    let _ = tx.send(complete_one(&client, &single, &task, &output).await);
                }
            }
        }
    }
}

/// Whether `complete_task` refused the output itself: `output_too_large`, or a value that
/// `jsonb` cannot hold (SQLSTATE class 22: a `\u0000` in a string, for one).
fn output_refused(e: &Error) -> bool {
    e.sqlstate().is_some_and(|s| s.starts_with("22"))
}

/// What became of one claimed task.
enum Outcome {
    Completed,
    Failed,
    Ignored,
    Abandoned,
    AnswerError(Error),
}

/// A worker for one workflow. Build it with [`Worker::connect`], run it with [`Worker::run`].
pub struct Worker {
    config: WorkerConfig,
    handlers: StepFunctions,
    poll_client: Client,
    poll_cancel: CancelToken,
    answerer: Arc<Answerer>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Connects the worker's two connections and checks that the workflow exists
    /// (`workflow_not_found`) and that every one of its steps has a handler
    /// ([`Error::MissingHandlers`]; event and sub-flow steps need none).
    pub async fn connect(
        conn_str: &str,
        config: WorkerConfig,
        handlers: StepFunctions,
    ) -> Result<Worker> {
        let mut config = config;
        // Also when set through the public field: with no slot the worker would never claim,
        // and a batch size is an int.
        config.concurrency = config.concurrency.clamp(1, i32::MAX as usize);
        let name = format!("quantum_flow worker {}", config.worker_id);
        let answer_client = connect(conn_str, &name).await?;
        let flow = api::get_flow(&answer_client, &config.workflow_slug).await?;
        let missing = handlers.missing_for(&flow);
        if !missing.is_empty() {
            return Err(Error::MissingHandlers(missing));
        }
        let poll_client = connect(conn_str, &name).await?;
        let poll_cancel = poll_client.cancel_token();
        let answerer = Arc::new(Answerer::new(answer_client, config.complete_in_batches).await?);
        Ok(Worker {
            config,
            handlers,
            poll_client,
            poll_cancel,
            answerer,
        })
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Works until `shutdown` turns true (see the module docs for what shutdown does), or
    /// until a connection fails or the workflow disappears (then the error is returned after
    /// the tasks in hand are finished). A poll cancelled by someone else is polled again.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<WorkerStats> {
        let mut stats = WorkerStats::default();
        let workflow_slug: Arc<str> = Arc::from(self.config.workflow_slug.as_str());
        let mut fatal: Option<Error> = None;
        // Every spawned task until it is answered; a slot is held from the claim until the
        // task is answered or its completion is queued (see `Answerer::complete`).
        let mut in_flight: JoinSet<Outcome> = JoinSet::new();
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let (hard_stop_tx, hard_stop) = watch::channel(false);

        loop {
            while let Some(joined) = in_flight.try_join_next() {
                self.tally(joined, &mut stats, &mut fatal);
            }
            if fatal.is_some() || *shutdown.borrow() {
                break;
            }
            let free = slots.available_permits();
            // Completions queued and not yet answered: claiming pauses while a whole batch of
            // them waits, so that a slow answer connection holds back the claims.
            let unanswered = in_flight
                .len()
                .saturating_sub(self.config.concurrency - free);
            if free == 0 || unanswered >= MAX_COMPLETION_BATCH {
                tokio::select! {
                    Some(joined) = in_flight.join_next() => {
                        self.tally(joined, &mut stats, &mut fatal)
                    }
                    // a slot given back (the permit is only a wake-up here: it drops at once)
                    _ = slots.acquire(), if free == 0 => {}
                    _ = signalled(&mut shutdown) => {}
                }
                continue;
            }
            let options = PollOptions {
                batch_size: self.config.batch_size.min(free as i32),
                max_wait_ms: self.config.max_wait_ms,
                worker_id: Some(self.config.worker_id.clone()),
            };
            let poll = api::poll_tasks(&self.poll_client, &self.config.workflow_slug, &options);
            tokio::pin!(poll);
            let polled = tokio::select! {
                polled = &mut poll => polled,
                _ = signalled(&mut shutdown) => {
                    // Cancel the waiting poll, then still take its answer: an error means it
                    // rolled back (claimed nothing), rows mean it committed its claims. A
                    // cancel that reaches the server between statements is ignored there, so
                    // it is repeated until the poll ends (once it has, the connection runs
                    // nothing more, so an extra cancel is harmless).
                    let mut retry = Duration::from_millis(50);
                    loop {
                        let _ = self.poll_cancel.cancel_query(NoTls).await;
                        tokio::select! {
                            polled = &mut poll => break polled,
                            _ = tokio::time::sleep(retry) => retry = (retry * 2).min(Duration::from_secs(1)),
                        }
                    }
                }
            };
            match polled {
                Ok(tasks) => {
                    for task in tasks {
                        stats.claimed += 1;
                        // Only this loop takes slots, and the poll asked for no more tasks
                        // than were free, so every claimed task gets one.
                        let slot = slots.clone().try_acquire_owned().ok();
                        in_flight.spawn(run_task(
                            task.clone(),
                            workflow_slug.clone(),
                            self.handlers.get(&task.step_slug),
                            self.answerer.clone(),
                            slot,
                            hard_stop.clone(),
                        ));
                    }
                }
                Err(e) if *shutdown.borrow() && e.sqlstate() == Some("57014") => break,
                // A cancel this worker did not send (pg_cancel_backend, a statement_timeout
                // shorter than max_wait_ms): that poll rolled back and claimed nothing, and
                // the connection is fine, so poll again (after a pause, should every poll
                // be cancelled).
                Err(e) if e.sqlstate() == Some("57014") => {
                    log::warn!(
                        target: "quantum_flow::worker",
                        "poll_tasks of workflow {workflow_slug:?} was cancelled ({e}); polling again"
                    );
                    tokio::time::sleep(FOREIGN_CANCEL_PAUSE).await;
                }
                Err(e) => fatal = Some(e),
            }
        }

        // Finish what we hold, until the deadline; then drop the handlers still running.
        let deadline = tokio::time::sleep(self.config.shutdown_deadline);
        tokio::pin!(deadline);
        let mut hard_stopped = false;
        loop {
            tokio::select! {
                joined = in_flight.join_next() => match joined {
                    Some(joined) => self.tally(joined, &mut stats, &mut fatal),
                    None => break,
                },
                _ = &mut deadline, if !hard_stopped => {
                    hard_stopped = true;
                    let _ = hard_stop_tx.send(true);
                }
            }
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    fn tally(
        &self,
        joined: std::result::Result<Outcome, tokio::task::JoinError>,
        stats: &mut WorkerStats,
        fatal: &mut Option<Error>,
    ) {
        match joined {
            Ok(Outcome::Completed) => stats.completed += 1,
            Ok(Outcome::Failed) => stats.failed += 1,
            Ok(Outcome::Ignored) => stats.ignored += 1,
            Ok(Outcome::Abandoned) => stats.abandoned += 1,
            Ok(Outcome::AnswerError(e)) => {
                stats.answer_errors += 1;
                stats.last_answer_error = Some(e.to_string());
                // A closed answer connection makes every further claim useless: stop.
                if self.answerer.client.is_closed() && fatal.is_none() {
                    *fatal = Some(e);
                }
            }
            // run_task itself does not panic (handler panics are caught inside it)
            Err(e) => {
                stats.answer_errors += 1;
                stats.last_answer_error = Some(format!("task runner failed: {e}"));
            }
        }
    }
}

/// The message of a caught panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// A handler that did not return an output: the message to fail the attempt with, and
/// whether to retry it.
struct Failure {
    message: String,
    retry: bool,
}

async fn run_task(
    task: Task,
    workflow_slug: Arc<str>,
    handler: Option<Handler>,
    answerer: Arc<Answerer>,
    slot: Option<OwnedSemaphorePermit>,
    mut hard_stop: watch::Receiver<bool>,
) -> Outcome {
    let result: std::result::Result<Value, Failure> = match handler {
        None => Err(Failure {
            message: format!("no handler for step \"{}\" in this worker", task.step_slug),
            retry: true,
        }),
        Some(handler) => {
            let input = task.input.clone();
            // The handler is called inside the guarded future, so a panic while creating its
            // future is caught too.
            let guarded = AssertUnwindSafe(async move { handler(input).await }).catch_unwind();
            tokio::select! {
                finished = guarded => match finished {
                    Ok(Ok(output)) => Ok(output),
                    Ok(Err(e)) => Err(Failure {
                        message: message_with_sources(&*e),
                        retry: !is_permanent(&e),
                    }),
                    Err(payload) => Err(Failure {
                        message: format!("handler panicked: {}", panic_message(&*payload)),
                        retry: true,
                    }),
                },
                _ = signalled(&mut hard_stop) => return Outcome::Abandoned,
            }
        }
    };
    if let Err(failure) = &result {
        // Every handler error is logged (with `log`; install a logger to see it), naming the
        // task and, for an error with sources, the whole chain.
        log::warn!(
            target: "quantum_flow::worker",
            "workflow {workflow_slug}, step {}, task {}, attempt {} failed{}: {}",
            task.step_slug,
            task.task_index,
            task.attempt,
            if failure.retry { "" } else { " (permanent: not retried)" },
            failure.message
        );
    }
    // Answers are not interrupted by the shutdown deadline: a dropped query could still
    // commit, so it is awaited to keep the stats exact.
    match result {
        Ok(output) => match answerer.complete(&task, &output, slot).await {
            Ok(true) => Outcome::Completed,
            Ok(false) => Outcome::Ignored,
            // an output the server refuses (too large, or not storable as jsonb) would be
            // refused again: fail the task at once instead of letting it time out
            Err(e) if output_refused(&e) => {
                let message = format!("output refused: {e}");
                log::warn!(
                    target: "quantum_flow::worker",
                    "workflow {workflow_slug}, step {}, task {}, attempt {} failed (permanent: \
                     not retried): {message}",
                    task.step_slug,
                    task.task_index,
                    task.attempt
                );
                match answerer.fail(&task, &message, false).await {
                    Ok(FailOutcome::Queued | FailOutcome::Failed) => Outcome::Failed,
                    Ok(FailOutcome::Ignored) => Outcome::Ignored,
                    Err(e) => Outcome::AnswerError(e),
                }
            }
            Err(e) => Outcome::AnswerError(e),
        },
        Err(failure) => match answerer.fail(&task, &failure.message, failure.retry).await {
            Ok(FailOutcome::Queued | FailOutcome::Failed) => Outcome::Failed,
            Ok(FailOutcome::Ignored) => Outcome::Ignored,
            Err(e) => Outcome::AnswerError(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connections_get_tcp_keepalive_unless_the_string_sets_its_own() {
        let c = config("host=localhost user=qf", "quantum_flow worker").unwrap();
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(10)));
        assert_eq!(c.get_keepalives_retries(), Some(3));
        assert_eq!(c.get_application_name(), Some("quantum_flow worker"));
        let c = config(
            "host=localhost keepalives_idle=5 keepalives_retries=9 application_name=mine",
            "quantum_flow worker",
        )
        .unwrap();
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(10)));
        assert_eq!(c.get_keepalives_retries(), Some(9));
        assert_eq!(c.get_application_name(), Some("mine"));
    }
}
