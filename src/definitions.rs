//! Creating, changing and removing workflow definitions, transactionally: every check runs
//! before the first write, and a failed call leaves nothing behind (its statement's writes are
//! rolled back with the error).

use crate::engine::definition::{FlowOptions, StepDef};
use crate::engine::slug::queue_name;
use crate::error::{QfError, QfResult};
use crate::queue;
use crate::store::flows::{self, Row};

pub fn create_flow(slug: &str, options: &FlowOptions) -> QfResult<Row> {
    if flows::insert(slug, options)? {
        let queue = queue_name(slug);
        if queue::exists(&queue)? {
            return Err(QfError::WorkflowExists(format!(
                "workflow {slug:?} needs the pgmq queue {queue:?}, which already exists and \
                 does not belong to quantum_flow"
            )));
        }
        queue::create(&queue)?;
    } else {
        match flows::options(slug)? {
            Some(existing) if existing == *options => {}
            Some(e) => {
                return Err(QfError::WorkflowExists(format!(
                    "workflow {slug:?} already exists with max_attempts={}, timeout={}, \
                     base_delay={}",
                    e.max_attempts, e.timeout, e.base_delay
                )))
            }
            None => {
                let other = flows::case_insensitive_match(slug)?.unwrap_or_default();
                return Err(QfError::WorkflowExists(format!(
                    "workflow {slug:?} differs only in letter case from existing workflow \
                     {other:?} (their queue names would collide)"
                )));
            }
        }
    }
    flows::row(slug)?.ok_or_else(|| QfError::workflow_not_found(slug))
}

fn describe(s: &StepDef) -> String {
    let opt = |v: Option<i32>| v.map_or("NULL".to_string(), |n| n.to_string());
    format!(
        "depends_on=[{}], step_type={}, initial_tasks={}, max_attempts={}, timeout={}, base_delay={}",
        s.depends_on.join(", "),
        s.step_type,
        opt(s.initial_tasks),
        opt(s.max_attempts),
        opt(s.timeout),
        opt(s.base_delay)
    )
}

pub fn add_step(workflow_slug: &str, step: &StepDef) -> QfResult<Row> {
    if !flows::lock_for_change(workflow_slug)? {
        return Err(QfError::workflow_not_found(workflow_slug));
    }
    let slug = &step.step_slug;
    if let Some(existing) = flows::step_def(workflow_slug, slug)? {
        if existing != *step {
            return Err(QfError::StepExists(format!(
                "step {slug:?} of workflow {workflow_slug:?} already exists with a different \
                 definition ({})",
                describe(&existing)
            )));
        }
    } else {
        let active = flows::started_run_count(workflow_slug)?;
        if active > 0 {
            return Err(QfError::WorkflowHasActiveRuns(format!(
                "cannot add step {slug:?}: workflow {workflow_slug:?} has {active} started run(s)"
            )));
        }
        if let Some(missing) = flows::missing_steps(workflow_slug, &step.depends_on)?.first() {
            return Err(QfError::DependencyNotFound(format!(
                "step {slug:?} depends on {missing:?}, which is not a step of workflow \
                 {workflow_slug:?} (add dependencies first)"
            )));
        }
        flows::insert_step(workflow_slug, step)?;
    }
    flows::step_row(workflow_slug, slug)?
        .ok_or_else(|| QfError::Internal(format!("step {slug:?} vanished after insert")))
}

pub fn delete_flow(slug: &str) -> QfResult<()> {
    if !flows::lock_for_change(slug)? {
        return Err(QfError::workflow_not_found(slug));
    }
    let active = flows::started_run_count(slug)?;
    if active > 0 {
        return Err(QfError::WorkflowHasActiveRuns(format!(
            "cannot delete workflow {slug:?}: it has {active} started run(s)"
        )));
    }
    queue::drop(&queue_name(slug))?;
    flows::delete(slug)
}

pub fn flow_document(slug: &str) -> QfResult<crate::jsonb::Jsonb> {
    flows::flow_document(slug)?.ok_or_else(|| QfError::workflow_not_found(slug))
}

pub fn all_flows() -> QfResult<Vec<Row>> {
    flows::all_rows()
}
