//! quantum_flow benchmark harness (`make bench`, see bench/README.md).
//!
//! Usage: quantum_flow_bench [options] <connection string or URL>
//!
//! Runs five measurements in one process against one database that has quantum_flow
//! installed: (a) a 10,000-task map run, (b) 1,000 runs of a 3-step chain, (c) the latency
//! from complete_task to a waiting poller receiving the next step, (d) the same worker loop on
//! plain pgmq, the floor (a) is compared with, (e) how long a run queued behind a
//! 100,000-task map waits for its first claim, with fair polling off and on. Prints the
//! machine, a table, and one line per figure.

mod machine;
mod waits;
mod workers;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;
use workers::{connect, ClaimedFn, LoopStats, OutputFn, PgmqLoop, Progress, QfLoop, Task, Worker};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MAP_FLOW: &str = "bench_map";
const CHAIN_FLOW: &str = "bench_chain";
const LATENCY_FLOW: &str = "bench_latency";
const FLOOR_QUEUE: &str = "bench_floor";
const FAIR_FLOW: &str = "bench_fair";
/// (e) gives up waiting for the small run's first claim after this long.
const FAIR_LIMIT: Duration = Duration::from_secs(60);
/// A phase that has not finished after this long has gone wrong (the whole bench is meant to
/// take well under 3 minutes).
const PHASE_LIMIT: Duration = Duration::from_secs(150);
/// No completion for this long while a phase still has tasks means a task was lost.
const STALL_LIMIT: Duration = Duration::from_secs(20);

struct Options {
    url: String,
    workers: usize,
    batch_size: i32,
    max_wait_ms: i32,
    map_tasks: usize,
    chain_runs: usize,
    latency_runs: usize,
    floor_msgs: usize,
    fair_tasks: usize,
    waits: bool,
    /// which figures to measure, a subset of "abcde"
    phases: String,
}

const USAGE: &str = "usage: quantum_flow_bench [--workers N] [--batch-size N] [--max-wait-ms N] \
[--map-tasks N] [--chain-runs N] [--latency-runs N] [--floor-msgs N] [--fair-tasks N] \
[--phases abcde] [--waits] \
<connection string>";

