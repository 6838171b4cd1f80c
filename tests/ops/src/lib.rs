//! Shared helpers of the ops tier (`scripts/test-ops.sh`, see README.md): the tier's own
//! cluster, driven through `scripts/cluster.sh` with the environment the script exported; a lock
//! that keeps the crash test's crashes away from tests that need the server up; direct reads of
//! a task's row; connections that survive a crash; and the test of errors without Rust
//! backtraces, which both test binaries run. `chaos` is the crash test's workload.

pub mod chaos;

use quantum_flow_e2e::{connect, describe, exec, fresh_database};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::RwLock;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

/// Held shared by a test (or a step of one) that needs the server up throughout, and
/// exclusively by the crash test around each crash and restart: crashes never land in such a
/// step, and such steps wait while the server is down.
pub static SERVER: RwLock<()> = RwLock::const_new(());

/// Set while a test waits for a pg_cron job (which runs at minute boundaries): the crash test
/// then keeps its crashes away from the boundary, so that the job is not lost to one.
pub static CRON_JOB_PENDING: AtomicBool = AtomicBool::new(false);

/// `fresh_database` (a database with quantum_flow installed), one at a time: concurrent
/// `CREATE EXTENSION quantum_flow` in two databases of a cluster where its roles do not exist
/// yet fails in one of them (both create the roles; see tests/ops/README.md).
pub async fn fresh_database_alone(name: &str) -> String {
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _alone = CREATING.lock().await;
    fresh_database(name).await
}

/// Seconds since the last minute boundary, by the clock that pg_cron (on this machine) uses.
pub fn seconds_into_minute() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
        % 60.0
}

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// Runs `scripts/cluster.sh <command>` with this process's environment (QF_STATE_DIR, QF_PORT,
/// QF_EXTRA_CONF, QF_SERVER_ENV as scripts/test-ops.sh exported them); returns its stdout.
pub async fn cluster(command: &str) -> String {
    let script = repo().join("scripts/cluster.sh");
    let out = tokio::process::Command::new(&script)
        .arg(command)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "scripts/cluster.sh {command} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The state directory scripts/cluster.sh uses with this environment.
pub async fn state_dir() -> PathBuf {
    PathBuf::from(cluster("statedir").await.trim())
}

/// Panics unless `client` is connected to the ops tier's own cluster: QF_STATE_DIR names a
/// state directory other than the main cluster's default one, and the server's data directory
/// is the one scripts/cluster.sh manages there. The crash test checks this before it kills
/// anything.
pub async fn assert_own_cluster(client: &Client) {
    let wanted = std::env::var("QF_STATE_DIR").expect(
        "QF_STATE_DIR is not set: the ops tests run on a cluster of their own, through \
         scripts/test-ops.sh (make test-ops)",
    );
    let main_state = repo().join(".qf");
    assert_ne!(
        Path::new(&wanted).canonicalize().ok(),
        main_state.canonicalize().ok(),
        "QF_STATE_DIR is the main cluster's state directory; the ops tests need their own"
    );
    let data_directory = setting(client, "data_directory").await;
    let managed = state_dir().await.join("pgdata");
    assert_eq!(
        Path::new(&data_directory).canonicalize().ok(),
        managed.canonicalize().ok(),
        "the server at QF_TEST_DATABASE_URL is not the cluster scripts/cluster.sh manages in \
         {wanted}"
    );
}

/// A setting's value as SHOW prints it.
pub async fn setting(client: &Client, name: &str) -> String {
    client
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap_or_else(|e| panic!("current_setting({name}): {}", describe(&e)))
        .get(0)
}

/// Panics unless the server preloads exactly `expected`: each test binary is for one phase of
/// scripts/test-ops.sh.
pub async fn assert_preloaded(client: &Client, expected: &str) {
    let preloaded = setting(client, "shared_preload_libraries").await;
    assert_eq!(
        preloaded, expected,
        "this test needs the server started with shared_preload_libraries = '{expected}' \
         (run it through scripts/test-ops.sh)"
    );
}

/// Backends of `backend_type` (e.g. `quantum_flow launcher`) in pg_stat_activity.
pub async fn backends_of_type(client: &Client, backend_type: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = $1",
            &[&backend_type],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_stat_activity: {}", describe(&e)))
        .get(0)
}

/// A task's row in quantum_flow.step_tasks, read directly (as superuser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub status: String,
    pub attempts: i32,
    pub error_message: Option<String>,
    pub worker_id: Option<String>,
}

