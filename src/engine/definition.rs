//! Rules for workflow and step definitions that need no database lookup. Each rule is a
//! function of its own, so that `create_flow` / `add_step` (which stop at the first problem)
//! and `define_flow` / `validate_flow` (which report every problem of a document, see
//! `engine::document`) apply exactly the same rules.

use crate::engine::slug::{check_step_slug, check_workflow_slug};
use crate::error::QfError;
use serde_json::Value;

/// `single`: one task; `map`: one task per element of an array; `event`: no task, completed
/// by `send_event`.
pub const STEP_TYPES: &[&str] = &["single", "map", "event"];

/// What happens to a step whose condition (`if` / `if_not`) is not met.
pub const WHEN_UNMET: &[&str] = &["skip", "skip_cascade", "fail"];

/// The longest `concurrency_key` (a top-level key of the flow input).
pub const MAX_CONCURRENCY_KEY_LEN: usize = 63;

/// Workflow-level options, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowOptions {
    pub max_attempts: i32,
    pub timeout: i32,
    pub base_delay: i32,
    /// Seconds a run may take before it fails with `run_timeout` (None: no limit).
    pub run_timeout: Option<i32>,
    /// A top-level key of the flow input whose value groups runs for `max_concurrency`.
    pub concurrency_key: Option<String>,
    /// At most this many tasks of runs with the same `concurrency_key` value at once.
    pub max_concurrency: Option<i32>,
}

/// `create_flow`'s defaults.
pub const FLOW_DEFAULTS: FlowOptions = FlowOptions {
    max_attempts: 3,
    timeout: 30,
    base_delay: 1,
    run_timeout: None,
    concurrency_key: None,
    max_concurrency: None,
};

/// A step definition as `add_step` received it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDef {
    pub step_slug: String,
    pub depends_on: Vec<String>,
    pub step_type: String,
    pub initial_tasks: Option<i32>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
    /// The step runs only if its input contains this JSON (`@>`) ...
    pub if_matches: Option<Value>,
    /// ... and does not contain this one.
    pub if_not_matches: Option<Value>,
    /// One of [`WHEN_UNMET`].
    pub when_unmet: String,
    /// Seconds between the step becoming ready and its tasks becoming visible.
    pub start_delay: Option<i32>,
    /// A workflow whose run the step starts (one per task) and whose output it takes.
    pub flow: Option<String>,
}

/// The smallest value each integer option may take.
pub fn option_minimum(name: &str) -> i32 {
    match name {
        "max_attempts" | "timeout" | "run_timeout" | "max_concurrency" => 1,
        _ => 0, // base_delay, initial_tasks, start_delay
    }
}

/// `invalid_option` when `value` is below the option's minimum.
pub fn option_problem(name: &str, value: i32) -> Option<QfError> {
    let min = option_minimum(name);
    (value < min).then(|| QfError::InvalidOption(format!("{name} must be >= {min}, got {value}")))
}

fn at_least(name: &str, value: i32) -> Result<(), QfError> {
    option_problem(name, value).map_or(Ok(()), Err)
}

fn first(problem: Option<QfError>) -> Result<(), QfError> {
    problem.map_or(Ok(()), Err)
}

/// `invalid_step_type` unless `step_type` is one of [`STEP_TYPES`].
pub fn step_type_problem(step_slug: &str, step_type: &str) -> Option<QfError> {
    (!STEP_TYPES.contains(&step_type)).then(|| {
        QfError::InvalidStepType(format!(
            "step_type {step_type:?} of step {step_slug:?} must be 'single', 'map' or 'event'"
        ))
    })
}

/// `invalid_option` unless `when_unmet` is one of [`WHEN_UNMET`].
pub fn when_unmet_problem(step_slug: &str, when_unmet: &str) -> Option<QfError> {
    (!WHEN_UNMET.contains(&when_unmet)).then(|| {
        QfError::InvalidOption(format!(
            "when_unmet {when_unmet:?} of step {step_slug:?} must be 'skip', 'skip_cascade' or \
             'fail'"
        ))
    })
}

/// A condition must be a JSON object: the step's input (an object) is tested with `@>`.
pub fn condition_problem(step_slug: &str, name: &str, pattern: &Value) -> Option<QfError> {
    (!pattern.is_object()).then(|| {
        QfError::InvalidOption(format!(
            "{name} of step {step_slug:?} must be a JSON object (a pattern its input must \
             contain), got {pattern}"
        ))
    })
}

