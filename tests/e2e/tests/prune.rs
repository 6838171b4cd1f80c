//! prune_runs under load: while four workers run new runs of a workflow, a pruner deletes that
//! workflow's runs that ended earlier. Every old run goes (with its tasks and its archived
//! messages), counted exactly once; every new run completes with its exact output; nothing a
//! started run needs is touched; the queue ends empty.

use quantum_flow_e2e::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const FLOW: &str = "prune_load";
const OLD_RUNS: i64 = 60;
const NEW_RUNS: i64 = 200;
const ITEMS: i64 = 10;
const WORKERS: usize = 4;

/// The items of run `k`, and the output its `sum` step computes.
fn items(k: i64) -> Vec<i64> {
    (k..k + ITEMS).collect()
}
fn expected_sum(k: i64) -> i64 {
    items(k).iter().map(|i| i * i).sum()
}
/// Old runs whose number is a multiple of 6 fail (their task 0 fails, max_attempts is 1).
fn old_run_fails(k: i64) -> bool {
    k % 6 == 0
}

fn handle(task: &Task) -> Outcome {
    match task.step_slug.as_str() {
        "sq" => {
            let k = as_i64(&task.input["run"]["k"]);
            if task.input["run"]["old"] == json!(true) && old_run_fails(k) && task.task_index == 0 {
                return Outcome::Fail(format!("run {k} fails"));
            }
            let i = as_i64(&task.input["item"]);
            Outcome::Complete(json!(i * i))
        }
        "sum" => {
            let squares = task.input["sq"].as_array().expect("sum gets sq's output");
            Outcome::Complete(json!(squares.iter().map(as_i64).sum::<i64>()))
        }
        other => panic!("unexpected step {other}"),
    }
}

async fn start(client: &tokio_postgres::Client, k: i64, old: bool) -> Uuid {
    client
        .query_one(
            "SELECT quantum_flow.start_flow($1, jsonb_build_object('k', $2::bigint, 'old', $3::bool, 'items', $4::jsonb))",
            &[&FLOW, &k, &old, &json!(items(k))],
        )
        .await
        .unwrap_or_else(|e| panic!("start_flow: {}", describe(&e)))
        .get(0)
}

async fn scalar_i64(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pruning_while_workers_run_loses_nothing() {
    let url = fresh_database("qf_e2e_prune").await;
    let main = connect(&url).await;
    exec(
        &main,
        &format!(
            "SELECT quantum_flow.create_flow('{FLOW}', max_attempts => 1, base_delay => 0); \
             SELECT quantum_flow.add_step('{FLOW}', 'list'); \
             SELECT quantum_flow.add_step('{FLOW}', 'sq', ARRAY['list'], step_type => 'map'); \
             SELECT quantum_flow.add_step('{FLOW}', 'sum', ARRAY['sq']);"
        ),
    )
    .await;

    // Old runs, driven to their end by one worker. `list` outputs the run's items.
    let mut old = Vec::new();
    for k in 0..OLD_RUNS {
        old.push(start(&main, k, true).await);
    }
    let list_then_handle = |task: &Task| match task.step_slug.as_str() {
        "list" => Outcome::Complete(task.input["run"]["items"].clone()),
        _ => handle(task),
    };
    let mut handler = list_then_handle;
    while unfinished_runs(&main, &old).await > 0 {
        work_once(&main, FLOW, 50, 100, &mut handler).await.unwrap();
    }
    let old_failed = (0..OLD_RUNS).filter(|k| old_run_fails(*k)).count() as i64;
    assert_eq!(
        scalar_i64(
            &main,
            "SELECT count(*) FROM quantum_flow.runs WHERE status = 'failed'"
        )
        .await,
        old_failed
    );
    let archived_before = archive_len(&main, FLOW).await;
    assert!(archived_before > 0, "failed runs archived their messages");
    // Everything that ended so far ended before this instant.
    let cutoff: std::time::SystemTime = main
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // New runs, worked by four workers, while a pruner deletes what ended before the cutoff.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let url = url.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let client = connect(&url).await;
            work_until(&client, FLOW, 10, 100, &stop, list_then_handle, |_| {})
                .await
                .unwrap_or_else(|e| panic!("worker: {}", describe(&e)));
        }));
    }
    let pruner = {
        let url = url.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = connect(&url).await;
            let mut deleted = 0i64;
            let mut calls = 0;
            while !stop.load(Ordering::SeqCst) || calls < 3 {
                // the interval since the cutoff keeps now() - older_than at the cutoff
                let n: i64 = client
                    .query_one(
                        "SELECT quantum_flow.prune_runs(now() - $1::timestamptz, $2, 7)",
                        &[&cutoff, &(calls % 3 == 1)],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("prune_runs: {}", describe(&e)))
                    .get(0);
                deleted += n;
                calls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // keep_failed calls may have left failed runs: a last call without it
            deleted
                + client
                    .query_one(
                        "SELECT quantum_flow.prune_runs(now() - $1::timestamptz, false, 1000)",
                        &[&cutoff],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
        })
    };
    let mut new = Vec::new();
    for k in 0..NEW_RUNS {
        new.push(start(&main, 1000 + k, false).await);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while unfinished_runs(&main, &new).await > 0 {
        assert!(Instant::now() < deadline, "new runs did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let deleted = pruner.await.unwrap();

    // Every old run was deleted exactly once, with its tasks, step states and messages.
    assert_eq!(
        deleted, OLD_RUNS,
        "prune_runs' counts add up to the old runs"
    );
    assert_eq!(
        main.query_one(
            "SELECT count(*) FROM quantum_flow.runs WHERE run_id = ANY($1)",
            &[&old]
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        0
    );
    for table in ["step_states", "step_tasks", "step_task_shards"] {
        let left: i64 = main
            .query_one(
                &format!("SELECT count(*) FROM quantum_flow.{table} WHERE run_id = ANY($1)"),
                &[&old],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table} rows of pruned runs");
    }
    assert_eq!(
        archive_len(&main, FLOW).await,
        0,
        "archived messages went too"
    );
    // Every new run completed with its exact output, and was not pruned.
    for (k, run) in new.iter().enumerate() {
        let doc = get_run(&main, *run).await;
        assert_eq!(doc["status"], "completed", "{doc}");
        assert_eq!(
            doc["output"],
            json!({ "sum": expected_sum(1000 + k as i64) }),
            "run {k}"
        );
        let squares: Vec<Value> = items(1000 + k as i64)
            .iter()
            .map(|i| json!(i * i))
            .collect();
        assert_eq!(doc["steps"][1]["output"], Value::Array(squares));
    }
    assert_eq!(queue_len(&main, FLOW).await, 0);
    assert_eq!(
        scalar_i64(&main, "SELECT count(*) FROM quantum_flow.runs").await,
        NEW_RUNS
    );
}
