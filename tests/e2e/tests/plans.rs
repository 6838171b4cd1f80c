//! EXPLAIN evidence that the hot path does not scan in proportion to history: with 120,010
//! finished tasks in 20,010 finished runs in the database, the plans auto_explain records for
//! every statement run inside start_flow, poll_tasks, complete_task and fail_task use no
//! sequential scan of the runtime tables or the queue (except a queue scan the planner costs
//! at a few pages: a queue holds live messages only), and no node filters away history rows.
//! The same holds for completions while 2,000 runs started since the last ANALYZE are in
//! flight: a task's run is found by key, not by walking the workflow's started runs.
//!
//! The history is made through the public API, not inserted into the internal tables (whose
//! layout is the engine's to change): 10 runs of a 10,000-task map, plus 20,000 small runs (so
//! that runs and step states are numerous too; with a handful of runs a sequential scan of
//! them is the planner's right choice). A worker loop that runs in the server completes them:
//! one statement polls 500 tasks and completes each, so a batch costs one round trip. That fills
//! the tables the way production does (dead tuples, pgmq sequences, counters) at several
//! thousand tasks a second even in a debug build. Then ANALYZE, as autovacuum would.

use quantum_flow_e2e::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio_postgres::Client;
use uuid::Uuid;

const FLOW: &str = "hist";
const HISTORY_RUNS: i64 = 10;
const HISTORY_ITEMS: i64 = 10_000;
const SMALL_RUNS: i64 = 20_000;
/// The probe runs are this small; any plan node that filters away more rows than this is
/// reading history.
const PROBE_ITEMS: i64 = 20;
const FILTERED_ROWS_LIMIT: i64 = 1_000;
/// Runs started after the history's ANALYZE, all in flight at once.
const BURST_RUNS: usize = 2_000;

/// One in-server worker round: claims up to 500 tasks and completes them (`gen` outputs the
/// array 0..n-1, `work` doubles its item). Returns how many tasks it completed.
async fn complete_batch(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FILTER (WHERE quantum_flow.complete_task( \
                 t.run_id, t.step_slug, t.task_index, \
                 CASE t.step_slug \
                   WHEN 'gen' THEN (SELECT coalesce(jsonb_agg(g), '[]') \
                                    FROM generate_series(0, (t.input->'run'->>'n')::int - 1) g) \
                   ELSE to_jsonb((t.input->>'item')::int * 2) END, \
                 t.attempt)) \
             FROM quantum_flow.poll_tasks($1, batch_size => 500) AS t",
            &[&FLOW],
        )
        .await
        .unwrap_or_else(|e| panic!("worker round: {}", describe(&e)))
        .get(0)
}

async fn make_history(client: &Client) -> Vec<Uuid> {
    let mut runs = Vec::new();
    for _ in 0..HISTORY_RUNS {
        runs.push(start_flow(client, FLOW, &json!({ "n": HISTORY_ITEMS })).await);
    }
    // Small runs: `gen` outputs [], so the map step completes at once with no tasks.
    for _ in 0..SMALL_RUNS / 1000 {
        let rows = client
            .query(
                "SELECT quantum_flow.start_flow($1, '{\"n\": 0}') FROM generate_series(1, 1000)",
                &[&FLOW],
            )
            .await
            .unwrap_or_else(|e| panic!("starting small runs: {}", describe(&e)));
        runs.extend(rows.iter().map(|r| r.get::<_, Uuid>(0)));
    }
    let mut completed = 0;
    loop {
        let n = complete_batch(client).await;
        if n == 0 {
            break;
        }
        completed += n;
    }
    assert_eq!(completed, HISTORY_RUNS * (HISTORY_ITEMS + 1) + SMALL_RUNS);
    assert_eq!(unfinished_runs(client, &runs).await, 0);
    let doubled: i64 = (0..HISTORY_ITEMS).map(|i| 2 * i).sum();
    for &run in &runs[..HISTORY_RUNS as usize] {
        let doc = get_run(client, run).await;
        assert_eq!(doc["status"], "completed");
        let work = &doc["output"]["work"];
        assert_eq!(work.as_array().map(Vec::len), Some(HISTORY_ITEMS as usize));
        assert_eq!(
            work.as_array().unwrap().iter().map(as_i64).sum::<i64>(),
            doubled
        );
    }
    let small = get_run(client, runs[HISTORY_RUNS as usize]).await;
    assert_eq!(small["output"], json!({ "work": [] }));
    runs
}

