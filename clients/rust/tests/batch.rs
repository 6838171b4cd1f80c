//! The batch calls through the typed client: complete_tasks, start_flows, and a Worker that
//! completes in batches or one by one.

mod common;

use common::{assert_api_error, client, database};
use quantum_flow_client::*;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const DB: &str = "qf_rust_client_batch";

#[tokio::test]
async fn complete_tasks_answers_each_element_as_complete_task_would() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "bt_map", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "bt_map", "m", &StepOptions::new().map())
        .await
        .unwrap();
    let run = start_flow(&c, "bt_map", &json!([1, 2, 3]), None)
        .await
        .unwrap();
    let tasks = poll_tasks(&c, "bt_map", &PollOptions::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 3);
    // a root map's task input has no "run": the flow input is the array being mapped
    let mut inputs: Vec<Value> = tasks.iter().map(|t| t.input.clone()).collect();
    inputs.sort_by_key(|i| i["index"].as_i64());
    assert_eq!(inputs[0], json!({"item": 1, "index": 0}));
    let mut answers: Vec<TaskAnswer> = tasks
        .iter()
        .map(|t| TaskAnswer::new(t, json!(t.input["item"].as_i64().unwrap() * 10)))
        .collect();
    answers.push(answers[0].clone()); // a repeat: false
    assert_eq!(
        complete_tasks(&c, &answers).await.unwrap(),
        vec![true, true, true, false]
    );
    let done = get_run(&c, run).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(json!({"m": [10, 20, 30]})));
    // an answer for no task: an error, and nothing is completed
    let run = start_flow(&c, "bt_map", &json!([1]), None).await.unwrap();
    let task = &poll_tasks(&c, "bt_map", &PollOptions::default())
        .await
        .unwrap()[0];
    let mut missing = TaskAnswer::new(task, json!(0));
    missing.task_index = 7;
    assert_api_error(
        complete_tasks(&c, &[TaskAnswer::new(task, json!(0)), missing]).await,
        ErrorCode::TaskNotFound,
        "P0002",
        "has no task 7 of step \"m\"",
    );
    assert_eq!(get_run(&c, run).await.unwrap().status, RunStatus::Started);
    assert_eq!(complete_tasks(&c, &[]).await.unwrap(), Vec::<bool>::new());
}

#[tokio::test]
async fn start_flows_starts_every_run_or_none() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "bt_chain", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "bt_chain", "a", &StepOptions::new())
        .await
        .unwrap();
    let chosen = Uuid::new_v4();
    let ids = start_flows(
        &c,
        "bt_chain",
        &[json!({"n": 1}), json!({"n": 2})],
        Some(&[Some(chosen), None]),
    )
    .await
    .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], chosen);
    assert_eq!(get_run(&c, ids[1]).await.unwrap().input, json!({"n": 2}));
    assert_api_error(
        start_flows(
            &c,
            "bt_chain",
            &[json!({}), json!({})],
            Some(&[None, Some(chosen)]),
        )
        .await,
        ErrorCode::RunExists,
        "23505",
        "already exists",
    );
    let runs: i64 = c
        .query_one(
            "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = 'bt_chain'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 2, "the refused call started none");
}

async fn work_a_map(url: &str, slug: &str, batched: bool) -> WorkerStats {
    let c = client(url).await;
    create_flow(&c, slug, &FlowOptions::new()).await.unwrap();
    add_step(&c, slug, "list", &StepOptions::new())
        .await
        .unwrap();
    add_step(
        &c,
        slug,
        "m",
        &StepOptions::new().depends_on(["list"]).map(),
    )
    .await
    .unwrap();
    let functions = StepFunctions::new()
        .step("list", |_input: Value| async {
            Ok(json!((0..300).collect::<Vec<i64>>()))
        })
        .step("m", |input: Value| async move {
            Ok(json!(input["item"].as_i64().ok_or("no item")? + 1))
        });
    let worker = Worker::connect(
        url,
        WorkerConfig::new(slug)
            .concurrency(32)
            .batch_size(32)
            .max_wait_ms(50)
            .complete_in_batches(batched),
        functions,
    )
    .await
    .unwrap();
    let (stop, shutdown) = shutdown_channel();
    let working = tokio::spawn(worker.run(shutdown));
    let run = start_flow(&c, slug, &json!({}), None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let doc = get_run(&c, run).await.unwrap();
        if doc.status == RunStatus::Completed {
            let expected: Vec<i64> = (1..=300).collect();
            assert_eq!(doc.output, Some(json!({"m": expected})));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not complete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    working.await.unwrap().unwrap()
}

#[tokio::test]
async fn the_worker_completes_in_batches_or_one_by_one() {
    let url = database(DB).await;
    for (slug, batched) in [("bt_batched", true), ("bt_single", false)] {
        let stats = work_a_map(&url, slug, batched).await;
        assert_eq!(
            (
                stats.claimed,
                stats.completed,
                stats.failed,
                stats.ignored,
                stats.answer_errors
            ),
            (301, 301, 0, 0, 0),
            "{slug}: {stats:?}"
        );
    }
}

/// An output the server cannot store (a `\u0000` in a string, which `jsonb` refuses) fails
/// its task at once, without retries, instead of leaving it to time out.
#[tokio::test]
async fn an_output_the_server_refuses_fails_the_task_at_once() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "bt_refused", &FlowOptions::new().max_attempts(5))
        .await
        .unwrap();
    add_step(&c, "bt_refused", "a", &StepOptions::new())
        .await
        .unwrap();
    let err = execute_dynamic(
        &url,
        "bt_refused",
        json!({}),
        StepFunctions::new().step("a", |_input: Value| async { Ok(json!("a\u{0}b")) }),
        ExecuteOptions::default(),
    )
    .await
    .unwrap_err();
    let Error::RunFailed { message, .. } = err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("step a, task 0, attempt 1: output refused: ")
            && message.ends_with("(not retried: the worker said the error is permanent)"),
        "{message}"
    );
}
