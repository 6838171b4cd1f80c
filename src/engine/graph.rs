//! A workflow's graph as Mermaid (`flowchart`) or Graphviz DOT text, optionally with a run's
//! state: each step's status and completed/total tasks, coloured by status.
//!
//! Nodes are named `s0`, `s1`, ... by step order and labelled with their slugs, so that a slug
//! that is a keyword of either language (`end`, `graph`, `node`, ...) cannot break the text.
//! Slugs match `^[a-zA-Z_][a-zA-Z0-9_]*$` and statuses are fixed words, so labels need no
//! escaping.

use std::fmt::Write;

/// One step, with its state in a run when a run was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphStep {
    pub slug: String,
    pub step_type: String,
    pub depends_on: Vec<String>,
    /// The workflow a sub-flow step runs.
    pub flow: Option<String>,
    pub state: Option<StepState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    pub status: String,
    pub tasks_completed: i32,
    /// None while a map step's task count is not known.
    pub tasks_total: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    Dot,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["mermaid", "dot"];

    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "mermaid" => Some(Format::Mermaid),
            "dot" => Some(Format::Dot),
            _ => None,
        }
    }
}

/// Fill and stroke colours by status.
const STATUS_COLOURS: &[(&str, &str, &str)] = &[
    ("created", "#f1f3f5", "#adb5bd"),
    ("started", "#d0ebff", "#1c7ed6"),
    ("completed", "#d3f9d8", "#2f9e44"),
    ("failed", "#ffe3e3", "#e03131"),
    ("cancelled", "#e9ecef", "#868e96"),
    ("skipped", "#fff9db", "#f08c00"),
    // started, but its tasks are not claimable yet: an event step waiting for its event, a
    // step in its start_delay (or a run before its start_at), tasks waiting for a
    // concurrency slot
    ("waiting", "#f3d9fa", "#ae3ec9"),
    // the run is paused
    ("paused", "#fff4e6", "#e8590c"),
];

fn colours(status: &str) -> (&'static str, &'static str) {
    STATUS_COLOURS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, fill, stroke)| (*fill, *stroke))
        .unwrap_or(("#ffffff", "#495057"))
}

fn progress(state: &StepState) -> String {
    let total = state
        .tasks_total
        .map_or_else(|| "?".to_string(), |t| t.to_string());
    format!("{} {}/{total}", state.status, state.tasks_completed)
}

/// The graph of `workflow_slug`'s steps (in step order) as text of `format`.
pub fn render(workflow_slug: &str, steps: &[GraphStep], format: Format) -> String {
    match format {
        Format::Mermaid => mermaid(workflow_slug, steps),
        Format::Dot => dot(workflow_slug, steps),
    }
}

fn node_ids(steps: &[GraphStep]) -> impl Fn(&str) -> Option<String> + '_ {
    move |slug| {
        steps
            .iter()
            .position(|s| s.slug == slug)
            .map(|i| format!("s{i}"))
    }
}

fn mermaid(workflow_slug: &str, steps: &[GraphStep]) -> String {
    let id = node_ids(steps);
    let mut out = format!("---\ntitle: {workflow_slug}\n---\nflowchart TD\n");
    for (i, step) in steps.iter().enumerate() {
        let mut label = step.slug.clone();
        if step.step_type != "single" {
            let _ = write!(label, "<br/><i>{}</i>", step.step_type);
        }
        if let Some(flow) = &step.flow {
            let _ = write!(label, "<br/><i>runs {flow}</i>");
        }
        if let Some(state) = &step.state {
            let _ = write!(label, "<br/>{}", progress(state));
        }
        // a map step is drawn as a subroutine box: [[...]]
        let (open, close) = if step.step_type == "map" {
            ("[[", "]]")
        } else {
            ("[", "]")
        };
        let _ = writeln!(out, "    s{i}{open}\"{label}\"{close}");
    }
    for step in steps {
        for dep in &step.depends_on {
            if let (Some(from), Some(to)) = (id(dep), id(&step.slug)) {
                let _ = writeln!(out, "    {from} --> {to}");
            }
        }
    }
    let mut used: Vec<&str> = Vec::new();
    for step in steps.iter().filter_map(|s| s.state.as_ref()) {
        if !used.contains(&step.status.as_str()) {
            used.push(&step.status);
        }
    }
    for status in &used {
        let (fill, stroke) = colours(status);
        let _ = writeln!(
            out,
            "    classDef {status} fill:{fill},stroke:{stroke},color:#212529"
        );
    }
    for status in &used {
        let members: Vec<String> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state.as_ref().is_some_and(|st| st.status == *status))
            .map(|(i, _)| format!("s{i}"))
            .collect();
        let _ = writeln!(out, "    class {} {status}", members.join(","));
    }
    out
}

