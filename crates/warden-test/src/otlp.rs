//! A real OTLP/HTTP trace receiver on 127.0.0.1: accepts `POST /v1/traces` with a JSON
//! `ExportTraceServiceRequest`, decodes it, and keeps every request for the test to inspect.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One export request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Every header, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The decoded body (`Value::Null` if it was not JSON).
    pub body: Value,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    /// Base URL to configure as the exporter's endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver answering every request with `status`.
    pub async fn start(status: StatusCode) -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let store = Arc::clone(&store);
                        async move {
                            let path = request.uri().path().to_owned();
                            let headers = request
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect::<Vec<_>>();
                            let content_type = headers
                                .iter()
                                .find(|(k, _)| k == "content-type")
                                .map(|(_, v)| v.clone());
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            store.lock().unwrap().push(Received {
                                path,
                                content_type,
                                headers,
                                body,
                            });
                            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        OtlpReceiver {
            endpoint: format!("http://127.0.0.1:{port}"),
            received,
            task,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every span received so far, from every request (`resourceSpans[].scopeSpans[].spans[]`).
    pub fn spans(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .flat_map(|r| spans_of(&r.body))
            .collect()
    }

    /// Waits until at least `n` spans arrived (or `timeout` passed) and returns them all.
    pub async fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The spans of one `ExportTraceServiceRequest`.
pub fn spans_of(body: &Value) -> Vec<Value> {
    let list = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned();
    list(body, "resourceSpans")
        .unwrap_or_default()
        .iter()
        .flat_map(|rs| list(rs, "scopeSpans").unwrap_or_default())
        .flat_map(|ss| list(&ss, "spans").unwrap_or_default())
        .collect()
}

/// The value of attribute `key` of an OTLP span or event (string or array of strings).
pub fn attribute(span: &Value, key: &str) -> Option<Value> {
    let attrs = span.get("attributes")?.as_array()?;
    let v = &attrs.iter().find(|a| a["key"] == key)?["value"];
    if let Some(s) = v.get("stringValue") {
        return Some(s.clone());
    }
    let values = v.get("arrayValue")?.get("values")?.as_array()?;
    Some(Value::Array(
        values.iter().map(|x| x["stringValue"].clone()).collect(),
    ))
}
