//! Flow documents through SQL (`validate_flow`, `define_flow`, `export_flow`), with plain
//! tokio-postgres:
//!
//! * the shared suite `tests/documents`: every case reaches exactly its verdict in
//!   `tests/documents/verdicts.json`; a valid case defines its workflow, `export_flow` of it
//!   validates, defines as a no-op, and any change to it is `workflow_exists` naming the first
//!   difference; an invalid case raises its first error (code, SQLSTATE, path), lists every
//!   problem in the error's DETAIL, and writes nothing;
//! * a property test: random valid documents (random acyclic graphs, slugs, types, options,
//!   descriptions, steps in random order) come back from `export_flow` as the same document,
//!   up to key order, step order and defaults.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use quantum_flow_e2e::{connect, describe, fresh_database};
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;
use tokio_postgres::Client;

// ---------------------------------------------------------------------------------------
// The suite of documents
// ---------------------------------------------------------------------------------------

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// `(name, JSON text)` of every `tests/documents/cases/*.json`, by name.
fn cases() -> Vec<(String, String)> {
    let mut cases: Vec<(String, String)> = std::fs::read_dir(repo_path("tests/documents/cases"))
        .expect("tests/documents/cases")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    cases.sort();
    cases
}

fn verdicts() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(repo_path("tests/documents/verdicts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Code word -> SQLSTATE, from the README's error table (the contract; the extension's own
/// tests tie it to the codes it raises).
fn sqlstates() -> HashMap<String, String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let section = readme
        .split("\n## Error codes\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has an Error codes section");
    let table: HashMap<String, String> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() >= 4 && cells[1].starts_with('`') && cells[2].len() == 5)
                .then(|| (cells[1].trim_matches('`').to_string(), cells[2].to_string()))
        })
        .collect();
    assert!(table.contains_key("unknown_key"), "{table:?}");
    table
}

async fn validate(c: &Client, document: &Value) -> Value {
    c.query_one("SELECT quantum_flow.validate_flow($1)", &[document])
        .await
        .unwrap_or_else(|e| panic!("validate_flow raised {}: {document}", describe(&e)))
        .get(0)
}

async fn define(c: &Client, document: &Value) -> Result<Value, tokio_postgres::Error> {
    Ok(
        c.query_one("SELECT quantum_flow.define_flow($1)", &[document])
            .await?
            .get(0),
    )
}

async fn get_flow(c: &Client, slug: &str) -> Value {
    c.query_one("SELECT quantum_flow.get_flow($1)", &[&slug])
        .await
        .unwrap_or_else(|e| panic!("get_flow({slug}): {}", describe(&e)))
        .get(0)
}

async fn export(c: &Client, slug: &str) -> Value {
    c.query_one("SELECT quantum_flow.export_flow($1)", &[&slug])
        .await
        .unwrap_or_else(|e| panic!("export_flow({slug}): {}", describe(&e)))
        .get(0)
}

/// Rows of every definition table, to show a refused definition wrote nothing.
async fn definition_rows(c: &Client) -> Vec<i64> {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM quantum_flow.workflows),
                    (SELECT count(*) FROM quantum_flow.workflow_steps),
                    (SELECT count(*) FROM quantum_flow.workflow_step_dependencies_def),
                    (SELECT count(*) FROM pgmq.meta)",
            &[],
        )
        .await
        .unwrap();
    (0..4).map(|i| row.get(i)).collect()
}

/// A validate_flow answer as a verdict: `valid`, and each error's path and code, in order.
fn verdict_of(validation: &Value) -> Value {
    let errors: Vec<Value> = validation["errors"]
        .as_array()
        .expect("validate_flow's errors")
        .iter()
        .map(|e| json!({"path": e["path"], "code": e["code"]}))
        .collect();
    json!({"valid": validation["valid"], "errors": errors})
}

