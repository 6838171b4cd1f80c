"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright, against
the quantum_flow_dashboard binary connected as a role granted only quantum_flow_client.

The tests run in file order and share one database: the workflows and runs made by the
first ones are what the list pages show later (each states the exact counts it expects).
The worker's side (poll_tasks, complete_task, fail_task) is plain SQL from the test, as
superuser; the dashboard only reads and presses its buttons. A page that is checked to
update "live" is never reloaded: a value set in its window before the change must still be
there after it.
"""

import http.client
import json
import os
import signal
import subprocess
import time
import uuid
from urllib.parse import urlsplit

from conftest import start_dashboard, stop_dashboard
from playwright.sync_api import expect

ETL = {
    "workflow_slug": "dash_etl",
    "base_delay": 1,
    "steps": [
        {"slug": "fetch"},
        {"slug": "rows", "depends_on": ["fetch"], "type": "map"},
        {"slug": "load", "depends_on": ["rows"]},
    ],
}
FRAGILE = {"workflow_slug": "dash_fragile", "max_attempts": 1, "steps": [{"slug": "call"}]}

# Run ids made by earlier tests, for the list pages' checks.
made = {}


def define(admin, doc):
    admin.execute("SELECT quantum_flow.define_flow(%s)", (json.dumps(doc),))


def start(admin, slug, flow_input):
    return admin.execute(
        "SELECT quantum_flow.start_flow(%s, %s)", (slug, json.dumps(flow_input))
    ).fetchone()[0]


def poll(admin, slug, want, wait_ms=0, deadline_s=10.0):
    """Claims until `want` tasks were returned (retries may become visible only later)."""
    got = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        rows = admin.execute(
            "SELECT run_id, step_slug, task_index, attempt, input"
            " FROM quantum_flow.poll_tasks(%s, %s, %s, 'dashboard-test-worker')",
            (slug, want - len(got), wait_ms or 500),
        ).fetchall()
        got.extend(rows)
    assert len(got) == want, f"claimed {len(got)} of {want} tasks of {slug}"
    return sorted(got, key=lambda t: (t[1], t[2]))


def complete(admin, task, output):
    run_id, step, index, attempt, _ = task
    done = admin.execute(
        "SELECT quantum_flow.complete_task(%s, %s, %s, %s, %s)",
        (run_id, step, index, json.dumps(output), attempt),
    ).fetchone()[0]
    assert done is True


def fail(admin, task, message):
    run_id, step, index, attempt, _ = task
    return admin.execute(
        "SELECT quantum_flow.fail_task(%s, %s, %s, %s, %s)",
        (run_id, step, index, message, attempt),
    ).fetchone()[0]


def run_status(admin, run_id):
    return admin.execute(
        "SELECT status::text, error_message FROM quantum_flow.run_list WHERE run_id = %s",
        (run_id,),
    ).fetchone()


def open_page(page, url):
    """Opens a page and waits until its event stream is connected: changes from then on
    reach it (app.js also refetches once on connecting, for what changed before)."""
    response = page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-sse", "open")
    return response


def mark(page):
    """Sets a value only this page load has: a reload would lose it."""
    token = str(uuid.uuid4())
    page.evaluate("t => { window.__qfMark = t; }", token)
    return token


def assert_not_reloaded(page, token):
    assert page.evaluate("() => window.__qfMark") == token


def step_row(page, slug):
    return page.locator(f'#steps tr[data-step="{slug}"]')


def test_dashboard_uses_a_client_role_only(admin, dashboard):
    # the LISTEN connection opens in the background, right after the dashboard starts
    end = time.monotonic() + 10
    while True:
        rows = admin.execute(
            "SELECT a.application_name, a.usename::text, r.rolsuper"
            " FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid"
            " WHERE a.datname = 'qf_dashboard' AND a.application_name LIKE 'quantum_flow%%'"
            " ORDER BY 1"
        ).fetchall()
        if len(rows) >= 2 or time.monotonic() > end:
            break
        time.sleep(0.1)
    names = sorted({r[0] for r in rows})
    assert names == ["quantum_flow events", "quantum_flow_dashboard"], rows
    # the refreshing one has not started yet: one pool connection and one LISTEN connection
    assert len(rows) == 2, rows
    assert {(r[1], r[2]) for r in rows} == {("qf_dashboard_viewer", False)}
    member = admin.execute(
        "SELECT pg_has_role('qf_dashboard_viewer', 'quantum_flow_client', 'MEMBER'),"
        " pg_has_role('qf_dashboard_viewer', 'quantum_flow_worker', 'MEMBER'),"
        " pg_has_role('qf_dashboard_viewer', 'quantum_flow_admin', 'MEMBER')"
    ).fetchone()
    assert member == (True, False, False)


def test_run_page_follows_a_run_live(admin, dashboard_refreshing, page, shots):
    dashboard = dashboard_refreshing
    define(admin, ETL)
    run_id = start(admin, "dash_etl", {"source": "s3://bucket/people.csv"})
    made["completed"] = run_id
    open_page(page, f"{dashboard}/runs/{run_id}")
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "started")
    expect(step_row(page, "fetch")).to_have_attribute("data-status", "started")
    expect(step_row(page, "rows")).to_have_attribute("data-status", "created")
    expect(step_row(page, "load")).to_have_attribute("data-status", "created")
    graph = page.locator("figure.graph svg")
    expect(graph).to_have_count(1)
    expect(graph).to_contain_text("fetchstarted 0/1")
    expect(graph.locator("g.node")).to_have_count(3)
    expect(page.locator('[data-action="pause"]')).to_be_visible()
    expect(page.locator('[data-action="cancel"]')).to_be_visible()
    expect(page.locator('[data-action="resume"]')).to_have_count(0)
    page.screenshot(path=shots / "run-started.png", full_page=True)
    token = mark(page)

    # fetch completes: its output is the array rows maps over
    (fetch,) = poll(admin, "dash_etl", 1)
    assert fetch[1] == "fetch"
    complete(admin, fetch, [{"name": "ada"}, {"name": "grace"}, {"name": "edsger"}])
    expect(step_row(page, "fetch")).to_have_attribute("data-status", "completed")
    expect(step_row(page, "rows")).to_have_attribute("data-status", "started")
    expect(step_row(page, "rows").locator(".progress .count")).to_have_text("0/3")
    expect(page.locator('details[data-tasks-of="rows"] tr[data-task]')).to_have_count(3)
    expect(graph).to_contain_text("fetchcompleted 1/1")
    assert_not_reloaded(page, token)

    # two rows complete, the third fails once and waits for its retry
    tasks = poll(admin, "dash_etl", 3)
    assert [t[2] for t in tasks] == [0, 1, 2]
    complete(admin, tasks[0], {"ok": True})
    complete(admin, tasks[1], {"ok": True})
    assert fail(admin, tasks[2], "HTTP 429 from the CRM") == "queued"
    expect(step_row(page, "rows").locator(".progress .count")).to_have_text("2/3")
    retrying = page.locator('details[data-tasks-of="rows"] tr[data-task="2"]')
    expect(retrying).to_have_attribute("data-status", "queued")
    expect(retrying.locator("td.error")).to_have_text("HTTP 429 from the CRM")
    expect(retrying.locator("td").nth(2)).to_have_text("1")  # attempts
    expect(step_row(page, "rows").locator("td.error")).to_have_text("HTTP 429 from the CRM")
    expect(graph).to_contain_text("rowsmapstarted 2/3")
    assert_not_reloaded(page, token)
    page.screenshot(path=shots / "run-retrying.png", full_page=True)

    # the buttons: pause, then resume
    page.locator('[data-action="pause"]').click()
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "paused")
    expect(page.locator('[data-notice="pause"]')).to_contain_text("Paused")
    assert run_status(admin, run_id) == ("paused", None)
    assert poll_nothing(admin)
    page.locator('[data-action="resume"]').click()
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "started")
    expect(page.locator('[data-notice="resume"]')).to_have_text("Resumed.")
    assert run_status(admin, run_id) == ("started", None)
    token = mark(page)

    # the retry succeeds, then load: the run completes
    (retry,) = poll(admin, "dash_etl", 1, wait_ms=3000)
    assert (retry[1], retry[2], retry[3]) == ("rows", 2, 2)
    complete(admin, retry, {"ok": True})
    (load,) = poll(admin, "dash_etl", 1)
    assert load[1] == "load"
    complete(admin, load, {"loaded": 3})
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "completed")
    for slug, count in (("fetch", "1/1"), ("rows", "3/3"), ("load", "1/1")):
        expect(step_row(page, slug)).to_have_attribute("data-status", "completed")
        expect(step_row(page, slug).locator(".progress .count")).to_have_text(count)
    expect(step_row(page, "rows").locator("td.error")).to_have_text("")
    expect(page.locator(".io")).to_contain_text('"loaded": 3')
    expect(page.locator(".actions")).to_have_count(0)
    expect(graph).to_contain_text("loadcompleted 1/1")
    assert_not_reloaded(page, token)
    page.screenshot(path=shots / "run-completed.png", full_page=True)
    assert run_status(admin, run_id) == ("completed", None)


def poll_nothing(admin):
    """A paused run hands out nothing."""
    rows = admin.execute(
        "SELECT count(*) FROM quantum_flow.poll_tasks('dash_etl', 10, 0, 'dashboard-test-worker')"
    ).fetchone()[0]
    return rows == 0


def test_cancel_and_retry_buttons(admin, dashboard, page):
    run_id = start(admin, "dash_etl", {"source": "s3://bucket/cancel-me.csv"})
    made["cancelled"] = run_id
    open_page(page, f"{dashboard}/runs/{run_id}")
    page.locator('[data-action="cancel"]').click()
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "failed")
    expect(page.locator("p.run-error")).to_have_text("cancelled: from the dashboard")
    assert run_status(admin, run_id) == ("failed", "cancelled: from the dashboard")
    expect(step_row(page, "fetch")).to_have_attribute("data-status", "cancelled")

    page.locator('[data-action="retry"]').click()
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "started")
    expect(page.locator('[data-notice="retry"]')).to_be_visible()
    assert run_status(admin, run_id) == ("started", None)
    expect(step_row(page, "fetch")).to_have_attribute("data-status", "started")

    # a change made elsewhere arrives without a reload
    token = mark(page)
    admin.execute("SELECT quantum_flow.cancel_run(%s, 'from psql')", (run_id,))
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "failed")
    expect(page.locator("p.run-error")).to_have_text("cancelled: from psql")
    assert_not_reloaded(page, token)

    # the button of a run that already ended changes nothing, and says so
    resp = page.request.post(f"{dashboard}/runs/{run_id}/cancel", max_redirects=0)
    assert resp.status == 303
    assert resp.headers["location"] == f"/runs/{run_id}?done=cancel&changed=false"
    assert run_status(admin, run_id) == ("failed", "cancelled: from psql")


def test_failed_run_shows_its_error(admin, dashboard, page, shots):
    define(admin, FRAGILE)
    run_id = start(admin, "dash_fragile", {"ticket": 7})
    made["failed"] = run_id
    open_page(page, f"{dashboard}/runs/{run_id}")
    token = mark(page)
    (task,) = poll(admin, "dash_fragile", 1)
    assert fail(admin, task, "ValueError: ticket 7 has no customer") == "failed"
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "failed")
    expect(step_row(page, "call")).to_have_attribute("data-status", "failed")
    expect(step_row(page, "call").locator("td.error")).to_have_text(
        "step call, task 0, attempt 1: ValueError: ticket 7 has no customer"
    )
    expect(page.locator("p.run-error")).to_contain_text("ValueError: ticket 7 has no customer")
    task_row = page.locator('details[data-tasks-of="call"] tr[data-task="0"]')
    expect(task_row).to_have_attribute("data-status", "failed")
    expect(task_row.locator("td.mono")).to_have_text("dashboard-test-worker")
    expect(page.locator('[data-action="retry"]')).to_be_visible()
    assert_not_reloaded(page, token)
    page.screenshot(path=shots / "run-failed.png", full_page=True)


def test_the_live_indicator_follows_the_listen_connection(admin, dashboard, page):
    """"live" is the dashboard's own LISTEN connection: when it drops the page says so, and
    says live again once the server has reconnected, without a reload."""
    open_page(page, dashboard + "/")
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    page.evaluate(
        """() => {
            window.__qfLive = [];
            new MutationObserver(() => window.__qfLive.push(document.body.dataset.live))
                .observe(document.body, {attributes: true, attributeFilter: ["data-live"]});
        }"""
    )
    token = mark(page)
    # every dashboard of this session has one such connection (this page's among them)
    count, all_ended = admin.execute(
        "SELECT count(*), bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = 'qf_dashboard' AND application_name = 'quantum_flow events'"
    ).fetchone()
    assert count >= 1 and all_ended is True, (count, all_ended)
    page.wait_for_function("() => window.__qfLive.join(',').includes('off,on')", timeout=15000)
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    assert_not_reloaded(page, token)


def stat(page, slug, col):
    return page.locator(f'#workflows tr[data-workflow="{slug}"] [data-col="{col}"]')


def test_workflows_page_counts_and_updates(admin, dashboard, page, shots):
    open_page(page, dashboard + "/")
    expect(page.locator("#workflows tr[data-workflow]")).to_have_count(2)
    expect(stat(page, "dash_etl", "runs_completed")).to_have_text("1")
    expect(stat(page, "dash_etl", "runs_failed")).to_have_text("1")
    expect(stat(page, "dash_etl", "runs_started")).to_have_text("0")
    expect(stat(page, "dash_fragile", "runs_failed")).to_have_text("1")
    expect(stat(page, "dash_fragile", "tasks_failed")).to_have_text("1")
    token = mark(page)
    run_id = start(admin, "dash_etl", {"source": "s3://bucket/more.csv"})
    made["running"] = run_id
    expect(stat(page, "dash_etl", "runs_started")).to_have_text("1")
    expect(stat(page, "dash_etl", "tasks_queued")).to_have_text("1")
    assert_not_reloaded(page, token)
    page.screenshot(path=shots / "workflows.png", full_page=True)


def run_ids(page):
    return page.locator("#runs tr[data-run-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"
    )


def test_runs_page_filters_by_status(admin, dashboard, page, shots):
    page.goto(dashboard + "/runs")
    expect(page.locator("#runs tr[data-run-id]")).to_have_count(4)
    # newest first
    assert run_ids(page)[0] == str(made["running"])
    page.locator('nav.filter a[data-filter="failed"]').click()
    expect(page).to_have_url(dashboard + "/runs?status=failed")
    expect(page.locator("#runs tr[data-run-id]")).to_have_count(2)
    assert sorted(run_ids(page)) == sorted([str(made["cancelled"]), str(made["failed"])])
    expect(page.locator('nav.filter a[data-filter="failed"] .n')).to_have_text("2")
    expect(page.locator('nav.filter a[data-filter="completed"] .n')).to_have_text("1")
    expect(page.locator('nav.filter a[data-filter="started"] .n')).to_have_text("1")
    page.goto(dashboard + "/runs?status=completed&workflow=dash_etl")
    assert run_ids(page) == [str(made["completed"])]
    open_page(page, dashboard + "/runs")
    page.screenshot(path=shots / "runs.png", full_page=True)

    # a run that starts shows up without a reload
    token = mark(page)
    newest = start(admin, "dash_fragile", {"ticket": 8})
    expect(page.locator("#runs tr[data-run-id]")).to_have_count(5)
    assert run_ids(page)[0] == str(newest)
    assert_not_reloaded(page, token)
    admin.execute("SELECT quantum_flow.cancel_run(%s)", (newest,))

    resp = page.goto(dashboard + "/runs?status=sleeping")
    assert resp.status == 400
    expect(page.locator("p.error")).to_have_text(
        'unknown run status "sleeping": one of started, paused, completed, failed'
    )


def test_workflow_page_shows_its_graph(dashboard, page, shots):
    page.goto(dashboard + "/workflows/dash_etl")
    graph = page.locator("figure.graph svg")
    expect(graph.locator("g.node")).to_have_count(3)
    expect(graph).to_contain_text("rowsmap")
    expect(page.locator("#runs tr[data-run-id]")).to_have_count(3)
    page.screenshot(path=shots / "workflow.png", full_page=True)
    assert page.request.get(dashboard + "/workflows/no_such_flow").status == 404


def test_metrics_and_refusals(admin, dashboard, page):
    resp = page.request.get(dashboard + "/metrics")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = resp.text()
    assert 'quantum_flow_runs{workflow="dash_etl",status="completed"} 1\n' in body
    assert 'quantum_flow_runs{workflow="dash_fragile",status="failed"} 2\n' in body

    assert page.request.get(f"{dashboard}/runs/{uuid.uuid4()}").status == 404
    assert page.request.get(f"{dashboard}/runs/not-a-uuid").status == 404
    assert page.request.post(f"{dashboard}/runs/{made['running']}/explode").status == 404

    # a form posted from another site is refused, and changes nothing
    resp = page.request.post(
        f"{dashboard}/runs/{made['running']}/cancel",
        headers={"Origin": "http://attacker.example"},
        max_redirects=0,
    )
    assert resp.status == 403
    assert run_status(admin, made["running"]) == ("started", None)
    assert page.request.get(dashboard + "/healthz").text() == "ok\n"


def test_a_role_without_quantum_flow_client_is_refused(admin, urls):
    """The dashboard needs the client role; without it, it says so at start."""
    admin.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'qf_dashboard_nobody')"
        " THEN CREATE ROLE qf_dashboard_nobody LOGIN; END IF; END $$"
    )
    url = urls["viewer"].replace("qf_dashboard_viewer@", "qf_dashboard_nobody@")
    out = subprocess.run(
        [os.environ["QF_DASHBOARD_BIN"], "--database-url", url, "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "cannot use the database" in out.stderr
    assert "permission denied" in out.stderr


def test_foreign_notifications_do_not_stop_live_updates(admin, dashboard, page):
    """Any role may NOTIFY the channel; a payload that is not an event is skipped."""
    run_id = start(admin, "dash_fragile", {"ticket": 9})
    open_page(page, f"{dashboard}/runs/{run_id}")
    token = mark(page)
    admin.execute("NOTIFY quantum_flow_events, 'not json at all'")
    admin.execute("""NOTIFY quantum_flow_events, '{"run_id": 42}'""")
    admin.execute("SELECT quantum_flow.cancel_run(%s, 'after the noise')", (run_id,))
    expect(page.locator(".run-head")).to_have_attribute("data-run-status", "failed")
    expect(page.locator("p.run-error")).to_have_text("cancelled: after the noise")
    assert_not_reloaded(page, token)


def raw_get(base, path, host):
    """A request with a Host header of our choosing (a browser sets its own)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp, body


