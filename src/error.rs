//! Every error the SQL API raises, in one place.
//!
//! Each variant has a stable code word (the first word of the message, before the colon), a
//! SQLSTATE, and a message naming the offending values. Codes are part of the public contract
//! (see the README's error table): never rename one, only add. The table below is the only
//! place a code is defined: a new code is one line.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use std::fmt;

macro_rules! error_table {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, $errcode:ident; )*) => {
        /// A failed API call. Converting it into an [`ErrorReport`] keeps its SQLSTATE all the
        /// way to the client.
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        pub enum QfError {
            $( $(#[$doc])* #[error("{}: {}", $code, .0)] $variant(String), )*
        }

        impl QfError {
            /// The stable, machine-readable code word.
            pub fn code(&self) -> &'static str {
                match self { $( QfError::$variant(_) => $code, )* }
            }

            fn errcode(&self) -> PgSqlErrorCode {
                match self { $( QfError::$variant(_) => PgSqlErrorCode::$errcode, )* }
            }

            /// The human explanation (without the code word).
            pub fn detail(&self) -> &str {
                match self { $( QfError::$variant(m) => m, )* }
            }

            fn set_message(&mut self, message: String) {
                match self { $( QfError::$variant(m) => *m = message, )* }
            }

            /// One error of each kind (with an empty message).
            fn samples() -> Vec<QfError> {
                vec![ $( QfError::$variant(String::new()), )* ]
            }
        }
    };
}

error_table! {
    InvalidWorkflowSlug => "invalid_workflow_slug", ERRCODE_INVALID_PARAMETER_VALUE;
    InvalidStepSlug => "invalid_step_slug", ERRCODE_INVALID_PARAMETER_VALUE;
    WorkflowNotFound => "workflow_not_found", ERRCODE_NO_DATA_FOUND;
    WorkflowExists => "workflow_exists", ERRCODE_UNIQUE_VIOLATION;
    StepExists => "step_exists", ERRCODE_UNIQUE_VIOLATION;
    InvalidStepType => "invalid_step_type", ERRCODE_INVALID_PARAMETER_VALUE;
    DependencyNotFound => "dependency_not_found", ERRCODE_FOREIGN_KEY_VIOLATION;
    SelfDependency => "self_dependency", ERRCODE_CHECK_VIOLATION;
    DuplicateDependency => "duplicate_dependency", ERRCODE_UNIQUE_VIOLATION;
    MapStepTooManyDependencies => "map_step_too_many_dependencies", ERRCODE_CHECK_VIOLATION;
    InvalidOption => "invalid_option", ERRCODE_INVALID_PARAMETER_VALUE;
    WorkflowHasActiveRuns => "workflow_has_active_runs", ERRCODE_OBJECT_IN_USE;
    RunExists => "run_exists", ERRCODE_UNIQUE_VIOLATION;
    RunNotFound => "run_not_found", ERRCODE_NO_DATA_FOUND;
    TaskNotFound => "task_not_found", ERRCODE_NO_DATA_FOUND;
    InvalidMapInput => "invalid_map_input", ERRCODE_INVALID_PARAMETER_VALUE;
    /// A required argument was SQL NULL.
    NullArgument => "null_argument", ERRCODE_NULL_VALUE_NOT_ALLOWED;
    /// `start_flow` on a workflow that has no steps yet.
    WorkflowHasNoSteps => "workflow_has_no_steps", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
    /// An output larger than `quantum_flow.max_output_bytes`, or a step input, fan-in or run
    /// output larger than a `jsonb` value can hold.
    OutputTooLarge => "output_too_large", ERRCODE_STRING_DATA_RIGHT_TRUNCATION;
    /// The library loaded is not the version of the extension's SQL objects in this database
    /// (a new version was installed and `ALTER EXTENSION quantum_flow UPDATE` has not run).
    ExtensionVersionMismatch => "extension_version_mismatch", ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
    /// A flow document (`define_flow`, `validate_flow`) that is not an object, or has a value
    /// of the wrong JSON type.
    InvalidDocument => "invalid_document", ERRCODE_INVALID_PARAMETER_VALUE;
    /// A key a flow document does not know (a misspelling, usually).
    UnknownKey => "unknown_key", ERRCODE_INVALID_PARAMETER_VALUE;
    /// A key a flow document must have.
    MissingKey => "missing_key", ERRCODE_INVALID_PARAMETER_VALUE;
    /// Two steps of a flow document with the same slug.
    DuplicateStep => "duplicate_step", ERRCODE_UNIQUE_VIOLATION;
    /// Steps of a flow document that depend on each other in a circle.
    Cycle => "cycle", ERRCODE_CHECK_VIOLATION;
    /// More than a guardrail setting allows (`quantum_flow.max_steps`,
    /// `quantum_flow.max_map_tasks`).
    LimitExceeded => "limit_exceeded", ERRCODE_PROGRAM_LIMIT_EXCEEDED;
    /// `send_event` for a step the run's workflow does not have.
    StepNotFound => "step_not_found", ERRCODE_NO_DATA_FOUND;
    /// `send_event` for a step that is not an event step.
    NotAnEventStep => "not_an_event_step", ERRCODE_WRONG_OBJECT_TYPE;
    /// A bug in quantum_flow itself (an SPI call that should not fail did).
    Internal => "internal_error", ERRCODE_INTERNAL_ERROR;
}

