//! The crash test's workload: four workflows, the runs to start (with their ids chosen here),
//! what each task answers (deterministic by run, step, task and attempt), what each run must
//! end with (computed here, independently of the engine), and the workers and the starter,
//! which reconnect after the server went away and carry on.
//!
//! * `chaos_map`: `fetch` -> `square` (map over fetch's 20-300 numbers) -> `total`;
//! * `chaos_chain`: `a` -> `b` -> `c`;
//! * `chaos_diamond`: `a` -> (`b`, `c`) -> `d`, with `b` retried after a 1 s backoff;
//! * `chaos_doom`: `prep` -> `m` (map) -> `fin`, where one task of `m` fails every attempt, so
//!   the run fails with a message known in advance.
//!
//! Some tasks of every workflow fail their first one or two attempts. The first three
//! workflows have a 3 s step timeout and 10 attempts: a claim whose answer a crash swallowed
//! (the poll committed, its result never arrived) is handed out again after the timeout, as
//! pollers do for a dead worker. `chaos_doom` must end with its exact message, which a timed
//! out last attempt would change: its timeout is longer than the test, and a worker that
//! reconnects after a crash looks up the `chaos_doom` claims it holds (by the `worker_id` it
//! polls with) and answers them, so no attempt of it is lost.

use crate::{connect_retrying, is_connection_error};
use quantum_flow_e2e::{describe, Outcome};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use uuid::Uuid;

pub const DATABASE: &str = "qf_ops_chaos";
pub const MAP: &str = "chaos_map";
pub const CHAIN: &str = "chaos_chain";
pub const DIAMOND: &str = "chaos_diamond";
pub const DOOM: &str = "chaos_doom";
pub const WORKFLOWS: [&str; 4] = [MAP, CHAIN, DIAMOND, DOOM];
/// `chaos_doom`'s attempts per task.
pub const DOOM_ATTEMPTS: i32 = 3;

/// The workflows' definitions.
pub fn definitions() -> String {
    format!(
        "SELECT quantum_flow.create_flow('{MAP}', max_attempts => 10, timeout => 3, base_delay => 0); \
         SELECT quantum_flow.add_step('{MAP}', 'fetch'); \
         SELECT quantum_flow.add_step('{MAP}', 'square', ARRAY['fetch'], step_type => 'map'); \
         SELECT quantum_flow.add_step('{MAP}', 'total', ARRAY['square']); \
         SELECT quantum_flow.create_flow('{CHAIN}', max_attempts => 10, timeout => 3, base_delay => 0); \
         SELECT quantum_flow.add_step('{CHAIN}', 'a'); \
         SELECT quantum_flow.add_step('{CHAIN}', 'b', ARRAY['a']); \
         SELECT quantum_flow.add_step('{CHAIN}', 'c', ARRAY['b']); \
         SELECT quantum_flow.create_flow('{DIAMOND}', max_attempts => 10, timeout => 3, base_delay => 0); \
         SELECT quantum_flow.add_step('{DIAMOND}', 'a'); \
         SELECT quantum_flow.add_step('{DIAMOND}', 'b', ARRAY['a'], base_delay => 1); \
         SELECT quantum_flow.add_step('{DIAMOND}', 'c', ARRAY['a']); \
         SELECT quantum_flow.add_step('{DIAMOND}', 'd', ARRAY['b', 'c']); \
         SELECT quantum_flow.create_flow('{DOOM}', max_attempts => {DOOM_ATTEMPTS}, timeout => 600, base_delay => 0); \
         SELECT quantum_flow.add_step('{DOOM}', 'prep'); \
         SELECT quantum_flow.add_step('{DOOM}', 'm', ARRAY['prep'], step_type => 'map'); \
         SELECT quantum_flow.add_step('{DOOM}', 'fin', ARRAY['m']);"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Map,
    Chain,
    Diamond,
    Doom,
}

/// One run of the workload.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: Uuid,
    pub kind: Kind,
    /// The run's number within its workflow.
    pub k: i64,
    /// Map size (`chaos_map`, `chaos_doom`).
    pub n: i64,
}