fn options() -> Result<Options> {
    let mut o = Options {
        url: String::new(),
        workers: 4,
        batch_size: 50,
        max_wait_ms: 100,
        map_tasks: 10_000,
        chain_runs: 1_000,
        latency_runs: 200,
        floor_msgs: 10_000,
        fair_tasks: 100_000,
        waits: false,
        phases: "abcde".to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<usize> {
            let v = args.next().ok_or(format!("{arg} needs a value\n{USAGE}"))?;
            Ok(v.parse().map_err(|_| format!("{arg}: not a number: {v}"))?)
        };
        match arg.as_str() {
            "--workers" => o.workers = value()?.max(2),
            "--batch-size" => o.batch_size = value()?.max(1) as i32,
            "--max-wait-ms" => o.max_wait_ms = value()?.max(1) as i32,
            "--map-tasks" => o.map_tasks = value()?.max(1),
            "--chain-runs" => o.chain_runs = value()?.max(1),
            "--latency-runs" => o.latency_runs = value()?.max(1),
            "--floor-msgs" => o.floor_msgs = value()?.max(1),
            "--fair-tasks" => o.fair_tasks = value()?.max(1),
            "--waits" => o.waits = true,
            "--phases" => {
                o.phases = args
                    .next()
                    .ok_or(format!("--phases needs a value\n{USAGE}"))?;
                if o.phases.is_empty() || !o.phases.chars().all(|c| "abcde".contains(c)) {
                    return Err(
                        format!("--phases takes letters from abcde, got {:?}", o.phases).into(),
                    );
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}").into()),
            s if o.url.is_empty() => o.url = s.to_string(),
            s => return Err(format!("unexpected argument {s}\n{USAGE}").into()),
        }
    }
    if o.url.is_empty() {
        return Err(USAGE.into());
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("bench: {}", describe(e.as_ref()));
        std::process::exit(1);
    }
}

async fn bench() -> Result<()> {
    let o = options()?;
    let control = connect(&o.url, "control").await?;
    let server = machine::server(&control).await?;
    setup(&control, &o).await?;
    let mut crew = Vec::new();
    for i in 0..o.workers {
        crew.push(Arc::new(
            Worker::connect(&o.url, &format!("worker{i}")).await?,
        ));
    }

    let mut r = Results::default();
    if o.phases.contains('a') {
        eprintln!("bench: (a) one run with a map of {} tasks", o.map_tasks);
        r.map = Some(map_phase(&o, &control, &crew).await);
    }
    if o.phases.contains('b') {
        eprintln!("bench: (b) {} runs of a 3-step chain", o.chain_runs);
        r.chain = Some(chain_phase(&o, &control, &crew).await);
    }
    if o.phases.contains('c') {
        eprintln!("bench: (c) {} handoffs", o.latency_runs);
        r.latency = Some(latency_phase(&o, &control, &crew).await);
    }
    if o.phases.contains('d') {
        eprintln!("bench: (d) pgmq floor, {} messages", o.floor_msgs);
        r.floor = Some(floor_phase(&o, &control, &crew).await);
    }
    if o.phases.contains('e') {
        eprintln!(
            "bench: (e) a run queued behind a {}-task map, fair polling off, then on",
            o.fair_tasks
        );
        r.fair = Some(fair_phase(&o, &control, &crew).await);
    }

    report(&o, &machine::machine(), &server, &r);
    let failed = [
        r.map.as_ref().map(|x| x.is_err()),
        r.chain.as_ref().map(|x| x.is_err()),
        r.latency.as_ref().map(|x| x.is_err()),
        r.floor.as_ref().map(|x| x.is_err()),
        r.fair.as_ref().map(|x| x.is_err()),
    ]
    .into_iter()
    .flatten()
    .filter(|f| *f)
    .count();
    if failed > 0 {
        return Err(format!("{failed} figure(s) failed").into());
    }
    Ok(())
}

#[derive(Default)]
struct Results {
    map: Option<Result<Phase>>,
    chain: Option<Result<(Phase, Duration)>>,
    latency: Option<Result<Latency>>,
    floor: Option<Result<(Phase, Duration)>>,
    fair: Option<Result<Fairness>>,
}

/// (e): how long a one-task run queued behind a big map waited for its task to be claimed,
/// with `quantum_flow.fair_polling` off (`None`: not within `FAIR_LIMIT`) and on.
struct Fairness {
    off: Option<Duration>,
    on: Duration,
    /// Tasks of the big map claimed after the small run was started and before its first
    /// task, off and on.
    ahead_off: u64,
    ahead_on: u64,
}

/// An error with the server's SQLSTATE and message when it has them (tokio-postgres' own
/// Display says only "db error").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
    {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Drops what an earlier bench left in this database, then defines the bench's workflows.
async fn setup(control: &Client, o: &Options) -> Result<()> {
    for slug in [MAP_FLOW, CHAIN_FLOW, LATENCY_FLOW, FAIR_FLOW] {
        let deleted = control
            .execute(
                "SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.list_flows() \
                 WHERE workflow_slug = $1",
                &[&slug],
            )
            .await;
        if let Err(e) = deleted {
            return Err(format!(
                "cannot drop workflow {slug} left by an earlier bench ({}); use a fresh \
                 database (make bench creates one)",
                describe(&e)
            )
            .into());
        }
    }
    control
        .execute(
            "SELECT pgmq.drop_queue(queue_name) FROM pgmq.list_queues() WHERE queue_name = $1",
            &[&FLOOR_QUEUE],
        )
        .await?;
    // The map step maps over a step's output, as in the guide's fetch_data -> process_batch.
    // (A root map step would map over the flow input, and every task's input carries the flow
    // input under "run": with a 10,000-element input that is 10,000 copies of it.)
    control
        .batch_execute(&format!(
            "SELECT quantum_flow.create_flow('{MAP_FLOW}');
             SELECT quantum_flow.add_step('{MAP_FLOW}', 'fetch');
             SELECT quantum_flow.add_step('{MAP_FLOW}', 'items', ARRAY['fetch'],
                                          step_type => 'map', initial_tasks => {});
             SELECT quantum_flow.create_flow('{CHAIN_FLOW}');
             SELECT quantum_flow.add_step('{CHAIN_FLOW}', 'a');
             SELECT quantum_flow.add_step('{CHAIN_FLOW}', 'b', ARRAY['a']);
             SELECT quantum_flow.add_step('{CHAIN_FLOW}', 'c', ARRAY['b']);
             SELECT quantum_flow.create_flow('{LATENCY_FLOW}');
             SELECT quantum_flow.add_step('{LATENCY_FLOW}', 's1');
             SELECT quantum_flow.add_step('{LATENCY_FLOW}', 's2', ARRAY['s1']);
             SELECT pgmq.create('{FLOOR_QUEUE}');
             SELECT quantum_flow.create_flow('{FAIR_FLOW}', timeout => 600);
             SELECT quantum_flow.add_step('{FAIR_FLOW}', 'list');
             SELECT quantum_flow.add_step('{FAIR_FLOW}', 'm', ARRAY['list'], step_type => 'map');",
            o.map_tasks
        ))
        .await?;
    Ok(())
}

/// Worker loops running for one phase.
struct Running {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Result<LoopStats>>>,
}

impl Running {
    fn qf(crew: &[Arc<Worker>], job: QfLoop) -> Running {
        let stop = job.stop.clone();
        let job = Arc::new(job);
        let handles = crew
            .iter()
            .enumerate()
            .map(|(i, w)| tokio::spawn(workers::qf_loop(w.clone(), format!("w{i}"), job.clone())))
            .collect();
        Running { stop, handles }
    }

    fn pgmq(crew: &[Arc<Worker>], job: PgmqLoop) -> Running {
        let stop = job.stop.clone();
        let job = Arc::new(job);
        let handles = crew
            .iter()
            .map(|w| tokio::spawn(workers::pgmq_loop(w.clone(), job.clone())))
            .collect();
        Running { stop, handles }
    }

    /// Waits for the phase's last completion; fails if a worker died, if completions stopped
    /// coming (a lost task: the error says where the queue's messages went), or time ran out.
    async fn wait_for(&self, progress: &Progress, control: &Client, queue: &str) -> Result<()> {
        let deadline = Instant::now() + PHASE_LIMIT;
        let (mut seen, mut since) = (progress.done(), Instant::now());
        loop {
            tokio::select! {
                _ = progress.reached.notified() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if self.handles.iter().any(|h| h.is_finished()) {
                        return Err("a worker stopped early (its error follows)".into());
                    }
                    let done = progress.done();
                    if done != seen {
                        (seen, since) = (done, Instant::now());
                    } else if since.elapsed() > STALL_LIMIT {
                        return Err(stalled(control, queue, progress).await.into());
                    }
                    if Instant::now() > deadline {
                        return Err(format!("phase did not finish within {PHASE_LIMIT:?}").into());
                    }
                }
            }
        }
    }

    /// Stops the loops (each ends after its current call) and sums their stats.
    async fn finish(mut self) -> Result<LoopStats> {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoopStats::default();
        for h in std::mem::take(&mut self.handles) {
            total.add(&h.await??);
        }
        Ok(total)
    }
}

/// Describes a stalled phase: where its queue's messages are.
async fn stalled(control: &Client, queue: &str, progress: &Progress) -> String {
    let counts = control
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM pgmq.q_{queue}), \
                        (SELECT count(*) FROM pgmq.a_{queue})"
            ),
            &[],
        )
        .await;
    let (queued, archived): (i64, i64) = match counts {
        Ok(r) => (r.get(0), r.get(1)),
        Err(_) => (-1, -1),
    };
    format!(
        "stalled: {} of {} completions, none in the last {STALL_LIMIT:?}; queue {queue} holds {queued} \
         messages, its archive {archived} (the engine lost tasks: their messages were archived \
         or deleted while their runs were still started)",
        progress.done(),
        progress.target()
    )
}

