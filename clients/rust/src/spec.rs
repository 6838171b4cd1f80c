//! Workflows described as data: a typed builder of the document `define_flow` takes.
//!
//! ```json
//! {"workflow_slug": "triage",
//!  "steps": [{"slug": "fetch", "depends_on": [], "type": "single"},
//!            {"slug": "score", "depends_on": ["fetch"], "type": "map"}]}
//! ```
//!
//! The rules of the document (which keys exist, slugs, options, dependencies, cycles) live in
//! the database, in one place: [`FlowSpec::define`] and [`FlowSpec::validate`] send the
//! document to `define_flow` / `validate_flow`, and JSON text from elsewhere (an LLM) goes
//! to the server unread with [`define_from_json`](crate::define_from_json) /
//! [`validate_flow_json`](crate::validate_flow_json).

use crate::api;
use crate::error::{Error, Result};
use crate::types::{FlowDefinition, FlowValidation, StepType, WhenUnmet};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio_postgres::GenericClient;

/// A workflow document, typed. Build one with [`FlowSpec::new`] and [`StepSpec::new`];
/// it serializes to exactly the document `define_flow` takes (options left `None` are left
/// out, so the server's defaults apply).
///
/// It also reads documents (`from_json`, `from_value`, e.g. of `export_flow`), strictly: a
/// key the document does not have is `Error::InvalidSpec`, never ignored. Reading is not
/// validation: hand untrusted text to [`define_from_json`](crate::define_from_json) or
/// [`validate_flow_json`](crate::validate_flow_json) instead, which answer with the
/// server's codes and JSONPaths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub workflow_slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds a run may take before it fails with `run_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout: Option<i32>,
    /// A top-level key of the flow input; with `max_concurrency`, at most that many tasks of
    /// runs with the same value of it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i32>,
    /// In any order: the steps form a graph, and the server adds each after its
    /// dependencies.
    pub steps: Vec<StepSpec>,
}

/// One step of a [`FlowSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub slug: String,
    /// In the order given (a document's `null` reads as empty, as the server reads it).
    #[serde(default, deserialize_with = "null_as_default")]
    pub depends_on: Vec<String>,
    /// `single` (default) or `map` (a document's `null` reads as `single`).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub step_type: StepType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_tasks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON the step's input must contain (`@>`) when it becomes ready.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub if_matches: Option<Value>,
    /// JSON the step's input must not contain.
    #[serde(rename = "if_not", default, skip_serializing_if = "Option::is_none")]
    pub if_not_matches: Option<Value>,
    /// What happens when the condition is not met (None: `skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_unmet: Option<WhenUnmet>,
    /// Seconds between the step becoming ready and its tasks becoming visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_delay: Option<i32>,
    /// A sub-flow step: each task is a run of this workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}