def test_foreign_host_names_and_frames_are_refused(dashboard):
    # DNS rebinding: a name the attacker points at this machine
    resp, body = raw_get(dashboard, "/", "evil.example:8080")
    assert resp.status == 403
    assert "start it with --allowed-host evil.example" in body
    resp, _ = raw_get(dashboard, "/", "localhost")
    assert resp.status == 200
    csp = resp.getheader("Content-Security-Policy")
    assert "frame-ancestors 'none'" in csp
    assert csp.startswith("default-src 'self';")
    assert resp.getheader("X-Frame-Options") == "DENY"


def test_allowed_host_names_pass(urls, admin):
    proc, base, reader, log = start_dashboard(urls["viewer"], 0, ["dash.example.com"])
    try:
        resp, _ = raw_get(base, "/", "dash.example.com")
        assert resp.status == 200
        resp, _ = raw_get(base, "/", "other.example.com")
        assert resp.status == 403
    finally:
        stop_dashboard(proc, reader, log)


def test_stops_promptly_with_a_page_watching(urls, browser):
    """SIGTERM ends the event streams: an open page does not hold the server up."""
    proc, base, reader, log = start_dashboard(urls["viewer"], 0)
    context = browser.new_context()
    try:
        page = context.new_page()
        open_page(page, base + "/runs")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        reader.join(timeout=5)
        output = "".join(log)
        # the server stopped because its connections closed, not at its 5 s drain limit
        assert "stopping" in output
        assert "requests still open" not in output
    finally:
        context.close()
        if proc.poll() is None:
            proc.kill()
