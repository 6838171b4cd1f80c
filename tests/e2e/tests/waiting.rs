//! poll_tasks(max_wait_ms => N): woken early by other sessions' commits, returns empty after
//! N ms when there is no work, does not spin while idle, and picks up a backoff retry when it
//! becomes due.

use quantum_flow_e2e::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The backend pid of a connection.
async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until backend `pid` sleeps inside poll_tasks (wait event class "Extension"), seen in
/// three samples in a row, 20 ms apart. Before PostgreSQL 17 a poll shows that wait event
/// from before its claim query, and a lock or I/O wait inside the query clears it until the
/// poll goes to sleep: a commit in between wakes nobody (the poll's re-check, pushed beyond
/// these tests' waits, covers it in production; see `wait_for_work` in src/wakeup.rs). One
/// sample could be taken before the claim query.
async fn wait_until_sleeping(observer: &Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 3 {
        let sleeping: bool = observer
            .query_one(
                "SELECT coalesce((SELECT wait_event_type = 'Extension' FROM pg_stat_activity \
                                  WHERE pid = $1), false)",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        seen = if sleeping { seen + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "backend {pid} never slept in poll_tasks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A poll_tasks call running on its own connection: (claimed tasks, how long the call took).
type PendingPoll = tokio::task::JoinHandle<(Vec<Task>, Duration)>;

/// Starts poll_tasks(slug, 10, max_wait_ms) on `poller` and returns once it is asleep.
async fn start_waiting_poll(
    observer: &Client,
    poller: Client,
    slug: &'static str,
    max_wait_ms: i32,
) -> PendingPoll {
    let pid = backend_pid(&poller).await;
    let handle = tokio::spawn(async move {
        let started = Instant::now();
        let tasks = poll(&poller, slug, 10, max_wait_ms)
            .await
            .unwrap_or_else(|e| panic!("poll_tasks: {}", describe(&e)));
        (tasks, started.elapsed())
    });
    wait_until_sleeping(observer, pid).await;
    handle
}

const WAIT_MS: i32 = 5000;
/// Far below WAIT_MS: only a wake-up mechanism that does not work at all can miss it.
const EARLY: Duration = Duration::from_secs(4);

/// A poller connection whose idle re-check is pushed beyond WAIT_MS, so that returning before
/// EARLY proves the committing transaction woke it (and not the periodic re-check).
async fn poller_without_recheck(url: &str) -> Client {
    let poller = connect(url).await;
    exec(&poller, "SET quantum_flow.poll_recheck_ms = 60000").await;
    poller
}

#[tokio::test]
async fn a_completion_that_readies_a_step_wakes_a_waiting_poller() {
    let url = fresh_database("qf_e2e_waiting_complete").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('wake'); \
         SELECT quantum_flow.add_step('wake', 'a'); \
         SELECT quantum_flow.add_step('wake', 'b', ARRAY['a']);",
    )
    .await;
    let run = start_flow(&main, "wake", &json!({"n": 1})).await;
    let a = poll(&main, "wake", 10, 0).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].step_slug, "a");

    let waiting =
        start_waiting_poll(&main, poller_without_recheck(&url).await, "wake", WAIT_MS).await;
    let completed_at = Instant::now();
    assert!(complete(&main, &a[0], &json!("A")).await.unwrap());
    let (tasks, took) = waiting.await.unwrap();
    println!(
        "poll returned {:?} after the completion ({took:?} in all)",
        completed_at.elapsed()
    );
    assert!(took < EARLY, "poll_tasks returned after {took:?}");
    assert_eq!(
        tasks,
        vec![Task {
            run_id: run,
            step_slug: "b".into(),
            task_index: 0,
            attempt: 1,
            input: json!({"run": {"n": 1}, "a": "A"}),
        }]
    );
}

#[tokio::test]
async fn start_flow_wakes_a_waiting_poller() {
    let url = fresh_database("qf_e2e_waiting_start").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('wake'); SELECT quantum_flow.add_step('wake', 'a');",
    )
    .await;
    let waiting =
        start_waiting_poll(&main, poller_without_recheck(&url).await, "wake", WAIT_MS).await;
    let started_at = Instant::now();
    let run = start_flow(&main, "wake", &json!([1, 2])).await;
    let (tasks, took) = waiting.await.unwrap();
    println!(
        "poll returned {:?} after start_flow ({took:?} in all)",
        started_at.elapsed()
    );
    assert!(took < EARLY, "poll_tasks returned after {took:?}");
    assert_eq!(
        tasks,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 1,
            input: json!({"run": [1, 2]}),
        }]
    );
}

