//! The row invariants of the hot tables (`runs`, `step_states`, `step_tasks`,
//! `step_task_shards`), checked by one CHECK constraint per table that calls the functions of
//! `api::checks` (see sql/finalize.sql).
//!
//! They were SQL CHECK expressions, one constraint per rule. PostgreSQL rebuilds a table's
//! CHECK expressions from their stored text (`stringToNode`) at every statement that inserts
//! or updates its rows, so the hot path paid for parsing them on every call: 14-16% of the
//! server time of a `complete_task` (a step hand-off, a map task). A constraint that calls a
//! function costs the parse of one call.
//!
//! Each rule is written as SQL evaluates it: NULL operands make it unknown, and a CHECK
//! passes unless a rule is false. A column that is NOT NULL arrives as `Some`.

/// `a = b` in SQL: unknown when either side is NULL.
fn eq<T: PartialEq>(a: Option<T>, b: Option<T>) -> Option<bool> {
    Some(a? == b?)
}

/// SQL's `a AND b`.
fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// SQL's `a OR b`.
fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// `v >= 0`.
fn non_negative(v: Option<i32>) -> Option<bool> {
    Some(v? >= 0)
}

/// `status IN (allowed)`.
fn one_of(status: Option<&str>, allowed: &[&str]) -> Option<bool> {
    Some(allowed.contains(&status?))
}

/// A CHECK of these rules passes unless one of them is false.
fn passes(rules: &[Option<bool>]) -> bool {
    !rules.contains(&Some(false))
}

/// `runs`: a known status; `remaining_steps >= 0`; `completed_at` set exactly when completed
/// and `failed_at` exactly when failed; a completed run has no remaining step.
pub fn run_row_valid(
    status: Option<&str>,
    remaining_steps: Option<i32>,
    has_completed_at: bool,
    has_failed_at: bool,
) -> bool {
    let is = |s: &str| status.map(|v| v == s);
    passes(&[
        one_of(status, &["started", "paused", "completed", "failed"]),
        non_negative(remaining_steps),
        eq(is("completed"), Some(has_completed_at)),
        eq(is("failed"), Some(has_failed_at)),
        or(is("completed").map(|c| !c), eq(remaining_steps, Some(0))),
    ])
}

/// `step_states`: a known status; the counters are not negative; an unfinished fan-out's next
/// index is inside the map (`fan_out_next > 0 AND fan_out_next < tasks_total`); no more tasks
/// completed than there are; a step past `created` (and not `skipped`) has no remaining
/// dependency; a completed step has completed all its tasks.
pub fn step_state_row_valid(
    status: Option<&str>,
    remaining_deps: Option<i32>,
    tasks_total: Option<i32>,
    tasks_completed: Option<i32>,
    fan_out_next: Option<i32>,
) -> bool {
    let is_completed = status.map(|v| v == "completed");
    passes(&[
        one_of(
            status,
            &["created", "started", "completed", "failed", "skipped"],
        ),
        non_negative(remaining_deps),
        non_negative(tasks_total),
        non_negative(tasks_completed),
        and(
            fan_out_next.map(|n| n > 0),
            fan_out_next.zip(tasks_total).map(|(n, t)| n < t),
        ),
        or(
            Some(tasks_total.is_none()),
            tasks_completed.zip(tasks_total).map(|(c, t)| c <= t),
        ),
        or(
            one_of(status, &["created", "skipped"]),
            eq(remaining_deps, Some(0)),
        ),
        or(is_completed.map(|c| !c), eq(tasks_completed, tasks_total)),
    ])
}

/// `step_tasks`: the counters are not negative; a known status; a task past `queued` has
/// made at least one attempt.
pub fn step_task_row_valid(
    task_index: Option<i32>,
    status: Option<&str>,
    attempts_count: Option<i32>,
    attempts_base: Option<i32>,
) -> bool {
    passes(&[
        non_negative(task_index),
        one_of(status, &["queued", "started", "completed", "failed"]),
        non_negative(attempts_count),
        non_negative(attempts_base),
        or(
            status.map(|v| v == "queued"),
            attempts_count.map(|n| n >= 1),
        ),
    ])
}

