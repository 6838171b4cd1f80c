//! (p) The map workloads of (f), (a) and (g) driven by the Python client's Worker
//! (clients/python), run by bench/python/map_workers.py in a subprocess: the root map and the
//! dependent map with one complete_task per task (`complete_in_batches=False`), and the
//! dependent map with `complete_in_batches=True`. The Rust side starts the run and holds the
//! clock exactly as in (a): start_flow sent (the Python workers already polling) until
//! get_run says completed.

use crate::{
    check_identity_output, numbers, prepare_start_flow, until_completed, Options, Result,
    PHASE_LIMIT, PY_MAP_FLOW, PY_ROOT_FLOW, STALL_LIMIT,
};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_postgres::Client;
use uuid::Uuid;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/map_workers.py");
/// The virtualenv scripts/bench.sh (and scripts/test-clients.sh) keep clients/python in.
const VENV_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.qf/venv/bin/python");

#[derive(Clone, Copy, PartialEq)]
pub enum PyCase {
    Root,
    Dependent,
    Batched,
}

impl PyCase {
    pub const ALL: [PyCase; 3] = [PyCase::Root, PyCase::Dependent, PyCase::Batched];

    pub fn label(self) -> &'static str {
        match self {
            PyCase::Root => "root map, complete_task per task",
            PyCase::Dependent => "dependent map, complete_task per task",
            PyCase::Batched => "dependent map, complete_in_batches",
        }
    }
}

pub struct PyRun {
    pub elapsed: Duration,
    pub tasks: usize,
    /// whether the Worker really completed in batches (False when the client lacks the option)
    pub batches: bool,
}

pub struct PyCaseResult {
    pub case: PyCase,
    pub result: Result<PyRun>,
}

pub struct PyResults {
    /// interpreter, its version, the client module it imported
    pub python: String,
    pub client: String,
    /// whether the Worker has the complete_in_batches keyword
    pub batches_supported: Option<bool>,
    pub cases: Vec<PyCaseResult>,
}

pub fn interpreter(o: &Options) -> String {
    if let Some(p) = &o.python {
        return p.clone();
    }
    if let Ok(p) = std::env::var("QF_BENCH_PYTHON") {
        return p;
    }
    if std::path::Path::new(VENV_PYTHON).exists() {
        return VENV_PYTHON.to_string();
    }
    "python3".to_string()
}

/// The subprocess and its stdout, one JSON object a line.
struct Script {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Script {
    /// The next line, within `limit`: None at end of output.
    async fn next(&mut self, limit: Duration) -> Result<Option<Value>> {
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Err(_) => Err(format!("the Python workers said nothing for {limit:?}").into()),
            Ok(line) => match line? {
                None => Ok(None),
                Some(l) => Ok(Some(serde_json::from_str(&l).map_err(|e| {
                    format!("the Python workers wrote a line that is not JSON ({e}): {l}")
                })?)),
            },
        }
    }

    /// The next line that has `key` (errors the script reports are errors here).
    async fn expect(&mut self, key: &str, limit: Duration) -> Result<Value> {
        loop {
            let Some(v) = self.next(limit).await? else {
                let status = self.child.wait().await?;
                return Err(format!("the Python workers exited ({status}) before {key:?}").into());
            };
            if let Some(e) = v.get("error") {
                return Err(format!("Python workers: {}", e.as_str().unwrap_or("?")).into());
            }
            if v.get(key).is_some() {
                return Ok(v);
            }
        }
    }
}

