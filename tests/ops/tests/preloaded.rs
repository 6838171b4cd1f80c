//! Phase 2 of scripts/test-ops.sh: the server preloads pg_cron and quantum_flow, so the
//! quantum_flow launcher runs and starts a maintenance worker in each database every
//! `quantum_flow.maintenance_interval` (1 s by default). Nobody polls while these tests wait:
//! what happens meanwhile is the worker's doing.
//!
//! The launcher finds a new database when it next re-reads pg_database (every 10 s), and one
//! it probed before the extension was created 10 s later, so each test first waits for the
//! worker to act once in its fresh database, then measures the next time.

use quantum_flow_e2e::{
    archive_len, base_url, complete, connect, exec, get_run, poll, queue_len, start_flow, Task,
};
use quantum_flow_ops::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use uuid::Uuid;

const PRELOADED: &str = "pg_cron,quantum_flow";
/// How long the launcher may take to find a fresh database (pg_database re-read every 10 s,
/// a database found without the extension probed again 10 s later) and act on it.
const FIND_DATABASE: Duration = Duration::from_secs(25);
/// After a claim's 1 s timeout, how long the worker may take to act: the 1 s interval, plus
/// starting a worker and its transaction on a busy machine.
const ACT_WITHIN: Duration = Duration::from_millis(4000);

/// A workflow of one step `a` with a 1 s timeout.
async fn one_step_flow(client: &Client, slug: &str, max_attempts: i32) {
    exec(
        client,
        &format!(
            "SELECT quantum_flow.create_flow('{slug}', max_attempts => {max_attempts}, base_delay => 0); \
             SELECT quantum_flow.add_step('{slug}', 'a', timeout => 1);"
        ),
    )
    .await;
}

/// Waits until the task (step `a`, task 0) of `run` has `status`; returns its row and the wait.
async fn wait_for_task(
    client: &Client,
    run: Uuid,
    status: &str,
    within: Duration,
) -> (TaskRow, Duration) {
    wait_until(
        within,
        Duration::from_millis(50),
        &format!("task a of {run} to be {status}"),
        || async {
            let row = task_row(client, run, "a", 0).await;
            (row.status == status).then_some(row)
        },
    )
    .await
}

fn requeued(attempts: i32) -> TaskRow {
    TaskRow {
        status: "queued".into(),
        attempts,
        error_message: Some(format!("attempt {attempts} timed out after 1s")),
        worker_id: None,
    }
}

#[tokio::test]
async fn api_errors_carry_no_rust_backtrace() {
    let admin = connect(&base_url()).await;
    assert_preloaded(&admin, PRELOADED).await;
    check_errors_carry_no_rust_backtrace("qf_ops_errors_preloaded").await;
}

#[tokio::test]
async fn the_launcher_is_running() {
    let _up = SERVER.read().await;
    let admin = connect(&base_url()).await;
    assert_preloaded(&admin, PRELOADED).await;
    let launchers = admin
        .query(
            "SELECT datname FROM pg_stat_activity WHERE backend_type = 'quantum_flow launcher'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(launchers.len(), 1, "one launcher");
    assert_eq!(
        launchers[0].get::<_, Option<String>>(0),
        None,
        "the launcher is connected to no database"
    );
    assert_eq!(
        setting(&admin, "quantum_flow.maintenance_interval").await,
        "1s"
    );
}

#[tokio::test]
async fn the_worker_requeues_a_timed_out_claim_nobody_polls() {
    let _up = SERVER.read().await;
    let url = fresh_database_alone("qf_ops_bg_requeue").await;
    let c = connect(&url).await;
    one_step_flow(&c, "bg", 3).await;
    let run = start_flow(&c, "bg", &json!({"n": 1})).await;
    let first = poll(&c, "bg", 10, 0).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);

    // The worker finds the database and puts the timed-out claim back in the queue.
    let (row, found_after) = wait_for_task(&c, run, "queued", FIND_DATABASE).await;
    assert_eq!(row, requeued(1));
    assert_eq!(
        queue_len(&c, "bg").await,
        1,
        "the task's message waits in the queue"
    );

    // The next poll gets it as attempt 2; nobody answers that either.
    let second = poll(&c, "bg", 10, 0).await.unwrap();
    let claimed = Instant::now();
    assert_eq!(
        second,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 2,
            input: json!({"run": {"n": 1}}),
        }]
    );
    let (row, _) = wait_for_task(&c, run, "queued", Duration::from_secs(1) + ACT_WITHIN).await;
    let back_after = claimed.elapsed();
    assert_eq!(row, requeued(2));
    assert!(
        back_after >= Duration::from_millis(900),
        "attempt 2 put back {back_after:?} after its claim, before its 1 s timeout"
    );

    let third = poll(&c, "bg", 10, 0).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempt, 3);
    assert!(complete(&c, &third[0], &json!("third time")).await.unwrap());
    let doc = get_run(&c, run).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["output"], json!({"a": "third time"}));
    assert_eq!(queue_len(&c, "bg").await, 0);
    println!(
        "requeue: the worker found the database {:.1} s after the first claim; it put attempt 2 \
         back {:.2} s after its claim (1 s timeout)",
        found_after.as_secs_f64(),
        back_after.as_secs_f64()
    );
}

