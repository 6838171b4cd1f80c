//! quantum_flow benchmark harness (`make bench`, see bench/README.md).
//!
//! Usage: quantum_flow_bench [options] <connection string or URL>
//!
//! Runs its measurements in one process against one database that has quantum_flow
//! installed, each phase one function: map throughput (a dependent map per task, a root map
//! per task, a dependent map completed in batches, the same three driven by the Python
//! client's Worker), the pgmq floor they are compared with (measured before and after them),
//! chain throughput (runs started one start_flow at a time, then with start_flows), handoff
//! and idle pickup latency, the time until the first task of a 100,000-element map can be
//! claimed, a run queued behind a big map (fair polling off and on), and the cost per task of
//! a 1,000-task map against a 1,000,000-task one. Prints the machine, a table, one line per
//! figure, the targets table, and details. With `--duration N` it runs a steady mixed
//! load for N seconds instead (see `steady`).

mod bigmap;
mod latency;
mod machine;
mod python;
mod report;
mod steady;
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

/// `fetch` -> `items` (a map over fetch's output): (a), (g).
const MAP_FLOW: &str = "bench_map";
/// `items`, a map over the flow input: (f), and (j)'s root half.
const ROOT_FLOW: &str = "bench_root";
const CHAIN_FLOW: &str = "bench_chain";
const LATENCY_FLOW: &str = "bench_latency";
/// One step `only`: (i).
const PICKUP_FLOW: &str = "bench_pickup";
const FLOOR_QUEUE: &str = "bench_floor";
const FAIR_FLOW: &str = "bench_fair";
/// `list` -> `m` (a map over list's output), driven by hand: (j)'s fan-out half, (k).
const FANOUT_FLOW: &str = "bench_fanout";
/// The Python client's workflows, of the same shapes as bench_root and bench_map: (p).
const PY_ROOT_FLOW: &str = "bench_py_root";
const PY_MAP_FLOW: &str = "bench_py_map";
/// (e) gives up waiting for the small run's first claim after this long.
const FAIR_LIMIT: Duration = Duration::from_secs(60);
/// A phase that has not finished after this long has gone wrong.
const PHASE_LIMIT: Duration = Duration::from_secs(150);
/// No completion for this long while a phase still has tasks means a task was lost.
const STALL_LIMIT: Duration = Duration::from_secs(20);

/// Every phase letter, in the order `--phases` documents them.
const PHASES: &str = "abcdefghijklmp";

pub struct Options {
    url: String,
    workers: usize,
    batch_size: i32,
    max_wait_ms: i32,
    map_tasks: usize,
    chain_runs: usize,
    latency_runs: usize,
    floor_msgs: usize,
    fair_tasks: usize,
    first_claim_tasks: usize,
    small_map: usize,
    big_map: usize,
    cost_tasks: usize,
    python: Option<String>,
    py_workers: usize,
    py_concurrency: usize,
    duration: Option<u64>,
    rate: f64,
    mix_items: usize,
    waits: bool,
    /// VACUUM and CHECKPOINT before each phase
    settle: bool,
    /// which figures to measure, a subset of PHASES
    phases: String,
}

const USAGE: &str = "usage: quantum_flow_bench [options] <connection string>
  --workers N (4) --batch-size N (50) --max-wait-ms N (100)
  --map-tasks N (10000)        (a), (f), (g), (p): tasks of each map run
  --chain-runs N (1000)        (b), (h), (l), (m)
  --latency-runs N (200)       (c), (i)
  --floor-msgs N (10000)       (d), each of its two rounds
  --fair-tasks N (100000)      (e)
  --first-claim-tasks N (100000)  (j)
  --small-map N (1000) --big-map N (1000000) --cost-tasks N (10000)   (k)
  --python PATH --py-workers N (4) --py-concurrency N (8)             (p)
  --phases LETTERS (abcdefghijklmp: all)  --waits
  --settle                     VACUUM and CHECKPOINT before each phase
  --duration SECONDS [--rate RUNS_PER_S (60)] [--mix-items N (10)]
                               the steady mixed load instead of the figures
