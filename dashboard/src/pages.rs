//! The pages, rendered on the server with maud (which escapes every value it interpolates).
//! Each page's live part is a `<main id="live">` whose `data-fragment` URL returns that part
//! alone and whose `data-events` URL is the event stream that says when to fetch it again.

use crate::db::{RunRow, RunView, WorkflowStat, TASKS_LISTED};
use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use quantum_flow_client::{StepState, StepStatus, TaskState};
use serde_json::Value;

/// The run page's buttons, by the action's name in `/runs/{id}/{action}`.
pub const ACTIONS: [&str; 4] = ["cancel", "pause", "resume", "retry"];

/// The assets' URLs carry it, so a new version's files are not taken from a browser's cache.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// JSON shown on a page is cut to this many characters.
const JSON_SHOWN: usize = 4000;

/// What every page's frame needs to know besides its content.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Whether the server's LISTEN connection is up.
    pub connected: bool,
    /// How often a live page is fetched again without an event (ms; 0: only on events).
    pub refresh_ms: u64,
}

struct Live<'a> {
    fragment: &'a str,
    events: &'a str,
}

fn layout(title: &str, live: Live<'_>, ctx: Ctx, body: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · quantum_flow" }
                link rel="stylesheet" href={ "/assets/style.css?v=" (VERSION) };
                script src={ "/assets/mermaid.min.js?v=" (VERSION) } defer {}
                script src={ "/assets/app.js?v=" (VERSION) } defer {}
            }
            body data-live=(if ctx.connected { "on" } else { "off" }) {
                header.top {
                    a.brand href="/" { "quantum_flow" }
                    nav {
                        a href="/" { "Workflows" }
                        a href="/runs" { "Runs" }
                        a href="/metrics" { "Metrics" }
                    }
                    span.live-indicator title="updates arrive from NOTIFY quantum_flow_events" {
                        span.dot {} span.on { "live" } span.off { "not live" }
                    }
                }
                main #live data-fragment=(live.fragment) data-events=(live.events) data-refresh=(ctx.refresh_ms) {
                    (body)
                }
            }
        }
    };
    Html(page.into_string())
}

fn page(title: &str, live: Live<'_>, ctx: Ctx, fragment: bool, body: Markup) -> Html<String> {
    if fragment {
        Html(body.into_string())
    } else {
        layout(title, live, ctx, body)
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("error")) }
        p.error { (message) }
        p { a href="/" { "Back to the workflows" } }
    };
    layout(
        "error",
        Live {
            fragment: "",
            events: "",
        },
        Ctx {
            connected: false,
            refresh_ms: 0,
        },
        body,
    )
}

/// A status enum as its JSON word (`started`, `completed`, ...).
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

fn status_badge(status: &str) -> Markup {
    html! { span class={ "status " (status) } { (status) } }
}

fn time(t: &DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) }
    }
}

fn opt_time(t: Option<&DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.none { "—" } },
    }
}