/// Map sizes of the `chaos_map` runs.
const MAP_SIZES: [i64; 8] = [20, 45, 80, 120, 160, 200, 250, 300];
const CHAIN_RUNS: i64 = 90;
const DIAMOND_RUNS: i64 = 60;
const DOOM_RUNS: i64 = 6;

/// Every run, in the order the starter starts them: each workflow's runs spread evenly over
/// the whole sequence.
pub fn workload() -> Vec<RunSpec> {
    let mut by_kind: Vec<Vec<RunSpec>> = Vec::new();
    let spec = |kind, k, n| RunSpec {
        run_id: Uuid::new_v4(),
        kind,
        k,
        n,
    };
    by_kind.push(
        MAP_SIZES
            .iter()
            .enumerate()
            .map(|(k, &n)| spec(Kind::Map, k as i64, n))
            .collect(),
    );
    by_kind.push((0..CHAIN_RUNS).map(|k| spec(Kind::Chain, k, 0)).collect());
    by_kind.push(
        (0..DIAMOND_RUNS)
            .map(|k| spec(Kind::Diamond, k, 0))
            .collect(),
    );
    by_kind.push(
        (0..DOOM_RUNS)
            .map(|k| spec(Kind::Doom, k, 12 + 4 * k))
            .collect(),
    );
    // Position of run j of L within its kind: (j + 1/2) / L, as a fraction of the sequence.
    let mut all: Vec<(u64, RunSpec)> = Vec::new();
    for runs in by_kind {
        let len = runs.len() as u64;
        for (j, run) in runs.into_iter().enumerate() {
            all.push(((2 * j as u64 + 1) * 1_000_000 / (2 * len), run));
        }
    }
    all.sort_by_key(|(position, _)| *position);
    all.into_iter().map(|(_, run)| run).collect()
}

/// A small deterministic hash (FNV-1a), for the failure schedule.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(b"/") {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v}"))
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(int)
        .collect()
}

// The work itself, shared by the handlers and the expectations.
fn map_fetch(k: i64, n: i64) -> Vec<i64> {
    (0..n).map(|i| k * 1000 + i).collect()
}
fn map_square(item: i64) -> i64 {
    item * item
}
fn chain_x(k: i64) -> i64 {
    7 * k - 200
}
fn chain_a(x: i64) -> i64 {
    3 * x + 1
}
fn chain_b(a: i64) -> i64 {
    a * a - 7
}
fn chain_c(b: i64, x: i64) -> i64 {
    b + x
}
fn diamond_x(k: i64) -> i64 {
    11 * k - 300
}
fn diamond_a(x: i64) -> i64 {
    x + 5
}
fn diamond_b(a: i64) -> i64 {
    2 * a
}
fn diamond_c(a: i64) -> i64 {
    a * a
}
fn diamond_d(b: i64, c: i64, x: i64) -> i64 {
    c - b + x
}
fn doom_prep(k: i64, n: i64) -> Vec<i64> {
    (0..n).map(|i| k * 100 + i).collect()
}
fn doom_m(item: i64) -> i64 {
    3 * item
}

