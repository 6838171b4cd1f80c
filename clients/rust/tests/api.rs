//! The SQL API through the typed functions: results, statuses, and every error code.

mod common;

use common::{assert_api_error, client, database};
use quantum_flow_client::*;
use serde_json::json;
use uuid::Uuid;

const DB: &str = "qf_rust_client_api";

#[tokio::test]
async fn create_flow_returns_the_row_and_is_idempotent() {
    let c = client(&database(DB).await).await;
    let created = create_flow(
        &c,
        "defs_flow",
        &FlowOptions::new().max_attempts(5).timeout(60),
    )
    .await
    .unwrap();
    assert_eq!(created.workflow_slug, "defs_flow");
    assert_eq!(
        (created.max_attempts, created.timeout, created.base_delay),
        (5, 60, 1)
    );
    let again = create_flow(
        &c,
        "defs_flow",
        &FlowOptions::new().max_attempts(5).timeout(60),
    )
    .await
    .unwrap();
    assert_eq!(again, created, "same options: the existing row, unchanged");
    let defaults = create_flow(&c, "defs_defaults", &FlowOptions::new())
        .await
        .unwrap();
    assert_eq!(
        (defaults.max_attempts, defaults.timeout, defaults.base_delay),
        (3, 30, 1)
    );
}

#[tokio::test]
async fn add_step_get_flow_list_flows_delete_flow() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "defs_steps", &FlowOptions::new().base_delay(2))
        .await
        .unwrap();
    let a = add_step(&c, "defs_steps", "a", &StepOptions::new())
        .await
        .unwrap();
    assert_eq!(
        a,
        Step {
            workflow_slug: "defs_steps".into(),
            step_slug: "a".into(),
            step_type: StepType::Single,
            step_index: 0,
            deps_count: 0,
            initial_tasks: None,
            max_attempts: None,
            timeout: None,
            base_delay: None,
            description: None,
            if_matches: None,
            if_not_matches: None,
            when_unmet: WhenUnmet::Skip,
            start_delay: None,
            flow: None,
        }
    );
    let b_options = StepOptions::new()
        .depends_on(["a"])
        .map()
        .initial_tasks(7)
        .max_attempts(4)
        .timeout(9)
        .base_delay(0);
    let b = add_step(&c, "defs_steps", "b", &b_options).await.unwrap();
    assert_eq!(
        (b.step_type, b.step_index, b.deps_count, b.initial_tasks),
        (StepType::Map, 1, 1, Some(7))
    );
    assert_eq!(
        (b.max_attempts, b.timeout, b.base_delay),
        (Some(4), Some(9), Some(0))
    );
    assert_eq!(
        add_step(&c, "defs_steps", "b", &b_options).await.unwrap(),
        b,
        "identical definition: the existing row"
    );
    add_step(
        &c,
        "defs_steps",
        "c",
        &StepOptions::new().depends_on(["b", "a"]),
    )
    .await
    .unwrap();

    let flow = get_flow(&c, "defs_steps").await.unwrap();
    assert_eq!(flow.workflow_slug, "defs_steps");
    assert_eq!(
        (flow.max_attempts, flow.timeout, flow.base_delay),
        (3, 30, 2)
    );
    assert_eq!(
        flow.steps,
        vec![
            StepDefinition {
                step_slug: "a".into(),
                step_type: StepType::Single,
                step_index: 0,
                depends_on: vec![],
                initial_tasks: None,
                max_attempts: None,
                timeout: None,
                base_delay: None,
                description: None,
                if_matches: None,
                if_not_matches: None,
                when_unmet: WhenUnmet::Skip,
                start_delay: None,
                flow: None,
            },
            StepDefinition {
                step_slug: "b".into(),
                step_type: StepType::Map,
                step_index: 1,
                depends_on: vec!["a".into()],
                initial_tasks: Some(7),
                max_attempts: Some(4),
                timeout: Some(9),
                base_delay: Some(0),
                description: None,
                if_matches: None,
                if_not_matches: None,
                when_unmet: WhenUnmet::Skip,
                start_delay: None,
                flow: None,
            },
            StepDefinition {
                step_slug: "c".into(),
                step_type: StepType::Single,
                step_index: 2,
                depends_on: vec!["b".into(), "a".into()],
                initial_tasks: None,
                max_attempts: None,
                timeout: None,
                base_delay: None,
                description: None,
                if_matches: None,
                if_not_matches: None,
                when_unmet: WhenUnmet::Skip,
                start_delay: None,
                flow: None,
            },
        ]
    );
    let document = get_flow_document(&c, "defs_steps").await.unwrap();
    assert_eq!(document["steps"][2]["depends_on"], json!(["b", "a"]));

    create_flow(&c, "defs_steps_z", &FlowOptions::new())
        .await
        .unwrap();
    let slugs: Vec<String> = list_flows(&c)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.workflow_slug)
        .filter(|s| s.starts_with("defs_steps"))
        .collect();
    assert_eq!(slugs, ["defs_steps", "defs_steps_z"]);

    delete_flow(&c, "defs_steps").await.unwrap();
    assert_api_error(
        get_flow(&c, "defs_steps").await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "defs_steps",
    );
}

