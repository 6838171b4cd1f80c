//! The Worker against a real cluster: concurrency, graceful shutdown (nothing claimed and
//! lost), the shutdown deadline, and stale attempts.

mod common;

use common::{assert_api_error, client, database};
use quantum_flow_client::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Barrier};
use tokio_postgres::Client;
use uuid::Uuid;

const DB: &str = "qf_rust_client_worker";

/// Liveness bound for conditions the test waits for (not a speed assertion: generous).
const PATIENCE: Duration = Duration::from_secs(60);

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn map_flow(c: &Client, slug: &str, timeout: i32) {
    create_flow(c, slug, &FlowOptions::new().timeout(timeout).base_delay(0))
        .await
        .unwrap();
    add_step(c, slug, "m", &StepOptions::new().map())
        .await
        .unwrap();
}

async fn run_status(c: &Client, run_id: Uuid) -> RunStatus {
    get_run(c, run_id).await.unwrap().status
}

/// Waits for the run to end, then stops the worker: the run and the worker's stats.
async fn finish(
    c: &Client,
    run_id: Uuid,
    stop: watch::Sender<bool>,
    working: tokio::task::JoinHandle<Result<WorkerStats, Error>>,
) -> (Run, WorkerStats) {
    eventually("the run ends", || async {
        run_status(c, run_id).await != RunStatus::Started
    })
    .await;
    stop.send(true).unwrap();
    let stats = working.await.unwrap().unwrap();
    (get_run(c, run_id).await.unwrap(), stats)
}

/// Whether the worker's poll connection is inside poll_tasks, waiting for work.
async fn poll_is_waiting(c: &Client, worker_id: &str) -> bool {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'active' AND query LIKE '%poll_tasks%'",
            &[&format!("quantum_flow worker {worker_id}")],
        )
        .await
        .unwrap()
        .get(0);
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_up_to_concurrency_tasks_at_once() {
    let url = database(DB).await;
    let c = client(&url).await;
    map_flow(&c, "concurrency", 60).await;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Four handlers must be running together for any of them to pass the barrier.
    let barrier = Arc::new(Barrier::new(4));
    let (now, peak, gate) = (in_flight.clone(), most.clone(), barrier.clone());
    let steps = StepFunctions::new().step("m", move |input: Value| {
        let (now, peak, gate) = (now.clone(), peak.clone(), gate.clone());
        async move {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(running, Ordering::SeqCst);
            let passed = tokio::time::timeout(PATIENCE, gate.wait()).await.is_ok();
            now.fetch_sub(1, Ordering::SeqCst);
            if !passed {
                return Err("fewer than 4 handlers ran together".into());
            }
            Ok(json!(input["item"].as_i64().unwrap() * 10))
        }
    });
    let config = WorkerConfig::new("concurrency")
        .concurrency(4)
        .batch_size(10)
        .max_wait_ms(200);
    let worker = Worker::connect(&url, config, steps).await.unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));

    let run_id = start_flow(&c, "concurrency", &json!([1, 2, 3, 4, 5, 6, 7, 8]), None)
        .await
        .unwrap();
    let (run, stats) = finish(&c, run_id, stop, working).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(
        run.output,
        Some(json!({"m": [10, 20, 30, 40, 50, 60, 70, 80]}))
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "never more than 4 in flight"
    );
    assert_eq!(
        (
            stats.claimed,
            stats.completed,
            stats.failed,
            stats.ignored,
            stats.abandoned
        ),
        (8, 8, 0, 0, 0)
    );
}