impl RunSpec {
    pub fn workflow(&self) -> &'static str {
        match self.kind {
            Kind::Map => MAP,
            Kind::Chain => CHAIN,
            Kind::Diamond => DIAMOND,
            Kind::Doom => DOOM,
        }
    }

    pub fn input(&self) -> Value {
        match self.kind {
            Kind::Map | Kind::Doom => json!({"k": self.k, "n": self.n}),
            Kind::Chain => json!({"x": chain_x(self.k)}),
            Kind::Diamond => json!({"x": diamond_x(self.k)}),
        }
    }

    /// The task of `chaos_doom`'s map step that fails every attempt.
    pub fn doomed_task(&self) -> Option<i32> {
        (self.kind == Kind::Doom).then(|| ((5 * self.k + 3) % self.n) as i32)
    }

    /// How many attempts of this task fail before one succeeds (0, 1 or 2).
    pub fn flaky_failures(&self, step: &str, index: i32) -> i32 {
        let h = fnv(&[
            self.workflow().as_bytes(),
            &self.k.to_le_bytes(),
            step.as_bytes(),
            &index.to_le_bytes(),
        ]);
        match h % 8 {
            0..=4 => 0,
            5 | 6 => 1,
            _ => 2,
        }
    }

    /// The error message the run fails with (`chaos_doom`), or None.
    pub fn expected_error(&self) -> Option<String> {
        let bad = self.doomed_task()?;
        Some(format!(
            "step m, task {bad}, attempt {DOOM_ATTEMPTS}: {}",
            self.doom_message(DOOM_ATTEMPTS)
        ))
    }

    fn doom_message(&self, attempt: i32) -> String {
        format!("doomed: run {}, attempt {attempt}", self.k)
    }

    /// What the worker answers for attempt `attempt` of a task. `input` is the task's input
    /// when the worker received the claim; a claim it recovered after a crash has none, and
    /// its output is computed from the run's parameters instead.
    pub fn answer(&self, step: &str, index: i32, attempt: i32, input: Option<&Value>) -> Outcome {
        if self.doomed_task() == Some(index) && step == "m" {
            return Outcome::Fail(self.doom_message(attempt));
        }
        if attempt <= self.flaky_failures(step, index) {
            return Outcome::Fail(format!(
                "flaky: {} run {}, step {step}, task {index}, attempt {attempt}",
                self.workflow(),
                self.k
            ));
        }
        let output = match input {
            Some(input) => self.output_from_input(step, input),
            None => self.output_from_spec(step, index),
        };
        Outcome::Complete(output)
    }

    /// The task's output from its input, as a real handler computes it.
    fn output_from_input(&self, step: &str, input: &Value) -> Value {
        let run = &input["run"];
        match (self.kind, step) {
            (Kind::Map, "fetch") => json!(map_fetch(int(&run["k"]), int(&run["n"]))),
            (Kind::Map, "square") => json!(map_square(int(&input["item"]))),
            (Kind::Map, "total") => json!(ints(&input["square"]).iter().sum::<i64>()),
            (Kind::Chain, "a") => json!(chain_a(int(&run["x"]))),
            (Kind::Chain, "b") => json!(chain_b(int(&input["a"]))),
            (Kind::Chain, "c") => json!(chain_c(int(&input["b"]), int(&run["x"]))),
            (Kind::Diamond, "a") => json!(diamond_a(int(&run["x"]))),
            (Kind::Diamond, "b") => json!(diamond_b(int(&input["a"]))),
            (Kind::Diamond, "c") => json!(diamond_c(int(&input["a"]))),
            (Kind::Diamond, "d") => json!(diamond_d(
                int(&input["b"]),
                int(&input["c"]),
                int(&run["x"])
            )),
            (Kind::Doom, "prep") => json!(doom_prep(int(&run["k"]), int(&run["n"]))),
            (Kind::Doom, "m") => json!(doom_m(int(&input["item"]))),
            (Kind::Doom, "fin") => json!(ints(&input["m"]).iter().sum::<i64>()),
            (kind, step) => panic!("no handler for step {step} of {kind:?}"),
        }
    }

    /// Every step's output, computed from the run's parameters: (step, task count, output).
    pub fn expected_steps(&self) -> Vec<(&'static str, i64, Value)> {
        match self.kind {
            Kind::Map => {
                let fetched = map_fetch(self.k, self.n);
                let squares: Vec<i64> = fetched.iter().map(|&v| map_square(v)).collect();
                let total: i64 = squares.iter().sum();
                vec![
                    ("fetch", 1, json!(fetched)),
                    ("square", self.n, json!(squares)),
                    ("total", 1, json!(total)),
                ]
            }
            Kind::Chain => {
                let x = chain_x(self.k);
                let a = chain_a(x);
                let b = chain_b(a);
                vec![
                    ("a", 1, json!(a)),
                    ("b", 1, json!(b)),
                    ("c", 1, json!(chain_c(b, x))),
                ]
            }
            Kind::Diamond => {
                let x = diamond_x(self.k);
                let a = diamond_a(x);
                let (b, c) = (diamond_b(a), diamond_c(a));
                vec![
                    ("a", 1, json!(a)),
                    ("b", 1, json!(b)),
                    ("c", 1, json!(c)),
                    ("d", 1, json!(diamond_d(b, c, x))),
                ]
            }
            Kind::Doom => {
                let prepped = doom_prep(self.k, self.n);
                let m: Vec<i64> = prepped.iter().map(|&v| doom_m(v)).collect();
                let fin: i64 = m.iter().sum();
                vec![
                    ("prep", 1, json!(prepped)),
                    ("m", self.n, json!(m)),
                    ("fin", 1, json!(fin)),
                ]
            }
        }
    }

    /// A task's output from the run's parameters (for a claim recovered without its input).
    fn output_from_spec(&self, step: &str, index: i32) -> Value {
        let (_, _, output) = self
            .expected_steps()
            .into_iter()
            .find(|(s, _, _)| *s == step)
            .unwrap_or_else(|| panic!("no step {step} in {:?}", self.kind));
        match output {
            Value::Array(items) if self.is_map_step(step) => items[index as usize].clone(),
            other => other,
        }
    }

    fn is_map_step(&self, step: &str) -> bool {
        matches!((self.kind, step), (Kind::Map, "square") | (Kind::Doom, "m"))
    }

    /// The run's output when it completes (None: it fails).
    pub fn expected_output(&self) -> Option<Value> {
        let steps = self.expected_steps();
        let (leaf, _, output) = steps.last().expect("a step");
        (self.kind != Kind::Doom).then(|| json!({ *leaf: output }))
    }
}

