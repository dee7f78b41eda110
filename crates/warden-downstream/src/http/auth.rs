//! Authentication of HTTP requests and the RFC 9728 metadata endpoints.
//!
//! Runs after the `Host`/`Origin` checks and before anything else: a caller without valid
//! credentials learns only that credentials are needed (and where to get them), never whether
//! a session or a tool exists. The credential itself stops here: the handler gets a
//! [`Principal`], and no header of the client's request is ever forwarded upstream.

use std::fmt;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use tracing::debug;
use warden_auth::{Authenticator, FailureKind, METADATA_PATH};
use warden_guard::Principal;
use warden_proto::ErrorCode;

use super::HttpOptions;
use super::body::{self, Rejection, ResponseBody};

/// The authenticator of an HTTP server; compared by identity.
#[derive(Clone)]
pub struct HttpAuth(pub Arc<Authenticator>);

impl PartialEq for HttpAuth {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HttpAuth {}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpAuth")
    }
}

/// The RFC 9728 document when `path` is one of its well-known locations (the root form, or
/// suffixed with the endpoint path) and OAuth is configured.
pub(crate) fn metadata_at<'a>(opts: &'a HttpOptions, path: &str) -> Option<&'a bytes::Bytes> {
    let suffix = path.strip_prefix(METADATA_PATH)?;
    if !(suffix.is_empty() || suffix == opts.path) {
        return None;
    }
    opts.auth.as_ref()?.0.metadata()
}

/// The protected resource metadata, when `path` is one of its well-known locations: the root
/// form and the form suffixed with the MCP endpoint path (RFC 9728 §3.1). `None` for other
/// paths, or when OAuth is not configured (then the paths are 404 like any other).
pub(crate) fn well_known(
    opts: &HttpOptions,
    method: &Method,
    path: &str,
) -> Option<Response<ResponseBody>> {
    let document = metadata_at(opts, path)?.clone();
    if method != Method::GET && method != Method::HEAD {
        return Some(Rejection::invalid(StatusCode::METHOD_NOT_ALLOWED, "use GET").response(None));
    }
    let mut response = body::json(StatusCode::OK, document);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    Some(response)
}

/// The caller's principal; anonymous when no authentication is configured. A refusal is the
/// complete response: status, `WWW-Authenticate` challenge and a JSON-RPC error with id null.
pub(crate) async fn authenticate(
    auth: Option<&HttpAuth>,
    audit: Option<&warden_audit::AuditLog>,
    parts: &Parts,
) -> Result<Principal, Response<ResponseBody>> {
    let Some(HttpAuth(authenticator)) = auth else {
        return Ok(Principal::anonymous());
    };
    // Boxed: token validation (a JWKS fetch, introspection) is a future of kilobytes that
    // would otherwise be part of every request's, authenticated or not.
    Box::pin(authenticate_with(authenticator, audit, parts)).await
}

async fn authenticate_with(
    authenticator: &Authenticator,
    audit: Option<&warden_audit::AuditLog>,
    parts: &Parts,
) -> Result<Principal, Response<ResponseBody>> {
    let remote = parts.extensions.get::<super::audit::Remote>().map(|r| r.0);
    let values: Vec<&[u8]> = parts
        .headers
        .get_all(AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    match authenticator.authenticate(&values, parts.uri.query()).await {
        Ok(principal) => {
            super::audit::auth_success(audit, &principal, remote);
            Ok(principal)
        }
        Err(failure) => {
            let presented = super::audit::Presented::of(&values);
            super::audit::auth_failure(audit, &failure, &presented, remote).await;
            debug!(reason = %failure.detail, status = failure.status(), "refused request: authentication");
            let status = StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let code = match failure.kind {
                FailureKind::Malformed => ErrorCode::InvalidRequest,
                FailureKind::Unavailable => ErrorCode::InternalError,
                FailureKind::Missing | FailureKind::Invalid | FailureKind::InsufficientScope => {
                    ErrorCode::Denied
                }
            };
            let mut response = Rejection::new(status, code, failure.message()).response(None);
            if let Some(challenge) = authenticator
                .challenge(&failure)
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            }
            Err(response)
        }
    }
}
