//! The local app API: HTTP/1.1 on a loopback address (see `docs/api.md`).
//!
//! | method and path | does |
//! | --- | --- |
//! | `POST /v1/bundles?to=NODE_ID\|group=true&endpoint=&lifetime=&priority=&ephemeral=&realm=` | body = payload; answers `{"id": ...}` once the bundle is committed; 507 when the store is full |
//! | `GET /v1/deliveries/next?endpoint=&wait=SECS` | the next payload for the endpoint (body) with `ferry-bundle-id`, `ferry-source`, `ferry-kind` headers, leased for 60 s; 204 if none within `wait` |
//! | `POST /v1/deliveries/{id}/ack` | releases a delivery (the node then sends a receipt) |
//! | `GET /v1/status` | node, store, engine and link counters |
//! | `GET /v1/peers` | links that are up, configured peers |
//! | `GET /v1/bundles?limit=N` | stored bundles, highest priority first |
//! | `GET /v1/events` | server-sent events: `delivery`, `delivered` |
//! | `GET /v1/stream?receive=&endpoint=` | a WebSocket for many submissions, deliveries and acks (`stream.rs`) |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::rand_core::OsRng;
use ferry_core::{Bundle, BundleId, SealParams};
use ferry_router::app_api::{SubmitDefaults, SubmitQuery};
use ferry_router::engine::Millis;
use ferry_storage::CustodyStore;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use crate::daemon::{now_dtn, Cmd, Pending, Shared, SubmitError};
use crate::reassembly::Parts;

/// How long a delivery handed to an app stays reserved for it before another `next`
/// may get it again.
const LEASE: Millis = Millis(60_000);
/// Longest `wait` a request may ask for.
const MAX_WAIT_SECS: u64 = 300;
/// Most bundles listed by `GET /v1/bundles`.
const MAX_LIST: usize = 10_000;

/// Serves the API on TCP (loopback) until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Small writes (stream messages, short answers) go out at once.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, routes(shared))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// Serves the same API on a Unix socket until `stop` turns true.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, routes(shared))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

fn routes(shared: Arc<Shared>) -> Router {
    let body_limit = shared.config.store.max_bundle_bytes;
    Router::new()
        .route("/v1/bundles", post(submit).get(list_bundles))
        .route("/v1/deliveries/next", get(next_delivery))
        .route("/v1/deliveries/{id}/ack", post(ack))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/events", get(events))
        .route("/v1/stream", get(crate::stream::stream))
        .route("/v1/drives/sync", post(drive_sync))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(shared)
}

/// An API error: the HTTP status and a one-line reason.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A 400 answer with its reason.
pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Checks a submit query against the node's keys and config (the creation time and
/// sequence number are set when each payload is sealed).
pub fn submit_params(shared: &Shared, q: &SubmitQuery) -> Result<SealParams, ApiError> {
    let realm = shared.keyring.realms().first().map(|r| r.name().to_owned());
    q.seal_params(SubmitDefaults {
        realm: realm.as_deref(),
        lifetime_secs: shared.config.default_lifetime_secs(),
        hop_limit: shared.config.routing.hop_limit,
    })
    .map_err(|e| bad(e.0))
}

/// The answer to one submission: the bundle id once it is committed (for a
/// payload sent in fragments, every fragment's; the first names the payload).
#[derive(Debug)]
pub struct SubmitReply(Vec<oneshot::Receiver<Result<BundleId, SubmitError>>>);

impl SubmitReply {
    /// Bundles the payload was sealed into.
    pub fn bundles(&self) -> usize {
        self.0.len()
    }
}

/// Bytes a fragment's bundle adds to its piece of the payload, at most: header
/// (with an ephemeral key), ciphertext length, plaintext prefix (kind, endpoint,
/// fragment descriptor), tag, signature and envelope are under 400 bytes.
pub const FRAGMENT_HEADROOM: usize = 1024;

/// Fragments being sealed at once for one upload (each holds one piece in memory).
const SEALING_AHEAD: usize = 2;

/// The most of a refused submission's body read (and dropped) before answering.
const DRAIN_MAX: usize = 1 << 20;

/// Payloads up to this size are sealed on the calling task; larger ones on a
/// blocking thread (sealing 100 MiB takes a good part of a second).
const INLINE_SEAL_MAX: usize = 64 * 1024;

