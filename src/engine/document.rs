//! Flow documents: a whole workflow as one JSON value, the shape an LLM is asked to write.
//!
//! ```json
//! {"workflow_slug": "claude_etl", "max_attempts": 3, "description": "optional",
//!  "steps": [{"slug": "extract_csv"},
//!            {"slug": "validate_rows", "depends_on": ["extract_csv"], "type": "map"},
//!            {"slug": "load_db", "depends_on": ["validate_rows"]}]}
//! ```
//!
//! [`validate`] walks the parsed JSON (`serde_json::Value`) and reports every problem at once,
//! each at its JSONPath, with the same rules `create_flow` / `add_step` apply (from
//! `engine::definition`) plus the ones only a whole document can break (duplicate steps,
//! unknown dependencies, cycles, limits). A document without problems is then deserialized
//! into the typed [`FlowDocument`] with serde, which is also what `export_flow` serializes.

use crate::engine::definition::{
    concurrency_problem, condition_problem, dependency_problem, event_step_problem, flow_problem,
    initial_tasks_problem, map_dependencies_problem, option_problem, step_type_problem,
    when_unmet_problem, FlowOptions, StepDef, FLOW_DEFAULTS, MAX_CONCURRENCY_KEY_LEN, STEP_TYPES,
    WHEN_UNMET,
};
use crate::engine::slug::{check_step_slug, check_workflow_slug};
use crate::engine::suggest::did_you_mean;
use crate::error::QfError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The keys of a flow document, and of each of its steps. Any other key is `unknown_key`.
pub const FLOW_KEYS: &[&str] = &[
    "workflow_slug",
    "max_attempts",
    "timeout",
    "base_delay",
    "run_timeout",
    "concurrency_key",
    "max_concurrency",
    "description",
    "steps",
];
pub const STEP_KEYS: &[&str] = &[
    "slug",
    "depends_on",
    "type",
    "initial_tasks",
    "max_attempts",
    "timeout",
    "base_delay",
    "if",
    "if_not",
    "when_unmet",
    "start_delay",
    "flow",
    "description",
];

/// The longest `description` a workflow or step may have, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// A workflow as a document, every default filled in (`export_flow`'s shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowDocument {
    pub workflow_slug: String,
    #[serde(default = "default_max_attempts", deserialize_with = "whole")]
    pub max_attempts: i32,
    #[serde(default = "default_timeout", deserialize_with = "whole")]
    pub timeout: i32,
    #[serde(default = "default_base_delay", deserialize_with = "whole")]
    pub base_delay: i32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub run_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub max_concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub steps: Vec<StepDocument>,
}

fn default_max_attempts() -> i32 {
    FLOW_DEFAULTS.max_attempts
}
fn default_timeout() -> i32 {
    FLOW_DEFAULTS.timeout
}
fn default_base_delay() -> i32 {
    FLOW_DEFAULTS.base_delay
}
fn default_step_type() -> String {
    "single".to_string()
}

/// One step of a [`FlowDocument`]. Options left out inherit the workflow's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDocument {
    pub slug: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(rename = "type", default = "default_step_type")]
    pub step_type: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub initial_tasks: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub max_attempts: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub timeout: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub base_delay: Option<i32>,
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub if_matches: Option<Value>,
    #[serde(rename = "if_not", default, skip_serializing_if = "Option::is_none")]
    pub if_not_matches: Option<Value>,
    /// Left out (None) when it is the default, `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_unmet: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole"
    )]
    pub start_delay: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl FlowDocument {
    pub fn options(&self) -> FlowOptions {
        FlowOptions {
            max_attempts: self.max_attempts,
            timeout: self.timeout,
            base_delay: self.base_delay,
            run_timeout: self.run_timeout,
            concurrency_key: self.concurrency_key.clone(),
            max_concurrency: self.max_concurrency,
        }
    }

    /// The steps in an order `add_step` accepts (each after its dependencies), otherwise in
    /// document order. The document must be valid (no cycle).
    pub fn steps_in_dependency_order(&self) -> Vec<&StepDocument> {
        let mut added: HashSet<&str> = HashSet::new();
        let mut ordered = Vec::with_capacity(self.steps.len());
        let mut pending: Vec<&StepDocument> = self.steps.iter().collect();
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|s| s.depends_on.iter().all(|d| added.contains(d.as_str())))
                .unwrap_or(0);
            let next = pending.remove(ready);
            added.insert(&next.slug);
            ordered.push(next);
        }
        ordered
    }
}

impl StepDocument {
    pub fn to_step_def(&self) -> StepDef {
        StepDef {
            step_slug: self.slug.clone(),
            depends_on: self.depends_on.clone(),
            step_type: self.step_type.clone(),
            initial_tasks: self.initial_tasks,
            max_attempts: self.max_attempts,
            timeout: self.timeout,
            base_delay: self.base_delay,
            if_matches: self.if_matches.clone(),
            if_not_matches: self.if_not_matches.clone(),
            when_unmet: self.when_unmet.clone().unwrap_or_else(|| "skip".into()),
            start_delay: self.start_delay,
            flow: self.flow.clone(),
        }
    }

    /// The document shape of a step definition (the default `when_unmet` left out).
    pub fn from_step_def(step: StepDef, description: Option<String>) -> Self {
        StepDocument {
            slug: step.step_slug,
            depends_on: step.depends_on,
            step_type: step.step_type,
            initial_tasks: step.initial_tasks,
            max_attempts: step.max_attempts,
            timeout: step.timeout,
            base_delay: step.base_delay,
            if_matches: step.if_matches,
            if_not_matches: step.if_not_matches,
            when_unmet: Some(step.when_unmet).filter(|w| w != "skip"),
            start_delay: step.start_delay,
            flow: step.flow,
            description,
        }
    }
}

