//! The client's error type: API errors keep the server's code word and SQLSTATE.

use std::fmt;
use uuid::Uuid;

/// The stable code word that starts every quantum_flow error message
/// (`"<code>: <explanation>"`), one variant per code the extension raises.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidWorkflowSlug,
    InvalidStepSlug,
    InvalidStepType,
    InvalidOption,
    InvalidMapInput,
    NullArgument,
    WorkflowNotFound,
    RunNotFound,
    TaskNotFound,
    WorkflowExists,
    StepExists,
    RunExists,
    DuplicateDependency,
    DependencyNotFound,
    SelfDependency,
    MapStepTooManyDependencies,
    WorkflowHasActiveRuns,
    WorkflowHasNoSteps,
    InternalError,
    /// A code word this client does not know (a newer server).
    Unknown(String),
}

impl ErrorCode {
    /// Every known code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::InvalidWorkflowSlug,
        ErrorCode::InvalidStepSlug,
        ErrorCode::InvalidStepType,
        ErrorCode::InvalidOption,
        ErrorCode::InvalidMapInput,
        ErrorCode::NullArgument,
        ErrorCode::WorkflowNotFound,
        ErrorCode::RunNotFound,
        ErrorCode::TaskNotFound,
        ErrorCode::WorkflowExists,
        ErrorCode::StepExists,
        ErrorCode::RunExists,
        ErrorCode::DuplicateDependency,
        ErrorCode::DependencyNotFound,
        ErrorCode::SelfDependency,
        ErrorCode::MapStepTooManyDependencies,
        ErrorCode::WorkflowHasActiveRuns,
        ErrorCode::WorkflowHasNoSteps,
        ErrorCode::InternalError,
    ];

    /// The code word as the server writes it.
    pub fn as_str(&self) -> &str {
        use ErrorCode::*;
        match self {
            InvalidWorkflowSlug => "invalid_workflow_slug",
            InvalidStepSlug => "invalid_step_slug",
            InvalidStepType => "invalid_step_type",
            InvalidOption => "invalid_option",
            InvalidMapInput => "invalid_map_input",
            NullArgument => "null_argument",
            WorkflowNotFound => "workflow_not_found",
            RunNotFound => "run_not_found",
            TaskNotFound => "task_not_found",
            WorkflowExists => "workflow_exists",
            StepExists => "step_exists",
            RunExists => "run_exists",
            DuplicateDependency => "duplicate_dependency",
            DependencyNotFound => "dependency_not_found",
            SelfDependency => "self_dependency",
            MapStepTooManyDependencies => "map_step_too_many_dependencies",
            WorkflowHasActiveRuns => "workflow_has_active_runs",
            WorkflowHasNoSteps => "workflow_has_no_steps",
            InternalError => "internal_error",
            Unknown(code) => code,
        }
    }

    /// The SQLSTATE the server documents for this code (None for `Unknown`).
    pub fn expected_sqlstate(&self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            InvalidWorkflowSlug | InvalidStepSlug | InvalidStepType | InvalidOption
            | InvalidMapInput => "22023",
            NullArgument => "22004",
            WorkflowNotFound | RunNotFound | TaskNotFound => "P0002",
            WorkflowExists | StepExists | RunExists | DuplicateDependency => "23505",
            DependencyNotFound => "23503",
            SelfDependency | MapStepTooManyDependencies => "23514",
            WorkflowHasActiveRuns => "55006",
            WorkflowHasNoSteps => "55000",
            InternalError => "XX000",
            Unknown(_) => return None,
        })
    }

    /// Parses a code word; anything unknown becomes `Unknown(word)`.
    pub fn parse(word: &str) -> ErrorCode {
        ErrorCode::ALL
            .iter()
            .find(|c| c.as_str() == word)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Unknown(word.to_string()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The extension refused the call: `message` is the server's whole message
    /// (`"<code>: <explanation>"`), `sqlstate` its five-character SQLSTATE.
    #[error("{message} (SQLSTATE {sqlstate})")]
    Api {
        code: ErrorCode,
        sqlstate: String,
        message: String,
    },
    /// Any other database or connection error.
    #[error("database error: {0}")]
    Db(#[source] tokio_postgres::Error),
    /// `execute_dynamic` / `Worker::connect`: steps of the workflow that have no handler, in
    /// step order.
    #[error("no handler for step(s): {}", .0.join(", "))]
    MissingHandlers(Vec<String>),
    /// `execute_dynamic`: the run failed; `message` is the run's error message.
    #[error("run {run_id} failed: {message}")]
    RunFailed { run_id: Uuid, message: String },
    /// `execute_dynamic`: the run did not finish in time (it is left `started`).
    #[error("run {run_id} did not finish before the timeout")]
    Timeout { run_id: Uuid },
    /// `execute_dynamic`: the worker task panicked (a bug in this crate).
    #[error("worker panicked: {0}")]
    WorkerPanicked(String),
    /// A workflow document (`FlowSpec`) that cannot be read.
    #[error("invalid flow spec: {0}")]
    InvalidSpec(String),
    /// The server answered with something this client cannot decode (a version mismatch).
    #[error("unexpected server response: {0}")]
    Decode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The API error code, when this is an [`Error::Api`].
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The SQLSTATE of a server error (API or not).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Api { sqlstate, .. } => Some(sqlstate),
            Error::Db(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }
}

/// The code word of a quantum_flow message: a snake_case word directly followed by ':'.
fn code_word(message: &str) -> Option<&str> {
    let (word, _) = message.split_once(':')?;
    let mut chars = word.chars();
    let first = chars.next()?;
    if first.is_ascii_lowercase()
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some(word)
    } else {
        None
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let api = e.as_db_error().and_then(|db| {
            code_word(db.message()).map(|word| (word, db.code().code(), db.message()))
        });
        match api {
            Some((word, sqlstate, message)) => Error::Api {
                code: ErrorCode::parse(word),
                sqlstate: sqlstate.to_string(),
                message: message.to_string(),
            },
            None => Error::Db(e),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Decode(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_word_is_the_snake_case_word_before_the_colon() {
        assert_eq!(
            code_word("invalid_workflow_slug: \"9lives\" must match ^[a-zA-Z_][a-zA-Z0-9_]*$"),
            Some("invalid_workflow_slug")
        );
        assert_eq!(
            code_word("run_not_found: run x does not exist"),
            Some("run_not_found")
        );
        // ordinary PostgreSQL messages are not API errors
        assert_eq!(code_word("invalid input syntax for type uuid: \"x\""), None);
        assert_eq!(code_word("relation \"x\" does not exist"), None);
        assert_eq!(code_word("Syntax: x"), None);
    }

    #[test]
    fn every_code_round_trips() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            assert!(code.expected_sqlstate().is_some());
        }
        assert_eq!(
            ErrorCode::parse("brand_new_code"),
            ErrorCode::Unknown("brand_new_code".into())
        );
    }
}
