//! `quantum_flow_dashboard`: a small web dashboard for quantum_flow.
//!
//! It uses only the public SQL API (the `quantum_flow_client` role is enough): the
//! `workflow_stats` and `run_list` views, `get_run`, `flow_graph`, `metrics()`, and
//! `cancel_run` / `pause_run` / `resume_run` / `retry_run` for the run page's buttons. Pages are
//! rendered on the server; a little JavaScript (`static/app.js`) draws the Mermaid graphs and
//! refreshes a page's live part when `NOTIFY quantum_flow_events` reports a change, which the
//! server forwards as server-sent events (`/events`). Mermaid is served from the files
//! `scripts/dashboard-assets.sh` vendored from npm; nothing is fetched at run time.

mod db;
mod live;
mod pages;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use futures::StreamExt;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

/// The default place of the vendored Mermaid bundle: this crate's `assets/node_modules`.
const DEFAULT_ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/node_modules");

/// A web dashboard for quantum_flow: workflows, runs, live run graphs, cancel/pause/resume.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// PostgreSQL connection string, for a role granted quantum_flow_client.
    #[arg(long, env = "QF_DASHBOARD_DATABASE_URL")]
    database_url: String,
    /// Address to listen on. It has no login of its own: keep it on localhost or behind a
    /// proxy that authenticates.
    #[arg(long, env = "QF_DASHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The node_modules directory holding mermaid/dist/mermaid.min.js
    /// (scripts/dashboard-assets.sh fills it). Without it, graphs show as Mermaid text.
    #[arg(long, env = "QF_DASHBOARD_ASSETS", default_value = DEFAULT_ASSETS)]
    assets: PathBuf,
    /// Also fetch a watched page again this often (milliseconds; 0: only when an event
    /// arrives). Task counts and retries change without a status change, which sends no event.
    #[arg(long, env = "QF_DASHBOARD_REFRESH_MS", default_value_t = 2000)]
    refresh_ms: u64,
    /// A host name the dashboard is reached by (the Host header, port aside), besides
    /// `localhost` and IP addresses; repeat it or separate names with commas. Other names are
    /// refused (DNS rebinding), and so are form posts from any other origin.
    #[arg(
        long = "allowed-host",
        env = "QF_DASHBOARD_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
}

/// What every handler shares.
pub struct AppState {
    db: db::Db,
    live: live::Live,
    /// `mermaid.min.js`, read once at start.
    mermaid: Option<Bytes>,
    refresh_ms: u64,
    /// Lower-case host names besides `localhost` and IP addresses.
    allowed_hosts: Vec<String>,
    /// Turns true when the server is asked to stop: the event streams end then.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    fn ctx(&self) -> pages::Ctx {
        pages::Ctx {
            connected: self.live.connected(),
            refresh_ms: self.refresh_ms,
        }
    }
}

type Shared = State<Arc<AppState>>;

/// A request that went wrong, as the page (or status) the browser gets.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// Every database error, as the client crate classifies it (the extension's error code
    /// and SQLSTATE, or a connection error).
    #[error(transparent)]
    Client(#[from] quantum_flow_client::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        use quantum_flow_client::ErrorCode;
        let status = match &self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Client(e) => match (e.code(), e.sqlstate()) {
                (Some(ErrorCode::RunNotFound | ErrorCode::WorkflowNotFound), _) => {
                    StatusCode::NOT_FOUND
                }
                // insufficient_privilege: the dashboard's role lacks quantum_flow_client
                (_, Some("42501")) => StatusCode::FORBIDDEN,
                // no server answer (connection lost), or statement_timeout
                (_, None | Some("57014")) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            AppError::Pool(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::warn!("{self}");
        }
        (status, pages::error_page(status, &self.to_string())).into_response()
    }
}

/// The views' queries run on tokio-postgres directly: their errors are classified as the client
/// crate's calls' are.
impl From<tokio_postgres::Error> for AppError {
    fn from(e: tokio_postgres::Error) -> Self {
        AppError::Client(e.into())
    }
}

