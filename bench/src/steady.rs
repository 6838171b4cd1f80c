//! `--duration N`: a steady mixed load, pgbench style, instead of the figures.
//!
//! A starter task (its own connection) starts runs at a steady rate (`--rate`, runs/s, by
//! schedule: run k is due at k / rate seconds) for N seconds, cycling through three
//! workflows:
//!
//! * `bench_mix_map`: `split` -> `items` (a map over split's output, `--mix-items` tasks) ->
//!   `total`. Input `{"i": i, "n": M}`; split answers `[i, ..., i+M-1]`, each item `2*item`,
//!   total the sum of the map's output: the run's output is `{"total": 2*(M*i + M(M-1)/2)}`.
//! * `bench_mix_chain`: `a` -> `b` -> `c`. Input `{"x": i}`; a answers x+1, b a+1, c 2*b:
//!   `{"c": 2*(i+2)}`.
//! * `bench_mix_flaky` (max_attempts 10, base_delay 0: a failed attempt is retried at once):
//!   `items` (a map over the flow input `[3i, 3i+1, 3i+2]`) -> `total`. Every task fails its
//!   attempt with probability 0.2 (`fail_task`) while its attempt number is below 5, so none
//!   fails for good; items answer item+1, total the sum: `{"total": 9i+6}`.
//!
//! Each workflow has `--workers` worker connections of its own (poll_tasks(batch_size,
//! max_wait_ms) of that workflow, then one complete_task or fail_task per task), as a
//! deployment runs a worker pool per workflow. Then the bench waits for every run started to
//! complete and checks that nothing was lost: every run completed with exactly the output
//! computed here, no task completed twice or claimed again after it was completed, no answer
//! refused, every failed attempt retried, every queue empty. Any problem fails the bench.

use crate::workers::{connect, Task, Worker};
use crate::{
    describe, drop_leftovers, machine, ms, percentile, report, Options, Result, STALL_LIMIT,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;

const MIX_MAP: &str = "bench_mix_map";
const MIX_CHAIN: &str = "bench_mix_chain";
const MIX_FLAKY: &str = "bench_mix_flaky";
/// Probability that an attempt of a bench_mix_flaky task fails (below attempt FLAKY_UNTIL).
const FAIL_RATE: f64 = 0.2;
const FLAKY_UNTIL: i32 = 5;
const FLAKY_MAX_ATTEMPTS: i32 = 10;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Map,
    Chain,
    Flaky,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Map, Kind::Chain, Kind::Flaky];

    fn slug(self) -> &'static str {
        match self {
            Kind::Map => MIX_MAP,
            Kind::Chain => MIX_CHAIN,
            Kind::Flaky => MIX_FLAKY,
        }
    }

    /// The steps, each with the step it depends on and its task count.
    fn steps(self, m: usize) -> Vec<(&'static str, Option<&'static str>, usize)> {
        match self {
            Kind::Map => vec![
                ("split", None, 1),
                ("items", Some("split"), m),
                ("total", Some("items"), 1),
            ],
            Kind::Chain => vec![("a", None, 1), ("b", Some("a"), 1), ("c", Some("b"), 1)],
            Kind::Flaky => vec![("items", None, 3), ("total", Some("items"), 1)],
        }
    }

    fn input(self, i: i64, m: usize) -> Value {
        match self {
            Kind::Map => json!({ "i": i, "n": m }),
            Kind::Chain => json!({ "x": i }),
            Kind::Flaky => json!([3 * i, 3 * i + 1, 3 * i + 2]),
        }
    }

    fn expected(self, i: i64, m: usize) -> Value {
        let m = m as i64;
        match self {
            Kind::Map => json!({ "total": 2 * (m * i + m * (m - 1) / 2) }),
            Kind::Chain => json!({ "c": 2 * (i + 2) }),
            Kind::Flaky => json!({ "total": 9 * i + 6 }),
        }
    }

    /// What a task answers, computed from its input.
    fn output(self, t: &Task) -> std::result::Result<Value, String> {
        let int = |v: &Value, what: &str| {
            v.as_i64().ok_or_else(|| {
                format!(
                    "{}/{}: {what} is not an integer: {v}",
                    t.step_slug, t.task_index
                )
            })
        };
        let sum = |v: &Value| -> std::result::Result<i64, String> {
            v.as_array()
                .ok_or_else(|| format!("{}: input items is not an array", t.step_slug))?
                .iter()
                .map(|x| int(x, "an item"))
                .sum()
        };
        let input = &t.input;
        Ok(match (self, t.step_slug.as_str()) {
            (Kind::Map, "split") => {
                let (i, n) = (int(&input["run"]["i"], "i")?, int(&input["run"]["n"], "n")?);
                Value::Array((i..i + n).map(|k| json!(k)).collect())
            }
            (Kind::Map, "items") => json!(2 * int(&input["item"], "item")?),
            (Kind::Map, "total") | (Kind::Flaky, "total") => json!(sum(&input["items"])?),
            (Kind::Chain, "a") => json!(int(&input["run"]["x"], "x")? + 1),
            (Kind::Chain, "b") => json!(int(&input["a"], "a")? + 1),
            (Kind::Chain, "c") => json!(2 * int(&input["b"], "b")?),
            (Kind::Flaky, "items") => json!(int(&input["item"], "item")? + 1),
            (k, s) => return Err(format!("{k:?} has no step {s:?}")),
        })
    }
}