/// Seals a payload (with the creation time now and the next sequence number) and
/// hands the bundle to the engine to be stored; the reply comes once it is
/// committed.
pub async fn start_submit(
    shared: &Arc<Shared>,
    mut params: SealParams,
    payload: Bytes,
) -> Result<SubmitReply, ApiError> {
    if let Some(piece) = fragment_piece(shared, payload.len()) {
        let mut f = Fragmenter::new(shared, params, payload.len(), piece)?;
        for i in 0..f.count {
            let (plan, head) = f.plan_next()?;
            let at = i as usize * piece;
            let chunk = &payload[at..payload.len().min(at + piece)];
            let mut buf = Vec::with_capacity(plan.total_len());
            buf.resize(head, 0);
            buf.extend_from_slice(chunk);
            f.seal(plan, buf).await?;
        }
        return f.finish().await;
    }
    stamp(shared, &mut params)?;
    let sealed = if payload.len() <= INLINE_SEAL_MAX {
        shared.keyring.seal(&params, &payload, &mut OsRng)
    } else {
        let (keyring, store) = (shared.keyring.clone(), shared.store.clone());
        tokio::task::spawn_blocking(move || {
            keyring
                .seal(&params, &payload, &mut OsRng)
                .inspect(|b| stage(&store, b))
        })
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
    };
    hand_over(shared, sealed.map_err(seal_error)?).await
}

/// Writes a large bundle's payload file here, on the sealing thread, so that the
/// engine's commit takes it instead of writing 100 MiB on the engine's thread
/// ([`ferry_storage::LmdbStore::stage_payload`]; small bundles are not staged).
pub(crate) fn stage(store: &ferry_storage::LmdbStore, b: &Bundle) {
    let (storage, envelope) = b.encoded_parts();
    if let Err(e) = store.stage_payload(&b.id(), &[storage, &envelope]) {
        tracing::debug!(error = %e, "payload file not staged (the commit writes it)");
    }
}

/// Sets the creation time (now) and the next sequence number.
fn stamp(shared: &Shared, params: &mut SealParams) -> Result<(), ApiError> {
    params.created = now_dtn();
    params.sequence = shared
        .next_sequence()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(())
}

/// Gives a sealed bundle to the engine; the reply comes once it is committed.
async fn hand_over(shared: &Arc<Shared>, bundle: Bundle) -> Result<SubmitReply, ApiError> {
    Ok(SubmitReply(vec![hand_over_one(shared, bundle).await?]))
}

async fn hand_over_one(
    shared: &Arc<Shared>,
    bundle: Bundle,
) -> Result<oneshot::Receiver<Result<BundleId, SubmitError>>, ApiError> {
    let (tx, rx) = oneshot::channel();
    shared
        .cmds
        .send(Cmd::Submit { bundle, reply: tx })
        .await
        .map_err(|_| shutting_down())?;
    Ok(rx)
}

/// The payload bytes per fragment when a payload of `len` bytes is to travel in
/// fragments (`[store] fragment_bytes`), or `None` if it goes as one bundle.
fn fragment_piece(shared: &Shared, len: usize) -> Option<usize> {
    let max = shared.config.store.fragment_bytes;
    let piece = max.checked_sub(FRAGMENT_HEADROOM).filter(|p| *p > 0)?;
    (len > piece).then_some(piece)
}

/// Seals a payload's fragments one after the other, each sealed on a blocking
/// thread while the next piece is read ([`SEALING_AHEAD`] at a time), and hands
/// them to the engine in order: the first fragments are stored, and forwarded,
/// while the rest of the upload is still coming in.
struct Fragmenter {
    shared: Arc<Shared>,
    params: SealParams,
    message: u64,
    count: u32,
    total: usize,
    piece: usize,
    next: u32,
    sealing:
        std::collections::VecDeque<tokio::task::JoinHandle<Result<Bundle, ferry_core::SealError>>>,
    replies: Vec<oneshot::Receiver<Result<BundleId, SubmitError>>>,
}