/// The slug of the workflow a step starts (`flow`).
pub fn flow_problem(step_slug: &str, flow: &str) -> Option<QfError> {
    check_workflow_slug(flow).err().map(|e| {
        QfError::InvalidWorkflowSlug(format!("flow of step {step_slug:?}: {}", e.detail()))
    })
}

/// What an event step may not have: tasks (`initial_tasks`), a sub-flow, a start delay.
pub fn event_step_problem(
    step_slug: &str,
    step_type: &str,
    option: &str,
    set: bool,
) -> Option<QfError> {
    (step_type == "event" && set).then(|| {
        QfError::InvalidOption(format!(
            "{option} is not for event steps, and {step_slug:?} is one (it has no tasks: \
             send_event completes it)"
        ))
    })
}

/// The problems of one entry of a step's dependency list (`earlier`: the entries before it):
/// a slug that breaks the rule, the step itself, or a repeat.
pub fn dependency_problem(step_slug: &str, dep: &str, earlier: &[String]) -> Option<QfError> {
    if let Err(e) = check_step_slug(dep) {
        return Some(QfError::InvalidStepSlug(format!(
            "in depends_on of {step_slug:?}: {}",
            e.detail()
        )));
    }
    if dep == step_slug {
        return Some(QfError::SelfDependency(format!(
            "step {step_slug:?} cannot depend on itself"
        )));
    }
    if earlier.iter().any(|d| d == dep) {
        return Some(QfError::DuplicateDependency(format!(
            "step {step_slug:?} lists dependency {dep:?} more than once"
        )));
    }
    None
}

/// `map_step_too_many_dependencies` for a map step with more than one dependency.
pub fn map_dependencies_problem(
    step_slug: &str,
    step_type: &str,
    deps: &[String],
) -> Option<QfError> {
    (step_type == "map" && deps.len() > 1).then(|| {
        QfError::MapStepTooManyDependencies(format!(
            "map step {step_slug:?} has {} dependencies ({}); a map step maps over the flow \
             input or over exactly one dependency's output",
            deps.len(),
            deps.join(", ")
        ))
    })
}

/// `initial_tasks` is only for map steps, and at least 0.
pub fn initial_tasks_problem(step_slug: &str, step_type: &str, n: i32) -> Option<QfError> {
    if step_type != "map" {
        return Some(QfError::InvalidOption(format!(
            "initial_tasks is only allowed on map steps, and {step_slug:?} is {} {step_type} step",
            if step_type.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            }
        )));
    }
    option_problem("initial_tasks", n)
}

/// A concurrency key needs a limit and the other way round; the key is a non-empty name.
pub fn concurrency_problem(key: Option<&str>, max: Option<i32>) -> Option<QfError> {
    match (key, max) {
        (Some(k), Some(_)) if k.is_empty() || k.chars().count() > MAX_CONCURRENCY_KEY_LEN => {
            Some(QfError::InvalidOption(format!(
                "concurrency_key must be 1 to {MAX_CONCURRENCY_KEY_LEN} characters, got {k:?}"
            )))
        }
        (Some(_), None) => Some(QfError::InvalidOption(
            "concurrency_key needs max_concurrency (how many tasks per key value at once)".into(),
        )),
        (None, Some(_)) => Some(QfError::InvalidOption(
            "max_concurrency needs concurrency_key (the key of the flow input it limits)".into(),
        )),
        _ => None,
    }
}

fn required<T>(name: &str, value: Option<T>) -> Result<T, QfError> {
    value.ok_or_else(|| QfError::NullArgument(format!("{name} must not be NULL")))
}

/// `create_flow`'s arguments, as SQL passed them (NULL: None).
#[derive(Debug, Clone, Default)]
pub struct FlowArgs<'a> {
    pub workflow_slug: Option<&'a str>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
    pub run_timeout: Option<i32>,
    pub concurrency_key: Option<&'a str>,
    pub max_concurrency: Option<i32>,
}

/// Validates `create_flow`'s arguments (NULLs included) in the order they are declared.
pub fn validate_flow(args: FlowArgs<'_>) -> Result<(String, FlowOptions), QfError> {
    let slug = required("workflow_slug", args.workflow_slug)?;
    check_workflow_slug(slug)?;
    let options = FlowOptions {
        max_attempts: required("max_attempts", args.max_attempts)?,
        timeout: required("timeout", args.timeout)?,
        base_delay: required("base_delay", args.base_delay)?,
        run_timeout: args.run_timeout,
        concurrency_key: args.concurrency_key.map(str::to_string),
        max_concurrency: args.max_concurrency,
    };
    at_least("max_attempts", options.max_attempts)?;
    at_least("timeout", options.timeout)?;
    at_least("base_delay", options.base_delay)?;
    if let Some(t) = options.run_timeout {
        at_least("run_timeout", t)?;
    }
    if let Some(m) = options.max_concurrency {
        at_least("max_concurrency", m)?;
    }
    first(concurrency_problem(
        options.concurrency_key.as_deref(),
        options.max_concurrency,
    ))?;
    Ok((slug.to_string(), options))
}