/// One problem of a document: where (a JSONPath), what (an error with its code) and, where it
/// helps, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub error: QfError,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(path: impl Into<String>, error: QfError) -> Self {
        Problem {
            path: path.into(),
            error,
            hint: None,
        }
    }

    pub fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// `{"path", "code", "message", "hint"}`, as `validate_flow` reports it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "path": self.path,
            "code": self.error.code(),
            "message": self.error.detail(),
            "hint": self.hint,
        })
    }

    /// The error `define_flow` raises for this problem: its code, with the path in front of
    /// the message and the hint after it.
    pub fn to_error(&self) -> QfError {
        let path = &self.path;
        self.error
            .clone()
            .map_message(|m| format!("{path}: {m}"))
            .with_hint(self.hint.clone())
    }
}

/// Limits that settings impose on documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `quantum_flow.max_steps`
    pub max_steps: usize,
}

/// What [`validate`] found: the problems in document order and, when there are none, the
/// document with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub document: Option<FlowDocument>,
}

/// `$.key` for identifier-like keys, `$["odd key"]` for others.
fn member(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "a number",
        Value::Number(_) => "a number with a fraction",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects problems while walking a document; `order` keeps them in document order (the
/// workflow's own keys first, then step by step).
struct Walk {
    problems: Vec<(usize, Problem)>,
}

impl Walk {
    fn add(&mut self, order: usize, problem: Problem) {
        self.problems.push((order, problem));
    }

    fn wrong_type(&mut self, order: usize, path: &str, what: &str, got: &Value) {
        self.add(
            order,
            Problem::new(
                path,
                QfError::InvalidDocument(format!(
                    "{what} must be {}, got {}",
                    what_kind(what),
                    json_type(got)
                )),
            ),
        );
    }

    fn unknown_keys(
        &mut self,
        order: usize,
        path: &str,
        obj: &Map<String, Value>,
        known: &[&str],
        owner: &str,
    ) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            let hint = did_you_mean(key, known.iter().copied())
                .or_else(|| Some(format!("the keys of {owner} are {}", known.join(", "))));
            self.add(
                order,
                Problem::new(
                    member(path, key),
                    QfError::UnknownKey(format!("{owner} has no key {key:?}")),
                )
                .hint(hint),
            );
        }
    }

    /// An optional integer option: None when absent or null.
    fn option(
        &mut self,
        order: usize,
        path: &str,
        obj: &Map<String, Value>,
        key: &str,
    ) -> Option<i32> {
        let value = obj.get(key).filter(|v| !v.is_null())?;
        let at = member(path, key);
        // a whole number outside i32 (also one too large for i64, or written as 1e20) is out
        // of range, not of the wrong type
        let out_of_range = |negative: bool, got: String| {
            QfError::InvalidOption(if negative {
                format!(
                    "{key} must be >= {}, got {got}",
                    crate::engine::definition::option_minimum(key)
                )
            } else {
                format!("{key} must be at most {}, got {got}", i32::MAX)
            })
        };
        let huge = value.as_f64().filter(|f| f.fract() == 0.0);
        match (whole_number(value), huge) {
            (Some(n), _) => match i32::try_from(n) {
                Ok(n) => {
                    if let Some(e) = option_problem(key, n) {
                        self.add(order, Problem::new(at, e));
                        return None;
                    }
                    Some(n)
                }
                Err(_) => {
                    self.add(order, Problem::new(at, out_of_range(n < 0, n.to_string())));
                    None
                }
            },
            (None, Some(f)) => {
                self.add(
                    order,
                    Problem::new(at, out_of_range(f < 0.0, value.to_string())),
                );
                None
            }
            (None, None) => {
                self.wrong_type(order, &at, key, value);
                None
            }
        }
    }

    /// An optional string value: None when absent or null.
    fn text(
        &mut self,
        order: usize,
        path: &str,
        obj: &Map<String, Value>,
        key: &str,
    ) -> Option<String> {
        let value = obj.get(key).filter(|v| !v.is_null())?;
        match value.as_str() {
            Some(t) => Some(t.to_string()),
            None => {
                self.wrong_type(order, &member(path, key), key, value);
                None
            }
        }
    }

    fn description(
        &mut self,
        order: usize,
        path: &str,
        obj: &Map<String, Value>,
    ) -> Option<String> {
        let value = obj.get("description").filter(|v| !v.is_null())?;
        let at = member(path, "description");
        match value.as_str() {
            Some(text) if text.chars().count() > MAX_DESCRIPTION_CHARS => {
                self.add(
                    order,
                    Problem::new(
                        at,
                        QfError::LimitExceeded(format!(
                            "description is {} characters long, the maximum is {MAX_DESCRIPTION_CHARS}",
                            text.chars().count()
                        )),
                    ),
                );
                None
            }
            Some(text) => Some(text.to_string()),
            None => {
                self.wrong_type(order, &at, "description", value);
                None
            }
        }
    }
}

fn what_kind(what: &str) -> &'static str {
    match what {
        "steps" | "depends_on" => "an array",
        "the document" | "each step" => "an object",
        "max_attempts" | "timeout" | "base_delay" | "initial_tasks" | "run_timeout"
        | "max_concurrency" | "start_delay" => "a whole number",
        _ => "a string",
    }
}

/// A step as far as it could be read.
struct StepSeen {
    index: usize,
    slug: Option<String>,
    step_type: String,
    /// (position in depends_on, slug) of the entries that are valid slugs
    depends_on: Vec<(usize, String)>,
}

