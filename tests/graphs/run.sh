#!/usr/bin/env bash
# Renders flow_graph's output with the real tools and fails when a graph does not render:
# every Mermaid text with the Mermaid CLI (mmdc, @mermaid-js/mermaid-cli in headless Chromium)
# and every DOT text with Graphviz (dot -Tsvg).
#
# In a fresh database it defines the three reference workflows (ai_data_pipeline,
# my_workflow, claude_etl: the create_flow / add_step calls of
# tests/pg_regress/sql/seed_guide.sql, run as they are written there) and the demo's LLM
# workflow (support_ticket_triage: demo/data/llm_workflow.json through define_flow), drives
# runs of them part way with poll_tasks / complete_task / fail_task / cancel_run, so that the
# step statuses completed, started, created, failed and cancelled all appear, and renders
# flow_graph(slug) and flow_graph(slug, run_id => ...) in both formats. A rendering passes
# when the tool exits 0 (dot: and prints nothing), and its SVG exists, is well-formed XML, is
# not Mermaid's "Syntax error" picture, has one node per step and one edge per dependency,
# between the right steps, and shows the workflow's slug, every step's slug, with a run every
# step's "status completed/total" as get_run reports it, filled with its status's colour.
# It also checks that the README's rendered Quick Start (the ```mermaid block after
# "`flow_graph('ai_data_pipeline')`, the Quick Start's workflow, renders like this") is
# exactly flow_graph('ai_data_pipeline') of tests/documents/cases/valid_quick_start.json
# (which define_flow must find identical to the Quick Start of seed_guide.sql).
#
# All Mermaid texts are rendered by one mmdc run (a Markdown file with one ```mermaid block
# per graph; mmdc starts a browser per run), plus one for the PNG. Only when that run fails
# is each graph rendered on its own, to name every graph that does not parse with its text
# and mmdc's error.
#
# Needs psql, node (>= 18.19) with npm, python3, Graphviz's dot and Chromium (Debian:
# chromium, graphviz; scripts/setup.sh installs them). The Mermaid CLI is installed with
# `npm ci` into tests/graphs/node_modules when missing or when package.json /
# package-lock.json changed (PUPPETEER_SKIP_DOWNLOAD=1: Puppeteer drives the system Chromium,
# PUPPETEER_EXECUTABLE_PATH, default /usr/bin/chromium, with the flags of
# tests/graphs/puppeteer-config.json).
#
# Connection: QF_TEST_DATABASE_URL (postgres://USER@HOST:PORT/DB) when set, else the PG*
# environment variables. The graphs are made in database $QF_GRAPHS_DB (default qf_graphs),
# dropped and created first, and dropped at the end. The SVGs (and a PNG of the Quick Start
# with a run) are kept in $QF_GRAPHS_OUT (default .qf/graphs), emptied first, with the
# Mermaid and DOT texts they were made from.
#
#   tests/graphs/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
db="${QF_GRAPHS_DB:-qf_graphs}"
out="${QF_GRAPHS_OUT:-$repo/.qf/graphs}"
readme="$repo/README.md"
seed="$repo/tests/pg_regress/sql/seed_guide.sql"
llm_doc="$repo/demo/data/llm_workflow.json"
quick_start_doc="$repo/tests/documents/cases/valid_quick_start.json"
# Upper bound in seconds for one mmdc run (a browser start and every diagram); dot gets 30.
mmdc_timeout="${QF_GRAPHS_MMDC_TIMEOUT:-120}"
export PUPPETEER_SKIP_DOWNLOAD=1
export PUPPETEER_EXECUTABLE_PATH="${PUPPETEER_EXECUTABLE_PATH:-/usr/bin/chromium}"

