//! Claim timeouts and retry backoff, in real time.

use quantum_flow_e2e::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

async fn one_step_flow(client: &Client, slug: &str, options: &str, step_options: &str) {
    exec(
        client,
        &format!(
            "SELECT quantum_flow.create_flow('{slug}'{options}); \
             SELECT quantum_flow.add_step('{slug}', 'a'{step_options});"
        ),
    )
    .await;
}

#[tokio::test]
async fn a_timed_out_claim_is_handed_to_another_poller_as_the_next_attempt() {
    let url = fresh_database("qf_e2e_timeouts_handover").await;
    let first = connect(&url).await;
    let second = connect(&url).await;
    one_step_flow(&first, "handover", ", max_attempts => 3", ", timeout => 1").await;
    let run = start_flow(&first, "handover", &json!({"k": 1})).await;

    let claiming = Instant::now();
    let claimed = poll(&first, "handover", 10, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);

    // Nobody answers attempt 1: after the 1 s timeout a waiting poller gets attempt 2.
    let handed = poll(&second, "handover", 10, 5000).await.unwrap();
    let after = claiming.elapsed();
    assert_eq!(
        handed,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 2,
            input: json!({"run": {"k": 1}}),
        }]
    );
    assert!(
        after >= Duration::from_secs(1),
        "attempt 2 handed out {after:?} after attempt 1 was claimed, before its 1 s timeout"
    );

    // The first worker's late answer does not count; the second worker's does.
    assert!(!complete(&first, &claimed[0], &json!("late")).await.unwrap());
    assert!(complete(&second, &handed[0], &json!("on time"))
        .await
        .unwrap());
    let doc = get_run(&first, run).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["output"], json!({"a": "on time"}));
    assert_eq!(doc["steps"][0]["tasks_completed"], json!(1));
    assert_eq!(queue_len(&first, "handover").await, 0);
}

#[tokio::test]
async fn attempts_exhausted_by_timeouts_fail_the_run() {
    let url = fresh_database("qf_e2e_timeouts_exhausted").await;
    let main = connect(&url).await;
    one_step_flow(&main, "exhaust", ", max_attempts => 2", ", timeout => 1").await;
    let run = start_flow(&main, "exhaust", &json!({})).await;

    let first = poll(&main, "exhaust", 10, 0).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    // The timed-out claim counts as an attempt: the next poll gets attempt 2 of 2.
    let second = poll(&main, "exhaust", 10, 5000).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    // Nobody answers attempt 2 either: the next poll that finds it timed out fails the run,
    // and has nothing to hand out.
    let third = poll(&main, "exhaust", 10, 3000).await.unwrap();
    assert_eq!(third, vec![]);

    let message = "step a, task 0, attempt 2: timed out: attempt 2 of 2 was not completed \
                   within the step's 1s timeout";
    let doc = get_run(&main, run).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error_message"], message);
    assert_eq!(doc["output"], Value::Null);
    assert_eq!(doc["steps"][0]["status"], "failed");
    assert_eq!(doc["steps"][0]["error_message"], message);
    assert_eq!(doc["steps"][0]["tasks_completed"], json!(0));
    assert_eq!(
        queue_len(&main, "exhaust").await,
        0,
        "queue after the failure"
    );
    assert_eq!(
        archive_len(&main, "exhaust").await,
        1,
        "the task's message archived once"
    );

    // Answers that come too late change nothing.
    assert!(!complete(&main, &second[0], &json!("late")).await.unwrap());
    assert_eq!(fail(&main, &first[0], "late").await.unwrap(), "ignored");
    assert_eq!(get_run(&main, run).await, doc);
}

/// After a failure reported at `failed_at` with backoff `delay`: the retry is not visible at
/// `delay - 0.3 s` and reaches a waiting poller by `delay + 1.5 s`. Returns it.
async fn expect_retry_after(
    client: &Client,
    slug: &str,
    failed_at: Instant,
    delay: Duration,
    attempt: i32,
) -> Task {
    assert_eq!(
        poll(client, slug, 10, 0).await.unwrap(),
        vec![],
        "visible at once after the failure"
    );
    tokio::time::sleep_until((failed_at + delay - Duration::from_millis(300)).into()).await;
    let early = poll(client, slug, 10, 0).await.unwrap();
    let answered = failed_at.elapsed();
    let task = if early.is_empty() {
        let latest = failed_at + delay + Duration::from_millis(1500);
        let wait_ms = latest.saturating_duration_since(Instant::now()).as_millis() as i32;
        let mut due = poll(client, slug, 10, wait_ms).await.unwrap();
        let at = failed_at.elapsed();
        assert_eq!(
            due.len(),
            1,
            "attempt {attempt} not visible {at:?} after the failure (backoff {delay:?})"
        );
        assert!(
            at >= delay - Duration::from_millis(300),
            "attempt {attempt} visible {at:?} after the failure (backoff {delay:?})"
        );
        due.remove(0)
    } else {
        // Only acceptable if this poll ran past the due time (a very slow machine).
        assert!(
            answered >= delay,
            "attempt {attempt} visible {answered:?} after the failure, backoff {delay:?}"
        );
        early.into_iter().next().unwrap()
    };
    assert_eq!(task.attempt, attempt);
    task
}

#[tokio::test]
async fn retries_wait_for_exponential_backoff() {
    let url = fresh_database("qf_e2e_timeouts_backoff").await;
    let main = connect(&url).await;
    one_step_flow(&main, "backoff", ", max_attempts => 3, base_delay => 1", "").await;
    let run = start_flow(&main, "backoff", &json!({})).await;

    let first = poll(&main, "backoff", 10, 0).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);

    let failed_at = Instant::now();
    assert_eq!(fail(&main, &first[0], "one").await.unwrap(), "queued");
    let second = expect_retry_after(&main, "backoff", failed_at, Duration::from_secs(1), 2).await;

    let failed_at = Instant::now();
    assert_eq!(fail(&main, &second, "two").await.unwrap(), "queued");
    let third = expect_retry_after(&main, "backoff", failed_at, Duration::from_secs(2), 3).await;

    assert!(complete(&main, &third, &json!(3)).await.unwrap());
    let doc = get_run(&main, run).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["output"], json!({"a": 3}));
    assert_eq!(queue_len(&main, "backoff").await, 0);
    assert_eq!(archive_len(&main, "backoff").await, 0);
}
