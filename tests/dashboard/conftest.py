"""Fixtures of the dashboard tests: a fresh database, the dashboard binary connected as a role
that is only granted quantum_flow_client, and headless Chromium (Debian's, driven by
Playwright).

Environment (scripts/test-dashboard.sh sets it):
  QF_TEST_DATABASE_URL  postgres://USER@HOST:PORT/postgres, a superuser on the test cluster
  QF_DASHBOARD_BIN      the quantum_flow_dashboard binary
  QF_CHROMIUM           the browser (default /usr/bin/chromium)
  QF_DASHBOARD_OUT      where screenshots go (default .qf/dashboard)
"""

import os
import pathlib
import re
import subprocess
import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from playwright.sync_api import sync_playwright

DB = "qf_dashboard"
VIEWER = "qf_dashboard_viewer"


def _url_for(base, user=None, dbname=None):
    parts = urlsplit(base)
    netloc = parts.netloc
    if user is not None:
        netloc = user + "@" + netloc.split("@", 1)[-1]
    path = "/" + dbname if dbname is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def urls():
    base = os.environ["QF_TEST_DATABASE_URL"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    admin = _url_for(base, dbname=DB)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute("CREATE EXTENSION quantum_flow CASCADE")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (VIEWER,)).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {VIEWER} LOGIN")
        conn.execute(f"GRANT quantum_flow_client TO {VIEWER}")
    return {"admin": admin, "viewer": _url_for(base, user=VIEWER, dbname=DB)}


@pytest.fixture(scope="session")
def admin(urls):
    with psycopg.connect(urls["admin"], autocommit=True) as conn:
        yield conn


def start_dashboard(url, refresh_ms, allowed_hosts=()):
    """Starts the binary on a free port; returns (process, base URL, output reader, output)."""
    proc = subprocess.Popen(
        [
            os.environ["QF_DASHBOARD_BIN"],
            "--database-url",
            url,
            "--listen",
            "127.0.0.1:0",
            "--refresh-ms",
            str(refresh_ms),
        ]
        + [arg for host in allowed_hosts for arg in ("--allowed-host", host)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # logs (stderr, merged here) may come before the one line that gives the address
    seen = []
    match = None
    for line in proc.stdout:
        seen.append(line)
        match = re.search(r"listening on (http://\S+/)", line)
        if match or len(seen) > 50:
            break
    if not match:
        proc.kill()
        raise RuntimeError("the dashboard did not start: " + "".join(seen))
    log = []
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()
    return proc, match.group(1).rstrip("/"), reader, log


def stop_dashboard(proc, reader, log):
    proc.terminate()
    code = proc.wait(timeout=10)
    reader.join(timeout=5)
    output = "".join(log)
    print(output)
    assert code == 0, f"the dashboard exited with {code} on SIGTERM"
    assert "requests still open" not in output, "it stopped at its drain limit, not by itself"


@pytest.fixture(scope="session")
def dashboard(urls):
    """The dashboard's base URL. This one fetches a page again only when an event arrives
    (--refresh-ms 0), so what it shows live came through NOTIFY and server-sent events."""
    proc, base, reader, log = start_dashboard(urls["viewer"], 0)
    yield base
    stop_dashboard(proc, reader, log)


@pytest.fixture(scope="session")
def dashboard_refreshing(urls):
    """A second dashboard that also fetches a watched page every 300 ms: task counts and
    retries change without a status change, which sends no event."""
    proc, base, reader, log = start_dashboard(urls["viewer"], 300)
    yield base
    stop_dashboard(proc, reader, log)


@pytest.fixture(scope="session")
def shots():
    out = pathlib.Path(os.environ.get("QF_DASHBOARD_OUT", ".qf/dashboard"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=os.environ.get("QF_CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
