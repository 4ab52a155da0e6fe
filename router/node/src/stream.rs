//! `GET /v1/stream`: one WebSocket per app for many bundles (see `docs/api.md`).
//!
//! An app that submits or receives many small bundles pays one HTTP request per
//! submit, fetch and acknowledgment on the plain API. On a stream it keeps one
//! connection:
//!
//! - text `{"type":"params", ...}` sets how the following payloads are sealed (the
//!   fields of `POST /v1/bundles`' query: `to` or `group`, `endpoint`, `lifetime`,
//!   `priority`, `ephemeral`, `realm`); the node answers `{"type":"params"}`;
//! - each binary message is one payload to submit; the node answers, in order,
//!   `{"type":"submitted","n":N,"id":ID}` once it is committed, or
//!   `{"type":"error","n":N,"status":S,"error":...}` (`n` counts binary messages from 1);
//! - with `?receive=true[&endpoint=NAME]` the node pushes deliveries: a text
//!   `{"type":"delivery","id","source","kind","group","size"}`, then the payload as
//!   one binary message; at most [`WINDOW`] are unacknowledged at a time;
//! - text `{"type":"ack","id":ID}` releases a delivery (as `POST
//!   /v1/deliveries/{id}/ack`); deliveries pushed and not acknowledged when the
//!   stream closes are offered again at once.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] submissions wait for their commit (the node
//! stops reading the socket meanwhile), messages are at most the store's largest
//! bundle, and the outgoing queue holds [`OUT_QUEUE`] messages.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use ferry_core::{BundleId, SealParams};
use ferry_router::app_api::StreamMessage;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::api::{
    ack_delivery, bad, start_submit, submit_outcome, submit_params, wait_deliveries, ApiError,
    SubmitReply,
};
use crate::daemon::Shared;

/// Deliveries pushed and not yet acknowledged, per stream.
pub const WINDOW: usize = 64;
/// Submissions waiting for their commit, per stream.
pub const MAX_IN_FLIGHT: usize = 256;
/// Messages queued for the socket, per stream.
pub const OUT_QUEUE: usize = 256;
/// Deliveries read from the store at a time.
const PUSH_BATCH: usize = 32;

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    receive: bool,
    endpoint: Option<String>,
}

pub async fn stream(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    Query(q): Query<StreamQuery>,
) -> Response {
    let limit = shared.config.store.max_bundle_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| run(socket, shared, q))
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

fn error_message(n: Option<u64>, e: &ApiError) -> Message {
    text(json!({ "type": "error", "n": n, "status": e.0.as_u16(), "error": e.1 }))
}

