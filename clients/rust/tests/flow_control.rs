//! Flow control through the typed client (contract group D): conditions, events, pause and
//! resume, retry_run, fail_task_with(retry => false), scheduled runs, sub-flows, concurrency
//! options, and the worker's permanent errors and logging.

mod common;

use common::{assert_api_error, client, database};
use quantum_flow_client::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const DB: &str = "qf_rust_client_flow_control";

async fn poll(c: &tokio_postgres::Client, flow: &str) -> Vec<Task> {
    poll_tasks(c, flow, &PollOptions::default()).await.unwrap()
}

#[tokio::test]
async fn conditions_skip_a_step_and_get_run_says_so() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "fc_cond", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "fc_cond", "check", &StepOptions::new())
        .await
        .unwrap();
    let notify = add_step(
        &c,
        "fc_cond",
        "notify",
        &StepOptions::new()
            .depends_on(["check"])
            .if_matches(json!({"check": {"notify": true}}))
            .when_unmet(WhenUnmet::SkipCascade),
    )
    .await
    .unwrap();
    assert_eq!(notify.if_matches, Some(json!({"check": {"notify": true}})));
    assert_eq!(notify.when_unmet, WhenUnmet::SkipCascade);
    let run = start_flow(&c, "fc_cond", &json!({}), None).await.unwrap();
    let tasks = poll(&c, "fc_cond").await;
    assert!(
        complete_task(&c, run, "check", 0, &json!({"notify": false}), Some(1))
            .await
            .unwrap()
    );
    assert_eq!(tasks.len(), 1);
    let doc = get_run(&c, run).await.unwrap();
    assert_eq!(doc.status, RunStatus::Completed);
    assert_eq!(doc.step("notify").unwrap().status, StepStatus::Skipped);
    assert_eq!(doc.output, Some(json!({})));
    let flow = get_flow(&c, "fc_cond").await.unwrap();
    assert_eq!(
        flow.steps[1].if_matches,
        Some(json!({"check": {"notify": true}}))
    );
    assert_eq!(flow.steps[1].when_unmet, WhenUnmet::SkipCascade);
}

#[tokio::test]
async fn an_event_step_completes_with_send_event() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "fc_event", &FlowOptions::new())
        .await
        .unwrap();
    let approval = add_step(
        &c,
        "fc_event",
        "approval",
        &StepOptions::new().event().timeout(3600),
    )
    .await
    .unwrap();
    assert_eq!(approval.step_type, StepType::Event);
    add_step(
        &c,
        "fc_event",
        "publish",
        &StepOptions::new().depends_on(["approval"]),
    )
    .await
    .unwrap();
    let run = start_flow(&c, "fc_event", &json!({"doc": 1}), None)
        .await
        .unwrap();
    assert_eq!(
        poll(&c, "fc_event").await,
        vec![],
        "no worker task for an event step"
    );
    assert!(send_event(&c, run, "approval", &json!({"by": "ana"}))
        .await
        .unwrap());
    assert!(
        !send_event(&c, run, "approval", &json!({"by": "bo"}))
            .await
            .unwrap(),
        "a duplicate"
    );
    let tasks = poll(&c, "fc_event").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].input,
        json!({"run": {"doc": 1}, "approval": {"by": "ana"}})
    );
    assert_api_error(
        send_event(&c, run, "publish", &json!({})).await,
        ErrorCode::NotAnEventStep,
        "42809",
        "step \"publish\" of workflow \"fc_event\" is a single step",
    );
    assert_api_error(
        send_event(&c, run, "aproval", &json!({})).await,
        ErrorCode::StepNotFound,
        "P0002",
        "(did you mean \"approval\"?)",
    );
}