/// How often this session's transaction so far has scanned the queue table and its indexes.
async fn scans_in_transaction(client: &Client, table: &str) -> i64 {
    client
        .query_one(
            "SELECT pg_stat_get_xact_numscans($1::text::regclass) \
                    + (SELECT coalesce(sum(pg_stat_get_xact_numscans(indexrelid)), 0)::bigint \
                       FROM pg_index WHERE indrelid = $1::text::regclass)",
            &[&table],
        )
        .await
        .unwrap_or_else(|e| panic!("reading stats of {table}: {}", describe(&e)))
        .get(0)
}

/// A waiting poll of `HERD_WAIT_MS` in a transaction of its own: what it claimed, and how
/// often it scanned the queue.
async fn counted_poll(poller: &Client) -> (Vec<Task>, i64) {
    exec(poller, "BEGIN").await;
    let tasks = poll(poller, "herd", 10, HERD_WAIT_MS)
        .await
        .unwrap_or_else(|e| panic!("poll_tasks: {}", describe(&e)));
    let scans = scans_in_transaction(poller, "pgmq.q_qf_herd").await;
    exec(poller, "COMMIT").await;
    (tasks, scans)
}

const HERD_WAIT_MS: i32 = 3000;

/// A commit wakes as many sleeping pollers as it made tasks visible: one task wakes one of
/// five, and the other four sleep on, scanning the queue no more often than a poll that never
/// had work.
#[tokio::test]
async fn one_task_wakes_one_of_several_waiting_pollers() {
    let url = fresh_database("qf_e2e_waiting_herd").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('herd'); SELECT quantum_flow.add_step('herd', 'a');",
    )
    .await;
    let (none, alone) = counted_poll(&poller_without_recheck(&url).await).await;
    assert_eq!(none, vec![]);
    assert!(alone >= 1, "a poll never looked at the queue");

    let mut waiting = Vec::new();
    for _ in 0..5 {
        let poller = poller_without_recheck(&url).await;
        let pid = backend_pid(&poller).await;
        waiting.push(tokio::spawn(async move { counted_poll(&poller).await }));
        wait_until_sleeping(&main, pid).await;
    }
    let run = start_flow(&main, "herd", &json!({"n": 1})).await;
    let mut claimed = Vec::new();
    let mut losers = Vec::new();
    for handle in waiting {
        let (tasks, scans) = handle.await.unwrap();
        if tasks.is_empty() {
            losers.push(scans);
        } else {
            claimed.push(tasks);
        }
    }
    println!("a lone poll scanned the queue {alone} times; the four others: {losers:?}");
    assert_eq!(claimed.len(), 1, "pollers that claimed: {claimed:?}");
    assert_eq!(
        claimed[0],
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 1,
            input: json!({"run": {"n": 1}}),
        }]
    );
    assert_eq!(losers.len(), 4);
    // Woken for nothing, a poller runs another round and scans more than `alone`. One stray
    // wake-up (a latch set by something else) is tolerated; waking every sleeper makes four.
    let woken = losers.iter().filter(|&&scans| scans > alone).count();
    assert!(
        woken <= 1,
        "{woken} of the 4 pollers without a task were woken: scans {losers:?}, alone {alone}"
    );
}

