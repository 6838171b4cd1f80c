//! A worker process for tests/crash.rs: `e2e_worker <db url> <workflow slug> <batch size> <mode>`.
//!
//! * `hold`: claim tasks (waiting for some if needed), print `claimed <n> <i,j,...>` (the
//!   claimed task indexes), then sleep forever without answering: the test kills it.
//! * `work`: process tasks forever with `crash_handler`, printing one line per task,
//!   `task <step> <index> <attempt> <answer>`.
//!
//! Lines are flushed at once so the test sees them as they happen.

use quantum_flow_e2e::*;
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, slug, batch_size, mode] = args.as_slice() else {
        eprintln!("usage: e2e_worker <db url> <workflow slug> <batch size> hold|work");
        std::process::exit(2);
    };
    let batch_size: i32 = batch_size.parse().expect("batch size must be an integer");
    let client = connect(url).await;
    let mut out = std::io::stdout();
    match mode.as_str() {
        "hold" => {
            let tasks = loop {
                let tasks = poll(&client, slug, batch_size, 1000)
                    .await
                    .unwrap_or_else(|e| panic!("poll_tasks: {}", describe(&e)));
                if !tasks.is_empty() {
                    break tasks;
                }
            };
            let indexes: Vec<String> = tasks.iter().map(|t| t.task_index.to_string()).collect();
            writeln!(out, "claimed {} {}", tasks.len(), indexes.join(",")).unwrap();
            out.flush().unwrap();
            // Never answer: the claims stay open until their timeout.
            std::future::pending::<()>().await;
        }
        "work" => {
            let mut handler = crash_handler;
            loop {
                let processed = work_once(&client, slug, batch_size, 1000, &mut handler)
                    .await
                    .unwrap_or_else(|e| panic!("worker: {}", describe(&e)));
                for p in processed {
                    let answer = match p.answered {
                        Answered::Completed(done) => format!("completed={done}"),
                        Answered::Failed(status) => format!("failed={status}"),
                    };
                    writeln!(
                        out,
                        "task {} {} {} {answer}",
                        p.task.step_slug, p.task.task_index, p.task.attempt
                    )
                    .unwrap();
                }
                out.flush().unwrap();
            }
        }
        other => {
            eprintln!("unknown mode {other:?}: expected hold or work");
            std::process::exit(2);
        }
    }
}