struct StepBook {
    total: usize,
    done: usize,
    /// the step it depends on, and the ones depending on it
    dep: Option<&'static str>,
    dependents: Vec<&'static str>,
    /// when the step became ready: the run's start sent (a root step), or the completion
    /// call that finished its dependency sent
    ready: Option<Instant>,
    /// first-attempt claims seen before `ready` was known (the completer's answer had not
    /// come back yet)
    early_claims: Vec<Instant>,
}

struct RunBook {
    kind: Kind,
    sent: Instant,
    tasks_total: usize,
    tasks_done: usize,
    steps: HashMap<&'static str, StepBook>,
}

type Key = (Uuid, String, i32);

#[derive(Default)]
struct Samples {
    run: HashMap<Kind, Vec<Duration>>,
    /// a root task's first claim: run start sent -> claimed
    pickup: Vec<Duration>,
    /// a dependent task's first claim: its dependency's finishing completion sent -> claimed
    handoff: Vec<Duration>,
    /// the successful attempt: claimed -> its complete_task returned
    service: Vec<Duration>,
}

#[derive(Default)]
struct Book {
    runs: HashMap<Uuid, RunBook>,
    started: HashMap<Kind, usize>,
    completed_runs: usize,
    /// completions, (run, step, task) -> when it returned
    answered: HashMap<Key, Instant>,
    claimed_at: HashMap<Key, Instant>,
    retried: usize,
    problems: Vec<String>,
    samples: Samples,
    /// completion instants of tasks and runs, for the throughput in the load window
    task_done_at: Vec<Instant>,
    run_done_at: Vec<Instant>,
    /// how far behind its schedule the starter sent a start, at most
    max_lag: Duration,
}

