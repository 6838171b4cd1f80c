//! Watching runs through the typed client: wait_run, the event stream, get_run_with_tasks.

mod common;

use common::{client, database};
use futures::StreamExt;
use quantum_flow_client::*;
use serde_json::json;
use std::time::Duration;

const DB: &str = "qf_rust_client_watching";

#[tokio::test]
async fn wait_run_and_the_event_stream_follow_a_run() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "wt_flow", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "wt_flow", "a", &StepOptions::new())
        .await
        .unwrap();
    let mut stream = Box::pin(events(&url).await.unwrap());
    let run = start_flow(&c, "wt_flow", &json!({}), None).await.unwrap();
    // not ended: wait_run gives the run as it is when the time is up
    assert_eq!(
        wait_run(&c, run, 50).await.unwrap().status,
        RunStatus::Started
    );
    let task = &poll_tasks(&c, "wt_flow", &PollOptions::default())
        .await
        .unwrap()[0];
    let (run_doc, tasks) = get_run_with_tasks(&c, run).await.unwrap();
    assert_eq!(run_doc.run_id, run);
    assert_eq!(tasks["a"][0].status, "started");
    assert_eq!(tasks["a"][0].attempts, 1);
    assert!(tasks["a"][0].claim_deadline.is_some());
    let waiter = {
        let url = url.clone();
        tokio::spawn(async move {
            let w = client(&url).await;
            wait_run(&w, run, 10_000).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        complete_task(&c, run, "a", 0, &json!(1), Some(task.attempt))
            .await
            .unwrap()
    );
    let ended = waiter.await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed);
    assert_eq!(ended.output, Some(json!({"a": 1})));
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .unwrap();
        assert_eq!((e.run_id, e.workflow_slug.as_str()), (run, "wt_flow"));
        seen.push((e.step_slug, e.status));
    }
    assert_eq!(
        seen,
        vec![
            (None, "started".to_string()),
            (Some("a".to_string()), "started".to_string()),
            (Some("a".to_string()), "completed".to_string()),
            (None, "completed".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_foreign_notification_is_an_error_item_and_the_stream_goes_on() {
    let url = database(DB).await;
    let c = client(&url).await;
    create_flow(&c, "wn_flow", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "wn_flow", "a", &StepOptions::new())
        .await
        .unwrap();
    let mut stream = Box::pin(events(&url).await.unwrap());
    // anyone may NOTIFY the channel
    c.batch_execute("NOTIFY quantum_flow_events, 'not json'")
        .await
        .unwrap();
    let run = start_flow(&c, "wn_flow", &json!({}), None).await.unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an item within 5 s")
            .expect("the stream goes on")
    };
    match next().await {
        Err(Error::Decode(message)) => assert!(message.contains("expected"), "{message}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    let e = next().await.unwrap();
    assert_eq!(
        (e.run_id, e.step_slug, e.status.as_str()),
        (run, None, "started")
    );
}