type Result<T> = std::result::Result<T, AppError>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "quantum_flow_dashboard=info".into()),
        )
        .with_target(false)
        .init();
    let args = Args::parse();
    match serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quantum_flow_dashboard: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::result::Result<(), String> {
    let db = db::Db::connect(&args.database_url).await?;
    let mermaid_path = args.assets.join("mermaid/dist/mermaid.min.js");
    let mermaid = match std::fs::read(&mermaid_path) {
        Ok(bytes) => Some(Bytes::from(bytes)),
        Err(e) => {
            tracing::warn!(
                "{}: {e}; graphs show as Mermaid text (run scripts/dashboard-assets.sh)",
                mermaid_path.display()
            );
            None
        }
    };
    let live = live::Live::start(args.database_url.clone());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        db,
        live,
        mermaid,
        refresh_ms: args.refresh_ms,
        allowed_hosts: args
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        stopping: stopping.clone(),
    });
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    // The one line on stdout (logs go to stderr): scripts wait for it (make demo, the tests).
    println!("quantum_flow_dashboard: listening on http://{address}/");
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping");
        let _ = stop.send(true);
    });
    let mut drained = stopping.clone();
    let mut stopped = stopping;
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    // Requests in flight get 5 s to finish once the event streams have ended.
    tokio::select! {
        result = server => result.map_err(|e| format!("server: {e}")),
        _ = async {
            let _ = drained.wait_for(|s| *s).await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        } => {
            tracing::warn!("requests still open 5 s after the stop signal: stopping anyway");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(workflows))
        .route("/workflows/{slug}", get(workflow))
        .route("/runs", get(runs))
        .route("/runs/{run_id}", get(run))
        .route("/runs/{run_id}/{action}", post(run_action))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/assets/{file}", get(asset))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Scripts come from this server only (Mermaid's SVGs carry inline styles), forms post to it
/// only, and no other site may frame it (a framed button can be clicked by a page on top).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `?fragment=1` asks for a page's live part only (what app.js swaps in).
#[derive(Debug, Default, Deserialize)]
struct Fragment {
    #[serde(default)]
    fragment: Option<String>,
}

impl Fragment {
    fn wanted(&self) -> bool {
        self.fragment.as_deref().is_some_and(|v| v != "0")
    }
}

async fn workflows(State(app): Shared, Query(f): Query<Fragment>) -> Result<Html<String>> {
    let stats = app.db.workflow_stats(None).await?;
    Ok(pages::workflows(&stats, f.wanted(), app.ctx()))
}

async fn workflow(
    State(app): Shared,
    Path(slug): Path<String>,
    Query(f): Query<Fragment>,
) -> Result<Html<String>> {
    let stats = app.db.workflow_stats(Some(&slug)).await?;
    let Some(stats) = stats.into_iter().next() else {
        return Err(AppError::NotFound(format!("no workflow {slug:?}")));
    };
    let graph = app.db.flow_graph(&slug, None).await?;
    let runs = app.db.runs(None, Some(&slug), 20).await?;
    Ok(pages::workflow(
        &stats,
        &graph,
        &runs,
        f.wanted(),
        app.ctx(),
    ))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    fragment: Option<String>,
}

/// The statuses a run can have, for the filter.
pub const RUN_STATUSES: [&str; 4] = ["started", "paused", "completed", "failed"];

/// How many runs a list shows.
pub const RUNS_SHOWN: i64 = 200;

async fn runs(State(app): Shared, Query(q): Query<RunsQuery>) -> Result<Html<String>> {
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status {
        if !RUN_STATUSES.contains(&s.as_str()) {
            return Err(AppError::BadRequest(format!(
                "unknown run status {s:?}: one of {}",
                RUN_STATUSES.join(", ")
            )));
        }
    }
    let workflow = q.workflow.filter(|s| !s.is_empty());
    let runs = app
        .db
        .runs(status.as_deref(), workflow.as_deref(), RUNS_SHOWN)
        .await?;
    let stats = app.db.workflow_stats(workflow.as_deref()).await?;
    let fragment = Fragment {
        fragment: q.fragment,
    };
    Ok(pages::runs(
        &runs,
        &stats,
        status.as_deref(),
        workflow.as_deref(),
        fragment.wanted(),
        app.ctx(),
    ))
}

fn parse_run_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| AppError::NotFound(format!("{s:?} is not a run id")))
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    #[serde(default)]
    fragment: Option<String>,
    /// What the last button did (set by the redirect after a POST).
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    changed: Option<bool>,
}