impl Fragmenter {
    fn new(
        shared: &Arc<Shared>,
        params: SealParams,
        total: usize,
        piece: usize,
    ) -> Result<Self, ApiError> {
        let count = u32::try_from(total.div_ceil(piece))
            .ok()
            .filter(|c| *c <= ferry_core::MAX_FRAGMENTS)
            .ok_or_else(too_large)?;
        Ok(Self {
            shared: shared.clone(),
            params,
            message: 0,
            count,
            total,
            piece,
            next: 0,
            sealing: std::collections::VecDeque::with_capacity(SEALING_AHEAD),
            replies: Vec::with_capacity(count as usize),
        })
    }

    /// Plans the next fragment: its own creation time and sequence number (the
    /// first fragment's number names the message); the plan and the bytes to
    /// reserve before its piece.
    fn plan_next(&mut self) -> Result<(ferry_core::SealPlan, usize), ApiError> {
        let index = self.next;
        let mut params = self.params.clone();
        stamp(&self.shared, &mut params)?;
        if index == 0 {
            self.message = params.sequence;
        }
        let offset = index as usize * self.piece;
        let len = self.piece.min(self.total - offset);
        params.fragment = Some(ferry_core::Fragment {
            message: self.message,
            index,
            count: self.count,
            offset: offset as u64,
            total: self.total as u64,
        });
        let plan = self
            .shared
            .keyring
            .plan_seal(&params, len, &mut OsRng)
            .map_err(seal_error)?;
        self.next += 1;
        let head = plan.head_len();
        Ok((plan, head))
    }

    /// Seals `buf` (the plan's head, then its piece) on a blocking thread; first
    /// hands the oldest sealed fragment to the engine if [`SEALING_AHEAD`] are
    /// being sealed.
    async fn seal(&mut self, plan: ferry_core::SealPlan, buf: Vec<u8>) -> Result<(), ApiError> {
        if self.sealing.len() >= SEALING_AHEAD {
            self.hand_over_oldest().await?;
        }
        let (keyring, store) = (self.shared.keyring.clone(), self.shared.store.clone());
        self.sealing.push_back(tokio::task::spawn_blocking(move || {
            keyring
                .seal_planned(plan, buf)
                .inspect(|b| stage(&store, b))
        }));
        Ok(())
    }

    async fn hand_over_oldest(&mut self) -> Result<(), ApiError> {
        let Some(job) = self.sealing.pop_front() else {
            return Ok(());
        };
        let bundle = job
            .await
            .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
            .map_err(seal_error)?;
        self.replies
            .push(hand_over_one(&self.shared, bundle).await?);
        Ok(())
    }

    /// Hands the last fragments over; the reply covers every fragment.
    async fn finish(mut self) -> Result<SubmitReply, ApiError> {
        while !self.sealing.is_empty() {
            self.hand_over_oldest().await?;
        }
        Ok(SubmitReply(self.replies))
    }
}

/// [`start_submit_upload`] for a payload that travels in fragments of `piece`
/// bytes: each piece is read from the body into its own bundle's buffer and
/// sealed while the next one is read.
async fn start_submit_fragments(
    shared: &Arc<Shared>,
    params: SealParams,
    body: axum::body::Body,
    len: usize,
    piece: usize,
) -> Result<SubmitReply, ApiError> {
    use futures_util::StreamExt;
    let mut f = Fragmenter::new(shared, params, len, piece)?;
    let mut stream = body.into_data_stream();
    let mut rest = Bytes::new();
    let mut read = 0usize;
    for _ in 0..f.count {
        let (plan, head) = f.plan_next()?;
        let want = head + plan.payload_len();
        let mut buf = Vec::with_capacity(plan.total_len());
        buf.resize(head, 0);
        while buf.len() < want {
            if rest.is_empty() {
                match stream.next().await {
                    Some(chunk) => rest = chunk.map_err(|e| bad(format!("upload failed: {e}")))?,
                    None => {
                        return Err(bad(format!(
                        "upload ended after {read} of the {len} bytes its Content-Length announced"
                    )))
                    }
                }
            }
            let take = rest.len().min(want - buf.len());
            buf.extend_from_slice(&rest.split_to(take));
            read += take;
        }
        f.seal(plan, buf).await?;
    }
    if !rest.is_empty() || stream.next().await.is_some() {
        return Err(too_large());
    }
    f.finish().await
}