pub type QfResult<T> = Result<T, QfError>;

// Codes that are never raised by a call: they start the error message of a run that failed
// for that reason (see the README's table of run failures).

/// A step's input did not meet its condition and its `when_unmet` is `fail`.
pub const CONDITION_UNMET: &str = "condition_unmet";
/// An event step's timeout passed without an event.
pub const EVENT_TIMEOUT: &str = "event_timeout";
/// A run did not finish within its workflow's `run_timeout`.
pub const RUN_TIMEOUT: &str = "run_timeout";

/// PostgreSQL packs a SQLSTATE's five characters 6 bits each, first character lowest.
fn unpack_sqlstate(code: PgSqlErrorCode) -> String {
    let packed = code as i64;
    (0..5)
        .map(|i| (((packed >> (6 * i)) & 0x3f) as u8 + b'0') as char)
        .collect()
}

impl QfError {
    /// The SQLSTATE as its five characters (what clients see).
    pub fn sqlstate(&self) -> String {
        unpack_sqlstate(self.errcode())
    }

    pub fn workflow_not_found(slug: &str) -> Self {
        QfError::WorkflowNotFound(format!("workflow {slug:?} does not exist"))
    }

    /// The same error with ` (hint)` appended to its message, when there is a hint.
    pub fn with_hint(self, hint: Option<String>) -> Self {
        let Some(hint) = hint else { return self };
        self.map_message(|m| format!("{m} ({hint})"))
    }

    /// The same kind of error with another message.
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> Self {
        let message = f(self.detail());
        let mut e = self;
        e.set_message(message);
        e
    }

    pub fn run_not_found(run_id: impl fmt::Display) -> Self {
        QfError::RunNotFound(format!("run {run_id} does not exist"))
    }

    /// Every code word with its SQLSTATE, for the docs test that keeps the README honest.
    pub fn catalogue() -> Vec<(&'static str, String)> {
        Self::samples()
            .iter()
            .map(|e| (e.code(), e.sqlstate()))
            .collect()
    }
}

impl From<QfError> for ErrorReport {
    fn from(e: QfError) -> Self {
        ErrorReport::new(e.errcode(), e.to_string(), "quantum_flow")
    }
}

impl From<pgrx::spi::SpiError> for QfError {
    fn from(e: pgrx::spi::SpiError) -> Self {
        QfError::Internal(format!("SPI call failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_starts_with_code_and_colon() {
        let e =
            QfError::InvalidWorkflowSlug("\"9lives\" must match ^[a-zA-Z_][a-zA-Z0-9_]*$".into());
        assert_eq!(
            e.to_string(),
            "invalid_workflow_slug: \"9lives\" must match ^[a-zA-Z_][a-zA-Z0-9_]*$"
        );
        assert_eq!(e.sqlstate(), "22023");
        assert_eq!(QfError::OutputTooLarge(String::new()).sqlstate(), "22001");
        assert_eq!(QfError::NullArgument(String::new()).sqlstate(), "22004");
        assert_eq!(QfError::WorkflowNotFound(String::new()).sqlstate(), "P0002");
    }

    #[test]
    fn codes_are_unique_and_in_the_documented_classes() {
        for e in QfError::samples() {
            // class 22/23 for input errors, 42809 for an object of the wrong kind, P0002 for
            // lookups, 54 for limits, 55 for state, XX for bugs
            let sqlstate = e.sqlstate();
            assert!(
                ["22", "23", "42", "P0", "54", "55", "XX"].contains(&&sqlstate[..2]),
                "{} has unexpected class {sqlstate}",
                e.code(),
            );
        }
        let codes: std::collections::HashSet<_> =
            QfError::catalogue().into_iter().map(|(c, _)| c).collect();
        assert_eq!(codes.len(), QfError::catalogue().len(), "codes are unique");
    }
}

#[cfg(test)]
mod readme_tests {
    use super::QfError;

    /// The README's error table lists exactly the codes and SQLSTATEs the code raises.
    #[test]
    fn readme_error_table_matches_the_code() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Error codes\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has an Error codes section");
        let mut documented: Vec<(String, String)> = section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                // | `code` | SQLSTATE | meaning |
                if cells.len() >= 4 && cells[1].starts_with('`') && cells[2].len() == 5 {
                    Some((cells[1].trim_matches('`').to_string(), cells[2].to_string()))
                } else {
                    None
                }
            })
            .collect();
        documented.sort();
        let mut actual: Vec<(String, String)> = QfError::catalogue()
            .into_iter()
            .map(|(c, s)| (c.to_string(), s))
            .collect();
        actual.sort();
        assert_eq!(documented, actual);
    }

    /// docs/troubleshooting.md has a section per code, headed by the code and its SQLSTATE,
    /// and no section for a code that does not exist.
    #[test]
    fn troubleshooting_page_covers_every_code() {
        let page = include_str!("../docs/troubleshooting.md");
        let mut documented: Vec<String> = page
            .lines()
            .filter_map(|line| line.strip_prefix("### `"))
            .map(|rest| rest.replace("` (", " ").trim_end_matches(')').to_string())
            .collect();
        documented.sort();
        let mut actual: Vec<String> = QfError::catalogue()
            .into_iter()
            .map(|(c, s)| format!("{c} {s}"))
            .collect();
        actual.sort();
        assert_eq!(documented, actual);
    }
}