impl Drop for Running {
    /// A phase that returns early with an error still stops its loops.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits for the workers to sit in their first poll, so a phase's clock starts with idle
/// workers rather than connections still warming up.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn get_run(control: &Client, run_id: Uuid) -> Result<Value> {
    Ok(control
        .query_one("SELECT quantum_flow.get_run($1)", &[&run_id])
        .await?
        .get(0))
}

/// Polls get_run until the run says completed (a failed run is an error).
async fn until_completed(control: &Client, run_id: Uuid) -> Result<Value> {
    loop {
        let doc = get_run(control, run_id).await?;
        match doc["status"].as_str() {
            Some("completed") => return Ok(doc),
            Some("started") => tokio::time::sleep(Duration::from_millis(1)).await,
            _ => return Err(format!("run {run_id} did not complete: {doc}").into()),
        }
    }
}

async fn prepare_start_flow(control: &Client) -> Result<tokio_postgres::Statement> {
    Ok(control
        .prepare_typed(
            "SELECT quantum_flow.start_flow($1, $2)",
            &[Type::TEXT, Type::JSONB],
        )
        .await?)
}

struct Phase {
    elapsed: Duration,
    stats: LoopStats,
    waits: Option<waits::Samples>,
}

async fn sampler(o: &Options) -> Result<Option<waits::Sampler>> {
    Ok(if o.waits {
        Some(waits::Sampler::start(&o.url).await?)
    } else {
        None
    })
}