pub async fn task_row(client: &Client, run_id: Uuid, step_slug: &str, task_index: i32) -> TaskRow {
    let row = client
        .query_one(
            "SELECT status, attempts_count, error_message, worker_id FROM quantum_flow.step_tasks \
             WHERE run_id = $1 AND step_slug = $2 AND task_index = $3",
            &[&run_id, &step_slug, &task_index],
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "step_tasks row of {run_id} {step_slug} {task_index}: {}",
                describe(&e)
            )
        });
    TaskRow {
        status: row.get(0),
        attempts: row.get(1),
        error_message: row.get(2),
        worker_id: row.get(3),
    }
}

/// Calls `probe` every `every` until it returns Some; returns that and how long it took.
/// Panics, saying what was awaited, when `within` passes first.
pub async fn wait_until<T, F, Fut>(
    within: Duration,
    every: Duration,
    what: &str,
    mut probe: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return (found, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Whether an error means the connection is gone (the server crashed, is starting up or
/// recovering), rather than an error the server reported for the statement.
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // 57: operator intervention (crash shutdown, cannot connect now); 08: connection
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("57P") || code.starts_with("08")
        }
    }
}

/// A connection, or the error that prevented it; its driver runs on its own tokio task.
pub async fn try_connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects, retrying every 100 ms while the server is down or recovering; panics at
/// `deadline`.
pub async fn connect_retrying(url: &str, deadline: Instant) -> Client {
    loop {
        match try_connect(url).await {
            Ok(client) => return client,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {url}: {}",
                    describe(&e)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The server's environment as the postmaster was started with it (what every backend
/// inherits): NAME=VALUE strings from /proc/<postmaster pid>/environ.
pub async fn postmaster_environment() -> Vec<String> {
    let pid_file = state_dir().await.join("pgdata/postmaster.pid");
    let pids = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let pid = pids.lines().next().unwrap_or_default().trim().to_string();
    let environ = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/environ of the postmaster: {e}"));
    environ
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The regression test for Rust backtraces in error details: the server runs with
/// RUST_BACKTRACE=1 in its environment (scripts/test-ops.sh sets QF_SERVER_ENV), yet an API
/// error and a PostgreSQL error raised inside the extension's Rust code reach the driver with
/// no DETAIL. Database `db` is created afresh.
///
/// pgrx 0.18 captures a backtrace in its panic hook, and puts it in the DETAIL of errors that
/// PostgreSQL raised inside a guarded call (converted into a Rust panic and back) and of Rust
/// panics, not of the `ErrorReport`s the API returns: the statement timeout is the check that
/// fails when the library does not set RUST_LIB_BACKTRACE=0 (the 0.1.0 library shows it).
pub async fn check_errors_carry_no_rust_backtrace(db: &str) {
    let _up = SERVER.read().await;
    let environment = postmaster_environment().await;
    assert!(
        environment.iter().any(|v| v == "RUST_BACKTRACE=1"),
        "the premise: the server runs with RUST_BACKTRACE=1 (QF_SERVER_ENV); its environment: \
         {environment:?}"
    );
    assert!(
        !environment
            .iter()
            .any(|v| v.starts_with("RUST_LIB_BACKTRACE=")),
        "the premise: RUST_LIB_BACKTRACE is not in the server's environment: {environment:?}"
    );

    let url = fresh_database_alone(db).await;
    let client = connect(&url).await;
    exec(
        &client,
        "SELECT quantum_flow.create_flow('errors'); SELECT quantum_flow.add_step('errors', 'a');",
    )
    .await;

    // An error the extension raises (pgrx's ErrorReport path).
    let missing = Uuid::new_v4();
    let err = client
        .query_one("SELECT quantum_flow.get_run($1)", &[&missing])
        .await
        .expect_err("get_run of a run that does not exist must fail");
    let db_error = err.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "P0002");
    assert_eq!(db_error.severity(), "ERROR");
    assert_eq!(
        db_error.message(),
        format!("run_not_found: run {missing} does not exist")
    );
    assert_eq!(db_error.detail(), None, "no backtrace in the DETAIL");
    assert_eq!(db_error.hint(), None);

    // A PostgreSQL error raised inside the extension's Rust code (a statement timeout caught
    // at poll_tasks' wait, where pgrx converts it into a Rust panic and back).
    exec(&client, "SET statement_timeout = '300ms'").await;
    let err = client
        .query(
            "SELECT * FROM quantum_flow.poll_tasks('errors', max_wait_ms => 10000)",
            &[],
        )
        .await
        .expect_err("the statement timeout must cancel the waiting poll");
    let db_error = err.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "57014");
    assert_eq!(
        db_error.message(),
        "canceling statement due to statement timeout"
    );
    assert_eq!(db_error.detail(), None, "no backtrace in the DETAIL");
    drop(client);
}