started_at="$(date +%s.%N)"
say() { echo "graphs: $*"; }
die() {
    echo "graphs: $*" >&2
    exit 1
}
elapsed() { awk -v a="$started_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

command -v psql >/dev/null || die "psql is not installed"
command -v python3 >/dev/null || die "python3 is not installed"
command -v dot >/dev/null || die "Graphviz's dot is not installed (Debian: graphviz; scripts/setup.sh installs it)"
[ -x "$PUPPETEER_EXECUTABLE_PATH" ] ||
    die "no Chromium at PUPPETEER_EXECUTABLE_PATH=$PUPPETEER_EXECUTABLE_PATH (Debian: chromium; scripts/setup.sh installs it)"
command -v node >/dev/null || die "node is not installed: the Mermaid CLI needs Node.js 18.19 or newer with npm"
command -v npm >/dev/null || die "npm is not installed (it comes with Node.js)"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' ||
    die "node $(node --version) is too old: the Mermaid CLI needs Node.js 18.19 or newer"
for f in "$readme" "$seed" "$llm_doc" "$quick_start_doc"; do
    [ -f "$f" ] || die "missing: ${f#"$repo"/}"
done
[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "QF_GRAPHS_DB must be a plain lower-case name"

# psql connection arguments for the maintenance database and for the graphs database.
if [ -n "${QF_TEST_DATABASE_URL:-}" ]; then
    url="$QF_TEST_DATABASE_URL"
    [[ "$url" =~ ^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$ ]] ||
        die "cannot read QF_TEST_DATABASE_URL: $url"
    admin_conn=("$url")
    graphs_conn=("${BASH_REMATCH[1]}/$db${BASH_REMATCH[4]}")
else
    admin_conn=(-d postgres)
    graphs_conn=(-d "$db")
fi
psql_=(psql -X -q -v ON_ERROR_STOP=1)
# One value per line, unaligned, no headers: for reading query results into the script.
psql_at() { "${psql_[@]}" -At "${graphs_conn[@]}" "$@"; }

# 1. The Mermaid CLI (qf_npm_ci: npm ci when node_modules is missing or stale).
mmdc="$here/node_modules/.bin/mmdc"
qf_npm_ci "$here" || die "npm ci in tests/graphs (the Mermaid CLI) failed"
[ -x "$mmdc" ] || die "no mmdc in tests/graphs/node_modules (npm ci did not install @mermaid-js/mermaid-cli)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
find "$out" -mindepth 1 -delete

# 2. A fresh database with the four workflows.
"${psql_[@]}" "${admin_conn[@]}" -c "SET client_min_messages TO warning" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null ||
    die "cannot create database $db"
"${psql_[@]}" "${graphs_conn[@]}" -c "SET client_min_messages TO warning" \
    -c "CREATE EXTENSION quantum_flow CASCADE" >/dev/null ||
    die "cannot create extension quantum_flow in $db (is it installed?)"

# The reference definitions, as seed_guide.sql writes them: its \set lines for the column lists
# and every create_flow / add_step statement (up to the line that ends it with ";").
awk '
    /^\\set (flow_cols|step_cols) / { print; next }
    /quantum_flow\.(create_flow|add_step)\(/ { grab = 1 }
    grab { print }
    grab && /;[[:space:]]*$/ { grab = 0 }
' "$seed" >"$work/seed.sql"
grep -q 'create_flow' "$work/seed.sql" || die "no create_flow calls found in ${seed#"$repo"/}"
"${psql_[@]}" "${graphs_conn[@]}" -f "$work/seed.sql" >/dev/null ||
    die "the definitions of ${seed#"$repo"/} failed (above)"
seeded="$(psql_at -c "SELECT string_agg(workflow_slug, ' ' ORDER BY workflow_slug) FROM quantum_flow.list_flows()")"
[ "$seeded" = "ai_data_pipeline claude_etl my_workflow" ] ||
    die "${seed#"$repo"/} defined '$seeded', expected 'ai_data_pipeline claude_etl my_workflow'"

# The LLM workflow: the document under "definition" when it has one, else the document
# without the LLM's "prompt" and its "input".
llm_slug="$(psql_at -v doc="$(cat "$llm_doc")" <<'SQL'
SELECT quantum_flow.define_flow(CASE WHEN d ? 'definition' THEN d -> 'definition'
                                     ELSE d - 'prompt' - 'input' END) ->> 'workflow_slug'
FROM (SELECT :'doc'::jsonb AS d) AS doc;
SQL
)" || die "define_flow of ${llm_doc#"$repo"/} failed (above)"
[ "$llm_slug" = support_ticket_triage ] ||
    die "${llm_doc#"$repo"/} defines '$llm_slug', expected support_ticket_triage"

# The Quick Start document of the README: define_flow must find it identical to seed_guide.sql's.
psql_at -v doc="$(cat "$quick_start_doc")" >/dev/null <<'SQL' ||
SELECT quantum_flow.define_flow(:'doc'::jsonb) ->> 'workflow_slug';
SQL
    die "define_flow of ${quick_start_doc#"$repo"/} failed (above): it is not seed_guide.sql's Quick Start"

# 3. Runs, driven part way. Fixed run ids, so that the artefacts are the same every time.
r_qs=6a4f0000-0000-0000-0000-000000000001      # ai_data_pipeline: completed, started, created
r_mw=6a4f0000-0000-0000-0000-000000000002      # my_workflow: completed
r_etl=6a4f0000-0000-0000-0000-000000000003     # claude_etl: completed, cancelled (cancel_run)
r_triage=6a4f0000-0000-0000-0000-000000000004  # support_ticket_triage: completed, failed, cancelled
r_new=6a4f0000-0000-0000-0000-000000000005     # support_ticket_triage just started: map total unknown
"${psql_[@]}" "${graphs_conn[@]}" -v r_qs="$r_qs" -v r_mw="$r_mw" -v r_etl="$r_etl" \
    -v r_triage="$r_triage" -v r_new="$r_new" >/dev/null <<'SQL' || die "driving the runs failed (above)"
SET client_min_messages TO warning;
-- Quick Start: fetch_data returns 100 items; 37 of process_batch's 100 tasks are done.
SELECT quantum_flow.start_flow('ai_data_pipeline', '{"initial": "data"}', :'r_qs');
SELECT count(*) FROM quantum_flow.poll_tasks('ai_data_pipeline');
SELECT quantum_flow.complete_task(:'r_qs', 'fetch_data', 0,
                                  (SELECT jsonb_agg(i ORDER BY i) FROM generate_series(1, 100) AS i));
SELECT count(*) FILTER (WHERE quantum_flow.complete_task(run_id, step_slug, task_index,
                               jsonb_build_object('processed', (input ->> 'item')::int * 2)))
FROM quantum_flow.poll_tasks('ai_data_pipeline', batch_size => 100)
WHERE task_index < 37;
-- Migration Path: step1 done, the run is completed.
SELECT quantum_flow.start_flow('my_workflow', '{"x": 1}', :'r_mw');
SELECT count(*) FROM quantum_flow.poll_tasks('my_workflow');
SELECT quantum_flow.complete_task(:'r_mw', 'step1', 0, '{"run": {"x": 1}}');
-- ETL: three rows extracted, one validated, then the run is cancelled.
SELECT quantum_flow.start_flow('claude_etl', run_id => :'r_etl');
SELECT count(*) FROM quantum_flow.poll_tasks('claude_etl');
SELECT quantum_flow.complete_task(:'r_etl', 'extract_csv', 0,
                                  '[["1", "ada"], ["2", "grace"], ["3", "edsger"]]');
SELECT count(*) FROM quantum_flow.poll_tasks('claude_etl');
SELECT quantum_flow.complete_task(:'r_etl', 'validate_rows', 0, '{"id": 1, "name": "ADA"}');
SELECT quantum_flow.cancel_run(:'r_etl', 'graph test');
-- LLM triage: six tickets, four classified, the fifth fails every attempt: the run fails.
SELECT quantum_flow.start_flow('support_ticket_triage', '{"source": "graph test"}', :'r_triage');
SELECT count(*) FROM quantum_flow.poll_tasks('support_ticket_triage');
SELECT quantum_flow.complete_task(:'r_triage', 'fetch_tickets', 0,
                                  (SELECT jsonb_agg(jsonb_build_object('id', 'T-' || i) ORDER BY i)
                                   FROM generate_series(1, 6) AS i));
SELECT count(*) FROM quantum_flow.poll_tasks('support_ticket_triage', batch_size => 100);
SELECT quantum_flow.complete_task(:'r_triage', 'classify_ticket', i, '{"category": "billing"}')
FROM generate_series(0, 3) AS i;
SELECT set_config('qf_graphs.r_triage', :'r_triage', false);
DO $$
DECLARE
    verdict text;
    attempts int := 0;
BEGIN
    LOOP
        verdict := quantum_flow.fail_task(current_setting('qf_graphs.r_triage')::uuid,
                                          'classify_ticket', 4, 'rate limited');
        attempts := attempts + 1;
        EXIT WHEN verdict <> 'queued';
        IF attempts >= 10 THEN
            RAISE EXCEPTION 'classify_ticket task 4 still queued after % failed attempts', attempts;
        END IF;
        -- the retry, after its backoff
        PERFORM * FROM quantum_flow.poll_tasks('support_ticket_triage', max_wait_ms => 20000);
    END LOOP;
    IF verdict <> 'failed' THEN
        RAISE EXCEPTION 'fail_task answered % after % attempts, expected failed', verdict, attempts;
    END IF;
END $$;
-- LLM triage again, just started: classify_ticket's task count is not known yet.
SELECT quantum_flow.start_flow('support_ticket_triage', '{"source": "graph test"}', :'r_new');
SQL

# The statuses the runs' steps have, as get_run reports them.
statuses="$(psql_at <<SQL
SELECT string_agg(DISTINCT s ->> 'status', ' ' ORDER BY s ->> 'status')
FROM unnest(ARRAY['$r_qs', '$r_mw', '$r_etl', '$r_triage', '$r_new']::uuid[]) AS r(id),
     jsonb_array_elements(quantum_flow.get_run(r.id) -> 'steps') AS s;
SQL
)"
for s in completed started created failed cancelled; do
    [[ " $statuses " == *" $s "* ]] || die "no step of the runs is $s (statuses: $statuses)"
done

# 4. The graphs: name, workflow, run (- for none). Each gives NAME.mmd and NAME.dot, and
# NAME.json: the steps the rendered pictures must show.
graphs=(
    "ai_data_pipeline ai_data_pipeline -"
    "ai_data_pipeline.run ai_data_pipeline $r_qs"
    "my_workflow my_workflow -"
    "my_workflow.run my_workflow $r_mw"
    "claude_etl claude_etl -"
    "claude_etl.run_cancelled claude_etl $r_etl"
    "support_ticket_triage support_ticket_triage -"
    "support_ticket_triage.run_failed support_ticket_triage $r_triage"
    "support_ticket_triage.run_new support_ticket_triage $r_new"
)
for g in "${graphs[@]}"; do
    read -r name slug run <<<"$g"
    if [ "$run" = - ]; then run_sql=NULL; else run_sql="'$run'::uuid"; fi
    for format in mermaid dot; do
        ext="$format"
        [ "$format" = mermaid ] && ext=mmd
        # $(...) drops the newline psql adds after the value (and the text's own last one)
        text="$(psql_at -c "SELECT quantum_flow.flow_graph('$slug', '$format', run_id => $run_sql)")" ||
            die "flow_graph('$slug', '$format', run_id => $run_sql) failed (above)"
        printf '%s\n' "$text" >"$out/$name.$ext"
    done
    # The steps as export_flow gives them, with their state in the run as get_run gives it.
    psql_at >"$work/$name.json" <<SQL || die "cannot read the steps of $slug"
SELECT jsonb_build_object('workflow', '$slug', 'steps', jsonb_agg(
           jsonb_build_object('slug', e ->> 'slug', 'type', e ->> 'type', 'depends_on', e -> 'depends_on',
                              'status', r ->> 'status',
                              'progress', (r ->> 'status') || ' ' || (r ->> 'tasks_completed') || '/'
                                          || coalesce(r ->> 'tasks_total', '?'))
           ORDER BY n))
FROM jsonb_array_elements(quantum_flow.export_flow('$slug') -> 'steps') WITH ORDINALITY AS x(e, n)
LEFT JOIN jsonb_array_elements(CASE WHEN $run_sql IS NULL THEN '[]'::jsonb
                                    ELSE quantum_flow.get_run($run_sql) -> 'steps' END) AS r
       ON r ->> 'step_slug' = e ->> 'slug';
SQL
done

# 5. The README's Quick Start picture is flow_graph('ai_data_pipeline'). Failures from here
# on are collected, so that one run reports every graph that is wrong.
failures=()
awk '
    index($0, "`flow_graph('\''ai_data_pipeline'\'')`, the Quick Start'\''s workflow, renders like this") { found = 1; next }
    found == 1 && /^```mermaid[[:space:]]*$/ { found = 2; next }
    found == 2 && /^```/ { exit }
    found == 2 { print }
' "$readme" >"$work/readme.mmd"
[ -s "$work/readme.mmd" ] ||
    die "README.md has no \`\`\`mermaid block after \"\`flow_graph('ai_data_pipeline')\`, the Quick Start's workflow, renders like this\""
if ! diff -u --label "README.md (the Quick Start's mermaid block)" --label "flow_graph('ai_data_pipeline')" \
    "$work/readme.mmd" "$out/ai_data_pipeline.mmd"; then
    echo "graphs: README.md's rendered Quick Start is not flow_graph('ai_data_pipeline') (diff above: - README, + flow_graph)" >&2
    failures+=("README.md's Quick Start block")
else
    say "README.md's Quick Start block is flow_graph('ai_data_pipeline')"
fi

# 6. Rendering. DOT: one dot run per graph (milliseconds each); it must exit 0 and print nothing.
for g in "${graphs[@]}"; do
    read -r name _ <<<"$g"
    if ! timeout 30 dot -Tsvg "$out/$name.dot" -o "$out/$name.dot.svg" 2>"$work/$name.dot.err" ||
        [ -s "$work/$name.dot.err" ]; then
        failures+=("$name.dot")
        {
            echo "---- dot -Tsvg $name.dot failed (exit status or output). The text:"
            cat "$out/$name.dot"
            echo "---- dot said:"
            cat "$work/$name.dot.err"
        } >&2
    fi
done

# Mermaid: every graph in one mmdc run, from a Markdown file with one ```mermaid block per
# graph; mmdc writes all-1.svg, all-2.svg, ... in block order.
for g in "${graphs[@]}"; do
    read -r name _ <<<"$g"
    echo '```mermaid'
    cat "$out/$name.mmd"
    echo '```'
    echo
done >"$work/all.md"
mmdc_=(timeout "$mmdc_timeout" "$mmdc" --quiet --puppeteerConfigFile "$here/puppeteer-config.json")
mkdir "$work/mmdc"
t0="$(date +%s.%N)"
if "${mmdc_[@]}" --input "$work/all.md" --output "$work/mmdc/all.md" --outputFormat svg \
    >"$work/mmdc.log" 2>&1; then
    batch_ok=1
else
    batch_ok=0
fi
mmdc_took="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
if [ "$batch_ok" = 1 ]; then
    say "mmdc rendered the ${#graphs[@]} Mermaid graphs to SVG in one run: $mmdc_took s"
fi
i=0
for g in "${graphs[@]}"; do
    read -r name _ <<<"$g"
    i=$((i + 1))
    if [ -f "$work/mmdc/all-$i.svg" ]; then
        mv "$work/mmdc/all-$i.svg" "$out/$name.mermaid.svg"
    fi
done
if [ "$batch_ok" = 0 ]; then
    echo "graphs: the mmdc run of the ${#graphs[@]} Mermaid graphs failed after $mmdc_took s;" \
        "rendering each graph it did not render on its own, to name the ones that do not parse" >&2
    failed_before=${#failures[@]}
    for g in "${graphs[@]}"; do
        read -r name _ <<<"$g"
        [ -f "$out/$name.mermaid.svg" ] && continue
        if ! "${mmdc_[@]}" --input "$out/$name.mmd" --output "$out/$name.mermaid.svg" \
            >"$work/$name.mmdc.err" 2>&1; then
            failures+=("$name.mmd")
            {
                echo "---- mmdc $name.mmd failed. The text:"
                cat "$out/$name.mmd"
                echo "---- mmdc said:"
                cat "$work/$name.mmdc.err"
            } >&2
        fi
    done
    if [ ${#failures[@]} -eq "$failed_before" ]; then
        # Every graph renders on its own: show what the batched run said.
        sed 's/^/    /' "$work/mmdc.log" >&2
        failures+=("the mmdc run of all graphs (each renders on its own)")
    fi
fi

# A PNG of the Quick Start with its run, for people to look at.
if ! "${mmdc_[@]}" --input "$out/ai_data_pipeline.run.mmd" --output "$out/ai_data_pipeline.run.png" \
    >"$work/png.log" 2>&1 || [ ! -s "$out/ai_data_pipeline.run.png" ]; then
    failures+=("ai_data_pipeline.run.png")
    sed 's/^/    /' "$work/png.log" >&2
fi

# 7. What the SVGs show. Nodes are found by their label (its first line is the step's slug)
# and edges by the nodes they join, so nothing here depends on how graph.rs names its nodes.
check_args=()
for g in "${graphs[@]}"; do
    read -r name _ <<<"$g"
    check_args+=("$name" "$work/$name.json")
done
python3 - "$out" "${check_args[@]}" <<'PY' || failures+=("SVG checks")
import json
import re
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
out, args = sys.argv[1], sys.argv[2:]
bad = 0


def fail(svg, why):
    global bad
    bad += 1
    print(f"---- {svg}: {why}", file=sys.stderr)


def classes(el):
    return el.get("class", "").split()


def lines(el):
    return [t.strip() for t in el.itertext() if t.strip()]


def fill_of(node):
    """The fill of a node's outline: the first shape with a fill attribute or style."""
    for el in node.iter():
        if el.tag in (SVG + "rect", SVG + "path", SVG + "polygon", SVG + "ellipse"):
            m = re.search(r"fill:\s*(#[0-9a-fA-F]+)", el.get("style", ""))
            if m:
                return m.group(1).lower()
            if el.get("fill", "none") != "none":
                return el.get("fill").lower()
    return None


def mermaid_parts(root, src):
    """Nodes {id: (element, lines)}, edges [(from id, to id)], fill each node's text asks for."""
    nodes = {}
    for g in root.iter(SVG + "g"):
        m = re.search(r"-flowchart-(.+)-\d+$", g.get("id", ""))
        if "node" in classes(g) and m:
            nodes[m.group(1)] = (g, lines(g))
    edges = []
    for p in root.iter(SVG + "path"):
        if "flowchart-link" in classes(p):
            m = re.fullmatch(r"L_(\w+?)_(\w+)_\d+", p.get("data-id", ""))
            edges.append((m.group(1), m.group(2)) if m else (p.get("data-id"), None))
    class_fill = dict(re.findall(r"^\s*classDef (\w+) fill:(#[0-9a-fA-F]+)", src, re.M))
    wants = {}
    for members, cls in re.findall(r"^\s*class ([\w,]+) (\w+)\s*$", src, re.M):
        for n in members.split(","):
            wants[n] = (cls, class_fill.get(cls))
    return nodes, edges, wants


def dot_parts(root, src):
    nodes = {}
    for g in root.iter(SVG + "g"):
        if "node" in classes(g):
            nodes[g.findtext(SVG + "title")] = (g, [t for t in lines(g)][1:])
    edges = []
    for g in root.iter(SVG + "g"):
        if "edge" in classes(g):
            a, _, b = (g.findtext(SVG + "title") or "").partition("->")
            edges.append((a, b))
    wants = {}
    for n, attrs in re.findall(r"^\s*(\w+) \[(.*)\];\s*$", src, re.M):
        m = re.search(r'\bfillcolor="(#[0-9a-fA-F]+)"', attrs)
        if m:
            wants[n] = (None, m.group(1))
    return nodes, edges, wants


for name, want_file in zip(args[0::2], args[1::2]):
    want = json.load(open(want_file))
    steps = want["steps"]
    for kind, source in (("mermaid", f"{name}.mmd"), ("dot", f"{name}.dot")):
        svg = f"{name}.{kind}.svg"
        try:
            raw = open(f"{out}/{svg}", encoding="utf-8").read()
            root = ET.fromstring(raw)
        except FileNotFoundError:
            fail(svg, "was not written")
            continue
        except ET.ParseError as e:
            fail(svg, f"is not well-formed XML: {e}")
            continue
        if root.tag != SVG + "svg":
            fail(svg, f"the root element is {root.tag}, not svg")
            continue
        all_lines = lines(root)
        if any("Syntax error" in t for t in all_lines):
            fail(svg, "is Mermaid's syntax error picture")
        if want["workflow"] not in all_lines:
            fail(svg, f"does not show the title {want['workflow']!r}")
        src = open(f"{out}/{source}", encoding="utf-8").read()
        nodes, edges, wants = (mermaid_parts if kind == "mermaid" else dot_parts)(root, src)
        if len(nodes) != len(steps):
            fail(svg, f"has {len(nodes)} nodes, the workflow has {len(steps)} steps")
        by_slug = {}
        for node_id, (g, label) in nodes.items():
            if label:
                by_slug.setdefault(label[0], []).append(node_id)
        slug_of = {}
        for step in steps:
            found = by_slug.get(step["slug"], [])
            if len(found) != 1:
                fail(svg, f"has {len(found)} nodes labelled {step['slug']!r}, not 1")
                continue
            node_id = found[0]
            slug_of[node_id] = step["slug"]
            g, label = nodes[node_id]
            if step["type"] != "single" and not any(step["type"] in t for t in label[1:]):
                fail(svg, f"node {step['slug']!r} does not say it is a {step['type']} step: {label}")
            if step["progress"] is not None and step["progress"] not in label:
                fail(svg, f"node {step['slug']!r} does not show {step['progress']!r}: {label}")
            if kind == "mermaid":
                fo = g.find(f".//{SVG}foreignObject")
                if fo is None or float(fo.get("width", "0")) <= 0:
                    fail(svg, f"node {step['slug']!r} has an empty label box (no text laid out)")
            cls, fill = wants.get(node_id, (None, None))
            if step["status"] is not None:
                if kind == "mermaid" and cls != step["status"]:
                    fail(svg, f"node {step['slug']!r} has class {cls!r} in the text, its status is {step['status']!r}")
                if kind == "mermaid" and step["status"] not in classes(g):
                    fail(svg, f"node {step['slug']!r} is not drawn with class {step['status']!r}")
                if fill is None:
                    fail(svg, f"node {step['slug']!r} has no colour in the text")
                elif fill_of(g) != fill.lower():
                    fail(svg, f"node {step['slug']!r} is filled {fill_of(g)}, its text asks for {fill}")
        drawn = sorted((slug_of.get(a, a), slug_of.get(b, b)) for a, b in edges)
        deps = sorted((d, s["slug"]) for s in steps for d in s["depends_on"])
        if drawn != deps:
            fail(svg, f"has the edges {drawn}, the workflow's dependencies are {deps}")
sys.exit(1 if bad else 0)
PY

"${psql_[@]}" "${admin_conn[@]}" -c "SET client_min_messages TO warning" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true

if [ ${#failures[@]} -gt 0 ]; then
    die "FAILED: ${failures[*]} (details above; texts and SVGs in ${out#"$repo"/}/) after $(elapsed) s"
fi
svgs="$(find "$out" -name '*.svg' | wc -l)"
say "ok, ${#graphs[@]} graphs of 4 workflows (statuses: $statuses) render as Mermaid and DOT: $svgs SVGs and a PNG in ${out#"$repo"/}/, $(elapsed) s"
