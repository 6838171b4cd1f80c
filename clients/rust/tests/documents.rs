//! The shared suite of flow documents (`tests/documents`) through the Rust client: every case
//! through `validate_flow_json` and `define_from_json` (the text goes to the server unread)
//! must reach exactly the verdict of `tests/documents/verdicts.json`.

mod common;

use common::{client, database};
use quantum_flow_client::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio_postgres::Client;

const DB: &str = "qf_rust_client_documents";

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/documents")
}

/// `(case name, JSON text)` of every `cases/*.json`, by name.
fn cases() -> Vec<(String, String)> {
    let mut cases: Vec<(String, String)> = std::fs::read_dir(suite_dir().join("cases"))
        .expect("tests/documents/cases")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            (name, text)
        })
        .collect();
    cases.sort();
    cases
}

fn verdicts() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(suite_dir().join("verdicts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A validation as a verdict: `valid` and each error's path and code, in order.
fn verdict_of(validation: &FlowValidation) -> Value {
    json!({
        "valid": validation.valid,
        "errors": validation.errors.iter()
            .map(|e| json!({"path": e.path, "code": e.code.as_str()}))
            .collect::<Vec<_>>(),
    })
}

async fn definition_rows(c: &Client) -> (i64, i64, i64) {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM quantum_flow.workflows),
                    (SELECT count(*) FROM quantum_flow.workflow_steps),
                    (SELECT count(*) FROM quantum_flow.workflow_step_dependencies_def)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// What is wrong with one case, if anything.
async fn check_case(c: &Client, text: &str, expected: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let validation = match validate_flow_json(c, text).await {
        Ok(v) => v,
        Err(e) => return vec![format!("validate_flow_json raised {e}")],
    };
    let verdict = verdict_of(&validation);
    if &verdict != expected {
        wrong.push(format!(
            "validate_flow: {verdict}\n      verdicts.json: {expected}"
        ));
    }
    // The same document as a value: the same answer.
    let value: Value = serde_json::from_str(text).unwrap();
    match validate_flow(c, &value).await {
        Ok(v) if v == validation => {}
        other => wrong.push(format!("validate_flow of the value differs: {other:?}")),
    }
    if validation.valid && !validation.warnings.is_empty() {
        wrong.push(format!(
            "warnings for a first definition: {:?}",
            validation.warnings
        ));
    }

    let before = definition_rows(c).await;
    let defined = define_from_json(c, text).await;
    if expected["valid"] == true {
        let flow = match defined {
            Ok(flow) => flow,
            Err(e) => {
                wrong.push(format!("define_from_json failed: {e}"));
                return wrong;
            }
        };
        let steps = value["steps"].as_array().map_or(0, Vec::len);
        if flow.workflow_slug != value["workflow_slug"] || flow.steps.len() != steps {
            wrong.push(format!("define_from_json defined {flow:?}"));
        }
        match get_flow(c, &flow.workflow_slug).await {
            Ok(read) if read == flow => {}
            other => wrong.push(format!("get_flow differs from define_from_json: {other:?}")),
        }
        // Again: the same flow, unchanged.
        match define_from_json(c, text).await {
            Ok(again) if again == flow => {}
            other => wrong.push(format!("define_from_json again: {other:?}")),
        }
        // The typed reader accepts every valid document, and what it serializes defines the
        // same flow.
        match FlowSpec::from_json(text) {
            Ok(spec) => match spec.define(c).await {
                Ok(again) if again == flow => {}
                other => wrong.push(format!("FlowSpec::define: {other:?}")),
            },
            Err(e) => wrong.push(format!("FlowSpec::from_json refused a valid case: {e}")),
        }
    } else {
        let first = &validation.errors.first();
        match (&defined, first) {
            (
                Err(
                    err @ Error::Api {
                        code,
                        sqlstate,
                        message,
                        ..
                    },
                ),
                Some(first),
            ) => {
                if code != &first.code
                    || Some(sqlstate.as_str()) != first.code.expected_sqlstate()
                    || !message.starts_with(&format!("{}: {}: ", first.code, first.path))
                {
                    wrong.push(format!(
                        "define_from_json raised {err}, expected the first error {first}"
                    ));
                }
                if err.problems().as_ref() != Some(&validation.errors) {
                    wrong.push(format!(
                        "the error's problems {:?} are not validate_flow's errors",
                        err.problems()
                    ));
                }
            }
            (other, first) => wrong.push(format!(
                "define_from_json gave {other:?}, expected the error {first:?}"
            )),
        }
        if definition_rows(c).await != before {
            wrong.push("define_from_json of an invalid case wrote rows".into());
        }
        // The typed reader never accepts a key the document does not have.
        let unknown_key = validation
            .errors
            .iter()
            .any(|e| e.code == ErrorCode::UnknownKey);
        if unknown_key && FlowSpec::from_json(text).is_ok() {
            wrong.push("FlowSpec::from_json accepted an unknown key".into());
        }
    }
    wrong
}

#[tokio::test]
async fn every_case_reaches_its_verdict() {
    let c = client(&database(DB).await).await;
    let cases = cases();
    let verdicts = verdicts();
    let names: Vec<&String> = cases.iter().map(|(n, _)| n).collect();
    let judged: Vec<&String> = verdicts.keys().collect();
    assert_eq!(
        names, judged,
        "every case has a verdict and every verdict a case"
    );
    assert!(cases.iter().any(|(n, _)| n.starts_with("valid_")));
    assert!(cases.iter().any(|(n, _)| n.starts_with("invalid_")));

    let mut failures = Vec::new();
    for (name, text) in &cases {
        let wrong = check_case(&c, text, &verdicts[name]).await;
        if !wrong.is_empty() {
            failures.push(format!("{name}:\n    {}", wrong.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} cases, all with their verdict", cases.len());
}