#[tokio::test]
async fn with_no_work_poll_returns_nothing_after_max_wait() {
    let url = fresh_database("qf_e2e_waiting_empty").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('idle'); SELECT quantum_flow.add_step('idle', 'a');",
    )
    .await;
    let started = Instant::now();
    let tasks = poll(&main, "idle", 10, 1000).await.unwrap();
    let took = started.elapsed();
    assert_eq!(tasks, vec![]);
    assert!(
        took >= Duration::from_millis(1000),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "returned after {took:?}");
}

/// Reads of the queue table so far: scans (sequential and index) plus updated rows, from the
/// cumulative statistics, with this session's stats snapshot discarded first.
async fn queue_reads(observer: &Client, table: &str) -> i64 {
    observer
        .query_one(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) + n_tup_upd \
             FROM pg_stat_user_tables, pg_stat_clear_snapshot() \
             WHERE schemaname = 'pgmq' AND relname = $1",
            &[&table],
        )
        .await
        .unwrap_or_else(|e| panic!("reading stats of {table}: {}", describe(&e)))
        .get(0)
}

/// Waits until the database has no backend but `observer` (a closed session has then
/// flushed its statistics: a backend reports them when it exits).
async fn wait_for_other_sessions_to_end(observer: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if others == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "other sessions did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_poller_reads_the_queue_a_bounded_number_of_times() {
    let url = fresh_database("qf_e2e_waiting_idle").await;
    {
        let setup = connect(&url).await;
        exec(
            &setup,
            "SELECT quantum_flow.create_flow('idle'); SELECT quantum_flow.add_step('idle', 'a');",
        )
        .await;
    }
    let observer = connect(&url).await;
    wait_for_other_sessions_to_end(&observer).await;
    // What one round costs: a poll that does not wait, in a session of its own (a session's
    // statistics reach pg_stat_user_tables when it ends).
    let before_round = queue_reads(&observer, "q_qf_idle").await;
    {
        let once = connect(&url).await;
        assert_eq!(poll(&once, "idle", 10, 0).await.unwrap(), vec![]);
    }
    wait_for_other_sessions_to_end(&observer).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = queue_reads(&observer, "q_qf_idle").await;
    let per_round = before - before_round;
    assert!(per_round >= 1, "a poll never looked at the queue");

    // The waiting session reports its statistics when it exits, so count after it has gone.
    let took = {
        let waiter = connect(&url).await;
        let started = Instant::now();
        let tasks = poll(&waiter, "idle", 10, 3000).await.unwrap();
        assert_eq!(tasks, vec![]);
        started.elapsed()
    };
    assert!(
        took >= Duration::from_millis(3000),
        "returned after {took:?}"
    );
    wait_for_other_sessions_to_end(&observer).await;
    // The stats of an exiting backend are flushed synchronously; a short pause covers the
    // window between its removal from pg_stat_activity and the flush.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reads = queue_reads(&observer, "q_qf_idle").await - before;
    println!(
        "an idle poll of {took:?} read the queue table {reads} times (one round: {per_round})"
    );
    // poll_tasks re-checks every poll_recheck_ms (500 ms): 7 rounds in 3 s, each a claim
    // attempt plus (all but the last) a look at the queue's next visibility time, so up to
    // twice a round's reads. The bound (16 rounds' worth) leaves room for stray latch wake-ups
    // while other tests run; a poller that spun would read it thousands of times.
    assert!(
        reads >= per_round,
        "the idle poll never looked at the queue"
    );
    assert!(
        reads <= 16 * per_round,
        "an idle poll of 3 s read the queue {reads} times, {per_round} per round"
    );
}

