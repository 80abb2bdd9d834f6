//! The admin REST endpoint: Pulsar's `/admin/v2` paths over the local log.
//!
//! Binds to loopback by default. Handlers only translate between HTTP and [`LocalLog`]; errors
//! become Pulsar's status codes with an `{"reason": ...}` body, and each refusal is logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tracing::info;

use super::model::{ErrorBody, InternalStats, SealedInfo};
use crate::config::Secret;
use crate::fs::{Node, TierFs};
use crate::log::{LocalLog, LogError};
use crate::metrics::Metrics;
use crate::name::{NameError, NameKind, NamespaceName, TopicName, validate};
use crate::offload::{
    MessageId, NamespacePolicy, OffloadError, OffloadStatus, Offloader, PolicyError,
    RetentionPolicy, ScanReport,
};

/// What the handlers work on.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub log: Arc<LocalLog>,
    pub offloader: Arc<Offloader>,
    pub metrics: Arc<Metrics>,
    /// The mounted filesystem, told when the API removes what the kernel may have cached.
    pub fs: Option<Arc<TierFs>>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// The configuration in force, credentials already masked
    /// ([`crate::config::Config::runtime_configuration`]).
    pub runtime_configuration: Arc<BTreeMap<String, String>>,
}

impl AdminState {
    fn forget(&self, parent: Node, name: &str) {
        if let Some(fs) = &self.fs {
            fs.forget_name(&parent, name);
        }
    }
}

impl FromRef<AdminState> for Arc<LocalLog> {
    fn from_ref(state: &AdminState) -> Self {
        Arc::clone(&state.log)
    }
}

impl FromRef<AdminState> for Arc<Offloader> {
    fn from_ref(state: &AdminState) -> Self {
        Arc::clone(&state.offloader)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Offload(#[from] OffloadError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("Topic not found")]
    TopicNotFound,
    #[error("{0}")]
    Invalid(String),
    /// Pulsar's 412 for a topic still in use.
    #[error("{0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Name(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Internal(_) | ApiError::Policy(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TopicNotFound => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Busy(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Offload(OffloadError::AlreadyRunning | OffloadError::Recovering) => {
                StatusCode::CONFLICT
            }
            ApiError::Offload(OffloadError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Offload(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Log(e) => match e {
                LogError::NotFound(_) | LogError::Removed(_) => StatusCode::NOT_FOUND,
                LogError::AlreadyExists(_) | LogError::NotEmpty(_) | LogError::NothingToSeal(_) => {
                    StatusCode::CONFLICT
                }
                LogError::Name(_) | LogError::NotAtEnd { .. } => StatusCode::PRECONDITION_FAILED,
                LogError::NotLocal(_) | LogError::NotOffloaded(_) => StatusCode::CONFLICT,
                LogError::Io { .. } | LogError::Corrupt { .. } | LogError::Locked { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = self.to_string();
        info!(status = status.as_u16(), "admin request refused: {reason}");
        (status, Json(ErrorBody { reason })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// How long a request that needs the bucket's catalog waits for the mount to have read it.
const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The routes, over a shared log and offloader.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v2/tenants", get(list_tenants))
        .route(
            "/admin/v2/tenants/{tenant}",
            put(create_tenant).delete(delete_tenant),
        )
        .route("/admin/v2/namespaces/{tenant}", get(list_namespaces))
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}",
            put(create_namespace).delete(delete_namespace),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}",
            get(list_topics),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}",
            put(create_topic).delete(delete_topic),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/truncate",
            axum::routing::delete(truncate_topic),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/internalStats",
            get(internal_stats),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/seal",
            post(seal),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/offload",
            put(trigger_offload).get(offload_status),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/offloadThreshold",
            get(get_threshold)
                .put(set_threshold)
                .delete(remove_threshold),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/offloadDeletionLagMs",
            get(get_deletion_lag)
                .put(set_deletion_lag)
                .delete(clear_deletion_lag),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/retention",
            get(get_retention)
                .post(set_retention)
                .delete(remove_retention),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/scanOffloaded",
            get(scan_offloaded).delete(clean_offloaded),
        )
        .route(
            "/admin/v2/brokers/configuration/runtime",
            get(runtime_configuration),
        )
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            authorize,
        ))
        .with_state(state)
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Refuses requests without the admin token, when one is configured.
pub(super) async fn authorize(
    State(token): State<Option<Secret>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), token.expose().as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let reason = if given.is_some() {
                "the admin token is wrong"
            } else {
                "this endpoint requires the admin token (Authorization: Bearer …)"
            };
            info!(path = %request.uri().path(), "admin request refused: {reason}");
            (
                StatusCode::UNAUTHORIZED,
                Json(ErrorBody {
                    reason: reason.to_string(),
                }),
            )
                .into_response()
        }
    }
}

