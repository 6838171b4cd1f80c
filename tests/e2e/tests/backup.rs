//! Backups: `pg_dump -Fc` of a database with runs in flight, `pg_restore` into a new database,
//! and the restored copy is the database at dump time - every definition, run, task, queued
//! and archived message, sequence and grant - and finishes the runs with the exact outputs.
//!
//! In flight at dump time (the dump and the "source at dump time" are read in one exported
//! snapshot, so they are the same instant):
//! * `bk_map` (fetch -> map square -> total): m1 with fetch done and square 3 of 6 done, one
//!   task claimed and unanswered (3 s step timeout), one waiting for its retry (2 s backoff),
//!   one queued; m3 queued; m2 completed.
//! * `bk_chain` (a -> b -> c): c1 with a done and b claimed and unanswered (3 s timeout); c5
//!   with a waiting for its retry; c2 queued; c3 completed; c4 failed (c has max_attempts 1).

use quantum_flow_e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_postgres::config::Host;
use tokio_postgres::Client;
use uuid::Uuid;

const MAP: &str = "bk_map";
const CHAIN: &str = "bk_chain";
/// A safety net for a stuck engine, not a speed requirement.
const FINISH_LIMIT: Duration = Duration::from_secs(60);

/// The step functions, run by the workers of both copies.
fn handle(task: &Task) -> Value {
    let input = &task.input;
    match task.step_slug.as_str() {
        "fetch" => json!((1..=as_i64(&input["run"]["n"])).collect::<Vec<i64>>()),
        "square" => {
            assert_eq!(as_i64(&input["index"]), i64::from(task.task_index));
            json!(as_i64(&input["item"]).pow(2))
        }
        "total" => {
            let squares = input["square"]
                .as_array()
                .unwrap_or_else(|| panic!("total's input lacks square's array: {input}"));
            json!({"sum": squares.iter().map(as_i64).sum::<i64>()})
        }
        "a" => json!(as_i64(&input["run"]["x"]) + 1),
        "b" => json!(as_i64(&input["a"]) + 10),
        "c" => json!(as_i64(&input["b"]) * 2),
        other => panic!("no handler for step {other:?}"),
    }
}

/// The outputs, computed independently of the handlers.
fn map_run_output(n: i64) -> Value {
    json!({"total": {"sum": n * (n + 1) * (2 * n + 1) / 6}})
}
fn chain_run_output(x: i64) -> Value {
    json!({"c": 2 * x + 22})
}

fn key(run: Uuid, step: &str, index: i32, attempt: i32) -> ClaimKey {
    (run, step.to_string(), index, attempt)
}

/// Polls once (no waiting) and checks that exactly these attempts were claimed.
async fn poll_exactly(client: &Client, slug: &str, batch: i32, want: &[ClaimKey]) -> Vec<Task> {
    let mut tasks = poll(client, slug, batch, 0).await.unwrap();
    tasks.sort_by_key(|t| t.claim_key());
    let got: Vec<ClaimKey> = tasks.iter().map(Task::claim_key).collect();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(
        got, want,
        "claimed by poll_tasks({slug}, batch_size => {batch})"
    );
    tasks
}

async fn complete_ok(client: &Client, task: &Task) {
    assert!(
        complete(client, task, &handle(task)).await.unwrap(),
        "complete_task {:?} returned false",
        task.claim_key()
    );
}

/// Works on `run` (the only run of `slug` with visible tasks) until it has ended.
async fn run_to_end(client: &Client, slug: &str, run: Uuid) {
    let deadline = Instant::now() + FINISH_LIMIT;
    while get_run(client, run).await["status"] == "started" {
        assert!(Instant::now() < deadline, "run {run} did not end");
        for task in poll(client, slug, 10, 200).await.unwrap() {
            assert_eq!(task.run_id, run);
            complete_ok(client, &task).await;
        }
    }
}

async fn strings(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| {
            r.get::<_, Option<String>>(0)
                .unwrap_or_else(|| "(null)".into())
        })
        .collect()
}