/// The run of a task whose only attempt timed out: failed with the exact message, its message
/// archived.
async fn check_timed_out_run(c: &Client, run: Uuid) {
    let reason = "timed out: attempt 1 of 1 was not completed within the step's 1s timeout";
    let message = format!("step a, task 0, attempt 1: {reason}");
    let doc = get_run(c, run).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error_message"], message.as_str());
    assert_eq!(doc["output"], Value::Null);
    assert_eq!(doc["steps"][0]["status"], "failed");
    assert_eq!(doc["steps"][0]["error_message"], message.as_str());
    assert_eq!(doc["steps"][0]["tasks_completed"], json!(0));
    assert_eq!(
        task_row(c, run, "a", 0).await,
        TaskRow {
            status: "failed".into(),
            attempts: 1,
            error_message: Some(reason.into()),
            worker_id: None,
        }
    );
}

#[tokio::test]
async fn the_worker_fails_a_run_whose_attempts_ran_out() {
    let _up = SERVER.read().await;
    let url = fresh_database_alone("qf_ops_bg_exhaust").await;
    let c = connect(&url).await;
    one_step_flow(&c, "last", 1).await;

    let mut waits = Vec::new();
    for (n, within) in [(1, FIND_DATABASE), (2, Duration::from_secs(1) + ACT_WITHIN)] {
        let run = start_flow(&c, "last", &json!({"n": n})).await;
        let claimed = poll(&c, "last", 10, 0).await.unwrap();
        let at = Instant::now();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempt, 1);
        let (_, waited) = wait_until(
            within,
            Duration::from_millis(50),
            "the run to fail",
            || async { (get_run(&c, run).await["status"] == "failed").then_some(()) },
        )
        .await;
        check_timed_out_run(&c, run).await;
        assert_eq!(queue_len(&c, "last").await, 0, "run {n}: queue empty");
        assert_eq!(
            archive_len(&c, "last").await,
            n,
            "run {n}: its message archived"
        );
        assert!(
            at.elapsed() >= Duration::from_millis(900),
            "run {n} failed {:?} after the claim, before the 1 s timeout",
            at.elapsed()
        );
        waits.push(waited.as_secs_f64());
    }
    println!(
        "exhausted: the first run failed {:.1} s after its claim (finding the database), the \
         second {:.2} s after its claim (1 s timeout)",
        waits[0], waits[1]
    );
}

/// The server log's lines from process `pid` (by the default `log_line_prefix`, `%m [%p] `).
async fn log_lines_of(pid: &str) -> Vec<String> {
    let path = state_dir().await.join("postgres.log");
    let log = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let tag = format!("[{pid}] ");
    log.lines()
        .filter(|line| line.contains(&tag))
        .map(str::to_string)
        .collect()
}

