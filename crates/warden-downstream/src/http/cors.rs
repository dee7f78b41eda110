//! Cross-origin requests from browser pages (CORS), for the origins in
//! [`HttpOptions::cors_origins`](super::HttpOptions::cors_origins) only.
//!
//! The `Origin` allow-list decides which pages may *send* requests (the DNS-rebinding defence,
//! 403 for the others); this module decides which of them may *read* the answers. A browser
//! sends a page's MCP request (JSON, with `Mcp-Session-Id` and friends) only after a preflight
//! `OPTIONS` the server approves, and hands the page a response only when it names the page's
//! origin in `Access-Control-Allow-Origin`. So:
//!
//! - a preflight from a CORS origin is approved (204) before authentication, since browsers
//!   never send credentials on a preflight, for `GET`, `POST` and `DELETE` and for the request
//!   headers MCP uses ([`is_allowed_header`]); anything else is refused (403) with the reason;
//! - every response to a CORS origin (errors too: a page must be able to read a 401's
//!   `WWW-Authenticate` to find its authorization server) names that origin, never `*`, and
//!   exposes the headers a client reads (`Mcp-Session-Id`, `WWW-Authenticate`, `Retry-After`,
//!   `MCP-Protocol-Version`);
//! - credentials mode is not enabled (`Access-Control-Allow-Credentials` is never sent): the
//!   gateway authenticates by `Authorization` header, which a page sets itself, and a cookie
//!   the browser would add on its own is never what grants access.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN, VARY,
};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::HttpOptions;
use super::body::{self, Rejection, ResponseBody};

/// How long a browser may cache an approved preflight, in seconds.
pub(crate) const MAX_AGE_SECS: u32 = 600;

/// The methods a page may use.
const METHODS: &str = "GET, POST, DELETE";

/// The response headers a page may read besides the CORS-safelisted ones.
const EXPOSED: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After";

/// Request headers a page may send (lowercase), besides the `Mcp-Param-*` family.
const ALLOWED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "authorization",
    "baggage",
    "content-language",
    "content-type",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
    "traceparent",
    "tracestate",
];

/// Whether a page may send request header `name` (any case): the headers MCP's transports
/// use, W3C trace context, and the safelisted ones a page may still list in its preflight.
pub(crate) fn is_allowed_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ALLOWED_HEADERS.contains(&name.as_str())
        || name
            .strip_prefix("mcp-param-")
            .is_some_and(|rest| !rest.is_empty())
}

/// The request's `Origin`, when it is one of the CORS origins (the caller checked it against
/// the `Origin` allow-list already, and that there is exactly one). The header is echoed as
/// sent, not as the matching pattern spells it: a browser compares `Access-Control-Allow-Origin`
/// with its own serialisation of the origin, byte for byte.
pub(crate) fn origin_of(opts: &HttpOptions, parts: &Parts) -> Option<HeaderValue> {
    if opts.cors_origins.patterns().is_empty() {
        return None;
    }
    let origin = parts.headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    opts.cors_origins
        .allows(text.trim())
        .then(|| origin.clone())
}

/// Whether `parts` is a CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
pub(crate) fn is_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS && parts.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight for a path the server serves. `origin` is the CORS origin it came from,
/// `None` when its origin may not make cross-origin requests.
pub(crate) fn preflight(parts: &Parts, origin: Option<HeaderValue>) -> Response<ResponseBody> {
    let Some(origin) = origin else {
        return refuse("cross-origin requests are not enabled for this origin (cors_origins)");
    };
    let method = parts
        .headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    if !matches!(method, "GET" | "POST" | "DELETE") {
        return refuse("cross-origin requests may use GET, POST and DELETE only");
    }
    // Each Access-Control-Request-Headers field is a comma-separated list of names.
    let mut requested = Vec::new();
    for value in parts.headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let Ok(list) = value.to_str() else {
            return refuse("malformed Access-Control-Request-Headers");
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_allowed_header(name) {
                return refuse(format!(
                    "request header `{name}` is not allowed on cross-origin requests"
                ));
            }
            requested.push(name.to_ascii_lowercase());
        }
    }
    let mut response = body::empty(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(METHODS),
    );
    if !requested.is_empty() {
        // Every name was checked against the list above, so the joined value is a valid header.
        if let Ok(value) = HeaderValue::from_str(&requested.join(", ")) {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
    }
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
    headers.insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

/// Lets the page of `origin` read `response` (an answer to anything but a preflight).
pub(crate) fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    vary(headers);
}

/// Marks `response` as depending on the request's `Origin`.
pub(crate) fn vary(headers: &mut HeaderMap) {
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

/// A refused preflight: 403 without CORS headers, so the browser blocks the request; the body
/// says why, for whoever looks at the network panel.
fn refuse(reason: impl Into<std::borrow::Cow<'static, str>>) -> Response<ResponseBody> {
    Rejection::invalid(StatusCode::FORBIDDEN, reason).response(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_headers_are_allowed_and_others_are_not() {
        for name in [
            "Content-Type",
            "authorization",
            "MCP-Session-Id",
            "mcp-protocol-version",
            "Mcp-Method",
            "mcp-name",
            "Mcp-Param-Region",
            "last-event-id",
            "traceparent",
        ] {
            assert!(is_allowed_header(name), "{name}");
        }
        for name in [
            "cookie",
            "x-api-key",
            "mcp-param-",
            "host",
            "x-forwarded-for",
            "",
        ] {
            assert!(!is_allowed_header(name), "{name}");
        }
    }
}