#[tokio::test]
async fn pause_resume_and_retry_run() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "fc_pause", &FlowOptions::new().base_delay(0))
        .await
        .unwrap();
    add_step(
        &c,
        "fc_pause",
        "m",
        &StepOptions::new().map().max_attempts(5),
    )
    .await
    .unwrap();
    let run = start_flow(&c, "fc_pause", &json!([1, 2]), None)
        .await
        .unwrap();
    assert!(pause_run(&c, run).await.unwrap());
    assert!(!pause_run(&c, run).await.unwrap());
    assert_eq!(get_run(&c, run).await.unwrap().status, RunStatus::Paused);
    assert_eq!(poll(&c, "fc_pause").await, vec![]);
    assert!(resume_run(&c, run).await.unwrap());
    let tasks = poll(&c, "fc_pause").await;
    assert_eq!(tasks.len(), 2);
    assert!(complete_task(&c, run, "m", 0, &json!("zero"), Some(1))
        .await
        .unwrap());
    // a deterministic error: fail at once, whatever attempts are left
    assert_eq!(
        fail_task_with(&c, run, "m", 1, "not JSON", Some(1), false)
            .await
            .unwrap(),
        FailOutcome::Failed
    );
    let failed = get_run(&c, run).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("step m, task 1, attempt 1: not JSON (not retried: the worker said the error is permanent)")
    );
    assert!(retry_run(&c, run).await.unwrap());
    assert!(!retry_run(&c, run).await.unwrap(), "not failed any more");
    let again = poll(&c, "fc_pause").await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].task_index, again[0].attempt), (1, 2));
    assert!(complete_task(&c, run, "m", 1, &json!("one"), Some(2))
        .await
        .unwrap());
    let done = get_run(&c, run).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(json!({"m": ["zero", "one"]})));
    assert_api_error(
        retry_run(&c, Uuid::nil()).await,
        ErrorCode::RunNotFound,
        "P0002",
        "does not exist",
    );
}

#[tokio::test]
async fn a_scheduled_run_waits_for_its_time() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "fc_sched", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "fc_sched", "s", &StepOptions::new())
        .await
        .unwrap();
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let run = start_flow_at(&c, "fc_sched", &json!({}), None, at)
        .await
        .unwrap();
    let doc = get_run(&c, run).await.unwrap();
    assert_eq!(doc.status, RunStatus::Started);
    let start_at = doc.start_at.expect("a scheduled run has start_at");
    assert!(
        (start_at - at).num_milliseconds().abs() < 1,
        "{start_at} vs {at}"
    );
    assert_eq!(poll(&c, "fc_sched").await, vec![]);
    let tasks = poll_tasks(
        &c,
        "fc_sched",
        &PollOptions {
            max_wait_ms: 5000,
            ..PollOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(tasks.len(), 1);
    assert!(chrono::Utc::now() >= at);
}

#[tokio::test]
async fn a_sub_flow_step_takes_its_child_runs_output() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "fc_child", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "fc_child", "double", &StepOptions::new())
        .await
        .unwrap();
    create_flow(&c, "fc_parent", &FlowOptions::new())
        .await
        .unwrap();
    let each = add_step(
        &c,
        "fc_parent",
        "each",
        &StepOptions::new().map().flow("fc_child"),
    )
    .await
    .unwrap();
    assert_eq!(each.flow.as_deref(), Some("fc_child"));
    let run = start_flow(&c, "fc_parent", &json!([1, 2, 3]), None)
        .await
        .unwrap();
    let children = get_run(&c, run)
        .await
        .unwrap()
        .step("each")
        .unwrap()
        .child_run_ids
        .clone();
    let children = children.expect("a sub-flow step lists its child runs");
    assert_eq!(children.len(), 3);
    for t in poll(&c, "fc_child").await {
        let n = t.input["run"].as_i64().unwrap();
        assert!(complete_task(
            &c,
            t.run_id,
            &t.step_slug,
            t.task_index,
            &json!(n * 2),
            Some(t.attempt)
        )
        .await
        .unwrap());
    }
    let doc = get_run(&c, run).await.unwrap();
    assert_eq!(doc.status, RunStatus::Completed);
    assert_eq!(
        doc.output,
        Some(json!({"each": [{"double": 2}, {"double": 4}, {"double": 6}]}))
    );
    assert_eq!(
        get_run(&c, children[1]).await.unwrap().parent_run_id,
        Some(run)
    );
}