/// The pids of the server log's lines that contain `text`.
async fn pids_logging(text: &str) -> Vec<String> {
    let path = state_dir().await.join("postgres.log");
    let log = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    log.lines()
        .filter(|line| line.contains(text))
        .filter_map(|line| {
            let (_, rest) = line.split_once(" [")?;
            Some(rest.split_once(']')?.0.to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_workflow_whose_maintenance_fails_does_not_stop_the_others() {
    let _up = SERVER.read().await;
    let url = fresh_database_alone("qf_ops_bg_isolated").await;
    let c = connect(&url).await;
    one_step_flow(&c, "refused", 3).await;
    one_step_flow(&c, "spared", 3).await;

    // Putting refused's timed-out claim back in the queue updates its task row, which a
    // trigger refuses: that workflow's part of every round fails.
    let stuck = start_flow(&c, "refused", &json!({})).await;
    assert_eq!(poll(&c, "refused", 10, 0).await.unwrap().len(), 1);
    exec(
        &c,
        &format!(
            "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$BEGIN RAISE EXCEPTION 'refused by the test''s trigger'; END$$; \
             CREATE TRIGGER refuse BEFORE UPDATE ON quantum_flow.step_tasks FOR EACH ROW \
             WHEN (OLD.run_id = '{stuck}') EXECUTE FUNCTION public.refuse();"
        ),
    )
    .await;
    let warning = "WARNING:  quantum_flow maintenance of workflow \"refused\" failed: refused by \
                   the test's trigger; rolled back, the other workflows are maintained";
    let (_, found_after) = wait_until(
        FIND_DATABASE,
        Duration::from_millis(100),
        "the worker's WARNING that workflow refused failed",
        || async { (!pids_logging(warning).await.is_empty()).then_some(()) },
    )
    .await;

    // Every later round fails on refused again, and still puts spared's timed-out claim back.
    let run = start_flow(&c, "spared", &json!({})).await;
    assert_eq!(poll(&c, "spared", 10, 0).await.unwrap().len(), 1);
    let (row, _) = wait_for_task(&c, run, "queued", Duration::from_secs(1) + ACT_WITHIN).await;
    assert_eq!(row, requeued(1));
    let stuck_row = TaskRow {
        status: "started".into(),
        attempts: 1,
        error_message: None,
        worker_id: None,
    };
    assert_eq!(
        task_row(&c, stuck, "a", 0).await,
        stuck_row,
        "refused's failed parts were rolled back"
    );

    // The worker that put spared's claim back logged the WARNING for refused in that round.
    let mut round = None;
    for pid in pids_logging(warning).await {
        for line in log_lines_of(&pid).await {
            let Some((_, report)) = line.split_once("LOG:  quantum_flow maintenance: ") else {
                continue;
            };
            let report: Value = serde_json::from_str(report).expect("the round's report");
            if report["timeouts_retried"] == 1 {
                round = Some(report);
            }
        }
    }
    assert_eq!(
        round,
        Some(json!({
            "workflows": 1,
            "timeouts_retried": 1,
            "timeouts_failed": 0,
            "runs_failed": 0,
            "stale_archived": 0,
            "timers_fired": 0,
            "orphans_cancelled": 0,
            "tasks_fanned_out": 0,
        })),
        "a round that failed on refused and put spared's claim back"
    );

    // Without the trigger, refused's claim is put back too.
    exec(&c, "DROP TRIGGER refuse ON quantum_flow.step_tasks").await;
    let (row, _) = wait_for_task(&c, stuck, "queued", ACT_WITHIN).await;
    assert_eq!(row, requeued(1));
    println!(
        "isolated: the worker logged refused's failure {:.1} s after its claim",
        found_after.as_secs_f64()
    );
}

#[tokio::test]
async fn drop_database_without_force_while_the_worker_is_active() {
    const DB: &str = "qf_ops_bg_drop";
    let _up = SERVER.read().await;
    let admin = connect(&base_url()).await;
    let url = fresh_database_alone(DB).await;
    let c = connect(&url).await;
    one_step_flow(&c, "dropme", 3).await;
    let run = start_flow(&c, "dropme", &json!({})).await;
    assert_eq!(poll(&c, "dropme", 10, 0).await.unwrap().len(), 1);
    // The worker works in this database: it put the claim back.
    let (row, _) = wait_for_task(&c, run, "queued", FIND_DATABASE).await;
    assert_eq!(row, requeued(1));
    drop(c);
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "our own sessions in the database to end",
        || async {
            let ours: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND backend_type = 'client backend'",
                    &[&DB],
                )
                .await
                .unwrap()
                .get(0);
            (ours == 0).then_some(())
        },
    )
    .await;

    // Catch a maintenance worker connected to the database, and drop it right then.
    let (_, caught_after) = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(1),
        "a maintenance worker connected to the database",
        || async {
            let connected: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND backend_type = 'quantum_flow maintenance'",
                    &[&DB],
                )
                .await
                .unwrap()
                .get(0);
            (connected > 0).then_some(())
        },
    )
    .await;
    let dropping = Instant::now();
    admin
        .batch_execute(&format!("DROP DATABASE {DB}"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "DROP DATABASE {DB} (without FORCE): {}",
                quantum_flow_e2e::describe(&e)
            )
        });
    let took = dropping.elapsed();
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&DB],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(
        backends_of_type(&admin, "quantum_flow launcher").await,
        1,
        "the launcher carries on"
    );
    println!(
        "drop: caught a maintenance worker in the database after {:.2} s of looking; DROP \
         DATABASE took {:.3} s",
        caught_after.as_secs_f64(),
        took.as_secs_f64()
    );
}