/// With batched completions, a task's slot is given back once its completion is queued: while
/// a `complete_tasks` call waits (here on a row lock the test holds), the worker goes on
/// working its other tasks, two at a time, and their completions go in the calls after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_completion_gives_its_slot_to_the_next_task() {
    let url = database(DB).await;
    let c = client(&url).await;
    map_flow(&c, "queued_slot", 60).await;
    let run_id = start_flow(
        &c,
        "queued_slot",
        &json!((0..10).collect::<Vec<i64>>()),
        None,
    )
    .await
    .unwrap();
    // Every completion of the map's tasks updates one of these rows: hold them all.
    let mut holder = client(&url).await;
    let hold = holder.transaction().await.unwrap();
    let held = hold
        .query(
            "SELECT 1 FROM quantum_flow.step_task_shards WHERE run_id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await
        .unwrap();
    assert!(!held.is_empty());

    let (running, most, worked) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (now, peak, done) = (running.clone(), most.clone(), worked.clone());
    let steps = StepFunctions::new().step("m", move |input: Value| {
        let (now, peak, done) = (now.clone(), peak.clone(), done.clone());
        async move {
            peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            Ok(json!(input["item"].as_i64().ok_or("no item")? * 2))
        }
    });
    let config = WorkerConfig::new("queued_slot")
        .worker_id("queued-slot")
        .concurrency(2)
        .batch_size(2)
        .max_wait_ms(50);
    let worker = Worker::connect(&url, config, steps).await.unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));

    eventually("all ten tasks worked", || async {
        worked.load(Ordering::SeqCst) == 10
    })
    .await;
    eventually("a complete_tasks call waits on the held rows", || async {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND wait_event_type = 'Lock' AND query LIKE '%complete_tasks%'",
                &[&"quantum_flow worker queued-slot"],
            )
            .await
            .unwrap()
            .get(0);
        waiting == 1
    })
    .await;
    assert_eq!(run_status(&c, run_id).await, RunStatus::Started);
    hold.commit().await.unwrap();
    let (run, stats) = finish(&c, run_id, stop, working).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let doubled: Vec<i64> = (0..10).map(|n| n * 2).collect();
    assert_eq!(run.output, Some(json!({ "m": doubled })));
    assert_eq!(most.load(Ordering::SeqCst), 2, "two handlers at most");
    assert_eq!(
        (
            stats.claimed,
            stats.completed,
            stats.failed,
            stats.ignored,
            stats.answer_errors
        ),
        (10, 10, 0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_the_tasks_it_holds_and_claims_no_more() {
    let url = database(DB).await;
    let c = client(&url).await;
    // A long timeout: a task claimed and lost would stay invisible for the whole test.
    map_flow(&c, "shutdown_finish", 300).await;
    let started = Arc::new(AtomicUsize::new(0));
    let (release_tx, release) = watch::channel(false);
    let counter = started.clone();
    let steps = StepFunctions::new().step("m", move |input: Value| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut release = release.clone();
        async move {
            release
                .wait_for(|go| *go)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!(input["item"].as_i64().unwrap() * 10))
        }
    });
    let config = WorkerConfig::new("shutdown_finish")
        .concurrency(4)
        .max_wait_ms(200);
    let worker = Worker::connect(&url, config, steps).await.unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));

    let items: Vec<i64> = (0..10).collect();
    let run_id = start_flow(&c, "shutdown_finish", &json!(items), None)
        .await
        .unwrap();
    eventually("4 handlers run", || async {
        started.load(Ordering::SeqCst) == 4
    })
    .await;
    stop.send(true).unwrap();
    release_tx.send(true).unwrap();
    let stats = working.await.unwrap().unwrap();
    assert_eq!(
        (
            stats.claimed,
            stats.completed,
            stats.failed,
            stats.abandoned
        ),
        (4, 4, 0, 0)
    );
    assert_eq!(started.load(Ordering::SeqCst), 4);

    let run = get_run(&c, run_id).await.unwrap();
    let step = run.step("m").unwrap();
    assert_eq!((step.tasks_total, step.tasks_completed), (Some(10), 4));
    // The other six were never claimed: they are ready now, at their first attempt.
    let rest = poll_tasks(
        &c,
        "shutdown_finish",
        &PollOptions {
            batch_size: 100,
            ..PollOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rest.len(), 6);
    assert!(rest.iter().all(|t| t.run_id == run_id && t.attempt == 1));
    for t in &rest {
        complete_task(&c, t.run_id, &t.step_slug, t.task_index, &json!(0), Some(1))
            .await
            .unwrap();
    }
    assert_eq!(run_status(&c, run_id).await, RunStatus::Completed);
}