/// What the workers and the starter did, for the report and the checks.
#[derive(Default)]
pub struct Stats {
    pub claims: AtomicUsize,
    pub completed: AtomicUsize,
    pub failed_attempts: AtomicUsize,
    /// complete_task false or fail_task ignored: a late, duplicate or re-sent answer.
    pub unchanged_answers: AtomicUsize,
    pub reconnects: AtomicUsize,
    /// Answers still to send when a connection was lost (sent again: a first sending may
    /// have committed).
    pub resent_answers: AtomicUsize,
    /// `chaos_doom` claims a worker found it held after reconnecting, without having seen them
    /// (the poll committed, its result was lost).
    pub recovered_claims: AtomicUsize,
    pub runs_started: AtomicUsize,
    /// complete_task / fail_task calls in flight right now (the test crashes the server while
    /// some are).
    pub answering: AtomicUsize,
    /// start_flow retried after a connection error, and found to have committed (run_exists).
    pub starts_found_committed: AtomicUsize,
    pub starts_retried: AtomicUsize,
}

/// What the workers, the starter and the test share.
pub struct Shared {
    pub url: String,
    pub runs: HashMap<Uuid, RunSpec>,
    pub stop: AtomicBool,
    /// How many runs (a prefix of the workload) the starter may start by now: the test
    /// releases the workload in parts, one before each crash and one after the last.
    pub released: AtomicUsize,
    pub deadline: Instant,
    pub stats: Stats,
}

/// An answer to deliver: complete_task or fail_task for one attempt.
#[derive(Debug, Clone)]
struct Answer {
    run_id: Uuid,
    step_slug: String,
    task_index: i32,
    attempt: i32,
    outcome: Outcome,
}

impl Answer {
    fn key(&self) -> (Uuid, String, i32, i32) {
        (
            self.run_id,
            self.step_slug.clone(),
            self.task_index,
            self.attempt,
        )
    }
}

/// Panics on an error that is not a lost connection (the engine refused something).
fn lost_connection(what: &str, e: &tokio_postgres::Error) {
    assert!(is_connection_error(e), "{what}: {}", describe(e));
}

async fn deliver(client: &Client, a: &Answer, stats: &Stats) -> Result<(), tokio_postgres::Error> {
    stats.answering.fetch_add(1, Ordering::SeqCst);
    let result = send_answer(client, a, stats).await;
    stats.answering.fetch_sub(1, Ordering::SeqCst);
    result
}