#[tokio::test]
async fn maintenance_interval_zero_stops_the_worker() {
    let up = SERVER.read().await;
    let url = fresh_database_alone("qf_ops_bg_off").await;
    let c = connect(&url).await;
    one_step_flow(&c, "off", 5).await;
    let run = start_flow(&c, "off", &json!({})).await;
    assert_eq!(poll(&c, "off", 10, 0).await.unwrap().len(), 1);
    let (row, _) = wait_for_task(&c, run, "queued", FIND_DATABASE).await;
    assert_eq!(row, requeued(1));
    drop(up);

    // The other tests need the worker: turn it off only once they are done. (One of them
    // restarts the server, which may have closed `c` while this test did not hold the lock.)
    let _alone = SERVER.write().await;
    let c = connect(&url).await;
    let admin = connect(&base_url()).await;
    // Separate statements: ALTER SYSTEM refuses to run in a multi-statement query.
    exec(
        &admin,
        "ALTER SYSTEM SET quantum_flow.maintenance_interval = 0",
    )
    .await;
    exec(&admin, "SELECT pg_reload_conf()").await;
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "the reload",
        || async {
            let fresh = connect(&base_url()).await;
            (setting(&fresh, "quantum_flow.maintenance_interval").await == "0").then_some(())
        },
    )
    .await;
    // A round the launcher began before it read the new value may still start a worker.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let second = poll(&c, "off", 10, 0).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    // 4 s after the claim (3 s past its 1 s timeout), nothing has put it back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let row = task_row(&c, run, "a", 0).await;
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("started", 2),
        "with maintenance_interval = 0 the timed-out claim stays: {row:?}"
    );

    // Back on: the worker puts it back.
    // Separate statements: ALTER SYSTEM refuses to run in a multi-statement query.
    exec(
        &admin,
        "ALTER SYSTEM RESET quantum_flow.maintenance_interval",
    )
    .await;
    exec(&admin, "SELECT pg_reload_conf()").await;
    let on = Instant::now();
    let (row, _) = wait_for_task(&c, run, "queued", ACT_WITHIN).await;
    let back_after = on.elapsed();
    assert_eq!(row, requeued(2));
    assert_eq!(
        setting(
            &connect(&base_url()).await,
            "quantum_flow.maintenance_interval"
        )
        .await,
        "1s"
    );
    let third = poll(&c, "off", 10, 0).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempt, 3);
    assert!(complete(&c, &third[0], &json!(3)).await.unwrap());
    assert_eq!(get_run(&c, run).await["status"], "completed");
    println!(
        "interval 0: the claim stayed 3 s past its 1 s timeout; turned back on, the worker put it \
         back {:.2} s after the reload",
        back_after.as_secs_f64()
    );
}

