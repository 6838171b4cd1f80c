//! The server's `NOTIFY quantum_flow_events` as a stream: every run and step status change,
//! after the commit that made it.

use crate::error::{Error, Result};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

/// One status change: of a run (`step_slug` None) or of one of its steps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunEvent {
    pub run_id: Uuid,
    pub workflow_slug: String,
    pub step_slug: Option<String>,
    /// The new status (`started`, `paused`, `completed`, `failed`, `skipped`).
    pub status: String,
}

/// Opens a connection of its own, `LISTEN`s on `quantum_flow_events`, and yields each event
/// as it arrives, until the connection ends (then the stream ends; a lost connection's
/// error, an [`Error::Db`], is its last item). Events of transactions that rolled back never
/// arrive. Any role may `NOTIFY` the channel: a payload that is not an event is yielded as an
/// [`Error::Decode`] item and the stream goes on.
pub async fn events(conn_str: &str) -> Result<impl Stream<Item = Result<RunEvent>>> {
    // An idle LISTEN connection that died half-open would otherwise go unnoticed for the
    // default two hours of TCP keepalive (see `worker::config`).
    let config = crate::worker::config(conn_str, "quantum_flow events")?;
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            let item = match message {
                Ok(AsyncMessage::Notification(n)) => {
                    serde_json::from_str::<RunEvent>(n.payload()).map_err(Error::from)
                }
                Ok(_) => continue,
                Err(e) => Err(Error::Db(e)),
            };
            // only a connection error ends the stream; a foreign payload is skipped over
            let stop = matches!(item, Err(Error::Db(_)));
            if tx.unbounded_send(item).is_err() || stop {
                break;
            }
        }
    });
    client.batch_execute("LISTEN quantum_flow_events").await?;
    // the client must live as long as the stream: its connection task ends without it
    Ok(rx.map(move |item| {
        let _keep = &client;
        item
    }))
}