/// Everything a backup must keep, read through the API (definitions, runs) and, as the
/// superuser, from the catalogue and the tables themselves.
#[derive(Debug, Clone, PartialEq)]
struct State {
    /// list_flows() rows, as jsonb.
    flows: Vec<Value>,
    /// get_flow() of each workflow.
    definitions: BTreeMap<String, Value>,
    /// get_run() of each run.
    runs: BTreeMap<Uuid, Value>,
    /// Messages in each workflow's queue.
    queue_lengths: BTreeMap<String, i64>,
    /// Every row of every table of schemas quantum_flow and pgmq (the extension's tables, pgmq's
    /// meta, the queues and archives), as text in a stable order.
    tables: BTreeMap<String, Vec<String>>,
    /// last_value and is_called of every sequence of those schemas (pgmq's message ids).
    sequences: BTreeMap<String, String>,
    /// Extensions with their versions and dumped configuration tables.
    extensions: Vec<String>,
    /// Grants and security attributes: schemas, relations, functions, default ACLs, the event
    /// trigger.
    security: Vec<String>,
}

async fn capture(client: &Client, run_ids: &[Uuid]) -> State {
    let flows: Vec<Value> = client
        .query(
            "SELECT to_jsonb(f) FROM quantum_flow.list_flows() AS f",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut definitions = BTreeMap::new();
    let mut queue_lengths = BTreeMap::new();
    for flow in &flows {
        let slug = flow["workflow_slug"].as_str().unwrap().to_string();
        let doc: Value = client
            .query_one("SELECT quantum_flow.get_flow($1)", &[&slug])
            .await
            .unwrap()
            .get(0);
        queue_lengths.insert(slug.clone(), queue_len(client, &slug).await);
        definitions.insert(slug, doc);
    }
    let mut runs = BTreeMap::new();
    for &run in run_ids {
        runs.insert(run, get_run(client, run).await);
    }
    let mut tables = BTreeMap::new();
    for table in strings(
        client,
        "SELECT c.oid::regclass::text FROM pg_class c \
         WHERE c.relnamespace IN ('quantum_flow'::regnamespace, 'pgmq'::regnamespace) \
           AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .await
    {
        let rows = strings(
            client,
            &format!("SELECT t::text FROM {table} AS t ORDER BY 1"),
        )
        .await;
        tables.insert(table, rows);
    }
    let mut sequences = BTreeMap::new();
    for seq in strings(
        client,
        "SELECT c.oid::regclass::text FROM pg_class c \
         WHERE c.relnamespace IN ('quantum_flow'::regnamespace, 'pgmq'::regnamespace) \
           AND c.relkind = 'S' ORDER BY 1",
    )
    .await
    {
        let value = strings(
            client,
            &format!("SELECT last_value::text || ' ' || is_called::text FROM {seq}"),
        )
        .await;
        sequences.insert(seq, value.join(""));
    }
    let extensions = strings(
        client,
        "SELECT format('%s %s config %s conditions %s', extname, extversion, \
                       extconfig::regclass[], extcondition) \
         FROM pg_extension ORDER BY extname",
    )
    .await;
    let security = strings(
        client,
        "SELECT format('schema %s owner-super %s acl %s', n.nspname, r.rolsuper, n.nspacl) \
         FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner \
         WHERE n.nspname IN ('quantum_flow', 'pgmq') \
         UNION ALL \
         SELECT format('relation %s kind %s owner-super %s acl %s', c.oid::regclass, c.relkind, \
                       r.rolsuper, c.relacl) \
         FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner \
         WHERE c.relnamespace IN ('quantum_flow'::regnamespace, 'pgmq'::regnamespace) \
         UNION ALL \
         SELECT format('function %s owner-super %s security-definer %s config %s acl %s', \
                       p.oid::regprocedure, r.rolsuper, p.prosecdef, p.proconfig, p.proacl) \
         FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner \
         WHERE p.pronamespace = 'quantum_flow'::regnamespace \
         UNION ALL \
         SELECT format('default acl %s %s: %s', d.defaclnamespace::regnamespace, d.defaclobjtype, \
                       d.defaclacl) FROM pg_default_acl d \
         UNION ALL \
         SELECT format('event trigger %s on %s %s runs %s enabled %s', e.evtname, e.evtevent, \
                       e.evttags, e.evtfoid::regproc, e.evtenabled) FROM pg_event_trigger e \
         ORDER BY 1",
    )
    .await;
    State {
        flows,
        definitions,
        runs,
        queue_lengths,
        tables,
        sequences,
        extensions,
        security,
    }
}

/// Field by field, so that a difference is shown where it is.
fn assert_same_state(restored: &State, at_dump: &State) {
    assert_eq!(restored.flows, at_dump.flows, "list_flows");
    assert_eq!(restored.definitions, at_dump.definitions, "get_flow");
    for (run, doc) in &at_dump.runs {
        assert_eq!(restored.runs.get(run), Some(doc), "get_run({run})");
    }
    assert_eq!(restored.runs.len(), at_dump.runs.len());
    assert_eq!(
        restored.queue_lengths, at_dump.queue_lengths,
        "queue lengths"
    );
    assert_eq!(
        restored.tables.keys().collect::<Vec<_>>(),
        at_dump.tables.keys().collect::<Vec<_>>(),
        "the tables of schemas quantum_flow and pgmq"
    );
    for (table, rows) in &at_dump.tables {
        assert_eq!(&restored.tables[table], rows, "rows of {table}");
    }
    assert_eq!(restored.sequences, at_dump.sequences, "sequences");
    assert_eq!(restored.extensions, at_dump.extensions, "extensions");
    assert_eq!(
        restored.security, at_dump.security,
        "grants and security attributes"
    );
}

/// The cluster's connection parameters, for pg_dump / pg_restore (as its superuser, over TCP).
struct Server {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

fn server() -> Server {
    let config: tokio_postgres::Config = base_url()
        .parse()
        .unwrap_or_else(|e| panic!("QF_TEST_DATABASE_URL: {e}"));
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".to_string(),
    };
    Server {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config
            .get_user()
            .expect("QF_TEST_DATABASE_URL names a user")
            .to_string(),
        password: config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    }
}

/// A client program of the PostgreSQL the extension is built for: `$(pg_config --bindir)`.
fn pg_program(name: &str) -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".to_string());
    let out = std::process::Command::new(&pg_config)
        .arg("--bindir")
        .output()
        .unwrap_or_else(|e| panic!("{pg_config} --bindir: {e}"));
    assert!(out.status.success(), "{pg_config} --bindir failed");
    Path::new(String::from_utf8(out.stdout).unwrap().trim()).join(name)
}

/// Runs pg_dump / pg_restore against the cluster; panics with its exact stderr when it fails,
/// and when it succeeds but says anything at all. Returns how long it took.
async fn run_pg_program(name: &str, args: &[String]) -> Duration {
    let srv = server();
    let program = pg_program(name);
    let mut command = tokio::process::Command::new(&program);
    command
        .args([
            "-h",
            &srv.host,
            "-p",
            &srv.port.to_string(),
            "-U",
            &srv.user,
            "-w",
        ])
        .args(args)
        .env_remove("PGDATABASE")
        .env_remove("PGOPTIONS");
    if let Some(password) = &srv.password {
        command.env("PGPASSWORD", password);
    }
    let started = Instant::now();
    let out = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stderr.trim().is_empty(),
        "{name} {args:?} succeeded but said:\n{stderr}"
    );
    took
}