/// One Python workload: start the script, wait for it to be ready, start the run, wait for
/// the script's "done" and for get_run to say completed, stop the workers, check their stats
/// and the output.
async fn run_case(
    o: &Options,
    control: &Client,
    python: &str,
    case: PyCase,
    info: &mut PyResults,
) -> Result<PyRun> {
    let n = o.map_tasks;
    let (workflow, input, tasks) = match case {
        PyCase::Root => (PY_ROOT_FLOW, numbers(n), n),
        PyCase::Dependent | PyCase::Batched => (PY_MAP_FLOW, json!({}), n + 1),
    };
    let mut child = Command::new(python)
        .arg(SCRIPT)
        .args(["--workflow", workflow])
        .args(["--fetch-items", &n.to_string()])
        .args(["--expect", &tasks.to_string()])
        .args(["--workers", &o.py_workers.to_string()])
        .args(["--batch-size", &o.batch_size.to_string()])
        .args(["--concurrency", &o.py_concurrency.to_string()])
        .args(["--max-wait-ms", &o.max_wait_ms.to_string()])
        .args([
            "--complete-in-batches",
            if case == PyCase::Batched { "on" } else { "off" },
        ])
        .arg(&o.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {python} (use --python PATH, or make bench, which creates the \
                 virtualenv .qf/venv): {e}"
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut script = Script {
        child,
        lines: BufReader::new(stdout).lines(),
    };
    let ready = script.expect("ready", Duration::from_secs(60)).await?;
    info.python = format!(
        "{python} (Python {})",
        ready["python"].as_str().unwrap_or("?")
    );
    info.client = ready["client"].as_str().unwrap_or("?").to_string();
    info.batches_supported = ready["complete_in_batches_supported"].as_bool();
    let batches = ready["complete_in_batches"].as_bool() == Some(true);

    let start_flow = prepare_start_flow(control).await?;
    // the workers' first polls are waiting
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let run_id: Uuid = control
        .query_one(&start_flow, &[&workflow, &input])
        .await?
        .get(0);
    let deadline = t0 + PHASE_LIMIT;
    let mut seen = (0u64, Instant::now());
    loop {
        let Some(v) = script.next(STALL_LIMIT).await? else {
            let status = script.child.wait().await?;
            return Err(
                format!("the Python workers exited ({status}) before the run completed").into(),
            );
        };
        if let Some(e) = v.get("error") {
            return Err(format!("Python workers: {}", e.as_str().unwrap_or("?")).into());
        }
        if v.get("done").is_some() {
            break;
        }
        if let Some(done) = v["progress"].as_u64() {
            if done != seen.0 {
                seen = (done, Instant::now());
            } else if seen.1.elapsed() > STALL_LIMIT {
                return Err(format!(
                    "stalled: the Python workers completed {done} of {tasks} tasks, none in the \
                     last {STALL_LIMIT:?}"
                )
                .into());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the run did not complete within {PHASE_LIMIT:?}").into());
        }
    }
    let doc = until_completed(control, run_id).await?;
    let elapsed = t0.elapsed();

    stdin.write_all(b"stop\n").await?;
    stdin.flush().await?;
    let stats = script.expect("stats", Duration::from_secs(60)).await?;
    let status = script.child.wait().await?;
    if let Some(errors) = stats["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(format!("Python workers stopped with errors: {errors:?}").into());
    }
    if !status.success() {
        return Err(format!("the Python workers exited with {status}").into());
    }
    let s = &stats["stats"];
    let (completed, failed, ignored) = (
        s["completed"].as_u64().unwrap_or(0),
        s["failed"].as_u64().unwrap_or(0),
        s["ignored"].as_u64().unwrap_or(0),
    );
    if completed != tasks as u64 || failed != 0 || ignored != 0 {
        return Err(format!(
            "the Python workers completed {completed} tasks (expected {tasks}), failed {failed}, \
             had {ignored} answers ignored"
        )
        .into());
    }
    check_identity_output(&doc, "items", n)?;
    Ok(PyRun {
        elapsed,
        tasks,
        batches,
    })
}

/// (p) The three workloads, one subprocess each; a workload that fails does not stop the
/// others.
pub async fn phase(o: &Options, control: &Client) -> Result<PyResults> {
    let python = interpreter(o);
    let mut info = PyResults {
        python: python.clone(),
        client: "?".to_string(),
        batches_supported: None,
        cases: Vec::new(),
    };
    for case in PyCase::ALL {
        let result = run_case(o, control, &python, case, &mut info).await;
        info.cases.push(PyCaseResult { case, result });
    }
    Ok(info)
}