/// Validates a flow document: every problem, in document order, each at its JSONPath.
pub fn validate(doc: &Value, limits: Limits) -> Validation {
    let mut walk = Walk {
        problems: Vec::new(),
    };
    let Some(obj) = doc.as_object() else {
        walk.wrong_type(0, "$", "the document", doc);
        return finish(walk, None);
    };
    walk.unknown_keys(0, "$", obj, FLOW_KEYS, "a workflow");
    match obj.get("workflow_slug") {
        None | Some(Value::Null) => walk.add(
            0,
            Problem::new(
                "$",
                QfError::MissingKey("the workflow has no \"workflow_slug\"".into()),
            )
            .hint(Some(
                "name the workflow with \"workflow_slug\": \"...\"".into(),
            )),
        ),
        Some(Value::String(slug)) => {
            if let Err(e) = check_workflow_slug(slug) {
                walk.add(0, Problem::new("$.workflow_slug", e));
            }
        }
        Some(other) => walk.wrong_type(0, "$.workflow_slug", "workflow_slug", other),
    }
    for key in ["max_attempts", "timeout", "base_delay", "run_timeout"] {
        walk.option(0, "$", obj, key);
    }
    let key = walk.text(0, "$", obj, "concurrency_key");
    let max = walk.option(0, "$", obj, "max_concurrency");
    let max_given = obj.get("max_concurrency").is_some_and(|v| !v.is_null());
    if key.is_some() || max_given {
        // a max_concurrency that was refused above still counts as given
        if let Some(e) = concurrency_problem(key.as_deref(), max.or(max_given.then_some(1))) {
            // where the problem is: a key of the wrong length, the missing max_concurrency,
            // or the missing key
            let at = match key.as_deref() {
                Some(k) if k.is_empty() || k.chars().count() > MAX_CONCURRENCY_KEY_LEN => {
                    "$.concurrency_key"
                }
                Some(_) => "$.max_concurrency",
                None => "$.concurrency_key",
            };
            walk.add(0, Problem::new(at, e));
        }
    }
    walk.description(0, "$", obj);

    // An empty list is refused, but the document is still read: `definitions` accepts the
    // same empty workflow again (an export of a workflow no step was added to yet).
    let mut no_steps = false;
    let steps = match obj.get("steps") {
        None | Some(Value::Null) => {
            walk.add(
                0,
                Problem::new(
                    "$",
                    QfError::MissingKey("the workflow has no \"steps\"".into()),
                )
                .hint(Some(
                    "list the steps in \"steps\": [{\"slug\": \"...\"}, ...]".into(),
                )),
            );
            &[][..]
        }
        Some(Value::Array(steps)) => {
            if steps.is_empty() {
                no_steps = true;
                walk.add(
                    0,
                    Problem::new(
                        "$.steps",
                        QfError::InvalidDocument("steps must list at least one step".into()),
                    ),
                );
            }
            if steps.len() > limits.max_steps {
                walk.add(
                    0,
                    Problem::new(
                        "$.steps",
                        QfError::LimitExceeded(format!(
                            "the workflow has {} steps, more than quantum_flow.max_steps ({})",
                            steps.len(),
                            limits.max_steps
                        )),
                    ),
                );
            }
            &steps[..]
        }
        Some(other) => {
            walk.wrong_type(0, "$.steps", "steps", other);
            &[][..]
        }
    };

    let seen: Vec<StepSeen> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| walk_step(&mut walk, i, step))
        .collect();
    check_graph(&mut walk, &seen);

    if walk.problems.is_empty() || (no_steps && walk.problems.len() == 1) {
        match serde_json::from_value::<FlowDocument>(strip_nulls(doc)) {
            Ok(document) => return finish(walk, Some(document)),
            Err(e) => walk.add(
                0,
                Problem::new("$", QfError::InvalidDocument(e.to_string())),
            ),
        }
    }
    finish(walk, None)
}

/// Keys of the workflow and of its steps given as null mean "absent": drop them so that
/// serde's defaults apply. Values inside a step's keys are kept as written: a null in a
/// condition (`"if": {"check": {"error": null}}`) is part of its pattern.
fn strip_nulls(doc: &Value) -> Value {
    fn present(obj: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
        obj.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    let Value::Object(workflow) = doc else {
        return doc.clone();
    };
    let mut workflow = present(workflow);
    if let Some(Value::Array(steps)) = workflow.get_mut("steps") {
        for step in steps.iter_mut() {
            if let Value::Object(keys) = step {
                *keys = present(keys);
            }
        }
    }
    Value::Object(workflow)
}

/// A whole number, also when written with a zero fraction (`3.0`), as in JSON Schema.
fn whole_number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Serde's reading of an integer option: a whole number, also when written with a zero
/// fraction (`3.0`), as the walk (`Walk::option`) and JSON Schema take it.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let value = Value::deserialize(d)?;
    whole_number(&value)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {value}")))
}

/// [`whole`] for an option that may be left out (absent keys never get here: `default`).
fn some_whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    whole(d).map(Some)
}

fn finish(walk: Walk, document: Option<FlowDocument>) -> Validation {
    let mut problems = walk.problems;
    problems.sort_by_key(|(order, _)| *order);
    Validation {
        problems: problems.into_iter().map(|(_, p)| p).collect(),
        warnings: Vec::new(),
        document,
    }
}