/// The server error of a failed call: (SQLSTATE, message, DETAIL).
fn server_error(e: &tokio_postgres::Error) -> (String, String, Option<String>) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.detail().map(str::to_string),
    )
}

/// Changes of a valid, defined document, each with the path `workflow_exists` must name
/// (the first difference).
fn changes(exported: &Value) -> Vec<(&'static str, Value, String)> {
    let steps = exported["steps"].as_array().unwrap();
    let last = steps.len() - 1;
    let mut out = Vec::new();

    let mut d = exported.clone();
    d["max_attempts"] = json!(d["max_attempts"].as_i64().unwrap() + 1);
    out.push(("max_attempts + 1", d, "$.max_attempts".to_string()));

    let mut d = exported.clone();
    d["description"] = json!("another description");
    out.push(("another description", d, "$.description".to_string()));

    let mut d = exported.clone();
    let timeout = d["steps"][last]["timeout"].as_i64().unwrap_or(30);
    d["steps"][last]["timeout"] = json!(timeout + 7);
    out.push((
        "the last step's timeout",
        d,
        format!("$.steps[{last}].timeout"),
    ));

    let mut d = exported.clone();
    d["steps"]
        .as_array_mut()
        .unwrap()
        .push(json!({"slug": "a_new_step", "depends_on": [steps[0]["slug"]]}));
    out.push(("a step more", d, format!("$.steps[{}]", last + 1)));

    // Two differences: the first (in the document's canonical order) is named.
    let mut d = exported.clone();
    d["timeout"] = json!(d["timeout"].as_i64().unwrap() + 1);
    d["steps"][0]["base_delay"] = json!(d["steps"][0]["base_delay"].as_i64().unwrap_or(1) + 3);
    out.push((
        "timeout and a step's base_delay",
        d,
        "$.timeout".to_string(),
    ));

    out
}

