//! Big maps: (j) how soon the first task of a 100,000-element map can be claimed, for a map
//! over the flow input (the fan-out happens inside start_flow) and for a map over a step's
//! output (inside that step's complete_task); (k) what one task costs in a 1,000-task map
//! against a 1,000,000-task one, for the fan-out and for claiming and completing.

use crate::latency::{waiting_poll, Asleep};
use crate::workers::{OutputFn, Progress, QfLoop, Task, Worker};
use crate::{
    cancel, check_identity_output, numbers, settle, until_completed, Options, Result, Running,
    FANOUT_FLOW, ROOT_FLOW,
};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;

/// One way of making a big map ready, timed.
pub struct FirstClaimCase {
    /// the call sent (start_flow / complete_task) -> the waiting poller has a task of the map
    pub first: Duration,
    /// the call sent -> it returned
    pub call: Duration,
    /// cancel_run of the run afterwards (its map's queued tasks discarded)
    pub cancel: Duration,
}

pub struct FirstClaim {
    pub root: FirstClaimCase,
    pub fanout: FirstClaimCase,
}

/// Starts a run of bench_fanout and claims its `list` task with `worker`.
async fn fanout_run(control: &Client, worker: &Worker) -> Result<(Uuid, Task)> {
    let run_id = Uuid::new_v4();
    control
        .execute(
            "SELECT quantum_flow.start_flow($1, '{}', $2)",
            &[&FANOUT_FLOW, &run_id],
        )
        .await?;
    let list = worker.poll(FANOUT_FLOW, 1, 1000, "completer").await?;
    match <[Task; 1]>::try_from(list) {
        Ok([t]) if t.run_id == run_id && t.step_slug == "list" => Ok((run_id, t)),
        _ => Err(format!("run {run_id}: expected to claim its list task").into()),
    }
}

/// (j) `first_claim_tasks` elements, two ways, one sample each; a connection waits in
/// poll_tasks(batch_size => 1, max_wait_ms => 5000), seen asleep in pg_stat_activity, before
/// the clock starts. (i) Root: the control connection records t0 and sends
/// start_flow(bench_root, <array>) (the array is built before t0); t1 when the poller has a
/// task of the run. (ii) Fan-out: a run of bench_fanout whose `list` task another connection
/// has claimed; t0, then complete_task(list, <array>); t1 when the poller has a task of `m`.
/// Each run is cancelled afterwards (timed: it discards the map's queued tasks).
pub async fn first_claim_phase(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
) -> Result<FirstClaim> {
    let n = o.first_claim_tasks;
    let completer = crew[0].clone();
    let waiter = crew[1].clone();
    let asleep = Asleep::new(control).await?;
    let array = numbers(n);

    // (i) a map over the flow input: the fan-out is part of start_flow
    let start_flow = control
        .prepare_typed(
            "SELECT quantum_flow.start_flow($1, $2, $3)",
            &[Type::TEXT, Type::JSONB, Type::UUID],
        )
        .await?;
    let run_id = Uuid::new_v4();
    let poll = waiting_poll(&waiter, ROOT_FLOW);
    asleep.wait(control, waiter.pid).await?;
    let t0 = Instant::now();
    control
        .execute(&start_flow, &[&ROOT_FLOW, &array, &run_id])
        .await?;
    let call = t0.elapsed();
    let (t1, got) = poll.await?;
    let got = got?;
    if !matches!(got.as_slice(), [t] if t.run_id == run_id && t.step_slug == "items") {
        return Err(format!("root map run {run_id}: the waiter did not receive a task").into());
    }
    let root = FirstClaimCase {
        first: t1.duration_since(t0),
        call,
        cancel: cancel(control, run_id).await?,
    };

    // (ii) a map over a step's output: the fan-out is part of that step's complete_task
    let (run_id, list) = fanout_run(control, &completer).await?;
    let poll = waiting_poll(&waiter, FANOUT_FLOW);
    asleep.wait(control, waiter.pid).await?;
    let t0 = Instant::now();
    if !completer.complete(&list, &array).await? {
        return Err(format!("run {run_id}: complete_task(list) returned false").into());
    }
    let call = t0.elapsed();
    let (t1, got) = poll.await?;
    let got = got?;
    if !matches!(got.as_slice(), [t] if t.run_id == run_id && t.step_slug == "m") {
        return Err(format!("fan-out run {run_id}: the waiter did not receive a map task").into());
    }
    let fanout = FirstClaimCase {
        first: t1.duration_since(t0),
        call,
        cancel: cancel(control, run_id).await?,
    };
    Ok(FirstClaim { root, fanout })
}

/// One map of (k), measured.
pub struct CostCase {
    pub tasks: usize,
    /// complete_task(list, <tasks-element array>): the step readied, its first chunk of tasks
    /// created (1,000)
    pub fanout_call: Duration,
    /// polls that created the rest, one chunk each
    pub chunks: usize,
    /// the call sent -> every task of the map exists: the whole fan-out
    pub fanout: Duration,
    /// tasks claimed and completed by the workers in `drain`
    pub drained: usize,
    /// workers released (the map fully queued) -> the `drained`-th completion returned
    pub drain: Duration,
    /// cancel_run of the run afterwards, when it had not completed
    pub cancel: Option<Duration>,
}