impl Book {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 1000 {
            self.problems.push(p);
        }
    }

    fn start(&mut self, run_id: Uuid, kind: Kind, m: usize, sent: Instant) {
        let shape = kind.steps(m);
        let mut steps: HashMap<&'static str, StepBook> = shape
            .iter()
            .map(|&(s, dep, total)| {
                (
                    s,
                    StepBook {
                        total,
                        done: 0,
                        dep,
                        dependents: Vec::new(),
                        ready: dep.is_none().then_some(sent),
                        early_claims: Vec::new(),
                    },
                )
            })
            .collect();
        for &(s, dep, _) in &shape {
            if let Some(d) = dep {
                steps
                    .get_mut(d)
                    .expect("dependency is a step")
                    .dependents
                    .push(s);
            }
        }
        self.runs.insert(
            run_id,
            RunBook {
                kind,
                sent,
                tasks_total: shape.iter().map(|s| s.2).sum(),
                tasks_done: 0,
                steps,
            },
        );
        *self.started.entry(kind).or_default() += 1;
    }

    fn claimed(&mut self, t: &Task, at: Instant) {
        let key: Key = (t.run_id, t.step_slug.clone(), t.task_index);
        if self.answered.contains_key(&key) {
            self.problem(format!(
                "task {}/{}/{} was handed out again (attempt {}) after it was completed",
                t.run_id, t.step_slug, t.task_index, t.attempt
            ));
            return;
        }
        self.claimed_at.insert(key, at);
        let Some(run) = self.runs.get_mut(&t.run_id) else {
            self.problem(format!("a task of unknown run {} was claimed", t.run_id));
            return;
        };
        let Some(step) = run.steps.get_mut(t.step_slug.as_str()) else {
            self.problem(format!(
                "run {}: unknown step {} claimed",
                t.run_id, t.step_slug
            ));
            return;
        };
        if t.attempt != 1 {
            return;
        }
        match (step.ready, step.dep) {
            (Some(ready), None) => self
                .samples
                .pickup
                .push(at.saturating_duration_since(ready)),
            (Some(ready), Some(_)) => self
                .samples
                .handoff
                .push(at.saturating_duration_since(ready)),
            (None, _) => step.early_claims.push(at),
        }
    }

    fn completed(&mut self, t: &Task, ok: bool, sent: Instant, returned: Instant) {
        let key: Key = (t.run_id, t.step_slug.clone(), t.task_index);
        if !ok {
            self.problem(format!(
                "complete_task({}, {}, {}) of attempt {} returned false",
                t.run_id, t.step_slug, t.task_index, t.attempt
            ));
            return;
        }
        if self.answered.insert(key.clone(), returned).is_some() {
            self.problem(format!(
                "task {}/{}/{} was completed twice",
                t.run_id, t.step_slug, t.task_index
            ));
            return;
        }
        if let Some(c) = self.claimed_at.remove(&key) {
            self.samples
                .service
                .push(returned.saturating_duration_since(c));
        }
        self.task_done_at.push(returned);
        let Some(run) = self.runs.get_mut(&t.run_id) else {
            return;
        };
        let mut handoffs = Vec::new();
        if let Some(step) = run.steps.get_mut(t.step_slug.as_str()) {
            step.done += 1;
            if step.done == step.total {
                // this completion finished the step: its dependents became ready
                for d in step.dependents.clone() {
                    if let Some(dep) = run.steps.get_mut(d) {
                        dep.ready = Some(sent);
                        for c in dep.early_claims.drain(..) {
                            handoffs.push(c.saturating_duration_since(sent));
                        }
                    }
                }
            }
        }
        self.samples.handoff.extend(handoffs);
        run.tasks_done += 1;
        if run.tasks_done == run.tasks_total {
            let (kind, started) = (run.kind, run.sent);
            self.samples
                .run
                .entry(kind)
                .or_default()
                .push(returned.saturating_duration_since(started));
            self.run_done_at.push(returned);
            self.completed_runs += 1;
        }
    }

    fn failed(&mut self, t: &Task, status: &str) {
        if status == "queued" {
            self.retried += 1;
            self.claimed_at
                .remove(&(t.run_id, t.step_slug.clone(), t.task_index));
        } else {
            self.problem(format!(
                "fail_task({}, {}, {}) of attempt {} says {status:?}, not queued (retried)",
                t.run_id, t.step_slug, t.task_index, t.attempt
            ));
        }
    }
}

