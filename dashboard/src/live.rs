//! Live updates: one connection of the server LISTENs on `quantum_flow_events` (through the
//! client crate's event stream) and fans each event out to the browsers' server-sent event
//! streams. The connection is re-opened when it drops; the pages are then told to `resync`,
//! since changes may have been missed in between. Each browser stream starts with a `listen`
//! event saying whether that connection is up (`on` / `off`), and gets another whenever it
//! goes down or comes back, so a page's "live" indicator follows it.

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use quantum_flow_client::RunEvent;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

/// How many events a slow browser may fall behind before it is told to `resync`.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone)]
enum Message {
    Change(RunEvent),
    /// The LISTEN connection is up again: what happened meanwhile is unknown.
    Resync,
    /// The LISTEN connection dropped.
    Down,
}

/// Which events a page wants: one run's, one workflow's, or (both `None`) all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub run_id: Option<Uuid>,
    pub workflow: Option<String>,
}

impl Filter {
    fn wants(&self, event: &RunEvent) -> bool {
        self.run_id.is_none_or(|id| id == event.run_id)
            && self
                .workflow
                .as_deref()
                .is_none_or(|w| w == event.workflow_slug)
    }
}

pub struct Live {
    sender: broadcast::Sender<Message>,
    connected: Arc<AtomicBool>,
}

impl Live {
    /// Starts the listening task; it runs as long as the process.
    pub fn start(database_url: String) -> Live {
        let (sender, _) = broadcast::channel(BACKLOG);
        let connected = Arc::new(AtomicBool::new(false));
        tokio::spawn(listen(database_url, sender.clone(), connected.clone()));
        Live { sender, connected }
    }

    /// Whether the LISTEN connection is up (the pages say so).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A browser's event stream: a `listen` event with the LISTEN connection's state first,
    /// then `change` events (the event's JSON) that pass `filter`, `resync` events, and
    /// `listen` events when the connection goes down (`off`) or comes back (`on`, with a
    /// `resync`), or when the browser fell behind (the state then, with a `resync`).
    pub fn subscribe(&self, filter: Filter) -> impl Stream<Item = Result<Event, Infallible>> {
        // subscribed before reading the state, so that a change in between is not missed
        let receiver = self.sender.subscribe();
        let first =
            futures::stream::once(futures::future::ready(Ok(listen_event(self.connected()))));
        let connected = self.connected.clone();
        let rest = BroadcastStream::new(receiver).flat_map(move |message| {
            let events = match message {
                Ok(Message::Change(event)) if filter.wants(&event) => {
                    vec![Event::default().event("change").data(
                        serde_json::json!({
                            "run_id": event.run_id,
                            "workflow_slug": event.workflow_slug,
                            "step_slug": event.step_slug,
                            "status": event.status,
                        })
                        .to_string(),
                    )]
                }
                Ok(Message::Change(_)) => vec![],
                Ok(Message::Resync) => vec![
                    listen_event(true),
                    Event::default().event("resync").data("{}"),
                ],
                // a browser that fell behind may have missed a `listen` event too
                Err(BroadcastStreamRecvError::Lagged(_)) => vec![
                    listen_event(connected.load(Ordering::Relaxed)),
                    Event::default().event("resync").data("{}"),
                ],
                Ok(Message::Down) => vec![listen_event(false)],
            };
            futures::stream::iter(events.into_iter().map(Ok))
        });
        first.chain(rest)
    }
}

/// The `listen` event: whether the LISTEN connection is up.
fn listen_event(up: bool) -> Event {
    Event::default()
        .event("listen")
        .data(if up { "on" } else { "off" })
}

async fn listen(database_url: String, sender: broadcast::Sender<Message>, up: Arc<AtomicBool>) {
    let mut delay = Duration::from_millis(250);
    loop {
        match quantum_flow_client::events(&database_url).await {
            Ok(stream) => {
                tracing::info!("listening on quantum_flow_events");
                up.store(true, Ordering::Relaxed);
                delay = Duration::from_millis(250);
                // whatever happened while the connection was down is unknown to the pages
                let _ = sender.send(Message::Resync);
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        // no receiver is fine: nobody is watching
                        Ok(event) => drop(sender.send(Message::Change(event))),
                        // anyone may NOTIFY the channel: a foreign payload is skipped
                        Err(e @ quantum_flow_client::Error::Decode(_)) => {
                            tracing::warn!("quantum_flow_events: not an event, skipped: {e}");
                        }
                        Err(e) => {
                            tracing::warn!("quantum_flow_events: {e}");
                            break;
                        }
                    }
                }
                up.store(false, Ordering::Relaxed);
                let _ = sender.send(Message::Down);
            }
            Err(e) => tracing::warn!("cannot LISTEN on quantum_flow_events: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
