//! `make demo`: the README's reference workflows, run end to end by separate worker processes.
//!
//! ```text
//! quantum_flow_demo <database-url> [--fresh-database NAME] [--workers N]
//! quantum_flow_demo worker <database-url> --id NAME [--concurrency N] <workflow-slug>...
//! ```
//!
//! The main process works in the URL's database (`make demo` gives it a fresh one; with
//! `--fresh-database NAME` it drops and creates database NAME on that cluster itself),
//! installs the extension if missing, defines three workflows (the README's Quick Start, its
//! ETL over `demo/data/customers.csv`, and the workflow an LLM wrote: the
//! `definition` of `demo/data/llm_workflow.json`, defined with `define_flow`), starts worker
//! processes (this binary in `worker` mode), starts one run of each workflow and shows their
//! progress until they end. Workers stop when their stdin closes and print their stats as
//! one JSON line.

mod csv;
mod handlers;
mod progress;

use handlers::{ETL, PIPELINE};
use quantum_flow_client::{
    self as qf, get_flow_document, shutdown_channel, FlowOptions, RunStatus, StepOptions, Worker,
    WorkerConfig, WorkerStats,
};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage:
  quantum_flow_demo <database-url> [--fresh-database NAME] [--workers N]
  quantum_flow_demo worker <database-url> --id NAME [--concurrency N] <workflow-slug>...";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("worker") => worker_main(&args[1..]).await,
        Some(url) if !url.starts_with('-') => demo_main(url, &args[1..]).await,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quantum_flow_demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// `url` with its database replaced by `dbname` (URL or key=value form).
fn with_database(url: &str, dbname: &str) -> String {
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let (main, query) = match url.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (url, None),
        };
        let authority = match main[scheme_end..].find('/') {
            Some(i) => &main[..scheme_end + i],
            None => main,
        };
        match query {
            Some(q) => format!("{authority}/{dbname}?{q}"),
            None => format!("{authority}/{dbname}"),
        }
    } else {
        format!("{url} dbname={dbname}")
    }
}

/// Pretty JSON, cut to `max_lines` lines.
fn truncated(value: &Value, max_lines: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max_lines {
        return text;
    }
    format!(
        "{}\n  ... ({} more lines)",
        lines[..max_lines].join("\n"),
        lines.len() - max_lines
    )
}

