//! A small HTTP client for the admin endpoint (what `pulsar-admin` does over REST).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::model::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid admin URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the tierfs admin endpoint at {url}: {reason} (is the mount running?)")]
    Unreachable { url: String, reason: String },
    /// The server refused the request; `reason` is Pulsar's `reason` field.
    #[error("{reason}")]
    Refused { status: StatusCode, reason: String },
    #[error("unexpected answer from {url}: {reason}")]
    BadAnswer { url: String, reason: String },
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        let uri: hyper::Uri =
            base.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ClientError::BadUrl {
                    url: base.clone(),
                    reason: e.to_string(),
                })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::BadUrl {
                url: base,
                reason: "expected http://host:port".to_string(),
            });
        }
        Ok(Self {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends a request and returns the body of a successful answer.
    pub async fn call(&self, method: Method, path: &str) -> Result<Bytes, ClientError> {
        self.send(method, path, Bytes::new()).await
    }

    /// Sends a JSON body.
    pub async fn send_json<T: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &T,
    ) -> Result<Bytes, ClientError> {
        let body = serde_json::to_vec(body).expect("request bodies serialize");
        self.send(method, path, Bytes::from(body)).await
    }

    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<Bytes, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: source_chain(&e),
            })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::BadAnswer {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let reason = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.reason)
            .unwrap_or_else(|_| format!("{status}: {}", String::from_utf8_lossy(&body).trim()));
        Err(ClientError::Refused { status, reason })
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        self.json(Method::GET, path).await
    }

    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        let body = self.call(method, path).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        })
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