/// `step_task_shards`: `shard >= 0`, `tasks_total > 0`, `0 <= tasks_completed <= tasks_total`.
pub fn task_shard_row_valid(
    shard: Option<i32>,
    tasks_total: Option<i32>,
    tasks_completed: Option<i32>,
) -> bool {
    passes(&[
        non_negative(shard),
        tasks_total.map(|t| t > 0),
        non_negative(tasks_completed),
        tasks_completed.zip(tasks_total).map(|(c, t)| c <= t),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_accept_every_status_with_its_timestamps() {
        assert!(run_row_valid(Some("started"), Some(2), false, false));
        assert!(run_row_valid(Some("paused"), Some(1), false, false));
        assert!(run_row_valid(Some("completed"), Some(0), true, false));
        assert!(run_row_valid(Some("failed"), Some(3), false, true));
    }

    #[test]
    fn runs_refuse_what_the_sql_checks_refused() {
        assert!(!run_row_valid(Some("running"), Some(1), false, false));
        assert!(!run_row_valid(Some("started"), Some(-1), false, false));
        assert!(!run_row_valid(Some("completed"), Some(0), false, false));
        assert!(!run_row_valid(Some("started"), Some(1), true, false));
        assert!(!run_row_valid(Some("failed"), Some(1), false, false));
        assert!(!run_row_valid(Some("started"), Some(1), false, true));
        assert!(!run_row_valid(Some("completed"), Some(1), true, false));
    }

    #[test]
    fn step_states_follow_the_sql_rules_with_their_nulls() {
        assert!(step_state_row_valid(
            Some("created"),
            Some(2),
            None,
            Some(0),
            None
        ));
        assert!(step_state_row_valid(
            Some("started"),
            Some(0),
            Some(10),
            Some(4),
            Some(5)
        ));
        assert!(step_state_row_valid(
            Some("completed"),
            Some(0),
            Some(3),
            Some(3),
            None
        ));
        assert!(step_state_row_valid(
            Some("skipped"),
            Some(1),
            None,
            Some(0),
            None
        ));
        // unknown, as in SQL: a completed step whose total is NULL, a fan-out with no total
        assert!(step_state_row_valid(
            Some("completed"),
            Some(0),
            None,
            Some(0),
            None
        ));
        assert!(step_state_row_valid(
            Some("started"),
            Some(0),
            None,
            Some(0),
            Some(1)
        ));

        assert!(!step_state_row_valid(
            Some("done"),
            Some(0),
            Some(1),
            Some(0),
            None
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(-1),
            Some(1),
            Some(0),
            None
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(0),
            Some(-1),
            Some(0),
            None
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(0),
            Some(1),
            Some(-1),
            None
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(0),
            Some(10),
            Some(0),
            Some(0)
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(0),
            Some(10),
            Some(0),
            Some(10)
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(0),
            None,
            Some(0),
            Some(0)
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(0),
            Some(2),
            Some(3),
            None
        ));
        assert!(!step_state_row_valid(
            Some("started"),
            Some(1),
            Some(2),
            Some(0),
            None
        ));
        assert!(!step_state_row_valid(
            Some("completed"),
            Some(0),
            Some(2),
            Some(1),
            None
        ));
    }

    #[test]
    fn step_tasks_follow_the_sql_rules() {
        assert!(step_task_row_valid(
            Some(0),
            Some("queued"),
            Some(0),
            Some(0)
        ));
        assert!(step_task_row_valid(
            Some(7),
            Some("started"),
            Some(1),
            Some(0)
        ));
        assert!(step_task_row_valid(
            Some(7),
            Some("failed"),
            Some(3),
            Some(2)
        ));

        assert!(!step_task_row_valid(
            Some(-1),
            Some("queued"),
            Some(0),
            Some(0)
        ));
        assert!(!step_task_row_valid(
            Some(0),
            Some("claimed"),
            Some(1),
            Some(0)
        ));
        assert!(!step_task_row_valid(
            Some(0),
            Some("queued"),
            Some(-1),
            Some(0)
        ));
        assert!(!step_task_row_valid(
            Some(0),
            Some("queued"),
            Some(0),
            Some(-1)
        ));
        assert!(!step_task_row_valid(
            Some(0),
            Some("completed"),
            Some(0),
            Some(0)
        ));
    }

    #[test]
    fn shards_follow_the_sql_rules() {
        assert!(task_shard_row_valid(Some(0), Some(16), Some(0)));
        assert!(task_shard_row_valid(Some(31), Some(16), Some(16)));

        assert!(!task_shard_row_valid(Some(-1), Some(16), Some(0)));
        assert!(!task_shard_row_valid(Some(0), Some(0), Some(0)));
        assert!(!task_shard_row_valid(Some(0), Some(16), Some(-1)));
        assert!(!task_shard_row_valid(Some(0), Some(16), Some(17)));
    }
}