/// The plans auto_explain reported during one API call.
struct Captured {
    call: String,
    plans: Vec<String>,
}

struct Explained {
    client: Client,
    notices: Arc<Mutex<Vec<String>>>,
    captured: Vec<Captured>,
}

impl Explained {
    async fn connect(url: &str) -> Self {
        let (client, notices) = connect_collecting_notices(url).await;
        exec(
            &client,
            "LOAD 'auto_explain'; \
             SET auto_explain.log_min_duration = 0; \
             SET auto_explain.log_nested_statements = on; \
             SET auto_explain.log_analyze = on; \
             SET auto_explain.log_timing = off; \
             SET auto_explain.log_level = 'notice'; \
             SET client_min_messages = 'notice';",
        )
        .await;
        Explained {
            client,
            notices,
            captured: Vec::new(),
        }
    }

    /// Runs one API call and keeps the plans reported while it ran.
    async fn call(
        &mut self,
        label: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.notices.lock().unwrap().clear();
        let rows = self
            .client
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{label}: {}", describe(&e)));
        let plans = std::mem::take(&mut *self.notices.lock().unwrap());
        assert!(!plans.is_empty(), "{label}: auto_explain reported no plan");
        self.captured.push(Captured {
            call: label.to_string(),
            plans,
        });
        rows
    }

    async fn poll(&mut self, label: &str, batch_size: i32, max_wait_ms: i32) -> Vec<Task> {
        self.call(
            label,
            "SELECT run_id, step_slug, task_index, attempt, input \
             FROM quantum_flow.poll_tasks($1, batch_size => $2, max_wait_ms => $3)",
            &[&FLOW, &batch_size, &max_wait_ms],
        )
        .await
        .into_iter()
        .map(|r| Task {
            run_id: r.get(0),
            step_slug: r.get(1),
            task_index: r.get(2),
            attempt: r.get(3),
            input: r.get(4),
        })
        .collect()
    }

    async fn complete(&mut self, label: &str, task: &Task, output: Value) -> bool {
        self.call(
            label,
            "SELECT quantum_flow.complete_task($1, $2, $3, $4, $5)",
            &[
                &task.run_id,
                &task.step_slug,
                &task.task_index,
                &output,
                &task.attempt,
            ],
        )
        .await[0]
            .get(0)
    }

    async fn fail(&mut self, label: &str, task: &Task) -> String {
        self.call(
            label,
            "SELECT quantum_flow.fail_task($1, $2, $3, $4, $5)",
            &[
                &task.run_id,
                &task.step_slug,
                &task.task_index,
                &"probe failure",
                &task.attempt,
            ],
        )
        .await[0]
            .get(0)
    }

    async fn start(&mut self, label: &str, input: Value) -> Uuid {
        self.call(
            label,
            "SELECT quantum_flow.start_flow($1, $2)",
            &[&FLOW, &input],
        )
        .await[0]
            .get(0)
    }
}

/// What is wrong with a plan, if anything.
/// A sequential scan of a queue table estimated below this total cost reads a handful of
/// pages (one page costs 1.0, one row 0.01).
const SMALL_QUEUE_SCAN_COST: f64 = 10.0;

/// The total cost of a plan node's line: `X` of `(cost=S..X rows=...`.
fn seq_scan_cost(line: &str) -> Option<f64> {
    let after = line.split("(cost=").nth(1)?;
    let total = after.split("..").nth(1)?.split_whitespace().next()?;
    total.parse().ok()
}

