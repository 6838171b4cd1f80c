//! Flow control through real connections (contract group D): concurrency keys under eight
//! workers, fairness for a run queued behind a big map, and waiting pollers woken for
//! delayed work.

use quantum_flow_e2e::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const WORKERS: usize = 8;
const TENANTS: usize = 6;
const RUNS_PER_TENANT: usize = 3;
const ITEMS: i64 = 12;
const MAX_CONCURRENCY: usize = 2;
/// A safety net for a stuck engine, not a speed requirement.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// What the workers saw, checked at every claim: tasks in flight per tenant.
#[derive(Default)]
struct InFlight {
    now: HashMap<String, usize>,
    most: HashMap<String, usize>,
    /// Claims that took a tenant past its limit: (tenant, in flight with this one).
    over: Vec<(String, usize)>,
    claims: usize,
}

fn tenant_of(task: &Task) -> String {
    task.input["run"]["tenant_id"]
        .as_str()
        .unwrap_or_else(|| panic!("task without the run's tenant_id: {:?}", task.input))
        .to_string()
}

fn answer(task: &Task) -> Value {
    match task.step_slug.as_str() {
        "list" => task.input["run"]["items"].clone(),
        "rows" => json!(task.input["item"].as_i64().expect("an integer item") * 2),
        "total" => json!(task.input["rows"]
            .as_array()
            .expect("rows' output")
            .iter()
            .map(|v| v.as_i64().expect("an integer"))
            .sum::<i64>()),
        other => panic!("unexpected step {other}"),
    }
}