/// A small xorshift generator: which attempts of the flaky workflow fail.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// One worker connection of one workflow: poll, then answer each task (complete_task, or for
/// the flaky workflow sometimes fail_task), recording claims and answers in the book.
async fn worker_loop(
    worker: Arc<Worker>,
    kind: Kind,
    id: String,
    o: (i32, i32),
    seed: u64,
    book: Arc<Mutex<Book>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let (batch_size, max_wait_ms) = o;
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::SeqCst) {
        let tasks = worker
            .poll(kind.slug(), batch_size, max_wait_ms, &id)
            .await?;
        let at = Instant::now();
        {
            let mut b = book.lock().expect("book");
            for t in &tasks {
                b.claimed(t, at);
            }
        }
        for t in &tasks {
            if kind == Kind::Flaky && t.attempt < FLAKY_UNTIL && rng.chance(FAIL_RATE) {
                let status = worker.fail(t, "bench: a random failure").await?;
                book.lock().expect("book").failed(t, &status);
                continue;
            }
            let output = match kind.output(t) {
                Ok(v) => v,
                Err(e) => {
                    book.lock()
                        .expect("book")
                        .problem(format!("run {}: {e}", t.run_id));
                    continue;
                }
            };
            let sent = Instant::now();
            let ok = worker.complete(t, &output).await?;
            let returned = Instant::now();
            book.lock().expect("book").completed(t, ok, sent, returned);
        }
    }
    Ok(())
}

async fn setup(control: &Client) -> Result<()> {
    drop_leftovers(control, &[MIX_MAP, MIX_CHAIN, MIX_FLAKY], &[]).await?;
    control
        .batch_execute(&format!(
            "SELECT quantum_flow.create_flow('{MIX_MAP}');
             SELECT quantum_flow.add_step('{MIX_MAP}', 'split');
             SELECT quantum_flow.add_step('{MIX_MAP}', 'items', ARRAY['split'], step_type => 'map');
             SELECT quantum_flow.add_step('{MIX_MAP}', 'total', ARRAY['items']);
             SELECT quantum_flow.create_flow('{MIX_CHAIN}');
             SELECT quantum_flow.add_step('{MIX_CHAIN}', 'a');
             SELECT quantum_flow.add_step('{MIX_CHAIN}', 'b', ARRAY['a']);
             SELECT quantum_flow.add_step('{MIX_CHAIN}', 'c', ARRAY['b']);
             SELECT quantum_flow.create_flow('{MIX_FLAKY}', max_attempts => {FLAKY_MAX_ATTEMPTS},
                                             base_delay => 0);
             SELECT quantum_flow.add_step('{MIX_FLAKY}', 'items', step_type => 'map');
             SELECT quantum_flow.add_step('{MIX_FLAKY}', 'total', ARRAY['items']);"
        ))
        .await?;
    Ok(())
}

fn dist(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 95.0)),
        ms(percentile(samples, 99.0)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
        samples.len()
    )
}