/// Highest message id ever used by the workflow's queue (queue and archive).
async fn max_msg_id(client: &Client, slug: &str) -> i64 {
    client
        .query_one(
            &format!(
                "SELECT coalesce(max(msg_id), 0) FROM \
                 (SELECT msg_id FROM pgmq.q_qf_{slug} UNION ALL SELECT msg_id FROM pgmq.a_qf_{slug}) AS m"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The source database's runs, by what they were at dump time.
struct Runs {
    m1: Uuid,
    m2: Uuid,
    m3: Uuid,
    c1: Uuid,
    c2: Uuid,
    c3: Uuid,
    c4: Uuid,
    c5: Uuid,
    /// c1's b, claimed before the dump and never answered.
    c1_b: Task,
}

impl Runs {
    fn ids(&self) -> Vec<Uuid> {
        vec![
            self.m1, self.m2, self.m3, self.c1, self.c2, self.c3, self.c4, self.c5,
        ]
    }
}

/// Creates database `name` with the two workflows and their runs, brought to the states
/// listed at the top of this file.
async fn fill_source(name: &str) -> (Client, Runs) {
    let src = connect(&fresh_database(name).await).await;
    exec(
        &src,
        "SELECT quantum_flow.create_flow('bk_map', max_attempts => 3, timeout => 30, base_delay => 2); \
         SELECT quantum_flow.add_step('bk_map', 'fetch'); \
         SELECT quantum_flow.add_step('bk_map', 'square', ARRAY['fetch'], step_type => 'map', \
                                      initial_tasks => 4, timeout => 3); \
         SELECT quantum_flow.add_step('bk_map', 'total', ARRAY['square']); \
         SELECT quantum_flow.create_flow('bk_chain', max_attempts => 3, timeout => 30, base_delay => 2); \
         SELECT quantum_flow.add_step('bk_chain', 'a'); \
         SELECT quantum_flow.add_step('bk_chain', 'b', ARRAY['a'], timeout => 3); \
         SELECT quantum_flow.add_step('bk_chain', 'c', ARRAY['b'], max_attempts => 1);",
    )
    .await;

    // Ended runs: m2 and c3 completed, c4 failed (c allows one attempt).
    let m2 = start_flow(&src, MAP, &json!({"n": 3})).await;
    run_to_end(&src, MAP, m2).await;
    let c3 = start_flow(&src, CHAIN, &json!({"x": 1})).await;
    run_to_end(&src, CHAIN, c3).await;
    let c4 = start_flow(&src, CHAIN, &json!({"x": 2})).await;
    for step in ["a", "b"] {
        let t = poll_exactly(&src, CHAIN, 10, &[key(c4, step, 0, 1)]).await;
        complete_ok(&src, &t[0]).await;
    }
    let t = poll_exactly(&src, CHAIN, 10, &[key(c4, "c", 0, 1)]).await;
    assert_eq!(fail(&src, &t[0], "disk full").await.unwrap(), "failed");

    // m1: fetch done; of square's 6 tasks 0-2 completed, 3 claimed and unanswered, 4 failed
    // once (retry due 2 s later), 5 queued.
    let m1 = start_flow(&src, MAP, &json!({"n": 6})).await;
    let t = poll_exactly(&src, MAP, 10, &[key(m1, "fetch", 0, 1)]).await;
    complete_ok(&src, &t[0]).await;
    let claimed = poll_exactly(
        &src,
        MAP,
        5,
        &(0..5).map(|i| key(m1, "square", i, 1)).collect::<Vec<_>>(),
    )
    .await;
    for t in &claimed[0..3] {
        complete_ok(&src, t).await;
    }
    assert_eq!(fail(&src, &claimed[4], "HTTP 503").await.unwrap(), "queued");
    // c1: a done, b claimed and unanswered.
    let c1 = start_flow(&src, CHAIN, &json!({"x": 3})).await;
    let t = poll_exactly(&src, CHAIN, 10, &[key(c1, "a", 0, 1)]).await;
    complete_ok(&src, &t[0]).await;
    let c1_b = poll_exactly(&src, CHAIN, 10, &[key(c1, "b", 0, 1)])
        .await
        .remove(0);
    // c5: a failed once (retry due 2 s later). This poll also shows that c1's b is still
    // claimed (its 3 s timeout has not passed).
    let c5 = start_flow(&src, CHAIN, &json!({"x": 4})).await;
    let t = poll_exactly(&src, CHAIN, 10, &[key(c5, "a", 0, 1)]).await;
    assert_eq!(
        fail(&src, &t[0], "connection reset").await.unwrap(),
        "queued"
    );
    // m3 and c2: only queued.
    let m3 = start_flow(&src, MAP, &json!({"n": 4})).await;
    let c2 = start_flow(&src, CHAIN, &json!({"x": 5})).await;
    let runs = Runs {
        m1,
        m2,
        m3,
        c1,
        c2,
        c3,
        c4,
        c5,
        c1_b,
    };
    (src, runs)
}

/// A file removed when dropped, test failure or not.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `pg_dump -Fc` of database `db` and the source's state, read in one exported snapshot so
/// that both are the same instant.
async fn dump(src: &Client, db: &str, runs: &Runs) -> (TempFile, State) {
    exec(src, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await;
    let snapshot: String = src
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .unwrap()
        .get(0);
    let at_dump = capture(src, &runs.ids()).await;
    let file = TempFile(std::env::temp_dir().join(format!("{db}-{}.dump", std::process::id())));
    let took = run_pg_program(
        "pg_dump",
        &[
            "-Fc".into(),
            format!("--snapshot={snapshot}"),
            "-f".into(),
            file.0.display().to_string(),
            "-d".into(),
            db.into(),
        ],
    )
    .await;
    exec(src, "COMMIT").await;
    let bytes = std::fs::metadata(&file.0).unwrap().len();
    println!("pg_dump -Fc of {db}: {took:?} ({bytes} bytes)");

    // What was in flight at dump time, as designed.
    let doc = &at_dump.runs[&runs.m1];
    assert_eq!(doc["status"], "started", "{doc}");
    assert_eq!(doc["steps"][1]["status"], "started", "{doc}");
    assert_eq!(doc["steps"][1]["tasks_total"], json!(6), "{doc}");
    assert_eq!(doc["steps"][1]["tasks_completed"], json!(3), "{doc}");
    assert_eq!(at_dump.runs[&runs.m2]["status"], "completed");
    assert_eq!(at_dump.runs[&runs.m2]["output"], map_run_output(3));
    assert_eq!(at_dump.runs[&runs.c3]["status"], "completed");
    assert_eq!(at_dump.runs[&runs.c3]["output"], chain_run_output(1));
    assert_eq!(at_dump.runs[&runs.c4]["status"], "failed");
    assert_eq!(
        at_dump.runs[&runs.c4]["error_message"],
        "step c, task 0, attempt 1: disk full"
    );
    for run in [runs.m3, runs.c1, runs.c2, runs.c5] {
        assert_eq!(at_dump.runs[&run]["status"], "started");
    }
    // bk_map: m1's square 3 (claimed), 4 (retry), 5 and m3's fetch; bk_chain: c1's b
    // (claimed), c5's a (retry) and c2's a.
    assert_eq!(
        at_dump.queue_lengths,
        BTreeMap::from([(CHAIN.to_string(), 3), (MAP.to_string(), 4)])
    );
    (file, at_dump)
}

/// `pg_restore [extra] -d db file` into a new, empty database `db`; returns its URL.
async fn restore(file: &TempFile, db: &str, extra: &[&str]) -> String {
    let admin = connect(&base_url()).await;
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db} TEMPLATE template0"),
    ] {
        exec(&admin, &sql).await;
    }
    let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--exit-on-error".into(),
        "-d".into(),
        db.into(),
        file.0.display().to_string(),
    ]);
    let took = run_pg_program("pg_restore", &args).await;
    println!("pg_restore {extra:?} into {db}: {took:?}");
    database_url(db)
}

