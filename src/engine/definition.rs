//! Rules for workflow and step definitions that need no database lookup. Each rule is a
//! function of its own, so that `create_flow` / `add_step` (which stop at the first problem)
//! and `define_flow` / `validate_flow` (which report every problem of a document, see
//! `engine::document`) apply exactly the same rules.

use crate::engine::slug::{check_step_slug, check_workflow_slug};
use crate::error::QfError;

pub const STEP_TYPES: &[&str] = &["single", "map"];

/// Workflow-level options, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowOptions {
    pub max_attempts: i32,
    pub timeout: i32,
    pub base_delay: i32,
}

/// `create_flow`'s defaults.
pub const FLOW_DEFAULTS: FlowOptions = FlowOptions {
    max_attempts: 3,
    timeout: 30,
    base_delay: 1,
};

/// A step definition as `add_step` received it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDef {
    pub step_slug: String,
    pub depends_on: Vec<String>,
    pub step_type: String,
    pub initial_tasks: Option<i32>,
    pub max_attempts: Option<i32>,
    pub timeout: Option<i32>,
    pub base_delay: Option<i32>,
}

/// The smallest value each integer option may take.
pub fn option_minimum(name: &str) -> i32 {
    match name {
        "max_attempts" | "timeout" => 1,
        _ => 0, // base_delay, initial_tasks
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

/// `invalid_step_type` unless `step_type` is one of [`STEP_TYPES`].
pub fn step_type_problem(step_slug: &str, step_type: &str) -> Option<QfError> {
    (!STEP_TYPES.contains(&step_type)).then(|| {
        QfError::InvalidStepType(format!(
            "step_type {step_type:?} of step {step_slug:?} must be 'single' or 'map'"
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
            "initial_tasks is only allowed on map steps, and {step_slug:?} is a single step"
        )));
    }
    option_problem("initial_tasks", n)
}

fn required<T>(name: &str, value: Option<T>) -> Result<T, QfError> {
    value.ok_or_else(|| QfError::NullArgument(format!("{name} must not be NULL")))
}

/// Validates `create_flow`'s arguments (NULLs included) in the order they are declared.
pub fn validate_flow(
    workflow_slug: Option<&str>,
    max_attempts: Option<i32>,
    timeout: Option<i32>,
    base_delay: Option<i32>,
) -> Result<(String, FlowOptions), QfError> {
    let slug = required("workflow_slug", workflow_slug)?;
    check_workflow_slug(slug)?;
    let options = FlowOptions {
        max_attempts: required("max_attempts", max_attempts)?,
        timeout: required("timeout", timeout)?,
        base_delay: required("base_delay", base_delay)?,
    };
    at_least("max_attempts", options.max_attempts)?;
    at_least("timeout", options.timeout)?;
    at_least("base_delay", options.base_delay)?;
    Ok((slug.to_string(), options))
}

/// Validates everything about an `add_step` call that does not need the workflow's other
/// steps: slugs, type, options, dependency list shape. Existence of the dependencies is
/// checked against the database afterwards.
#[allow(clippy::too_many_arguments)]
pub fn validate_step(
    workflow_slug: Option<&str>,
    step_slug: Option<&str>,
    depends_on: Option<Vec<Option<String>>>,
    step_type: Option<&str>,
    initial_tasks: Option<i32>,
    max_attempts: Option<i32>,
    timeout: Option<i32>,
    base_delay: Option<i32>,
) -> Result<(String, StepDef), QfError> {
    let workflow_slug = required("workflow_slug", workflow_slug)?;
    check_workflow_slug(workflow_slug)?;
    let step_slug = required("step_slug", step_slug)?;
    check_step_slug(step_slug)?;
    let depends_on = required("depends_on", depends_on)?;
    let step_type = required("step_type", step_type)?;
    if let Some(e) = step_type_problem(step_slug, step_type) {
        return Err(e);
    }
    let mut deps: Vec<String> = Vec::with_capacity(depends_on.len());
    for (i, dep) in depends_on.into_iter().enumerate() {
        let dep = dep.ok_or_else(|| {
            QfError::NullArgument(format!(
                "depends_on[{}] of step {step_slug:?} must not be NULL",
                i + 1
            ))
        })?;
        if let Some(e) = dependency_problem(step_slug, &dep, &deps) {
            return Err(e);
        }
        deps.push(dep);
    }
    if let Some(e) = map_dependencies_problem(step_slug, step_type, &deps) {
        return Err(e);
    }
    if let Some(e) = initial_tasks.and_then(|n| initial_tasks_problem(step_slug, step_type, n)) {
        return Err(e);
    }
    for (name, value) in [
        ("max_attempts", max_attempts),
        ("timeout", timeout),
        ("base_delay", base_delay),
    ] {
        if let Some(v) = value {
            at_least(name, v)?;
        }
    }
    Ok((
        workflow_slug.to_string(),
        StepDef {
            step_slug: step_slug.to_string(),
            depends_on: deps,
            step_type: step_type.to_string(),
            initial_tasks,
            max_attempts,
            timeout,
            base_delay,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(list: &[&str]) -> Option<Vec<Option<String>>> {
        Some(list.iter().map(|s| Some(s.to_string())).collect())
    }

    fn step(
        slug: &str,
        d: &[&str],
        ty: &str,
        initial_tasks: Option<i32>,
    ) -> Result<(String, StepDef), QfError> {
        validate_step(
            Some("wf"),
            Some(slug),
            deps(d),
            Some(ty),
            initial_tasks,
            None,
            None,
            None,
        )
    }

    #[test]
    fn flow_defaults_are_valid_and_bad_options_name_the_option() {
        let (slug, o) = validate_flow(Some("wf"), Some(3), Some(30), Some(1)).unwrap();
        assert_eq!(slug, "wf");
        assert_eq!(
            o,
            FlowOptions {
                max_attempts: 3,
                timeout: 30,
                base_delay: 1
            }
        );
        assert_eq!(
            validate_flow(Some("wf"), Some(0), Some(30), Some(1)),
            Err(QfError::InvalidOption(
                "max_attempts must be >= 1, got 0".into()
            ))
        );
        assert_eq!(
            validate_flow(Some("wf"), Some(3), Some(-5), Some(1)),
            Err(QfError::InvalidOption(
                "timeout must be >= 1, got -5".into()
            ))
        );
        assert_eq!(
            validate_flow(Some("wf"), Some(3), Some(30), Some(-1)),
            Err(QfError::InvalidOption(
                "base_delay must be >= 0, got -1".into()
            ))
        );
        assert!(validate_flow(Some("wf"), Some(1), Some(1), Some(0)).is_ok());
    }

    #[test]
    fn nulls_are_rejected_by_name() {
        assert_eq!(
            validate_flow(None, Some(3), Some(30), Some(1)),
            Err(QfError::NullArgument(
                "workflow_slug must not be NULL".into()
            ))
        );
        assert_eq!(
            validate_flow(Some("wf"), Some(3), None, Some(1)),
            Err(QfError::NullArgument("timeout must not be NULL".into()))
        );
        assert_eq!(
            validate_step(
                Some("wf"),
                Some("s"),
                None,
                Some("single"),
                None,
                None,
                None,
                None
            ),
            Err(QfError::NullArgument("depends_on must not be NULL".into()))
        );
        assert_eq!(
            validate_step(
                Some("wf"),
                Some("s"),
                deps(&[]),
                None,
                None,
                None,
                None,
                None
            ),
            Err(QfError::NullArgument("step_type must not be NULL".into()))
        );
        assert_eq!(
            validate_step(
                Some("wf"),
                Some("s"),
                Some(vec![Some("a".into()), None]),
                Some("single"),
                None,
                None,
                None,
                None
            ),
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
    }

    #[test]
    fn step_option_overrides_are_checked() {
        let v = |a, t, b| {
            validate_step(
                Some("wf"),
                Some("s"),
                deps(&[]),
                Some("single"),
                None,
                a,
                t,
                b,
            )
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
}