/// Shutdown while the poll waits server-side cancels it; new work that races with the
/// shutdown is either worked to completion or left ready at attempt 1, never claimed and lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_during_a_waiting_poll_loses_nothing() {
    let url = database(DB).await;
    let c = client(&url).await;
    map_flow(&c, "shutdown_idle", 300).await;
    for round in 0..6 {
        let steps =
            StepFunctions::new().step("m", |input: Value| async move { Ok(input["item"].clone()) });
        let worker_id = format!("idle-{round}");
        let config = WorkerConfig::new("shutdown_idle")
            .worker_id(&worker_id)
            // the longest quantum_flow.max_wait_ms allows, far longer than a round of the test:
            // only the cancel can end this poll
            .max_wait_ms(60_000);
        let worker = Worker::connect(&url, config, steps).await.unwrap();
        let (stop, shutdown) = shutdown_channel();
        let working = tokio::spawn(worker.run(shutdown));
        eventually("the worker waits in poll_tasks", || {
            poll_is_waiting(&c, &worker_id)
        })
        .await;

        // Rounds alternate: shutdown with no work, and shutdown racing with a new run.
        let run_id = if round % 2 == 0 {
            stop.send(true).unwrap();
            None
        } else {
            let input = json!([round]);
            let (started, _) = tokio::join!(start_flow(&c, "shutdown_idle", &input, None), async {
                stop.send(true).unwrap()
            });
            Some(started.unwrap())
        };
        let stats = tokio::time::timeout(PATIENCE, working)
            .await
            .expect("the cancelled poll ends the worker")
            .unwrap()
            .unwrap();
        assert_eq!((stats.failed, stats.abandoned, stats.ignored), (0, 0, 0));

        let Some(run_id) = run_id else {
            assert_eq!(stats.claimed, 0);
            continue;
        };
        match run_status(&c, run_id).await {
            RunStatus::Completed => {
                assert_eq!((stats.claimed, stats.completed), (1, 1));
                let run = get_run(&c, run_id).await.unwrap();
                assert_eq!(run.output, Some(json!({"m": [round]})));
            }
            status => {
                assert_eq!(status, RunStatus::Started);
                assert_eq!((stats.claimed, stats.completed), (0, 0));
                let left = poll_tasks(&c, "shutdown_idle", &PollOptions::default())
                    .await
                    .unwrap();
                assert_eq!(left.len(), 1, "the task is ready at once, not hidden");
                assert_eq!((left[0].run_id, left[0].attempt), (run_id, 1));
                complete_task(&c, run_id, "m", 0, &json!(round), Some(1))
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poll_cancelled_by_someone_else_is_polled_again() {
    // pg_cancel_backend (or a statement_timeout) ends the waiting poll with 57014 while no
    // shutdown was asked for: the worker polls again and works the next run.
    let url = database(DB).await;
    let c = client(&url).await;
    map_flow(&c, "foreign_cancel", 300).await;
    let steps =
        StepFunctions::new().step("m", |input: Value| async move { Ok(input["item"].clone()) });
    let worker_id = "cancelled-by-someone";
    let config = WorkerConfig::new("foreign_cancel")
        .worker_id(worker_id)
        .max_wait_ms(60_000);
    let worker = Worker::connect(&url, config, steps).await.unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));
    eventually("the worker waits in poll_tasks", || {
        poll_is_waiting(&c, worker_id)
    })
    .await;
    let cancelled: bool = c
        .query_one(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'active' AND query LIKE '%poll_tasks%'",
            &[&format!("quantum_flow worker {worker_id}")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    let run_id = start_flow(&c, "foreign_cancel", &json!([7, 8]), None)
        .await
        .unwrap();
    let (run, stats) = finish(&c, run_id, stop, working).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!({"m": [7, 8]})));
    assert_eq!(
        (
            stats.claimed,
            stats.completed,
            stats.failed,
            stats.abandoned
        ),
        (2, 2, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handlers_past_the_deadline_are_abandoned_and_their_tasks_come_back() {
    let url = database(DB).await;
    let c = client(&url).await;
    map_flow(&c, "shutdown_deadline", 1).await;
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let steps = StepFunctions::new().step("m", move |_input: Value| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            std::future::pending::<()>().await;
            Ok(json!(null))
        }
    });
    let config = WorkerConfig::new("shutdown_deadline")
        .concurrency(2)
        .max_wait_ms(200)
        .shutdown_deadline(Duration::from_millis(200));
    let worker = Worker::connect(&url, config, steps).await.unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));
    let run_id = start_flow(&c, "shutdown_deadline", &json!(["x", "y"]), None)
        .await
        .unwrap();
    eventually("2 handlers run", || async {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    stop.send(true).unwrap();
    let stats = working.await.unwrap().unwrap();
    assert_eq!(
        (
            stats.claimed,
            stats.completed,
            stats.failed,
            stats.abandoned
        ),
        (2, 0, 0, 2)
    );

    // After the step's 1 s timeout both tasks are claimable again, as attempt 2.
    let mut seen = BTreeSet::new();
    let poll = PollOptions {
        batch_size: 10,
        max_wait_ms: 5000,
        worker_id: None,
    };
    while seen.len() < 2 {
        for t in poll_tasks(&c, "shutdown_deadline", &poll).await.unwrap() {
            assert_eq!(t.run_id, run_id);
            seen.insert((t.task_index, t.attempt));
        }
    }
    assert_eq!(seen, BTreeSet::from([(0, 2), (1, 2)]));
}

/// The worker passes `attempt`: its answer for an attempt that timed out and was handed on
/// is ignored, and the new attempt's answer counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_answer_for_a_timed_out_attempt_is_ignored() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(
        &c,
        "late_answer",
        &FlowOptions::new().timeout(1).max_attempts(3),
    )
    .await
    .unwrap();
    add_step(&c, "late_answer", "slow", &StepOptions::new())
        .await
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let (release_tx, release) = watch::channel(false);
    let counter = started.clone();
    let steps = StepFunctions::new().step("slow", move |_input: Value| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut release = release.clone();
        async move {
            release
                .wait_for(|go| *go)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!("from the worker"))
        }
    });
    let config = WorkerConfig::new("late_answer")
        .concurrency(1)
        .max_wait_ms(200);
    let worker = Worker::connect(&url, config, steps).await.unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));
    let run_id = start_flow(&c, "late_answer", &json!({}), None)
        .await
        .unwrap();
    eventually("the handler runs", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    // Attempt 1 times out; this connection claims attempt 2.
    let poll = PollOptions {
        batch_size: 1,
        max_wait_ms: 10_000,
        worker_id: Some("rival".into()),
    };
    let mut rival = Vec::new();
    while rival.is_empty() {
        rival = poll_tasks(&c, "late_answer", &poll).await.unwrap();
    }
    assert_eq!((rival[0].run_id, rival[0].attempt), (run_id, 2));

    // Stop the worker (it is busy, so it claims nothing more), then let its handler answer.
    stop.send(true).unwrap();
    release_tx.send(true).unwrap();
    let stats = working.await.unwrap().unwrap();
    assert_eq!(
        (stats.claimed, stats.completed, stats.ignored),
        (1, 0, 1),
        "the late answer for attempt 1 did not count"
    );
    assert!(
        complete_task(&c, run_id, "slow", 0, &json!("from the rival"), Some(2))
            .await
            .unwrap()
    );
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.output, Some(json!({"slow": "from the rival"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_checks_the_workflow_and_its_handlers() {
    let url = database(DB).await;
    let c = client(&url).await;
    assert_api_error(
        Worker::connect(&url, WorkerConfig::new("ghost_flow"), StepFunctions::new()).await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "ghost_flow",
    );
    create_flow(&c, "handlers_check", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "handlers_check", "one", &StepOptions::new())
        .await
        .unwrap();
    add_step(
        &c,
        "handlers_check",
        "two",
        &StepOptions::new().depends_on(["one"]),
    )
    .await
    .unwrap();
    match Worker::connect(
        &url,
        WorkerConfig::new("handlers_check"),
        StepFunctions::new(),
    )
    .await
    {
        Err(Error::MissingHandlers(missing)) => assert_eq!(missing, ["one", "two"]),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected without handlers"),
    }
}

/// Event steps (completed by send_event) and sub-flow steps (whose tasks are runs of another
/// workflow) have no tasks for a worker: they need no handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_and_sub_flow_steps_need_no_handler() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "handlers_child", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "handlers_child", "double", &StepOptions::new())
        .await
        .unwrap();
    create_flow(&c, "handlers_skip", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "handlers_skip", "one", &StepOptions::new())
        .await
        .unwrap();
    let steps = [
        ("approve", StepOptions::new().depends_on(["one"]).event()),
        (
            "child",
            StepOptions::new()
                .depends_on(["one"])
                .flow("handlers_child"),
        ),
        ("last", StepOptions::new().depends_on(["approve", "child"])),
    ];
    for (slug, options) in &steps {
        add_step(&c, "handlers_skip", slug, options).await.unwrap();
    }
    match Worker::connect(
        &url,
        WorkerConfig::new("handlers_skip"),
        StepFunctions::new().step("one", |_| async { Ok(json!(1)) }),
    )
    .await
    {
        Err(Error::MissingHandlers(missing)) => assert_eq!(missing, ["last"]),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected without a handler for step last"),
    }
    let handlers = StepFunctions::new()
        .step("one", |_| async { Ok(json!(1)) })
        .step("last", |_| async { Ok(json!(2)) });
    Worker::connect(&url, WorkerConfig::new("handlers_skip"), handlers)
        .await
        .expect("the event and sub-flow steps need no handler");
}

/// A `WorkerConfig` whose public `concurrency` field is 0 is taken as 1: the worker claims and
/// works the run instead of never claiming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_of_zero_set_on_the_field_is_taken_as_one() {
    let url = database(DB).await;
    let c = client(&url).await;
    map_flow(&c, "zero_slots", 60).await;
    let mut config = WorkerConfig::new("zero_slots").max_wait_ms(100);
    config.concurrency = 0;
    let handlers = StepFunctions::new().step("m", |input| async move {
        Ok(json!(input["item"].as_i64().unwrap_or(0) * 10))
    });
    let worker = Worker::connect(&url, config, handlers).await.unwrap();
    assert_eq!(worker.config().concurrency, 1);
    let run_id = start_flow(&c, "zero_slots", &json!([1, 2, 3]), None)
        .await
        .unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));
    let (run, stats) = finish(&c, run_id, stop, working).await;
    assert_eq!(run.output, Some(json!({"m": [10, 20, 30]})));
    assert_eq!((stats.completed, stats.failed, stats.ignored), (3, 0, 0));
}