/// [`start_submit`] for an upload of `len` bytes (its `Content-Length`) still to be
/// read: the bundle is planned first, and the body is read straight into the
/// buffer behind the planned head, where it is encrypted. A large upload costs
/// one buffer, not three (the body's pieces, their concatenation, the sealed copy).
async fn start_submit_upload(
    shared: &Arc<Shared>,
    mut params: SealParams,
    body: axum::body::Body,
    len: usize,
) -> Result<SubmitReply, ApiError> {
    if let Some(piece) = fragment_piece(shared, len) {
        return start_submit_fragments(shared, params, body, len, piece).await;
    }
    stamp(shared, &mut params)?;
    let plan = shared
        .keyring
        .plan_seal(&params, len, &mut OsRng)
        .map_err(seal_error)?;
    let head = plan.head_len();
    let mut buf = Vec::with_capacity(plan.total_len());
    buf.resize(head, 0);
    read_body(body, &mut buf, head + len).await?;
    if buf.len() != head + len {
        return Err(bad(format!(
            "upload ended after {} of the {len} bytes its Content-Length announced",
            buf.len() - head
        )));
    }
    let (keyring, store) = (shared.keyring.clone(), shared.store.clone());
    let sealed = tokio::task::spawn_blocking(move || {
        keyring
            .seal_planned(plan, buf)
            .inspect(|b| stage(&store, b))
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?;
    hand_over(shared, sealed.map_err(seal_error)?).await
}

/// Appends a request body to `buf`, refusing it (413) once `buf` would pass `limit`.
async fn read_body(
    body: axum::body::Body,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(format!("upload failed: {e}")))?;
        if chunk.len() > limit.saturating_sub(buf.len()) {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(())
}

/// A payload too large for a bundle is a 413, as a body over the limit; any other
/// refusal to seal is a 400.
fn seal_error(e: ferry_core::SealError) -> ApiError {
    match e {
        ferry_core::SealError::TooLarge { .. } => {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        other => bad(other.to_string()),
    }
}

/// Reads and drops up to about `max` bytes of a body.
async fn drain(body: axum::body::Body, max: usize) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while seen <= max {
        match stream.next().await {
            Some(Ok(chunk)) => seen += chunk.len(),
            _ => return,
        }
    }
}

fn too_large() -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        "length limit exceeded".into(),
    )
}

/// What a submission's reply means for the app: the (first) bundle's id once
/// every bundle is committed, or the first refusal.
pub async fn submit_outcome(reply: SubmitReply) -> Result<BundleId, ApiError> {
    let mut first = None;
    for r in reply.0 {
        let id = match r.await {
            Ok(Ok(id)) => id,
            Ok(Err(SubmitError::StoreFull)) => {
                return Err(ApiError(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "store full".into(),
                ))
            }
            Ok(Err(SubmitError::ShuttingDown)) | Err(_) => return Err(shutting_down()),
            Ok(Err(e)) => return Err(bad(e.to_string())),
        };
        first.get_or_insert(id);
    }
    first.ok_or_else(shutting_down)
}

fn shutting_down() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "node is shutting down".into(),
    )
}

async fn submit(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = match submit_params(&shared, &q) {
        Ok(p) => p,
        Err(e) => {
            // A client that writes its whole request before reading the answer gets
            // the answer, not a broken pipe, when the body is not large.
            drain(body, DRAIN_MAX).await;
            return Err(e);
        }
    };
    let max = shared.config.store.max_bundle_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reply = match declared {
        Some(len) if len > max as u64 => return Err(too_large()),
        // A large upload of known length is read into the bundle's own buffer.
        Some(len) if len > INLINE_SEAL_MAX as u64 => {
            let len = usize::try_from(len).map_err(|_| too_large())?;
            start_submit_upload(&shared, params, body, len).await?
        }
        _ => {
            let mut payload = Vec::new();
            read_body(body, &mut payload, max).await?;
            start_submit(&shared, params, Bytes::from(payload)).await?
        }
    };
    let fragments = reply.bundles();
    let id = submit_outcome(reply).await?;
    Ok(Json(if fragments > 1 {
        json!({ "id": id.to_string(), "fragments": fragments })
    } else {
        json!({ "id": id.to_string() })
    }))
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    endpoint: Option<String>,
    #[serde(default)]
    wait: u64,
}

