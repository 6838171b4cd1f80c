//! A real worker process dies (SIGKILL) holding claimed tasks: after the step's timeout the
//! tasks reach another worker process as attempt 2 and the run completes exactly.

use quantum_flow_e2e::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FLOW: &str = "crash";
const ITEMS: i64 = 20;
const HELD: usize = 8;
const STEP_TIMEOUT_S: u64 = 2;

/// A worker process, killed (SIGKILL) when dropped so a failing test leaves nothing behind;
/// its stdout lines arrive on a channel with the time they were read.
struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl WorkerProcess {
    fn spawn(url: &str, batch_size: i32, mode: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_e2e_worker"))
            .args([url, FLOW, &batch_size.to_string(), mode])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn e2e_worker");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        WorkerProcess { child, lines }
    }

    async fn next_line(&self, within: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.try_recv() {
                Ok(line) => return Some(line),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if Instant::now() >= deadline => return None,
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
    }

    /// SIGKILL (what `Child::kill` sends on unix), then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (step, task_index) -> [(attempt, answer, when)] as the work-mode worker printed them.
type Answers = BTreeMap<(String, i32), Vec<(i32, String, Instant)>>;

/// Parses `task <step> <index> <attempt> <answer>`.
fn record(answers: &mut Answers, at: Instant, line: &str) {
    let f: Vec<&str> = line.split(' ').collect();
    assert!(
        f.len() == 5 && f[0] == "task",
        "unexpected worker line {line:?}"
    );
    answers
        .entry((f[1].to_string(), f[2].parse().unwrap()))
        .or_default()
        .push((f[3].parse().unwrap(), f[4].to_string(), at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_tasks_are_retried_after_the_timeout() {
    let url = fresh_database("qf_e2e_crash").await;
    let main = connect(&url).await;
    exec(
        &main,
        &format!(
            "SELECT quantum_flow.create_flow('{FLOW}', max_attempts => 3, base_delay => 0); \
             SELECT quantum_flow.add_step('{FLOW}', 'scale', step_type => 'map', timeout => {STEP_TIMEOUT_S}); \
             SELECT quantum_flow.add_step('{FLOW}', 'total', ARRAY['scale']);"
        ),
    )
    .await;
    let items: Vec<i64> = (1..=ITEMS).map(|i| i * 3).collect();
    let run = start_flow(&main, FLOW, &json!(items)).await;

    // A worker process claims some tasks and dies without answering.
    let spawned = Instant::now();
    let mut holder = WorkerProcess::spawn(&url, HELD as i32, "hold");
    let (_, line) = holder
        .next_line(Duration::from_secs(60))
        .await
        .expect("the holding worker never reported its claims");
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[..2], ["claimed", &HELD.to_string()], "{line}");
    let held: Vec<i32> = fields[2].split(',').map(|i| i.parse().unwrap()).collect();
    assert_eq!(held.len(), HELD);
    holder.kill();
    let status = holder.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the holder dies by SIGKILL"
    );

    // A second worker process does all the work; the held tasks reach it once their claims
    // time out.
    let worker = WorkerProcess::spawn(&url, 10, "work");
    let mut answered = Answers::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((at, line)) = worker.next_line(Duration::from_millis(500)).await {
            record(&mut answered, at, &line);
            continue;
        }
        if get_run(&main, run).await["status"] != "started" {
            // Drain what the worker printed for the last task.
            while let Some((at, line)) = worker.next_line(Duration::from_millis(300)).await {
                record(&mut answered, at, &line);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {}",
            get_run(&main, run).await
        );
    }
    drop(worker);

    // Each task answered once, by the second worker: held ones as attempt 2, after the
    // step's timeout; the others as attempt 1.
    assert_eq!(answered.len(), ITEMS as usize + 1, "{answered:?}");
    for ((step, index), answers) in &answered {
        assert_eq!(answers.len(), 1, "{step} {index}: {answers:?}");
        let (attempt, answer, at) = &answers[0];
        assert_eq!(answer, "completed=true", "{step} {index}");
        let expected_attempt = if step == "scale" && held.contains(index) {
            assert!(
                at.duration_since(spawned) >= Duration::from_secs(STEP_TIMEOUT_S),
                "held task {index} came back {:?} after the holder started, before the {STEP_TIMEOUT_S}s timeout",
                at.duration_since(spawned)
            );
            2
        } else {
            1
        };
        assert_eq!(*attempt, expected_attempt, "{step} {index}");
    }

    let scaled: Vec<i64> = items.iter().map(|i| i * 10).collect();
    let total: i64 = scaled.iter().sum();
    let doc = get_run(&main, run).await;
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(doc["output"], json!({ "total": total }));
    assert_eq!(doc["error_message"], serde_json::Value::Null);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["step_slug"], "scale");
    assert_eq!(steps[0]["status"], "completed");
    assert_eq!(steps[0]["tasks_total"], json!(ITEMS));
    assert_eq!(steps[0]["tasks_completed"], json!(ITEMS));
    assert_eq!(steps[0]["output"], json!(scaled));
    assert_eq!(steps[1]["step_slug"], "total");
    assert_eq!(steps[1]["status"], "completed");
    assert_eq!(steps[1]["tasks_total"], json!(1));
    assert_eq!(steps[1]["tasks_completed"], json!(1));
    assert_eq!(steps[1]["output"], json!(total));
    assert_eq!(queue_len(&main, FLOW).await, 0);
    assert_eq!(archive_len(&main, FLOW).await, 0);
}