#[tokio::test]
async fn is_valid_slug_applies_the_server_rule() {
    let c = client(&database(DB).await).await;
    for (slug, valid) in [
        ("ai_data_pipeline", true),
        ("_x9", true),
        ("9lives", false),
        ("has-dash", false),
        ("", false),
        (&"a".repeat(44), true),
        (&"a".repeat(45), false),
    ] {
        assert_eq!(is_valid_slug(&c, slug).await.unwrap(), valid, "{slug:?}");
    }
}

#[tokio::test]
async fn definition_errors_carry_code_and_sqlstate() {
    let c = client(&database(DB).await).await;
    assert_api_error(
        create_flow(&c, "9lives", &FlowOptions::new()).await,
        ErrorCode::InvalidWorkflowSlug,
        "22023",
        "9lives",
    );
    assert_api_error(
        create_flow(&c, "errs_opt", &FlowOptions::new().max_attempts(0)).await,
        ErrorCode::InvalidOption,
        "22023",
        "max_attempts",
    );
    create_flow(&c, "errs", &FlowOptions::new()).await.unwrap();
    assert_api_error(
        create_flow(&c, "errs", &FlowOptions::new().timeout(99)).await,
        ErrorCode::WorkflowExists,
        "23505",
        "errs",
    );
    assert_api_error(
        add_step(&c, "errs", "bad-slug", &StepOptions::new()).await,
        ErrorCode::InvalidStepSlug,
        "22023",
        "bad-slug",
    );
    assert_api_error(
        add_step(&c, "errs", "run", &StepOptions::new()).await,
        ErrorCode::InvalidStepSlug,
        "22023",
        "run",
    );
    assert_api_error(
        add_step(&c, "errs_missing", "a", &StepOptions::new()).await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "errs_missing",
    );
    add_step(&c, "errs", "a", &StepOptions::new())
        .await
        .unwrap();
    add_step(&c, "errs", "b", &StepOptions::new())
        .await
        .unwrap();
    assert_api_error(
        add_step(&c, "errs", "a", &StepOptions::new().depends_on(["b"])).await,
        ErrorCode::StepExists,
        "23505",
        "a",
    );
    assert_api_error(
        add_step(&c, "errs", "c", &StepOptions::new().depends_on(["nope"])).await,
        ErrorCode::DependencyNotFound,
        "23503",
        "nope",
    );
    assert_api_error(
        add_step(&c, "errs", "c", &StepOptions::new().depends_on(["c"])).await,
        ErrorCode::SelfDependency,
        "23514",
        "c",
    );
    assert_api_error(
        add_step(&c, "errs", "c", &StepOptions::new().depends_on(["a", "a"])).await,
        ErrorCode::DuplicateDependency,
        "23505",
        "a",
    );
    assert_api_error(
        add_step(
            &c,
            "errs",
            "c",
            &StepOptions::new().depends_on(["a", "b"]).map(),
        )
        .await,
        ErrorCode::MapStepTooManyDependencies,
        "23514",
        "c",
    );
    assert_api_error(
        add_step(&c, "errs", "c", &StepOptions::new().initial_tasks(3)).await,
        ErrorCode::InvalidOption,
        "22023",
        "initial_tasks",
    );
    // Codes the typed functions cannot provoke, through raw SQL and `Error::from`.
    assert_api_error(
        c.query_one(
            "SELECT * FROM quantum_flow.add_step('errs', 'c', step_type => 'parallel')",
            &[],
        )
        .await
        .map_err(Error::from),
        ErrorCode::InvalidStepType,
        "22023",
        "parallel",
    );
    assert_api_error(
        c.query_one("SELECT quantum_flow.get_flow(NULL)", &[])
            .await
            .map_err(Error::from),
        ErrorCode::NullArgument,
        "22004",
        "workflow_slug",
    );
}

