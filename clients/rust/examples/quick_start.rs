//! The Quick Start with the Rust client.
//!
//! cargo run -p quantum_flow_client --example quick_start -- postgres://postgres@127.0.0.1:5432/postgres
//! (a database where `CREATE EXTENSION quantum_flow CASCADE` has been run)

use quantum_flow_client::{
    add_step, connect, create_flow, execute_dynamic, ExecuteOptions, FlowOptions, StepFunctions,
    StepOptions,
};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = connect(&url, "quick_start").await?;

    // 1. Define the workflow (create_flow and add_step are idempotent for an identical
    //    definition, so this example can run again).
    create_flow(
        &db,
        "ai_data_pipeline",
        &FlowOptions::new().max_attempts(5).timeout(60),
    )
    .await?;
    add_step(&db, "ai_data_pipeline", "fetch_data", &StepOptions::new()).await?;
    add_step(
        &db,
        "ai_data_pipeline",
        "process_batch",
        &StepOptions::new()
            .depends_on(["fetch_data"])
            .map()
            .initial_tasks(100),
    )
    .await?;
    add_step(
        &db,
        "ai_data_pipeline",
        "save_results",
        &StepOptions::new().depends_on(["process_batch"]),
    )
    .await?;

    // 2. Step implementations: async closures from the step's input to its output.
    let steps = StepFunctions::new()
        .step("fetch_data", |_input| async {
            Ok(json!((1..=100).collect::<Vec<i64>>()))
        })
        .step("process_batch", |input| async move {
            let item = input["item"].as_i64().ok_or("item is not an integer")?;
            Ok(json!({"processed": item * 2}))
        })
        .step("save_results", |input| async move {
            let outputs = input["process_batch"]
                .as_array()
                .ok_or("no process_batch output")?;
            Ok(json!({"saved": outputs.len()}))
        });

    // 3. Run it to the end with an in-process worker.
    let output = execute_dynamic(
        &url,
        "ai_data_pipeline",
        json!({"initial": "data"}),
        steps,
        ExecuteOptions::default(),
    )
    .await?;
    println!("{output}"); // {"save_results":{"saved":100}}
    Ok(())
}