/// What is wrong with one case, if anything.
async fn check_case(
    c: &Client,
    text: &str,
    expected: &Value,
    sqlstates: &HashMap<String, String>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let document: Value = serde_json::from_str(text).unwrap();
    let validation = validate(c, &document).await;
    let verdict = verdict_of(&validation);
    if &verdict != expected {
        wrong.push(format!(
            "validate_flow: {verdict}\n      verdicts.json: {expected}"
        ));
    }
    let before = definition_rows(c).await;
    let defined = define(c, &document).await;

    if expected["valid"] == true {
        let flow = match defined {
            Ok(flow) => flow,
            Err(e) => return vec![format!("define_flow raised {}", describe(&e))],
        };
        let slug = document["workflow_slug"].as_str().unwrap();
        if flow != get_flow(c, slug).await {
            wrong.push(format!("define_flow returned {flow}, not get_flow"));
        }
        // export_flow: valid, and defining it changes nothing.
        let exported = export(c, slug).await;
        let revalidated = validate(c, &exported).await;
        let warned = revalidated["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "workflow_exists");
        if revalidated["valid"] != true || !warned {
            wrong.push(format!(
                "validate_flow(export_flow) = {revalidated}, expected valid with a \
                 workflow_exists warning"
            ));
        }
        match define(c, &exported).await {
            Ok(again) if again == flow => {}
            Ok(again) => wrong.push(format!("define_flow(export_flow) changed it: {again}")),
            Err(e) => wrong.push(format!("define_flow(export_flow) raised {}", describe(&e))),
        }
        for (what, changed, path) in changes(&exported) {
            let prefix = format!("workflow_exists: {path}: ");
            match define(c, &changed).await {
                Ok(_) => wrong.push(format!("{what}: define_flow accepted {changed}")),
                Err(e) => {
                    let (sqlstate, message, _) = server_error(&e);
                    if sqlstate != "23505" || !message.starts_with(&prefix) {
                        wrong.push(format!(
                            "{what}: define_flow raised {sqlstate} {message}, expected 23505 \
                             {prefix}..."
                        ));
                    }
                }
            }
            let answer = verdict_of(&validate(c, &changed).await);
            let expected = json!({"valid": false,
                                  "errors": [{"path": path, "code": "workflow_exists"}]});
            if answer != expected {
                wrong.push(format!(
                    "{what}: validate_flow {answer}, expected {expected}"
                ));
            }
        }
        if get_flow(c, slug).await != flow {
            wrong.push("a refused change changed the workflow".into());
        }
    } else {
        let errors = validation["errors"].as_array().unwrap();
        let Some(first) = errors.first() else {
            return vec![format!(
                "invalid, but validate_flow found nothing: {validation}"
            )];
        };
        let code = first["code"].as_str().unwrap();
        let path = first["path"].as_str().unwrap();
        match defined {
            Ok(flow) => wrong.push(format!("define_flow accepted it: {flow}")),
            Err(e) => {
                let (sqlstate, message, detail) = server_error(&e);
                let expected_sqlstate = sqlstates.get(code).map(String::as_str);
                if Some(sqlstate.as_str()) != expected_sqlstate {
                    wrong.push(format!(
                        "SQLSTATE {sqlstate}, expected {expected_sqlstate:?} for {code}"
                    ));
                }
                let message_start =
                    format!("{code}: {path}: {}", first["message"].as_str().unwrap());
                if !message.starts_with(&message_start) {
                    wrong.push(format!(
                        "message {message:?}, expected {message_start:?}..."
                    ));
                }
                // DETAIL: every problem, exactly as validate_flow reports them.
                let listed: Option<Value> = detail
                    .as_deref()
                    .and_then(|d| d.strip_prefix("every problem of the document: "))
                    .and_then(|json| serde_json::from_str(json).ok());
                if listed.as_ref() != Some(&validation["errors"]) {
                    wrong.push(format!(
                        "DETAIL {detail:?} does not list validate_flow's errors {}",
                        validation["errors"]
                    ));
                }
            }
        }
        if definition_rows(c).await != before {
            wrong.push("define_flow of an invalid document wrote rows".into());
        }
    }
    wrong
}

#[tokio::test]
async fn every_case_reaches_its_verdict_through_sql() {
    let url = fresh_database("qf_e2e_documents").await;
    let c = connect(&url).await;
    let cases = cases();
    let verdicts = verdicts();
    let sqlstates = sqlstates();
    assert_eq!(
        cases.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        verdicts.keys().collect::<Vec<_>>(),
        "every case has a verdict and every verdict a case"
    );
    let mut failures = Vec::new();
    for (name, text) in &cases {
        let wrong = check_case(&c, text, &verdicts[name], &sqlstates).await;
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
    let valid = cases
        .iter()
        .filter(|(n, _)| n.starts_with("valid_"))
        .count();
    eprintln!(
        "{} cases ({valid} valid, {} invalid), all with their verdict",
        cases.len(),
        cases.len() - valid
    );
}

// ---------------------------------------------------------------------------------------
// Property: export_flow gives back what define_flow was given
// ---------------------------------------------------------------------------------------

/// How an optional key appears in a generated document.
#[derive(Debug, Clone)]
enum Key<T> {
    Absent,
    Null,
    Given(T),
}

impl<T: Into<Value>> Key<T> {
    fn put(self, object: &mut Map<String, Value>, key: &str) {
        match self {
            Key::Absent => {}
            Key::Null => {
                object.insert(key.into(), Value::Null);
            }
            Key::Given(v) => {
                object.insert(key.into(), v.into());
            }
        }
    }
}

/// An optional key with a value from `values` (absent or null half the time).
fn key<T: std::fmt::Debug + Clone + 'static>(
    values: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Key<T>> {
    prop_oneof![
        2 => Just(Key::Absent),
        1 => Just(Key::Null),
        3 => values.prop_map(Key::Given),
    ]
    .boxed()
}

/// An option value `>= min`: small ones mostly, and the largest.
fn option_value(min: i32) -> BoxedStrategy<i32> {
    prop_oneof![8 => min..=min + 500, 1 => Just(i32::MAX), 1 => min..=i32::MAX].boxed()
}

fn description() -> BoxedStrategy<Key<String>> {
    key(prop_oneof![
        "\\PC{0,40}",
        "[a-z \"\\\\<>&|\\[\\]{}\n\t-]{0,20}",
    ])
}

fn workflow_slug() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,43}"
}