/// Binds the listener; the caller learns the real address (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `routes` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn list_tenants(State(log): State<Arc<LocalLog>>) -> ApiResult<Vec<String>> {
    Ok(Json(log.tenants()))
}

async fn create_tenant(
    State(log): State<Arc<LocalLog>>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    validate(NameKind::Tenant, &tenant)?;
    blocking(move || log.create_tenant(&tenant)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_tenant(
    State(state): State<AdminState>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    validate(NameKind::Tenant, &tenant)?;
    let (log, name) = (Arc::clone(&state.log), tenant.clone());
    blocking(move || log.remove_tenant(&name)).await?;
    state.forget(Node::Root, &tenant);
    Ok(StatusCode::NO_CONTENT)
}

async fn list_namespaces(
    State(log): State<Arc<LocalLog>>,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<String>> {
    validate(NameKind::Tenant, &tenant)?;
    let names = log.namespaces(&tenant)?;
    Ok(Json(
        names
            .into_iter()
            .map(|ns| format!("{tenant}/{ns}"))
            .collect(),
    ))
}

async fn create_namespace(
    State(log): State<Arc<LocalLog>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ns = NamespaceName::new(&tenant, &namespace)?;
    blocking(move || log.create_namespace(&ns)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_namespace(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ns = NamespaceName::new(&tenant, &namespace)?;
    let (log, name) = (Arc::clone(&state.log), ns.clone());
    blocking(move || log.remove_namespace(&name)).await?;
    if state.offloader.policies().get(&ns) != NamespacePolicy::default() {
        state
            .offloader
            .record_policy(&ns, &NamespacePolicy::default())
            .await?;
    }
    state.offloader.policies().forget(&ns)?;
    state.forget(Node::Tenant(ns.tenant.clone()), &ns.namespace);
    Ok(StatusCode::NO_CONTENT)
}

async fn list_topics(
    State(log): State<Arc<LocalLog>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> ApiResult<Vec<String>> {
    let ns = NamespaceName::new(&tenant, &namespace)?;
    let topics = log.topics(&ns)?;
    Ok(Json(
        topics
            .into_iter()
            .map(|t| format!("persistent://{ns}/{t}"))
            .collect(),
    ))
}

async fn create_topic(
    State(log): State<Arc<LocalLog>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = TopicName::new(&tenant, &namespace, &topic)?;
    blocking(move || log.create_topic(&name).map(drop)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a query string says `force=true` (Pulsar's `-f`).
fn forced(query: Option<&str>) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.eq_ignore_ascii_case("force=true") || pair == "force")
}

async fn delete_topic(
    State(state): State<AdminState>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<StatusCode, ApiError> {
    let force = forced(query.as_deref());
    let name = existing_topic(&state.log, &tenant, &namespace, &topic)?;
    let writers = state.fs.as_ref().map_or(0, |fs| fs.writers(&name));
    if writers > 0 && !force {
        return Err(ApiError::Busy(format!(
            "Topic has active producers/subscriptions ({writers} handle(s) have {name}/active open for writing); use -f to delete it anyway"
        )));
    }
    state.offloader.delete_topic(&name).await?;
    state.forget(Node::Namespace(name.namespace_name()), &name.topic);
    Ok(StatusCode::NO_CONTENT)
}

async fn truncate_topic(
    State(state): State<AdminState>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = existing_topic(&state.log, &tenant, &namespace, &topic)?;
    state.offloader.truncate(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_retention(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> ApiResult<Option<RetentionPolicy>> {
    let ns = existing_namespace(&state.log, &tenant, &namespace)?;
    Ok(Json(state.offloader.policies().get(&ns).retention))
}

async fn set_retention(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
    Json(retention): Json<RetentionPolicy>,
) -> Result<StatusCode, ApiError> {
    retention.validate().map_err(ApiError::Invalid)?;
    change_policy(state, &tenant, &namespace, move |p| {
        p.retention = Some(retention)
    })
    .await
}

async fn remove_retention(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    change_policy(state, &tenant, &namespace, |p| p.retention = None).await
}

async fn internal_stats(
    State(state): State<AdminState>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> ApiResult<InternalStats> {
    let name = TopicName::new(&tenant, &namespace, &topic)?;
    let snapshot = state.log.topic(&name)?.snapshot();
    let mut stats = InternalStats::from(&snapshot);
    stats.note_offload_failures(&state.offloader.failing_segments(&name));
    Ok(Json(stats))
}

async fn seal(
    State(log): State<Arc<LocalLog>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> ApiResult<SealedInfo> {
    let name = TopicName::new(&tenant, &namespace, &topic)?;
    let topic = log.topic(&name)?;
    let sealed = blocking(move || topic.seal_now(SystemTime::now())).await?;
    Ok(Json(SealedInfo::from(&sealed)))
}

async fn scan_offloaded(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> ApiResult<ScanReport> {
    let ns = existing_namespace(&state.log, &tenant, &namespace)?;
    Ok(Json(state.offloader.scan(&ns, false).await?))
}

async fn clean_offloaded(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> ApiResult<ScanReport> {
    let ns = existing_namespace(&state.log, &tenant, &namespace)?;
    Ok(Json(state.offloader.scan(&ns, true).await?))
}

async fn runtime_configuration(State(state): State<AdminState>) -> Json<BTreeMap<String, String>> {
    Json(state.runtime_configuration.as_ref().clone())
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    prometheus_text(&state.metrics)
}

/// The `/metrics` answer.
pub(super) fn prometheus_text(metrics: &Metrics) -> impl IntoResponse + use<> {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

fn existing_topic(
    log: &LocalLog,
    tenant: &str,
    namespace: &str,
    topic: &str,
) -> Result<TopicName, ApiError> {
    let name = TopicName::new(tenant, namespace, topic)?;
    log.topic(&name).map_err(|_| ApiError::TopicNotFound)?;
    Ok(name)
}

fn existing_namespace(
    log: &LocalLog,
    tenant: &str,
    namespace: &str,
) -> Result<NamespaceName, ApiError> {
    let ns = NamespaceName::new(tenant, namespace)?;
    log.topics(&ns)?;
    Ok(ns)
}

async fn trigger_offload(
    State(state): State<AdminState>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    Json(before): Json<MessageId>,
) -> Result<StatusCode, ApiError> {
    let name = existing_topic(&state.log, &tenant, &namespace, &topic)?;
    let ledger = u64::try_from(before.ledger_id)
        .map_err(|_| ApiError::Invalid(format!("Invalid position for offload: {before}")))?;
    // A store that refuses is reported through offload-status, as Pulsar does.
    match state.offloader.wait_recovered(RECOVERY_WAIT).await {
        Ok(()) | Err(OffloadError::Unavailable(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state.offloader.offload_before(&name, ledger)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn offload_status(
    State(state): State<AdminState>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> ApiResult<OffloadStatus> {
    let name = existing_topic(&state.log, &tenant, &namespace, &topic)?;
    Ok(Json(state.offloader.status(&name)))
}

async fn get_threshold(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> ApiResult<i64> {
    let ns = existing_namespace(&state.log, &tenant, &namespace)?;
    Ok(Json(
        state.offloader.policies().effective(&ns).threshold_bytes,
    ))
}

async fn set_threshold(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
    Json(bytes): Json<i64>,
) -> Result<StatusCode, ApiError> {
    change_policy(state, &tenant, &namespace, move |p| {
        p.offload_threshold = Some(bytes)
    })
    .await
}

async fn remove_threshold(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    change_policy(state, &tenant, &namespace, |p| p.offload_threshold = None).await
}

async fn get_deletion_lag(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> ApiResult<Option<u64>> {
    let ns = existing_namespace(&state.log, &tenant, &namespace)?;
    Ok(Json(
        state.offloader.policies().get(&ns).offload_deletion_lag_ms,
    ))
}

async fn set_deletion_lag(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
    Json(ms): Json<u64>,
) -> Result<StatusCode, ApiError> {
    change_policy(state, &tenant, &namespace, move |p| {
        p.offload_deletion_lag_ms = Some(ms)
    })
    .await
}

async fn clear_deletion_lag(
    State(state): State<AdminState>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    change_policy(state, &tenant, &namespace, |p| {
        p.offload_deletion_lag_ms = None
    })
    .await
}

/// Changes a namespace's policies (saved with an fsync, so off the async workers).
async fn change_policy(
    state: AdminState,
    tenant: &str,
    namespace: &str,
    change: impl FnOnce(&mut NamespacePolicy) + Send + 'static,
) -> Result<StatusCode, ApiError> {
    let ns = existing_namespace(&state.log, tenant, namespace)?;
    let offloader = Arc::clone(&state.offloader);
    // The bucket is where policies live: without it, the change is refused with why.
    offloader
        .wait_recovered(RECOVERY_WAIT)
        .await
        .map_err(|e| match e {
            OffloadError::Unavailable(reason) => OffloadError::Unavailable(format!(
                "cannot record the namespace policy in the bucket: {reason}"
            )),
            other => other,
        })?;
    let policy = offloader.policies().preview(&ns, change);
    // The bucket first: it is the source of truth a restart adopts.
    offloader.record_policy(&ns, &policy).await?;
    let (name, saved) = (ns.clone(), policy.clone());
    tokio::task::spawn_blocking(move || offloader.policies().set(&name, &saved))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    info!(namespace = %ns, ?policy, "namespace policy changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Runs file-system work (fsync, directory changes) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}
