//! Latency with a poller already waiting: (c) handoff (complete_task -> the waiting poller has
//! the next step) and (i) idle pickup (start_flow -> the waiting poller has the run's task).
//! Both use one monotonic clock in one process, and start the clock only once the waiting
//! poller is seen asleep in pg_stat_activity.

use crate::workers::{Task, Worker};
use crate::{prepare_start_flow, Options, Result, LATENCY_FLOW, PICKUP_FLOW};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

pub struct Latency {
    /// the event sent -> the waiting poller has the task
    pub samples: Vec<Duration>,
    /// the call that caused it (complete_task, start_flow) sent -> returned
    pub call: Vec<Duration>,
}

impl Latency {
    fn new(n: usize) -> Self {
        Latency {
            samples: Vec::with_capacity(n),
            call: Vec::with_capacity(n),
        }
    }

    /// Both sample sets, sorted.
    pub fn sorted(&self) -> (Vec<Duration>, Vec<Duration>) {
        let mut s = self.samples.clone();
        s.sort();
        let mut c = self.call.clone();
        c.sort();
        (s, c)
    }
}

/// Watches a backend in pg_stat_activity until it sleeps inside poll_tasks.
pub struct Asleep {
    statement: Statement,
}

impl Asleep {
    pub async fn new(control: &Client) -> Result<Asleep> {
        Ok(Asleep {
            statement: control
                .prepare_typed(
                    "SELECT state = 'active' AND wait_event_type = 'Extension' \
                     FROM pg_stat_activity WHERE pid = $1",
                    &[Type::INT4],
                )
                .await?,
        })
    }

    /// Waits until backend `pid` is active in wait event type `Extension` (poll_tasks asleep
    /// on its latch), then 5 ms more: the event is advertised just before poll_tasks' first
    /// claim query, which must find nothing first.
    pub async fn wait(&self, control: &Client, pid: i32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let row = control.query_opt(&self.statement, &[&pid]).await?;
            if row.is_some_and(|r| r.get::<_, Option<bool>>(0) == Some(true)) {
                break;
            }
            if Instant::now() > deadline {
                return Err("the waiting poller never showed up in pg_stat_activity".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    }
}

/// A `poll_tasks(workflow, batch_size => 1, max_wait_ms => 5000)` on its own tokio task: the
/// instant it returned, and what.
pub type WaitingPoll = JoinHandle<(Instant, Result<Vec<Task>>)>;

pub fn waiting_poll(worker: &Arc<Worker>, workflow: &'static str) -> WaitingPoll {
    let w = worker.clone();
    tokio::spawn(async move {
        let tasks = w.poll(workflow, 1, 5000, "waiter").await;
        (Instant::now(), tasks)
    })
}

/// (c) `latency_runs` runs of s1 -> s2. Per run: one connection claims s1; another connection
/// blocks in poll_tasks(max_wait_ms => 5000) (checked in pg_stat_activity); the first records
/// t0 and sends complete_task(s1) (autocommit); the second records t1 when poll_tasks returns
/// s2. Handoff latency = t1 - t0.
pub async fn handoff_phase(o: &Options, control: &Client, crew: &[Arc<Worker>]) -> Result<Latency> {
    let completer = crew[0].clone();
    let waiter = crew[1].clone();
    let start_flow = prepare_start_flow(control).await?;
    let asleep = Asleep::new(control).await?;
    let mut lat = Latency::new(o.latency_runs);
    for i in 0..o.latency_runs {
        let run_id: Uuid = control
            .query_one(&start_flow, &[&LATENCY_FLOW, &json!({ "i": i })])
            .await?
            .get(0);
        let s1 = completer.poll(LATENCY_FLOW, 1, 1000, "completer").await?;
        let s1 = match s1.as_slice() {
            [t] if t.run_id == run_id && t.step_slug == "s1" => t,
            _ => return Err(format!("run {run_id}: expected to claim its s1 task").into()),
        };

        let poll = waiting_poll(&waiter, LATENCY_FLOW);
        asleep.wait(control, waiter.pid).await?;

        let t0 = Instant::now();
        if !completer.complete(s1, &json!({ "i": i })).await? {
            return Err(format!("run {run_id}: complete_task(s1) returned false").into());
        }
        let returned = t0.elapsed();
        let (t1, s2) = poll.await?;
        let s2 = s2?;
        let s2 = match s2.as_slice() {
            [t] if t.run_id == run_id && t.step_slug == "s2" => t,
            _ => return Err(format!("run {run_id}: the waiter did not receive s2").into()),
        };
        lat.samples.push(t1.duration_since(t0));
        lat.call.push(returned);
        if !waiter.complete(s2, &json!(null)).await? {
            return Err(format!("run {run_id}: complete_task(s2) returned false").into());
        }
    }
    Ok(lat)
}

/// (i) `latency_runs` runs of a one-step workflow. Per run: a connection blocks in
/// poll_tasks(max_wait_ms => 5000) (checked in pg_stat_activity); the control connection
/// records t0 and sends start_flow (autocommit); the poller records t1 when poll_tasks returns
/// the run's task. Pickup latency = t1 - t0. The task is then completed (not timed).
pub async fn pickup_phase(o: &Options, control: &Client, crew: &[Arc<Worker>]) -> Result<Latency> {
    let waiter = crew[1].clone();
    let start_flow = control
        .prepare_typed(
            "SELECT quantum_flow.start_flow($1, $2, $3)",
            &[Type::TEXT, Type::JSONB, Type::UUID],
        )
        .await?;
    let asleep = Asleep::new(control).await?;
    let mut lat = Latency::new(o.latency_runs);
    for i in 0..o.latency_runs {
        let run_id = Uuid::new_v4();
        let input = json!({ "i": i });
        let poll = waiting_poll(&waiter, PICKUP_FLOW);
        asleep.wait(control, waiter.pid).await?;

        let t0 = Instant::now();
        control
            .execute(&start_flow, &[&PICKUP_FLOW, &input, &run_id])
            .await?;
        let returned = t0.elapsed();
        let (t1, task) = poll.await?;
        let task = task?;
        let task = match task.as_slice() {
            [t] if t.run_id == run_id && t.step_slug == "only" => t,
            _ => return Err(format!("run {run_id}: the waiter did not receive its task").into()),
        };
        lat.samples.push(t1.duration_since(t0));
        lat.call.push(returned);
        if !waiter.complete(task, &json!(null)).await? {
            return Err(format!("run {run_id}: complete_task returned false").into());
        }
    }
    Ok(lat)
}