#[tokio::test]
async fn a_backoff_retry_reaches_a_waiting_poller_when_due() {
    let url = fresh_database("qf_e2e_waiting_backoff").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('backoff', base_delay => 1); \
         SELECT quantum_flow.add_step('backoff', 'a');",
    )
    .await;
    let run = start_flow(&main, "backoff", &json!({})).await;
    let first = poll(&main, "backoff", 10, 0).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);

    let waiting = start_waiting_poll(&main, connect(&url).await, "backoff", WAIT_MS).await;
    let failing = Instant::now();
    assert_eq!(fail(&main, &first[0], "boom").await.unwrap(), "queued");
    let (tasks, took) = waiting.await.unwrap();
    let after_fail = failing.elapsed();
    println!("retry arrived {after_fail:?} after fail_task");
    assert_eq!(
        tasks,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 2,
            input: json!({"run": {}}),
        }]
    );
    assert!(
        after_fail >= Duration::from_millis(900),
        "the retry arrived {after_fail:?} after fail_task, before its 1 s backoff"
    );
    assert!(
        took < Duration::from_millis(WAIT_MS as u64),
        "the waiting poll ran out ({took:?}) instead of returning the retry"
    );
}

/// Regression (issue 7, defect 1): the queue's earliest visibility time is in the past but its
/// messages are locked by another session's uncommitted claim. The waiting poll must sleep
/// (re-checking every poll_recheck_ms) instead of re-reading the queue in a busy loop.
#[tokio::test]
async fn a_waiting_poller_does_not_spin_on_messages_another_session_holds() {
    let url = fresh_database("qf_e2e_waiting_locked").await;
    {
        let setup = connect(&url).await;
        exec(
            &setup,
            "SELECT quantum_flow.create_flow('locked', timeout => 30); \
             SELECT quantum_flow.add_step('locked', 'm', step_type => 'map');",
        )
        .await;
        start_flow(&setup, "locked", &json!([1, 2, 3, 4, 5])).await;
    }
    let observer = connect(&url).await;
    // The holder claims all five tasks in a transaction it keeps open: their messages are
    // locked, and to everybody else they still look visible (vt in the past).
    let holder = connect(&url).await;
    exec(&holder, "BEGIN").await;
    assert_eq!(poll(&holder, "locked", 10, 0).await.unwrap().len(), 5);
    wait_for_other_sessions_to_end_but(&observer, 1).await;
    // What one round costs: a poll that does not wait, in a session of its own (a session's
    // statistics reach pg_stat_user_tables when it ends).
    let before_round = queue_reads(&observer, "q_qf_locked").await;
    {
        let once = connect(&url).await;
        assert_eq!(poll(&once, "locked", 10, 0).await.unwrap(), vec![]);
    }
    wait_for_other_sessions_to_end_but(&observer, 1).await;
    let before = queue_reads(&observer, "q_qf_locked").await;
    let per_round = before - before_round;
    assert!(per_round >= 1, "a poll never looked at the queue");

    let took = {
        let waiter = connect(&url).await;
        let started = Instant::now();
        let tasks = poll(&waiter, "locked", 10, 3000).await.unwrap();
        assert_eq!(tasks, vec![], "the held tasks are not claimable");
        started.elapsed()
    };
    assert!(
        took >= Duration::from_millis(3000),
        "returned after {took:?}"
    );
    wait_for_other_sessions_to_end_but(&observer, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reads = queue_reads(&observer, "q_qf_locked").await - before;
    println!(
        "a poll of {took:?} beside an uncommitted claim read the queue table {reads} times \
         (one round: {per_round})"
    );
    // One round every poll_recheck_ms (500 ms): 7 rounds in 3 s (the first at once, one per
    // re-check); the bound (16 rounds' worth) leaves room for stray latch wake-ups while other
    // tests run. Spinning read it ~45,000 times.
    assert!(
        reads >= per_round,
        "the waiting poll never looked at the queue"
    );
    assert!(
        reads <= 16 * per_round,
        "a poll of 3 s read the queue {reads} times, {per_round} per round"
    );
    exec(&holder, "ROLLBACK").await;
}

/// Regression: a waiting poll whose round read a message but claimed nothing (here its task is
/// locked, as a transaction completing or failing it holds it) keeps no lock on that message
/// and does not hide it while it sleeps. The same goes for the message locks PostgreSQL takes
/// when another poller's claim commits during a round (`FOR UPDATE SKIP LOCKED` locks the new
/// version before re-checking it): before, the sleeper held them, and that claimant's
/// `complete_task` waited up to `max_wait_ms` to delete its message.
#[tokio::test]
async fn a_waiting_poll_keeps_no_lock_on_a_message_it_did_not_claim() {
    let url = fresh_database("qf_e2e_waiting_unclaimed").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('held', timeout => 60); \
         SELECT quantum_flow.add_step('held', 'a');",
    )
    .await;
    let run = start_flow(&main, "held", &json!({"n": 1})).await;
    let locker = connect(&url).await;
    exec(&locker, "BEGIN").await;
    locker
        .execute(
            "SELECT 1 FROM quantum_flow.step_tasks WHERE run_id = $1 FOR UPDATE",
            &[&run],
        )
        .await
        .unwrap();
    let waiting = start_waiting_poll(&main, connect(&url).await, "held", WAIT_MS).await;

    // The poll is asleep after a round that read the message and could not claim its task.
    // Its re-check rounds (every poll_recheck_ms) lock the message for a moment: a few tries
    // tell those apart from a lock held through the sleep.
    let mut tries = 0;
    let held = loop {
        tries += 1;
        exec(&main, "BEGIN").await;
        let held = main
            .query_one(
                "SELECT count(*) FILTER (WHERE vt <= clock_timestamp()), count(*) \
                 FROM (SELECT vt FROM pgmq.q_qf_held FOR UPDATE NOWAIT) q",
                &[],
            )
            .await;
        exec(&main, "ROLLBACK").await;
        match held {
            Ok(row) => break row,
            Err(e) if tries < 5 => {
                println!("try {tries}: {}", describe(&e));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Err(e) => panic!("the sleeping poll holds the message: {}", describe(&e)),
        }
    };
    let (visible, total): (i64, i64) = (held.get(0), held.get(1));
    assert_eq!(
        (visible, total),
        (1, 1),
        "the message is hidden while the poll sleeps"
    );

    // Once the task is free, the same poll claims it at its next re-check.
    exec(&locker, "ROLLBACK").await;
    let (tasks, took) = waiting.await.unwrap();
    assert!(took < EARLY, "poll_tasks returned after {took:?}");
    assert_eq!(
        tasks,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 1,
            input: json!({"run": {"n": 1}}),
        }]
    );
}