async fn next_delivery(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<NextQuery>,
) -> Result<Response, ApiError> {
    let endpoint = q.endpoint.unwrap_or_default();
    let wait = Duration::from_secs(q.wait.min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let Some((pending, payload)) = wait_deliveries(&shared, &endpoint, 1, Some(deadline))
        .await?
        .pop()
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut headers = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("?"));
    headers.insert("ferry-bundle-id", hv(&pending.id));
    headers.insert("ferry-source", hv(&pending.source));
    headers.insert("ferry-kind", hv(&pending.kind));
    headers.insert(
        "ferry-group",
        hv(if pending.group { "true" } else { "false" }),
    );
    headers.insert(
        axum::http::header::CONTENT_LENGTH,
        HeaderValue::from(payload.len()),
    );
    Ok((StatusCode::OK, headers, payload.into_body()).into_response())
}

/// A payload read for an app: a bundle's; or, for a payload that came in
/// fragments, its first fragment opened and the others still in the store, opened
/// as they are sent ([`Payload::into_body`]): a 100 MiB payload is not held in
/// memory whole, and its first bytes go out while later fragments are decrypted.
#[derive(Debug)]
pub struct Payload {
    first: Bytes,
    /// The fragments after the first, and the payload's whole length.
    rest: Option<(Arc<Shared>, Arc<Parts>)>,
}

/// Fragments decrypted ahead of the one being sent.
const OPEN_AHEAD: usize = 2;

impl Payload {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match &self.rest {
            Some((_, parts)) => usize::try_from(parts.total).unwrap_or(usize::MAX),
            None => self.first.len(),
        }
    }

    /// The pieces in order: the first, then each later fragment read from the
    /// store and decrypted on a blocking thread, [`OPEN_AHEAD`] at a time. A
    /// fragment gone meanwhile (a receipt, expiry) or one that does not fit its
    /// place ends the stream with an error.
    fn pieces(self) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        use futures_util::StreamExt;
        let rest = self.rest.map(|(shared, parts)| {
            futures_util::stream::iter(1..parts.ids.len())
                .map(move |i| {
                    let (shared, parts) = (shared.clone(), parts.clone());
                    async move {
                        tokio::task::spawn_blocking(move || open_part(&shared, &parts, i))
                            .await
                            .map_err(|_| "worker failed".to_owned())
                            .and_then(|r| r)
                            .and_then(|p| {
                                p.ok_or_else(|| format!("fragment {i} is no longer stored"))
                            })
                            .map_err(std::io::Error::other)
                    }
                })
                .buffered(OPEN_AHEAD)
        });
        futures_util::stream::once(async move { Ok(self.first) })
            .chain(futures_util::stream::iter(rest).flatten())
    }

    /// The payload in one buffer (fragments are read and joined).
    pub async fn into_bytes(self) -> Result<Bytes, ApiError> {
        use futures_util::TryStreamExt;
        if self.rest.is_none() {
            return Ok(self.first);
        }
        let mut all = Vec::with_capacity(self.len());
        let mut pieces = std::pin::pin!(self.pieces());
        while let Some(piece) = pieces
            .try_next()
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        {
            all.extend_from_slice(&piece);
        }
        Ok(Bytes::from(all))
    }

    /// An HTTP body that sends the pieces one after the other.
    fn into_body(self) -> axum::body::Body {
        if self.rest.is_none() {
            return axum::body::Body::from(self.first);
        }
        axum::body::Body::from_stream(self.pieces())
    }
}