Options also take the form --name=value.";

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
        first_claim_tasks: 100_000,
        small_map: 1_000,
        big_map: 1_000_000,
        cost_tasks: 10_000,
        python: None,
        py_workers: 4,
        py_concurrency: 8,
        duration: None,
        rate: 60.0,
        mix_items: 10,
        waits: false,
        settle: false,
        phases: PHASES.to_string(),
    };
    // --name=value is --name value
    let mut args: std::collections::VecDeque<String> = std::env::args()
        .skip(1)
        .flat_map(|a| match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => vec![k.to_string(), v.to_string()],
            _ => vec![a],
        })
        .collect();
    while let Some(arg) = args.pop_front() {
        let mut text = || -> Result<String> {
            Ok(args
                .pop_front()
                .ok_or(format!("{arg} needs a value\n{USAGE}"))?)
        };
        let number = |v: String| -> Result<usize> {
            Ok(v.parse().map_err(|_| format!("{arg}: not a number: {v}"))?)
        };
        match arg.as_str() {
            "--workers" => o.workers = number(text()?)?.max(2),
            "--batch-size" => o.batch_size = number(text()?)?.max(1) as i32,
            "--max-wait-ms" => o.max_wait_ms = number(text()?)?.max(1) as i32,
            "--map-tasks" => o.map_tasks = number(text()?)?.max(1),
            "--chain-runs" => o.chain_runs = number(text()?)?.max(1),
            "--latency-runs" => o.latency_runs = number(text()?)?.max(1),
            "--floor-msgs" => o.floor_msgs = number(text()?)?.max(1),
            "--fair-tasks" => o.fair_tasks = number(text()?)?.max(1),
            "--first-claim-tasks" => o.first_claim_tasks = number(text()?)?.max(1),
            "--small-map" => o.small_map = number(text()?)?.max(1),
            "--big-map" => o.big_map = number(text()?)?.max(1),
            "--cost-tasks" => o.cost_tasks = number(text()?)?.max(1),
            "--python" => o.python = Some(text()?),
            "--py-workers" => o.py_workers = number(text()?)?.max(1),
            "--py-concurrency" => o.py_concurrency = number(text()?)?.max(1),
            "--duration" => o.duration = Some(number(text()?)?.max(1) as u64),
            "--rate" => {
                let v = text()?;
                o.rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| *r > 0.0)
                    .ok_or(format!("--rate: not a positive number: {v}"))?;
            }
            "--mix-items" => o.mix_items = number(text()?)?.max(1),
            "--waits" => o.waits = true,
            "--settle" => o.settle = true,
            "--phases" => {
                o.phases = text()?;
                if o.phases.is_empty() || !o.phases.chars().all(|c| PHASES.contains(c)) {
                    return Err(format!(
                        "--phases takes letters from {PHASES}, got {:?}",
                        o.phases
                    )
                    .into());
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
    o.cost_tasks = o.cost_tasks.min(o.big_map);
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
    if let Some(seconds) = o.duration {
        return steady::run(&o, &control, &server, seconds).await;
    }
    setup(&control, &o).await?;
    let mut crew = Vec::new();
    for i in 0..o.workers {
        crew.push(Arc::new(
            Worker::connect(&o.url, &format!("worker{i}")).await?,
        ));
    }

    // The floor is measured before and after the map figures it is compared with, so that a
    // change in the machine's speed meanwhile (a shared disk) shows.
    let has = |c: char| o.phases.contains(c);
    let mut r = Results::default();
    // The latency and chain figures come first, on a fresh database: run after the maps, they
    // met autovacuum cleaning up after the maps' 60,000 tasks, which slows every WAL flush
    // (hand-off median 3.5-3.7 ms instead of 1.8-1.9 ms, (h) about half as fast).
    if has('c') {
        begin_phase(&o, &control, format!("(c) {} handoffs", o.latency_runs)).await;
        r.latency = Some(latency::handoff_phase(&o, &control, &crew).await);
    }
    if has('i') {
        begin_phase(&o, &control, format!("(i) {} idle pickups", o.latency_runs)).await;
        r.pickup = Some(latency::pickup_phase(&o, &control, &crew).await);
    }
    if has('b') {
        begin_phase(
            &o,
            &control,
            format!("(b) {} runs of a 3-step chain", o.chain_runs),
        )
        .await;
        r.chain = Some(chain_phase(&o, &control, &crew, false, false).await);
    }
    if has('h') {
        begin_phase(
            &o,
            &control,
            format!(
                "(h) {} runs of a 3-step chain, started with start_flows",
                o.chain_runs
            ),
        )
        .await;
        r.chain_many = Some(chain_phase(&o, &control, &crew, true, false).await);
    }
    if has('l') {
        begin_phase(
            &o,
            &control,
            format!(
                "(l) {} runs of a 3-step chain, batch calls: start_flows and complete_tasks",
                o.chain_runs
            ),
        )
        .await;
        r.chain_batched = Some(chain_phase(&o, &control, &crew, true, true).await);
    }
    if has('m') {
        begin_phase(
            &o,
            &control,
            format!(
                "(m) {} runs of a 3-step chain, one start_flow each, completed with complete_tasks",
                o.chain_runs
            ),
        )
        .await;
        r.chain_batched_per_call = Some(chain_phase(&o, &control, &crew, false, true).await);
    }
    if has('d') {
        begin_phase(
            &o,
            &control,
            format!("(d) pgmq floor, {} messages (1st round)", o.floor_msgs),
        )
        .await;
        r.floor = Some(floor_phase(&o, &control, &crew).await);
    }
    if has('f') {
        begin_phase(
            &o,
            &control,
            format!("(f) one run of a root map of {} tasks", o.map_tasks),
        )
        .await;
        r.root = Some(map_phase(&o, &control, &crew, MapCase::Root).await);
    }
    if has('a') {
        begin_phase(
            &o,
            &control,
            format!("(a) one run with a map of {} tasks", o.map_tasks),
        )
        .await;
        r.map = Some(map_phase(&o, &control, &crew, MapCase::Dependent).await);
    }
    if has('g') {
        begin_phase(
            &o,
            &control,
            format!(
                "(g) one run with a map of {} tasks, completed in batches",
                o.map_tasks
            ),
        )
        .await;
        r.batched = Some(map_phase(&o, &control, &crew, MapCase::Batched).await);
    }
    if has('p') {
        begin_phase(
            &o,
            &control,
            format!(
                "(p) the same maps driven by the Python client's Worker ({} workers)",
                o.py_workers
            ),
        )
        .await;
        r.python = Some(python::phase(&o, &control).await);
    }
    if has('d') {
        begin_phase(
            &o,
            &control,
            format!("(d) pgmq floor, {} messages (2nd round)", o.floor_msgs),
        )
        .await;
        r.floor2 = Some(floor_phase(&o, &control, &crew).await);
    }
    if has('j') {
        begin_phase(
            &o,
            &control,
            format!(
                "(j) first claim of a {}-task map, root and fan-out",
                o.first_claim_tasks
            ),
        )
        .await;
        r.first = Some(bigmap::first_claim_phase(&o, &control, &crew).await);
    }
    if has('e') {
        begin_phase(
            &o,
            &control,
            format!(
                "(e) a run queued behind a {}-task map, fair polling off, then on",
                o.fair_tasks
            ),
        )
        .await;
        r.fair = Some(fair_phase(&o, &control, &crew).await);
    }
    if has('k') {
        begin_phase(
            &o,
            &control,
            format!(
                "(k) cost per task, a {}-task map vs a {}-task map",
                o.small_map, o.big_map
            ),
        )
        .await;
        r.cost = Some(bigmap::cost_phase(&o, &control, &crew).await);
    }

    report::report(&o, &machine::machine(), &server, &r);
    let failed = r.failures();
    if failed > 0 {
        return Err(format!("{failed} figure(s) failed").into());
    }
    Ok(())
}

/// Says which phase begins, and with `--settle` prepares the database for it: a `VACUUM` (as
/// pgbench does before its runs), so that autovacuum does not clean up after earlier phases
/// during this one, then
/// `CHECKPOINT`, so that no checkpoint triggered by earlier phases' WAL runs meanwhile. Off by
/// default: on this project's machine it made the chain and latency figures as fast as
/// running them first does, and (g) 15-20% slower (a vacuumed table's inserts reuse old pages,
/// whose first change after the checkpoint writes a full-page image). `CHECKPOINT` needs a
/// superuser or `pg_checkpoint`; without it the bench goes on and says so once.
async fn begin_phase(o: &Options, control: &Client, what: String) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    eprintln!("bench: {what}");
    if !o.settle {
        return;
    }
    for statement in ["VACUUM", "CHECKPOINT"] {
        if let Err(e) = control.batch_execute(statement).await {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "bench: no {statement} before the phases ({}): earlier phases' cleanup may run during one",
                    describe(&e)
                );
            }
        }
    }
}