async fn run(
    State(app): Shared,
    Path(run_id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<Html<String>> {
    let run_id = parse_run_id(&run_id)?;
    let view = app.db.run_view(run_id).await?;
    let notice = match (q.done.as_deref(), q.changed) {
        (Some(action), Some(changed)) if pages::ACTIONS.contains(&action) => {
            Some((action.to_string(), changed))
        }
        _ => None,
    };
    let fragment = Fragment {
        fragment: q.fragment,
    };
    Ok(pages::run(&view, notice, fragment.wanted(), app.ctx()))
}

/// The buttons' POSTs. A cross-site form post is refused: the Origin a browser sends must be
/// this server's.
async fn run_action(
    State(app): Shared,
    Path((run_id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Redirect> {
    check_same_origin(&app, &headers)?;
    let run_id = parse_run_id(&run_id)?;
    if !pages::ACTIONS.contains(&action.as_str()) {
        return Err(AppError::NotFound(format!("no action {action:?}")));
    }
    let changed = app.db.run_action(run_id, &action).await?;
    tracing::info!(
        "{action} {run_id}: {}",
        if changed { "done" } else { "no change" }
    );
    Ok(Redirect::to(&format!(
        "/runs/{run_id}?done={action}&changed={changed}"
    )))
}

/// A browser's form post names its page's origin: it must be this dashboard as the browser
/// reached it (the Host header), or a host name given with --allowed-host (a proxy in front
/// may rewrite Host).
fn check_same_origin(app: &AppState, headers: &HeaderMap) -> Result<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(()); // not a browser's form post (curl, scripts)
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    let origin_authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    let same = !host.is_empty() && origin_authority.eq_ignore_ascii_case(host);
    let listed = app
        .allowed_hosts
        .iter()
        .any(|h| *h == host_name(origin_authority).to_ascii_lowercase());
    if same || listed {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "a form of {origin} may not act on this dashboard ({host})"
        )))
    }
}

/// `name` of `name:port`, `[v6]` of `[v6]:port`.
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a Host header names this dashboard: an IP address, `localhost`, or an
/// --allowed-host. A name an attacker controls and points at this machine (DNS rebinding) is
/// none of these.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    let ip = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || ip.parse::<std::net::IpAddr>().is_ok() || allowed.contains(&name)
}

async fn check_host(
    State(app): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if host_allowed(&app.allowed_hosts, &host) {
        next.run(request).await
    } else {
        AppError::Forbidden(format!(
            "this dashboard is not served as {host:?}: start it with --allowed-host {}",
            host_name(&host)
        ))
        .into_response()
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    workflow: Option<String>,
}

/// Server-sent events: `change` for each status change (of the run or workflow asked for, or
/// of any), `resync` after the server's own LISTEN connection was re-established (changes may
/// have been missed in between).
async fn events(State(app): Shared, Query(q): Query<EventsQuery>) -> Result<impl IntoResponse> {
    let run_id = match q.run_id.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_run_id(s)?),
        None => None,
    };
    let filter = live::Filter {
        run_id,
        workflow: q.workflow.filter(|s| !s.is_empty()),
    };
    // The stream ends when the server stops, so a watching browser does not hold it up.
    let mut stopping = app.stopping.clone();
    let stream = app.live.subscribe(filter).take_until(async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn metrics(State(app): Shared) -> Result<impl IntoResponse> {
    let text = app.db.metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

async fn healthz(State(app): Shared) -> Result<&'static str> {
    app.db.ping().await?;
    Ok("ok\n")
}

const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

async fn asset(State(app): Shared, Path(file): Path<String>) -> Response {
    let (content_type, body): (&str, Bytes) = match file.as_str() {
        "app.js" => (
            "text/javascript; charset=utf-8",
            Bytes::from_static(APP_JS.as_bytes()),
        ),
        "style.css" => (
            "text/css; charset=utf-8",
            Bytes::from_static(STYLE_CSS.as_bytes()),
        ),
        "mermaid.min.js" => match &app.mermaid {
            Some(bytes) => ("text/javascript; charset=utf-8", bytes.clone()),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ip_addresses_localhost_or_listed() {
        let listed = vec!["dash.example.com".to_string()];
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "10.0.0.5",
            "dash.example.com",
            "Dash.Example.com:443",
        ] {
            assert!(host_allowed(&listed, ok), "{ok}");
        }
        for refused in ["evil.example:8080", "", "dash.example.com.evil.example"] {
            assert!(!host_allowed(&listed, refused), "{refused}");
        }
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("a.b:80"), "a.b");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("a.b"), "a.b");
    }
}