fn walk_step(walk: &mut Walk, i: usize, step: &Value) -> Option<StepSeen> {
    let path = format!("$.steps[{i}]");
    let order = i + 1;
    let Some(obj) = step.as_object() else {
        walk.wrong_type(order, &path, "each step", step);
        return None;
    };
    walk.unknown_keys(order, &path, obj, STEP_KEYS, "a step");
    let slug = match obj.get("slug") {
        None | Some(Value::Null) => {
            walk.add(
                order,
                Problem::new(
                    &path,
                    QfError::MissingKey(format!("step {i} has no \"slug\"")),
                ),
            );
            None
        }
        Some(Value::String(slug)) => match check_step_slug(slug) {
            Ok(()) => Some(slug.clone()),
            Err(e) => {
                walk.add(order, Problem::new(member(&path, "slug"), e));
                None
            }
        },
        Some(other) => {
            walk.wrong_type(order, &member(&path, "slug"), "slug", other);
            None
        }
    };
    let name = slug.clone().unwrap_or_else(|| format!("#{i}"));
    let step_type = match obj.get("type") {
        None | Some(Value::Null) => "single".to_string(),
        Some(Value::String(t)) => {
            if let Some(e) = step_type_problem(&name, t) {
                walk.add(
                    order,
                    Problem::new(member(&path, "type"), e).hint(
                        did_you_mean(t, STEP_TYPES.iter().copied()).or_else(|| {
                            Some("a step's type is \"single\", \"map\" or \"event\"".into())
                        }),
                    ),
                );
            }
            t.clone()
        }
        Some(other) => {
            walk.wrong_type(order, &member(&path, "type"), "type", other);
            "single".to_string()
        }
    };
    let mut depends_on = Vec::new();
    match obj.get("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(deps)) => {
            let mut earlier: Vec<String> = Vec::new();
            for (j, dep) in deps.iter().enumerate() {
                let at = format!("{path}.depends_on[{j}]");
                match dep.as_str() {
                    Some(dep) => {
                        if let Some(e) = dependency_problem(&name, dep, &earlier) {
                            walk.add(order, Problem::new(at, e));
                        } else {
                            depends_on.push((j, dep.to_string()));
                        }
                        earlier.push(dep.to_string());
                    }
                    None => walk.wrong_type(order, &at, "each dependency", dep),
                }
            }
            if let Some(e) = map_dependencies_problem(&name, &step_type, &earlier) {
                walk.add(order, Problem::new(format!("{path}.depends_on"), e));
            }
        }
        Some(other) => walk.wrong_type(order, &member(&path, "depends_on"), "depends_on", other),
    }
    if let Some(n) = walk.option(order, &path, obj, "initial_tasks") {
        if let Some(e) = initial_tasks_problem(&name, &step_type, n) {
            walk.add(order, Problem::new(member(&path, "initial_tasks"), e));
        }
    }
    for key in ["max_attempts", "timeout", "base_delay"] {
        walk.option(order, &path, obj, key);
    }
    for key in ["if", "if_not"] {
        if let Some(pattern) = obj.get(key).filter(|v| !v.is_null()) {
            if let Some(e) = condition_problem(&name, key, pattern) {
                walk.add(order, Problem::new(member(&path, key), e));
            }
        }
    }
    if let Some(w) = walk.text(order, &path, obj, "when_unmet") {
        if let Some(e) = when_unmet_problem(&name, &w) {
            walk.add(
                order,
                Problem::new(member(&path, "when_unmet"), e)
                    .hint(did_you_mean(&w, WHEN_UNMET.iter().copied())),
            );
        }
    }
    let start_delay = walk.option(order, &path, obj, "start_delay");
    let flow = walk.text(order, &path, obj, "flow");
    if let Some(f) = &flow {
        if let Some(e) = flow_problem(&name, f) {
            walk.add(order, Problem::new(member(&path, "flow"), e));
        }
    }
    for (key, set) in [
        ("flow", flow.is_some()),
        ("start_delay", start_delay.is_some()),
    ] {
        if let Some(e) = event_step_problem(&name, &step_type, key, set) {
            walk.add(order, Problem::new(member(&path, key), e));
        }
    }
    walk.description(order, &path, obj);
    Some(StepSeen {
        index: i,
        slug,
        step_type,
        depends_on,
    })
}

/// Problems of the graph as a whole: duplicate steps, unknown dependencies, cycles.
fn check_graph(walk: &mut Walk, steps: &[StepSeen]) {
    let mut first_at: HashMap<&str, usize> = HashMap::new();
    for s in steps {
        let Some(slug) = s.slug.as_deref() else {
            continue;
        };
        if let Some(first) = first_at.get(slug) {
            walk.add(
                s.index + 1,
                Problem::new(
                    format!("$.steps[{}].slug", s.index),
                    QfError::DuplicateStep(format!(
                        "step {slug:?} is defined twice (first at $.steps[{first}])"
                    )),
                )
                .hint(Some("give each step its own slug".into())),
            );
        } else {
            first_at.insert(slug, s.index);
        }
    }
    // in document order, so that a tie between two equally close slugs is always decided the
    // same way
    let slugs: Vec<&str> = steps.iter().filter_map(|s| s.slug.as_deref()).collect();
    // Edges of the graph, each step by its first definition: step -> the steps it depends on.
    let mut edges: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for s in steps {
        let name = s.slug.clone().unwrap_or_else(|| format!("#{}", s.index));
        for (j, dep) in &s.depends_on {
            match first_at.get(dep.as_str()) {
                Some(&target) => {
                    if s.slug
                        .as_deref()
                        .is_some_and(|slug| first_at.get(slug) == Some(&s.index))
                    {
                        edges.entry(s.index).or_default().push(target);
                    }
                }
                None => walk.add(
                    s.index + 1,
                    Problem::new(
                        format!("$.steps[{}].depends_on[{j}]", s.index),
                        QfError::DependencyNotFound(format!(
                            "step {name:?} depends on {dep:?}, which is not a step of this workflow"
                        )),
                    )
                    .hint(
                        did_you_mean(
                            dep,
                            slugs
                                .iter()
                                .copied()
                                .filter(|c| s.slug.as_deref() != Some(*c)),
                        )
                        .or_else(|| Some(format!("the steps are {}", sorted(&slugs)))),
                    ),
                ),
            }
        }
        let _ = &s.step_type;
    }
    // by document index: a step the walk could not read (not an object) has no entry here
    let n = steps.iter().map(|s| s.index + 1).max().unwrap_or(0);
    for cycle in find_cycles(n, &edges) {
        let names: Vec<&str> = cycle
            .iter()
            .map(|&i| {
                steps
                    .iter()
                    .find(|s| s.index == i)
                    .and_then(|s| s.slug.as_deref())
                    .unwrap_or("?")
            })
            .collect();
        let first = cycle[0];
        let mut listed = names.clone();
        listed.push(names[0]);
        walk.add(
            first + 1,
            Problem::new(
                format!("$.steps[{first}].depends_on"),
                QfError::Cycle(format!(
                    "steps depend on each other in a circle: {} (each depends on the next)",
                    listed.join(" -> ")
                )),
            )
            .hint(Some(
                "remove one of these dependencies: a workflow is a graph without cycles".into(),
            )),
        );
    }
}

fn sorted(slugs: &[&str]) -> String {
    let mut s: Vec<&str> = slugs.to_vec();
    s.sort_unstable();
    s.dedup();
    s.join(", ")
}

