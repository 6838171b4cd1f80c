//! Many workers, many runs, random failures: every run ends with the output computed here
//! independently, every attempt is handed out exactly once, and the queues end empty with
//! nothing archived.

use quantum_flow_e2e::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const SEED: u64 = 0x5eed_2024;
const WORKERS: u64 = 8;
const MAP_ITEMS: i64 = 5_000;
const DIAMOND_RUNS: i64 = 200;
const BATCH_SIZE: i32 = 10;
const MAX_WAIT_MS: i32 = 200;
/// Attempts below this fail at random; later ones always succeed, so with max_attempts 10 no
/// run can fail.
const FLAKY_ATTEMPTS: i32 = 3;
/// A safety net for a stuck engine (runs unfinished, yet no worker has claimed anything for
/// this long), not a speed requirement.
const STALL_LIMIT: Duration = Duration::from_secs(120);

const MAP_FLOW: &str = "stress_map";
const DIAMOND_FLOW: &str = "stress_diamond";

/// The work itself, shared by the handlers and the expectations.
fn square(i: i64) -> i64 {
    i * i
}
fn diamond_a(x: i64) -> i64 {
    3 * x + 1
}
fn diamond_b(a: i64) -> i64 {
    a * a
}
fn diamond_c(a: i64) -> i64 {
    a + 100
}
fn diamond_d(x: i64, b: i64, c: i64) -> i64 {
    2 * b - c + x
}

fn handle(task: &Task) -> Value {
    let input = &task.input;
    let v = match task.step_slug.as_str() {
        "square" => {
            assert_eq!(as_i64(&input["index"]), i64::from(task.task_index));
            square(as_i64(&input["item"]))
        }
        "sum" => input["square"]
            .as_array()
            .expect("sum's input has square's output")
            .iter()
            .map(as_i64)
            .sum(),
        "a" => diamond_a(as_i64(&input["run"]["x"])),
        "b" => diamond_b(as_i64(&input["a"])),
        "c" => diamond_c(as_i64(&input["a"])),
        "d" => diamond_d(
            as_i64(&input["run"]["x"]),
            as_i64(&input["b"]),
            as_i64(&input["c"]),
        ),
        other => panic!("unexpected step {other}"),
    };
    json!(v)
}

/// Per-run input of the diamond workflow: varies with the run number.
fn diamond_x(k: i64) -> i64 {
    k * 7 - 300
}

