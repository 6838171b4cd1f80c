//! API errors reach a client (tokio-postgres, extended protocol, bound parameters) with their
//! SQLSTATE and a message that starts with the stable code word.

use quantum_flow_e2e::*;
use serde_json::json;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use uuid::Uuid;

/// Runs `sql`, which must fail with `sqlstate` and a message starting with `code: `; returns
/// the message.
async fn expect_error(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    sqlstate: &str,
    code: &str,
) -> String {
    let err = match client.query(sql, params).await {
        Ok(rows) => panic!("{sql} succeeded ({} rows), expected {code}", rows.len()),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"));
    assert_eq!(
        (db.code().code(), db.severity()),
        (sqlstate, "ERROR"),
        "{sql}: {}",
        db.message()
    );
    assert!(
        db.message().starts_with(&format!("{code}: ")),
        "{sql}: message {:?} does not start with {code:?}",
        db.message()
    );
    db.message().to_string()
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn api_errors_carry_their_sqlstate_and_code() {
    let url = fresh_database("qf_e2e_errors").await;
    let c = connect(&url).await;
    exec(
        &c,
        "SELECT quantum_flow.create_flow('errs'); \
         SELECT quantum_flow.add_step('errs', 'a'); \
         SELECT quantum_flow.add_step('errs', 'b'); \
         SELECT quantum_flow.create_flow('empty'); \
         SELECT quantum_flow.create_flow('maps'); \
         SELECT quantum_flow.add_step('maps', 'm', step_type => 'map');",
    )
    .await;
    let steps_before = count(&c, "SELECT count(*) FROM quantum_flow.workflow_steps").await;
    let flows_before = count(&c, "SELECT count(*) FROM quantum_flow.workflows").await;

    // Definitions.
    let m = expect_error(
        &c,
        "SELECT quantum_flow.create_flow($1)",
        &[&"9lives"],
        "22023",
        "invalid_workflow_slug",
    )
    .await;
    assert!(m.contains("9lives"), "{m}");
    let long = "w".repeat(45);
    expect_error(
        &c,
        "SELECT quantum_flow.create_flow($1)",
        &[&long],
        "22023",
        "invalid_workflow_slug",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2)",
        &[&"errs", &"bad-slug"],
        "22023",
        "invalid_step_slug",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2)",
        &[&"errs", &"run"],
        "22023",
        "invalid_step_slug",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2, step_type => $3)",
        &[&"errs", &"c", &"loop"],
        "22023",
        "invalid_step_type",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.create_flow($1, max_attempts => $2)",
        &[&"other", &0i32],
        "22023",
        "invalid_option",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.create_flow($1, max_attempts => $2)",
        &[&"errs", &5i32],
        "23505",
        "workflow_exists",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.create_flow($1)",
        &[&"ERRS"],
        "23505",
        "workflow_exists",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2, $3)",
        &[&"errs", &"b", &vec!["a"]],
        "23505",
        "step_exists",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2, $3)",
        &[&"errs", &"c", &vec!["a", "a"]],
        "23505",
        "duplicate_dependency",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2, $3)",
        &[&"errs", &"c", &vec!["zzz"]],
        "23503",
        "dependency_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2, $3)",
        &[&"errs", &"c", &vec!["c"]],
        "23514",
        "self_dependency",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2, $3, step_type => 'map')",
        &[&"errs", &"c", &vec!["a", "b"]],
        "23514",
        "map_step_too_many_dependencies",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.get_flow($1)",
        &[&"nope"],
        "P0002",
        "workflow_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2)",
        &[&"nope", &"a"],
        "P0002",
        "workflow_not_found",
    )
    .await;
    // Nothing was written by the failed calls.
    assert_eq!(
        count(&c, "SELECT count(*) FROM quantum_flow.workflow_steps").await,
        steps_before
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM quantum_flow.workflows").await,
        flows_before
    );

    // Runs.
    expect_error(
        &c,
        "SELECT quantum_flow.start_flow($1)",
        &[&"nope"],
        "P0002",
        "workflow_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.start_flow($1)",
        &[&"empty"],
        "55000",
        "workflow_has_no_steps",
    )
    .await;
    let m = expect_error(
        &c,
        "SELECT quantum_flow.start_flow($1, $2)",
        &[&"maps", &json!({"not": "an array"})],
        "22023",
        "invalid_map_input",
    )
    .await;
    assert!(m.contains("object"), "{m}");
    let run = Uuid::new_v4();
    let started: Uuid = c
        .query_one(
            "SELECT quantum_flow.start_flow($1, $2, $3)",
            &[&"errs", &json!({}), &run],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(started, run);
    let m = expect_error(
        &c,
        "SELECT quantum_flow.start_flow($1, $2, $3)",
        &[&"errs", &json!({}), &run],
        "23505",
        "run_exists",
    )
    .await;
    assert!(m.contains(&run.to_string()), "{m}");
    expect_error(
        &c,
        "SELECT quantum_flow.add_step($1, $2)",
        &[&"errs", &"c"],
        "55006",
        "workflow_has_active_runs",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.delete_flow($1)",
        &[&"errs"],
        "55006",
        "workflow_has_active_runs",
    )
    .await;
    let unknown = Uuid::new_v4();
    expect_error(
        &c,
        "SELECT quantum_flow.get_run($1)",
        &[&unknown],
        "P0002",
        "run_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.complete_task($1, 'a', 0, '1')",
        &[&unknown],
        "P0002",
        "run_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.complete_task($1, 'a', 5, '1')",
        &[&run],
        "P0002",
        "task_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT quantum_flow.fail_task($1, 'zz', 0, 'x')",
        &[&run],
        "P0002",
        "task_not_found",
    )
    .await;
    expect_error(
        &c,
        "SELECT * FROM quantum_flow.poll_tasks($1, batch_size => $2)",
        &[&"errs", &0i32],
        "22023",
        "invalid_option",
    )
    .await;

    // NULL arguments, bound as parameters.
    let null_text: Option<&str> = None;
    let null_uuid: Option<Uuid> = None;
    let m = expect_error(
        &c,
        "SELECT quantum_flow.start_flow($1)",
        &[&null_text],
        "22004",
        "null_argument",
    )
    .await;
    assert_eq!(m, "null_argument: workflow_slug must not be NULL");
    let m = expect_error(
        &c,
        "SELECT quantum_flow.complete_task($1, $2, 0, '1')",
        &[&run, &null_text],
        "22004",
        "null_argument",
    )
    .await;
    assert_eq!(m, "null_argument: step_slug must not be NULL");
    let m = expect_error(
        &c,
        "SELECT quantum_flow.get_run($1)",
        &[&null_uuid],
        "22004",
        "null_argument",
    )
    .await;
    assert_eq!(m, "null_argument: run_id must not be NULL");
    let m = expect_error(
        &c,
        "SELECT * FROM quantum_flow.poll_tasks($1)",
        &[&null_text],
        "22004",
        "null_argument",
    )
    .await;
    assert_eq!(m, "null_argument: workflow_slug must not be NULL");

    // The errors left the run as it was, and the session usable.
    let doc = get_run(&c, run).await;
    assert_eq!(doc["status"], "started");
    let tasks = poll(&c, "errs", 10, 0).await.unwrap();
    assert_eq!(tasks.len(), 2);
}