async fn finish_sampler(s: Option<waits::Sampler>) -> Result<Option<waits::Samples>> {
    Ok(match s {
        Some(s) => Some(s.finish().await?),
        None => None,
    })
}

/// (a) One run: `fetch` outputs an array of `map_tasks` numbers, the map step `items` gets one
/// task per element and each outputs its element. Clock: start_flow until get_run says
/// completed.
async fn map_phase(o: &Options, control: &Client, crew: &[Arc<Worker>]) -> Result<Phase> {
    let n = o.map_tasks;
    let output: OutputFn = Arc::new(move |t: &Task| match t.step_slug.as_str() {
        "fetch" => Value::Array((0..n).map(|i| json!(i)).collect()),
        _ => t.input["item"].clone(),
    });
    let progress = Progress::new(n as u64 + 1);
    let running = Running::qf(
        crew,
        QfLoop {
            workflow: MAP_FLOW.into(),
            batch_size: o.batch_size,
            max_wait_ms: o.max_wait_ms,
            output,
            claimed: None,
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    let start_flow = prepare_start_flow(control).await?;
    settle().await;
    let sampler = sampler(o).await?;

    let t0 = Instant::now();
    let run_id: Uuid = control
        .query_one(&start_flow, &[&MAP_FLOW, &json!({})])
        .await?
        .get(0);
    let waited = running
        .wait_for(&progress, control, &format!("qf_{MAP_FLOW}"))
        .await;
    let doc = match waited {
        Ok(()) => until_completed(control, run_id).await?,
        Err(e) => {
            running.finish().await?;
            return Err(e);
        }
    };
    let elapsed = t0.elapsed();

    let waits = finish_sampler(sampler).await?;
    let stats = running.finish().await?;
    let outputs = doc["output"]["items"].as_array().map(Vec::len);
    if outputs != Some(n) {
        return Err(format!("map run output has {outputs:?} items, expected {n}").into());
    }
    Ok(Phase {
        elapsed,
        stats,
        waits,
    })
}

/// (b) `chain_runs` runs of a -> b -> c, started one by one by the control connection while
/// the workers process them. Clock: first start_flow until get_run of the last run to
/// complete says completed; every run is checked afterwards.
async fn chain_phase(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
) -> Result<(Phase, Duration)> {
    let runs = o.chain_runs;
    let output: OutputFn = Arc::new(|t: &Task| t.input["run"].clone());
    let progress = Progress::new(3 * runs as u64);
    let running = Running::qf(
        crew,
        QfLoop {
            workflow: CHAIN_FLOW.into(),
            batch_size: o.batch_size,
            max_wait_ms: o.max_wait_ms,
            output,
            claimed: None,
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    let start_flow = prepare_start_flow(control).await?;
    settle().await;
    let sampler = sampler(o).await?;

    let t0 = Instant::now();
    let mut run_ids = Vec::with_capacity(runs);
    for i in 0..runs {
        let id: Uuid = control
            .query_one(&start_flow, &[&CHAIN_FLOW, &json!({ "i": i })])
            .await?
            .get(0);
        run_ids.push(id);
    }
    let started = t0.elapsed();
    if let Err(e) = running
        .wait_for(&progress, control, &format!("qf_{CHAIN_FLOW}"))
        .await
    {
        running.finish().await?;
        return Err(e);
    }
    let last = progress.last_run().ok_or("no last run recorded")?;
    until_completed(control, last).await?;
    let elapsed = t0.elapsed();

    let waits = finish_sampler(sampler).await?;
    let stats = running.finish().await?;
    let completed: i64 = control
        .query_one(
            "SELECT count(*) FROM unnest($1::uuid[]) AS id \
             WHERE quantum_flow.get_run(id)->>'status' = 'completed'",
            &[&run_ids],
        )
        .await?
        .get(0);
    if completed != runs as i64 {
        return Err(format!("{completed} of {runs} chain runs completed").into());
    }
    Ok((
        Phase {
            elapsed,
            stats,
            waits,
        },
        started,
    ))
}

struct Latency {
    /// complete_task sent -> the waiting poller has the next step's task
    handoff: Vec<Duration>,
    /// complete_task sent -> complete_task returned
    call: Vec<Duration>,
}

/// (c) `latency_runs` runs of s1 -> s2. Per run: one connection claims s1; another connection
/// blocks in poll_tasks(max_wait_ms => 5000) (checked in pg_stat_activity); the first records
/// t0 and sends complete_task(s1) (autocommit); the second records t1 when poll_tasks returns
/// s2. Handoff latency = t1 - t0, one process, monotonic clock.
async fn latency_phase(o: &Options, control: &Client, crew: &[Arc<Worker>]) -> Result<Latency> {
    let completer = crew[0].clone();
    let waiter = crew[1].clone();
    let start_flow = prepare_start_flow(control).await?;
    let waiting = control
        .prepare_typed(
            "SELECT state = 'active' AND wait_event_type = 'Extension' \
             FROM pg_stat_activity WHERE pid = $1",
            &[Type::INT4],
        )
        .await?;
    let mut lat = Latency {
        handoff: Vec::with_capacity(o.latency_runs),
        call: Vec::with_capacity(o.latency_runs),
    };
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

        let w = waiter.clone();
        let poll = tokio::spawn(async move {
            let tasks = w.poll(LATENCY_FLOW, 1, 5000, "waiter").await;
            (Instant::now(), tasks)
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let row = control.query_opt(&waiting, &[&waiter.pid]).await?;
            if row.is_some_and(|r| r.get::<_, Option<bool>>(0) == Some(true)) {
                break;
            }
            if Instant::now() > deadline {
                return Err("the waiting poller never showed up in pg_stat_activity".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The event is advertised just before poll_tasks' first claim query: give that query
        // time to find nothing, so the poller is asleep on its latch.
        tokio::time::sleep(Duration::from_millis(5)).await;

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
        lat.handoff.push(t1.duration_since(t0));
        lat.call.push(returned);
        if !waiter.complete(s2, &json!(null)).await? {
            return Err(format!("run {run_id}: complete_task(s2) returned false").into());
        }
    }
    Ok(lat)
}

/// (d) The floor: `floor_msgs` messages put in a plain pgmq queue with one send_batch (timed
/// on its own), then the workers' loop on it: pgmq.read(queue, 30, batch_size), one
/// pgmq.delete per message. Clock: workers released until the last delete returned.
async fn floor_phase(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
) -> Result<(Phase, Duration)> {
    let n = o.floor_msgs;
    let messages: Vec<Value> = (0..n).map(|i| json!({ "i": i })).collect();
    let t = Instant::now();
    let sent: i64 = control
        .query_one(
            "SELECT count(*) FROM pgmq.send_batch($1, $2::jsonb[])",
            &[&FLOOR_QUEUE, &messages],
        )
        .await?
        .get(0);
    let send_time = t.elapsed();
    if sent != n as i64 {
        return Err(format!("send_batch sent {sent} of {n} messages").into());
    }
    let progress = Progress::new(n as u64);
    let sampler = sampler(o).await?;

    let t0 = Instant::now();
    let running = Running::pgmq(
        crew,
        PgmqLoop {
            queue: FLOOR_QUEUE.into(),
            batch_size: o.batch_size,
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    if let Err(e) = running.wait_for(&progress, control, FLOOR_QUEUE).await {
        running.finish().await?;
        return Err(e);
    }
    let elapsed = t0.elapsed();

    let waits = finish_sampler(sampler).await?;
    let stats = running.finish().await?;
    let left: i64 = control
        .query_one(&format!("SELECT count(*) FROM pgmq.q_{FLOOR_QUEUE}"), &[])
        .await?
        .get(0);
    if left != 0 {
        return Err(format!("{left} messages left in the floor queue").into());
    }
    Ok((
        Phase {
            elapsed,
            stats,
            waits,
        },
        send_time,
    ))
}

/// (e) One round: the workers drain a `fair_tasks`-task map of one run (`list` -> `m`, a map
/// over `list`'s output); once they are under way, a second run is started behind it, and
/// the clock runs from its start_flow to the moment a worker's poll returns its first task
/// (`list`). Both runs are cancelled afterwards.
async fn fair_round(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
    fair: bool,
) -> Result<(Option<Duration>, u64)> {
    let setting = if fair { "on" } else { "off" };
    for w in crew {
        w.client
            .batch_execute(&format!("SET quantum_flow.fair_polling = {setting}"))
            .await?;
    }
    let small = Uuid::new_v4();
    let claimed: Arc<std::sync::Mutex<Option<Instant>>> = Arc::new(std::sync::Mutex::new(None));
    let ahead = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let output: OutputFn = Arc::new(|t: &Task| match t.step_slug.as_str() {
        "list" => Value::Array(
            (0..t.input["run"]["n"].as_u64().unwrap_or(0))
                .map(|i| json!(i))
                .collect(),
        ),
        _ => t.input["item"].clone(),
    });
    let on_claim: ClaimedFn = {
        let (claimed, ahead, started) = (claimed.clone(), ahead.clone(), started.clone());
        Arc::new(move |tasks: &[Task]| {
            let mut c = claimed.lock().expect("claimed lock");
            if c.is_some() || !started.load(Ordering::SeqCst) {
                return;
            }
            if tasks.iter().any(|t| t.run_id == small) {
                *c = Some(Instant::now());
            } else {
                ahead.fetch_add(tasks.len() as u64, Ordering::SeqCst);
            }
        })
    };
    let progress = Progress::new(u64::MAX);
    let big: Uuid = control
        .query_one(
            "SELECT quantum_flow.start_flow($1, $2)",
            &[&FAIR_FLOW, &json!({"n": o.fair_tasks})],
        )
        .await?
        .get(0);
    let running = Running::qf(
        crew,
        QfLoop {
            workflow: FAIR_FLOW.into(),
            batch_size: o.batch_size,
            max_wait_ms: o.max_wait_ms,
            output,
            claimed: Some(on_claim),
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    // the map is being drained
    let under_way = Instant::now() + STALL_LIMIT;
    while progress.done() < 1000 {
        if Instant::now() > under_way {
            return Err("the big map did not get under way".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t0 = Instant::now();
    started.store(true, Ordering::SeqCst);
    control
        .execute(
            "SELECT quantum_flow.start_flow($1, '{\"n\": 1}', $2)",
            &[&FAIR_FLOW, &small],
        )
        .await?;
    let waited = loop {
        if let Some(at) = *claimed.lock().expect("claimed lock") {
            break Some(at - t0);
        }
        if t0.elapsed() > FAIR_LIMIT {
            break None;
        }
        if running.handles.iter().any(|h| h.is_finished()) {
            return Err("a worker stopped early".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    running.finish().await?;
    control
        .execute("SELECT quantum_flow.cancel_run($1, 'bench')", &[&big])
        .await?;
    control
        .execute("SELECT quantum_flow.cancel_run($1, 'bench')", &[&small])
        .await?;
    Ok((waited, ahead.load(Ordering::SeqCst)))
}

async fn fair_phase(o: &Options, control: &Client, crew: &[Arc<Worker>]) -> Result<Fairness> {
    let (off, ahead_off) = fair_round(o, control, crew, false).await?;
    let (on, ahead_on) = fair_round(o, control, crew, true).await?;
    for w in crew {
        w.client
            .batch_execute("RESET quantum_flow.fair_polling")
            .await?;
    }
    let on = on.ok_or("with fair polling on, the small run waited past the limit")?;
    Ok(Fairness {
        off,
        on,
        ahead_off,
        ahead_on,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean_ms(total: Duration, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        ms(total) / n as f64
    }
}

fn calls(s: &LoopStats, poll: &str, complete: &str) -> String {
    let mut line = format!(
        "{poll} {} calls ({} empty), mean {:.2} ms; {complete} {} calls, mean {:.2} ms",
        s.polls,
        s.empty_polls,
        mean_ms(s.poll_time, s.polls),
        s.completions + s.refused,
        mean_ms(s.complete_time, s.completions + s.refused),
    );
    if s.refused > 0 {
        line.push_str(&format!(", {} returned false", s.refused));
    }
    line
}

fn report(o: &Options, m: &machine::Machine, server: &machine::Server, r: &Results) {
    let settings: Vec<String> = server
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "machine:  nproc {}, {}, {:.1} GiB RAM",
        m.nproc, m.cpu_model, m.ram_gib
    );
    println!("server:   {}, {}", server.version, settings.join(", "));
    println!(
        "workers:  {} (one connection each, prepared statements), batch_size {}, max_wait_ms {}; \
         client and server on the same machine",
        o.workers, o.batch_size, o.max_wait_ms
    );
    println!();

    let secs = |d: Duration| d.as_secs_f64();
    let rate = |n: usize, d: Duration| n as f64 / secs(d);
    let map_rate = match &r.map {
        Some(Ok(p)) => Some(rate(o.map_tasks, p.elapsed)),
        _ => None,
    };
    let floor_rate = match &r.floor {
        Some(Ok((p, _))) => Some(rate(o.floor_msgs, p.elapsed)),
        _ => None,
    };
    let handoff = match &r.latency {
        Some(Ok(l)) => {
            let mut h = l.handoff.clone();
            h.sort();
            let mut c = l.call.clone();
            c.sort();
            Some((h, c))
        }
        _ => None,
    };

    // The table, then one line per figure.
    let mut rows: Vec<(String, String, String)> =
        vec![("figure".into(), "workload".into(), "result".into())];
    let mut lines: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut failed = |name: &str, e: &(dyn std::error::Error + Send + Sync + 'static)| {
        errors.push(format!("{name}: {}", describe(e)));
        "FAILED (see below)".to_string()
    };
    if let Some(res) = &r.map {
        let result = match res {
            Ok(p) => {
                let v = map_rate.unwrap_or(0.0);
                lines.push(format!("quantum_flow map throughput    = {v:.0} tasks/s"));
                format!("{v:.0} tasks/s ({:.2} s)", secs(p.elapsed))
            }
            Err(e) => failed("(a)", e.as_ref()),
        };
        rows.push((
            "(a) map throughput".into(),
            format!(
                "1 run: fetch -> map of {} tasks, {} workers",
                o.map_tasks, o.workers
            ),
            result,
        ));
    }
    if let Some(res) = &r.chain {
        let result = match res {
            Ok((p, _)) => {
                let v = rate(o.chain_runs, p.elapsed);
                lines.push(format!(
                    "quantum_flow chain throughput  = {v:.0} runs/s ({:.0} tasks/s)",
                    v * 3.0
                ));
                format!("{v:.0} runs/s ({:.2} s)", secs(p.elapsed))
            }
            Err(e) => failed("(b)", e.as_ref()),
        };
        rows.push((
            "(b) chain throughput".into(),
            format!(
                "{} runs of a -> b -> c, {} workers",
                o.chain_runs, o.workers
            ),
            result,
        ));
    }
    if let Some(res) = &r.latency {
        let result = match (res, &handoff) {
            (Ok(_), Some((h, _))) => {
                let (p50, p95) = (ms(percentile(h, 50.0)), ms(percentile(h, 95.0)));
                lines.push(format!(
                    "quantum_flow handoff latency   = median {p50:.2} ms, p95 {p95:.2} ms"
                ));
                format!("median {p50:.2} ms, p95 {p95:.2} ms")
            }
            (Err(e), _) => failed("(c)", e.as_ref()),
            _ => unreachable!("latency samples exist when the phase succeeded"),
        };
        rows.push((
            "(c) handoff latency".into(),
            format!("{} runs of s1 -> s2, next poller waiting", o.latency_runs),
            result,
        ));
    }
    if let Some(res) = &r.floor {
        let result = match res {
            Ok((p, _)) => {
                let v = floor_rate.unwrap_or(0.0);
                lines.push(format!("pgmq floor                     = {v:.0} msgs/s"));
                format!("{v:.0} msgs/s ({:.2} s)", secs(p.elapsed))
            }
            Err(e) => failed("(d)", e.as_ref()),
        };
        rows.push((
            "(d) pgmq floor".into(),
            format!(
                "{} msgs, pgmq.read + pgmq.delete, {} workers",
                o.floor_msgs, o.workers
            ),
            result,
        ));
    }
    if let Some(res) = &r.fair {
        let result = match res {
            Ok(f) => {
                let off = match f.off {
                    Some(d) => format!("{:.2} s", secs(d)),
                    None => format!("> {} s", FAIR_LIMIT.as_secs()),
                };
                lines.push(format!(
                    "quantum_flow time to first claim behind a {}-task map = {:.1} ms fair, {off} \
                     oldest first",
                    o.fair_tasks,
                    ms(f.on)
                ));
                format!("{:.1} ms (fair_polling off: {off})", ms(f.on))
            }
            Err(e) => failed("(e)", e.as_ref()),
        };
        rows.push((
            "(e) first claim behind a map".into(),
            format!(
                "1 task started behind a {}-task map being drained, {} workers",
                o.fair_tasks, o.workers
            ),
            result,
        ));
    }
    if let (Some(a), Some(d)) = (map_rate, floor_rate) {
        lines.push(format!(
            "quantum_flow map throughput    = {:.2} x pgmq floor",
            a / d
        ));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    for (i, (a, b, c)) in rows.iter().enumerate() {
        println!("{a:<w0$}  {b:<w1$}  {c}");
        if i == 0 {
            println!("{}  {}  {}", "-".repeat(w0), "-".repeat(w1), "-".repeat(w2));
        }
    }
    println!();
    for l in &lines {
        println!("{l}");
    }
    println!();

    println!("details:");
    if let Some(Ok(p)) = &r.map {
        println!("  (a) {}", calls(&p.stats, "poll_tasks", "complete_task"));
        println!(
            "      slowest complete_task {:.1} ms (the fetch completion, which fans out the {} tasks)",
            ms(p.stats.complete_max),
            o.map_tasks
        );
    }
    if let Some(Ok(f)) = &r.fair {
        println!(
            "  (e) tasks of the big map claimed after the second run started, before its first: \
             {} with fair polling, {} strictly oldest first",
            f.ahead_on, f.ahead_off
        );
    }
    if let Some(Ok((p, started))) = &r.chain {
        println!("  (b) {}", calls(&p.stats, "poll_tasks", "complete_task"));
        println!(
            "      the {} start_flow calls took {:.2} s ({:.0}/s) of the {:.2} s",
            o.chain_runs,
            secs(*started),
            rate(o.chain_runs, *started),
            secs(p.elapsed)
        );
    }
    if let Some((h, c)) = &handoff {
        println!(
            "  (c) complete_task(s1) call itself: median {:.2} ms, p95 {:.2} ms; handoff max {:.2} ms",
            ms(percentile(c, 50.0)),
            ms(percentile(c, 95.0)),
            ms(*h.last().unwrap_or(&Duration::ZERO))
        );
    }
    if let Some(Ok((p, send_time))) = &r.floor {
        println!("  (d) {}", calls(&p.stats, "pgmq.read", "pgmq.delete"));
        println!(
            "      setup: one pgmq.send_batch of {} msgs took {:.2} s (not in the figure)",
            o.floor_msgs,
            secs(*send_time)
        );
    }
    let phases = [
        ("(a)", r.map.as_ref().and_then(|x| x.as_ref().ok())),
        (
            "(b)",
            r.chain.as_ref().and_then(|x| x.as_ref().ok()).map(|x| &x.0),
        ),
        (
            "(d)",
            r.floor.as_ref().and_then(|x| x.as_ref().ok()).map(|x| &x.0),
        ),
    ];
    for (name, phase) in phases {
        if let Some(w) = phase.and_then(|p| p.waits.as_ref()) {
            println!("  {name} backends: {}", w.summary());
        }
    }
    if !errors.is_empty() {
        println!();
        println!("errors:");
        for e in &errors {
            println!("  {e}");
        }
    }
}
