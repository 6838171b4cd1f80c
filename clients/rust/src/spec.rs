//! Workflows described as data: the JSON document an LLM emits, turned into `create_flow` /
//! `add_step` calls in one transaction.
//!
//! ```json
//! {"workflow_slug": "triage",
//!  "steps": [{"slug": "fetch", "depends_on": [], "type": "single"},
//!            {"slug": "score", "depends_on": ["fetch"], "type": "map"}]}
//! ```

use crate::api::{self, FlowOptions, StepOptions};
use crate::error::{Error, Result};
use crate::types::{FlowDefinition, StepType};
use serde::{Deserialize, Serialize};

/// A workflow definition as data. Unknown fields are ignored (LLMs add commentary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    pub workflow_slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay: Option<i32>,
    pub steps: Vec<StepSpec>,
}

/// One step of a [`FlowSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    pub slug: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// `single` (default) or `map`.
    #[serde(rename = "type", default)]
    pub step_type: StepType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_tasks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay: Option<i32>,
}

impl FlowSpec {
    /// Reads a spec from JSON text (`Error::InvalidSpec` when it does not have this shape).
    pub fn from_json(text: &str) -> Result<FlowSpec> {
        serde_json::from_str(text).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    /// Reads a spec from a JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<FlowSpec> {
        serde_json::from_value(value).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    /// The steps in an order `add_step` accepts: the given order, except that a step listed
    /// before one of its dependencies is moved after it. Unknown dependencies do not hold a
    /// step back, and steps in a cycle are added in the given order: either way the server
    /// then refuses the step with `dependency_not_found`.
    pub fn steps_in_dependency_order(&self) -> Vec<&StepSpec> {
        let mut added: Vec<&str> = Vec::new();
        let mut ordered: Vec<&StepSpec> = Vec::new();
        let mut pending: Vec<&StepSpec> = self.steps.iter().collect();
        let known: Vec<&str> = self.steps.iter().map(|s| s.slug.as_str()).collect();
        while !pending.is_empty() {
            let ready = pending.iter().position(|s| {
                s.depends_on
                    .iter()
                    .all(|d| added.contains(&d.as_str()) || !known.contains(&d.as_str()))
            });
            // A cycle: add the first pending step and let the server refuse it.
            let next = pending.remove(ready.unwrap_or(0));
            added.push(&next.slug);
            ordered.push(next);
        }
        ordered
    }

    /// Creates the workflow and its steps in one transaction (all or nothing), and returns
    /// the definition as `get_flow` reports it. Calling it again with the same spec is a
    /// no-op (create_flow and add_step are idempotent for identical definitions).
    pub async fn define(&self, client: &mut tokio_postgres::Client) -> Result<FlowDefinition> {
        let tx = client.transaction().await?;
        let options = FlowOptions {
            max_attempts: self.max_attempts,
            timeout: self.timeout,
            base_delay: self.base_delay,
        };
        api::create_flow(&tx, &self.workflow_slug, &options).await?;
        for step in self.steps_in_dependency_order() {
            let options = StepOptions {
                depends_on: step.depends_on.clone(),
                step_type: step.step_type,
                initial_tasks: step.initial_tasks,
                max_attempts: step.max_attempts,
                timeout: step.timeout,
                base_delay: step.base_delay,
            };
            api::add_step(&tx, &self.workflow_slug, &step.slug, &options).await?;
        }
        let definition = api::get_flow(&tx, &self.workflow_slug).await?;
        tx.commit().await?;
        Ok(definition)
    }
}

/// Defines a workflow from a JSON document of the [`FlowSpec`] shape, in one transaction.
pub async fn define_from_json(
    client: &mut tokio_postgres::Client,
    json: &str,
) -> Result<FlowDefinition> {
    FlowSpec::from_json(json)?.define(client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slugs(spec: &FlowSpec) -> Vec<&str> {
        spec.steps_in_dependency_order()
            .iter()
            .map(|s| s.slug.as_str())
            .collect()
    }

    #[test]
    fn reads_the_llm_shape_and_defaults() {
        let spec = FlowSpec::from_json(
            r#"{"workflow_slug": "w", "comment": "ignored",
                "steps": [{"slug": "a"}, {"slug": "b", "depends_on": ["a"], "type": "map"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.steps[0].step_type, StepType::Single);
        assert_eq!(spec.steps[0].depends_on, Vec::<String>::new());
        assert_eq!(spec.steps[1].step_type, StepType::Map);
        assert_eq!(spec.max_attempts, None);
    }

    #[test]
    fn an_unknown_step_type_is_an_invalid_spec() {
        let err = FlowSpec::from_json(
            r#"{"workflow_slug": "w", "steps": [{"slug": "a", "type": "parallel"}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::InvalidSpec(ref m) if m.contains("parallel")),
            "{err}"
        );
    }

    #[test]
    fn dependents_listed_first_are_moved_after_their_dependencies() {
        let spec = FlowSpec::from_json(
            r#"{"workflow_slug": "w", "steps": [
                {"slug": "report", "depends_on": ["score", "fetch"]},
                {"slug": "score", "depends_on": ["fetch"]},
                {"slug": "fetch"},
                {"slug": "audit", "depends_on": ["fetch"]}]}"#,
        )
        .unwrap();
        assert_eq!(slugs(&spec), ["fetch", "score", "report", "audit"]);
    }

    #[test]
    fn unknown_dependencies_do_not_hold_a_step_back_and_cycles_keep_their_order() {
        let spec = FlowSpec::from_json(
            r#"{"workflow_slug": "w", "steps": [
                {"slug": "a", "depends_on": ["b"]}, {"slug": "b", "depends_on": ["a"]},
                {"slug": "c", "depends_on": ["nope"]}]}"#,
        )
        .unwrap();
        assert_eq!(slugs(&spec), ["c", "a", "b"]);
    }
}