/// The restored copy is the source at dump time; its definitions are real; workers finish
/// its in-flight runs with the exact outputs, doing exactly the work left at dump time; its
/// queues end empty; new workflows work there.
async fn check_restored_copy(restored_url: &str, runs: &Runs, at_dump: &State) {
    let Runs {
        m1,
        m2,
        m3,
        c1,
        c2,
        c3,
        c4,
        c5,
        ..
    } = *runs;
    let dst = connect(restored_url).await;
    let restored = capture(&dst, &runs.ids()).await;
    assert_same_state(&restored, at_dump);

    // The restored definitions are real: create_flow with the same options returns the
    // existing row (created when the source was filled), other options are refused.
    for flow in &at_dump.flows {
        let row: Value = dst
            .query_one(
                "SELECT to_jsonb(f) FROM quantum_flow.create_flow($1, max_attempts => $2, \
                                                           timeout => $3, base_delay => $4) AS f",
                &[
                    &flow["workflow_slug"].as_str().unwrap(),
                    &(as_i64(&flow["max_attempts"]) as i32),
                    &(as_i64(&flow["timeout"]) as i32),
                    &(as_i64(&flow["base_delay"]) as i32),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("create_flow again: {}", describe(&e)))
            .get(0);
        assert_eq!(&row, flow, "create_flow of an existing slug");
    }
    let err = dst
        .query_one(
            "SELECT quantum_flow.create_flow('bk_map', max_attempts => 9)",
            &[],
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "23505", "{}", describe(&err));
    assert!(
        db.message().starts_with("workflow_exists: "),
        "{}",
        describe(&err)
    );

    // A run started in the restored copy gets a message id after every restored one (the
    // queue's sequence came along).
    let before = max_msg_id(&dst, CHAIN).await;
    let c6 = start_flow(&dst, CHAIN, &json!({"x": 100})).await;
    let c6_msg: i64 = dst
        .query_one(
            "SELECT message_id FROM quantum_flow.step_tasks WHERE run_id = $1",
            &[&c6],
        )
        .await
        .unwrap()
        .get(0);
    assert!(c6_msg > before, "new message id {c6_msg} <= {before}");

    // Workers finish the in-flight runs in the restored copy: claims made before the dump
    // come back as attempt 2 after their step's timeout, retries after their backoff.
    let in_flight = [m1, m3, c1, c2, c5, c6];
    let worker = connect(restored_url).await;
    let finishing = Instant::now();
    let mut processed: Vec<ClaimKey> = Vec::new();
    let mut handler = |t: &Task| Outcome::Complete(handle(t));
    while unfinished_runs(&dst, &in_flight).await > 0 {
        assert!(
            finishing.elapsed() < FINISH_LIMIT,
            "runs unfinished after {FINISH_LIMIT:?}; processed {processed:?}"
        );
        for slug in [MAP, CHAIN] {
            for p in work_once(&worker, slug, 10, 250, &mut handler)
                .await
                .unwrap()
            {
                assert_eq!(
                    p.answered,
                    Answered::Completed(true),
                    "{:?}",
                    p.task.claim_key()
                );
                processed.push(p.task.claim_key());
            }
        }
    }
    println!(
        "finishing the runs in the restored copy: {:?}",
        finishing.elapsed()
    );

    // Exactly the work that was not done at dump time, each attempt once.
    let mut expected: Vec<ClaimKey> = vec![
        key(m1, "square", 3, 2),
        key(m1, "square", 4, 2),
        key(m1, "square", 5, 1),
        key(m1, "total", 0, 1),
        key(m3, "fetch", 0, 1),
        key(m3, "total", 0, 1),
        key(c1, "b", 0, 2),
        key(c1, "c", 0, 1),
        key(c5, "a", 0, 2),
    ];
    expected.extend((0..4).map(|i| key(m3, "square", i, 1)));
    for run in [c5, c2, c6] {
        for step in ["a", "b", "c"] {
            if !(run == c5 && step == "a") {
                expected.push(key(run, step, 0, 1));
            }
        }
    }
    expected.sort();
    processed.sort();
    assert_eq!(
        processed, expected,
        "attempts processed in the restored copy"
    );

    // Their exact outputs.
    for (run, output) in [
        (m1, map_run_output(6)),
        (m3, map_run_output(4)),
        (c1, chain_run_output(3)),
        (c2, chain_run_output(5)),
        (c5, chain_run_output(4)),
        (c6, chain_run_output(100)),
    ] {
        let doc = get_run(&dst, run).await;
        assert_eq!(doc["status"], "completed", "{doc}");
        assert_eq!(doc["output"], output, "{doc}");
    }
    assert_eq!(
        get_run(&dst, m1).await["steps"][1]["output"],
        json!([1, 4, 9, 16, 25, 36])
    );
    // The runs that had ended are as they were.
    for run in [m2, c3, c4] {
        assert_eq!(
            get_run(&dst, run).await,
            at_dump.runs[&run],
            "get_run({run})"
        );
    }
    // The source's worker that claimed c1's b before the dump answers the restored copy
    // late: refused.
    assert!(!complete(&dst, &runs.c1_b, &json!(-1)).await.unwrap());
    assert_eq!(fail(&dst, &runs.c1_b, "late").await.unwrap(), "ignored");
    assert_eq!(get_run(&dst, c1).await["output"], chain_run_output(3));

    // The queues end empty, and nothing more was archived.
    for slug in [MAP, CHAIN] {
        assert_eq!(queue_len(&dst, slug).await, 0, "queue of {slug}");
        assert_eq!(
            archive_len(&dst, slug).await,
            at_dump.tables[&format!("pgmq.a_qf_{slug}")].len() as i64,
            "archive of {slug}"
        );
    }

    // A new workflow works in the restored copy, and restored workflows can be deleted
    // (their queues are pgmq's).
    exec(
        &dst,
        "SELECT quantum_flow.create_flow('bk_new'); SELECT quantum_flow.add_step('bk_new', 'only');",
    )
    .await;
    let n1 = start_flow(&dst, "bk_new", &json!({"hello": "restored"})).await;
    let t = poll(&dst, "bk_new", 10, 0).await.unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].input, json!({"run": {"hello": "restored"}}));
    assert!(complete(&dst, &t[0], &json!("done")).await.unwrap());
    assert_eq!(get_run(&dst, n1).await["output"], json!({"only": "done"}));
    let slugs = strings(
        &dst,
        "SELECT f.workflow_slug FROM quantum_flow.list_flows() AS f",
    )
    .await;
    assert_eq!(slugs, ["bk_chain", "bk_map", "bk_new"]);
    exec(
        &dst,
        "SELECT quantum_flow.delete_flow('bk_new'); SELECT quantum_flow.delete_flow('bk_chain');",
    )
    .await;
    let queues = strings(&dst, "SELECT queue_name FROM pgmq.meta ORDER BY 1").await;
    assert_eq!(queues, ["qf_bk_map"]);
}

#[tokio::test]
async fn a_dump_restored_mid_run_is_the_same_database_and_finishes_the_runs() {
    let started = Instant::now();
    let (src, runs) = fill_source("qf_e2e_backup").await;
    let (file, at_dump) = dump(&src, "qf_e2e_backup", &runs).await;
    let restored = restore(&file, "qf_e2e_restored", &[]).await;
    check_restored_copy(&restored, &runs, &at_dump).await;
    println!("whole test: {:?}", started.elapsed());
}

/// The same with a parallel restore (`pg_restore -j 2`), which loads the tables' data in
/// parallel, largest first, and orders only what the archive's dependencies say.
#[tokio::test]
async fn a_parallel_restore_of_a_dump_taken_mid_run_is_the_same_database() {
    let started = Instant::now();
    let (src, runs) = fill_source("qf_e2e_backup_parallel").await;
    let (file, at_dump) = dump(&src, "qf_e2e_backup_parallel", &runs).await;
    let restored = restore(&file, "qf_e2e_restored_parallel", &["-j", "2"]).await;
    check_restored_copy(&restored, &runs, &at_dump).await;
    println!("whole test: {:?}", started.elapsed());
}
