//! Phase 1 of scripts/test-ops.sh: the server preloads pg_cron only, so quantum_flow is loaded
//! by each backend that uses it and no maintenance worker exists. The tests run at once: while
//! pg_cron's job waits for the next minute boundary, the crash test runs.

use quantum_flow_e2e::{
    base_url, connect, describe, exec, get_run, poll, queue_len, start_flow, Task,
};
use quantum_flow_ops::chaos::{self, Kind, RunSpec, Shared, Stats};
use quantum_flow_ops::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use uuid::Uuid;

const PRELOADED: &str = "pg_cron";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_carry_no_rust_backtrace() {
    let admin = connect(&base_url()).await;
    assert_preloaded(&admin, PRELOADED).await;
    check_errors_carry_no_rust_backtrace("qf_ops_errors").await;
}

/// pg_cron runs `SELECT quantum_flow.maintain()` every minute in a database where nobody
/// polls: the job puts a claim that outlived its 1 s timeout back in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_cron_schedules_maintain_for_a_workflow_nobody_polls() {
    const DB: &str = "qf_ops_cron";
    const JOB: &str = "qf_ops_maintain";
    // From now until the job has run, the crash test keeps its crashes off minute boundaries.
    CRON_JOB_PENDING.store(true, Ordering::SeqCst);
    let up = SERVER.read().await;
    let admin = connect(&base_url()).await;
    assert_preloaded(&admin, PRELOADED).await;
    assert_eq!(
        backends_of_type(&admin, "quantum_flow launcher").await,
        0,
        "no quantum_flow background worker may run in this test"
    );
    assert_eq!(setting(&admin, "cron.database_name").await, "postgres");
    assert_eq!(setting(&admin, "cron.use_background_workers").await, "on");
    exec(
        &admin,
        "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_cron",
    )
    .await;
    let url = fresh_database_alone(DB).await;
    let client = connect(&url).await;
    exec(
        &client,
        "SELECT quantum_flow.create_flow('cron', max_attempts => 3); \
         SELECT quantum_flow.add_step('cron', 'a', timeout => 1);",
    )
    .await;
    let run = start_flow(&client, "cron", &json!({"via": "pg_cron"})).await;

    // A claim made in the last seconds of a minute would not have timed out when the job
    // first runs: then claim just after the boundary instead.
    let into_minute = seconds_into_minute();
    if into_minute > 57.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.5 - into_minute)).await;
    }
    let claimed = poll(&client, "cron", 10, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    let claimed_at: f64 = client
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .await
        .unwrap()
        .get(0);
    let job: i64 = admin
        .query_one(
            "SELECT cron.schedule_in_database($1, '* * * * *', \
                                               'SELECT quantum_flow.maintain()', $2)",
            &[&JOB, &DB],
        )
        .await
        .unwrap_or_else(|e| panic!("cron.schedule_in_database: {}", describe(&e)))
        .get(0);
    let scheduled_at = seconds_into_minute();
    drop((client, admin, up));

    // Nobody polls: only the job can put the claim back in the queue.
    let url_ = url.clone();
    let (requeued, waited) = wait_until(
        Duration::from_secs(130),
        Duration::from_millis(250),
        "pg_cron's job to put the timed-out claim back in the queue",
        move || {
            let url = url_.clone();
            async move {
                let _up = SERVER.read().await;
                let c = try_connect(&url).await.ok()?;
                let row = task_row(&c, run, "a", 0).await;
                (row.status == "queued").then_some(row)
            }
        },
    )
    .await;
    CRON_JOB_PENDING.store(false, Ordering::SeqCst);
    assert_eq!(
        requeued,
        TaskRow {
            status: "queued".into(),
            attempts: 1,
            error_message: Some("attempt 1 timed out after 1s".into()),
            worker_id: None,
        }
    );

    let _up = SERVER.read().await;
    let admin = connect(&base_url()).await;
    // The job's runs so far: the first one after the claim's timeout did it, and succeeded.
    let runs = admin
        .query(
            "SELECT status, return_message, extract(epoch FROM start_time)::float8, database, command \
             FROM cron.job_run_details WHERE jobid = $1 ORDER BY start_time",
            &[&job],
        )
        .await
        .unwrap();
    let details: Vec<(String, String, f64, String, String)> = runs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let worked = details
        .iter()
        .find(|(_, _, start, _, _)| *start >= claimed_at + 1.0)
        .unwrap_or_else(|| panic!("no run of job {job} after the claim timed out: {details:?}"));
    assert_eq!(
        (
            worked.0.as_str(),
            worked.1.as_str(),
            worked.3.as_str(),
            worked.4.as_str()
        ),
        (
            "succeeded",
            "SELECT 1",
            DB,
            "SELECT quantum_flow.maintain()"
        ),
        "{details:?}"
    );
    let unscheduled: bool = admin
        .query_one("SELECT cron.unschedule($1::bigint)", &[&job])
        .await
        .unwrap()
        .get(0);
    assert!(unscheduled);

    // The next poll gets the task as attempt 2, and the run completes.
    let client = connect(&url).await;
    let next = poll(&client, "cron", 10, 0).await.unwrap();
    assert_eq!(
        next,
        vec![Task {
            run_id: run,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 2,
            input: json!({"run": {"via": "pg_cron"}}),
        }]
    );
    assert!(
        quantum_flow_e2e::complete(&client, &next[0], &json!("done"))
            .await
            .unwrap()
    );
    let doc = get_run(&client, run).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["output"], json!({"a": "done"}));
    assert_eq!(queue_len(&client, "cron").await, 0);
    drop(client);
    assert_eq!(
        backends_of_type(&admin, "quantum_flow launcher").await,
        0,
        "no quantum_flow background worker ran"
    );
    exec(&admin, &format!("DROP DATABASE {DB} WITH (FORCE)")).await;
    println!(
        "pg_cron: job scheduled {scheduled_at:.1} s into a minute; the claim was back in the \
         queue {:.1} s later ({} job runs)",
        waited.as_secs_f64(),
        details.len()
    );
}

