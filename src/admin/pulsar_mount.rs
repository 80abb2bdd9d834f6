//! The admin endpoint of a `--pulsar` mount: `/metrics` only. It has no topics, policies or
//! offloads of its own; every other request is refused with the reason.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::info;

use super::model::ErrorBody;
use super::server::{authorize, prometheus_text};
use crate::config::Secret;
use crate::metrics::Metrics;

pub fn router(metrics: Arc<Metrics>, token: Option<Secret>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { prometheus_text(&m) }),
        )
        .fallback(refuse)
        .layer(axum::middleware::from_fn_with_state(token, authorize))
        .with_state(metrics)
}

async fn refuse(method: Method, uri: axum::http::Uri) -> Response {
    let (status, reason) = if method == Method::GET || method == Method::HEAD {
        (
            StatusCode::NOT_FOUND,
            format!(
                "{} is not served by a --pulsar mount (it shows what Pulsar offloaded; only /metrics is served)",
                uri.path()
            ),
        )
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "this mount shows what Pulsar offloaded, read-only (tierfs mount --pulsar): {method} {} is refused",
                uri.path()
            ),
        )
    };
    info!(status = status.as_u16(), "admin request refused: {reason}");
    (status, axum::Json(ErrorBody { reason })).into_response()
}