/// One cycle per group of steps that depend on each other (strongly connected components of
/// more than one step), each listed from its step that comes first in the document, following
/// dependencies. Tarjan's algorithm.
fn find_cycles(n: usize, edges: &BTreeMap<usize, Vec<usize>>) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a BTreeMap<usize, Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(v: usize, st: &mut State<'_>) {
        st.index[v] = Some(st.next);
        st.low[v] = st.next;
        st.next += 1;
        st.stack.push(v);
        st.on_stack[v] = true;
    }
    // Depth first without recursion (a chain of quantum_flow.max_steps steps must not
    // overflow the backend's stack): the path holds each step being visited with the position
    // of the next of its dependencies to follow.
    fn connect(root: usize, st: &mut State<'_>) {
        let edges = st.edges;
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        visit(root, st);
        while let Some((v, next_dep)) = path.last_mut() {
            let v = *v;
            if let Some(&w) = edges.get(&v).and_then(|deps| deps.get(*next_dep)) {
                *next_dep += 1;
                match st.index[w] {
                    None => {
                        visit(w, st);
                        path.push((w, 0));
                    }
                    Some(iw) if st.on_stack[w] => st.low[v] = st.low[v].min(iw),
                    Some(_) => {}
                }
                continue;
            }
            path.pop();
            if let Some(&(parent, _)) = path.last() {
                st.low[parent] = st.low[parent].min(st.low[v]);
            }
            if Some(st.low[v]) == st.index[v] {
                let mut component = Vec::new();
                while let Some(w) = st.stack.pop() {
                    st.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    st.components.push(component);
                }
            }
        }
    }
    let mut st = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for v in 0..n {
        if st.index[v].is_none() {
            connect(v, &mut st);
        }
    }
    let mut cycles: Vec<Vec<usize>> = st
        .components
        .into_iter()
        .map(|component| cycle_within(&component, edges))
        .collect();
    cycles.sort();
    cycles
}

/// A concrete cycle through a strongly connected component, from its smallest member.
fn cycle_within(component: &[usize], edges: &BTreeMap<usize, Vec<usize>>) -> Vec<usize> {
    let members: HashSet<usize> = component.iter().copied().collect();
    let start = *component.iter().min().expect("components are not empty");
    // Breadth-first search for the shortest way back to `start`.
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut frontier = vec![start];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for v in frontier {
            for &w in edges.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
                if !members.contains(&w) {
                    continue;
                }
                if w == start {
                    let mut path = vec![v];
                    let mut at = v;
                    while at != start {
                        at = came_from[&at];
                        path.push(at);
                    }
                    path.reverse();
                    return path;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(w) {
                    e.insert(v);
                    next.push(w);
                }
            }
        }
        frontier = next;
    }
    let mut all = component.to_vec();
    all.sort_unstable();
    all
}

/// The keys of a step document that `first_difference` does not compare one by one (the
/// conditions, `when_unmet`, `flow`, and any key a later version adds), as JSON in the shape a
/// stored definition exports (the default `when_unmet` left out).
fn other_keys(step: &StepDocument) -> serde_json::Map<String, Value> {
    let stored = StepDocument::from_step_def(step.to_step_def(), None);
    let Ok(Value::Object(mut keys)) = serde_json::to_value(stored) else {
        return serde_json::Map::new();
    };
    for compared in [
        "slug",
        "depends_on",
        "type",
        "initial_tasks",
        "max_attempts",
        "timeout",
        "base_delay",
        "start_delay",
    ] {
        keys.remove(compared);
    }
    keys
}