/// Regression (issue 7, defect 1): a waiting poll whose round wrote something (here: it failed
/// a run whose task's last attempt timed out) returns at once, so that those writes commit,
/// instead of waiting out max_wait_ms with them uncommitted.
#[tokio::test]
async fn a_waiting_poll_that_failed_a_run_returns_at_once() {
    let url = fresh_database("qf_e2e_waiting_wrote").await;
    let main = connect(&url).await;
    exec(
        &main,
        "SELECT quantum_flow.create_flow('wrote', max_attempts => 1, timeout => 1); \
         SELECT quantum_flow.add_step('wrote', 'a');",
    )
    .await;
    let run = start_flow(&main, "wrote", &json!({})).await;
    assert_eq!(poll(&main, "wrote", 10, 0).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let waiter = connect(&url).await;
    let started = Instant::now();
    let tasks = poll(&waiter, "wrote", 10, 5000).await.unwrap();
    let took = started.elapsed();
    assert_eq!(tasks, vec![]);
    assert!(
        took < Duration::from_millis(2500),
        "the poll that failed the run waited {took:?} before committing"
    );
    let doc = get_run(&main, run).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(
        doc["error_message"],
        "step a, task 0, attempt 1: timed out: attempt 1 of 1 was not completed within the \
         step's 1s timeout"
    );
}

/// Waits until the database has exactly `others` backends besides `observer`.
async fn wait_for_other_sessions_to_end_but(observer: &Client, others: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == others {
            return;
        }
        assert!(Instant::now() < deadline, "other sessions did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