/// Durable sleep and timers survive a restart (contract group D): a step's start_delay, a run
/// scheduled with start_at and a run's deadline are visibility times of queue messages, which
/// are in tables. The server is stopped and started while they wait; after it, neither task
/// is claimable before its time, both are claimed by a waiting poll once due, and the run
/// whose run_timeout passed meanwhile fails at the next poll.
#[tokio::test]
async fn delayed_work_and_timers_survive_a_restart() {
    const DELAY: Duration = Duration::from_secs(8);
    // The whole setup and restart hold the server exclusively: no other test's step is
    // interrupted, and the restart follows the start_flow calls at once.
    let down = SERVER.write().await;
    let url = fresh_database_alone("qf_ops_sleep").await;
    let c = connect(&url).await;
    exec(
        &c,
        "SELECT quantum_flow.create_flow('sleepy'); \
         SELECT quantum_flow.add_step('sleepy', 'a', start_delay => 8); \
         SELECT quantum_flow.create_flow('sched'); \
         SELECT quantum_flow.add_step('sched', 's'); \
         SELECT quantum_flow.create_flow('deadline', run_timeout => 8); \
         SELECT quantum_flow.add_step('deadline', 'a');",
    )
    .await;
    // The server sets each due time from its clock during the call: no earlier than what the
    // test's clock reads just before the call, plus the delay.
    let sleepy_due = Instant::now() + DELAY;
    let delayed = start_flow(&c, "sleepy", &json!({})).await;
    let sched_due = Instant::now() + DELAY;
    let scheduled: Uuid = c
        .query_one(
            "SELECT quantum_flow.start_flow('sched', '{}', start_at => clock_timestamp() + interval '8 seconds')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let timed = start_flow(&c, "deadline", &json!({})).await;
    // the database's clock set the due times; the test's clock only reads later
    let due = Instant::now() + DELAY;
    assert_eq!(poll(&c, "sleepy", 10, 0).await.unwrap(), vec![]);
    assert_eq!(poll(&c, "sched", 10, 0).await.unwrap(), vec![]);
    drop(c);
    let stopped = Instant::now();
    cluster("stop").await;
    cluster("start").await;
    let c = connect_retrying(&url, Instant::now() + Duration::from_secs(30)).await;
    let restart = stopped.elapsed();
    assert!(
        Instant::now() + Duration::from_millis(500) < due,
        "the restart took {restart:?}, too long for this test to see the tasks still waiting"
    );
    assert_eq!(
        poll(&c, "sleepy", 10, 0).await.unwrap(),
        vec![],
        "claimable before its start_delay"
    );
    assert_eq!(
        poll(&c, "sched", 10, 0).await.unwrap(),
        vec![],
        "claimable before its start_at"
    );
    for (flow, run, flow_due) in [
        ("sleepy", delayed, sleepy_due),
        ("sched", scheduled, sched_due),
    ] {
        let tasks = poll(&c, flow, 10, 20_000).await.unwrap();
        assert_eq!(tasks.len(), 1, "{flow}: the waiting poll returned nothing");
        assert_eq!(tasks[0].run_id, run);
        assert!(
            Instant::now() >= flow_due,
            "{flow}: claimed before it was due"
        );
    }
    // The run's deadline passed meanwhile: the first poll of its workflow (or maintain())
    // reads the timer and fails the run. (The maintenance worker may be off by now: another
    // test of this phase turns it off.)
    assert_eq!(poll(&c, "deadline", 10, 0).await.unwrap(), vec![]);
    let doc = get_run(&c, timed).await;
    drop(down);
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(
        doc["error_message"],
        "run_timeout: the run did not finish within its 8s run_timeout"
    );
    assert_eq!(
        queue_len(&c, "deadline").await,
        0,
        "the run's task was discarded"
    );
}