pub async fn run(
    o: &Options,
    control: &Client,
    server: &machine::Server,
    seconds: u64,
) -> Result<()> {
    setup(control).await?;
    let m = o.mix_items;
    let book = Arc::new(Mutex::new(Book::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for kind in Kind::ALL {
        for i in 0..o.workers {
            let w = Arc::new(Worker::connect(&o.url, &format!("{}_{i}", kind.slug())).await?);
            handles.push(tokio::spawn(worker_loop(
                w,
                kind,
                format!("{:?}{i}", kind),
                (o.batch_size, o.max_wait_ms),
                0x9E37_79B9_7F4A_7C15u64.wrapping_mul(1 + handles.len() as u64),
                book.clone(),
                stop.clone(),
            )));
        }
    }
    let starter = connect(&o.url, "starter").await?;
    let start_flow = starter
        .prepare_typed(
            "SELECT quantum_flow.start_flow($1, $2, $3)",
            &[Type::TEXT, Type::JSONB, Type::UUID],
        )
        .await?;
    crate::settle().await;
    eprintln!(
        "bench: steady mixed load for {seconds} s, {} runs/s ({}, {}, {} in turn), {} workers per workflow",
        o.rate, MIX_MAP, MIX_CHAIN, MIX_FLAKY, o.workers
    );

    // The starter: run k is due at k / rate.
    let window = Duration::from_secs(seconds);
    let t0 = Instant::now();
    let mut run_ids: Vec<(Uuid, Value)> = Vec::new();
    let mut start_error = None;
    let mut k: u64 = 0;
    loop {
        let due = t0 + Duration::from_secs_f64(k as f64 / o.rate);
        if due >= t0 + window {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if handles.iter().any(|h| h.is_finished()) {
            break;
        }
        let kind = Kind::ALL[(k % 3) as usize];
        let i = (k / 3) as i64;
        let run_id = Uuid::new_v4();
        let input = kind.input(i, m);
        let sent = Instant::now();
        {
            let mut b = book.lock().expect("book");
            b.start(run_id, kind, m, sent);
            b.max_lag = b.max_lag.max(sent.saturating_duration_since(due));
        }
        if let Err(e) = starter
            .execute(&start_flow, &[&kind.slug(), &input, &run_id])
            .await
        {
            start_error = Some(format!(
                "start_flow({}) failed: {}",
                kind.slug(),
                describe(&e)
            ));
            book.lock().expect("book").runs.remove(&run_id);
            break;
        }
        run_ids.push((run_id, kind.expected(i, m)));
        k += 1;
    }
    let load_end = Instant::now();
    eprintln!(
        "bench: {} runs started; waiting for every one to complete",
        run_ids.len()
    );

    // Wait for everything started to finish (or for completions to stop coming).
    let mut problems: Vec<String> = Vec::new();
    let (mut seen, mut since) = (0usize, Instant::now());
    loop {
        let (done, answered) = {
            let b = book.lock().expect("book");
            (b.completed_runs, b.answered.len())
        };
        if done >= run_ids.len() {
            break;
        }
        if handles.iter().any(|h| h.is_finished()) {
            problems.push("a worker stopped early (its error follows)".into());
            break;
        }
        if answered != seen {
            (seen, since) = (answered, Instant::now());
        } else if since.elapsed() > STALL_LIMIT {
            problems.push(format!(
                "stalled: {done} of {} runs completed, no completion in the last {STALL_LIMIT:?}",
                run_ids.len()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = Instant::now();
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("a worker stopped: {}", describe(e.as_ref()))),
            Err(e) => problems.push(format!("a worker panicked: {e}")),
        }
    }
    if let Some(e) = start_error {
        problems.push(e);
    }

    // Nothing lost: every run completed with exactly the computed output, queues empty.
    let ids: Vec<Uuid> = run_ids.iter().map(|r| r.0).collect();
    let wants: Vec<Value> = run_ids.iter().map(|r| r.1.clone()).collect();
    let wrong = control
        .query(
            "SELECT t.id, d->>'status', d->'output', t.want \
             FROM unnest($1::uuid[], $2::jsonb[]) AS t(id, want), \
                  LATERAL (SELECT quantum_flow.get_run(t.id) AS d) g \
             WHERE d->>'status' IS DISTINCT FROM 'completed' OR d->'output' IS DISTINCT FROM t.want",
            &[&ids, &wants],
        )
        .await?;
    for row in wrong.iter().take(10) {
        let (id, status, output, want): (Uuid, Option<String>, Option<Value>, Value) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        problems.push(format!(
            "run {id}: status {status:?}, output {output:?}, expected {want}"
        ));
    }
    if wrong.len() > 10 {
        problems.push(format!("... {} runs wrong in all", wrong.len()));
    }
    let mut queues = Vec::new();
    for kind in Kind::ALL {
        let left: i64 = control
            .query_one(
                &format!("SELECT count(*) FROM pgmq.q_qf_{}", kind.slug()),
                &[],
            )
            .await?
            .get(0);
        if left != 0 {
            problems.push(format!(
                "queue qf_{} still holds {left} messages",
                kind.slug()
            ));
        }
        queues.push(format!("qf_{} {left}", kind.slug()));
    }
    let mut b = book.lock().expect("book");
    let expected_tasks: usize = run_ids
        .iter()
        .map(|(id, _)| b.runs.get(id).map_or(0, |r| r.tasks_total))
        .sum();
    if b.answered.len() != expected_tasks {
        problems.push(format!(
            "{} task completions counted, {expected_tasks} expected",
            b.answered.len()
        ));
    }
    problems.extend(b.problems.iter().take(20).cloned());

    // The report.
    let in_window = |v: &[Instant]| v.iter().filter(|&&t| t <= t0 + window).count();
    let (tasks_window, runs_window) = (in_window(&b.task_done_at), in_window(&b.run_done_at));
    let tasks_all = b.task_done_at.len();
    let started = |k: Kind| b.started.get(&k).copied().unwrap_or(0);
    let started_line = format!(
        "{} map, {} chain, {} flaky",
        started(Kind::Map),
        started(Kind::Chain),
        started(Kind::Flaky)
    );
    let (max_lag, retried) = (b.max_lag, b.retried);
    let mut samples = std::mem::take(&mut b.samples);
    drop(b);

    report::context(o, &machine::machine(), server);
    let secs = window.as_secs_f64();
    let total_secs = drained.duration_since(t0).as_secs_f64();
    println!(
        "steady mixed load: {seconds} s at {} runs/s, {} worker connections per workflow \
         (batch_size {}, max_wait_ms {})",
        o.rate, o.workers, o.batch_size, o.max_wait_ms
    );
    println!(
        "  {MIX_MAP}: split -> items (a map of {m}) -> total; {MIX_CHAIN}: a -> b -> c; \
         {MIX_FLAKY}: items (a root map of 3) -> total, attempts below {FLAKY_UNTIL} fail with \
         p={FAIL_RATE}, max_attempts {FLAKY_MAX_ATTEMPTS}, retried at once"
    );
    println!();
    let mut all_runs: Vec<Duration> = samples.run.values().flatten().copied().collect();
    let mut rows: Vec<(String, String, String)> =
        vec![("figure".into(), "what".into(), "result".into())];
    rows.push((
        "runs started".into(),
        started_line,
        format!(
            "{} in {:.1} s ({:.1} runs/s; the starter was at most {:.1} ms behind schedule)",
            run_ids.len(),
            load_end.duration_since(t0).as_secs_f64(),
            run_ids.len() as f64 / load_end.duration_since(t0).as_secs_f64(),
            ms(max_lag)
        ),
    ));
    rows.push((
        "throughput, load window".into(),
        format!("completions in the first {seconds} s"),
        format!(
            "{:.0} tasks/s, {:.1} runs/s",
            tasks_window as f64 / secs,
            runs_window as f64 / secs
        ),
    ));
    rows.push((
        "throughput, overall".into(),
        format!("start of the load until the last run completed ({total_secs:.1} s)"),
        format!(
            "{:.0} tasks/s, {:.1} runs/s; drained {:.2} s after the last start",
            tasks_all as f64 / total_secs,
            run_ids.len() as f64 / total_secs,
            drained.duration_since(load_end).as_secs_f64()
        ),
    ));
    rows.push((
        "failed attempts".into(),
        format!("{MIX_FLAKY}, fail_task returned queued"),
        format!("{retried} (each retried)"),
    ));
    rows.push((
        "run latency, all".into(),
        "start_flow sent -> its last complete_task returned".into(),
        dist(&mut all_runs),
    ));
    for kind in Kind::ALL {
        let mut v = samples.run.remove(&kind).unwrap_or_default();
        rows.push((
            format!("run latency, {}", kind.slug()),
            String::new(),
            dist(&mut v),
        ));
    }
    rows.push((
        "pickup latency".into(),
        "root task: start_flow sent -> claimed".into(),
        dist(&mut samples.pickup),
    ));
    rows.push((
        "handoff latency".into(),
        "dependent task: completion sent -> claimed".into(),
        dist(&mut samples.handoff),
    ));
    rows.push((
        "task latency".into(),
        "claimed -> its complete_task returned".into(),
        dist(&mut samples.service),
    ));
    report::table(&rows);
    println!();
    println!("checks:");
    println!(
        "  runs completed with the expected output: {} of {}",
        run_ids.len() - wrong.len(),
        run_ids.len()
    );
    println!(
        "  task completions: {tasks_all} of {expected_tasks} expected; queues: {}",
        queues.join(", ")
    );
    if problems.is_empty() {
        println!("  nothing lost: every run completed, every output exact, no task answered twice, queues empty");
        Ok(())
    } else {
        println!();
        println!("errors:");
        for p in &problems {
            println!("  {p}");
        }
        Err(format!("the steady load found {} problem(s)", problems.len()).into())
    }
}