/// Leases up to `max` deliveries of `endpoint` and reads their payloads, waiting
/// until at least one is there or `deadline` passes (`None`: no deadline). Leases
/// last [`LEASE`]; an acknowledgment releases the delivery for good.
pub async fn wait_deliveries(
    shared: &Arc<Shared>,
    endpoint: &str,
    max: usize,
    deadline: Option<tokio::time::Instant>,
) -> Result<Vec<(Pending, Payload)>, ApiError> {
    loop {
        let notified = shared.delivery_ready.notified();
        let leased: Vec<(BundleId, Pending)> = shared
            .deliveries
            .lock()
            .map(|mut d| {
                let now = shared.clock.now();
                std::iter::from_fn(|| d.lease(endpoint, now, LEASE))
                    .take(max)
                    .collect()
            })
            .unwrap_or_default();
        if !leased.is_empty() {
            let s = shared.clone();
            let opened = tokio::task::spawn_blocking(move || {
                leased
                    .into_iter()
                    .map(|(id, p)| {
                        let payload = read_payload(&s, &p);
                        (id, p, payload)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?;
            let mut out = Vec::with_capacity(opened.len());
            for (id, pending, payload) in opened {
                match payload {
                    Ok(Some(p)) => out.push((pending, p)),
                    // Released meanwhile (a receipt or expiry): drop it.
                    Ok(None) => {
                        if let Ok(mut d) = shared.deliveries.lock() {
                            d.remove(&id);
                        }
                    }
                    Err(e) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e)),
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            continue;
        }
        match deadline {
            Some(d) if tokio::time::Instant::now() >= d => return Ok(Vec::new()),
            Some(d) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(d) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Reads a delivery's payload: its bundle, or the first fragment of it (the others
/// are read as the payload is sent); `None` if it is no longer stored.
fn read_payload(shared: &Arc<Shared>, pending: &Pending) -> Result<Option<Payload>, String> {
    let Some(parts) = &pending.parts else {
        return Ok(
            open_stored(shared, &pending.raw_id)?.map(|(first, _)| Payload { first, rest: None })
        );
    };
    Ok(open_part(shared, parts, 0)?.map(|first| Payload {
        first,
        rest: Some((shared.clone(), parts.clone())),
    }))
}

/// Reads fragment `i` of a delivery and checks that it fits its place; `None` if
/// it is no longer stored.
fn open_part(shared: &Shared, parts: &Parts, i: usize) -> Result<Option<Bytes>, String> {
    let Some((piece, fragment)) = open_stored(shared, &parts.ids[i])? else {
        return Ok(None);
    };
    let fits = fragment
        .is_some_and(|f| f.offset == parts.offsets[i] && piece.len() as u64 == parts.len_of(i));
    if !fits {
        return Err(format!(
            "fragment {i} of delivery {} does not fit the payload's others",
            parts.ids[0]
        ));
    }
    Ok(Some(piece))
}

/// Reads a delivered bundle back from the store and decrypts it; `None` if it is no
/// longer stored.
fn open_stored(
    shared: &Shared,
    id: &BundleId,
) -> Result<Option<(Bytes, Option<ferry_core::Fragment>)>, String> {
    let Some(rec) = shared.store.get(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    // Decoded and decrypted in the record's own buffer, and answered as a slice of
    // it: a 100 MiB payload is neither copied nor moved.
    // The record's own id: no hash over the whole bundle again (opening
    // authenticates the bytes).
    let bundle = Bundle::decode_stored(rec.bytes, shared.keyring.limits(), rec.info.id)
        .map_err(|(e, _)| e.to_string())?;
    let opened = shared
        .keyring
        .open_verified_in_place(bundle)
        .map_err(|e| e.to_string())?;
    Ok(Some((
        Bytes::from(opened.bytes).slice(opened.payload),
        opened.fragment,
    )))
}

async fn ack(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: BundleId = id.parse().map_err(|_| bad("not a bundle id"))?;
    ack_delivery(&shared, id).await?;
    Ok(Json(json!({ "acknowledged": id.to_string() })))
}

/// Releases a delivery an app has taken (the node then sends a receipt).
pub async fn ack_delivery(shared: &Shared, id: BundleId) -> Result<(), ApiError> {
    let Some(bundles) = shared
        .deliveries
        .lock()
        .ok()
        .and_then(|d| d.bundles_of(&id))
    else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no delivery with this id is waiting".into(),
        ));
    };
    // A payload that came in fragments: every fragment is released (each gets
    // its receipt).
    for id in bundles {
        shared
            .cmds
            .send(Cmd::AppAck { id })
            .await
            .map_err(|_| shutting_down())?;
    }
    Ok(())
}

async fn status(State(shared): State<Arc<Shared>>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = shared.clone();
    let stats = tokio::task::spawn_blocking(move || s.store.stats())
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let e = shared.engine_stats.lock().map(|s| *s).unwrap_or_default();
    let delivered: Vec<serde_json::Value> = shared
        .delivered
        .lock()
        .map(|d| {
            d.iter()
                .map(|(b, r)| json!({ "id": b.to_string(), "receipt": r.to_string() }))
                .collect()
        })
        .unwrap_or_default();
    let (queued, fragments) = shared
        .deliveries
        .lock()
        .map(|d| (d.counts(), d.fragments_held()))
        .unwrap_or_default();
    let links = shared.links.lock().map(|l| l.len()).unwrap_or(0);
    let serial = shared.serial.lock().map(|m| m.clone()).unwrap_or_default();
    let (tx, rx) = oneshot::channel();
    let predictabilities = match shared.cmds.send(Cmd::Predictabilities { reply: tx }).await {
        Ok(()) => rx.await.ok().flatten(),
        Err(_) => None,
    };
    let routing = predictabilities.map(|t| {
        json!({
            "predictabilities": t
                .iter()
                .map(|(h, p)| json!({ "node": h.to_string(), "p": p }))
                .collect::<Vec<_>>(),
        })
    });
    Ok(Json(json!({
        "node_id": shared.keyring.node_id().to_string(),
        "realms": shared.keyring.realms().iter().map(|r| r.name()).collect::<Vec<_>>(),
        "policy": shared.config.routing.policy.as_str(),
        "routing": routing,
        "quic_port": shared.listen.port(),
        "uptime_secs": shared.clock.now().0 / 1000,
        "links": links,
        "store": {
            "bundles": stats.count,
            "bytes": stats.bytes,
            "max_bundles": stats.max_count,
            "max_bytes": stats.max_bytes,
            "quarantined": stats.quarantined,
            "seen": stats.seen,
        },
        "deliveries_waiting": queued,
        "fragments_held": { "fragments": fragments.0, "messages": fragments.1 },
        "delivered": delivered,
        "rejected_on_arrival": shared.rejected.load(std::sync::atomic::Ordering::Relaxed),
        "serial": serial,
        "engine": {
            "bundles_sent": e.bundles_sent,
            "bundle_bytes_sent": e.bundle_bytes_sent,
            "frame_bytes_sent": e.frame_bytes_sent,
            "recon_bytes_sent": e.recon_bytes_sent,
            "commits": e.commits,
            "sessions": e.sessions,
            "bad_frames": e.bad_frames,
            "routing_state_dropped": e.routing_state_dropped,
        },
    })))
}

async fn peers(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let links: Vec<serde_json::Value> = shared
        .links
        .lock()
        .map(|l| {
            l.iter()
                .map(|(link, peer)| json!({ "link": link.0, "peer": peer.to_string() }))
                .collect()
        })
        .unwrap_or_default();
    let serial: BTreeMap<String, Vec<String>> = shared
        .serial
        .lock()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.neighbors.clone()))
                .collect()
        })
        .unwrap_or_default();
    Json(json!({ "links": links, "configured": shared.config.peers, "serial": serial }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_bundles(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    let s = shared.clone();
    let page = tokio::task::spawn_blocking(move || s.store.by_priority(None, limit))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let items: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|r| {
            json!({
                "id": r.id.to_string(),
                "priority": r.meta.priority.as_str(),
                "destination": match r.meta.destination {
                    ferry_core::Destination::Node(h) => format!("node:{h}"),
                    ferry_core::Destination::Group => "realm-group".to_owned(),
                },
                "size": r.size,
                "expires_at_dtn": r.meta.expires_at,
                "custody": format!("{:?}", r.meta.routing.custody),
                "copies_left": r.meta.routing.copies_left,
                "holders": r.meta.routing.holders.len(),
            })
        })
        .collect();
    Ok(Json(
        json!({ "bundles": items, "more": page.next.is_some() }),
    ))
}

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = shared.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    return Some((Ok(Event::default().data(data)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `POST /v1/drives/sync`: sync a mounted drive through the running node.
#[derive(Debug, serde::Deserialize)]
struct DriveSyncRequest {
    /// Mount point (absolute path) of the drive.
    path: String,
    /// Most bundle bytes to write.
    max_bytes: Option<u64>,
}

async fn drive_sync(
    State(shared): State<Arc<Shared>>,
    Json(req): Json<DriveSyncRequest>,
) -> Result<Json<crate::drive::SyncSummary>, ApiError> {
    let path = std::path::PathBuf::from(&req.path);
    if !path.is_absolute() {
        return Err(bad("path must be absolute"));
    }
    if !path.is_dir() {
        return Err(bad(format!("{} is not a directory", req.path)));
    }
    let opts = crate::drive::SyncOptions {
        max_bytes: req.max_bytes,
        write_budget: None,
    };
    let home = shared.home.clone();
    crate::drive::sync(&shared, &home, &path, &opts, None)
        .await
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
}