/// `add_step`'s arguments, as SQL passed them (NULL: None).
#[derive(Debug, Clone, Default)]
pub struct StepArgs<'a> {
    pub workflow_slug: Option<&'a str>,
    pub step_slug: Option<&'a str>,
    pub depends_on: Option<Vec<Option<String>>>,
    pub step_type: Option<&'a str>,
    pub initial_tasks: Option<i32>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
    pub if_matches: Option<Value>,
    pub if_not_matches: Option<Value>,
    pub when_unmet: Option<&'a str>,
    pub start_delay: Option<i32>,
    pub flow: Option<&'a str>,
}

/// Validates everything about an `add_step` call that does not need the workflow's other
/// steps: slugs, type, options, dependency list shape, condition, sub-flow slug. Existence of
/// the dependencies and of the sub-flow is checked against the database afterwards.
pub fn validate_step(args: StepArgs<'_>) -> Result<(String, StepDef), QfError> {
    let workflow_slug = required("workflow_slug", args.workflow_slug)?;
    check_workflow_slug(workflow_slug)?;
    let step_slug = required("step_slug", args.step_slug)?;
    check_step_slug(step_slug)?;
    let depends_on = required("depends_on", args.depends_on)?;
    let step_type = required("step_type", args.step_type)?;
    first(step_type_problem(step_slug, step_type))?;
    let when_unmet = required("when_unmet", args.when_unmet)?;
    let mut deps: Vec<String> = Vec::with_capacity(depends_on.len());
    for (i, dep) in depends_on.into_iter().enumerate() {
        let dep = dep.ok_or_else(|| {
            QfError::NullArgument(format!(
                "depends_on[{}] of step {step_slug:?} must not be NULL",
                i + 1
            ))
        })?;
        first(dependency_problem(step_slug, &dep, &deps))?;
        deps.push(dep);
    }
    first(map_dependencies_problem(step_slug, step_type, &deps))?;
    if let Some(n) = args.initial_tasks {
        first(initial_tasks_problem(step_slug, step_type, n))?;
    }
    for (name, value) in [
        ("max_attempts", args.max_attempts),
        ("timeout", args.timeout),
        ("base_delay", args.base_delay),
        ("start_delay", args.start_delay),
    ] {
        if let Some(v) = value {
            at_least(name, v)?;
        }
    }
    first(when_unmet_problem(step_slug, when_unmet))?;
    for (name, pattern) in [
        ("if_matches", &args.if_matches),
        ("if_not_matches", &args.if_not_matches),
    ] {
        if let Some(p) = pattern {
            first(condition_problem(step_slug, name, p))?;
        }
    }
    if let Some(flow) = args.flow {
        first(flow_problem(step_slug, flow))?;
    }
    first(event_step_problem(
        step_slug,
        step_type,
        "flow",
        args.flow.is_some(),
    ))?;
    first(event_step_problem(
        step_slug,
        step_type,
        "start_delay",
        args.start_delay.is_some(),
    ))?;
    Ok((
        workflow_slug.to_string(),
        StepDef {
            step_slug: step_slug.to_string(),
            depends_on: deps,
            step_type: step_type.to_string(),
            initial_tasks: args.initial_tasks,
            max_attempts: args.max_attempts,
            timeout: args.timeout,
            base_delay: args.base_delay,
            if_matches: args.if_matches,
            if_not_matches: args.if_not_matches,
            when_unmet: when_unmet.to_string(),
            start_delay: args.start_delay,
            flow: args.flow.map(str::to_string),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deps(list: &[&str]) -> Option<Vec<Option<String>>> {
        Some(list.iter().map(|s| Some(s.to_string())).collect())
    }

    fn args<'a>(slug: &'a str, d: &[&str], ty: &'a str) -> StepArgs<'a> {
        StepArgs {
            workflow_slug: Some("wf"),
            step_slug: Some(slug),
            depends_on: deps(d),
            step_type: Some(ty),
            when_unmet: Some("skip"),
            ..StepArgs::default()
        }
    }

    fn step(
        slug: &str,
        d: &[&str],
        ty: &str,
        initial_tasks: Option<i32>,
    ) -> Result<(String, StepDef), QfError> {
        validate_step(StepArgs {
            initial_tasks,
            ..args(slug, d, ty)
        })
    }

    fn flow(
        max_attempts: Option<i32>,
        timeout: Option<i32>,
        base_delay: Option<i32>,
    ) -> FlowArgs<'static> {
        FlowArgs {
            workflow_slug: Some("wf"),
            max_attempts,
            timeout,
            base_delay,
            ..FlowArgs::default()
        }
    }

    #[test]
    fn flow_defaults_are_valid_and_bad_options_name_the_option() {
        let (slug, o) = validate_flow(flow(Some(3), Some(30), Some(1))).unwrap();
        assert_eq!(slug, "wf");
        assert_eq!(o, FLOW_DEFAULTS);
        assert_eq!(
            validate_flow(flow(Some(0), Some(30), Some(1))),
            Err(QfError::InvalidOption(
                "max_attempts must be >= 1, got 0".into()
            ))
        );
        assert_eq!(
            validate_flow(flow(Some(3), Some(-5), Some(1))),
            Err(QfError::InvalidOption(
                "timeout must be >= 1, got -5".into()
            ))
        );
        assert_eq!(
            validate_flow(flow(Some(3), Some(30), Some(-1))),
            Err(QfError::InvalidOption(
                "base_delay must be >= 0, got -1".into()
            ))
        );
        assert!(validate_flow(flow(Some(1), Some(1), Some(0))).is_ok());
    }

    #[test]
    fn run_timeout_and_concurrency() {
        let with = |run_timeout, key, max| FlowArgs {
            run_timeout,
            concurrency_key: key,
            max_concurrency: max,
            ..flow(Some(3), Some(30), Some(1))
        };
        let (_, o) = validate_flow(with(Some(60), Some("tenant_id"), Some(2))).unwrap();
        assert_eq!(
            (
                o.run_timeout,
                o.concurrency_key.as_deref(),
                o.max_concurrency
            ),
            (Some(60), Some("tenant_id"), Some(2))
        );
        assert_eq!(
            validate_flow(with(Some(0), None, None)),
            Err(QfError::InvalidOption(
                "run_timeout must be >= 1, got 0".into()
            ))
        );
        assert!(matches!(
            validate_flow(with(None, Some("tenant_id"), None)),
            Err(QfError::InvalidOption(_))
        ));
        assert!(matches!(
            validate_flow(with(None, None, Some(2))),
            Err(QfError::InvalidOption(_))
        ));
        assert!(matches!(
            validate_flow(with(None, Some(""), Some(2))),
            Err(QfError::InvalidOption(_))
        ));
        assert!(matches!(
            validate_flow(with(None, Some("k"), Some(0))),
            Err(QfError::InvalidOption(_))
        ));
    }

    #[test]
    fn nulls_are_rejected_by_name() {
        assert_eq!(
            validate_flow(FlowArgs {
                workflow_slug: None,
                ..flow(Some(3), Some(30), Some(1))
            }),
            Err(QfError::NullArgument(
                "workflow_slug must not be NULL".into()
            ))
        );
        assert_eq!(
            validate_flow(flow(Some(3), None, Some(1))),
            Err(QfError::NullArgument("timeout must not be NULL".into()))
        );
        assert_eq!(
            validate_step(StepArgs {
                depends_on: None,
                ..args("s", &[], "single")
            }),
            Err(QfError::NullArgument("depends_on must not be NULL".into()))
        );
        assert_eq!(
            validate_step(StepArgs {
                step_type: None,
                ..args("s", &[], "single")
            }),
            Err(QfError::NullArgument("step_type must not be NULL".into()))
        );
        assert_eq!(
            validate_step(StepArgs {
                when_unmet: None,
                ..args("s", &[], "single")
            }),
            Err(QfError::NullArgument("when_unmet must not be NULL".into()))
        );
        assert_eq!(
            validate_step(StepArgs {
                depends_on: Some(vec![Some("a".into()), None]),
                ..args("s", &[], "single")
            }),
            Err(QfError::NullArgument(
                "depends_on[2] of step \"s\" must not be NULL".into()
            ))
        );
    }

    #[test]
    fn dependency_shape_rules() {
        assert!(matches!(
            step("s", &["s"], "single", None),
            Err(QfError::SelfDependency(_))
        ));
        assert!(matches!(
            step("s", &["a", "b", "a"], "single", None),
            Err(QfError::DuplicateDependency(_))
        ));
        assert_eq!(
            step("m", &["a", "b"], "map", None),
            Err(QfError::MapStepTooManyDependencies(
                "map step \"m\" has 2 dependencies (a, b); a map step maps over the flow input \
                 or over exactly one dependency's output"
                    .into()
            ))
        );
        assert!(matches!(
            step("s", &["bad-dep"], "single", None),
            Err(QfError::InvalidStepSlug(_))
        ));
        let (_, d) = step("s", &["b", "a"], "single", None).unwrap();
        assert_eq!(
            d.depends_on,
            vec!["b".to_string(), "a".to_string()],
            "order is kept"
        );
    }

    #[test]
    fn step_type_and_initial_tasks() {
        assert!(matches!(
            step("s", &[], "parallel", None),
            Err(QfError::InvalidStepType(_))
        ));
        assert!(matches!(
            step("s", &[], "MAP", None),
            Err(QfError::InvalidStepType(_))
        ));
        assert_eq!(
            step("s", &[], "single", Some(5)),
            Err(QfError::InvalidOption(
                "initial_tasks is only allowed on map steps, and \"s\" is a single step".into()
            ))
        );
        assert!(matches!(
            step("m", &[], "map", Some(-1)),
            Err(QfError::InvalidOption(_))
        ));
        assert!(step("m", &[], "map", Some(0)).is_ok());
        assert!(step("m", &[], "map", Some(100)).is_ok());
        assert!(step("e", &["m"], "event", None).is_ok());
    }

    #[test]
    fn step_option_overrides_are_checked() {
        let v = |a, t, b| {
            validate_step(StepArgs {
                max_attempts: a,
                timeout: t,
                base_delay: b,
                ..args("s", &[], "single")
            })
        };
        assert!(matches!(
            v(Some(0), None, None),
            Err(QfError::InvalidOption(_))
        ));
        assert!(matches!(
            v(None, Some(0), None),
            Err(QfError::InvalidOption(_))
        ));
        assert!(matches!(
            v(None, None, Some(-1)),
            Err(QfError::InvalidOption(_))
        ));
        assert!(v(Some(1), Some(1), Some(0)).is_ok());
    }

    #[test]
    fn conditions_delays_sub_flows_and_events() {
        let ok = validate_step(StepArgs {
            if_matches: Some(json!({"run": {"kind": "csv"}})),
            if_not_matches: Some(json!({"a": {"skip": true}})),
            when_unmet: Some("skip_cascade"),
            start_delay: Some(30),
            flow: Some("child_flow"),
            ..args("s", &["a"], "single")
        })
        .unwrap()
        .1;
        assert_eq!(
            (ok.when_unmet.as_str(), ok.start_delay, ok.flow.as_deref()),
            ("skip_cascade", Some(30), Some("child_flow"))
        );
        let bad = |a: StepArgs<'static>| validate_step(a).unwrap_err();
        assert_eq!(
            bad(StepArgs {
                when_unmet: Some("ignore"),
                ..args("s", &[], "single")
            }),
            QfError::InvalidOption(
                "when_unmet \"ignore\" of step \"s\" must be 'skip', 'skip_cascade' or 'fail'"
                    .into()
            )
        );
        assert!(matches!(
            bad(StepArgs {
                if_matches: Some(json!([1])),
                ..args("s", &[], "single")
            }),
            QfError::InvalidOption(_)
        ));
        assert!(matches!(
            bad(StepArgs {
                start_delay: Some(-1),
                ..args("s", &[], "single")
            }),
            QfError::InvalidOption(_)
        ));
        assert!(matches!(
            bad(StepArgs {
                flow: Some("9bad"),
                ..args("s", &[], "single")
            }),
            QfError::InvalidWorkflowSlug(_)
        ));
        assert!(matches!(
            bad(StepArgs {
                flow: Some("child"),
                ..args("e", &[], "event")
            }),
            QfError::InvalidOption(_)
        ));
        assert!(matches!(
            bad(StepArgs {
                start_delay: Some(5),
                ..args("e", &[], "event")
            }),
            QfError::InvalidOption(_)
        ));
        assert!(matches!(
            bad(StepArgs {
                initial_tasks: Some(5),
                ..args("e", &[], "event")
            }),
            QfError::InvalidOption(_)
        ));
    }
}