#[tokio::test]
async fn run_errors_carry_code_and_sqlstate() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "run_errs", &FlowOptions::new())
        .await
        .unwrap();
    assert_api_error(
        start_flow(&c, "run_errs", &json!({}), None).await,
        ErrorCode::WorkflowHasNoSteps,
        "55000",
        "run_errs",
    );
    add_step(&c, "run_errs", "m", &StepOptions::new().map())
        .await
        .unwrap();
    assert_api_error(
        start_flow(&c, "run_errs", &json!({"not": "an array"}), None).await,
        ErrorCode::InvalidMapInput,
        "22023",
        "object",
    );
    let run_id = Uuid::new_v4();
    assert_eq!(
        start_flow(&c, "run_errs", &json!([1]), Some(run_id))
            .await
            .unwrap(),
        run_id
    );
    assert_api_error(
        start_flow(&c, "run_errs", &json!([1]), Some(run_id)).await,
        ErrorCode::RunExists,
        "23505",
        &run_id.to_string(),
    );
    assert_api_error(
        add_step(&c, "run_errs", "later", &StepOptions::new()).await,
        ErrorCode::WorkflowHasActiveRuns,
        "55006",
        "run_errs",
    );
    assert_api_error(
        delete_flow(&c, "run_errs").await,
        ErrorCode::WorkflowHasActiveRuns,
        "55006",
        "run_errs",
    );
    assert_api_error(
        start_flow(&c, "run_errs_nope", &json!({}), None).await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "run_errs_nope",
    );
    let unknown = Uuid::new_v4();
    assert_api_error(
        get_run(&c, unknown).await,
        ErrorCode::RunNotFound,
        "P0002",
        &unknown.to_string(),
    );
    assert_api_error(
        complete_task(&c, unknown, "m", 0, &json!(1), None).await,
        ErrorCode::RunNotFound,
        "P0002",
        &unknown.to_string(),
    );
    assert_api_error(
        fail_task(&c, run_id, "m", 5, "x", None).await,
        ErrorCode::TaskNotFound,
        "P0002",
        "5",
    );
    assert_api_error(
        complete_task(&c, run_id, "other", 0, &json!(1), None).await,
        ErrorCode::TaskNotFound,
        "P0002",
        "other",
    );
    assert_api_error(
        poll_tasks(
            &c,
            "run_errs",
            &PollOptions {
                batch_size: 0,
                ..PollOptions::default()
            },
        )
        .await,
        ErrorCode::InvalidOption,
        "22023",
        "batch_size",
    );
}

