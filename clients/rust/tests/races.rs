//! Races between a poller and a commit, forced deterministically with a table lock.

mod common;

use common::{client, database};
use quantum_flow_client::*;
use serde_json::json;
use std::time::Duration;
use tokio_postgres::Client;

const DB: &str = "qf_rust_client_races";

async fn backend_pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until backend `pid` is blocked on a heavyweight lock.
async fn wait_until_lock_waiting(observer: &Client, pid: i32) {
    for _ in 0..3000 {
        let waiting: bool = observer
            .query_one(
                "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) \
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} never waited for a lock");
}

/// A `poll_tasks` statement that began before a `start_flow` committed, but whose pgmq read
/// runs after the commit, must not lose the new run's tasks.
///
/// The interleaving (it also happens by chance under load, which is how it was found):
/// 1. A: `BEGIN; start_flow(...)` (not committed yet);
/// 2. C: `LOCK TABLE pgmq.q_qf_<slug> IN ACCESS EXCLUSIVE MODE` queues behind A;
/// 3. B: `poll_tasks(...)` takes its statement snapshot (A not visible), then its pgmq.read
///    queues behind C;
/// 4. A commits, C gets and releases its lock, B's pgmq.read runs with a newer snapshot that
///    sees A's messages, while B's statement still cannot see A's step_tasks rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poll_racing_a_start_flow_commit_loses_no_task() {
    let url = database(DB).await;
    let setup = client(&url).await;
    create_flow(&setup, "race_start", &FlowOptions::new().timeout(300))
        .await
        .unwrap();
    add_step(&setup, "race_start", "m", &StepOptions::new().map())
        .await
        .unwrap();

    let mut starter = client(&url).await;
    let locker = client(&url).await;
    let poller = client(&url).await;
    let (locker_pid, poller_pid) = (backend_pid(&locker).await, backend_pid(&poller).await);

    let tx = starter.transaction().await.unwrap();
    let run_id = start_flow(&tx, "race_start", &json!([1, 2, 3]), None)
        .await
        .unwrap();

    let locking = tokio::spawn(async move {
        locker
            .batch_execute(
                "BEGIN; LOCK TABLE pgmq.q_qf_race_start IN ACCESS EXCLUSIVE MODE; COMMIT",
            )
            .await
            .unwrap();
    });
    wait_until_lock_waiting(&setup, locker_pid).await;
    let polling = tokio::spawn(async move {
        poll_tasks(
            &poller,
            "race_start",
            &PollOptions {
                batch_size: 10,
                ..PollOptions::default()
            },
        )
        .await
        .unwrap()
    });
    wait_until_lock_waiting(&setup, poller_pid).await;

    tx.commit().await.unwrap();
    locking.await.unwrap();
    let raced = polling.await.unwrap();
    let later = poll_tasks(
        &setup,
        "race_start",
        &PollOptions {
            batch_size: 10,
            ..PollOptions::default()
        },
    )
    .await
    .unwrap();

    let mut claimed: Vec<(i32, i32)> = raced
        .iter()
        .chain(later.iter())
        .map(|t| {
            assert_eq!(t.run_id, run_id);
            (t.task_index, t.attempt)
        })
        .collect();
    claimed.sort();
    let archived: i64 = setup
        .query_one("SELECT count(*) FROM pgmq.a_qf_race_start", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (claimed, archived),
        (vec![(0, 1), (1, 1), (2, 1)], 0),
        "every task of the new run is claimed once (by the racing poll or the next one), \
         and no message of the live run is archived"
    );
}