#[tokio::test]
async fn flow_options_round_trip() {
    let c = client(&database(DB).await).await;
    let w = create_flow(
        &c,
        "fc_options",
        &FlowOptions::new()
            .run_timeout(600)
            .concurrency("tenant_id", 3),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            w.run_timeout,
            w.concurrency_key.as_deref(),
            w.max_concurrency
        ),
        (Some(600), Some("tenant_id"), Some(3))
    );
    let step = add_step(
        &c,
        "fc_options",
        "later",
        &StepOptions::new().start_delay(30),
    )
    .await
    .unwrap();
    assert_eq!(step.start_delay, Some(30));
    let flow = get_flow(&c, "fc_options").await.unwrap();
    assert_eq!(
        (
            flow.run_timeout,
            flow.concurrency_key.as_deref(),
            flow.max_concurrency
        ),
        (Some(600), Some("tenant_id"), Some(3))
    );
    assert_api_error(
        create_flow(
            &c,
            "fc_options_bad",
            &FlowOptions::new().concurrency("tenant_id", 0),
        )
        .await,
        ErrorCode::InvalidOption,
        "22023",
        "max_concurrency must be >= 1, got 0",
    );
}

/// A logger that keeps the worker's records.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("quantum_flow")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

static LOGS: Captured = Captured(Mutex::new(Vec::new()));

#[derive(Debug)]
struct Disk(std::io::Error);

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("saving the report")
    }
}

impl std::error::Error for Disk {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A handler's `Permanent` error fails the task at once (one attempt, not five), and every
/// handler error is logged with its causes; `execute_dynamic`'s error names the step, task
/// and attempt.
#[tokio::test]
async fn the_worker_does_not_retry_permanent_errors_and_logs_every_error() {
    let url = database(DB).await;
    let c = client(&url).await;
    let _ = log::set_logger(&LOGS);
    log::set_max_level(log::LevelFilter::Warn);
    create_flow(
        &c,
        "fc_permanent",
        &FlowOptions::new().max_attempts(5).base_delay(0),
    )
    .await
    .unwrap();
    add_step(&c, "fc_permanent", "parse", &StepOptions::new())
        .await
        .unwrap();
    add_step(
        &c,
        "fc_permanent",
        "save",
        &StepOptions::new().depends_on(["parse"]),
    )
    .await
    .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let functions = StepFunctions::new()
        .step("parse", move |input: Value| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push("parse");
                match input["run"]["amount"].as_i64() {
                    Some(n) => Ok(json!(n)),
                    None => Err(Permanent::new("amount must be an integer").into()),
                }
            }
        })
        .step("save", |_input: Value| async move {
            Err(Disk(std::io::Error::other("disk full")).into())
        });
    let err = execute_dynamic(
        &url,
        "fc_permanent",
        json!({"amount": "ten"}),
        functions.clone(),
        ExecuteOptions::default(),
    )
    .await
    .unwrap_err();
    let Error::RunFailed { message, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        message,
        "step parse, task 0, attempt 1: amount must be an integer (not retried: the worker said \
         the error is permanent)"
    );
    assert_eq!(*attempts.lock().unwrap(), vec!["parse"], "one attempt only");

    // a retryable error with a cause: retried, the message carries the cause, each attempt
    // is logged
    create_flow(
        &c,
        "fc_retryable",
        &FlowOptions::new().max_attempts(2).base_delay(0),
    )
    .await
    .unwrap();
    add_step(&c, "fc_retryable", "save", &StepOptions::new())
        .await
        .unwrap();
    let err = execute_dynamic(
        &url,
        "fc_retryable",
        json!({}),
        StepFunctions::new().step("save", |_input: Value| async move {
            Err(Disk(std::io::Error::other("disk full")).into())
        }),
        ExecuteOptions {
            poll_wait: Duration::from_millis(50),
            ..ExecuteOptions::default()
        },
    )
    .await
    .unwrap_err();
    let Error::RunFailed { message, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        message,
        "step save, task 0, attempt 2: saving the report: disk full"
    );
    let logs = LOGS.0.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.starts_with(
            "WARN workflow fc_permanent, step parse, task 0, attempt 1 failed (permanent: not \
             retried): amount must be an integer"
        )),
        "{logs:#?}"
    );
    for attempt in [1, 2] {
        let line = format!(
            "WARN workflow fc_retryable, step save, task 0, attempt {attempt} failed: saving \
             the report: disk full"
        );
        assert!(logs.contains(&line), "{line} not in {logs:#?}");
    }
}
