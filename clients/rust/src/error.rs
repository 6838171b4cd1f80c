//! The client's error type: API errors keep the server's code word and SQLSTATE.

use crate::types::FlowProblem;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

/// What `define_flow` puts before the JSON array of every problem in its error's DETAIL.
const PROBLEMS_PREFIX: &str = "every problem of the document: ";

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
    OutputTooLarge,
    ExtensionVersionMismatch,
    /// A flow document (or one of its values) has the wrong JSON type, or no steps.
    InvalidDocument,
    /// A key a flow document does not know (a misspelling, usually).
    UnknownKey,
    /// A flow document lacks `workflow_slug`, `steps`, or a step's `slug`.
    MissingKey,
    /// Two steps of a flow document have the same slug.
    DuplicateStep,
    /// Steps of a flow document depend on each other in a circle.
    Cycle,
    /// More than `quantum_flow.max_steps` steps, or a map step fanning out to more than
    /// `quantum_flow.max_map_tasks` tasks.
    LimitExceeded,
    /// `send_event` names a step the run's workflow does not have.
    StepNotFound,
    /// `send_event` names a step that is not an event step.
    NotAnEventStep,
    InternalError,
    /// A code word this client does not know (a newer server).
    Unknown(String),
}

impl ErrorCode {
    /// Every known code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 29] = [
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
        ErrorCode::OutputTooLarge,
        ErrorCode::ExtensionVersionMismatch,
        ErrorCode::InvalidDocument,
        ErrorCode::UnknownKey,
        ErrorCode::MissingKey,
        ErrorCode::DuplicateStep,
        ErrorCode::Cycle,
        ErrorCode::LimitExceeded,
        ErrorCode::StepNotFound,
        ErrorCode::NotAnEventStep,
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
            OutputTooLarge => "output_too_large",
            ExtensionVersionMismatch => "extension_version_mismatch",
            InvalidDocument => "invalid_document",
            UnknownKey => "unknown_key",
            MissingKey => "missing_key",
            DuplicateStep => "duplicate_step",
            Cycle => "cycle",
            LimitExceeded => "limit_exceeded",
            StepNotFound => "step_not_found",
            NotAnEventStep => "not_an_event_step",
            InternalError => "internal_error",
            Unknown(code) => code,
        }
    }

    /// The SQLSTATE the server documents for this code (None for `Unknown`).
    pub fn expected_sqlstate(&self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            InvalidWorkflowSlug | InvalidStepSlug | InvalidStepType | InvalidOption
            | InvalidMapInput | InvalidDocument | UnknownKey | MissingKey => "22023",
            NullArgument => "22004",
            WorkflowNotFound | RunNotFound | TaskNotFound | StepNotFound => "P0002",
            NotAnEventStep => "42809",
            WorkflowExists | StepExists | RunExists | DuplicateDependency | DuplicateStep => {
                "23505"
            }
            DependencyNotFound => "23503",
            SelfDependency | MapStepTooManyDependencies | Cycle => "23514",
            OutputTooLarge => "22001",
            LimitExceeded => "54000",
            WorkflowHasActiveRuns => "55006",
            WorkflowHasNoSteps | ExtensionVersionMismatch => "55000",
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

/// As its code word (`"unknown_key"`), as the server writes it in `validate_flow`'s answer.
impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&word))
    }
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The extension refused the call: `message` is the server's whole message
    /// (`"<code>: <explanation>"`), `sqlstate` its five-character SQLSTATE, `detail` the
    /// error's DETAIL when it has one (`define_flow`: every problem of the document, see
    /// [`Error::problems`]).
    #[error("{message} (SQLSTATE {sqlstate})")]
    Api {
        code: ErrorCode,
        sqlstate: String,
        message: String,
        detail: Option<String>,
    },
    /// Any other database or connection error.
    #[error("database error: {}", describe_db_error(.0))]
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
    /// `FlowSpec::from_json` / `from_value`: text that does not have the typed shape
    /// (`define_from_json` sends text to the server unread and never returns this).
    #[error("invalid flow spec: {0}")]
    InvalidSpec(String),
    /// The server answered with something this client cannot decode (a version mismatch).
    #[error("unexpected server response: {0}")]
    Decode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tokio-postgres error as a person needs to read it: the server's own message and
/// SQLSTATE for an error the server raised (tokio-postgres' `Display` says only "db
/// error" then), else tokio-postgres' text (connection errors name their cause).
fn describe_db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Error {
    /// The API error code, when this is an [`Error::Api`].
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// `define_flow` / `define_from_json` / `FlowSpec::define` refused a document: every
    /// problem of it, as `validate_flow` reports them (the error itself is the first). `None`
    /// for any other error.
    pub fn problems(&self) -> Option<Vec<FlowProblem>> {
        match self {
            Error::Api {
                detail: Some(detail),
                ..
            } => serde_json::from_str(detail.strip_prefix(PROBLEMS_PREFIX)?).ok(),
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
        let api = e
            .as_db_error()
            .and_then(|db| code_word(db.message()).map(|word| (word, db)));
        match api {
            Some((word, db)) => Error::Api {
                code: ErrorCode::parse(word),
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
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

    #[test]
    fn codes_are_json_strings() {
        assert_eq!(
            serde_json::to_value(ErrorCode::UnknownKey).unwrap(),
            "unknown_key"
        );
        let codes: Vec<ErrorCode> = serde_json::from_str(r#"["cycle", "brand_new_code"]"#).unwrap();
        assert_eq!(
            codes,
            [
                ErrorCode::Cycle,
                ErrorCode::Unknown("brand_new_code".into())
            ]
        );
    }

    #[test]
    fn problems_are_read_from_define_flows_detail() {
        let api = |detail: Option<&str>| Error::Api {
            code: ErrorCode::Cycle,
            sqlstate: "23514".into(),
            message: "cycle: $.steps[0].depends_on: ...".into(),
            detail: detail.map(str::to_string),
        };
        let problems = api(Some(
            r#"every problem of the document: [{"path":"$.steps[0].depends_on","code":"cycle","message":"a -> b -> a","hint":null}]"#,
        ))
        .problems()
        .unwrap();
        assert_eq!(
            problems,
            [FlowProblem {
                path: "$.steps[0].depends_on".into(),
                code: ErrorCode::Cycle,
                message: "a -> b -> a".into(),
                hint: None,
            }]
        );
        assert_eq!(api(None).problems(), None);
        assert_eq!(api(Some("something else")).problems(), None);
        assert_eq!(Error::InvalidSpec("x".into()).problems(), None);
    }
}