async fn send_answer(
    client: &Client,
    a: &Answer,
    stats: &Stats,
) -> Result<(), tokio_postgres::Error> {
    match &a.outcome {
        Outcome::Complete(output) => {
            let row = client
                .query_one(
                    "SELECT quantum_flow.complete_task($1, $2, $3, $4, $5)",
                    &[&a.run_id, &a.step_slug, &a.task_index, output, &a.attempt],
                )
                .await?;
            if row.get::<_, bool>(0) {
                stats.completed.fetch_add(1, Ordering::SeqCst);
            } else {
                stats.unchanged_answers.fetch_add(1, Ordering::SeqCst);
            }
        }
        Outcome::Fail(message) => {
            let row = client
                .query_one(
                    "SELECT quantum_flow.fail_task($1, $2, $3, $4, $5)",
                    &[&a.run_id, &a.step_slug, &a.task_index, message, &a.attempt],
                )
                .await?;
            let status: String = row.get(0);
            match status.as_str() {
                "queued" | "failed" => stats.failed_attempts.fetch_add(1, Ordering::SeqCst),
                "ignored" => stats.unchanged_answers.fetch_add(1, Ordering::SeqCst),
                other => panic!("fail_task returned {other:?}"),
            };
        }
    }
    Ok(())
}

/// The `chaos_doom` claims that `worker_id` holds: tasks it claimed last (their worker_id),
/// still started, whose message is still in the queue (a failed run's tasks keep their status,
/// but the failure archived their messages, except those of claims it raced with).
async fn held_doom_claims(
    client: &Client,
    worker_id: &str,
) -> Result<Vec<(Uuid, String, i32, i32)>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT t.run_id, t.step_slug, t.task_index, t.attempts_count \
                 FROM quantum_flow.step_tasks t \
                 JOIN pgmq.q_qf_{DOOM} q ON q.msg_id = t.message_id \
                 WHERE t.worker_id = $1 AND t.status = 'started'"
            ),
            &[&worker_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// One worker: polls every workflow in turn (batches of 10, its own worker_id), answers each
/// claim as `RunSpec::answer` says, naming the attempt. On a lost connection it reconnects,
/// sends again the answers it could not confirm, and answers the `chaos_doom` claims it holds
/// without knowing of them. Stops when told to, once nothing is left to answer.
pub async fn worker(shared: Arc<Shared>, number: usize) {
    let worker_id = format!("chaos-worker-{number}");
    let mut client: Option<Client> = None;
    let mut pending: Vec<Answer> = Vec::new();
    let mut first_connection = true;
    let mut turn = number;
    'work: loop {
        if client.is_none() {
            let c = connect_retrying(&shared.url, shared.deadline).await;
            if !first_connection {
                shared.stats.reconnects.fetch_add(1, Ordering::SeqCst);
                shared
                    .stats
                    .resent_answers
                    .fetch_add(pending.len(), Ordering::SeqCst);
                let held = match held_doom_claims(&c, &worker_id).await {
                    Ok(held) => held,
                    Err(e) => {
                        lost_connection("looking up held claims", &e);
                        continue 'work;
                    }
                };
                let known: HashSet<_> = pending.iter().map(Answer::key).collect();
                for (run_id, step_slug, task_index, attempt) in held {
                    if known.contains(&(run_id, step_slug.clone(), task_index, attempt)) {
                        continue;
                    }
                    let spec = &shared.runs[&run_id];
                    shared.stats.recovered_claims.fetch_add(1, Ordering::SeqCst);
                    pending.push(Answer {
                        outcome: spec.answer(&step_slug, task_index, attempt, None),
                        run_id,
                        step_slug,
                        task_index,
                        attempt,
                    });
                }
            }
            first_connection = false;
            client = Some(c);
        }
        let c = client.as_ref().expect("connected");
        while let Some(answer) = pending.first() {
            if let Err(e) = deliver(c, answer, &shared.stats).await {
                lost_connection("answering a task", &e);
                client = None;
                continue 'work;
            }
            pending.remove(0);
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        for _ in 0..WORKFLOWS.len() {
            turn += 1;
            let slug = WORKFLOWS[turn % WORKFLOWS.len()];
            let rows = match c
                .query(
                    "SELECT run_id, step_slug, task_index, attempt, input \
                     FROM quantum_flow.poll_tasks($1, batch_size => 10, max_wait_ms => 0, \
                                                  worker_id => $2)",
                    &[&slug, &worker_id],
                )
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    lost_connection("poll_tasks", &e);
                    client = None;
                    continue 'work;
                }
            };
            if rows.is_empty() {
                continue;
            }
            shared.stats.claims.fetch_add(rows.len(), Ordering::SeqCst);
            for row in rows {
                let run_id: Uuid = row.get(0);
                let step_slug: String = row.get(1);
                let task_index: i32 = row.get(2);
                let attempt: i32 = row.get(3);
                let input: Value = row.get(4);
                let spec = shared
                    .runs
                    .get(&run_id)
                    .unwrap_or_else(|| panic!("claimed a task of unknown run {run_id}"));
                pending.push(Answer {
                    outcome: spec.answer(&step_slug, task_index, attempt, Some(&input)),
                    run_id,
                    step_slug,
                    task_index,
                    attempt,
                });
            }
            // Answer this batch before polling the next workflow.
            continue 'work;
        }
        // Nothing to do in any workflow.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `runs` in order, one every `pace`, each with its own run_id, as far as the test has
/// released them. A start_flow that fails with a lost connection is sent again on a new
/// connection: run_exists then means the first one committed.
pub async fn starter(shared: Arc<Shared>, runs: Vec<RunSpec>, pace: Duration) {
    let mut client = connect_retrying(&shared.url, shared.deadline).await;
    for (i, run) in runs.iter().enumerate() {
        while shared.released.load(Ordering::SeqCst) <= i {
            assert!(
                Instant::now() < shared.deadline,
                "run {i} of the workload was never released"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut resent = false;
        loop {
            match client
                .query_one(
                    "SELECT quantum_flow.start_flow($1, $2, $3)",
                    &[&run.workflow(), &run.input(), &run.run_id],
                )
                .await
            {
                Ok(row) => {
                    assert_eq!(row.get::<_, Uuid>(0), run.run_id);
                    break;
                }
                Err(e)
                    if resent
                        && e.as_db_error().is_some_and(|db| {
                            db.code().code() == "23505" && db.message().starts_with("run_exists:")
                        }) =>
                {
                    shared
                        .stats
                        .starts_found_committed
                        .fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(e) => {
                    lost_connection("start_flow", &e);
                    shared.stats.starts_retried.fetch_add(1, Ordering::SeqCst);
                    resent = true;
                    client = connect_retrying(&shared.url, shared.deadline).await;
                }
            }
        }
        shared.stats.runs_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(pace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_mixes_every_workflow_throughout() {
        let runs = workload();
        assert_eq!(
            runs.len() as i64,
            MAP_SIZES.len() as i64 + CHAIN_RUNS + DIAMOND_RUNS + DOOM_RUNS
        );
        for part in runs.chunks(runs.len() / 4) {
            for kind in [Kind::Chain, Kind::Diamond] {
                assert!(
                    part.iter().any(|r| r.kind == kind),
                    "{kind:?} in every quarter"
                );
            }
        }
        let ids: HashSet<Uuid> = runs.iter().map(|r| r.run_id).collect();
        assert_eq!(ids.len(), runs.len());
    }

    #[test]
    fn answers_follow_the_failure_schedule() {
        let run = RunSpec {
            run_id: Uuid::nil(),
            kind: Kind::Doom,
            k: 2,
            n: 20,
        };
        let bad = run.doomed_task().unwrap();
        assert_eq!(bad, 13);
        for attempt in 1..=DOOM_ATTEMPTS {
            assert_eq!(
                run.answer("m", bad, attempt, None),
                Outcome::Fail(format!("doomed: run 2, attempt {attempt}"))
            );
        }
        assert_eq!(
            run.expected_error().unwrap(),
            "step m, task 13, attempt 3: doomed: run 2, attempt 3"
        );
        // A recovered claim (no input) is answered as the received one would be.
        let input = json!({"item": 205, "index": 5, "run": {"k": 2, "n": 20}});
        let last = run.flaky_failures("m", 5) + 1;
        assert_eq!(
            run.answer("m", 5, last, Some(&input)),
            run.answer("m", 5, last, None)
        );
        assert_eq!(
            run.answer("m", 5, last, None),
            Outcome::Complete(json!(615))
        );
    }
}