fn step_slug() -> impl Strategy<Value = String> {
    prop_oneof!["[a-cA-C_][a-c0-9_]{0,3}", "[a-zA-Z_][a-zA-Z0-9_]{0,62}",]
        .prop_filter("run is reserved", |s| s != "run")
}

/// A condition pattern: a small JSON object.
fn pattern() -> BoxedStrategy<Key<Value>> {
    key(prop_oneof![
        Just(json!({})),
        "[a-z]{1,6}".prop_map(|k| json!({"run": {k: true}})),
        ("[a-z]{1,6}", -5..5i64).prop_map(|(k, v)| json!({k: {"n": v, "tags": ["a"]}})),
    ])
}

/// A step whose dependencies are drawn from `earlier` (steps before it in a topological
/// order, so the graph is acyclic): a single or event step depends on up to 5 of them, a map
/// step on at most one. Conditions, `when_unmet` and (but on event steps) `start_delay` at
/// random; no `flow` (a sub-flow names another workflow, which the property does not make).
fn step(slug: String, earlier: Vec<String>) -> BoxedStrategy<Value> {
    let single_deps = if earlier.is_empty() {
        Just(Vec::new()).boxed()
    } else {
        let most = earlier.len().min(5);
        proptest::sample::subsequence(earlier.clone(), 0..=most)
            .prop_shuffle()
            .boxed()
    };
    let map_dep = if earlier.is_empty() {
        Just(Vec::new()).boxed()
    } else {
        proptest::option::of(proptest::sample::select(earlier))
            .prop_map(|d| d.into_iter().collect::<Vec<_>>())
            .boxed()
    };
    let options = (
        key(option_value(1)),
        key(option_value(1)),
        key(option_value(0)),
        description(),
        // how an empty depends_on is written: absent, null or []
        0..3u8,
        (
            pattern(),
            pattern(),
            key(prop_oneof![
                Just("skip"),
                Just("skip_cascade"),
                Just("fail")
            ]),
        ),
    );
    let single = (
        single_deps.clone(),
        prop_oneof![
            Just(Key::Absent),
            Just(Key::Null),
            Just(Key::Given("single"))
        ],
        (Just(Key::<i32>::Absent), key(option_value(0))),
        options.clone(),
    );
    let map = (
        map_dep,
        Just(Key::Given("map")),
        (
            key(prop_oneof![9 => 0..=1000i32, 1 => Just(i32::MAX)]),
            key(option_value(0)),
        ),
        options.clone(),
    );
    let event = (
        single_deps,
        Just(Key::Given("event")),
        (Just(Key::<i32>::Absent), Just(Key::<i32>::Absent)),
        options,
    );
    prop_oneof![3 => single, 1 => map, 1 => event]
        .prop_map(
            move |(
                deps,
                step_type,
                (initial_tasks, start_delay),
                (attempts, timeout, delay, text, empty, (if_, if_not, when_unmet)),
            )| {
                let mut s = Map::new();
                s.insert("slug".into(), json!(slug));
                match (deps.is_empty(), empty) {
                    (false, _) => {
                        s.insert("depends_on".into(), json!(deps));
                    }
                    (true, 0) => {}
                    (true, 1) => {
                        s.insert("depends_on".into(), Value::Null);
                    }
                    (true, _) => {
                        s.insert("depends_on".into(), json!([]));
                    }
                }
                step_type.put(&mut s, "type");
                initial_tasks.put(&mut s, "initial_tasks");
                attempts.put(&mut s, "max_attempts");
                timeout.put(&mut s, "timeout");
                delay.put(&mut s, "base_delay");
                text.put(&mut s, "description");
                start_delay.put(&mut s, "start_delay");
                if_.put(&mut s, "if");
                if_not.put(&mut s, "if_not");
                when_unmet.put(&mut s, "when_unmet");
                Value::Object(s)
            },
        )
        .boxed()
}

