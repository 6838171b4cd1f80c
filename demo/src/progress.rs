//! Live progress of runs from `get_run`: redrawn in place on a terminal, plain lines (only
//! when something changed) otherwise.

use quantum_flow_client::{Run, RunStatus, StepState, StepStatus};
use std::io::Write;
use std::time::Duration;

pub fn step_counts(step: &StepState) -> String {
    let total = step
        .tasks_total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into());
    format!("{}/{}", step.tasks_completed, total)
}

fn mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Created => " ",
        StepStatus::Started => "~",
        StepStatus::Completed => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Cancelled => "-",
        StepStatus::Skipped => "/",
    }
}

pub fn run_status(run: &Run) -> &'static str {
    match run.status {
        RunStatus::Started => "running",
        RunStatus::Paused => "paused",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "FAILED",
    }
}

fn bar(step: &StepState, width: usize) -> String {
    let done = match step.tasks_total {
        Some(0) if step.status == StepStatus::Completed => width,
        Some(total) if total > 0 => {
            (step.tasks_completed as usize * width / total as usize).min(width)
        }
        _ => 0,
    };
    format!("{}{}", "#".repeat(done), ".".repeat(width - done))
}

/// One line per run: `name  status  step done/total mark | ...`.
pub fn compact(runs: &[(String, Run)], elapsed: Duration) -> Vec<String> {
    runs.iter()
        .map(|(label, run)| {
            let steps: Vec<String> = run
                .steps
                .iter()
                .map(|s| format!("{} {} {}", s.step_slug, step_counts(s), mark(s.status)))
                .collect();
            format!(
                "[{:>5.1}s] {:<22} {:<9} {}",
                elapsed.as_secs_f64(),
                label,
                run_status(run),
                steps.join(" | ").trim_end()
            )
        })
        .collect()
}

/// A block per run with a bar per step.
pub fn block(runs: &[(String, Run)], elapsed: Duration) -> Vec<String> {
    let mut lines = vec![format!("  elapsed {:.1}s", elapsed.as_secs_f64())];
    for (label, run) in runs {
        lines.push(format!("  {label}  {}", run_status(run)));
        for s in &run.steps {
            lines.push(format!(
                "    {} {:<16} [{}] {}",
                mark(s.status),
                s.step_slug,
                bar(s, 30),
                step_counts(s)
            ));
        }
    }
    lines
}

/// Draws frames: in place on a terminal, appended (when changed) otherwise.
pub struct Display {
    tty: bool,
    drawn: usize,
    last: Vec<String>,
}

impl Display {
    pub fn new(tty: bool) -> Self {
        Display {
            tty,
            drawn: 0,
            last: Vec::new(),
        }
    }

    pub fn frame(&mut self, runs: &[(String, Run)], elapsed: Duration) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            let lines = block(runs, elapsed);
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            for line in &lines {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            self.drawn = lines.len();
        } else {
            let lines = compact(runs, elapsed);
            // compare without the elapsed-time prefix
            let bodies: Vec<String> = lines
                .iter()
                .map(|l| {
                    l.split_once("] ")
                        .map_or(l.as_str(), |(_, b)| b)
                        .to_string()
                })
                .collect();
            if bodies != self.last {
                for line in &lines {
                    let _ = writeln!(out, "{line}");
                }
                self.last = bodies;
            }
        }
        let _ = out.flush();
    }
}
