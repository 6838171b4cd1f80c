//! The context the figures were measured in: the machine the bench ran on (the server is
//! assumed to run on the same machine: `make bench` starts it there) and the server's
//! durability settings, which decide what a commit costs.

use crate::Result;
use tokio_postgres::Client;

pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub ram_gib: f64,
}

pub struct Server {
    pub version: String,
    pub settings: Vec<(String, String)>,
}

pub fn machine() -> Machine {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Machine {
        nproc,
        cpu_model,
        ram_gib: ram_kib / (1024.0 * 1024.0),
    }
}

/// Settings that change what the figures mean: commit durability, memory, and whether the
/// bench's statements run with extra instrumentation.
const SETTINGS: &[&str] = &[
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
    "max_connections",
];

pub async fn server(client: &Client) -> Result<Server> {
    let version: String = client
        .query_one("SELECT split_part(version(), ' on ', 1)", &[])
        .await?
        .get(0);
    let rows = client
        .query(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY($1) \
             ORDER BY array_position($1, name)",
            &[&SETTINGS],
        )
        .await?;
    let mut settings: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // pg_settings shows shared_buffers in 8kB units; SHOW gives the readable form.
    for (name, value) in settings.iter_mut() {
        if name == "shared_buffers" {
            *value = client
                .query_one("SHOW shared_buffers", &[])
                .await?
                .get::<_, String>(0);
        }
    }
    Ok(Server { version, settings })
}