/// Every task of every run: (run, step, task_index) -> expected output.
type Expected = BTreeMap<(Uuid, String, i32), Value>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_many_workers_random_failures() {
    let url = fresh_database("qf_e2e_stress").await;
    let main = connect(&url).await;
    exec(
        &main,
        &format!(
            "SELECT quantum_flow.create_flow('{MAP_FLOW}', max_attempts => 10, timeout => 600, base_delay => 0); \
             SELECT quantum_flow.add_step('{MAP_FLOW}', 'square', step_type => 'map'); \
             SELECT quantum_flow.add_step('{MAP_FLOW}', 'sum', ARRAY['square']); \
             SELECT quantum_flow.create_flow('{DIAMOND_FLOW}', max_attempts => 10, timeout => 600, base_delay => 0); \
             SELECT quantum_flow.add_step('{DIAMOND_FLOW}', 'a'); \
             SELECT quantum_flow.add_step('{DIAMOND_FLOW}', 'b', ARRAY['a']); \
             SELECT quantum_flow.add_step('{DIAMOND_FLOW}', 'c', ARRAY['a']); \
             SELECT quantum_flow.add_step('{DIAMOND_FLOW}', 'd', ARRAY['b', 'c']);"
        ),
    )
    .await;

    let map_done = Arc::new(AtomicBool::new(false));
    let diamond_done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let claims_seen = Arc::new(AtomicUsize::new(0));

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let url = url.clone();
        let map_done = map_done.clone();
        let diamond_done = diamond_done.clone();
        let claims_seen = claims_seen.clone();
        workers.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let mut rng = StdRng::seed_from_u64(SEED + w);
            let mut handler = move |task: &Task| {
                if task.attempt < FLAKY_ATTEMPTS && rng.gen_bool(0.1) {
                    Outcome::Fail(format!("random failure of attempt {}", task.attempt))
                } else {
                    Outcome::Complete(handle(task))
                }
            };
            let mut log: Vec<Processed> = Vec::new();
            loop {
                let mut busy = false;
                for (flow, done) in [(MAP_FLOW, &map_done), (DIAMOND_FLOW, &diamond_done)] {
                    if done.load(Ordering::SeqCst) {
                        continue;
                    }
                    busy = true;
                    let processed = work_once(&client, flow, BATCH_SIZE, MAX_WAIT_MS, &mut handler)
                        .await
                        .map_err(|e| format!("worker {w} on {flow}: {}", describe(&e)))?;
                    claims_seen.fetch_add(processed.len(), Ordering::SeqCst);
                    log.extend(processed);
                }
                if !busy {
                    return Ok::<_, String>(log);
                }
            }
        }));
    }

    // Start the runs while the workers are already polling.
    let mut expected = Expected::new();
    let mut expected_output: HashMap<Uuid, Value> = HashMap::new();
    let items: Vec<i64> = (0..MAP_ITEMS).collect();
    let map_run = start_flow(&main, MAP_FLOW, &json!(items)).await;
    let squares: Vec<i64> = items.iter().map(|&i| square(i)).collect();
    for (i, s) in squares.iter().enumerate() {
        expected.insert((map_run, "square".into(), i as i32), json!(s));
    }
    let total: i64 = squares.iter().sum();
    expected.insert((map_run, "sum".into(), 0), json!(total));
    expected_output.insert(map_run, json!({ "sum": total }));

    let mut diamond_runs = Vec::new();
    for k in 0..DIAMOND_RUNS {
        let x = diamond_x(k);
        let run = start_flow(&main, DIAMOND_FLOW, &json!({ "x": x })).await;
        let a = diamond_a(x);
        let b = diamond_b(a);
        let c = diamond_c(a);
        let d = diamond_d(x, b, c);
        for (step, v) in [("a", a), ("b", b), ("c", c), ("d", d)] {
            expected.insert((run, step.into(), 0), json!(v));
        }
        expected_output.insert(run, json!({ "d": d }));
        diamond_runs.push(run);
    }

    // Stop the workers of a workflow once all its runs have finished.
    let (mut last_seen, mut last_progress) = (0, Instant::now());
    loop {
        if !map_done.load(Ordering::SeqCst) && unfinished_runs(&main, &[map_run]).await == 0 {
            map_done.store(true, Ordering::SeqCst);
        }
        if !diamond_done.load(Ordering::SeqCst) && unfinished_runs(&main, &diamond_runs).await == 0
        {
            diamond_done.store(true, Ordering::SeqCst);
        }
        if map_done.load(Ordering::SeqCst) && diamond_done.load(Ordering::SeqCst) {
            break;
        }
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        let seen = claims_seen.load(Ordering::SeqCst);
        if seen != last_seen {
            (last_seen, last_progress) = (seen, Instant::now());
        }
        if last_progress.elapsed() > STALL_LIMIT {
            panic!(
                "no task claimed for {STALL_LIMIT:?} with runs unfinished (map: {}, diamond: {}); \
                 queued messages: map {}, diamond {}; archived messages: map {}, diamond {}",
                unfinished_runs(&main, &[map_run]).await,
                unfinished_runs(&main, &diamond_runs).await,
                queue_len(&main, MAP_FLOW).await,
                queue_len(&main, DIAMOND_FLOW).await,
                archive_len(&main, MAP_FLOW).await,
                archive_len(&main, DIAMOND_FLOW).await,
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    map_done.store(true, Ordering::SeqCst);
    diamond_done.store(true, Ordering::SeqCst);
    let mut log = Vec::new();
    for w in workers {
        log.extend(w.await.expect("worker panicked").expect("worker failed"));
    }
    println!("{} claims processed in {:?}", log.len(), started.elapsed());

    // Every run ends completed with the expected output, every step completed with all its
    // tasks counted.
    let all_runs: Vec<Uuid> = std::iter::once(map_run)
        .chain(diamond_runs.iter().copied())
        .collect();
    for &run in &all_runs {
        let doc = get_run(&main, run).await;
        assert_eq!(doc["status"], "completed", "run {run}: {doc}");
        assert_eq!(doc["error_message"], Value::Null, "run {run}");
        assert_eq!(doc["output"], expected_output[&run], "run {run} output");
        let steps = doc["steps"].as_array().expect("steps");
        let expected_steps: &[&str] = if run == map_run {
            &["square", "sum"]
        } else {
            &["a", "b", "c", "d"]
        };
        let slugs: Vec<&str> = steps
            .iter()
            .map(|s| s["step_slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, expected_steps, "run {run}");
        for s in steps {
            let slug = s["step_slug"].as_str().unwrap();
            assert_eq!(s["status"], "completed", "run {run} step {slug}: {s}");
            assert_eq!(
                s["tasks_completed"], s["tasks_total"],
                "run {run} step {slug}"
            );
            let tasks = if slug == "square" { MAP_ITEMS } else { 1 };
            assert_eq!(s["tasks_total"], json!(tasks), "run {run} step {slug}");
            let want = if slug == "square" {
                json!(squares)
            } else {
                expected[&(run, slug.to_string(), 0)].clone()
            };
            assert_eq!(s["output"], want, "run {run} step {slug} output");
        }
    }

    // Claims: each (run, step, task, attempt) handed out exactly once.
    let mut claims: HashMap<ClaimKey, usize> = HashMap::new();
    for p in &log {
        *claims.entry(p.task.claim_key()).or_default() += 1;
    }
    let duplicates: Vec<_> = claims.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "attempts claimed more than once: {duplicates:?}"
    );

    // Per task: attempts 1..=k were claimed, 1..k failed (and were queued again), k completed
    // with the expected output.
    let mut per_task: BTreeMap<(Uuid, String, i32), Vec<&Processed>> = BTreeMap::new();
    for p in &log {
        per_task
            .entry((p.task.run_id, p.task.step_slug.clone(), p.task.task_index))
            .or_default()
            .push(p);
    }
    let claimed_tasks: HashSet<_> = per_task.keys().cloned().collect();
    let expected_tasks: HashSet<_> = expected.keys().cloned().collect();
    assert_eq!(
        claimed_tasks.len(),
        expected_tasks.len(),
        "claimed tasks vs tasks of all runs"
    );
    assert_eq!(claimed_tasks, expected_tasks);
    let mut completions = 0;
    let mut failures = 0;
    for (key, mut attempts) in per_task {
        attempts.sort_by_key(|p| p.task.attempt);
        let numbers: Vec<i32> = attempts.iter().map(|p| p.task.attempt).collect();
        let k = numbers.len() as i32;
        assert_eq!(numbers, (1..=k).collect::<Vec<_>>(), "attempts of {key:?}");
        for p in &attempts[..attempts.len() - 1] {
            assert_eq!(
                p.answered,
                Answered::Failed("queued".into()),
                "non-final attempt {} of {key:?}",
                p.task.attempt
            );
            failures += 1;
        }
        let last = attempts.last().unwrap();
        assert_eq!(
            last.answered,
            Answered::Completed(true),
            "final attempt of {key:?}"
        );
        assert_eq!(handle(&last.task), expected[&key], "{key:?}");
        completions += 1;
    }
    assert_eq!(completions, expected.len(), "completed tasks = tasks");
    assert_eq!(
        completions,
        (MAP_ITEMS + 1 + 4 * DIAMOND_RUNS) as usize,
        "task count"
    );
    assert!(failures > 0, "the random failures never happened");
    println!("{completions} tasks completed, {failures} attempts failed and were retried");

    for flow in [MAP_FLOW, DIAMOND_FLOW] {
        assert_eq!(queue_len(&main, flow).await, 0, "queue of {flow}");
        assert_eq!(
            archive_len(&main, flow).await,
            0,
            "no run failed, so nothing of {flow} may be archived"
        );
    }
}

/// Waits until backend `pid` waits for a heavyweight lock.
async fn wait_until_lock_wait(observer: &tokio_postgres::Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = observer
            .query_one(
                "SELECT coalesce((SELECT wait_event_type = 'Lock' FROM pg_stat_activity \
                                  WHERE pid = $1), false)",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid} never waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The race the stress test once hit (three tasks lost out of ~6,000), made deterministic: a
/// poll starts while a start_flow is uncommitted, and its pgmq.read has to wait (here, behind
/// a queued SHARE lock on the queue table) until after that commit. The read then returns the
/// new message; the poll must claim its task, not mistake it for a stale message (archiving it
/// would lose the task and leave the run started forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_whose_read_waits_for_a_commit_claims_the_committed_task() {
    let url = fresh_database("qf_e2e_stress_race").await;
    let starter = connect(&url).await;
    exec(
        &starter,
        "SELECT quantum_flow.create_flow('race'); SELECT quantum_flow.add_step('race', 'a');",
    )
    .await;
    let observer = connect(&url).await;

    exec(&starter, "BEGIN").await;
    let run = start_flow(&starter, "race", &json!({"r": 1})).await;

    // A SHARE lock request queued behind the uncommitted start_flow, held briefly once granted.
    let locker = connect(&url).await;
    let locker_pid = backend_pid(&locker).await;
    let locking = tokio::spawn(async move {
        locker
            .batch_execute("BEGIN; LOCK TABLE pgmq.q_qf_race IN SHARE MODE")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        locker.batch_execute("COMMIT").await.unwrap();
    });
    wait_until_lock_wait(&observer, locker_pid).await;

    // The poll's read queues behind that lock request.
    let poller = connect(&url).await;
    let poller_pid = backend_pid(&poller).await;
    let polling = tokio::spawn(async move { poll(&poller, "race", 10, 0).await });
    wait_until_lock_wait(&observer, poller_pid).await;

    exec(&starter, "COMMIT").await;
    locking.await.unwrap();
    let claimed = polling
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("poll_tasks: {}", describe(&e)));

    assert_eq!(
        archive_len(&observer, "race").await,
        0,
        "the new task's message was archived as stale"
    );
    assert_eq!(
        claimed,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 1,
            input: json!({"run": {"r": 1}}),
        }]
    );
    assert_eq!(queue_len(&observer, "race").await, 1, "the claimed message");
}
