//! The admin endpoint of a read-only mount (`tierfs mount --read-only`): listings come from
//! the bucket's catalog, `/metrics` and the runtime configuration are served as usual, and
//! every request that would change state is refused with 405 and a reason that says where to
//! send it instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tracing::info;

use super::model::ErrorBody;
use super::server::{authorize, prometheus_text};
use crate::catalog::Catalog;
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::name::{NameKind, NamespaceName, validate};

#[derive(Debug, Clone)]
pub struct ReadOnlyState {
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    pub token: Option<Secret>,
    pub runtime_configuration: Arc<BTreeMap<String, String>>,
}

fn refusal(status: StatusCode, reason: String) -> Response {
    info!(status = status.as_u16(), "admin request refused: {reason}");
    (status, Json(ErrorBody { reason })).into_response()
}

pub fn router(state: ReadOnlyState) -> Router {
    Router::new()
        .route("/admin/v2/tenants", get(list_tenants))
        .route("/admin/v2/namespaces/{tenant}", get(list_namespaces))
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}",
            get(list_topics),
        )
        .route(
            "/admin/v2/brokers/configuration/runtime",
            get(|State(s): State<ReadOnlyState>| async move {
                Json(s.runtime_configuration.as_ref().clone())
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<ReadOnlyState>| async move { prometheus_text(&s.metrics) }),
        )
        .fallback(refuse)
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            authorize,
        ))
        .with_state(state)
}

/// Anything not served above: a change (refused, read-only) or a reading this mount cannot
/// answer (it has no local log: stats, offload status, policies live with the writer).
async fn refuse(method: Method, uri: axum::http::Uri) -> Response {
    if method == Method::GET || method == Method::HEAD {
        return refusal(
            StatusCode::NOT_FOUND,
            format!(
                "{} is not served by a read-only mount; ask the writer's mount",
                uri.path()
            ),
        );
    }
    refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "this mount is read-only (tierfs mount --read-only): {method} {} would change state; send it to the writer's mount",
            uri.path()
        ),
    )
}

async fn list_tenants(State(s): State<ReadOnlyState>) -> Json<Vec<String>> {
    Json(s.catalog.state().tenants().into_iter().collect())
}

async fn list_namespaces(
    State(s): State<ReadOnlyState>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<String>>, Response> {
    validate(NameKind::Tenant, &tenant)
        .map_err(|e| refusal(StatusCode::PRECONDITION_FAILED, e.to_string()))?;
    let names = s.catalog.state().namespaces(&tenant);
    if names.is_empty() {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            "Tenant does not exist".to_string(),
        ));
    }
    Ok(Json(
        names
            .into_iter()
            .map(|ns| format!("{tenant}/{ns}"))
            .collect(),
    ))
}

async fn list_topics(
    State(s): State<ReadOnlyState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Result<Json<Vec<String>>, Response> {
    let ns = NamespaceName::new(&tenant, &namespace)
        .map_err(|e| refusal(StatusCode::PRECONDITION_FAILED, e.to_string()))?;
    let state = s.catalog.state();
    if !state.namespaces(&tenant).contains(&namespace) {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            "Namespace does not exist".to_string(),
        ));
    }
    Ok(Json(
        state
            .topics_of(&ns)
            .into_iter()
            .map(|t| format!("persistent://{ns}/{t}"))
            .collect(),
    ))
}