/// `0.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_string();
    }
    if seconds < 10.0 {
        format!("{seconds:.2} s")
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        let s = seconds as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (seconds / 60.0) as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

fn progress(done: i64, total: i64) -> Markup {
    let pct = if total > 0 {
        (done as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    html! {
        span.progress {
            span.bar { span.fill style={ "width: " (format!("{pct:.0}")) "%" } {} }
            span.count { (done) "/" (total) }
        }
    }
}

/// Pretty JSON, cut to [`JSON_SHOWN`] characters.
fn json(value: &Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let shown: String = text.chars().take(JSON_SHOWN).collect();
    let cut = shown.len() < text.len();
    html! {
        pre.json { (shown) @if cut { "\n… (" (text.len()) " bytes in all)" } }
    }
}

fn short_id(id: &uuid::Uuid) -> String {
    id.to_string().chars().take(8).collect()
}

fn run_link(id: &uuid::Uuid) -> Markup {
    html! { a.mono href={ "/runs/" (id) } title=(id) { (short_id(id)) } }
}

fn graph(text: &str) -> Markup {
    html! {
        figure.graph {
            pre.mermaid { (text) }
        }
    }
}

fn workflow_stats_table(stats: &[WorkflowStat]) -> Markup {
    html! {
        table.stats #workflows {
            thead { tr {
                th { "workflow" }
                th.num { "running" } th.num { "paused" } th.num { "completed" } th.num { "failed" }
                th.num { "tasks queued" } th.num { "tasks running" } th.num { "tasks failed" }
                th.num { "oldest queued" } th.num { "done / min" }
            } }
            tbody {
                @for s in stats {
                    tr data-workflow=(s.workflow_slug) {
                        td { a href={ "/workflows/" (s.workflow_slug) } { (s.workflow_slug) } }
                        td.num { a href={ "/runs?workflow=" (s.workflow_slug) "&status=started" } data-col="runs_started" { (s.runs_started) } }
                        td.num { a href={ "/runs?workflow=" (s.workflow_slug) "&status=paused" } data-col="runs_paused" { (s.runs_paused) } }
                        td.num { a href={ "/runs?workflow=" (s.workflow_slug) "&status=completed" } data-col="runs_completed" { (s.runs_completed) } }
                        td.num { a href={ "/runs?workflow=" (s.workflow_slug) "&status=failed" } data-col="runs_failed" { (s.runs_failed) } }
                        td.num data-col="tasks_queued" { (s.tasks_queued) }
                        td.num data-col="tasks_started" { (s.tasks_started) }
                        td.num data-col="tasks_failed" { (s.tasks_failed) }
                        td.num { (s.oldest_queued_seconds.map(duration).unwrap_or_else(|| "—".into())) }
                        td.num data-col="completed_last_minute" { (s.completed_last_minute) }
                    }
                }
                @if stats.is_empty() {
                    tr { td colspan="10" .none { "No workflows yet: create one with create_flow() or define_flow()." } }
                }
            }
        }
    }
}

pub fn workflows(stats: &[WorkflowStat], fragment: bool, ctx: Ctx) -> Html<String> {
    let body = html! {
        h1 { "Workflows" }
        (workflow_stats_table(stats))
    };
    page(
        "Workflows",
        Live {
            fragment: "/?fragment=1",
            events: "/events",
        },
        ctx,
        fragment,
        body,
    )
}

fn runs_table(runs: &[RunRow], show_workflow: bool) -> Markup {
    html! {
        table.runs #runs {
            thead { tr {
                th { "run" }
                @if show_workflow { th { "workflow" } }
                th { "status" } th { "steps" } th { "tasks" } th { "started" } th.num { "duration" } th { "error" }
            } }
            tbody {
                @for r in runs {
                    tr data-run-id=(r.run_id) data-status=(r.status) {
                        td { (run_link(&r.run_id))
                            @if let Some(parent) = &r.parent_run_id { " " span.sub { "child of " (run_link(parent)) } } }
                        @if show_workflow { td { a href={ "/workflows/" (r.workflow_slug) } { (r.workflow_slug) } } }
                        td { (status_badge(&r.status)) }
                        td { (progress(r.steps_done, r.steps_total)) }
                        td { (progress(r.tasks_completed, r.tasks_total)) }
                        td { (time(&r.started_at))
                            @if let Some(at) = &r.start_at { @if r.ended_at.is_none() { br; span.sub { "scheduled for " (time(at)) } } } }
                        td.num { (duration(r.duration_seconds)) }
                        td.error { (r.error_message.as_deref().unwrap_or("")) }
                    }
                }
                @if runs.is_empty() {
                    tr { td colspan=(if show_workflow { "8" } else { "7" }) .none { "No runs match." } }
                }
            }
        }
    }
}

pub fn runs(
    runs: &[RunRow],
    stats: &[WorkflowStat],
    status: Option<&str>,
    workflow: Option<&str>,
    fragment: bool,
    ctx: Ctx,
) -> Html<String> {
    let count = |f: fn(&WorkflowStat) -> i64| stats.iter().map(f).sum::<i64>();
    let counts = [
        ("started", count(|s| s.runs_started)),
        ("paused", count(|s| s.runs_paused)),
        ("completed", count(|s| s.runs_completed)),
        ("failed", count(|s| s.runs_failed)),
    ];
    let all: i64 = counts.iter().map(|(_, n)| n).sum();
    let query = |status: Option<&str>| -> String {
        let mut parts = Vec::new();
        if let Some(s) = status {
            parts.push(format!("status={s}"));
        }
        if let Some(w) = workflow {
            parts.push(format!("workflow={}", url_encode(w)));
        }
        parts.join("&")
    };
    let here = query(status);
    let fragment_url = format!("/runs?{here}&fragment=1");
    let events_url = match workflow {
        Some(w) => format!("/events?workflow={}", url_encode(w)),
        None => "/events".to_string(),
    };
    let body = html! {
        h1 { "Runs" @if let Some(w) = workflow { " of " a href={ "/workflows/" (url_encode(w)) } { (w) } } }
        nav.filter {
            a href={ "/runs?" (query(None)) } class=[status.is_none().then_some("current")] { "all " span.n { (all) } }
            @for (s, n) in counts {
                a href={ "/runs?" (query(Some(s))) } class=[(status == Some(s)).then_some("current")] data-filter=(s) {
                    (s) " " span.n { (n) }
                }
            }
        }
        (runs_table(runs, workflow.is_none()))
        @if runs.len() as i64 >= crate::RUNS_SHOWN { p.sub { "The newest " (runs.len()) " are shown." } }
    };
    page(
        "Runs",
        Live {
            fragment: &fragment_url,
            events: &events_url,
        },
        ctx,
        fragment,
        body,
    )
}

pub fn workflow(
    stats: &WorkflowStat,
    graph_text: &str,
    runs: &[RunRow],
    fragment: bool,
    ctx: Ctx,
) -> Html<String> {
    let slug = &stats.workflow_slug;
    let body = html! {
        h1 { "Workflow " span.mono { (slug) } }
        (workflow_stats_table(std::slice::from_ref(stats)))
        (graph(graph_text))
        h2 { "Newest runs" " " a.sub href={ "/runs?workflow=" (url_encode(slug)) } { "all runs" } }
        (runs_table(runs, false))
    };
    let fragment_url = format!("/workflows/{}?fragment=1", url_encode(slug));
    let events_url = format!("/events?workflow={}", url_encode(slug));
    page(
        slug,
        Live {
            fragment: &fragment_url,
            events: &events_url,
        },
        ctx,
        fragment,
        body,
    )
}

fn action_buttons(view: &RunView) -> Markup {
    let id = view.run.run_id;
    let status = word(&view.run.status);
    let allowed: &[&str] = match status.as_str() {
        "started" => &["pause", "cancel"],
        "paused" => &["resume", "cancel"],
        "failed" => &["retry"],
        _ => &[],
    };
    html! {
        @if !allowed.is_empty() {
            div.actions {
                @for action in allowed {
                    form method="post" action={ "/runs/" (id) "/" (action) } {
                        button type="submit" name="action" value=(action) class={ "button " (action) } data-action=(action) {
                            (match *action { "pause" => "Pause", "resume" => "Resume", "cancel" => "Cancel", _ => "Retry" })
                        }
                    }
                }
            }
        }
    }
}

fn notice(action: &str, changed: bool) -> Markup {
    let text = match (action, changed) {
        ("cancel", true) => "Cancelled: its queued tasks were discarded.",
        ("pause", true) => "Paused: no task of it is handed out until it is resumed.",
        ("resume", true) => "Resumed.",
        ("retry", true) => "Retrying from its failed and unfinished steps.",
        ("cancel", false) => "Not cancelled: the run had already ended.",
        ("pause", false) => "Not paused: the run was not running.",
        ("resume", false) => "Not resumed: the run was not paused.",
        _ => "Not retried: the run had not failed.",
    };
    html! { p class={ "notice " (if changed { "changed" } else { "unchanged" }) } data-notice=(action) { (text) } }
}

fn step_row(step: &StepState) -> Markup {
    let status = word(&step.status);
    let total = step.tasks_total.map(i64::from);
    html! {
        tr data-step=(step.step_slug) data-status=(status) {
            td.mono { (step.step_slug) }
            td { (status_badge(&status)) }
            td { @match total {
                Some(total) => (progress(i64::from(step.tasks_completed), total)),
                None => span.none { "—" },
            } }
            td.error { (step.error_message.as_deref().unwrap_or("")) }
            td { @if let Some(children) = &step.child_run_ids {
                @for child in children { (run_link(child)) " " }
            } }
            // a completed step's output may be JSON null, which is an output too
            td { @if step.output_omitted {
                span.sub data-output-omitted { "too large to show" }
            } @else if step.output.is_some() || step.status == StepStatus::Completed {
                details data-key={ "output-" (step.step_slug) } {
                    summary { "output" } (json(step.output.as_ref().unwrap_or(&Value::Null)))
                }
            } }
        }
    }
}

fn tasks_table(step_slug: &str, tasks: &[TaskState]) -> Markup {
    html! {
        details.tasks data-tasks-of=(step_slug) data-key={ "tasks-" (step_slug) } open[tasks.len() <= 10] {
            summary { "tasks of " span.mono { (step_slug) } " (" (tasks.len()) ")" }
            table {
                thead { tr {
                    th.num { "task" } th { "status" } th.num { "attempts" } th { "worker" }
                    th { "claim deadline" } th { "next retry" } th { "last error" } th { "child run" }
                } }
                tbody {
                    @for t in tasks {
                        tr data-task=(t.task_index) data-status=(t.status) {
                            td.num { (t.task_index) }
                            td { (status_badge(&t.status)) }
                            td.num { (t.attempts) }
                            td.mono { (t.worker_id.as_deref().unwrap_or("")) }
                            td { (opt_time(t.claim_deadline.as_ref())) }
                            td { (opt_time(t.next_retry_at.as_ref())) }
                            td.error { (t.error_message.as_deref().unwrap_or("")) }
                            td { @if let Some(child) = &t.child_run_id { (run_link(child)) } }
                        }
                    }
                }
            }
        }
    }
}

pub fn run(
    view: &RunView,
    last_action: Option<(String, bool)>,
    fragment: bool,
    ctx: Ctx,
) -> Html<String> {
    let run = &view.run;
    let status = word(&run.status);
    let ended = run.completed_at.or(run.failed_at);
    let elapsed =
        (ended.unwrap_or_else(Utc::now) - run.started_at).num_milliseconds() as f64 / 1000.0;
    let body = html! {
        div.run-head data-run-status=(status) data-ended[ended.is_some()] {
            h1 { "Run " span.mono title=(run.run_id) { (short_id(&run.run_id)) } " " (status_badge(&status)) }
            (action_buttons(view))
        }
        @if let Some((action, changed)) = &last_action { (notice(action, *changed)) }
        dl.facts {
            dt { "workflow" } dd { a href={ "/workflows/" (run.workflow_slug) } { (run.workflow_slug) } }
            dt { "run id" } dd.mono { (run.run_id) }
            @if let Some(parent) = &run.parent_run_id { dt { "parent run" } dd { (run_link(parent)) } }
            dt { "started" } dd { (time(&run.started_at)) }
            @if let Some(at) = &run.start_at { dt { "tasks visible from" } dd { (time(at)) } }
            @if let Some(at) = &run.deadline { dt { "deadline" } dd { (time(at)) } }
            @if let Some(at) = &run.completed_at { dt { "completed" } dd { (time(at)) } }
            @if let Some(at) = &run.failed_at { dt { "failed" } dd { (time(at)) } }
            dt { "duration" } dd { (duration(elapsed)) @if ended.is_none() { " so far" } }
        }
        @if let Some(message) = &run.error_message { p.error.run-error { (message) } }
        div.run-body {
            (graph(&view.graph))
            section {
                h2 { "Steps" }
                table.steps #steps {
                    thead { tr { th { "step" } th { "status" } th { "tasks" } th { "error" } th { "child runs" } th { "output" } } }
                    tbody { @for step in &run.steps { (step_row(step)) } }
                }
            }
        }
        @match &view.tasks {
            Some(tasks) => {
                @for step in &run.steps {
                    @if let Some(list) = tasks.get(&step.step_slug) {
                        @if !list.is_empty() { (tasks_table(&step.step_slug, list)) }
                    }
                }
            }
            None => p.sub { "This run has " (view.tasks_total) " tasks; tasks are listed for runs of at most " (TASKS_LISTED) "." },
        }
        div.io {
            section { h2 { "Input" } (json(&run.input)) }
            @if let Some(output) = &run.output { section { h2 { "Output" } (json(output)) } }
            @else if run.output_omitted {
                section { h2 { "Output" } p.sub data-output-omitted { "Too large to show (it does not fit in one jsonb)." } }
            }
        }
    };
    // the refreshed part keeps the last button's notice
    let fragment_url = match &last_action {
        Some((action, changed)) => format!(
            "/runs/{}?fragment=1&done={action}&changed={changed}",
            run.run_id
        ),
        None => format!("/runs/{}?fragment=1", run.run_id),
    };
    let events_url = format!("/events?run_id={}", run.run_id);
    let title = format!("run {}", short_id(&run.run_id));
    page(
        &title,
        Live {
            fragment: &fragment_url,
            events: &events_url,
        },
        ctx,
        fragment,
        body,
    )
}

/// Percent-encodes a query value (slugs are plain, but a filter typed by hand may not be).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(0.4213), "0.42 s");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
        assert_eq!(duration(-1.0), "—");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url_encode("etl_daily"), "etl_daily");
        assert_eq!(url_encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn interpolated_text_is_escaped() {
        let html = status_badge("<script>").into_string();
        assert_eq!(
            html,
            r#"<span class="status &lt;script&gt;">&lt;script&gt;</span>"#
        );
    }
}