#[derive(Default)]
pub struct Results {
    pub map: Option<Result<Phase>>,
    pub root: Option<Result<Phase>>,
    pub batched: Option<Result<Phase>>,
    pub python: Option<Result<python::PyResults>>,
    pub chain: Option<Result<Chain>>,
    pub chain_many: Option<Result<Chain>>,
    pub chain_batched: Option<Result<Chain>>,
    pub chain_batched_per_call: Option<Result<Chain>>,
    pub latency: Option<Result<latency::Latency>>,
    pub pickup: Option<Result<latency::Latency>>,
    pub floor: Option<Result<(Phase, Duration)>>,
    pub floor2: Option<Result<(Phase, Duration)>>,
    pub fair: Option<Result<Fairness>>,
    pub first: Option<Result<bigmap::FirstClaim>>,
    pub cost: Option<Result<bigmap::Cost>>,
}

impl Results {
    fn failures(&self) -> usize {
        fn bad<T>(x: &Option<Result<T>>) -> bool {
            matches!(x, Some(Err(_)))
        }
        let python = match &self.python {
            Some(Ok(p)) => p.cases.iter().filter(|c| c.result.is_err()).count(),
            Some(Err(_)) => 1,
            None => 0,
        };
        [
            bad(&self.map),
            bad(&self.root),
            bad(&self.batched),
            bad(&self.chain),
            bad(&self.chain_many),
            bad(&self.chain_batched),
            bad(&self.chain_batched_per_call),
            bad(&self.latency),
            bad(&self.pickup),
            bad(&self.floor),
            bad(&self.floor2),
            bad(&self.fair),
            bad(&self.first),
            bad(&self.cost),
        ]
        .into_iter()
        .filter(|f| *f)
        .count()
            + python
    }
}

