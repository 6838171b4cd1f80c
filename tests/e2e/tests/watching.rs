//! Watching runs (contract group E) through real connections: `NOTIFY quantum_flow_events`
//! after each commit that changes a run's or a step's status, and `wait_run` woken by the
//! commit that ends the run.

use futures::StreamExt;
use quantum_flow_e2e::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, NoTls};

/// A connection that LISTENs on quantum_flow_events and keeps every payload it receives.
async fn listener(url: &str) -> (tokio_postgres::Client, Arc<Mutex<Vec<Value>>>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                assert_eq!(n.channel(), "quantum_flow_events");
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(n.payload()).unwrap());
            }
        }
    });
    client
        .batch_execute("LISTEN quantum_flow_events")
        .await
        .unwrap();
    (client, seen)
}

/// The (step, status) events of `run` received so far, waiting up to `within` for `count`.
async fn events_of(
    seen: &Arc<Mutex<Vec<Value>>>,
    run: uuid::Uuid,
    count: usize,
    within: Duration,
) -> Vec<(Value, String)> {
    let deadline = Instant::now() + within;
    loop {
        let of_run: Vec<(Value, String)> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["run_id"] == json!(run.to_string()))
            .map(|e| {
                (
                    e["step_slug"].clone(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if of_run.len() >= count || Instant::now() > deadline {
            return of_run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_change_is_notified_after_commit() {
    let url = fresh_database("qf_e2e_events").await;
    let c = connect(&url).await;
    exec(
        &c,
        "SELECT quantum_flow.create_flow('watched'); \
         SELECT quantum_flow.add_step('watched', 'a'); \
         SELECT quantum_flow.add_step('watched', 'm', ARRAY['a'], 'map'); \
         SELECT quantum_flow.add_step('watched', 'never', ARRAY['a'], if_matches => '{\"run\": {\"go\": true}}');",
    )
    .await;
    let (_l, seen) = listener(&url).await;
    let run = start_flow(&c, "watched", &json!({"k": 1})).await;
    let a = poll(&c, "watched", 10, 0).await.unwrap();
    // nothing is sent before the commit: an answer in an open transaction is not seen yet
    exec(&c, "BEGIN").await;
    assert!(complete(&c, &a[0], &json!([1, 2])).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events_of(&seen, run, 3, Duration::ZERO).await.len(),
        2,
        "only the start's events before COMMIT"
    );
    exec(&c, "COMMIT").await;
    for t in poll(&c, "watched", 10, 0).await.unwrap() {
        assert!(complete(&c, &t, &json!("x")).await.unwrap());
    }
    let null = Value::Null;
    let step = |s: &str| json!(s);
    let expected = vec![
        (null.clone(), "started".to_string()),
        (step("a"), "started".into()),
        (step("a"), "completed".into()),
        (step("m"), "started".into()),
        (step("never"), "skipped".into()),
        (step("m"), "completed".into()),
        (null.clone(), "completed".into()),
    ];
    assert_eq!(
        events_of(&seen, run, expected.len(), Duration::from_secs(10)).await,
        expected
    );
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first["workflow_slug"], "watched");

    // quantum_flow.notify_events = off: the session's calls send nothing
    exec(&c, "SET quantum_flow.notify_events = off").await;
    let quiet = start_flow(&c, "watched", &json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events_of(&seen, quiet, 1, Duration::ZERO).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_run_returns_when_the_commit_that_ends_the_run_happens() {
    let url = fresh_database("qf_e2e_wait_run").await;
    let c = connect(&url).await;
    exec(
        &c,
        "SELECT quantum_flow.create_flow('waited'); SELECT quantum_flow.add_step('waited', 'a');",
    )
    .await;
    let run = start_flow(&c, "waited", &json!({})).await;
    let task = poll(&c, "waited", 1, 0).await.unwrap().remove(0);
    let waiter = {
        let url = url.clone();
        tokio::spawn(async move {
            let w = connect(&url).await;
            // no periodic re-check to fall back on: only the commit's wake-up can end the wait early
            exec(&w, "SET quantum_flow.poll_recheck_ms = 3600000").await;
            let started = Instant::now();
            let doc: Value = w
                .query_one("SELECT quantum_flow.wait_run($1, 30000)", &[&run])
                .await
                .unwrap()
                .get(0);
            (doc, Instant::now(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(complete(&c, &task, &json!("done")).await.unwrap());
    let committed = Instant::now();
    let (doc, returned, waited) = waiter.await.unwrap();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["output"], json!({"a": "done"}));
    assert!(
        waited >= Duration::from_millis(450),
        "returned before the run ended ({waited:?})"
    );
    let after_commit = returned.saturating_duration_since(committed);
    assert!(
        after_commit < Duration::from_secs(5),
        "wait_run returned {after_commit:?} after the commit: it was not woken by it"
    );
}
