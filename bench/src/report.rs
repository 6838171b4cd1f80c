//! The output: context lines, the table of figures, one line per figure, the targets table
//! (figure | now | target | met), then details. A figure that could not be measured is
//! `FAILED (see below)` with its reason under `errors:`.

use crate::python::PyCase;
use crate::workers::LoopStats;
use crate::{machine, ms, percentile, Options, Phase, Results, FAIR_LIMIT};
use std::time::Duration;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / secs(d)
}

fn mean_ms(total: Duration, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        ms(total) / n as f64
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn calls(s: &LoopStats, poll: &str, complete: &str) -> String {
    let mut line = format!(
        "{poll} {} calls ({} empty), mean {:.2} ms ({:.2} ms returning some); \
         {complete} {} calls, mean {:.2} ms",
        s.polls,
        s.empty_polls,
        mean_ms(s.poll_time, s.polls),
        mean_ms(s.busy_poll_time, s.polls - s.empty_polls),
        s.complete_calls,
        mean_ms(s.complete_time, s.complete_calls),
    );
    if s.complete_calls > 0 && s.completions + s.refused != s.complete_calls {
        line.push_str(&format!(
            " ({:.1} tasks per call)",
            (s.completions + s.refused) as f64 / s.complete_calls as f64
        ));
    }
    if s.refused > 0 {
        line.push_str(&format!(", {} returned false", s.refused));
    }
    line
}

/// The table's rows, the one-line figures, the errors of failed figures.
struct Out {
    rows: Vec<(String, String, String)>,
    /// (label, value): printed as `label = value`, the labels aligned
    lines: Vec<(String, String)>,
    errors: Vec<String>,
}

impl Out {
    fn failed(
        &mut self,
        name: &str,
        e: &(dyn std::error::Error + Send + Sync + 'static),
    ) -> String {
        self.errors.push(format!("{name}: {}", crate::describe(e)));
        "FAILED (see below)".to_string()
    }
}

/// A map throughput figure: its row and its line.
fn map_row(
    out: &mut Out,
    name: &str,
    label: &str,
    workload: String,
    line: &str,
    res: &Option<crate::Result<Phase>>,
    v: Option<f64>,
) {
    if let Some(res) = res {
        let result = match res {
            Ok(p) => {
                let v = v.unwrap_or(0.0);
                out.lines
                    .push((line.to_string(), format!("{v:.0} tasks/s")));
                format!("{v:.0} tasks/s ({:.2} s)", secs(p.elapsed))
            }
            Err(e) => out.failed(name, e.as_ref()),
        };
        out.rows.push((format!("{name} {label}"), workload, result));
    }
}

/// A chain phase's row and line, as `map_row` for maps (3 tasks per run).
fn chain_row(
    out: &mut Out,
    name: &str,
    label: &str,
    workload: String,
    line: &str,
    res: &Option<crate::Result<crate::Chain>>,
    v: Option<f64>,
) {
    if let Some(res) = res {
        let result = match res {
            Ok(c) => {
                let v = v.unwrap_or(0.0);
                out.lines.push((
                    line.to_string(),
                    format!("{v:.0} runs/s ({:.0} tasks/s)", v * 3.0),
                ));
                format!("{v:.0} runs/s ({:.2} s)", secs(c.phase.elapsed))
            }
            Err(e) => out.failed(name, e.as_ref()),
        };
        out.rows.push((format!("{name} {label}"), workload, result));
    }
}

/// How long a per-call chain phase's start_flow calls took, of the whole phase.
fn start_flow_calls(o: &Options, c: &crate::Chain) -> String {
    format!(
        "the {} start_flow calls took {:.2} s ({:.0} runs/s) of the {:.2} s",
        c.start_calls,
        secs(c.starting),
        rate(o.chain_runs, c.starting),
        secs(c.phase.elapsed)
    )
}

/// One row of the targets table.
struct Target {
    figure: String,
    /// None: the figure failed (or was not measured in this run)
    now: Option<(String, bool)>,
    target: String,
}

pub fn report(o: &Options, m: &machine::Machine, server: &machine::Server, r: &Results) {
    context(o, m, server);

    let map_rate = |x: &Option<crate::Result<Phase>>| match x {
        Some(Ok(p)) => Some(rate(o.map_tasks, p.elapsed)),
        _ => None,
    };
    let (a_rate, f_rate, g_rate) = (map_rate(&r.map), map_rate(&r.root), map_rate(&r.batched));
    // the floor: both rounds together (all messages over all time)
    let floor_rate = match (&r.floor, &r.floor2) {
        (Some(Ok((p1, _))), Some(Ok((p2, _)))) => {
            Some(rate(2 * o.floor_msgs, p1.elapsed + p2.elapsed))
        }
        (Some(Ok((p1, _))), None) => Some(rate(o.floor_msgs, p1.elapsed)),
        _ => None,
    };
    let chain_rate = |x: &Option<crate::Result<crate::Chain>>| match x {
        Some(Ok(c)) => Some(rate(o.chain_runs, c.phase.elapsed)),
        _ => None,
    };
    let (b_rate, h_rate) = (chain_rate(&r.chain), chain_rate(&r.chain_many));
    let l_rate = chain_rate(&r.chain_batched);
    let m_rate = chain_rate(&r.chain_batched_per_call);
    let handoff = r
        .latency
        .as_ref()
        .and_then(|x| x.as_ref().ok())
        .map(|l| l.sorted());
    let pickup = r
        .pickup
        .as_ref()
        .and_then(|x| x.as_ref().ok())
        .map(|l| l.sorted());
    let py_rates: Vec<(PyCase, Option<f64>, bool)> = match &r.python {
        Some(Ok(p)) => p
            .cases
            .iter()
            .map(|c| match &c.result {
                Ok(run) => (c.case, Some(rate(run.tasks, run.elapsed)), run.batches),
                Err(_) => (c.case, None, false),
            })
            .collect(),
        _ => Vec::new(),
    };

    // The table, then one line per figure.
    let mut out = Out {
        rows: vec![("figure".into(), "workload".into(), "result".into())],
        lines: Vec::new(),
        errors: Vec::new(),
    };
    let n = o.map_tasks;
    let w = o.workers;

    map_row(
        &mut out,
        "(a)",
        "map, per task",
        format!("1 run: fetch -> map of {n} tasks, {w} workers, complete_task each"),
        "quantum_flow map throughput",
        &r.map,
        a_rate,
    );
    chain_row(
        &mut out,
        "(b)",
        "chain, start_flow",
        format!(
            "{} runs of a -> b -> c, one start_flow each, {w} workers",
            o.chain_runs
        ),
        "quantum_flow chain throughput",
        &r.chain,
        b_rate,
    );
    if let Some(res) = &r.latency {
        let result = match (res, &handoff) {
            (Ok(_), Some((h, _))) => {
                let (p50, p95) = (ms(percentile(h, 50.0)), ms(percentile(h, 95.0)));
                out.lines.push((
                    "quantum_flow handoff latency".into(),
                    format!("median {p50:.2} ms, p95 {p95:.2} ms"),
                ));
                format!("median {p50:.2} ms, p95 {p95:.2} ms")
            }
            (Err(e), _) => out.failed("(c)", e.as_ref()),
            _ => unreachable!("latency samples exist when the phase succeeded"),
        };
        out.rows.push((
            "(c) handoff latency".into(),
            format!("{} runs of s1 -> s2, next poller waiting", o.latency_runs),
            result,
        ));
    }
    if let Some(res) = &r.floor {
        let result = match (res, &r.floor2) {
            (Err(e), _) => out.failed("(d) 1st round", e.as_ref()),
            (_, Some(Err(e))) => out.failed("(d) 2nd round", e.as_ref()),
            (Ok(_), _) => {
                let v = floor_rate.unwrap_or(0.0);
                out.lines
                    .push(("pgmq floor".into(), format!("{v:.0} msgs/s")));
                let rounds: Vec<String> = [&r.floor, &r.floor2]
                    .into_iter()
                    .filter_map(|x| x.as_ref().and_then(|x| x.as_ref().ok()))
                    .map(|(p, _)| format!("{:.0}", rate(o.floor_msgs, p.elapsed)))
                    .collect();
                format!("{v:.0} msgs/s (rounds: {} msgs/s)", rounds.join(", "))
            }
        };
        out.rows.push((
            "(d) pgmq floor".into(),
            format!(
                "2 x {} msgs, pgmq.read + pgmq.delete each, {w} workers",
                o.floor_msgs
            ),
            result,
        ));
    }
    if let Some(res) = &r.fair {
        let result = match res {
            Ok(f) => {
                let off = match f.off {
                    Some(d) => format!("{:.2} s", secs(d)),
                    None => format!("> {} s", FAIR_LIMIT.as_secs()),
                };
                out.lines.push((
                    format!("first claim behind a {}-task map", o.fair_tasks).to_string(),
                    format!("{:.1} ms fair, {off} oldest first", ms(f.on)),
                ));
                format!("{:.1} ms (fair_polling off: {off})", ms(f.on))
            }
            Err(e) => out.failed("(e)", e.as_ref()),
        };
        out.rows.push((
            "(e) first claim behind a map".into(),
            format!(
                "1 task started behind a {}-task map being drained, {w} workers",
                o.fair_tasks
            ),
            result,
        ));
    }
    map_row(
        &mut out,
        "(f)",
        "root map, per task",
        format!("1 run: map over the flow input, {n} tasks, {w} workers, complete_task each"),
        "quantum_flow root map throughput",
        &r.root,
        f_rate,
    );
    map_row(
        &mut out,
        "(g)",
        "map, complete_tasks",
        format!(
            "as (a), each polled batch (<= {}) completed by one complete_tasks",
            o.batch_size
        ),
        "quantum_flow map throughput, batches",
        &r.batched,
        g_rate,
    );
    chain_row(
        &mut out,
        "(h)",
        "chain, start_flows",
        "as (b), the runs started by start_flows (<= max_batch_size per call)".into(),
        "quantum_flow chain throughput, start_flows",
        &r.chain_many,
        h_rate,
    );
    chain_row(
        &mut out,
        "(l)",
        "chain, batch calls",
        "as (h), each polled batch completed by one complete_tasks".into(),
        "quantum_flow chain throughput, batch calls",
        &r.chain_batched,
        l_rate,
    );
    chain_row(
        &mut out,
        "(m)",
        "chain, start_flow, batches",
        "as (b), each polled batch completed by one complete_tasks".into(),
        "quantum_flow chain throughput, start_flow, complete_tasks",
        &r.chain_batched_per_call,
        m_rate,
    );
    if let Some(res) = &r.pickup {
        let result = match (res, &pickup) {
            (Ok(_), Some((s, _))) => {
                let (p50, p95) = (ms(percentile(s, 50.0)), ms(percentile(s, 95.0)));
                out.lines.push((
                    "quantum_flow idle pickup latency".into(),
                    format!("median {p50:.2} ms, p95 {p95:.2} ms"),
                ));
                format!("median {p50:.2} ms, p95 {p95:.2} ms")
            }
            (Err(e), _) => out.failed("(i)", e.as_ref()),
            _ => unreachable!("pickup samples exist when the phase succeeded"),
        };
        out.rows.push((
            "(i) idle pickup latency".into(),
            format!(
                "{} one-step runs, start_flow -> a waiting poller has the task",
                o.latency_runs
            ),
            result,
        ));
    }
    if let Some(res) = &r.first {
        let result = match res {
            Ok(f) => {
                out.lines.push((
                    format!("first claim of a {}-task map", o.first_claim_tasks).to_string(),
                    format!(
                        "{:.3} s root map, {:.3} s fan-out",
                        secs(f.root.first),
                        secs(f.fanout.first)
                    ),
                ));
                format!(
                    "root {:.3} s, fan-out {:.3} s",
                    secs(f.root.first),
                    secs(f.fanout.first)
                )
            }
            Err(e) => out.failed("(j)", e.as_ref()),
        };
        out.rows.push((
            "(j) first claim of a big map".into(),
            format!(
                "{} elements: start_flow / complete_task sent -> a waiting poller has a task",
                o.first_claim_tasks
            ),
            result,
        ));
    }
    if let Some(res) = &r.cost {
        let result = match res {
            Ok(c) => {
                out.lines.push((
                    format!("cost per task, {} vs {} tasks", o.small_map, o.big_map).to_string(),
                    format!(
                        "fan-out {:.1} vs {:.1} us/task, claim+complete {:.0} vs {:.0} us/task",
                        us(c.small_fanout_per_task()),
                        us(c.big.fanout_per_task()),
                        us(c.small_drain_per_task()),
                        us(c.big.drain_per_task()),
                    ),
                ));
                format!(
                    "fan-out {:.1} / {:.1} us, claim+complete {:.0} / {:.0} us per task",
                    us(c.small_fanout_per_task()),
                    us(c.big.fanout_per_task()),
                    us(c.small_drain_per_task()),
                    us(c.big.drain_per_task()),
                )
            }
            Err(e) => out.failed("(k)", e.as_ref()),
        };
        out.rows.push((
            "(k) cost per task".into(),
            format!(
                "{}-task map (median of {} runs) / {}-task map (its first {} tasks drained)",
                o.small_map,
                crate::bigmap::SMALL_RUNS,
                o.big_map,
                o.cost_tasks
            ),
            result,
        ));
    }
    match &r.python {
        Some(Err(e)) => {
            let result = out.failed("(p)", e.as_ref());
            out.rows.push((
                "(p) Python Worker".into(),
                "the map runs of (f), (a), (g)".into(),
                result,
            ));
        }
        Some(Ok(p)) => {
            for c in &p.cases {
                let result = match &c.result {
                    Ok(run) => {
                        let v = rate(run.tasks, run.elapsed);
                        out.lines.push((
                            format!("Python Worker, {}", c.case.label()),
                            format!("{v:.0} tasks/s"),
                        ));
                        let note = if c.case == PyCase::Batched && !run.batches {
                            " (no complete_in_batches: per task)"
                        } else {
                            ""
                        };
                        format!("{v:.0} tasks/s ({:.2} s){note}", secs(run.elapsed))
                    }
                    Err(e) => out.failed(&format!("(p) {}", c.case.label()), e.as_ref()),
                };
                out.rows.push((
                    format!("(p) Python, {}", c.case.label()),
                    format!(
                        "as ({}), {} Worker(batch_size={}, concurrency={})",
                        match c.case {
                            PyCase::Root => "f",
                            PyCase::Dependent => "a",
                            PyCase::Batched => "g",
                        },
                        o.py_workers,
                        o.batch_size,
                        o.py_concurrency
                    ),
                    result,
                ));
            }
        }
        None => {}
    }
    table(&out.rows);
    println!();
    let width = out.lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    for (label, value) in &out.lines {
        println!("{label:<width$} = {value}");
    }
    println!();

    // The targets table.
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let mut targets: Vec<Target> = Vec::new();
    let at_least = |v: Option<f64>, min: f64| v.map(|v| (format!("{v:.2}x"), v >= min));
    if o.phases.contains('f') && o.phases.contains('d') {
        targets.push(Target {
            figure: format!("root map, {n} tasks, per task / pgmq floor"),
            now: at_least(ratio(f_rate, floor_rate), 0.8),
            target: ">= 0.8x".into(),
        });
    }
    if o.phases.contains('a') && o.phases.contains('d') {
        targets.push(Target {
            figure: format!("dependent map, {n} tasks, per task / pgmq floor"),
            now: at_least(ratio(a_rate, floor_rate), 0.8),
            target: ">= 0.8x".into(),
        });
    }
    if o.phases.contains('g') && o.phases.contains('d') {
        targets.push(Target {
            figure: format!(
                "dependent map, complete_tasks of each batch of {} / pgmq floor",
                o.batch_size
            ),
            now: at_least(ratio(g_rate, floor_rate), 3.0),
            target: ">= 3x".into(),
        });
    }
    if o.phases.contains('h') && o.phases.contains('b') {
        targets.push(Target {
            figure: format!(
                "{} chain runs: start_flows / start_flow (runs/s, end to end)",
                o.chain_runs
            ),
            now: at_least(ratio(h_rate, b_rate), 3.0),
            target: ">= 3x".into(),
        });
    }
    if o.phases.contains('l') && o.phases.contains('m') {
        targets.push(Target {
            figure: format!(
                "{} chain runs, workers on complete_tasks: start_flows / start_flow",
                o.chain_runs
            ),
            now: at_least(ratio(l_rate, m_rate), 3.0),
            target: ">= 3x".into(),
        });
    }
    if o.phases.contains('l') && o.phases.contains('b') {
        targets.push(Target {
            figure: format!(
                "{} chain runs: start_flows + complete_tasks / start_flow + complete_task",
                o.chain_runs
            ),
            now: ratio(l_rate, b_rate).map(|v| (format!("{v:.2}x"), true)),
            target: "(none)".into(),
        });
    }
    let at_most_ms =
        |v: Option<Duration>, max: f64| v.map(|v| (format!("{:.2} ms", ms(v)), ms(v) <= max));
    if o.phases.contains('c') {
        targets.push(Target {
            figure: "handoff latency p50".into(),
            now: at_most_ms(handoff.as_ref().map(|(h, _)| percentile(h, 50.0)), 1.5),
            target: "<= 1.5 ms".into(),
        });
    }
    if o.phases.contains('i') {
        targets.push(Target {
            figure: "idle pickup latency p50".into(),
            now: at_most_ms(pickup.as_ref().map(|(s, _)| percentile(s, 50.0)), 2.0),
            target: "<= 2 ms".into(),
        });
    }
    if o.phases.contains('j') {
        let first = r.first.as_ref().and_then(|x| x.as_ref().ok());
        let under = |d: Option<Duration>| d.map(|d| (format!("{:.3} s", secs(d)), secs(d) < 0.5));
        targets.push(Target {
            figure: format!(
                "{}-task map, first task claimable: root map (start_flow)",
                o.first_claim_tasks
            ),
            now: under(first.map(|f| f.root.first)),
            target: "< 0.5 s".into(),
        });
        targets.push(Target {
            figure: format!(
                "{}-task map, first task claimable: fan-out (complete_task)",
                o.first_claim_tasks
            ),
            now: under(first.map(|f| f.fanout.first)),
            target: "< 0.5 s".into(),
        });
    }
    if o.phases.contains('k') {
        let cost = r.cost.as_ref().and_then(|x| x.as_ref().ok());
        let within = |v: Option<f64>| v.map(|v| (format!("{v:.2}x"), (0.75..=1.25).contains(&v)));
        targets.push(Target {
            figure: format!(
                "cost per task, fan-out: {}-task map / {}-task map",
                o.big_map, o.small_map
            ),
            now: within(cost.map(|c| {
                c.big.fanout_per_task().as_secs_f64() / c.small_fanout_per_task().as_secs_f64()
            })),
            target: "within 25% (0.75x-1.25x)".into(),
        });
        targets.push(Target {
            figure: format!(
                "cost per task, claim+complete: first {} of {} / all {}",
                o.cost_tasks, o.big_map, o.small_map
            ),
            now: within(cost.map(|c| {
                c.big.drain_per_task().as_secs_f64() / c.small_drain_per_task().as_secs_f64()
            })),
            target: "within 25% (0.75x-1.25x)".into(),
        });
    }
    if o.phases.contains('d') {
        for (case, v, _) in &py_rates {
            targets.push(Target {
                figure: format!("Python Worker, {} / pgmq floor", case.label()),
                now: ratio(*v, floor_rate).map(|v| (format!("{v:.2}x"), true)),
                target: "(none)".into(),
            });
        }
    }
    if !targets.is_empty() {
        println!("targets:");
        let mut trows: Vec<(String, String, String)> =
            vec![("figure".into(), "now".into(), "target".into())];
        let mut met = Vec::new();
        for t in &targets {
            let (now, ok) = match &t.now {
                Some((v, ok)) => (v.clone(), Some(*ok)),
                None => ("FAILED".into(), None),
            };
            trows.push((t.figure.clone(), now, t.target.clone()));
            met.push(if t.target == "(none)" {
                "-"
            } else {
                match ok {
                    Some(true) => "met",
                    _ => "NOT met",
                }
            });
        }
        let w0 = trows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let w1 = trows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let w2 = trows.iter().map(|r| r.2.len()).max().unwrap_or(0);
        for (i, (a, b, c)) in trows.iter().enumerate() {
            let m = if i == 0 { "met?" } else { met[i - 1] };
            println!("{a:<w0$}  {b:<w1$}  {c:<w2$}  {m}");
            if i == 0 {
                println!(
                    "{}  {}  {}  {}",
                    "-".repeat(w0),
                    "-".repeat(w1),
                    "-".repeat(w2),
                    "-".repeat(7)
                );
            }
        }
        println!();
    }

    details(o, r, &handoff, &pickup);
    if !out.errors.is_empty() {
        println!();
        println!("errors:");
        for e in &out.errors {
            println!("  {e}");
        }
    }
}

pub fn context(o: &Options, m: &machine::Machine, server: &machine::Server) {
    let settings: Vec<String> = server
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "machine:  nproc {}, {}, {:.1} GiB RAM",
        m.nproc, m.cpu_model, m.ram_gib
    );
    println!("server:   {}, {}", server.version, settings.join(", "));
    println!(
        "workers:  {} (one connection each, prepared statements), batch_size {}, max_wait_ms {}; \
         client and server on the same machine",
        o.workers, o.batch_size, o.max_wait_ms
    );
    println!();
}

/// Prints rows as aligned columns, a rule under the first.
pub fn table(rows: &[(String, String, String)]) {
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    for (i, (a, b, c)) in rows.iter().enumerate() {
        println!("{a:<w0$}  {b:<w1$}  {c}");
        if i == 0 {
            println!("{}  {}  {}", "-".repeat(w0), "-".repeat(w1), "-".repeat(w2));
        }
    }
}

type Sorted = Option<(Vec<Duration>, Vec<Duration>)>;

fn details(o: &Options, r: &Results, handoff: &Sorted, pickup: &Sorted) {
    println!("details:");
    if let Some(Ok(p)) = &r.map {
        println!("  (a) {}", calls(&p.stats, "poll_tasks", "complete_task"));
        println!(
            "      slowest complete_task {:.1} ms (the fetch completion, which readies the {}-task map)",
            ms(p.stats.complete_max),
            o.map_tasks
        );
    }
    if let Some(Ok(c)) = &r.chain {
        println!(
            "  (b) {}",
            calls(&c.phase.stats, "poll_tasks", "complete_task")
        );
        println!("      {}", start_flow_calls(o, c));
    }
    if let Some((h, c)) = handoff {
        println!(
            "  (c) complete_task(s1) call itself: median {:.2} ms, p95 {:.2} ms; handoff max {:.2} ms",
            ms(percentile(c, 50.0)),
            ms(percentile(c, 95.0)),
            ms(*h.last().unwrap_or(&Duration::ZERO))
        );
    }
    for (round, x) in [("1st", &r.floor), ("2nd", &r.floor2)] {
        if let Some(Ok((p, send_time))) = x {
            println!(
                "  (d) {round} round: {:.0} msgs/s; {}",
                rate(o.floor_msgs, p.elapsed),
                calls(&p.stats, "pgmq.read", "pgmq.delete")
            );
            println!(
                "      setup: one pgmq.send_batch of {} msgs took {:.2} s (not in the figure)",
                o.floor_msgs,
                secs(*send_time)
            );
        }
    }
    if let Some(Ok(f)) = &r.fair {
        println!(
            "  (e) tasks of the big map claimed after the second run started, before its first: \
             {} with fair polling, {} strictly oldest first",
            f.ahead_on, f.ahead_off
        );
    }
    if let Some(Ok(p)) = &r.root {
        println!("  (f) {}", calls(&p.stats, "poll_tasks", "complete_task"));
    }
    if let Some(Ok(p)) = &r.batched {
        println!(
            "  (g) {}",
            calls(&p.stats, "poll_tasks", "complete_task/complete_tasks")
        );
        println!(
            "      slowest call {:.1} ms (the fetch completion, which readies the {}-task map)",
            ms(p.stats.complete_max),
            o.map_tasks
        );
    }
    if let Some(Ok(c)) = &r.chain_many {
        println!(
            "  (h) {}",
            calls(&c.phase.stats, "poll_tasks", "complete_task")
        );
        println!(
            "      {} start_flows call(s) started the {} runs in {:.3} s ({:.0} runs/s) of the {:.2} s",
            c.start_calls,
            o.chain_runs,
            secs(c.starting),
            rate(o.chain_runs, c.starting),
            secs(c.phase.elapsed)
        );
        if let Some(Ok(b)) = &r.chain {
            println!(
                "      starting alone: start_flows {:.1}x as fast as one start_flow per run",
                secs(b.starting) / secs(c.starting)
            );
        }
    }
    if let Some(Ok(c)) = &r.chain_batched {
        println!(
            "  (l) {}",
            calls(&c.phase.stats, "poll_tasks", "complete_tasks")
        );
    }
    if let Some(Ok(c)) = &r.chain_batched_per_call {
        println!(
            "  (m) {}",
            calls(&c.phase.stats, "poll_tasks", "complete_tasks")
        );
        println!("      {}", start_flow_calls(o, c));
    }
    if let Some((s, c)) = pickup {
        println!(
            "  (i) p95 {:.2} ms, max {:.2} ms; the start_flow call itself: median {:.2} ms, p95 {:.2} ms",
            ms(percentile(s, 95.0)),
            ms(*s.last().unwrap_or(&Duration::ZERO)),
            ms(percentile(c, 50.0)),
            ms(percentile(c, 95.0)),
        );
    }
    if let Some(Ok(f)) = &r.first {
        println!(
            "  (j) root: start_flow of the {}-element input returned after {:.3} s; cancel_run \
             of the run took {:.3} s",
            o.first_claim_tasks,
            secs(f.root.call),
            secs(f.root.cancel)
        );
        println!(
            "      fan-out: complete_task(list) with the {}-element output returned after \
             {:.3} s; cancel_run took {:.3} s",
            o.first_claim_tasks,
            secs(f.fanout.call),
            secs(f.fanout.cancel)
        );
    }
    if let Some(Ok(c)) = &r.cost {
        let per_task = |f: fn(&crate::bigmap::CostCase) -> Duration, unit: f64| {
            c.small
                .iter()
                .map(|case| format!("{:.1}", f(case).as_secs_f64() * unit))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  (k) {} tasks, {} runs (each completed): fan-out [{}] us/task, median {:.1}; \
             claim+complete [{}] us/task, median {:.0}",
            o.small_map,
            c.small.len(),
            per_task(crate::bigmap::CostCase::fanout_per_task, 1e6),
            us(c.small_fanout_per_task()),
            per_task(crate::bigmap::CostCase::drain_per_task, 1e6),
            us(c.small_drain_per_task()),
        );
        let case = &c.big;
        let cancel = match case.cancel {
            Some(d) => format!("; cancel_run of the rest took {:.2} s", secs(d)),
            None => "; the run completed".into(),
        };
        println!(
            "  (k) {} tasks: fan-out {:.3} s ({:.1} us/task: complete_task {:.3} s, then {} \
             polls, a chunk each); {} tasks claimed and completed in {:.3} s ({:.0} us/task, \
             {:.0} tasks/s){cancel}",
            case.tasks,
            secs(case.fanout),
            us(case.fanout_per_task()),
            secs(case.fanout_call),
            case.chunks,
            case.drained,
            secs(case.drain),
            us(case.drain_per_task()),
            rate(case.drained, case.drain),
        );
    }
    if let Some(Ok(p)) = &r.python {
        println!("  (p) {}", p.python);
        println!("      client: {}", p.client);
        match p.batches_supported {
            Some(true) => println!(
                "      Worker(complete_in_batches=...) exists: per task = False, batches = True"
            ),
            Some(false) => println!(
                "      this client's Worker has no complete_in_batches: every Python figure \
                 completes one task per call"
            ),
            None => {}
        }
    }
    let phases = [
        ("(a)", r.map.as_ref().and_then(|x| x.as_ref().ok())),
        ("(f)", r.root.as_ref().and_then(|x| x.as_ref().ok())),
        ("(g)", r.batched.as_ref().and_then(|x| x.as_ref().ok())),
        (
            "(b)",
            r.chain
                .as_ref()
                .and_then(|x| x.as_ref().ok())
                .map(|x| &x.phase),
        ),
        (
            "(h)",
            r.chain_many
                .as_ref()
                .and_then(|x| x.as_ref().ok())
                .map(|x| &x.phase),
        ),
        (
            "(l)",
            r.chain_batched
                .as_ref()
                .and_then(|x| x.as_ref().ok())
                .map(|x| &x.phase),
        ),
        (
            "(m)",
            r.chain_batched_per_call
                .as_ref()
                .and_then(|x| x.as_ref().ok())
                .map(|x| &x.phase),
        ),
        (
            "(d)",
            r.floor.as_ref().and_then(|x| x.as_ref().ok()).map(|x| &x.0),
        ),
        (
            "(d)",
            r.floor2
                .as_ref()
                .and_then(|x| x.as_ref().ok())
                .map(|x| &x.0),
        ),
    ];
    for (name, phase) in phases {
        if let Some(w) = phase.and_then(|p| p.waits.as_ref()) {
            println!("  {name} backends: {}", w.summary());
        }
    }
}