impl CostCase {
    pub fn fanout_per_task(&self) -> Duration {
        self.fanout / self.tasks as u32
    }

    pub fn drain_per_task(&self) -> Duration {
        self.drain / self.drained as u32
    }
}

/// Runs of the small map in (k): one such run takes a fraction of a second, so a single
/// commit flush or scheduling hiccup moves its per-task figures by a tenth or more; the
/// median of several is what is compared with the big map (run once).
pub const SMALL_RUNS: usize = 5;

pub struct Cost {
    /// `SMALL_RUNS` runs of the small map, in the order they ran.
    pub small: Vec<CostCase>,
    pub big: CostCase,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

impl Cost {
    /// The small map's fan-out per task: the median of its runs.
    pub fn small_fanout_per_task(&self) -> Duration {
        median(self.small.iter().map(CostCase::fanout_per_task).collect())
    }

    /// The small map's claim+complete per task: the median of its runs.
    pub fn small_drain_per_task(&self) -> Duration {
        median(self.small.iter().map(CostCase::drain_per_task).collect())
    }
}

/// Polls bench_fanout (`batch_size => 1`) until the run's map step `m` has every task: each
/// poll claims one task (left claimed: the run is cancelled or its claims time out later),
/// then creates the next chunk of an unfinished map of the workflow (doubling up to
/// `quantum_flow.fan_out_chunk`). Returns how many polls it took. (`maintain()` creates chunks
/// too, but also sweeps every queue, which costs more with a million messages queued.)
async fn finish_fan_out(control: &Client, run_id: Uuid) -> Result<usize> {
    let mut polls = 0;
    loop {
        let next: Option<i32> = control
            .query_one(
                "SELECT fan_out_next FROM quantum_flow.step_states WHERE run_id = $1 AND step_slug = 'm'",
                &[&run_id],
            )
            .await?
            .get(0);
        if next.is_none() {
            return Ok(polls);
        }
        if polls > 10_000 {
            return Err(format!("run {run_id}: its map's fan-out did not finish").into());
        }
        control
            .execute(
                "SELECT count(*) FROM quantum_flow.poll_tasks($1, 1, 0)",
                &[&FANOUT_FLOW],
            )
            .await?;
        polls += 1;
    }
}

/// One map of (k): a run of bench_fanout; worker 0 claims `list`; the clock times
/// complete_task(list, 0..tasks) (the array built before) and the polls that create the rest of
/// its tasks (`finish_fan_out`); then the workers (per-task
/// complete_task, as in (a)) are released on the queued map, and the clock runs until the
/// `drain`-th completion returns. A map drained whole is checked to complete; otherwise its
/// run is cancelled (timed).
async fn cost_case(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
    tasks: usize,
    drain: usize,
) -> Result<CostCase> {
    let array = numbers(tasks);
    let (run_id, list) = fanout_run(control, &crew[0]).await?;
    let t0 = Instant::now();
    if !crew[0].complete(&list, &array).await? {
        return Err(format!("run {run_id}: complete_task(list) returned false").into());
    }
    let fanout_call = t0.elapsed();
    let chunks = finish_fan_out(control, run_id).await?;
    let fanout = t0.elapsed();
    drop(array);

    let output: OutputFn = Arc::new(|t: &Task| t.input["item"].clone());
    let progress = Progress::new(drain as u64);
    let t1 = Instant::now();
    let running = Running::qf(
        crew,
        QfLoop {
            workflow: FANOUT_FLOW.into(),
            batch_size: o.batch_size,
            max_wait_ms: o.max_wait_ms,
            output,
            claimed: None,
            batched: false,
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    let running = running
        .wait_or_finish(&progress, control, &format!("qf_{FANOUT_FLOW}"))
        .await?;
    let drain_time = t1.elapsed();
    running.finish().await?;
    let cancelled = if drain >= tasks {
        let doc = until_completed(control, run_id).await?;
        check_identity_output(&doc, "m", tasks)?;
        None
    } else {
        Some(cancel(control, run_id).await?)
    };
    Ok(CostCase {
        tasks,
        fanout_call,
        chunks,
        fanout,
        drained: drain,
        drain: drain_time,
        cancel: cancelled,
    })
}

/// (k) The small map (`small_map` tasks, drained whole; `SMALL_RUNS` times) and the big map
/// (`big_map` tasks, its first `cost_tasks` drained, then cancelled), the same workers.
pub async fn cost_phase(o: &Options, control: &Client, crew: &[Arc<Worker>]) -> Result<Cost> {
    let mut small = Vec::with_capacity(SMALL_RUNS);
    for _ in 0..SMALL_RUNS {
        small.push(cost_case(o, control, crew, o.small_map, o.small_map).await?);
        settle().await;
    }
    let big = cost_case(o, control, crew, o.big_map, o.cost_tasks).await?;
    Ok(Cost { small, big })
}