/// A get_flow document as valid JSON, one line for the workflow and one per step.
fn flow_json(document: &Value) -> String {
    let mut head = document.clone();
    let steps = head
        .as_object_mut()
        .and_then(|o| o.remove("steps"))
        .and_then(|s| s.as_array().cloned())
        .unwrap_or_default();
    let head = head.to_string();
    let steps: Vec<String> = steps.iter().map(|s| format!("  {s}")).collect();
    format!(
        "{}, \"steps\": [\n{}\n]}}",
        head.strip_suffix('}').unwrap_or(&head),
        steps.join(",\n")
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// main process
// ---------------------------------------------------------------------------------------

struct DemoOptions {
    database: Option<String>,
    workers: usize,
}

fn parse_demo_options(args: &[String]) -> Result<DemoOptions, BoxError> {
    let mut options = DemoOptions {
        database: None,
        workers: 3,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fresh-database" => options.database = Some(args.next().ok_or(USAGE)?.clone()),
            "--workers" => options.workers = args.next().ok_or(USAGE)?.parse()?,
            _ => return Err(USAGE.into()),
        }
    }
    options.workers = options.workers.max(1);
    Ok(options)
}

async fn demo_main(url: &str, args: &[String]) -> Result<ExitCode, BoxError> {
    let options = parse_demo_options(args)?;
    println!("quantum_flow demo: the README's workflows, worked by separate worker processes\n");

    // 1. A database with the extension and the demo's own tables.
    let db_url = match &options.database {
        Some(name) => {
            let admin = qf::connect(url, "quantum_flow demo").await?;
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
            with_database(url, name)
        }
        None => url.to_string(),
    };
    let db = qf::connect(&db_url, "quantum_flow demo").await?;
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS quantum_flow CASCADE;
         CREATE TABLE IF NOT EXISTS demo_customers (
             batch uuid NOT NULL, line int NOT NULL, name text NOT NULL, email text NOT NULL,
             amount_cents bigint NOT NULL CHECK (amount_cents >= 0), country text NOT NULL,
             signup_date date NOT NULL, PRIMARY KEY (batch, line));
         CREATE TABLE IF NOT EXISTS demo_rate_limits (
             batch uuid NOT NULL, ticket_id text NOT NULL, PRIMARY KEY (batch, ticket_id));",
    )
    .await?;
    let version: String = db
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'quantum_flow'",
            &[],
        )
        .await?
        .get(0);
    let where_ = match &options.database {
        Some(name) => format!("fresh database {name}"),
        None => format!(
            "database {}",
            db.query_one("SELECT current_database()", &[])
                .await?
                .get::<_, String>(0)
        ),
    };
    println!("== setup: {where_}, quantum_flow {version}");

    // 2. The three workflows.
    qf::create_flow(
        &db,
        PIPELINE,
        &FlowOptions::new().max_attempts(5).timeout(60),
    )
    .await?;
    qf::add_step(&db, PIPELINE, "fetch_data", &StepOptions::new()).await?;
    qf::add_step(
        &db,
        PIPELINE,
        "process_batch",
        &StepOptions::new()
            .depends_on(["fetch_data"])
            .map()
            .initial_tasks(100),
    )
    .await?;
    qf::add_step(
        &db,
        PIPELINE,
        "save_results",
        &StepOptions::new().depends_on(["process_batch"]),
    )
    .await?;

    qf::create_flow(&db, ETL, &FlowOptions::new()).await?;
    qf::add_step(&db, ETL, "extract_csv", &StepOptions::new()).await?;
    qf::add_step(
        &db,
        ETL,
        "validate_rows",
        &StepOptions::new()
            .depends_on(["extract_csv"])
            .map()
            .initial_tasks(50),
    )
    .await?;
    qf::add_step(
        &db,
        ETL,
        "load_db",
        &StepOptions::new().depends_on(["validate_rows"]),
    )
    .await?;

    // What the LLM answered: the prompt it was given, the workflow document it wrote (under
    // "definition", handed to define_flow as it is) and an input to run it on.
    let llm_path = data_dir().join("llm_workflow.json");
    let llm_file = llm_path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .map(|p| format!("demo/{}", p.display()))
        .unwrap_or_else(|_| llm_path.display().to_string());
    let llm_text =
        std::fs::read_to_string(&llm_path).map_err(|e| format!("cannot read {llm_file}: {e}"))?;
    let llm_answer: Value =
        serde_json::from_str(&llm_text).map_err(|e| format!("{llm_file}: {e}"))?;
    let definition = llm_answer
        .get("definition")
        .ok_or_else(|| format!("{llm_file} has no \"definition\""))?;
    let llm = match qf::define_flow(&db, definition).await {
        Ok(flow) => flow,
        Err(e) => {
            // Every problem of the document at once, as an LLM would be told to fix them.
            eprintln!("define_flow refused the workflow of {llm_file}:");
            for problem in e.problems().unwrap_or_default() {
                eprintln!("  {problem}");
            }
            return Err(e.into());
        }
    };

    println!("== defined 3 workflows");
    for slug in [PIPELINE, ETL, llm.workflow_slug.as_str()] {
        let flow = qf::get_flow(&db, slug).await?;
        let steps: Vec<String> = flow
            .steps
            .iter()
            .map(|s| {
                let deps = if s.depends_on.is_empty() {
                    String::new()
                } else {
                    format!(" <- {}", s.depends_on.join(", "))
                };
                format!("{} ({}{deps})", s.step_slug, s.step_type)
            })
            .collect();
        println!("  {slug}: {}", steps.join("; "));
    }
    println!(
        "  ({} came from {llm_file}: the LLM listed write_summary first; define_flow added \
         its steps in dependency order, in one statement)",
        llm.workflow_slug,
    );
    for slug in [PIPELINE, ETL] {
        println!("\n== get_flow('{slug}')");
        println!(
            "{}",
            indent(&flow_json(&get_flow_document(&db, slug).await?))
        );
    }

    // 3. Worker processes: this binary in worker mode, each working all three workflows.
    let exe = std::env::current_exe()?;
    let mut workers: Vec<(String, Child)> = Vec::new();
    for i in 1..=options.workers {
        let id = format!("worker-{i}");
        let child = Command::new(&exe)
            .args(["worker", &db_url, "--id", &id, "--concurrency", "4"])
            .args([PIPELINE, ETL, llm.workflow_slug.as_str()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        workers.push((id, child));
    }
    let pids: Vec<String> = workers
        .iter()
        .map(|(id, c)| format!("{id} (pid {})", c.id().unwrap_or(0)))
        .collect();
    println!(
        "\n== started {} worker processes: {}",
        workers.len(),
        pids.join(", ")
    );

    // 4. One run of each workflow, all at once.
    let csv_path = data_dir().join("customers.csv");
    let etl_batch = qf::uuid::Uuid::new_v4();
    let mut llm_input = llm_answer.get("input").cloned().unwrap_or(json!({}));
    if let Some(obj) = llm_input.as_object_mut() {
        obj.insert("batch".into(), json!(qf::uuid::Uuid::new_v4()));
    }
    let runs = [
        (PIPELINE.to_string(), json!({"initial": "data"})),
        (
            ETL.to_string(),
            json!({"csv_path": csv_path.display().to_string(), "batch": etl_batch}),
        ),
        (llm.workflow_slug.clone(), llm_input),
    ];
    let began = Instant::now();
    let mut run_ids = Vec::new();
    for (slug, input) in &runs {
        run_ids.push((slug.clone(), qf::start_flow(&db, slug, input, None).await?));
    }
    println!("== started 3 runs; progress (tasks done/total per step, from get_run):\n");

    // 5. Progress until every run has ended.
    let mut display = progress::Display::new(std::io::stdout().is_terminal());
    let give_up = began + Duration::from_secs(300);
    let finished = loop {
        let mut states = Vec::new();
        for (slug, run_id) in &run_ids {
            states.push((slug.clone(), qf::get_run(&db, *run_id).await?));
        }
        display.frame(&states, began.elapsed());
        if states
            .iter()
            .all(|(_, r)| !matches!(r.status, RunStatus::Started | RunStatus::Paused))
        {
            break states;
        }
        if Instant::now() > give_up {
            return Err("the runs did not finish within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // 6. Results.
    println!("\n== results");
    let mut all_completed = true;
    for (slug, run) in &finished {
        let end = run.completed_at.or(run.failed_at).unwrap_or(run.started_at);
        let took = (end - run.started_at).num_milliseconds() as f64 / 1000.0;
        println!(
            "  {slug}: {} in {took:.2} s (run {})",
            progress::run_status(run),
            run.run_id
        );
        match run.status {
            RunStatus::Completed => {
                println!(
                    "{}",
                    indent(&truncated(&run.output.clone().unwrap_or(Value::Null), 24))
                )
            }
            _ => {
                all_completed = false;
                println!(
                    "    error: {}",
                    run.error_message.clone().unwrap_or_default()
                );
            }
        }
    }
    let row = db
        .query_one(
            "SELECT count(*), coalesce(sum(amount_cents), 0)::bigint, count(DISTINCT country) \
             FROM demo_customers WHERE batch = $1",
            &[&etl_batch],
        )
        .await?;
    let (count, cents, countries): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    println!(
        "  table demo_customers now holds {count} rows of this batch: total amount {}.{:02}, \
         {countries} countries",
        cents / 100,
        cents % 100
    );

    // 7. Stop the workers (closing their stdin) and show what each did.
    println!("\n== workers (stopped by closing their stdin; each finishes what it holds)");
    println!(
        "  (a failed attempt is a handler error reported with fail_task and retried after \
         backoff: ticket T-1007's first classification gets a simulated 429)"
    );
    for (id, mut child) in workers {
        drop(child.stdin.take());
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_string(&mut out).await?;
        }
        let status = child.wait().await?;
        let stats: Option<Value> = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        match stats {
            Some(s) if status.success() => println!(
                "  {id} (pid {}): claimed {}, completed {}, failed attempts {}, ignored answers {}",
                s["pid"], s["claimed"], s["completed"], s["failed"], s["ignored"]
            ),
            _ => {
                all_completed = false;
                println!("  {id}: exited with {status}");
            }
        }
    }
    println!("\ntotal wall time {:.2} s", began.elapsed().as_secs_f64());
    Ok(if all_completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------
// worker process
// ---------------------------------------------------------------------------------------

async fn worker_main(args: &[String]) -> Result<ExitCode, BoxError> {
    let mut args = args.iter();
    let url = args.next().ok_or(USAGE)?.clone();
    let mut id = format!("worker-{}", std::process::id());
    let mut concurrency = 4;
    let mut slugs = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--id" => id = args.next().ok_or(USAGE)?.clone(),
            "--concurrency" => concurrency = args.next().ok_or(USAGE)?.parse()?,
            slug => slugs.push(slug.to_string()),
        }
    }
    if slugs.is_empty() {
        return Err(USAGE.into());
    }

    let db = Arc::new(qf::connect(&url, &format!("quantum_flow demo {id} handlers")).await?);
    let (stop, shutdown) = shutdown_channel();
    let mut running = Vec::new();
    for slug in &slugs {
        let steps = handlers::for_workflow(slug, db.clone())
            .ok_or_else(|| format!("the demo has no handlers for workflow {slug:?}"))?;
        let config = WorkerConfig::new(slug.as_str())
            .worker_id(id.as_str())
            .concurrency(concurrency)
            .max_wait_ms(1000)
            .shutdown_deadline(Duration::from_secs(10));
        let worker = Worker::connect(&url, config, steps).await?;
        running.push(tokio::spawn(worker.run(shutdown.clone())));
    }

    // The parent closes our stdin to stop us.
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
        let _ = stop.send(true);
    });

    let mut total = WorkerStats::default();
    for handle in running {
        let stats = handle.await??;
        total.claimed += stats.claimed;
        total.completed += stats.completed;
        total.failed += stats.failed;
        total.ignored += stats.ignored;
        total.abandoned += stats.abandoned;
        total.answer_errors += stats.answer_errors;
    }
    println!(
        "{}",
        json!({
            "id": id, "pid": std::process::id(), "claimed": total.claimed,
            "completed": total.completed, "failed": total.failed, "ignored": total.ignored,
            "abandoned": total.abandoned, "answer_errors": total.answer_errors,
        })
    );
    Ok(ExitCode::SUCCESS)
}
