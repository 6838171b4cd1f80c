//! The JSON Schema (draft 2020-12) of a flow document, built from the same constants the
//! validator uses (keys, slug rule and lengths, option minimums, step types), so the two cannot
//! drift apart. `flow_schema()` returns it; docs/flow.schema.json is it, with the default
//! settings (a unit test keeps the file equal).
//!
//! The schema checks a document's shape. What it cannot express (a dependency that names no
//! step, a cycle, a duplicate slug, a slug taken by another workflow) `validate_flow` reports.

use crate::engine::definition::{
    option_minimum, FLOW_DEFAULTS, MAX_CONCURRENCY_KEY_LEN, STEP_TYPES, WHEN_UNMET,
};
use crate::engine::document::MAX_DESCRIPTION_CHARS;
use crate::engine::slug::{
    MAX_STEP_SLUG_LEN, MAX_WORKFLOW_SLUG_LEN, RESERVED_STEP_SLUGS, SLUG_PATTERN,
};
use serde_json::{json, Value};

/// The schema, for a server whose `quantum_flow.max_steps` is `max_steps`.
pub fn flow_schema(max_steps: usize) -> Value {
    let option = |name: &str, what: &str, default: Option<i32>| {
        let mut o = json!({
            "type": ["integer", "null"],
            "minimum": option_minimum(name),
            "maximum": i32::MAX,
            "description": what,
        });
        if let Some(d) = default {
            o["default"] = json!(d);
        }
        o
    };
    let description = json!({
        "type": ["string", "null"],
        "maxLength": MAX_DESCRIPTION_CHARS,
        "description": "Free text, kept with the definition and returned by export_flow."
    });
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "quantum_flow workflow definition",
        "description": "A workflow for quantum_flow.define_flow(): named steps that depend on each other (a graph without cycles; steps may be listed in any order). A single step runs one task; a map step runs one task per element of the array it maps over (the flow input, or its one dependency's output); an event step has no task and completes when send_event delivers its payload. Keys given as null mean 'not given'.",
        "type": "object",
        "additionalProperties": false,
        "required": ["workflow_slug", "steps"],
        "allOf": [
            {
                "if": {"properties": {"concurrency_key": {"type": "string"}}, "required": ["concurrency_key"]},
                "then": {"properties": {"max_concurrency": {"type": "integer"}}, "required": ["max_concurrency"]}
            },
            {
                "if": {"properties": {"max_concurrency": {"type": "integer"}}, "required": ["max_concurrency"]},
                "then": {"properties": {"concurrency_key": {"type": "string"}}, "required": ["concurrency_key"]}
            }
        ],
        "properties": {
            "workflow_slug": {
                "type": "string",
                "pattern": SLUG_PATTERN,
                "minLength": 1,
                "maxLength": MAX_WORKFLOW_SLUG_LEN,
                "description": "The workflow's name: letters, digits and underscores, not starting with a digit."
            },
            "max_attempts": option("max_attempts", "Attempts per task, the first included (steps may override).", Some(FLOW_DEFAULTS.max_attempts)),
            "timeout": option("timeout", "Seconds a claimed task may run before it is handed to another worker (steps may override).", Some(FLOW_DEFAULTS.timeout)),
            "base_delay": option("base_delay", "Seconds before the first retry; each retry waits twice as long as the one before (steps may override).", Some(FLOW_DEFAULTS.base_delay)),
            "run_timeout": option("run_timeout", "Seconds a run may take; a run not finished in time fails with run_timeout.", None),
            "concurrency_key": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_CONCURRENCY_KEY_LEN,
                "description": "A top-level key of the flow input (such as tenant_id): at most max_concurrency tasks of runs with the same value of it run at once. Needs max_concurrency."
            },
            "max_concurrency": option("max_concurrency", "With concurrency_key: how many tasks per value of the key at once.", None),
            "description": description,
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {"$ref": "#/$defs/step"},
                "description": "The steps, in any order."
            }
        },
        "$defs": {
            "step": {
                "type": "object",
                "additionalProperties": false,
                "required": ["slug"],
                "properties": {
                    "slug": {
                        "type": "string",
                        "pattern": SLUG_PATTERN,
                        "minLength": 1,
                        "maxLength": MAX_STEP_SLUG_LEN,
                        "not": {"enum": RESERVED_STEP_SLUGS},
                        "description": "The step's name, unique in the workflow; a key of its dependents' input. 'run' is reserved."
                    },
                    "depends_on": {
                        "type": ["array", "null"],
                        "items": {"type": "string", "pattern": SLUG_PATTERN, "maxLength": MAX_STEP_SLUG_LEN,
                                  "not": {"enum": RESERVED_STEP_SLUGS}},
                        "uniqueItems": true,
                        "default": [],
                        "description": "Slugs of the steps whose outputs this step needs. A map step has at most one."
                    },
                    "type": {
                        "enum": STEP_TYPES.iter().map(|t| json!(t)).chain([Value::Null]).collect::<Vec<_>>(),
                        "default": "single",
                        "description": "single: one task, whose input holds the flow input under 'run' and each dependency's output under its slug. map: one task per element of the array it maps over. event: no task; it completes with the payload of send_event(run_id, step_slug, payload)."
                    },
                    "initial_tasks": option("initial_tasks", "Map steps only: the expected number of tasks, shown by progress reporting before the real count is known.", None),
                    "max_attempts": option("max_attempts", "Overrides the workflow's max_attempts.", None),
                    "timeout": option("timeout", "Overrides the workflow's timeout (seconds).", None),
                    "base_delay": option("base_delay", "Overrides the workflow's base_delay (seconds).", None),
                    "if": {
                        "type": ["object", "null"],
                        "description": "The step runs only if its input ({\"run\": <flow input>, \"<dependency>\": <its output>, ...}) contains this JSON (as PostgreSQL's @> tests it)."
                    },
                    "if_not": {
                        "type": ["object", "null"],
                        "description": "The step runs only if its input does not contain this JSON."
                    },
                    "when_unmet": {
                        "enum": WHEN_UNMET.iter().map(|w| json!(w)).chain([Value::Null]).collect::<Vec<_>>(),
                        "default": "skip",
                        "description": "When the condition is not met: skip the step (its key is then absent from its dependents' input), skip it and every step after it (skip_cascade), or fail the run (fail)."
                    },
                    "start_delay": option("start_delay", "Seconds between the step becoming ready and its tasks becoming visible to workers (a durable sleep).", None),
                    "flow": {
                        "type": ["string", "null"],
                        "pattern": SLUG_PATTERN,
                        "maxLength": MAX_WORKFLOW_SLUG_LEN,
                        "description": "A workflow this step runs as a sub-flow: the step starts a run of it with the step's input (a map step: one run per element) and takes its output."
                    },
                    "description": description
                },
                "allOf": [
                    {
                        "if": {"properties": {"type": {"const": "map"}}, "required": ["type"]},
                        "then": {"properties": {"depends_on": {"maxItems": 1}}},
                        "else": {"properties": {"initial_tasks": {"type": "null"}}}
                    },
                    {
                        "if": {"properties": {"type": {"const": "event"}}, "required": ["type"]},
                        "then": {"properties": {"flow": {"type": "null"}, "start_delay": {"type": "null"}}}
                    }
                ]
            }
        }
    });
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::{FLOW_KEYS, STEP_KEYS};

    fn keys(properties: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = properties
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k
    }

    #[test]
    fn the_schema_lists_exactly_the_documents_keys() {
        let schema = flow_schema(1000);
        let mut flow = FLOW_KEYS.to_vec();
        flow.sort_unstable();
        assert_eq!(keys(&schema["properties"]), flow);
        let mut step = STEP_KEYS.to_vec();
        step.sort_unstable();
        assert_eq!(keys(&schema["$defs"]["step"]["properties"]), step);
    }

    /// docs/flow.schema.json is the schema for the default settings. Regenerate it with
    /// `QF_WRITE_SCHEMA=1 cargo test --lib schema` after a change to the document rules.
    #[test]
    fn docs_flow_schema_json_is_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/flow.schema.json");
        let expected = serde_json::to_string_pretty(&flow_schema(1000)).unwrap() + "\n";
        if std::env::var_os("QF_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(actual, expected, "docs/flow.schema.json is out of date");
    }
}
