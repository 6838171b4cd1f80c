//! `execute_dynamic`: start a run of a workflow and work it to the end in this process, as
//! a script does that defines its handlers and waits for the answer.

use crate::api;
use crate::error::{Error, Result};
use crate::types::RunStatus;
use crate::worker::{connect, shutdown_channel, StepFunctions, Worker, WorkerConfig};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Options of [`execute_dynamic`].
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    /// How long the run may take. Default 300 s.
    pub timeout: Duration,
    /// The worker's `poll_tasks` wait. Default 200 ms. (The run's end is waited for with
    /// `wait_run`, which returns when the commit that ends it happens.)
    pub poll_wait: Duration,
    /// Tasks worked at once. Default 10.
    pub concurrency: usize,
    /// Once the run has ended (or timed out), how long handlers still running get to finish
    /// (they can only be tasks of other runs, or of a timed-out run). Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        ExecuteOptions {
            timeout: Duration::from_secs(300),
            poll_wait: Duration::from_millis(200),
            concurrency: 10,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Stops the worker when dropped: at the end of [`execute_dynamic`], and also when its future
/// is dropped before that (a `tokio::time::timeout` around it), after which the worker finishes
/// and answers the tasks it holds, then ends, on its own.
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// Runs workflow `workflow_slug` with `input` to the end and returns the run's output
/// (`{"<leaf step>": <output>, ...}`).
///
/// It checks that the workflow exists (`Error::Api` with `workflow_not_found`) and that every
/// step has a handler (`Error::MissingHandlers` naming all missing steps) before starting
/// anything, then starts the run and works it with a [`Worker`] until the run completes, fails
/// (`Error::RunFailed` with the run's error message, which names the step, task and attempt
/// that failed: `step <slug>, task <i>, attempt <n>: <error>`) or `timeout` passes (`Error::Timeout`;
/// the run is left `started` for other workers). The worker also works tasks of other runs of
/// the workflow that it claims meanwhile.
pub async fn execute_dynamic(
    conn_str: &str,
    workflow_slug: &str,
    input: Value,
    step_functions: StepFunctions,
    options: ExecuteOptions,
) -> Result<Value> {
    let control = connect(conn_str, "quantum_flow execute_dynamic").await?;
    let flow = api::get_flow(&control, workflow_slug).await?;
    let missing = step_functions.missing_for(&flow);
    if !missing.is_empty() {
        return Err(Error::MissingHandlers(missing));
    }
    let poll_wait_ms = options.poll_wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    let config = WorkerConfig::new(workflow_slug)
        .concurrency(options.concurrency)
        .max_wait_ms(poll_wait_ms)
        .shutdown_deadline(options.shutdown_grace);
    let worker = Worker::connect(conn_str, config, step_functions).await?;

    let run_id = api::start_flow(&control, workflow_slug, &input, None).await?;
    let (stop, shutdown) = shutdown_channel();
    let stop = StopOnDrop(stop);
    let mut working = tokio::spawn(worker.run(shutdown));

    // Wait for the run to end with wait_run (woken by the commit that ends it), in slices of
    // at most a minute (the server's default bound), watching the worker meanwhile.
    let deadline = Instant::now() + options.timeout;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = left.as_millis().clamp(0, 60_000) as i32;
        let run = tokio::select! {
            run = api::wait_run(&control, run_id, slice) => match run {
                Ok(run) => run,
                Err(e) => break Err(e),
            },
            // The worker stops on its own only when something broke.
            stopped = &mut working => {
                return Err(match stopped {
                    Ok(Err(e)) => e,
                    Ok(Ok(_)) => Error::Decode("the worker stopped unexpectedly".into()),
                    Err(e) => Error::WorkerPanicked(e.to_string()),
                });
            }
        };
        match run.status {
            RunStatus::Completed => break Ok(run.output.unwrap_or(Value::Null)),
            RunStatus::Failed => {
                break Err(Error::RunFailed {
                    run_id,
                    message: run.error_message.unwrap_or_default(),
                })
            }
            // paused: resume_run (from elsewhere) lets it go on
            RunStatus::Started | RunStatus::Paused if Instant::now() >= deadline => {
                break Err(Error::Timeout { run_id })
            }
            RunStatus::Started | RunStatus::Paused => {}
        }
    };
    drop(stop);
    // The run's outcome is known: the worker's own result (its stats, or an error while it
    // drained tasks of other runs) does not change it.
    let _ = working.await;
    outcome
}
