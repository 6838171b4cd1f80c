//! The slug rule shared by workflow and step names.

use crate::error::QfError;

/// A workflow's pgmq queue is named `QUEUE_PREFIX || lower(workflow_slug)`.
pub const QUEUE_PREFIX: &str = "qf_";

/// pgmq refuses queue names longer than 47 characters (its longest derived table name must fit
/// in 63 bytes); our prefix takes 3 of them.
pub const MAX_WORKFLOW_SLUG_LEN: usize = 47 - QUEUE_PREFIX.len();

/// Step slugs derive no object names, but they are keys of step input and of run output; we
/// cap them at PostgreSQL's identifier length so they stay readable and indexable.
pub const MAX_STEP_SLUG_LEN: usize = 63;

/// Step slugs that would collide with keys of step input.
pub const RESERVED_STEP_SLUGS: &[&str] = &["run"];

pub const SLUG_PATTERN: &str = "^[a-zA-Z_][a-zA-Z0-9_]*$";

/// Why a string is not a valid slug, or `None` when it is one.
fn slug_problem(slug: &str, max_len: usize) -> Option<String> {
    let shown = format!("{slug:?}");
    let mut chars = slug.chars();
    match chars.next() {
        None => return Some("must not be empty".to_string()),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Some(format!("{shown} must match {SLUG_PATTERN}"))
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(format!("{shown} must match {SLUG_PATTERN}"));
    }
    if slug.len() > max_len {
        return Some(format!(
            "{shown} is {} characters long, the maximum is {max_len}",
            slug.len()
        ));
    }
    None
}

/// The rule behind `is_valid_slug`: the pattern plus the workflow length limit, so a slug that
/// passes is valid both as a workflow slug and as a step slug (except the reserved `run`).
pub fn is_valid_slug(slug: &str) -> bool {
    slug_problem(slug, MAX_WORKFLOW_SLUG_LEN).is_none()
}

pub fn check_workflow_slug(slug: &str) -> Result<(), QfError> {
    match slug_problem(slug, MAX_WORKFLOW_SLUG_LEN) {
        None => Ok(()),
        Some(p) => Err(QfError::InvalidWorkflowSlug(format!("workflow slug {p}"))),
    }
}

pub fn check_step_slug(slug: &str) -> Result<(), QfError> {
    if let Some(p) = slug_problem(slug, MAX_STEP_SLUG_LEN) {
        return Err(QfError::InvalidStepSlug(format!("step slug {p}")));
    }
    if RESERVED_STEP_SLUGS.contains(&slug) {
        return Err(QfError::InvalidStepSlug(format!(
            "step slug {slug:?} is reserved (it is a key of every step's input)"
        )));
    }
    Ok(())
}

/// The pgmq queue of a workflow. pgmq lower-cases table names, so slugs that differ only in
/// case are refused by `create_flow` (see the unique index on `lower(workflow_slug)`).
pub fn queue_name(workflow_slug: &str) -> String {
    format!("{QUEUE_PREFIX}{}", workflow_slug.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_underscores() {
        for ok in [
            "a",
            "_",
            "A",
            "ai_data_pipeline",
            "Step2",
            "_x_9",
            "CamelCase",
        ] {
            assert!(is_valid_slug(ok), "{ok}");
            assert_eq!(check_workflow_slug(ok), Ok(()));
            assert_eq!(check_step_slug(ok), Ok(()));
        }
    }

    #[test]
    fn rejects_hostile_and_malformed_input() {
        for bad in [
            "",
            "9lives",
            "has space",
            "dash-ed",
            "semi;colon",
            "quo'te",
            "dq\"uote",
            "x; DROP TABLE quantum_flow.workflows; --",
            "naïve",
            "ünïcode",
            "tab\t",
            "new\nline",
            "dollar$",
            "dot.ted",
        ] {
            assert!(!is_valid_slug(bad), "{bad:?}");
            assert!(matches!(
                check_workflow_slug(bad),
                Err(QfError::InvalidWorkflowSlug(_))
            ));
            assert!(matches!(
                check_step_slug(bad),
                Err(QfError::InvalidStepSlug(_))
            ));
        }
    }

    #[test]
    fn length_limits_are_exact() {
        let longest = "w".repeat(MAX_WORKFLOW_SLUG_LEN);
        assert_eq!(MAX_WORKFLOW_SLUG_LEN, 44);
        assert_eq!(check_workflow_slug(&longest), Ok(()));
        let too_long = "w".repeat(MAX_WORKFLOW_SLUG_LEN + 1);
        assert_eq!(
            check_workflow_slug(&too_long),
            Err(QfError::InvalidWorkflowSlug(format!(
                "workflow slug {too_long:?} is 45 characters long, the maximum is 44"
            )))
        );
        assert_eq!(check_step_slug(&"s".repeat(63)), Ok(()));
        assert!(check_step_slug(&"s".repeat(64)).is_err());
        // the queue name of the longest workflow slug is exactly pgmq's limit
        assert_eq!(queue_name(&longest).len(), 47);
    }

    #[test]
    fn run_is_reserved_for_steps_only() {
        assert!(check_workflow_slug("run").is_ok());
        assert_eq!(
            check_step_slug("run"),
            Err(QfError::InvalidStepSlug(
                "step slug \"run\" is reserved (it is a key of every step's input)".into()
            ))
        );
        assert!(check_step_slug("Run").is_ok());
    }

    #[test]
    fn messages_name_the_value() {
        assert_eq!(
            check_workflow_slug("9lives").unwrap_err().to_string(),
            "invalid_workflow_slug: workflow slug \"9lives\" must match ^[a-zA-Z_][a-zA-Z0-9_]*$"
        );
        assert_eq!(
            check_step_slug("").unwrap_err().to_string(),
            "invalid_step_slug: step slug must not be empty"
        );
    }

    #[test]
    fn queue_names_are_lowercase_and_prefixed() {
        assert_eq!(queue_name("AI_Pipeline"), "qf_ai_pipeline");
    }
}
