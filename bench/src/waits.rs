//! Optional (`--waits`): what the bench's active backends were doing, sampled from
//! pg_stat_activity every few milliseconds during a phase. "CPU" is an active backend with no
//! wait event; "Extension:Extension" is poll_tasks sleeping on its latch; Lock:* are row or
//! transaction lock waits; LWLock:WAL* / IO:WAL* are commits waiting for the WAL flush.

use crate::workers::connect;
use crate::Result;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Samples>>,
}

pub struct Samples {
    pub rounds: u64,
    /// backend count per "wait_event_type:wait_event" (or "CPU"), summed over rounds
    pub counts: BTreeMap<String, u64>,
}

impl Sampler {
    pub async fn start(url: &str) -> Result<Sampler> {
        let client = connect(url, "waits").await?;
        let sample = client
            .prepare(
                "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) \
                 FROM pg_stat_activity \
                 WHERE datname = current_database() AND state = 'active' \
                   AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
                   AND application_name LIKE 'qf_bench_%' \
                 GROUP BY 1",
            )
            .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = tokio::spawn(async move {
            let mut s = Samples {
                rounds: 0,
                counts: BTreeMap::new(),
            };
            while !stop2.load(Ordering::SeqCst) {
                for row in client.query(&sample, &[]).await? {
                    *s.counts.entry(row.get(0)).or_default() += row.get::<_, i64>(1) as u64;
                }
                s.rounds += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(s)
        });
        Ok(Sampler { stop, handle })
    }

    pub async fn finish(self) -> Result<Samples> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await?
    }
}

impl Samples {
    /// "CPU 61%, Lock:transactionid 20%, ..." as shares of all active-backend samples.
    pub fn summary(&self) -> String {
        let total: u64 = self.counts.values().sum();
        if total == 0 {
            return "no active backends sampled".to_string();
        }
        let mut v: Vec<(&String, &u64)> = self.counts.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shares: Vec<String> = v
            .iter()
            .map(|(k, n)| format!("{k} {:.0}%", **n as f64 * 100.0 / total as f64))
            .collect();
        format!(
            "{} (avg {:.1} active backends over {} samples)",
            shares.join(", "),
            total as f64 / self.rounds.max(1) as f64,
            self.rounds
        )
    }
}
