//! Every error the SQL API raises, in one place.
//!
//! Each variant has a stable code word (the first word of the message, before the colon), a
//! SQLSTATE, and a message naming the offending values. Codes are part of the public contract
//! (see the README's error table): never rename one, only add.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use std::fmt;

/// A failed API call. Converting it into an [`ErrorReport`] keeps its SQLSTATE all the way to
/// the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QfError {
    InvalidWorkflowSlug(String),
    InvalidStepSlug(String),
    WorkflowNotFound(String),
    WorkflowExists(String),
    StepExists(String),
    InvalidStepType(String),
    DependencyNotFound(String),
    SelfDependency(String),
    DuplicateDependency(String),
    MapStepTooManyDependencies(String),
    InvalidOption(String),
    WorkflowHasActiveRuns(String),
    RunExists(String),
    RunNotFound(String),
    TaskNotFound(String),
    InvalidMapInput(String),
    /// A required argument was SQL NULL.
    NullArgument(String),
    /// `start_flow` on a workflow that has no steps yet.
    WorkflowHasNoSteps(String),
    /// A bug in quantum_flow itself (an SPI call that should not fail did).
    Internal(String),
}

pub type QfResult<T> = Result<T, QfError>;

impl QfError {
    /// The stable, machine-readable code word.
    pub fn code(&self) -> &'static str {
        use QfError::*;
        match self {
            InvalidWorkflowSlug(_) => "invalid_workflow_slug",
            InvalidStepSlug(_) => "invalid_step_slug",
            WorkflowNotFound(_) => "workflow_not_found",
            WorkflowExists(_) => "workflow_exists",
            StepExists(_) => "step_exists",
            InvalidStepType(_) => "invalid_step_type",
            DependencyNotFound(_) => "dependency_not_found",
            SelfDependency(_) => "self_dependency",
            DuplicateDependency(_) => "duplicate_dependency",
            MapStepTooManyDependencies(_) => "map_step_too_many_dependencies",
            InvalidOption(_) => "invalid_option",
            WorkflowHasActiveRuns(_) => "workflow_has_active_runs",
            RunExists(_) => "run_exists",
            RunNotFound(_) => "run_not_found",
            TaskNotFound(_) => "task_not_found",
            InvalidMapInput(_) => "invalid_map_input",
            NullArgument(_) => "null_argument",
            WorkflowHasNoSteps(_) => "workflow_has_no_steps",
            Internal(_) => "internal_error",
        }
    }

    /// The SQLSTATE as its five characters (what clients see).
    pub fn sqlstate(&self) -> &'static str {
        use QfError::*;
        match self {
            InvalidWorkflowSlug(_) | InvalidStepSlug(_) | InvalidStepType(_) | InvalidOption(_) => {
                "22023"
            }
            InvalidMapInput(_) => "22023",
            NullArgument(_) => "22004",
            WorkflowNotFound(_) | RunNotFound(_) | TaskNotFound(_) => "P0002",
            WorkflowExists(_) | StepExists(_) | RunExists(_) | DuplicateDependency(_) => "23505",
            DependencyNotFound(_) => "23503",
            SelfDependency(_) | MapStepTooManyDependencies(_) => "23514",
            WorkflowHasActiveRuns(_) => "55006",
            WorkflowHasNoSteps(_) => "55000",
            Internal(_) => "XX000",
        }
    }

    fn errcode(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self.sqlstate() {
            "22023" => ERRCODE_INVALID_PARAMETER_VALUE,
            "22004" => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "P0002" => ERRCODE_NO_DATA_FOUND,
            "23505" => ERRCODE_UNIQUE_VIOLATION,
            "23503" => ERRCODE_FOREIGN_KEY_VIOLATION,
            "23514" => ERRCODE_CHECK_VIOLATION,
            "55006" => ERRCODE_OBJECT_IN_USE,
            "55000" => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            _ => ERRCODE_INTERNAL_ERROR,
        }
    }

    /// The human explanation (without the code word).
    pub fn detail(&self) -> &str {
        use QfError::*;
        match self {
            InvalidWorkflowSlug(m)
            | InvalidStepSlug(m)
            | WorkflowNotFound(m)
            | WorkflowExists(m)
            | StepExists(m)
            | InvalidStepType(m)
            | DependencyNotFound(m)
            | SelfDependency(m)
            | DuplicateDependency(m)
            | MapStepTooManyDependencies(m)
            | InvalidOption(m)
            | WorkflowHasActiveRuns(m)
            | RunExists(m)
            | RunNotFound(m)
            | TaskNotFound(m)
            | InvalidMapInput(m)
            | NullArgument(m)
            | WorkflowHasNoSteps(m)
            | Internal(m) => m,
        }
    }

    pub fn workflow_not_found(slug: &str) -> Self {
        QfError::WorkflowNotFound(format!("workflow {slug:?} does not exist"))
    }

    pub fn run_not_found(run_id: impl fmt::Display) -> Self {
        QfError::RunNotFound(format!("run {run_id} does not exist"))
    }

    /// Every code word with its SQLSTATE, for the docs test that keeps the README honest.
    pub fn catalogue() -> Vec<(&'static str, &'static str)> {
        Self::samples()
            .iter()
            .map(|e| (e.code(), e.sqlstate()))
            .collect()
    }

    /// One error of each kind (with an empty message).
    fn samples() -> Vec<QfError> {
        use QfError::*;
        let s = String::new;
        vec![
            InvalidWorkflowSlug(s()),
            InvalidStepSlug(s()),
            WorkflowNotFound(s()),
            WorkflowExists(s()),
            StepExists(s()),
            InvalidStepType(s()),
            DependencyNotFound(s()),
            SelfDependency(s()),
            DuplicateDependency(s()),
            MapStepTooManyDependencies(s()),
            InvalidOption(s()),
            WorkflowHasActiveRuns(s()),
            RunExists(s()),
            RunNotFound(s()),
            TaskNotFound(s()),
            InvalidMapInput(s()),
            NullArgument(s()),
            WorkflowHasNoSteps(s()),
            Internal(s()),
        ]
    }
}

impl fmt::Display for QfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

impl std::error::Error for QfError {}

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
    }

    #[test]
    fn every_sqlstate_maps_to_a_pg_errcode() {
        // PostgreSQL packs a SQLSTATE's five characters 6 bits each, first character lowest.
        fn unpack(code: PgSqlErrorCode) -> String {
            let packed = code as i64;
            (0..5)
                .map(|i| (((packed >> (6 * i)) & 0x3f) as u8 + b'0') as char)
                .collect()
        }
        for e in QfError::samples() {
            // the code reported to clients is the SQLSTATE the catalogue documents
            assert_eq!(unpack(e.errcode()), e.sqlstate(), "{}", e.code());
            // class 22/23 for input errors, P0002 for lookups, 55 for state, XX for bugs
            assert!(
                ["22", "23", "P0", "55", "XX"].contains(&&e.sqlstate()[..2]),
                "{} has unexpected class {}",
                e.code(),
                e.sqlstate()
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
        let mut documented: Vec<(String, String)> = readme
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
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect();
        actual.sort();
        assert_eq!(documented, actual);
    }
}