/// A valid document: 1-30 steps with distinct random slugs forming a random acyclic graph,
/// random types, options, conditions and descriptions, listed in random order; a run timeout
/// and a concurrency limit at random.
fn document() -> impl Strategy<Value = Value> {
    let slugs = proptest::collection::btree_set(step_slug(), 1..=30)
        .prop_map(|set| set.into_iter().collect::<Vec<_>>())
        .prop_shuffle(); // the topological order
    let head = (
        workflow_slug(),
        key(option_value(1)),
        key(option_value(1)),
        key(option_value(0)),
        description(),
        key(option_value(1)),
        // concurrency_key and max_concurrency come together
        proptest::option::of(("[a-z_]{1,20}", option_value(1))),
    );
    (head, slugs).prop_flat_map(
        |((slug, attempts, timeout, delay, text, run_timeout, limit), order)| {
            let steps: Vec<BoxedStrategy<Value>> = order
                .iter()
                .enumerate()
                .map(|(i, s)| step(s.clone(), order[..i].to_vec()))
                .collect();
            steps.prop_shuffle().prop_map(move |steps| {
                let mut d = Map::new();
                d.insert("workflow_slug".into(), json!(slug));
                attempts.clone().put(&mut d, "max_attempts");
                timeout.clone().put(&mut d, "timeout");
                delay.clone().put(&mut d, "base_delay");
                text.clone().put(&mut d, "description");
                run_timeout.clone().put(&mut d, "run_timeout");
                if let Some((k, n)) = &limit {
                    d.insert("concurrency_key".into(), json!(k));
                    d.insert("max_concurrency".into(), json!(n));
                }
                d.insert("steps".into(), Value::Array(steps));
                Value::Object(d)
            })
        },
    )
}

/// A document with every default filled in, `null` read as "not given", and its steps keyed
/// by slug (so key order and step order do not matter). An unexpected key is an error.
fn normalise(document: &Value) -> Result<Value, String> {
    fn given(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    fn only(object: &Map<String, Value>, keys: &[&str], what: &str) -> Result<(), String> {
        match object.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(format!("{what} has an unexpected key {k:?}")),
            None => Ok(()),
        }
    }
    let d = document.as_object().ok_or("not an object")?;
    only(
        d,
        &[
            "workflow_slug",
            "max_attempts",
            "timeout",
            "base_delay",
            "description",
            "run_timeout",
            "concurrency_key",
            "max_concurrency",
            "steps",
        ],
        "the document",
    )?;
    let mut steps = Map::new();
    for s in d["steps"].as_array().ok_or("no steps")? {
        let s = s.as_object().ok_or("a step is not an object")?;
        only(
            s,
            &[
                "slug",
                "depends_on",
                "type",
                "initial_tasks",
                "max_attempts",
                "timeout",
                "base_delay",
                "description",
                "if",
                "if_not",
                "when_unmet",
                "start_delay",
                "flow",
            ],
            "a step",
        )?;
        let slug = s["slug"].as_str().ok_or("a step without slug")?;
        let normal = json!({
            "type": given(s.get("type")).cloned().unwrap_or(json!("single")),
            "depends_on": given(s.get("depends_on")).cloned().unwrap_or(json!([])),
            "initial_tasks": given(s.get("initial_tasks")),
            "max_attempts": given(s.get("max_attempts")),
            "timeout": given(s.get("timeout")),
            "base_delay": given(s.get("base_delay")),
            "description": given(s.get("description")),
            "if": given(s.get("if")),
            "if_not": given(s.get("if_not")),
            "when_unmet": given(s.get("when_unmet")).cloned().unwrap_or(json!("skip")),
            "start_delay": given(s.get("start_delay")),
            "flow": given(s.get("flow")),
        });
        if steps.insert(slug.to_string(), normal).is_some() {
            return Err(format!("step {slug:?} twice"));
        }
    }
    Ok(json!({
        "workflow_slug": d["workflow_slug"],
        "max_attempts": given(d.get("max_attempts")).cloned().unwrap_or(json!(3)),
        "timeout": given(d.get("timeout")).cloned().unwrap_or(json!(30)),
        "base_delay": given(d.get("base_delay")).cloned().unwrap_or(json!(1)),
        "description": given(d.get("description")),
        "run_timeout": given(d.get("run_timeout")),
        "concurrency_key": given(d.get("concurrency_key")),
        "max_concurrency": given(d.get("max_concurrency")),
        "steps": steps,
    }))
}