fn dot(workflow_slug: &str, steps: &[GraphStep]) -> String {
    let id = node_ids(steps);
    let mut out = format!(
        "digraph \"{workflow_slug}\" {{\n    label=\"{workflow_slug}\";\n    labelloc=t;\n    rankdir=TB;\n    \
         node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n"
    );
    for (i, step) in steps.iter().enumerate() {
        let mut label = step.slug.clone();
        if step.step_type != "single" {
            let _ = write!(label, "\\n({})", step.step_type);
        }
        if let Some(flow) = &step.flow {
            let _ = write!(label, "\\n(runs {flow})");
        }
        let mut attrs = Vec::new();
        if step.step_type == "map" {
            attrs.push("shape=box3d".to_string());
            attrs.push("style=filled".to_string());
        }
        if let Some(state) = &step.state {
            let _ = write!(label, "\\n{}", progress(state));
            let (fill, stroke) = colours(&state.status);
            attrs.push(format!("fillcolor=\"{fill}\""));
            attrs.push(format!("color=\"{stroke}\""));
        }
        attrs.insert(0, format!("label=\"{label}\""));
        let _ = writeln!(out, "    s{i} [{}];", attrs.join(", "));
    }
    for step in steps {
        for dep in &step.depends_on {
            if let (Some(from), Some(to)) = (id(dep), id(&step.slug)) {
                let _ = writeln!(out, "    {from} -> {to};");
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick_start(state: bool) -> Vec<GraphStep> {
        let st = |status: &str, done, total| {
            state.then(|| StepState {
                status: status.into(),
                tasks_completed: done,
                tasks_total: total,
            })
        };
        vec![
            GraphStep {
                slug: "fetch_data".into(),
                step_type: "single".into(),
                depends_on: vec![],
                flow: None,
                state: st("completed", 1, Some(1)),
            },
            GraphStep {
                slug: "process_batch".into(),
                step_type: "map".into(),
                depends_on: vec!["fetch_data".into()],
                flow: None,
                state: st("started", 3, Some(100)),
            },
            GraphStep {
                slug: "end".into(),
                step_type: "single".into(),
                depends_on: vec!["process_batch".into()],
                flow: None,
                state: st("created", 0, Some(1)),
            },
        ]
    }

    #[test]
    fn mermaid_without_and_with_a_run() {
        assert_eq!(
            render("qs", &quick_start(false), Format::Mermaid),
            "---\ntitle: qs\n---\nflowchart TD\n    s0[\"fetch_data\"]\n    s1[[\"process_batch<br/><i>map</i>\"]]\n    \
             s2[\"end\"]\n    s0 --> s1\n    s1 --> s2\n"
        );
        let live = render("qs", &quick_start(true), Format::Mermaid);
        assert!(
            live.contains("s1[[\"process_batch<br/><i>map</i><br/>started 3/100\"]]"),
            "{live}"
        );
        assert!(
            live.contains("classDef completed fill:#d3f9d8,stroke:#2f9e44"),
            "{live}"
        );
        assert!(
            live.ends_with("    class s0 completed\n    class s1 started\n    class s2 created\n"),
            "{live}"
        );
    }

    #[test]
    fn dot_without_and_with_a_run() {
        let plain = render("qs", &quick_start(false), Format::Dot);
        assert!(plain.starts_with("digraph \"qs\" {\n"), "{plain}");
        assert!(
            plain
                .contains("    s1 [label=\"process_batch\\n(map)\", shape=box3d, style=filled];\n"),
            "{plain}"
        );
        assert!(
            plain.contains("    s0 -> s1;\n    s1 -> s2;\n}\n"),
            "{plain}"
        );
        let live = render("qs", &quick_start(true), Format::Dot);
        assert!(
            live.contains("label=\"fetch_data\\ncompleted 1/1\", fillcolor=\"#d3f9d8\""),
            "{live}"
        );
    }
}