const CRASHES: usize = 3;
/// The bound on the whole workload, crashes and restarts included.
const BOUND: Duration = Duration::from_secs(90);
/// The workload is released in CRASHES + 1 parts; each crash comes this long after its part
/// was released (the starter takes about 0.6 s to start a part, the workers about a second
/// to work through it), as soon as answers are in flight; the last part runs to the end.
const CRASH_AFTER_RELEASE: Duration = Duration::from_millis(700);
/// How long a crash waits at most for a moment when answers are in flight.
const CRASH_WAITS_FOR_ANSWERS: Duration = Duration::from_millis(1500);
/// Release to restart, at most: with a pg_cron job pending, a part is released only when this
/// ends away from a minute boundary.
const RELEASE_TO_RESTART: Duration = Duration::from_secs(8);
const WORKERS: usize = 4;
const START_PACE: Duration = Duration::from_millis(15);
/// What the startup process logs when it replays WAL after a crash.
const RECOVERY_LINE: &str =
    "database system was not properly shut down; automatic recovery in progress";
/// What a backend logs when it outlives the postmaster (then it was not killed with it).
const OUTLIVED_LINE: &str = "due to unexpected postmaster exit";

/// Runs in the database, and how far they got: (runs, runs ended, tasks completed).
async fn progress(client: &Client) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'started'), \
                    (SELECT count(*) FROM quantum_flow.step_tasks WHERE status = 'completed') \
             FROM quantum_flow.runs",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("progress: {}", describe(&e)));
    (row.get(0), row.get(1), row.get(2))
}

