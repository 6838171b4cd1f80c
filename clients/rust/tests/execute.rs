//! execute_dynamic against a real cluster: the README's Quick Start, missing handlers, retries,
//! handler errors and panics, timeouts.

mod common;

use common::{assert_api_error, client, database};
use quantum_flow_client::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DB: &str = "qf_rust_client_execute";

fn quick(timeout_s: u64) -> ExecuteOptions {
    ExecuteOptions {
        timeout: Duration::from_secs(timeout_s),
        poll_wait: Duration::from_millis(100),
        concurrency: 8,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// The README's Quick Start, in shape: 100 items fanned out and back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_start_returns_the_exact_output() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(
        &c,
        "ai_data_pipeline",
        &FlowOptions::new().max_attempts(5).timeout(60),
    )
    .await
    .unwrap();
    add_step(&c, "ai_data_pipeline", "fetch_data", &StepOptions::new())
        .await
        .unwrap();
    add_step(
        &c,
        "ai_data_pipeline",
        "process_batch",
        &StepOptions::new()
            .depends_on(["fetch_data"])
            .map()
            .initial_tasks(100),
    )
    .await
    .unwrap();
    add_step(
        &c,
        "ai_data_pipeline",
        "save_results",
        &StepOptions::new().depends_on(["process_batch"]),
    )
    .await
    .unwrap();

    let saved_input = Arc::new(Mutex::new(None));
    let seen = saved_input.clone();
    let steps = StepFunctions::new()
        .step("fetch_data", |_input| async move {
            Ok(json!((1..=100).collect::<Vec<i64>>()))
        })
        .step("process_batch", |input| async move {
            let item = input["item"].as_i64().ok_or("item is not a number")?;
            Ok(json!({"processed": item * 2}))
        })
        .step("save_results", move |input: Value| {
            let seen = seen.clone();
            async move {
                let outputs = input["process_batch"]
                    .as_array()
                    .ok_or("process_batch is not an array")?
                    .clone();
                let sum: i64 = outputs
                    .iter()
                    .map(|o| o["processed"].as_i64().unwrap_or(0))
                    .sum();
                *seen.lock().unwrap() = Some(input.clone());
                Ok(json!({"saved": outputs.len(), "sum": sum}))
            }
        });

    let output = execute_dynamic(
        &url,
        "ai_data_pipeline",
        json!({"initial": "data"}),
        steps,
        quick(120),
    )
    .await
    .unwrap();
    assert_eq!(
        output,
        json!({"save_results": {"saved": 100, "sum": 10100}})
    );

    let expected_outputs: Vec<Value> = (1..=100).map(|i| json!({"processed": i * 2})).collect();
    assert_eq!(
        saved_input.lock().unwrap().clone().unwrap(),
        json!({"run": {"initial": "data"}, "process_batch": expected_outputs}),
        "save_results receives the flow input and the 100 outputs in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_handlers_are_all_named_and_nothing_starts() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "needs_handlers", &FlowOptions::new())
        .await
        .unwrap();
    for (step, deps) in [
        ("a", vec![]),
        ("b", vec!["a"]),
        ("c", vec!["a"]),
        ("d", vec!["b", "c"]),
    ] {
        add_step(
            &c,
            "needs_handlers",
            step,
            &StepOptions::new().depends_on(deps),
        )
        .await
        .unwrap();
    }
    let steps = StepFunctions::new()
        .step("c", |_| async { Ok(json!(null)) })
        .step("unrelated", |_| async { Ok(json!(null)) });
    match execute_dynamic(&url, "needs_handlers", json!({}), steps, quick(10)).await {
        Err(Error::MissingHandlers(missing)) => assert_eq!(missing, ["a", "b", "d"]),
        other => panic!("{other:?}"),
    }
    let runs: i64 = c
        .query_one(
            "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = 'needs_handlers'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 0, "no run was started");
}

/// A workflow an LLM wrote (steps in any order, defined with define_flow): one error names
/// every step without a function, in the workflow's step order, before anything starts; with
/// all of them the same call runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_missing_function_is_named_before_the_run_starts() {
    let url = database(DB).await;
    let c = client(&url).await;
    define_from_json(
        &c,
        r#"{"workflow_slug": "llm_written", "steps": [
              {"slug": "report", "depends_on": ["score", "fetch"]},
              {"slug": "score", "depends_on": ["fetch"], "type": "map"},
              {"slug": "audit", "depends_on": ["fetch"]},
              {"slug": "fetch"}]}"#,
    )
    .await
    .unwrap();
    let order: Vec<String> = get_flow(&c, "llm_written")
        .await
        .unwrap()
        .steps
        .into_iter()
        .map(|s| s.step_slug)
        .collect();
    let partial = || StepFunctions::new().step("score", |i| async move { Ok(i["item"].clone()) });
    let err = execute_dynamic(&url, "llm_written", json!({}), partial(), quick(10))
        .await
        .unwrap_err();
    let expected: Vec<String> = order
        .iter()
        .filter(|s| s.as_str() != "score")
        .cloned()
        .collect();
    match &err {
        Error::MissingHandlers(missing) => assert_eq!(missing, &expected),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("no handler for step(s): {}", expected.join(", "))
    );
    let runs: i64 = c
        .query_one(
            "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = 'llm_written'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 0, "no run was started");

    let all = partial()
        .step("fetch", |_| async { Ok(json!([1, 2, 3])) })
        .step("audit", |_| async { Ok(json!("ok")) })
        .step("report", |i| async move { Ok(i["score"].clone()) });
    let output = execute_dynamic(&url, "llm_written", json!({}), all, quick(30))
        .await
        .unwrap();
    assert_eq!(output, json!({"audit": "ok", "report": [1, 2, 3]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_workflow_is_workflow_not_found() {
    let url = database(DB).await;
    assert_api_error(
        execute_dynamic(
            &url,
            "no_such_flow",
            json!({}),
            StepFunctions::new(),
            quick(5),
        )
        .await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "no_such_flow",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_is_retried_until_it_succeeds() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(
        &c,
        "flaky",
        &FlowOptions::new().max_attempts(3).base_delay(0),
    )
    .await
    .unwrap();
    add_step(&c, "flaky", "call_api", &StepOptions::new())
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let steps = StepFunctions::new().step("call_api", move |input: Value| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < 3 {
                return Err(format!("upstream 503 on call {n}").into());
            }
            Ok(json!({"answer": input["run"]["q"], "calls": n}))
        }
    });
    let output = execute_dynamic(&url, "flaky", json!({"q": 42}), steps, quick(60))
        .await
        .unwrap();
    assert_eq!(output, json!({"call_api": {"answer": 42, "calls": 3}}));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_that_persists_fails_the_run_with_its_message() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(
        &c,
        "always_fails",
        &FlowOptions::new().max_attempts(2).base_delay(0),
    )
    .await
    .unwrap();
    add_step(&c, "always_fails", "a", &StepOptions::new())
        .await
        .unwrap();
    add_step(
        &c,
        "always_fails",
        "b",
        &StepOptions::new().depends_on(["a"]),
    )
    .await
    .unwrap();
    let steps = StepFunctions::new()
        .step("a", |_| async { Err("disk full".into()) })
        .step("b", |_| async { Ok(json!(1)) });
    let err = execute_dynamic(&url, "always_fails", json!({}), steps, quick(60))
        .await
        .unwrap_err();
    let Error::RunFailed { run_id, message } = err else {
        panic!("{err:?}")
    };
    // the run's message names the step, task and attempt that failed
    assert_eq!(message, "step a, task 0, attempt 2: disk full");
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.step("a").unwrap().status, StepStatus::Failed);
    assert_eq!(run.step("b").unwrap().status, StepStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_fails_the_task_with_the_panic_message() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "panics", &FlowOptions::new().max_attempts(1))
        .await
        .unwrap();
    add_step(&c, "panics", "explode", &StepOptions::new())
        .await
        .unwrap();
    let steps = StepFunctions::new().step("explode", |input: Value| async move {
        if input["run"]["boom"] == json!(true) {
            panic!("kaboom at item {}", 7);
        }
        Ok(json!("fine"))
    });
    let err = execute_dynamic(&url, "panics", json!({"boom": true}), steps, quick(60))
        .await
        .unwrap_err();
    let Error::RunFailed { run_id, message } = err else {
        panic!("{err:?}")
    };
    let located = "step explode, task 0, attempt 1: handler panicked: kaboom at item 7";
    assert_eq!(message, located);
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error_message.as_deref(), Some(located));
    let step = run.step("explode").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    assert_eq!(step.error_message.as_deref(), Some(located));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_one_failed_attempt_and_the_retry_can_succeed() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(
        &c,
        "panics_once",
        &FlowOptions::new().max_attempts(2).base_delay(0),
    )
    .await
    .unwrap();
    add_step(&c, "panics_once", "m", &StepOptions::new().map())
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let steps = StepFunctions::new().step("m", move |input: Value| {
        // a panic while *creating* the future is caught too
        if input["item"] == json!("b") && counter.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("first call for b");
        }
        async move { Ok(json!(format!("{}!", input["item"].as_str().unwrap()))) }
    });
    let output = execute_dynamic(
        &url,
        "panics_once",
        json!(["a", "b", "c"]),
        steps,
        quick(60),
    )
    .await
    .unwrap();
    assert_eq!(output, json!({"m": ["a!", "b!", "c!"]}));
    // The failed attempt is recorded on the task (an internal table; get_run shows steps).
    let row = c
        .query_one(
            "SELECT t.attempts_count, t.error_message FROM quantum_flow.step_tasks t \
             JOIN quantum_flow.runs r USING (run_id) \
             WHERE r.workflow_slug = 'panics_once' AND t.task_index = 1",
            &[],
        )
        .await
        .unwrap();
    let attempts: i32 = row.get(0);
    let error: Option<String> = row.get(1);
    assert_eq!(attempts, 2);
    assert_eq!(error.as_deref(), Some("handler panicked: first call for b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_outlasts_the_timeout_is_a_timeout_error() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "slow", &FlowOptions::new()).await.unwrap();
    add_step(&c, "slow", "wait", &StepOptions::new())
        .await
        .unwrap();
    let steps = StepFunctions::new().step("wait", |_| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(json!(null))
    });
    let options = ExecuteOptions {
        timeout: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(100),
        ..quick(0)
    };
    let err = execute_dynamic(&url, "slow", json!({}), steps, options)
        .await
        .unwrap_err();
    let Error::Timeout { run_id } = err else {
        panic!("{err:?}")
    };
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(
        run.status,
        RunStatus::Started,
        "the run is left to other workers"
    );
}

/// `execute_dynamic`'s future dropped while a handler runs (a `tokio::time::timeout` around
/// it) stops its worker: the worker answers the task it holds, then ends, and claims nothing
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_execute_dynamic_stops_its_worker() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "dropped_call", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "dropped_call", "work", &StepOptions::new())
        .await
        .unwrap();
    let called = Arc::new(tokio::sync::Notify::new());
    let notify = called.clone();
    let steps = StepFunctions::new().step("work", move |input: Value| {
        let notify = notify.clone();
        async move {
            notify.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(input["run"]["n"].clone())
        }
    });
    let call = execute_dynamic(&url, "dropped_call", json!({"n": 7}), steps, quick(60));
    tokio::select! {
        _ = call => panic!("the run cannot end before its handler was called"),
        _ = called.notified() => {}
    }
    // The call is dropped; its worker still holds the task.
    let workers = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND application_name LIKE 'quantum_flow worker %'";
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while c.query_one(workers, &[]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the worker of the dropped call kept its connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = c
        .query_one(
            "SELECT run_id, status::text FROM quantum_flow.runs \
             WHERE workflow_slug = 'dropped_call'",
            &[],
        )
        .await
        .unwrap();
    let (run_id, status): (uuid::Uuid, String) = (row.get(0), row.get(1));
    assert_eq!(status, "completed", "the held task was answered");
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.output, Some(json!({"work": 7})));
    // Nothing claims a new run's task now but this test.
    let next = start_flow(&c, "dropped_call", &json!({"n": 8}), None)
        .await
        .unwrap();
    let tasks = poll_tasks(&c, "dropped_call", &PollOptions::default())
        .await
        .unwrap();
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.run_id, t.attempt))
            .collect::<Vec<_>>(),
        [(next, 1)]
    );
}