/// `null` means "not given" in a flow document.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl FlowSpec {
    /// A workflow without steps yet and with the server's default options.
    pub fn new(workflow_slug: impl Into<String>) -> Self {
        FlowSpec {
            workflow_slug: workflow_slug.into(),
            max_attempts: None,
            timeout: None,
            base_delay: None,
            description: None,
            run_timeout: None,
            concurrency_key: None,
            max_concurrency: None,
            steps: Vec::new(),
        }
    }
    pub fn run_timeout(mut self, seconds: i32) -> Self {
        self.run_timeout = Some(seconds);
        self
    }
    /// At most `max_concurrency` tasks of runs whose input has the same value at `key`.
    pub fn concurrency(mut self, key: impl Into<String>, max_concurrency: i32) -> Self {
        self.concurrency_key = Some(key.into());
        self.max_concurrency = Some(max_concurrency);
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    pub fn timeout(mut self, seconds: i32) -> Self {
        self.timeout = Some(seconds);
        self
    }
    pub fn base_delay(mut self, seconds: i32) -> Self {
        self.base_delay = Some(seconds);
        self
    }
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }
    /// Adds a step (steps may be added in any order).
    pub fn step(mut self, step: StepSpec) -> Self {
        self.steps.push(step);
        self
    }

    /// Reads a document from JSON text, strictly (`Error::InvalidSpec` for a key it does not
    /// have or a value of the wrong type). It checks the shape only, not the rules.
    pub fn from_json(text: &str) -> Result<FlowSpec> {
        serde_json::from_str(text).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    /// Reads a document from a JSON value (see [`FlowSpec::from_json`]).
    pub fn from_value(value: Value) -> Result<FlowSpec> {
        serde_json::from_value(value).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    /// The document `define_flow` takes.
    pub fn to_document(&self) -> Value {
        serde_json::to_value(self).expect("a FlowSpec always serializes")
    }

    /// Every problem of the document, from the server (`validate_flow`); writes nothing.
    pub async fn validate<C: GenericClient>(&self, client: &C) -> Result<FlowValidation> {
        api::validate_flow(client, &self.to_document()).await
    }

    /// Creates the workflow and its steps with `define_flow` (one statement: all or
    /// nothing), and returns the definition as `get_flow` reports it. The same spec again is
    /// a no-op; another definition under the same slug is `workflow_exists`, naming the
    /// first difference.
    pub async fn define<C: GenericClient>(&self, client: &C) -> Result<FlowDefinition> {
        api::define_flow(client, &self.to_document()).await
    }
}

impl StepSpec {
    /// A `single` step without dependencies, inheriting the workflow's options.
    pub fn new(slug: impl Into<String>) -> Self {
        StepSpec {
            slug: slug.into(),
            depends_on: Vec::new(),
            step_type: StepType::Single,
            initial_tasks: None,
            max_attempts: None,
            timeout: None,
            base_delay: None,
            description: None,
            if_matches: None,
            if_not_matches: None,
            when_unmet: None,
            start_delay: None,
            flow: None,
        }
    }
    /// Shorthand for `step_type(StepType::Event)`: completed by `send_event`.
    pub fn event(self) -> Self {
        self.step_type(StepType::Event)
    }
    pub fn if_matches(mut self, pattern: Value) -> Self {
        self.if_matches = Some(pattern);
        self
    }
    pub fn if_not_matches(mut self, pattern: Value) -> Self {
        self.if_not_matches = Some(pattern);
        self
    }
    pub fn when_unmet(mut self, when_unmet: WhenUnmet) -> Self {
        self.when_unmet = Some(when_unmet);
        self
    }
    pub fn start_delay(mut self, seconds: i32) -> Self {
        self.start_delay = Some(seconds);
        self
    }
    pub fn flow(mut self, workflow_slug: impl Into<String>) -> Self {
        self.flow = Some(workflow_slug.into());
        self
    }
    pub fn depends_on<I, S>(mut self, deps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on = deps.into_iter().map(Into::into).collect();
        self
    }
    pub fn step_type(mut self, step_type: StepType) -> Self {
        self.step_type = step_type;
        self
    }
    /// Shorthand for `step_type(StepType::Map)`.
    pub fn map(self) -> Self {
        self.step_type(StepType::Map)
    }
    /// Map steps only: the expected task count, shown by progress before it is known.
    pub fn initial_tasks(mut self, n: i32) -> Self {
        self.initial_tasks = Some(n);
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    pub fn timeout(mut self, seconds: i32) -> Self {
        self.timeout = Some(seconds);
        self
    }
    pub fn base_delay(mut self, seconds: i32) -> Self {
        self.base_delay = Some(seconds);
        self
    }
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_builder_serializes_to_the_document() {
        let spec = FlowSpec::new("claude_etl")
            .max_attempts(3)
            .description("ETL")
            .step(
                StepSpec::new("load_db")
                    .depends_on(["validate_rows"])
                    .description("last"),
            )
            .step(StepSpec::new("extract_csv"))
            .step(
                StepSpec::new("validate_rows")
                    .depends_on(["extract_csv"])
                    .map()
                    .initial_tasks(50)
                    .max_attempts(5)
                    .timeout(120)
                    .base_delay(2),
            );
        assert_eq!(
            spec.to_document(),
            json!({"workflow_slug": "claude_etl", "max_attempts": 3, "description": "ETL",
                   "steps": [
                     {"slug": "load_db", "depends_on": ["validate_rows"], "type": "single",
                      "description": "last"},
                     {"slug": "extract_csv", "depends_on": [], "type": "single"},
                     {"slug": "validate_rows", "depends_on": ["extract_csv"], "type": "map",
                      "initial_tasks": 50, "max_attempts": 5, "timeout": 120, "base_delay": 2}]})
        );
        assert_eq!(FlowSpec::from_value(spec.to_document()).unwrap(), spec);
    }

    #[test]
    fn flow_control_keys_serialize_under_the_document_names() {
        let spec = FlowSpec::new("orders")
            .run_timeout(3600)
            .concurrency("tenant_id", 2)
            .step(StepSpec::new("check"))
            .step(
                StepSpec::new("approve")
                    .event()
                    .depends_on(["check"])
                    .if_matches(json!({"check": {"needs_approval": true}}))
                    .when_unmet(WhenUnmet::SkipCascade)
                    .timeout(86400),
            )
            .step(
                StepSpec::new("ship")
                    .depends_on(["approve"])
                    .if_not_matches(json!({"run": {"dry_run": true}}))
                    .start_delay(60)
                    .flow("shipping"),
            );
        assert_eq!(
            spec.to_document(),
            json!({"workflow_slug": "orders", "run_timeout": 3600, "concurrency_key": "tenant_id",
                   "max_concurrency": 2,
                   "steps": [
                     {"slug": "check", "depends_on": [], "type": "single"},
                     {"slug": "approve", "depends_on": ["check"], "type": "event", "timeout": 86400,
                      "if": {"check": {"needs_approval": true}}, "when_unmet": "skip_cascade"},
                     {"slug": "ship", "depends_on": ["approve"], "type": "single",
                      "if_not": {"run": {"dry_run": true}}, "start_delay": 60, "flow": "shipping"}]})
        );
        assert_eq!(FlowSpec::from_value(spec.to_document()).unwrap(), spec);
    }

    #[test]
    fn reading_is_strict_about_keys() {
        for text in [
            r#"{"workflow_slug": "w", "comment": "x", "steps": [{"slug": "a"}]}"#,
            r#"{"workflow_slug": "w", "steps": [{"slug": "a"}, {"slug": "b", "dependson": ["a"]}]}"#,
            r#"{"workflow_slug": "w", "steps": [{"slug": "b", "depend_on": ["a"]}]}"#,
        ] {
            let err = FlowSpec::from_json(text).unwrap_err();
            assert!(
                matches!(err, Error::InvalidSpec(ref m) if m.contains("unknown field")),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn nulls_and_missing_keys_read_as_not_given() {
        let spec = FlowSpec::from_json(
            r#"{"workflow_slug": "w", "max_attempts": null, "description": null,
                "steps": [{"slug": "a", "type": null, "depends_on": null, "timeout": null},
                          {"slug": "b", "depends_on": ["a"], "type": "map"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.max_attempts, None);
        assert_eq!(spec.steps[0], StepSpec::new("a"));
        assert_eq!(spec.steps[1], StepSpec::new("b").depends_on(["a"]).map());
    }
}