async fn postmaster_start_time(client: &Client) -> f64 {
    client
        .query_one(
            "SELECT extract(epoch FROM pg_postmaster_start_time())::float8",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn lines_in_log(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Unfinished runs and their unfinished tasks, for the failure message of a stuck workload.
async fn stuck(client: &Client) -> String {
    let rows = client
        .query(
            "SELECT r.workflow_slug, r.run_id::text, t.step_slug, t.task_index, t.status, \
                    t.attempts_count, coalesce(t.worker_id, '-'), coalesce(t.error_message, '-') \
             FROM quantum_flow.runs r JOIN quantum_flow.step_tasks t USING (run_id) \
             WHERE r.status = 'started' AND t.status <> 'completed' \
             ORDER BY 1, 2, 3, 4 LIMIT 20",
            &[],
        )
        .await
        .map_err(|e| describe(&e));
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}[{}] {} attempts={} worker={} error={}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, i32>(3),
                    r.get::<_, String>(4),
                    r.get::<_, i32>(5),
                    r.get::<_, String>(6),
                    r.get::<_, String>(7)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => e,
    }
}

fn stats_line(stats: &Stats) -> String {
    let n = |a: &AtomicUsize| a.load(Ordering::SeqCst);
    format!(
        "runs started {}, claims {}, completions {}, failed attempts {}, answers that changed \
         nothing {}, reconnects {}, answers sent after a reconnect {}, doom claims recovered {}, \
         start_flow retried {} (found committed {})",
        n(&stats.runs_started),
        n(&stats.claims),
        n(&stats.completed),
        n(&stats.failed_attempts),
        n(&stats.unchanged_answers),
        n(&stats.reconnects),
        n(&stats.resent_answers),
        n(&stats.recovered_claims),
        n(&stats.starts_retried),
        n(&stats.starts_found_committed),
    )
}

/// Crash safety: workers complete a mixed workload on their own connections while the
/// postmaster and all its children are SIGKILLed three times and restarted (crash recovery
/// replays WAL). Every run ends with its exact status and output, no task is counted twice,
/// and every queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_safety_postmaster_sigkilled_three_times_under_a_mixed_workload() {
    let setup = SERVER.read().await;
    let admin = connect(&base_url()).await;
    assert_preloaded(&admin, PRELOADED).await;
    assert_own_cluster(&admin).await;
    drop(admin);
    let url = fresh_database_alone(chaos::DATABASE).await;
    exec(&connect(&url).await, &chaos::definitions()).await;
    drop(setup);

    let runs = chaos::workload();
    let total_runs = runs.len() as i64;
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        url: url.clone(),
        runs: runs.iter().map(|r| (r.run_id, r.clone())).collect(),
        stop: AtomicBool::new(false),
        released: AtomicUsize::new(0),
        deadline: t0 + BOUND,
        stats: Stats::default(),
    });
    let mut workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(chaos::worker(shared.clone(), w)))
        .collect();
    let mut starter = Some(tokio::spawn(chaos::starter(
        shared.clone(),
        runs.clone(),
        START_PACE,
    )));

    let log = state_dir().await.join("postgres.log");
    let part = runs.len().div_ceil(CRASHES + 1);
    for n in 1..=CRASHES + 1 {
        if CRON_JOB_PENDING.load(Ordering::SeqCst) {
            // pg_cron's job runs at the next minute boundary: keep the server up then.
            let s = seconds_into_minute();
            let latest = 57.0 - RELEASE_TO_RESTART.as_secs_f64();
            if !(3.0..=latest).contains(&s) {
                tokio::time::sleep(Duration::from_secs_f64((63.0 - s) % 60.0)).await;
            }
        }
        let released = (n * part).min(runs.len());
        shared.released.store(released, Ordering::SeqCst);
        if n > CRASHES {
            break;
        }
        tokio::time::sleep(CRASH_AFTER_RELEASE).await;
        let down = SERVER.write().await;
        let probe = connect(&url).await;
        let before = progress(&probe).await;
        let started = postmaster_start_time(&probe).await;
        drop(probe);
        assert!(
            before.0 > before.1,
            "crash {n}: no run in progress to crash into ({before:?})"
        );
        let recoveries = lines_in_log(&log, RECOVERY_LINE);
        let outlived = lines_in_log(&log, OUTLIVED_LINE);
        let looking = Instant::now();
        while shared.stats.answering.load(Ordering::SeqCst) < 2
            && looking.elapsed() < CRASH_WAITS_FOR_ANSWERS
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let crash_at = t0.elapsed();
        let killed_report = cluster("crash").await;
        let killed = Instant::now();
        cluster("start").await;
        let back_after = killed.elapsed();
        let probe = connect(&url).await;
        assert!(
            postmaster_start_time(&probe).await > started,
            "crash {n}: a new postmaster"
        );
        assert_eq!(
            lines_in_log(&log, RECOVERY_LINE),
            recoveries + 1,
            "crash {n}: the server ran crash recovery"
        );
        assert_eq!(
            lines_in_log(&log, OUTLIVED_LINE),
            outlived,
            "crash {n}: a server process outlived the postmaster ({})",
            killed_report.trim()
        );
        let after = progress(&probe).await;
        assert!(
            after.0 >= before.0 && after.1 >= before.1 && after.2 >= before.2,
            "crash {n}: work committed before the crash was lost: {before:?} -> {after:?}"
        );
        drop(probe);
        let processes = killed_report
            .split_once(" and its ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or("?");
        println!(
            "crash {n} at {:.1} s: runs {}/{total_runs} started ({released} released), {} \
             ended, {} tasks completed; SIGKILL to the postmaster and {processes} children; \
             server back {:.1} s after the SIGKILL",
            crash_at.as_secs_f64(),
            before.0,
            before.1,
            before.2,
            back_after.as_secs_f64()
        );
        drop(down);
    }

    // Let the workers finish the workload.
    let observer_deadline = t0 + BOUND;
    let mut observer: Option<Client> = None;
    loop {
        if starter.as_ref().is_some_and(|h| h.is_finished()) {
            if let Err(e) = starter.take().expect("the starter").await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        if let Some(i) = workers.iter().position(|h| h.is_finished()) {
            if let Err(e) = workers.remove(i).await {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("a worker stopped before the workload was done");
        }
        if observer.is_none() {
            observer = try_connect(&url).await.ok();
        }
        if let Some(c) = &observer {
            let (total, ended, _) = progress(c).await;
            if starter.is_none() && total == total_runs && ended == total {
                break;
            }
            if Instant::now() >= observer_deadline {
                panic!(
                    "the workload did not finish within {BOUND:?}: {ended}/{total} runs ended \
                     ({}); stuck tasks:\n{}",
                    stats_line(&shared.stats),
                    stuck(c).await
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = t0.elapsed();
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        match tokio::time::timeout(Duration::from_secs(10), w).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => panic!("a worker did not stop within 10 s"),
        }
    }
    println!(
        "workload: {total_runs} runs ended {:.1} s after the start; {}",
        finished.as_secs_f64(),
        stats_line(&shared.stats)
    );
    assert_eq!(shared.stats.runs_started.load(Ordering::SeqCst), runs.len());

    let c = connect(&url).await;
    check_runs(&c, &runs).await;
    check_counters(&c).await;
    let extra = check_attempts(&c, &shared.runs).await;
    for slug in chaos::WORKFLOWS {
        assert_eq!(
            queue_len(&c, slug).await,
            0,
            "queue of {slug} after the workload"
        );
    }
    println!("claims retried after their timeout (answers lost in a crash, or slow): {extra}");
}

/// Every run ended with its expected status, output, error and step states.
async fn check_runs(c: &Client, runs: &[RunSpec]) {
    for run in runs {
        let doc = get_run(c, run.run_id).await;
        let steps = doc["steps"].as_array().expect("steps");
        let expected = run.expected_steps();
        assert_eq!(steps.len(), expected.len(), "{doc}");
        match run.expected_output() {
            Some(output) => {
                assert_eq!(doc["status"], "completed", "{doc}");
                assert_eq!(doc["output"], output, "run {:?} {}", run.kind, run.k);
                assert_eq!(doc["error_message"], Value::Null);
                for (step, (slug, tasks, output)) in steps.iter().zip(&expected) {
                    assert_eq!(step["step_slug"], *slug);
                    assert_eq!(step["status"], "completed", "{doc}");
                    assert_eq!(step["tasks_total"], json!(tasks), "{slug} of {doc}");
                    assert_eq!(step["tasks_completed"], json!(tasks), "{slug} of {doc}");
                    assert_eq!(
                        step["output"], *output,
                        "{slug} of run {:?} {}",
                        run.kind, run.k
                    );
                }
            }
            None => {
                assert_eq!(run.kind, Kind::Doom);
                let error = run.expected_error().expect("an error");
                assert_eq!(doc["status"], "failed", "{doc}");
                assert_eq!(doc["error_message"], error.as_str(), "{doc}");
                assert_eq!(doc["output"], Value::Null);
                let (prep, m, fin) = (&steps[0], &steps[1], &steps[2]);
                assert_eq!(prep["status"], "completed");
                assert_eq!(prep["tasks_completed"], json!(1));
                assert_eq!(prep["output"], expected[0].2);
                assert_eq!(m["step_slug"], "m");
                assert_eq!(m["status"], "failed", "{doc}");
                assert_eq!(m["error_message"], error.as_str());
                assert_eq!(m["tasks_total"], json!(run.n));
                assert_eq!(
                    (&fin["status"], &fin["tasks_completed"]),
                    (&json!("cancelled"), &json!(0))
                );
            }
        }
    }
}

/// No task counted twice: for every completed step, its completed-task counter equals its task
/// count and the number of its completed tasks; every map counter shard counts exactly the
/// completed tasks of its shard (task i counts on shard (i / 4) % 64), in finished and failed
/// runs.
async fn check_counters(c: &Client) {
    let steps = c
        .query(
            "SELECT s.run_id::text, s.step_slug, s.tasks_total, s.tasks_completed, \
                    (SELECT count(*)::int FROM quantum_flow.step_tasks t \
                     WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug \
                       AND t.status = 'completed') \
             FROM quantum_flow.step_states s WHERE s.status = 'completed'",
            &[],
        )
        .await
        .unwrap();
    assert!(!steps.is_empty());
    for r in &steps {
        let (total, counted, rows): (i32, i32, i32) = (r.get(2), r.get(3), r.get(4));
        assert!(
            total == counted && counted == rows,
            "step {} of run {}: tasks_total {total}, tasks_completed {counted}, completed rows {rows}",
            r.get::<_, String>(1),
            r.get::<_, String>(0)
        );
    }
    let shards = c
        .query(
            "SELECT sh.run_id::text, sh.step_slug, sh.shard, sh.tasks_completed, \
                    (SELECT count(*)::int FROM quantum_flow.step_tasks t \
                     WHERE t.run_id = sh.run_id AND t.step_slug = sh.step_slug \
                       AND t.status = 'completed' AND (t.task_index / 4) % 64 = sh.shard) \
             FROM quantum_flow.step_task_shards sh",
            &[],
        )
        .await
        .unwrap();
    assert!(!shards.is_empty());
    for r in &shards {
        let (counted, rows): (i32, i32) = (r.get(3), r.get(4));
        assert_eq!(
            counted,
            rows,
            "shard {} of step {} of run {}",
            r.get::<_, i32>(2),
            r.get::<_, String>(1),
            r.get::<_, String>(0)
        );
    }
}

/// Every task of a completed run took at least its scheduled failures plus one attempt, and
/// `chaos_doom`'s doomed task exactly its attempts, each failed by the worker (none lost to a
/// timeout). Returns how many attempts beyond the schedule the completed tasks took.
async fn check_attempts(c: &Client, runs: &HashMap<Uuid, RunSpec>) -> i64 {
    let rows = c
        .query(
            "SELECT run_id, step_slug, task_index, status, attempts_count, error_message \
             FROM quantum_flow.step_tasks",
            &[],
        )
        .await
        .unwrap();
    let mut extra = 0;
    for r in &rows {
        let (run_id, step, index, status, attempts, error): (
            Uuid,
            String,
            i32,
            String,
            i32,
            Option<String>,
        ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let run = &runs[&run_id];
        if run.doomed_task() == Some(index) && step == "m" {
            assert_eq!(
                (status.as_str(), attempts, error.as_deref()),
                (
                    "failed",
                    chaos::DOOM_ATTEMPTS,
                    Some(format!("doomed: run {}, attempt 3", run.k).as_str())
                ),
                "the doomed task of run {}",
                run.k
            );
            continue;
        }
        if run.kind == Kind::Doom {
            continue; // its run failed: its other tasks stopped wherever they were
        }
        assert_eq!(
            status, "completed",
            "{step}[{index}] of {:?} run {}",
            run.kind, run.k
        );
        let scheduled = run.flaky_failures(&step, index) + 1;
        assert!(
            attempts >= scheduled,
            "{step}[{index}] of {:?} run {}: {attempts} attempts, {scheduled} scheduled",
            run.kind,
            run.k
        );
        extra += i64::from(attempts - scheduled);
    }
    extra
}

/// Waits until `pg_stat_activity` shows backend `pid` in the state `condition` describes.
async fn wait_for_backend(admin: &Client, pid: i32, condition: &str, what: &str) {
    let sql = format!("SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND {condition}");
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        what,
        || async {
            let found: bool = admin.query_one(&sql, &[&pid]).await.unwrap().get(0);
            found.then_some(())
        },
    )
    .await;
}

/// Runs `sql` on `client` (backend `pid`), sees its commit wait for the standby that never
/// connects (wait event `SyncRep`: the commit waits for its WAL flush, and then for the
/// standby), and cancels the wait from `admin`, which ends the commit locally.
async fn commit_waits_for_the_standby(admin: &Client, client: &Arc<Client>, pid: i32, sql: &str) {
    let (c, s) = (client.clone(), sql.to_string());
    let query = tokio::spawn(async move { c.batch_execute(&s).await });
    wait_for_backend(
        admin,
        pid,
        "wait_event = 'SyncRep'",
        &format!("the commit of {sql:?} to wait for the standby"),
    )
    .await;
    exec(admin, &format!("SELECT pg_cancel_backend({pid})")).await;
    query
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// Runs `sql` on `client`; its commit must not wait for the standby (which would be forever:
/// 60 s only bounds the hang such a bug would cause).
async fn commits_without_waiting(client: &Client, sql: &str) {
    tokio::time::timeout(Duration::from_secs(60), client.batch_execute(sql))
        .await
        .unwrap_or_else(|_| {
            panic!("{sql:?} still waits after 60 s: its commit waits for the standby")
        })
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// `quantum_flow.async_claims`: a transaction that only claimed tasks commits without waiting
/// for its WAL flush; everything else still waits. The cluster names a synchronous standby
/// that never connects (scripts/test-ops.sh) with `synchronous_commit = local` as the default;
/// a session that sets `synchronous_commit = on` then waits at every durable commit until
/// cancelled, which makes "this commit waits for its flush" visible in pg_stat_activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_poll_that_just_claimed_commits_without_waiting_for_its_flush() {
    let _up = SERVER.read().await;
    let url = fresh_database_alone("qf_ops_claims").await;
    let admin = connect(&url).await;
    assert_eq!(
        setting(&admin, "synchronous_standby_names").await,
        "qf_ops_no_such_standby"
    );
    assert_eq!(setting(&admin, "synchronous_commit").await, "local");
    exec(
        &admin,
        "SELECT quantum_flow.create_flow('claims', max_attempts => 1); \
         SELECT quantum_flow.add_step('claims', 'a'); \
         SELECT quantum_flow.add_step('claims', 'b', depends_on => ARRAY['a']); \
         SELECT quantum_flow.create_flow('short', max_attempts => 1); \
         SELECT quantum_flow.add_step('short', 'a', timeout => 1); \
         SELECT quantum_flow.create_flow('idle'); \
         SELECT quantum_flow.add_step('idle', 'a'); \
         SELECT quantum_flow.create_flow('chunks'); \
         SELECT quantum_flow.add_step('chunks', 'm', step_type => 'map');",
    )
    .await;
    // (Defined once the library is loaded, here by the calls above.)
    assert_eq!(setting(&admin, "quantum_flow.async_claims").await, "on");
    let client = Arc::new(connect(&url).await);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    exec(&client, "SET synchronous_commit = on").await;
    let claim = "SELECT count(*) FROM quantum_flow.poll_tasks('claims', 1)";

    // Starting a run is durable: its commit waits.
    commit_waits_for_the_standby(
        &admin,
        &client,
        pid,
        "SELECT quantum_flow.start_flow('claims', '{}')",
    )
    .await;
    let run: Uuid = admin
        .query_one("SELECT run_id FROM quantum_flow.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(task_row(&admin, run, "a", 0).await.status, "queued");

    // A poll that claims, alone in its transaction: no wait. The claim is at once visible to
    // other sessions.
    commits_without_waiting(&client, claim).await;
    let row = task_row(&admin, run, "a", 0).await;
    assert_eq!((row.status.as_str(), row.attempts), ("started", 1));

    // The answer is durable: it waits.
    commit_waits_for_the_standby(
        &admin,
        &client,
        pid,
        &format!("SELECT quantum_flow.complete_task('{run}', 'a', 0, '1')"),
    )
    .await;
    assert_eq!(task_row(&admin, run, "a", 0).await.status, "completed");
    // A waiting poll, with work ready: no wait.
    commits_without_waiting(
        &client,
        "SELECT count(*) FROM quantum_flow.poll_tasks('claims', 1, max_wait_ms => 5000)",
    )
    .await;
    assert_eq!(task_row(&admin, run, "b", 0).await.status, "started");

    // A poll that sleeps first, and claims what another session's start_flow readied.
    let sleeper = {
        let c = client.clone();
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                c.query(
                    "SELECT run_id FROM quantum_flow.poll_tasks('idle', 1, max_wait_ms => 30000)",
                    &[],
                ),
            )
            .await
        })
    };
    wait_for_backend(
        &admin,
        pid,
        "wait_event_type = 'Extension'",
        "the poll to sleep",
    )
    .await;
    let idle = start_flow(&admin, "idle", &json!({})).await;
    let woken = sleeper
        .await
        .unwrap()
        .expect("the woken poll still waits after 60 s: its commit waits for the standby")
        .unwrap_or_else(|e| panic!("the sleeping poll: {}", describe(&e)));
    assert_eq!(woken.len(), 1, "the woken poll claimed the new run's task");
    assert_eq!(woken[0].get::<_, Uuid>(0), idle);

    // A transaction that wrote before its poll, or after it, waits.
    commit_waits_for_the_standby(
        &admin,
        &client,
        pid,
        &format!("BEGIN; SELECT quantum_flow.start_flow('claims', '{{}}'); {claim}; COMMIT"),
    )
    .await;
    start_flow(&admin, "claims", &json!({})).await;
    commit_waits_for_the_standby(
        &admin,
        &client,
        pid,
        &format!("BEGIN; {claim}; SELECT quantum_flow.start_flow('claims', '{{}}'); COMMIT"),
    )
    .await;
    let claimed: i64 = admin
        .query_one(
            "SELECT count(*) FROM quantum_flow.step_tasks t JOIN quantum_flow.runs r USING (run_id) \
             WHERE r.workflow_slug = 'claims' AND t.step_slug = 'a' AND t.status = 'started'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 2, "both polls claimed a task and committed");

    // Off, a claim waits as any commit does.
    exec(&client, "SET quantum_flow.async_claims = off").await;
    commit_waits_for_the_standby(&admin, &client, pid, claim).await;
    exec(&client, "RESET quantum_flow.async_claims").await;

    // A poll that cleans up (here: fails a run whose only attempt timed out) waits.
    let short = start_flow(&admin, "short", &json!({})).await;
    commits_without_waiting(
        &client,
        "SELECT count(*) FROM quantum_flow.poll_tasks('short', 1)",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    commit_waits_for_the_standby(
        &admin,
        &client,
        pid,
        "SELECT count(*) FROM quantum_flow.poll_tasks('short', 1)",
    )
    .await;
    assert_eq!(get_run(&admin, short).await["status"], json!("failed"));

    // So does a poll that creates a big map's next chunk of tasks (a lost chunk would take
    // tasks that workers hold with it).
    exec(&admin, "SET quantum_flow.fan_out_chunk = 2").await;
    let chunked = start_flow(&admin, "chunks", &json!([1, 2, 3, 4])).await;
    let tasks = || async {
        admin
            .query_one(
                "SELECT count(*) FROM quantum_flow.step_tasks WHERE run_id = $1",
                &[&chunked],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(tasks().await, 2, "start_flow created the first chunk only");
    commit_waits_for_the_standby(
        &admin,
        &client,
        pid,
        "SELECT count(*) FROM quantum_flow.poll_tasks('chunks', 1)",
    )
    .await;
    assert_eq!(tasks().await, 4, "the poll created the next chunk");
}