#[tokio::test]
async fn other_errors_are_db_errors_and_unknown_codes_are_kept() {
    let c = client(&database(DB).await).await;
    let err = Error::from(c.query_one("SELECT 1/0", &[]).await.unwrap_err());
    assert!(matches!(err, Error::Db(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("22012"));
    assert_eq!(err.code(), None);

    let err = Error::from(
        c.batch_execute(
            "DO $$ BEGIN RAISE EXCEPTION 'brand_new_code: from a newer server' \
             USING ERRCODE = 'P0001'; END $$",
        )
        .await
        .unwrap_err(),
    );
    match err {
        Error::Api {
            code,
            sqlstate,
            message,
            detail,
        } => {
            assert_eq!(detail, None);
            assert_eq!(code, ErrorCode::Unknown("brand_new_code".into()));
            assert_eq!(sqlstate, "P0001");
            assert_eq!(message, "brand_new_code: from a newer server");
        }
        other => panic!("{other:?}"),
    }
}

/// The worker protocol by hand: claim, complete, fail, retry, stale attempts, and get_run.
#[tokio::test]
async fn poll_complete_fail_and_get_run() {
    let c = client(&database(DB).await).await;
    create_flow(
        &c,
        "proto",
        &FlowOptions::new().max_attempts(2).base_delay(0),
    )
    .await
    .unwrap();
    add_step(&c, "proto", "a", &StepOptions::new())
        .await
        .unwrap();
    add_step(
        &c,
        "proto",
        "b",
        &StepOptions::new().depends_on(["a"]).map().initial_tasks(2),
    )
    .await
    .unwrap();
    add_step(&c, "proto", "c", &StepOptions::new().depends_on(["b"]))
        .await
        .unwrap();

    let run_id = start_flow(&c, "proto", &json!({"x": 1}), None)
        .await
        .unwrap();
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Started);
    assert_eq!(run.workflow_slug, "proto");
    assert_eq!(run.input, json!({"x": 1}));
    assert_eq!(
        (run.output.clone(), run.error_message.clone()),
        (None, None)
    );
    assert_eq!((run.completed_at, run.failed_at), (None, None));
    let summary: Vec<_> = run
        .steps
        .iter()
        .map(|s| {
            (
                s.step_slug.as_str(),
                s.status,
                s.tasks_total,
                s.tasks_completed,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", StepStatus::Started, Some(1), 0),
            ("b", StepStatus::Created, Some(2), 0),
            ("c", StepStatus::Created, Some(1), 0),
        ]
    );

    let poll = PollOptions {
        batch_size: 10,
        max_wait_ms: 2000,
        worker_id: Some("hand".into()),
    };
    let tasks = poll_tasks(&c, "proto", &poll).await.unwrap();
    assert_eq!(
        tasks,
        [Task {
            run_id,
            step_slug: "a".into(),
            task_index: 0,
            attempt: 1,
            input: json!({"run": {"x": 1}}),
        }]
    );
    assert!(complete_task(&c, run_id, "a", 0, &json!([10, 20]), Some(1))
        .await
        .unwrap());
    assert!(
        !complete_task(&c, run_id, "a", 0, &json!([10, 20]), Some(1))
            .await
            .unwrap(),
        "a duplicate completion is a no-op"
    );

    let mut tasks = poll_tasks(&c, "proto", &poll).await.unwrap();
    tasks.sort_by_key(|t| t.task_index);
    let inputs: Vec<_> = tasks
        .iter()
        .map(|t| (t.task_index, t.attempt, t.input.clone()))
        .collect();
    assert_eq!(
        inputs,
        [
            (0, 1, json!({"item": 10, "index": 0, "run": {"x": 1}})),
            (1, 1, json!({"item": 20, "index": 1, "run": {"x": 1}})),
        ]
    );
    assert_eq!(
        fail_task(&c, run_id, "b", 0, "flaky", Some(1))
            .await
            .unwrap(),
        FailOutcome::Queued
    );
    assert_eq!(
        fail_task(&c, run_id, "b", 0, "flaky", Some(1))
            .await
            .unwrap(),
        FailOutcome::Ignored
    );
    assert!(complete_task(&c, run_id, "b", 1, &json!("B1"), Some(1))
        .await
        .unwrap());
    let retried = poll_tasks(&c, "proto", &poll).await.unwrap();
    assert_eq!(
        retried
            .iter()
            .map(|t| (t.step_slug.as_str(), t.task_index, t.attempt))
            .collect::<Vec<_>>(),
        [("b", 0, 2)]
    );
    assert!(
        !complete_task(&c, run_id, "b", 0, &json!("stale"), Some(1))
            .await
            .unwrap(),
        "an answer for attempt 1 does not count for attempt 2"
    );
    assert!(complete_task(&c, run_id, "b", 0, &json!("B0"), Some(2))
        .await
        .unwrap());

    let tasks = poll_tasks(&c, "proto", &poll).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].step_slug, "c");
    assert_eq!(tasks[0].input, json!({"run": {"x": 1}, "b": ["B0", "B1"]}));
    assert!(
        complete_task(&c, run_id, "c", 0, &json!({"done": true}), None)
            .await
            .unwrap()
    );

    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!({"c": {"done": true}})));
    assert!(run.completed_at.is_some() && run.failed_at.is_none());
    assert_eq!(run.step("b").unwrap().output, Some(json!(["B0", "B1"])));
    assert!(run.steps.iter().all(|s| s.status == StepStatus::Completed));

    // A run whose task exhausts its attempts fails with the last message.
    let failing = start_flow(&c, "proto", &json!({}), None).await.unwrap();
    let tasks = poll_tasks(&c, "proto", &poll).await.unwrap();
    assert_eq!((tasks[0].run_id, tasks[0].attempt), (failing, 1));
    assert_eq!(
        fail_task(&c, failing, "a", 0, "first", Some(1))
            .await
            .unwrap(),
        FailOutcome::Queued
    );
    let tasks = poll_tasks(&c, "proto", &poll).await.unwrap();
    assert_eq!((tasks[0].run_id, tasks[0].attempt), (failing, 2));
    assert_eq!(
        fail_task(&c, failing, "a", 0, "second", Some(2))
            .await
            .unwrap(),
        FailOutcome::Failed
    );
    let run = get_run(&c, failing).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let located = "step a, task 0, attempt 2: second";
    assert_eq!(run.error_message.as_deref(), Some(located));
    assert_eq!(run.step("a").unwrap().status, StepStatus::Failed);
    assert_eq!(
        run.step("a").unwrap().error_message.as_deref(),
        Some(located)
    );
    assert_eq!(run.step("b").unwrap().status, StepStatus::Cancelled);
    assert!(run.failed_at.is_some());
    assert_eq!(
        fail_task(&c, failing, "a", 0, "late", Some(2))
            .await
            .unwrap(),
        FailOutcome::Ignored
    );
}