/// The first way `wanted` differs from `existing` (a workflow already defined), as a JSONPath
/// into `wanted` and an explanation; None when they define the same workflow. Steps are
/// compared by slug and dependencies as sets: their order does not change what runs.
pub fn first_difference(
    existing: &FlowDocument,
    wanted: &FlowDocument,
) -> Option<(String, String)> {
    let flow_options = [
        ("max_attempts", existing.max_attempts, wanted.max_attempts),
        ("timeout", existing.timeout, wanted.timeout),
        ("base_delay", existing.base_delay, wanted.base_delay),
    ];
    for (key, old, new) in flow_options {
        if old != new {
            return Some((
                format!("$.{key}"),
                format!("{key} is {new} here but {old} in the existing workflow"),
            ));
        }
    }
    let show = |v: Option<i32>| v.map_or("not set".to_string(), |n| n.to_string());
    for (key, old, new) in [
        ("run_timeout", existing.run_timeout, wanted.run_timeout),
        (
            "max_concurrency",
            existing.max_concurrency,
            wanted.max_concurrency,
        ),
    ] {
        if old != new {
            return Some((
                format!("$.{key}"),
                format!(
                    "{key} is {} here but {} in the existing workflow",
                    show(new),
                    show(old)
                ),
            ));
        }
    }
    if existing.concurrency_key != wanted.concurrency_key {
        return Some((
            "$.concurrency_key".into(),
            "concurrency_key differs from the existing workflow's".into(),
        ));
    }
    if existing.description != wanted.description {
        return Some((
            "$.description".into(),
            "description differs from the existing workflow's".into(),
        ));
    }
    let old_steps: HashMap<&str, &StepDocument> = existing
        .steps
        .iter()
        .map(|s| (s.slug.as_str(), s))
        .collect();
    for (i, step) in wanted.steps.iter().enumerate() {
        let path = format!("$.steps[{i}]");
        let Some(old) = old_steps.get(step.slug.as_str()) else {
            return Some((
                path,
                format!(
                    "step {:?} is not a step of the existing workflow",
                    step.slug
                ),
            ));
        };
        if old.step_type != step.step_type {
            return Some((
                format!("{path}.type"),
                format!(
                    "step {:?} is a {} step here but a {} step in the existing workflow",
                    step.slug, step.step_type, old.step_type
                ),
            ));
        }
        let as_set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        if as_set(&old.depends_on) != as_set(&step.depends_on) {
            return Some((
                format!("{path}.depends_on"),
                format!(
                    "step {:?} depends on [{}] here but on [{}] in the existing workflow",
                    step.slug,
                    step.depends_on.join(", "),
                    old.depends_on.join(", ")
                ),
            ));
        }
        let step_options = [
            ("initial_tasks", old.initial_tasks, step.initial_tasks),
            ("max_attempts", old.max_attempts, step.max_attempts),
            ("timeout", old.timeout, step.timeout),
            ("base_delay", old.base_delay, step.base_delay),
            ("start_delay", old.start_delay, step.start_delay),
        ];
        for (key, old, new) in step_options {
            if old != new {
                return Some((
                    format!("{path}.{key}"),
                    format!(
                        "{key} of step {:?} is {} here but {} in the existing workflow",
                        step.slug,
                        show(new),
                        show(old)
                    ),
                ));
            }
        }
        let (old_keys, new_keys) = (other_keys(old), other_keys(step));
        let keys: std::collections::BTreeSet<&String> =
            old_keys.keys().chain(new_keys.keys()).collect();
        for key in keys {
            let (was, is) = (old_keys.get(key), new_keys.get(key));
            if was != is {
                let shown = |v: Option<&Value>| v.map_or("not set".to_string(), Value::to_string);
                return Some((
                    format!("{path}.{key}"),
                    format!(
                        "{key} of step {:?} is {} here but {} in the existing workflow",
                        step.slug,
                        shown(is),
                        shown(was)
                    ),
                ));
            }
        }
        if old.description != step.description {
            return Some((
                format!("{path}.description"),
                format!(
                    "the description of step {:?} differs from the existing one",
                    step.slug
                ),
            ));
        }
    }
    let wanted_slugs: HashSet<&str> = wanted.steps.iter().map(|s| s.slug.as_str()).collect();
    if let Some(extra) = existing
        .steps
        .iter()
        .find(|s| !wanted_slugs.contains(s.slug.as_str()))
    {
        return Some((
            "$.steps".into(),
            format!("the existing workflow also has step {:?}", extra.slug),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits { max_steps: 1000 };

    fn problems(doc: Value) -> Vec<(String, &'static str)> {
        validate(&doc, LIMITS)
            .problems
            .iter()
            .map(|p| (p.path.clone(), p.error.code()))
            .collect()
    }

    #[test]
    fn a_valid_document_gets_its_defaults() {
        let v = validate(
            &json!({"workflow_slug": "etl", "steps": [
                {"slug": "load", "depends_on": ["extract"]},
                {"slug": "extract", "type": "map", "initial_tasks": null}]}),
            LIMITS,
        );
        assert_eq!(v.problems, vec![]);
        let doc = v.document.unwrap();
        assert_eq!((doc.max_attempts, doc.timeout, doc.base_delay), (3, 30, 1));
        assert_eq!(doc.steps[0].step_type, "single");
        assert_eq!(doc.steps[1].step_type, "map");
        let order: Vec<&str> = doc
            .steps_in_dependency_order()
            .iter()
            .map(|s| s.slug.as_str())
            .collect();
        assert_eq!(order, ["extract", "load"]);
    }

    #[test]
    fn a_null_inside_a_condition_is_part_of_its_pattern() {
        let v = validate(
            &json!({"workflow_slug": "w", "description": null, "steps": [
                {"slug": "check", "timeout": null},
                {"slug": "ship", "depends_on": ["check"],
                 "if": {"check": {"error": null}}, "if_not": {"x": [null]}}]}),
            LIMITS,
        );
        assert_eq!(v.problems, vec![]);
        let doc = v.document.unwrap();
        assert_eq!(doc.description, None);
        assert_eq!(doc.steps[0].timeout, None);
        assert_eq!(
            doc.steps[1].if_matches,
            Some(json!({"check": {"error": null}}))
        );
        assert_eq!(doc.steps[1].if_not_matches, Some(json!({"x": [null]})));
    }

    #[test]
    fn steps_that_are_not_objects_leave_the_graph_checks_whole() {
        // the steps after them keep their document indexes in the graph
        assert_eq!(
            problems(json!({"workflow_slug": "w", "steps": [
                null, {"slug": "a", "depends_on": ["b"]}, {"slug": "b"}]})),
            vec![("$.steps[0]".to_string(), "invalid_document")]
        );
        let found = problems(json!({"workflow_slug": "w", "steps": [
            1, 2, {"slug": "a", "depends_on": ["b"]}, {"slug": "b", "depends_on": ["a"]}]}));
        assert_eq!(
            found,
            vec![
                ("$.steps[0]".to_string(), "invalid_document"),
                ("$.steps[1]".to_string(), "invalid_document"),
                ("$.steps[2].depends_on".to_string(), "cycle"),
            ]
        );
    }

    #[test]
    fn whole_numbers_beyond_i32_are_out_of_range_not_fractions() {
        let v = validate(
            &json!({"workflow_slug": "w", "timeout": 100000000000000000000u128 as f64,
                    "max_attempts": -3000000000i64, "steps": [
                {"slug": "a", "timeout": 18446744073709551615u64, "base_delay": 2.5}]}),
            LIMITS,
        );
        let found: Vec<(String, &str, String)> = v
            .problems
            .iter()
            .map(|p| (p.path.clone(), p.error.code(), p.error.detail().to_string()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "$.max_attempts".to_string(),
                    "invalid_option",
                    "max_attempts must be >= 1, got -3000000000".to_string()
                ),
                (
                    "$.timeout".to_string(),
                    "invalid_option",
                    "timeout must be at most 2147483647, got 1e+20".to_string()
                ),
                (
                    "$.steps[0].timeout".to_string(),
                    "invalid_option",
                    "timeout must be at most 2147483647, got 18446744073709551615".to_string()
                ),
                (
                    "$.steps[0].base_delay".to_string(),
                    "invalid_document",
                    "base_delay must be a whole number, got a number with a fraction".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_cycle_through_a_million_steps_is_found_without_recursion() {
        // step i depends on step i + 1, the last one on step 0
        let n = 1_000_000;
        let edges: BTreeMap<usize, Vec<usize>> = (0..n).map(|i| (i, vec![(i + 1) % n])).collect();
        let cycles = find_cycles(n, &edges);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n);
        assert_eq!(&cycles[0][..3], &[0, 1, 2]);
        // and a chain of as many steps has none
        let chain: BTreeMap<usize, Vec<usize>> = (0..n - 1).map(|i| (i, vec![i + 1])).collect();
        assert_eq!(find_cycles(n, &chain), Vec::<Vec<usize>>::new());
    }

    #[test]
    fn options_written_with_a_zero_fraction_are_whole_numbers() {
        let v = validate(
            &json!({"workflow_slug": "etl", "max_attempts": 5.0, "max_concurrency": 2.0,
                    "concurrency_key": "tenant",
                    "steps": [{"slug": "a", "timeout": 60.0, "start_delay": 0.0,
                               "if": {"run": {"n": 3.0}}},
                              {"slug": "m", "type": "map", "initial_tasks": 4.0}]}),
            LIMITS,
        );
        assert_eq!(v.problems, vec![]);
        let doc = v.document.unwrap();
        assert_eq!((doc.max_attempts, doc.max_concurrency), (5, Some(2)));
        assert_eq!(
            (doc.steps[0].timeout, doc.steps[0].start_delay),
            (Some(60), Some(0))
        );
        assert_eq!(doc.steps[1].initial_tasks, Some(4));
        // a condition's values are data: kept as written
        assert_eq!(doc.steps[0].if_matches, Some(json!({"run": {"n": 3.0}})));
        assert_eq!(
            problems(json!({"workflow_slug": "etl", "steps": [{"slug": "a", "timeout": 2.5}]})),
            vec![("$.steps[0].timeout".into(), "invalid_document")]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_in_document_order() {
        let got = problems(json!({
        "workflow_slug": "9lives", "timeout": 0, "colour": "blue",
        "steps": [
            {"slug": "a", "depends_on": ["c"]},
            {"slug": "b", "depend_on": ["a"], "type": "parallel"},
            {"slug": "c", "depends_on": ["b", "a"]},
            {"slug": "m", "type": "map", "depends_on": ["a", "b"]},
            {"slug": "a"},
            {"slug": "bad-slug", "depends_on": "a"},
            {"slug": "d", "depends_on": ["nope"], "max_attempts": 0},
            "not a step"
        ]}));
        assert_eq!(
            got,
            vec![
                ("$.colour".into(), "unknown_key"),
                ("$.workflow_slug".into(), "invalid_workflow_slug"),
                ("$.timeout".into(), "invalid_option"),
                ("$.steps[0].depends_on".into(), "cycle"),
                ("$.steps[1].depend_on".into(), "unknown_key"),
                ("$.steps[1].type".into(), "invalid_step_type"),
                (
                    "$.steps[3].depends_on".into(),
                    "map_step_too_many_dependencies"
                ),
                ("$.steps[4].slug".into(), "duplicate_step"),
                ("$.steps[5].slug".into(), "invalid_step_slug"),
                ("$.steps[5].depends_on".into(), "invalid_document"),
                ("$.steps[6].max_attempts".into(), "invalid_option"),
                ("$.steps[6].depends_on[0]".into(), "dependency_not_found"),
                ("$.steps[7]".into(), "invalid_document"),
            ]
        );
    }

    #[test]
    fn messages_and_hints_help_fix_the_document() {
        let v = validate(
            &json!({"workflow_slug": "w", "steps": [
                {"slug": "extract"},
                {"slug": "load", "dependson": ["extract"]},
                {"slug": "report", "depends_on": ["extrct"]},
                {"slug": "x", "depends_on": ["z"]}, {"slug": "y", "depends_on": ["x"]},
                {"slug": "z", "depends_on": ["y"]}]}),
            LIMITS,
        );
        let by_path: HashMap<String, &Problem> =
            v.problems.iter().map(|p| (p.path.clone(), p)).collect();
        let key = by_path["$.steps[1].dependson"];
        assert_eq!(
            key.error,
            QfError::UnknownKey("a step has no key \"dependson\"".into())
        );
        assert_eq!(key.hint.as_deref(), Some("did you mean \"depends_on\"?"));
        let dep = by_path["$.steps[2].depends_on[0]"];
        assert_eq!(dep.hint.as_deref(), Some("did you mean \"extract\"?"));
        let cycle = by_path["$.steps[3].depends_on"];
        assert_eq!(
            cycle.error.detail(),
            "steps depend on each other in a circle: x -> z -> y -> x (each depends on the next)"
        );
        assert_eq!(
            cycle.to_error().to_string(),
            "cycle: $.steps[3].depends_on: steps depend on each other in a circle: x -> z -> y -> x \
             (each depends on the next) (remove one of these dependencies: a workflow is a graph \
             without cycles)"
        );
    }

    #[test]
    fn documents_of_the_wrong_shape() {
        assert_eq!(problems(json!([1])), vec![("$".into(), "invalid_document")]);
        assert_eq!(
            problems(json!({})),
            vec![("$".into(), "missing_key"), ("$".into(), "missing_key")]
        );
        assert_eq!(
            problems(json!({"workflow_slug": 7, "steps": {}})),
            vec![
                ("$.workflow_slug".into(), "invalid_document"),
                ("$.steps".into(), "invalid_document")
            ]
        );
        assert_eq!(
            problems(json!({"workflow_slug": "w", "steps": []})),
            vec![("$.steps".into(), "invalid_document")]
        );
        assert_eq!(
            problems(
                json!({"workflow_slug": "w", "max_attempts": 2.5, "steps": [{"slug": "a", "depends_on": [1]}]})
            ),
            vec![
                ("$.max_attempts".into(), "invalid_document"),
                ("$.steps[0].depends_on[0]".into(), "invalid_document")
            ]
        );
        assert_eq!(
            problems(
                json!({"workflow_slug": "w", "steps": [{"slug": "run"}, {"slug": "s", "initial_tasks": 5}]})
            ),
            vec![
                ("$.steps[0].slug".into(), "invalid_step_slug"),
                ("$.steps[1].initial_tasks".into(), "invalid_option")
            ]
        );
        assert_eq!(
            problems(
                json!({"workflow_slug": "w", "steps": [{"slug": "a", "depends_on": ["a", "b", "b"]}, {"slug": "b"}], "odd key": 1})
            ),
            vec![
                ("$[\"odd key\"]".into(), "unknown_key"),
                ("$.steps[0].depends_on[0]".into(), "self_dependency"),
                ("$.steps[0].depends_on[2]".into(), "duplicate_dependency"),
            ]
        );
    }

    #[test]
    fn the_step_limit() {
        let steps: Vec<Value> = (0..4).map(|i| json!({"slug": format!("s{i}")})).collect();
        let v = validate(
            &json!({"workflow_slug": "w", "steps": steps}),
            Limits { max_steps: 3 },
        );
        assert_eq!(v.problems.len(), 1);
        assert_eq!(v.problems[0].error.code(), "limit_exceeded");
        assert_eq!(v.problems[0].path, "$.steps");
    }

    #[test]
    fn differences_from_an_existing_definition() {
        let doc = |v: Value| validate(&v, LIMITS).document.unwrap();
        let base = doc(
            json!({"workflow_slug": "w", "steps": [{"slug": "a"}, {"slug": "b", "depends_on": ["a"], "timeout": 5}]}),
        );
        let same = doc(
            json!({"workflow_slug": "w", "steps": [{"slug": "b", "depends_on": ["a"], "timeout": 5}, {"slug": "a", "type": "single"}]}),
        );
        assert_eq!(first_difference(&base, &same), None);
        let other = doc(
            json!({"workflow_slug": "w", "steps": [{"slug": "a"}, {"slug": "b", "depends_on": ["a"], "timeout": 6}]}),
        );
        assert_eq!(
            first_difference(&base, &other),
            Some((
                "$.steps[1].timeout".into(),
                "timeout of step \"b\" is 6 here but 5 in the existing workflow".into()
            ))
        );
        let fewer = doc(json!({"workflow_slug": "w", "steps": [{"slug": "a"}]}));
        assert_eq!(
            first_difference(&base, &fewer),
            Some((
                "$.steps".into(),
                "the existing workflow also has step \"b\"".into()
            ))
        );
        let retried =
            doc(json!({"workflow_slug": "w", "max_attempts": 5, "steps": [{"slug": "a"}]}));
        assert_eq!(
            first_difference(&base, &retried).unwrap().0,
            "$.max_attempts"
        );
    }

    #[test]
    fn conditions_and_sub_flows_are_differences_too() {
        let doc = |v: Value| validate(&v, LIMITS).document.unwrap();
        let plain = doc(json!({"workflow_slug": "w", "steps": [{"slug": "a"}]}));
        let differs = |step: Value| {
            first_difference(&plain, &doc(json!({"workflow_slug": "w", "steps": [step]})))
        };
        assert_eq!(
            differs(json!({"slug": "a", "if": {"go": true}})),
            Some((
                "$.steps[0].if".into(),
                "if of step \"a\" is {\"go\":true} here but not set in the existing workflow"
                    .into()
            ))
        );
        assert_eq!(
            differs(json!({"slug": "a", "if_not": {"go": false}}))
                .unwrap()
                .0,
            "$.steps[0].if_not"
        );
        assert_eq!(
            differs(json!({"slug": "a", "if": {"go": true}, "when_unmet": "fail"}))
                .unwrap()
                .0,
            "$.steps[0].if"
        );
        assert_eq!(
            differs(json!({"slug": "a", "flow": "child"})),
            Some((
                "$.steps[0].flow".into(),
                "flow of step \"a\" is \"child\" here but not set in the existing workflow".into()
            ))
        );
        // when_unmet 'skip' is the default: writing it out changes nothing
        assert_eq!(differs(json!({"slug": "a", "when_unmet": "skip"})), None);
        let guarded =
            doc(json!({"workflow_slug": "w", "steps": [{"slug": "a", "if": {"go": true}}]}));
        let failing = doc(
            json!({"workflow_slug": "w", "steps": [{"slug": "a", "if": {"go": true}, "when_unmet": "fail"}]}),
        );
        assert_eq!(
            first_difference(&guarded, &failing),
            Some((
                "$.steps[0].when_unmet".into(),
                "when_unmet of step \"a\" is \"fail\" here but not set in the existing workflow"
                    .into()
            ))
        );
    }

    #[test]
    fn a_bad_concurrency_key_is_located_at_the_key() {
        let problems = |v: Value| -> Vec<(String, String)> {
            validate(&v, LIMITS)
                .problems
                .iter()
                .map(|p| (p.path.clone(), p.error.code().to_string()))
                .collect()
        };
        let at = |path: &str| vec![(path.to_string(), "invalid_option".to_string())];
        assert_eq!(
            problems(
                json!({"workflow_slug": "w", "concurrency_key": "", "max_concurrency": 2, "steps": [{"slug": "a"}]})
            ),
            at("$.concurrency_key")
        );
        assert_eq!(
            problems(
                json!({"workflow_slug": "w", "concurrency_key": "k".repeat(64), "max_concurrency": 2, "steps": [{"slug": "a"}]})
            ),
            at("$.concurrency_key")
        );
        assert_eq!(
            problems(
                json!({"workflow_slug": "w", "concurrency_key": "tenant", "steps": [{"slug": "a"}]})
            ),
            at("$.max_concurrency")
        );
        assert_eq!(
            problems(json!({"workflow_slug": "w", "max_concurrency": 2, "steps": [{"slug": "a"}]})),
            at("$.concurrency_key")
        );
    }

    #[test]
    fn serde_round_trip_leaves_out_what_is_not_set() {
        let doc = validate(
            &json!({"workflow_slug": "w", "steps": [{"slug": "a"}]}),
            LIMITS,
        )
        .document
        .unwrap();
        assert_eq!(
            serde_json::to_value(&doc).unwrap(),
            json!({"workflow_slug": "w", "max_attempts": 3, "timeout": 30, "base_delay": 1,
                   "steps": [{"slug": "a", "depends_on": [], "type": "single"}]})
        );
    }
}