fn plan_problems(plan: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut node = "";
    for line in plan.lines() {
        let l = line.trim();
        if l.starts_with("->") || l.contains("(cost=") {
            node = l.split("  (cost=").next().unwrap_or(l);
        }
        if let Some(rest) = l.split("Seq Scan on ").nth(1) {
            let table = rest.split_whitespace().next().unwrap_or("");
            let table = table.rsplit('.').next().unwrap();
            // A queue table holds live messages only (a finished task's message is deleted
            // or archived), so a scan the planner costs at a few pages reads those, not
            // history: PostgreSQL 18 picks one once autovacuum has shrunk the table.
            let small_queue = table.starts_with("q_qf_")
                && seq_scan_cost(l).is_some_and(|cost| cost < SMALL_QUEUE_SCAN_COST);
            if (["runs", "step_states", "step_tasks", "step_task_shards"].contains(&table)
                || table.starts_with("q_qf_")
                || table.starts_with("a_qf_"))
                && !small_queue
            {
                problems.push(format!("sequential scan: {l}"));
            }
        }
        for counter in [
            "Rows Removed by Filter: ",
            "Rows Removed by Index Recheck: ",
        ] {
            if let Some(n) = l.split(counter).nth(1) {
                let n: i64 = n.trim().parse().unwrap_or(0);
                if n >= FILTERED_ROWS_LIMIT {
                    problems.push(format!("{node}: {l} (reads other runs' rows)"));
                }
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_plans_do_not_scan_history() {
    let url = fresh_database("qf_e2e_plans").await;
    let main = connect(&url).await;
    exec(
        &main,
        &format!(
            "SELECT quantum_flow.create_flow('{FLOW}', base_delay => 0, max_attempts => 2); \
             SELECT quantum_flow.add_step('{FLOW}', 'gen'); \
             SELECT quantum_flow.add_step('{FLOW}', 'work', ARRAY['gen'], step_type => 'map');"
        ),
    )
    .await;
    let history = make_history(&main).await;
    exec(&main, "ANALYZE").await;
    let finished: i64 = main
        .query_one(
            "SELECT sum((s->>'tasks_completed')::bigint)::bigint \
             FROM unnest($1::uuid[]) AS id, \
                  jsonb_array_elements(quantum_flow.get_run(id)->'steps') AS s",
            &[&history],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(finished, HISTORY_RUNS * (HISTORY_ITEMS + 1) + SMALL_RUNS);
    println!(
        "history: {finished} finished tasks in {} runs",
        history.len()
    );

    let mut x = Explained::connect(&url).await;

    // A run that completes: start, the single root task, the map fan-out, a retried map task,
    // the map's last completion (aggregation, run completion).
    let ok_run = x.start("start_flow", json!({ "n": PROBE_ITEMS })).await;
    let gen = x.poll("poll_tasks (single root)", 10, 0).await;
    assert_eq!(gen.len(), 1);
    assert_eq!(gen[0].run_id, ok_run);
    let items: Vec<i64> = (0..PROBE_ITEMS).collect();
    assert!(
        x.complete("complete_task (starts the map)", &gen[0], json!(items))
            .await
    );
    let mut batch = x
        .poll("poll_tasks (map tasks)", PROBE_ITEMS as i32, 0)
        .await;
    assert_eq!(batch.len(), PROBE_ITEMS as usize);
    let retried = batch.remove(0);
    assert_eq!(
        x.fail("fail_task (queued for retry)", &retried).await,
        "queued"
    );
    let again = x.poll("poll_tasks (the retry)", 10, 0).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    batch.push(again[0].clone());
    let last = batch.pop().unwrap();
    for (i, t) in batch.iter().enumerate() {
        let label = if i == 0 {
            "complete_task (map task)"
        } else {
            "complete_task (more map tasks)"
        };
        assert!(
            x.complete(label, t, json!(as_i64(&t.input["item"]) * 2))
                .await
        );
    }
    assert!(
        x.complete(
            "complete_task (last map task)",
            &last,
            json!(as_i64(&last.input["item"]) * 2)
        )
        .await
    );
    let doc = get_run(&main, ok_run).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(
        doc["output"],
        json!({ "work": items.iter().map(|i| i * 2).collect::<Vec<_>>() })
    );

    // A run that fails: attempts exhausted, the run's other messages archived.
    let failing_run = x
        .start("start_flow (second run)", json!({ "n": PROBE_ITEMS }))
        .await;
    let gen = x.poll("poll_tasks (second root)", 10, 0).await;
    assert!(
        x.complete("complete_task (second fan-out)", &gen[0], json!(items))
            .await
    );
    let batch = x.poll("poll_tasks (one map task)", 1, 0).await;
    assert_eq!(x.fail("fail_task (attempt 1)", &batch[0]).await, "queued");
    let again = x.poll("poll_tasks (attempt 2)", 1, 0).await;
    assert_eq!(
        (again[0].task_index, again[0].attempt),
        (batch[0].task_index, 2)
    );
    assert_eq!(
        x.fail("fail_task (exhausted: run fails)", &again[0]).await,
        "failed"
    );
    let doc = get_run(&main, failing_run).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(
        doc["error_message"],
        format!(
            "step work, task {}, attempt 2: probe failure",
            batch[0].task_index
        )
    );
    assert_eq!(queue_len(&main, FLOW).await, 0);
    assert_eq!(archive_len(&main, FLOW).await, PROBE_ITEMS);

    // An idle poll: the wait path (next visibility time) with an empty queue.
    assert_eq!(x.poll("poll_tasks (idle, waiting)", 10, 600).await, vec![]);

    // A burst of runs started since the last ANALYZE (fewer changes than make autovacuum
    // analyze `runs`: 50 + 10% of 20,012 rows): completing a task must still find its run by
    // key, not walk the workflow's in-flight runs.
    let burst: Vec<Uuid> = main
        .query(
            "SELECT quantum_flow.start_flow($1, '{\"n\": 0}') FROM generate_series(1, $2::int)",
            &[&FLOW, &(BURST_RUNS as i32)],
        )
        .await
        .unwrap_or_else(|e| panic!("starting the burst: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    // (a batch larger than the default quantum_flow.max_batch_size)
    exec(
        &main,
        &format!("SET quantum_flow.max_batch_size = {BURST_RUNS}"),
    )
    .await;
    let claimed = poll(&main, FLOW, BURST_RUNS as i32, 0).await.unwrap();
    assert_eq!(claimed.len(), BURST_RUNS);
    for run in burst.iter().step_by(BURST_RUNS / 20) {
        let task = claimed.iter().find(|t| t.run_id == *run).unwrap();
        let label = format!("complete_task ({BURST_RUNS} runs in flight since ANALYZE)");
        assert!(x.complete(&label, task, json!([])).await);
        assert_eq!(get_run(&main, *run).await["status"], "completed");
    }

    let mut report = String::new();
    let mut problems = Vec::new();
    for c in &x.captured {
        report.push_str(&format!(
            "===== {} ({} statements)\n",
            c.call,
            c.plans.len()
        ));
        for plan in &c.plans {
            report.push_str(plan);
            report.push_str("\n\n");
            for p in plan_problems(plan) {
                problems.push(format!("{}: {p}", c.call));
            }
        }
    }
    let statements: usize = x.captured.iter().map(|c| c.plans.len()).sum();
    println!(
        "{statements} plans captured from {} API calls",
        x.captured.len()
    );
    if std::env::var_os("QF_E2E_SHOW_PLANS").is_some() {
        println!("{report}");
    }
    assert!(
        problems.is_empty(),
        "plans that read history or other runs:\n{}\n\nall captured plans:\n{report}",
        problems.join("\n")
    );
}

#[test]
fn plan_problems_spots_history_scans() {
    assert_eq!(
        plan_problems("  ->  Seq Scan on step_tasks t  (cost=0.00..1.00 rows=1 width=4)"),
        vec!["sequential scan: ->  Seq Scan on step_tasks t  (cost=0.00..1.00 rows=1 width=4)"]
    );
    assert_eq!(
        plan_problems("Seq Scan on q_qf_hist (cost=0.00..250.00 rows=1 width=4)").len(),
        1
    );
    assert_eq!(
        plan_problems("Seq Scan on a_qf_hist (cost=0.00..1.00 rows=1 width=4)").len(),
        1
    );
    // a queue table of a page or two: its live messages, not history
    assert_eq!(
        plan_problems("->  Seq Scan on q_qf_hist q  (cost=0.00..1.40 rows=40 width=14)").len(),
        0
    );
    assert_eq!(
        seq_scan_cost("Seq Scan on x  (cost=0.00..197.20 rows=320 width=31)"),
        Some(197.2)
    );
    assert_eq!(
        plan_problems("Seq Scan on workflows w  (cost=0.00..1.00 rows=1 width=4)"),
        Vec::<String>::new()
    );
    assert_eq!(
        plan_problems(
            "->  Index Scan using runs_x on runs r  (cost=0.29..6.06 rows=1 width=27)\n      \
             Filter: (run_id = $1)\n      Rows Removed by Filter: 100000"
        ),
        vec![
            "->  Index Scan using runs_x on runs r: Rows Removed by Filter: 100000 \
             (reads other runs' rows)"
        ]
    );
    assert_eq!(plan_problems("  Rows Removed by Filter: 19").len(), 0);
    assert_eq!(
        plan_problems("Index Scan using step_tasks_pkey on step_tasks t").len(),
        0
    );
}

/// Regression (issue 7, defect 7): a claim costs O(batch). With a batch of 5,000 tasks of one
/// map step, no node of any statement inside poll_tasks compares the batch's rows pairwise
/// (the old claim joined two CTE scans with a nested loop: 12.5 million rows removed by its
/// join filter for this batch, and 9 s for a batch of 10,000).
#[tokio::test]
async fn a_claim_costs_o_of_its_batch() {
    const BATCH: i32 = 5_000;
    let url = fresh_database("qf_e2e_plans_batch").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('wide'); \
         SELECT quantum_flow.add_step('wide', 'm', step_type => 'map');",
    )
    .await;
    start_flow(&main, "wide", &json!((0..BATCH).collect::<Vec<_>>())).await;
    // The step starts with its first 1,000 tasks; each maintain() creates the next chunk
    // (1,000, 2,000, then the last 1,000).
    for _ in 0..3 {
        exec(&main, "SELECT quantum_flow.maintain()").await;
    }
    let tasks: i64 = main
        .query_one("SELECT count(*) FROM quantum_flow.step_tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tasks, i64::from(BATCH));
    let mut x = Explained::connect(&url).await;
    exec(
        &x.client,
        &format!("SET quantum_flow.max_batch_size = {BATCH}"),
    )
    .await;
    let rows = x
        .call(
            "poll_tasks (batch of 5,000)",
            "SELECT count(*) FROM quantum_flow.poll_tasks('wide', batch_size => $1)",
            &[&BATCH],
        )
        .await;
    let claimed: i64 = rows[0].get(0);
    assert_eq!(claimed, i64::from(BATCH));
    let plans = &x.captured.last().unwrap().plans;
    let mut pairwise = Vec::new();
    for plan in plans {
        for line in plan.lines() {
            if let Some(n) = line.split("Rows Removed by Join Filter: ").nth(1) {
                let n: i64 = n.trim().parse().unwrap_or(0);
                if n >= i64::from(BATCH) {
                    pairwise.push(line.trim().to_string());
                }
            }
        }
    }
    assert!(
        pairwise.is_empty(),
        "the claim compares the batch's rows pairwise: {pairwise:?}\n{}",
        plans.join("\n")
    );
}