/// Rows of the definition tables, to show that a refused definition wrote nothing.
async fn definition_rows(c: &tokio_postgres::Client) -> (i64, i64, i64) {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM quantum_flow.workflows),
                    (SELECT count(*) FROM quantum_flow.workflow_steps),
                    (SELECT count(*) FROM quantum_flow.workflow_step_dependencies_def)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn define_from_json_hands_the_text_to_define_flow() {
    let c = client(&database(DB).await).await;
    let text = r#"{"workflow_slug": "spec_flow", "max_attempts": 4, "description": "from text",
            "steps": [{"slug": "summarize", "depends_on": ["score"]},
                      {"slug": "fetch", "depends_on": [], "type": "single"},
                      {"slug": "score", "depends_on": ["fetch"], "type": "map", "initial_tasks": 3,
                       "description": "one task per item"}]}"#;
    let flow = define_from_json(&c, text).await.unwrap();
    assert_eq!(flow.max_attempts, 4);
    assert_eq!(flow.description.as_deref(), Some("from text"));
    let steps: Vec<_> = flow
        .steps
        .iter()
        .map(|s| {
            (
                s.step_slug.as_str(),
                s.step_type,
                s.depends_on.clone(),
                s.initial_tasks,
                s.description.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("fetch", StepType::Single, vec![], None, None),
            (
                "score",
                StepType::Map,
                vec!["fetch".to_string()],
                Some(3),
                Some("one task per item")
            ),
            (
                "summarize",
                StepType::Single,
                vec!["score".to_string()],
                None,
                None
            ),
        ]
    );
    assert_eq!(get_flow(&c, "spec_flow").await.unwrap(), flow);
    // The same text again: the same workflow, unchanged (created_at included).
    assert_eq!(define_from_json(&c, text).await.unwrap(), flow);
    // Other options under the same slug: workflow_exists, naming the first difference.
    assert_api_error(
        define_from_json(
            &c,
            r#"{"workflow_slug": "spec_flow", "max_attempts": 5, "steps": [{"slug": "fetch"}]}"#,
        )
        .await,
        ErrorCode::WorkflowExists,
        "23505",
        "$.max_attempts",
    );
    assert_eq!(get_flow(&c, "spec_flow").await.unwrap(), flow);
}

