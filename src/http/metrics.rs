//! `GET /metrics`: Prometheus text format. Counters are recorded where things happen
//! (through the `metrics` facade, a no-op until the recorder is installed); the
//! queue's depth and the age of its oldest due message are read at each scrape.

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = crate::startup::metrics_recorder() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded\n",
        )
            .into_response();
    };
    match state.app.queue_stats().await {
        Ok(q) => {
            metrics::gauge!("listd_queue_depth").set(q.queued as f64);
            metrics::gauge!("listd_queue_due").set(q.due as f64);
            metrics::gauge!("listd_queue_oldest_due_seconds").set(q.oldest_due_seconds);
            metrics::gauge!("listd_inbound_waiting").set(q.inbound_waiting as f64);
            metrics::gauge!("listd_held_posts").set(q.held as f64);
        }
        Err(e) => crate::warn_limited!("reading the queue for /metrics failed", e),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Counts every request by its route (the pattern, never the raw path: tokens stay
/// out of the metrics) and status.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics::counter!(
        "listd_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}