/// One case: define it, export it, compare, clean up.
async fn round_trip(c: &Client, document: &Value) -> Result<(), String> {
    let slug = document["workflow_slug"].as_str().unwrap();
    let flow = define(c, document)
        .await
        .map_err(|e| format!("define_flow raised {}", describe(&e)))?;
    let exported = export(c, slug).await;
    let (given, got) = (normalise(document)?, normalise(&exported)?);
    if given != got {
        return Err(format!(
            "export_flow differs from the document:\n  given    {given}\n  exported {got}\n  \
             raw export {exported}"
        ));
    }
    // get_flow's step order is an order of addition: each step after its dependencies.
    let mut seen = Vec::new();
    for s in flow["steps"].as_array().unwrap() {
        for dep in s["depends_on"].as_array().unwrap() {
            if !seen.contains(&dep) {
                return Err(format!("{} is before its dependency {dep}", s["step_slug"]));
            }
        }
        seen.push(&s["step_slug"]);
    }
    // And the exported document defines nothing new.
    match define(c, &exported).await {
        Ok(again) if again == flow => Ok(()),
        Ok(again) => Err(format!(
            "define_flow(export_flow) changed the flow: {again}"
        )),
        Err(e) => Err(format!("define_flow(export_flow) raised {}", describe(&e))),
    }
}

#[test]
fn export_flow_gives_back_what_define_flow_was_given() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let c = runtime.block_on(async {
        let url = fresh_database("qf_e2e_documents_property").await;
        connect(&url).await
    });
    let cases = std::env::var("QF_E2E_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 500,
        ..Config::default()
    };
    // A fixed seed: every run tries the same documents.
    let seed = *b"quantum_flow documents roundtrip";
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let began = Instant::now();
    let steps = Cell::new(0usize);
    let tried = Cell::new(0usize);
    let result = runner.run(&document(), |document| {
        tried.set(tried.get() + 1);
        steps.set(steps.get() + document["steps"].as_array().map_or(0, Vec::len));
        runtime.block_on(async {
            let outcome = round_trip(&c, &document).await;
            // Clean up whatever happened, so that a slug can come again.
            let _ = c
                .execute(
                    "SELECT quantum_flow.delete_flow($1)",
                    &[&document["workflow_slug"].as_str()],
                )
                .await;
            outcome.map_err(|e| TestCaseError::fail(format!("{e}\n  document {document}")))
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let left: i64 = runtime
        .block_on(c.query_one("SELECT count(*) FROM quantum_flow.workflows", &[]))
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every case cleaned up after itself");
    eprintln!(
        "{} random documents ({} steps) round-tripped in {:.1} s",
        tried.get(),
        steps.get(),
        began.elapsed().as_secs_f64()
    );
}