#[tokio::test]
async fn define_from_json_refuses_what_the_server_refuses_and_writes_nothing() {
    let c = client(&database(DB).await).await;
    let before = definition_rows(&c).await;
    // The key the old client silently ignored (turning "b" into a root step).
    let err = define_from_json(
        &c,
        r#"{"workflow_slug": "spec_typo", "steps": [{"slug": "a"}, {"slug": "b", "dependson": ["a"]}]}"#,
    )
    .await
    .unwrap_err();
    assert_api_error::<()>(
        Err(err),
        ErrorCode::UnknownKey,
        "22023",
        "$.steps[1].dependson",
    );
    // Several mistakes: the error is the first; problems() has all of them.
    let err = define_from_json(
        &c,
        r#"{"workflow_slug": "spec_bad", "timeout": 0,
            "steps": [{"slug": "a", "depends_on": ["ghost"]}, {"slug": "b", "depend_on": ["a"]}]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::InvalidOption), "{err}");
    let problems = err
        .problems()
        .expect("define_flow's DETAIL lists every problem");
    let found: Vec<(&str, &ErrorCode)> = problems
        .iter()
        .map(|p| (p.path.as_str(), &p.code))
        .collect();
    assert_eq!(
        found,
        [
            ("$.timeout", &ErrorCode::InvalidOption),
            ("$.steps[0].depends_on[0]", &ErrorCode::DependencyNotFound),
            ("$.steps[1].depend_on", &ErrorCode::UnknownKey),
        ]
    );
    assert_eq!(
        problems[2].hint.as_deref(),
        Some("did you mean \"depends_on\"?")
    );
    assert!(
        err.to_string().contains(&problems[0].message),
        "{err} / {}",
        problems[0]
    );
    // Every new code of the document rules, with its SQLSTATE.
    for (text, code, sqlstate, mentions) in [
        (r#"[1, 2]"#, ErrorCode::InvalidDocument, "22023", "$"),
        (
            r#"{"workflow_slug": "spec_x", "steps": []}"#,
            ErrorCode::InvalidDocument,
            "22023",
            "$.steps",
        ),
        (
            r#"{"workflow_slug": "spec_x", "stepz": [{"slug": "a"}]}"#,
            ErrorCode::UnknownKey,
            "22023",
            "$.stepz",
        ),
        (
            r#"{"steps": [{"slug": "a"}]}"#,
            ErrorCode::MissingKey,
            "22023",
            "workflow_slug",
        ),
        (
            r#"{"workflow_slug": "spec_x", "steps": [{"slug": "a"}, {"slug": "a"}]}"#,
            ErrorCode::DuplicateStep,
            "23505",
            "$.steps[1].slug",
        ),
        (
            r#"{"workflow_slug": "spec_x", "steps": [{"slug": "a", "depends_on": ["b"]},
                                                    {"slug": "b", "depends_on": ["a"]}]}"#,
            ErrorCode::Cycle,
            "23514",
            "a -> b -> a",
        ),
        (
            r#"{"workflow_slug": "spec_x", "steps": [{"slug": "extract"}, {"slug": "load", "depends_on": ["extrct"]}]}"#,
            ErrorCode::DependencyNotFound,
            "23503",
            "did you mean \"extract\"?",
        ),
    ] {
        assert_api_error(define_from_json(&c, text).await, code, sqlstate, mentions);
    }
    // Text that is not JSON at all is refused by PostgreSQL's jsonb input.
    let err = define_from_json(&c, "workflow_slug: x").await.unwrap_err();
    assert!(matches!(err, Error::Db(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("22P02"));
    assert_eq!(definition_rows(&c).await, before, "nothing was written");
}

#[tokio::test]
async fn limit_exceeded_comes_from_the_max_steps_setting() {
    let mut c = client(&database(DB).await).await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL quantum_flow.max_steps = 2")
        .await
        .unwrap();
    let spec = FlowSpec::new("spec_limit")
        .step(StepSpec::new("a"))
        .step(StepSpec::new("b"))
        .step(StepSpec::new("c"));
    let validation = spec.validate(&tx).await.unwrap();
    assert!(!validation.valid);
    assert_eq!(validation.errors[0].code, ErrorCode::LimitExceeded);
    assert_eq!(validation.errors[0].path, "$.steps");
    assert_api_error(
        spec.define(&tx).await,
        ErrorCode::LimitExceeded,
        "54000",
        "quantum_flow.max_steps",
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn validate_flow_reports_every_problem_and_writes_nothing() {
    let c = client(&database(DB).await).await;
    let before = definition_rows(&c).await;
    let document = json!({"workflow_slug": "etl", "steps": [
        {"slug": "extract"}, {"slug": "load", "depend_on": ["extract"]},
        {"slug": "report", "depends_on": ["lod"]}]});
    let validation = validate_flow(&c, &document).await.unwrap();
    assert_eq!(
        validation,
        FlowValidation {
            valid: false,
            errors: vec![
                FlowProblem {
                    path: "$.steps[1].depend_on".into(),
                    code: ErrorCode::UnknownKey,
                    message: "a step has no key \"depend_on\"".into(),
                    hint: Some("did you mean \"depends_on\"?".into()),
                },
                FlowProblem {
                    path: "$.steps[2].depends_on[0]".into(),
                    code: ErrorCode::DependencyNotFound,
                    message: "step \"report\" depends on \"lod\", which is not a step of this \
                              workflow"
                        .into(),
                    hint: Some("did you mean \"load\"?".into()),
                },
            ],
            warnings: vec![],
        }
    );
    assert_eq!(
        validation.errors[0].to_string(),
        "unknown_key: $.steps[1].depend_on: a step has no key \"depend_on\" \
         (did you mean \"depends_on\"?)"
    );
    // The same through text, unread by the client.
    assert_eq!(
        validate_flow_json(&c, &document.to_string()).await.unwrap(),
        validation
    );
    // A document that is not an object is an answer, not an error.
    let not_an_object = validate_flow_json(&c, "\"text\"").await.unwrap();
    assert!(!not_an_object.valid);
    assert_eq!(not_an_object.errors[0].code, ErrorCode::InvalidDocument);
    assert_eq!(not_an_object.errors[0].path, "$");
    let fine = validate_flow(
        &c,
        &json!({"workflow_slug": "val_ok", "steps": [{"slug": "a"}]}),
    )
    .await
    .unwrap();
    assert_eq!(
        fine,
        FlowValidation {
            valid: true,
            errors: vec![],
            warnings: vec![]
        }
    );
    assert_eq!(
        definition_rows(&c).await,
        before,
        "validate_flow wrote nothing"
    );
}

#[tokio::test]
async fn flow_spec_builds_the_document_and_define_flow_defines_it() {
    let c = client(&database(DB).await).await;
    let spec = FlowSpec::new("spec_built")
        .max_attempts(5)
        .timeout(60)
        .description("built with types")
        .step(StepSpec::new("save").depends_on(["each"]))
        .step(
            StepSpec::new("each")
                .depends_on(["load"])
                .map()
                .initial_tasks(10)
                .max_attempts(2)
                .timeout(5)
                .base_delay(0)
                .description("one per item"),
        )
        .step(StepSpec::new("load"));
    assert!(spec.validate(&c).await.unwrap().valid);
    let flow = spec.define(&c).await.unwrap();
    assert_eq!(
        (
            flow.max_attempts,
            flow.timeout,
            flow.base_delay,
            flow.description.as_deref()
        ),
        (5, 60, 1, Some("built with types"))
    );
    let order: Vec<&str> = flow.steps.iter().map(|s| s.step_slug.as_str()).collect();
    assert_eq!(
        order,
        ["load", "each", "save"],
        "each after its dependencies"
    );
    let each = &flow.steps[1];
    assert_eq!(
        (
            each.step_type,
            each.initial_tasks,
            each.max_attempts,
            each.timeout,
            each.base_delay,
            each.description.as_deref()
        ),
        (
            StepType::Map,
            Some(10),
            Some(2),
            Some(5),
            Some(0),
            Some("one per item")
        )
    );
    // The typed define and the raw one agree, and both are idempotent.
    assert_eq!(define_flow(&c, &spec.to_document()).await.unwrap(), flow);
    assert_eq!(spec.define(&c).await.unwrap(), flow);
    // A valid document that is already defined exactly so: valid, with a warning.
    let again = spec.validate(&c).await.unwrap();
    assert!(again.valid && again.errors.is_empty(), "{again:?}");
    assert_eq!(again.warnings.len(), 1, "{again:?}");
    assert_eq!(again.warnings[0].code, ErrorCode::WorkflowExists);

    // export_flow gives a document that reads back as the same spec, up to step order and
    // the defaults the server filled in; defining it changes nothing.
    let exported = export_flow(&c, "spec_built").await.unwrap();
    let read = FlowSpec::from_value(exported.clone()).unwrap();
    assert_eq!(read.base_delay, Some(1));
    let mut by_slug = read.steps.clone();
    by_slug.sort_by(|a, b| a.slug.cmp(&b.slug));
    let mut expected = spec.steps.clone();
    expected.sort_by(|a, b| a.slug.cmp(&b.slug));
    assert_eq!(by_slug, expected);
    assert_eq!(define_flow(&c, &exported).await.unwrap(), flow);
    assert!(validate_flow(&c, &exported).await.unwrap().valid);
    assert_api_error(
        export_flow(&c, "spec_nope").await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "spec_nope",
    );

    // A changed spec under the same slug names its first difference and changes nothing.
    let changed = spec
        .clone()
        .step(StepSpec::new("audit").depends_on(["save"]));
    assert_api_error(
        changed.define(&c).await,
        ErrorCode::WorkflowExists,
        "23505",
        "$.steps[3]",
    );
    assert_eq!(get_flow(&c, "spec_built").await.unwrap(), flow);
}

#[tokio::test]
async fn flow_graph_and_flow_schema() {
    let c = client(&database(DB).await).await;
    FlowSpec::new("graph_flow")
        .step(StepSpec::new("fetch_data"))
        .step(
            StepSpec::new("process_batch")
                .depends_on(["fetch_data"])
                .map(),
        )
        .step(StepSpec::new("save_results").depends_on(["process_batch"]))
        .define(&c)
        .await
        .unwrap();
    let mermaid = flow_graph(&c, "graph_flow", GraphFormat::Mermaid, None)
        .await
        .unwrap();
    assert_eq!(
        mermaid,
        "---\ntitle: graph_flow\n---\nflowchart TD\n    s0[\"fetch_data\"]\n    \
         s1[[\"process_batch<br/><i>map</i>\"]]\n    s2[\"save_results\"]\n    s0 --> s1\n    \
         s1 --> s2\n"
    );
    assert_eq!(
        flow_graph(&c, "graph_flow", GraphFormat::default(), None)
            .await
            .unwrap(),
        mermaid
    );
    let dot = flow_graph(&c, "graph_flow", GraphFormat::Dot, None)
        .await
        .unwrap();
    assert!(dot.starts_with("digraph \"graph_flow\" {"), "{dot}");
    assert!(
        dot.contains("s0 -> s1;") && dot.contains("s1 -> s2;"),
        "{dot}"
    );
    // With a run: its state is drawn.
    let run_id = start_flow(&c, "graph_flow", &json!({}), None)
        .await
        .unwrap();
    let live = flow_graph(&c, "graph_flow", GraphFormat::Mermaid, Some(run_id))
        .await
        .unwrap();
    assert_ne!(live, mermaid);
    assert!(live.contains("started"), "{live}");
    cancel_run(&c, run_id, None).await.unwrap();
    assert_api_error(
        flow_graph(&c, "graph_nope", GraphFormat::Dot, None).await,
        ErrorCode::WorkflowNotFound,
        "P0002",
        "graph_nope",
    );

    let schema = flow_schema(&c).await.unwrap();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["required"]
        .as_array()
        .unwrap()
        .contains(&json!("workflow_slug")));
    let from_file: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/flow.schema.json")).unwrap();
    assert_eq!(schema, from_file, "docs/flow.schema.json is flow_schema()");
}

#[tokio::test]
async fn cancel_run_fails_a_started_run_once() {
    let c = client(&database(DB).await).await;
    create_flow(&c, "cancel_me", &FlowOptions::new())
        .await
        .unwrap();
    add_step(&c, "cancel_me", "a", &StepOptions::new())
        .await
        .unwrap();
    let run_id = start_flow(&c, "cancel_me", &json!({}), None).await.unwrap();
    assert!(cancel_run(&c, run_id, Some("no workers")).await.unwrap());
    let run = get_run(&c, run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error_message.as_deref(), Some("cancelled: no workers"));
    assert!(poll_tasks(&c, "cancel_me", &PollOptions::default())
        .await
        .unwrap()
        .is_empty());
    assert!(!cancel_run(&c, run_id, None).await.unwrap());
    assert_api_error(
        cancel_run(&c, Uuid::nil(), None).await,
        ErrorCode::RunNotFound,
        "P0002",
        "does not exist",
    );
    delete_flow(&c, "cancel_me").await.unwrap();
}