async fn run(socket: WebSocket, shared: Arc<Shared>, q: StreamQuery) {
    let (mut sink, mut source) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    // Answers to submissions, in order; the bound stops reading the socket.
    let (replies, mut replies_rx) = mpsc::channel::<(u64, SubmitReply)>(MAX_IN_FLIGHT);
    let reply_out = out.clone();
    let replier = tokio::spawn(async move {
        while let Some((n, reply)) = replies_rx.recv().await {
            let m = match submit_outcome(reply).await {
                Ok(id) => text(json!({ "type": "submitted", "n": n, "id": id.to_string() })),
                Err(e) => error_message(Some(n), &e),
            };
            if reply_out.send(m).await.is_err() {
                break;
            }
        }
    });
    let window = Arc::new(Semaphore::new(WINDOW));
    let pushed: Arc<Mutex<HashSet<BundleId>>> = Arc::default();
    let pusher = q.receive.then(|| {
        tokio::spawn(push(
            shared.clone(),
            q.endpoint.clone().unwrap_or_default(),
            window.clone(),
            pushed.clone(),
            out.clone(),
        ))
    });
    let mut params: Option<SealParams> = None;
    let mut n: u64 = 0;
    while let Some(Ok(msg)) = source.next().await {
        let answer = match msg {
            Message::Binary(payload) => {
                n += 1;
                match &params {
                    None => Some(error_message(
                        Some(n),
                        &bad("send a params message before the first payload"),
                    )),
                    Some(p) => match start_submit(&shared, p.clone(), payload).await {
                        Ok(reply) => {
                            if replies.send((n, reply)).await.is_err() {
                                break;
                            }
                            None
                        }
                        Err(e) => Some(error_message(Some(n), &e)),
                    },
                }
            }
            Message::Text(t) => match StreamMessage::decode(t.as_str()) {
                Ok(StreamMessage::Params(q)) => match submit_params(&shared, &q) {
                    Ok(p) => {
                        params = Some(p);
                        Some(text(json!({ "type": "params" })))
                    }
                    Err(e) => {
                        params = None;
                        Some(error_message(None, &e))
                    }
                },
                Ok(StreamMessage::Ack(id)) => match ack_delivery(&shared, id).await.map(|()| id) {
                    Ok(id) => {
                        let ours = pushed.lock().map(|mut p| p.remove(&id)).unwrap_or(false);
                        if ours {
                            window.add_permits(1);
                        }
                        None
                    }
                    Err(e) => Some(error_message(None, &e)),
                },
                Err(e) => Some(error_message(None, &bad(e.0))),
            },
            Message::Close(_) => break,
            // Pings are answered by the WebSocket layer.
            Message::Ping(_) | Message::Pong(_) => None,
        };
        if let Some(m) = answer {
            if out.send(m).await.is_err() {
                break;
            }
        }
    }
    if let Some(p) = pusher {
        // Stopped for good before the leases are released: a pusher still running
        // on another worker could otherwise be woken by the release below, lease
        // the same deliveries again for this closed stream, and hold them for the
        // whole lease (seen as a flaky test under load).
        p.abort();
        let _ = p.await;
    }
    // Deliveries pushed and not acknowledged go back to the queue at once.
    let unacked: Vec<BundleId> = pushed
        .lock()
        .map(|mut p| p.drain().collect())
        .unwrap_or_default();
    if let Ok(mut d) = shared.deliveries.lock() {
        for id in &unacked {
            d.release(id);
        }
    }
    if !unacked.is_empty() {
        shared.delivery_ready.notify_waiters();
    }
    drop(replies);
    let _ = replier.await;
    drop(out);
    let _ = writer.await;
}

/// Pushes deliveries of `endpoint` while the window has room.
async fn push(
    shared: Arc<Shared>,
    endpoint: String,
    window: Arc<Semaphore>,
    pushed: Arc<Mutex<HashSet<BundleId>>>,
    out: mpsc::Sender<Message>,
) {
    loop {
        let Ok(first) = window.acquire().await else {
            return;
        };
        first.forget();
        let mut room = 1;
        let extra = window.available_permits().min(PUSH_BATCH - 1);
        if extra > 0 {
            if let Ok(p) = window.try_acquire_many(extra as u32) {
                p.forget();
                room += extra;
            }
        }
        let got = match wait_deliveries(&shared, &endpoint, room, None).await {
            Ok(got) => got,
            Err(e) => {
                let _ = out.send(error_message(None, &e)).await;
                return;
            }
        };
        window.add_permits(room - got.len());
        for (pending, payload) in got {
            if let Ok(mut p) = pushed.lock() {
                p.insert(pending.raw_id);
            }
            let meta = json!({
                "type": "delivery",
                "id": pending.id,
                "source": pending.source,
                "kind": pending.kind,
                "group": pending.group,
                "size": payload.len(),
            });
            let bytes = match payload.into_bytes().await {
                Ok(b) => b,
                Err(e) => {
                    let _ = out.send(error_message(None, &e)).await;
                    return;
                }
            };
            if out.send(text(meta)).await.is_err()
                || out.send(Message::Binary(bytes)).await.is_err()
            {
                return;
            }
        }
    }
}