/// With `max_concurrency => 2` per `tenant_id`, eight workers never hold more than two tasks
/// of one tenant at once (counted by the workers at every claim, from the claim until just
/// before the task is completed), every run completes with the right output, and the slots
/// are all free at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_two_tasks_of_a_tenant_are_in_flight_across_eight_workers() {
    let url = fresh_database("qf_e2e_concurrency").await;
    let setup = connect(&url).await;
    exec(
        &setup,
        "SELECT quantum_flow.create_flow('tenants', timeout => 60, concurrency_key => 'tenant_id', \
                                         max_concurrency => 2); \
         SELECT quantum_flow.add_step('tenants', 'list'); \
         SELECT quantum_flow.add_step('tenants', 'rows', ARRAY['list'], 'map'); \
         SELECT quantum_flow.add_step('tenants', 'total', ARRAY['rows']);",
    )
    .await;
    // Runs of one tenant are started together, tenant after tenant: without the limit, the
    // first tenants' tasks would fill every worker's batch.
    let mut runs: Vec<(Uuid, i64)> = Vec::new();
    for t in 0..TENANTS {
        for r in 0..RUNS_PER_TENANT {
            let items: Vec<i64> = (0..ITEMS).map(|i| i + (r as i64) * 100).collect();
            let expected = items.iter().map(|i| i * 2).sum::<i64>();
            let input = json!({"tenant_id": format!("tenant{t}"), "items": items});
            runs.push((start_flow(&setup, "tenants", &input).await, expected));
        }
    }
    let seen = Arc::new(Mutex::new(InFlight::default()));
    let deadline = Instant::now() + STALL_LIMIT;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let url = url.clone();
        let seen = seen.clone();
        let run_ids: Vec<Uuid> = runs.iter().map(|(r, _)| *r).collect();
        workers.push(tokio::spawn(async move {
            let c = connect(&url).await;
            loop {
                let tasks = poll(&c, "tenants", 5, 200).await.expect("poll_tasks");
                if tasks.is_empty() {
                    if unfinished_runs(&c, &run_ids).await == 0 {
                        return;
                    }
                    assert!(Instant::now() < deadline, "the runs stalled");
                    continue;
                }
                {
                    let mut s = seen.lock().unwrap();
                    for t in &tasks {
                        let tenant = tenant_of(t);
                        s.claims += 1;
                        let n = {
                            let n = s.now.entry(tenant.clone()).or_insert(0);
                            *n += 1;
                            *n
                        };
                        let most = s.most.entry(tenant.clone()).or_insert(0);
                        *most = (*most).max(n);
                        if n > MAX_CONCURRENCY {
                            s.over.push((tenant, n));
                        }
                    }
                }
                // the work
                tokio::time::sleep(Duration::from_millis(3)).await;
                for t in &tasks {
                    *seen
                        .lock()
                        .unwrap()
                        .now
                        .get_mut(&tenant_of(t))
                        .expect("counted at its claim") -= 1;
                    assert!(complete(&c, t, &answer(t)).await.expect("complete_task"));
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("a worker panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.over, vec![], "claims past the limit of 2 per tenant");
    // every tenant reached its limit (so the check above was not vacuous)
    for t in 0..TENANTS {
        assert_eq!(
            seen.most.get(&format!("tenant{t}")),
            Some(&MAX_CONCURRENCY),
            "tenant{t}'s most tasks in flight"
        );
    }
    let per_run = 1 + ITEMS as usize + 1;
    assert_eq!(seen.claims, runs.len() * per_run, "one claim per task");
    for (run, expected) in &runs {
        let doc = get_run(&setup, *run).await;
        assert_eq!(doc["status"], "completed", "{doc}");
        assert_eq!(doc["output"], json!({"total": expected}));
    }
    let slots = setup
        .query(
            "SELECT key_value, in_use FROM quantum_flow.concurrency_slots ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    // every slot was given back, and a key value with nothing holding or waiting for a slot
    // keeps no row
    let slots: Vec<(String, i32)> = slots.iter().map(|s| (s.get(0), s.get(1))).collect();
    assert_eq!(slots, Vec::<(String, i32)>::new());
    let waiting: i64 = setup
        .query_one("SELECT count(*) FROM quantum_flow.waiting_tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "tasks left waiting");
    assert_eq!(queue_len(&setup, "tenants").await, 0);
}

/// Polls, without completing anything, until a task of `run` comes out; returns how many
/// polls that took (None: not within `limit`).
async fn polls_until_claimed(
    c: &tokio_postgres::Client,
    flow: &str,
    run: Uuid,
    limit: usize,
) -> Option<usize> {
    for n in 1..=limit {
        let tasks = poll(c, flow, 10, 0).await.expect("poll_tasks");
        if tasks.iter().any(|t| t.run_id == run) {
            return Some(n);
        }
    }
    None
}

/// A run started behind another run's 100,000-task map gets its first task claimed in the
/// first poll (fair polling takes a quarter of each batch from the newest messages of other
/// runs); with `quantum_flow.fair_polling` off it waits behind the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_behind_a_big_map_gets_its_first_task_within_a_few_polls() {
    let url = fresh_database("qf_e2e_fairness").await;
    let c = connect(&url).await;
    exec(
        &c,
        "SELECT quantum_flow.create_flow('fair', timeout => 600); \
         SELECT quantum_flow.add_step('fair', 'm', step_type => 'map');",
    )
    .await;
    let big: Uuid = c
        .query_one(
            "SELECT quantum_flow.start_flow('fair', to_jsonb(ARRAY(SELECT generate_series(1, 100000))))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let small = start_flow(&c, "fair", &json!([1])).await;
    assert_eq!(polls_until_claimed(&c, "fair", small, 5).await, Some(1));

    exec(&c, "SET quantum_flow.fair_polling = off").await;
    let small2 = start_flow(&c, "fair", &json!([2])).await;
    assert_eq!(
        polls_until_claimed(&c, "fair", small2, 50).await,
        None,
        "strictly oldest first, the map's older tasks come first"
    );
    exec(&c, "RESET quantum_flow.fair_polling").await;
    assert_eq!(polls_until_claimed(&c, "fair", small2, 5).await, Some(1));
    assert_eq!(get_run(&c, big).await["status"], "started");
}

/// A poller waiting before a delayed step is ready receives its task once its start_delay
/// has passed (the commit that readied the step woke it; it then sleeps until the task's
/// visibility time), and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_poller_gets_a_delayed_task_when_it_is_due() {
    let url = fresh_database("qf_e2e_delay").await;
    let c = connect(&url).await;
    exec(
        &c,
        "SELECT quantum_flow.create_flow('later'); \
         SELECT quantum_flow.add_step('later', 'first'); \
         SELECT quantum_flow.add_step('later', 'second', ARRAY['first'], start_delay => 2);",
    )
    .await;
    let run = start_flow(&c, "later", &json!({})).await;
    let first = poll(&c, "later", 1, 0).await.unwrap();
    assert_eq!(first.len(), 1);

    let waiter = {
        let url = url.clone();
        tokio::spawn(async move {
            let w = connect(&url).await;
            let started = Instant::now();
            let tasks = poll(&w, "later", 1, 10_000).await.unwrap();
            (tasks, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readied = Instant::now();
    assert!(complete(&c, &first[0], &json!("one")).await.unwrap());
    let (tasks, waited) = waiter.await.unwrap();
    let after_ready = readied.elapsed();
    assert_eq!(
        tasks.len(),
        1,
        "the waiting poll returned nothing in {waited:?}"
    );
    assert_eq!(tasks[0].run_id, run);
    assert_eq!(tasks[0].step_slug, "second");
    assert!(
        after_ready >= Duration::from_millis(1900),
        "claimed {after_ready:?} after the step became ready, before its 2 s start_delay"
    );
    assert!(
        waited < Duration::from_millis(10_000),
        "the waiting poll ran out ({waited:?}) instead of returning the delayed task"
    );
}