/// (e): how long a one-task run queued behind a big map waited for its task to be claimed,
/// with `quantum_flow.fair_polling` off (`None`: not within `FAIR_LIMIT`) and on.
pub struct Fairness {
    pub off: Option<Duration>,
    pub on: Duration,
    /// Tasks of the big map claimed after the small run was started and before its first
    /// task, off and on.
    pub ahead_off: u64,
    pub ahead_on: u64,
}

/// An error with the server's SQLSTATE and message when it has them (tokio-postgres' own
/// Display says only "db error").
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
    {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Drops the workflows in `slugs` (and the queue `queues`) that an earlier bench left.
pub async fn drop_leftovers(control: &Client, slugs: &[&str], queues: &[&str]) -> Result<()> {
    for slug in slugs {
        let deleted = control
            .execute(
                "SELECT quantum_flow.delete_flow(workflow_slug) FROM quantum_flow.list_flows() \
                 WHERE workflow_slug = $1",
                &[slug],
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
    for queue in queues {
        control
            .execute(
                "SELECT pgmq.drop_queue(queue_name) FROM pgmq.list_queues() WHERE queue_name = $1",
                &[queue],
            )
            .await?;
    }
    Ok(())
}

/// Drops what an earlier bench left in this database, then defines the bench's workflows.
async fn setup(control: &Client, o: &Options) -> Result<()> {
    drop_leftovers(
        control,
        &[
            MAP_FLOW,
            ROOT_FLOW,
            CHAIN_FLOW,
            LATENCY_FLOW,
            PICKUP_FLOW,
            FAIR_FLOW,
            FANOUT_FLOW,
            PY_ROOT_FLOW,
            PY_MAP_FLOW,
        ],
        &[FLOOR_QUEUE],
    )
    .await?;
    // Long timeouts where a run is cancelled with most of its map unclaimed, or where a
    // claimed task may wait behind a 1,000,000-task fan-out.
    control
        .batch_execute(&format!(
            "SELECT quantum_flow.create_flow('{MAP_FLOW}');
             SELECT quantum_flow.add_step('{MAP_FLOW}', 'fetch');
             SELECT quantum_flow.add_step('{MAP_FLOW}', 'items', ARRAY['fetch'],
                                          step_type => 'map', initial_tasks => {n});
             SELECT quantum_flow.create_flow('{ROOT_FLOW}', timeout => 600);
             SELECT quantum_flow.add_step('{ROOT_FLOW}', 'items', step_type => 'map',
                                          initial_tasks => {n});
             SELECT quantum_flow.create_flow('{CHAIN_FLOW}');
             SELECT quantum_flow.add_step('{CHAIN_FLOW}', 'a');
             SELECT quantum_flow.add_step('{CHAIN_FLOW}', 'b', ARRAY['a']);
             SELECT quantum_flow.add_step('{CHAIN_FLOW}', 'c', ARRAY['b']);
             SELECT quantum_flow.create_flow('{LATENCY_FLOW}');
             SELECT quantum_flow.add_step('{LATENCY_FLOW}', 's1');
             SELECT quantum_flow.add_step('{LATENCY_FLOW}', 's2', ARRAY['s1']);
             SELECT quantum_flow.create_flow('{PICKUP_FLOW}');
             SELECT quantum_flow.add_step('{PICKUP_FLOW}', 'only');
             SELECT pgmq.create('{FLOOR_QUEUE}');
             SELECT quantum_flow.create_flow('{FAIR_FLOW}', timeout => 600);
             SELECT quantum_flow.add_step('{FAIR_FLOW}', 'list');
             SELECT quantum_flow.add_step('{FAIR_FLOW}', 'm', ARRAY['list'], step_type => 'map');
             SELECT quantum_flow.create_flow('{FANOUT_FLOW}', timeout => 600);
             SELECT quantum_flow.add_step('{FANOUT_FLOW}', 'list');
             SELECT quantum_flow.add_step('{FANOUT_FLOW}', 'm', ARRAY['list'], step_type => 'map');
             SELECT quantum_flow.create_flow('{PY_ROOT_FLOW}');
             SELECT quantum_flow.add_step('{PY_ROOT_FLOW}', 'items', step_type => 'map',
                                          initial_tasks => {n});
             SELECT quantum_flow.create_flow('{PY_MAP_FLOW}');
             SELECT quantum_flow.add_step('{PY_MAP_FLOW}', 'fetch');
             SELECT quantum_flow.add_step('{PY_MAP_FLOW}', 'items', ARRAY['fetch'],
                                          step_type => 'map', initial_tasks => {n});",
            n = o.map_tasks
        ))
        .await?;
    Ok(())
}

/// Worker loops running for one phase.
pub struct Running {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Result<LoopStats>>>,
}

impl Running {
    pub fn qf(crew: &[Arc<Worker>], job: QfLoop) -> Running {
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

    /// Whether a worker loop has ended (only an error ends one before `finish`).
    pub fn died(&self) -> bool {
        self.handles.iter().any(|h| h.is_finished())
    }

    /// Waits for the phase's last completion; fails if a worker died, if completions stopped
    /// coming (a lost task: the error says where the queue's messages went), or time ran out.
    pub async fn wait_for(&self, progress: &Progress, control: &Client, queue: &str) -> Result<()> {
        let deadline = Instant::now() + PHASE_LIMIT;
        let (mut seen, mut since) = (progress.done(), Instant::now());
        loop {
            tokio::select! {
                _ = progress.reached.notified() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if self.died() {
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

    /// Stops the loops (each ends after its current call) and sums their stats; the first
    /// error a loop stopped with, if any.
    pub async fn finish(mut self) -> Result<LoopStats> {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoopStats::default();
        for h in std::mem::take(&mut self.handles) {
            total.add(&h.await??);
        }
        Ok(total)
    }

    /// `wait_for`, and on failure the loops' own error when one died (it says more).
    pub async fn wait_or_finish(
        self,
        progress: &Progress,
        control: &Client,
        queue: &str,
    ) -> Result<Running> {
        match self.wait_for(progress, control, queue).await {
            Ok(()) => Ok(self),
            Err(e) => {
                self.finish().await?;
                Err(e)
            }
        }
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
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

pub async fn get_run(control: &Client, run_id: Uuid) -> Result<Value> {
    Ok(control
        .query_one("SELECT quantum_flow.get_run($1)", &[&run_id])
        .await?
        .get(0))
}

/// Polls get_run until the run says completed (a failed run is an error).
pub async fn until_completed(control: &Client, run_id: Uuid) -> Result<Value> {
    loop {
        let doc = get_run(control, run_id).await?;
        match doc["status"].as_str() {
            Some("completed") => return Ok(doc),
            Some("started") => tokio::time::sleep(Duration::from_millis(1)).await,
            _ => return Err(format!("run {run_id} did not complete: {doc}").into()),
        }
    }
}

pub async fn prepare_start_flow(control: &Client) -> Result<tokio_postgres::Statement> {
    Ok(control
        .prepare_typed(
            "SELECT quantum_flow.start_flow($1, $2)",
            &[Type::TEXT, Type::JSONB],
        )
        .await?)
}

/// `cancel_run(run_id, 'bench')`; how long it took.
pub async fn cancel(control: &Client, run_id: Uuid) -> Result<Duration> {
    let t = Instant::now();
    control
        .execute("SELECT quantum_flow.cancel_run($1, 'bench')", &[&run_id])
        .await?;
    Ok(t.elapsed())
}

/// A JSON array of the numbers 0..n.
pub fn numbers(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!(i)).collect())
}

/// Checks that a map step's output is 0..n in order (each task answered its item).
pub fn check_identity_output(doc: &Value, step: &str, n: usize) -> Result<()> {
    let Some(items) = doc["output"][step].as_array() else {
        return Err(format!("the run's output has no array under {step:?}").into());
    };
    if items.len() != n {
        return Err(format!("map output has {} items, expected {n}", items.len()).into());
    }
    if let Some(i) = (0..n).find(|&i| items[i].as_u64() != Some(i as u64)) {
        return Err(format!("map output item {i} is {}, expected {i}", items[i]).into());
    }
    Ok(())
}

pub struct Phase {
    pub elapsed: Duration,
    pub stats: LoopStats,
    pub waits: Option<waits::Samples>,
}

pub async fn sampler(o: &Options) -> Result<Option<waits::Sampler>> {
    Ok(if o.waits {
        Some(waits::Sampler::start(&o.url).await?)
    } else {
        None
    })
}

pub async fn finish_sampler(s: Option<waits::Sampler>) -> Result<Option<waits::Samples>> {
    Ok(match s {
        Some(s) => Some(s.finish().await?),
        None => None,
    })
}

/// The three map workloads the Rust workers measure: one run each, `map_tasks` tasks.
#[derive(Clone, Copy, PartialEq)]
enum MapCase {
    /// (a) bench_map: `fetch` answers 0..n, `items` maps over it; one complete_task per task.
    Dependent,
    /// (f) bench_root: `items` maps over the flow input 0..n; one complete_task per task.
    Root,
    /// (g) bench_map as (a), each polled batch completed with one complete_tasks call.
    Batched,
}

/// (a), (f), (g) One run whose map step has `map_tasks` tasks, each answering its item.
/// Clock: start_flow sent (workers already waiting in poll_tasks) until get_run says
/// completed; the map's output is checked to be 0..n afterwards.
async fn map_phase(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
    case: MapCase,
) -> Result<Phase> {
    let n = o.map_tasks;
    let (workflow, input, tasks) = match case {
        MapCase::Root => (ROOT_FLOW, numbers(n), n as u64),
        MapCase::Dependent | MapCase::Batched => (MAP_FLOW, json!({}), n as u64 + 1),
    };
    let output: OutputFn = Arc::new(move |t: &Task| match t.step_slug.as_str() {
        "fetch" => numbers(n),
        _ => t.input["item"].clone(),
    });
    let progress = Progress::new(tasks);
    let running = Running::qf(
        crew,
        QfLoop {
            workflow: workflow.into(),
            batch_size: o.batch_size,
            max_wait_ms: o.max_wait_ms,
            output,
            claimed: None,
            batched: case == MapCase::Batched,
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    let start_flow = prepare_start_flow(control).await?;
    settle().await;
    let sampler = sampler(o).await?;

    let t0 = Instant::now();
    let run_id: Uuid = control
        .query_one(&start_flow, &[&workflow, &input])
        .await?
        .get(0);
    let running = running
        .wait_or_finish(&progress, control, &format!("qf_{workflow}"))
        .await?;
    let doc = until_completed(control, run_id).await?;
    let elapsed = t0.elapsed();

    let waits = finish_sampler(sampler).await?;
    let stats = running.finish().await?;
    check_identity_output(&doc, "items", n)?;
    Ok(Phase {
        elapsed,
        stats,
        waits,
    })
}

/// (b), (h), (l), (m): a chain phase and how its runs were started.
pub struct Chain {
    pub phase: Phase,
    /// first start call sent until the last start call returned
    pub starting: Duration,
    /// start_flow or start_flows calls made
    pub start_calls: usize,
}

/// (b) `chain_runs` runs of a -> b -> c, started one start_flow at a time by the control
/// connection while the workers process them; (h) the same runs started with start_flows,
/// `quantum_flow.max_batch_size` runs per call (one call for 1,000); (l) as (h), the workers
/// completing each polled batch with one complete_tasks call (`batched`), as the clients'
/// `Worker` does; (m) as (b), the workers completing as in (l). Clock: first start call
/// sent until get_run of the last run to complete says completed; every run is checked
/// afterwards.
async fn chain_phase(
    o: &Options,
    control: &Client,
    crew: &[Arc<Worker>],
    many: bool,
    batched: bool,
) -> Result<Chain> {
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
            batched,
            progress: progress.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        },
    );
    let start_flow = prepare_start_flow(control).await?;
    let start_flows = control
        .prepare_typed(
            "SELECT quantum_flow.start_flows($1, $2)",
            &[Type::TEXT, Type::JSONB_ARRAY],
        )
        .await?;
    let max_batch: usize = control
        .query_one(
            "SELECT current_setting('quantum_flow.max_batch_size')::int",
            &[],
        )
        .await?
        .get::<_, i32>(0) as usize;
    let inputs: Vec<Value> = (0..runs).map(|i| json!({ "i": i })).collect();
    settle().await;
    let sampler = sampler(o).await?;

    let t0 = Instant::now();
    let mut run_ids = Vec::with_capacity(runs);
    let mut start_calls = 0;
    if many {
        for chunk in inputs.chunks(max_batch.max(1)) {
            let ids: Vec<Uuid> = control
                .query_one(&start_flows, &[&CHAIN_FLOW, &chunk])
                .await?
                .get(0);
            run_ids.extend(ids);
            start_calls += 1;
        }
    } else {
        for input in &inputs {
            let id: Uuid = control
                .query_one(&start_flow, &[&CHAIN_FLOW, input])
                .await?
                .get(0);
            run_ids.push(id);
            start_calls += 1;
        }
    }
    let starting = t0.elapsed();
    let running = running
        .wait_or_finish(&progress, control, &format!("qf_{CHAIN_FLOW}"))
        .await?;
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
    Ok(Chain {
        phase: Phase {
            elapsed,
            stats,
            waits,
        },
        starting,
        start_calls,
    })
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
    let running = running
        .wait_or_finish(&progress, control, FLOOR_QUEUE)
        .await?;
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
        "list" => numbers(t.input["run"]["n"].as_u64().unwrap_or(0) as usize),
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
            batched: false,
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
        if running.died() {
            running.finish().await?;
            return Err("a worker stopped early".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    running.finish().await?;
    cancel(control, big).await?;
    cancel(control, small).await?;
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

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
