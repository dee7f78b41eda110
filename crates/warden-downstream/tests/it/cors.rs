//! Cross-origin requests: preflights and the headers that let a page read an answer, for the
//! configured CORS origins only.

use http::{HeaderMap, StatusCode};
use serde_json::json;
use warden_config::{OriginAllowlist, OriginPattern};

use crate::support::{Server, bounded};

const PAGE: &str = "http://localhost:5173";

fn cors_for(origins: &[&str]) -> impl FnOnce(&mut warden_downstream::HttpOptions) {
    let patterns = origins
        .iter()
        .map(|o| OriginPattern::parse(o).unwrap())
        .collect();
    move |opts| opts.cors_origins = OriginAllowlist::new(patterns)
}

/// `OPTIONS /mcp` as a browser sends it before a page's POST.
fn preflight(
    server: &Server,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut builder = server
        .request("OPTIONS")
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        builder = builder.header("access-control-request-headers", headers);
    }
    builder.body(Default::default()).unwrap()
}

fn initialize_body() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}}})
}

fn has_no_cors(headers: &HeaderMap) -> bool {
    !headers.contains_key("access-control-allow-origin")
        && !headers.contains_key("access-control-allow-methods")
        && !headers.contains_key("access-control-expose-headers")
}

// Proves: CAUTH-3 (cross-origin reads only for the configured origins, after the Origin check).
#[tokio::test]
async fn a_configured_origin_gets_its_preflight_approved_and_reads_the_answers() {
    bounded(async {
        let server = Server::start(cors_for(&[PAGE])).await;

        let (status, headers, _) = server
            .call(preflight(
                &server,
                PAGE,
                "POST",
                Some("Content-Type, Authorization, MCP-Protocol-Version, mcp-session-id, Mcp-Param-Region"),
            ))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers["access-control-allow-origin"], PAGE);
        assert_eq!(headers["access-control-allow-methods"], "GET, POST, DELETE");
        assert_eq!(
            headers["access-control-allow-headers"],
            "content-type, authorization, mcp-protocol-version, mcp-session-id, mcp-param-region"
        );
        assert_eq!(headers["access-control-max-age"], "600");
        assert!(
            !headers.contains_key("access-control-allow-credentials"),
            "credentials mode is never enabled"
        );
        assert!(
            server.handler.methods().is_empty(),
            "a preflight never reaches the handler"
        );

        // The page's request: the answer names the page and exposes the session id.
        let mut post = server.post(&initialize_body());
        post.headers_mut().insert("origin", PAGE.parse().unwrap());
        let (status, headers, _) = server.call(post).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["access-control-allow-origin"], PAGE);
        let exposed = headers["access-control-expose-headers"].to_str().unwrap();
        for name in ["Mcp-Session-Id", "WWW-Authenticate", "Retry-After"] {
            assert!(exposed.contains(name), "{exposed}");
        }
        assert_eq!(headers["vary"], "Origin");
        assert!(headers.contains_key("mcp-session-id"));

        // Errors are readable too: an unknown session is 404 with the page's origin.
        let mut unknown = server.post_in("0123456789abcdef0123456789abcdef", &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        unknown
            .headers_mut()
            .insert("origin", PAGE.parse().unwrap());
        let (status, headers, _) = server.call(unknown).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["access-control-allow-origin"], PAGE);

        // A request without Origin (not a browser) gets no CORS headers.
        let (status, headers, _) = server.call(server.post(&initialize_body())).await;
        assert_eq!(status, StatusCode::OK);
        assert!(has_no_cors(&headers), "{headers:?}");
    })
    .await;
}

#[tokio::test]
async fn every_other_preflight_is_refused_without_cors_headers() {
    bounded(async {
        let server = Server::start(cors_for(&[PAGE])).await;
        // Allowed to send (loopback, any port, by default) but not a CORS origin.
        let other = "http://localhost:3000";
        for (origin, method, headers, status) in [
            (other, "POST", Some("content-type"), StatusCode::FORBIDDEN),
            // Not even allowed to send: the Origin check answers first.
            ("https://evil.example", "POST", None, StatusCode::FORBIDDEN),
            (PAGE, "PUT", None, StatusCode::FORBIDDEN),
            (PAGE, "PATCH", Some("content-type"), StatusCode::FORBIDDEN),
            (
                PAGE,
                "POST",
                Some("content-type, cookie"),
                StatusCode::FORBIDDEN,
            ),
            (PAGE, "POST", Some("x-api-key"), StatusCode::FORBIDDEN),
            (PAGE, "GET", Some("mcp-param-"), StatusCode::FORBIDDEN),
        ] {
            let (got, response_headers, body) = server
                .call_json(preflight(&server, origin, method, headers))
                .await;
            assert_eq!(got, status, "{origin} {method} {headers:?}: {body}");
            assert!(
                has_no_cors(&response_headers),
                "{origin} {method} {headers:?}: {response_headers:?}"
            );
            assert_eq!(body["error"]["code"], -32600, "{body}");
        }

        // The same page's actual request from the non-CORS origin is served (the Origin
        // allow-list admits it) but not readable by the page.
        let mut post = server.post(&initialize_body());
        post.headers_mut().insert("origin", other.parse().unwrap());
        let (status, headers, _) = server.call(post).await;
        assert_eq!(status, StatusCode::OK);
        assert!(has_no_cors(&headers), "{headers:?}");
        assert_eq!(
            headers["vary"], "Origin",
            "the answer depends on the origin"
        );

        // OPTIONS that is not a preflight is still 405; a preflight elsewhere is 404.
        let plain = server
            .request("OPTIONS")
            .header("origin", PAGE)
            .body(Default::default())
            .unwrap();
        let (status, headers, _) = server.call(plain).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, POST, DELETE");
        let mut elsewhere = preflight(&server, PAGE, "POST", None);
        *elsewhere.uri_mut() = "/other".parse().unwrap();
        let (status, _, _) = server.call(elsewhere).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            server.handler.methods().len() == 1,
            "{:?}",
            server.handler.methods()
        );
    })
    .await;
}

#[tokio::test]
async fn without_cors_origins_no_page_may_read_and_every_preflight_is_refused() {
    bounded(async {
        let server = Server::start(|_| {}).await;
        let origin = format!("http://localhost:{}", server.addr.port());
        let (status, headers, _) = server
            .call(preflight(&server, &origin, "POST", Some("content-type")))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(has_no_cors(&headers), "{headers:?}");

        let mut post = server.post(&initialize_body());
        post.headers_mut().insert("origin", origin.parse().unwrap());
        let (status, headers, _) = server.call(post).await;
        assert_eq!(status, StatusCode::OK);
        assert!(has_no_cors(&headers), "{headers:?}");
        assert!(!headers.contains_key("vary"), "{headers:?}");
    })
    .await;
}

/// With OAuth configured: a page's preflight is approved without credentials, the 401 its
/// request then gets names the page and exposes the challenge, and the RFC 9728 metadata (a
/// page reads it to find the authorization server) answers preflights and names the page too.
#[tokio::test]
async fn a_page_can_read_the_challenge_and_the_resource_metadata() {
    bounded(async {
        // Nothing is fetched from the issuer for any of this (no token is presented).
        let config = warden_config::Config::parse(
            "[auth]\nresource = \"http://localhost/mcp\"\nissuer = \"https://issuer.invalid\"\n",
            "warden.toml",
        )
        .unwrap();
        let auth = warden_auth::Authenticator::new(&config.auth, None, None).unwrap();
        let server = Server::start(|opts| {
            cors_for(&[PAGE])(opts);
            opts.auth = Some(warden_downstream::http::HttpAuth(std::sync::Arc::new(auth)));
        })
        .await;

        let (status, headers, _) = server
            .call(preflight(
                &server,
                PAGE,
                "POST",
                Some("content-type, authorization"),
            ))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers["access-control-allow-origin"], PAGE);

        let mut post = server.post(&initialize_body());
        post.headers_mut().insert("origin", PAGE.parse().unwrap());
        let (status, headers, _) = server.call(post).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["access-control-allow-origin"], PAGE);
        assert!(headers.contains_key("www-authenticate"));
        assert!(
            headers["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("WWW-Authenticate")
        );

        for path in [
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
        ] {
            let mut pre = preflight(&server, PAGE, "GET", None);
            *pre.uri_mut() = path.parse().unwrap();
            let (status, headers, _) = server.call(pre).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{path}");
            assert_eq!(headers["access-control-allow-origin"], PAGE, "{path}");

            let get = server
                .request("GET")
                .uri(path)
                .header("origin", PAGE)
                .body(Default::default())
                .unwrap();
            let (status, headers, body) = server.call_json(get).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body["resource"], "http://localhost/mcp", "{body}");
            assert_eq!(headers["access-control-allow-origin"], PAGE, "{path}");
            assert_eq!(headers["vary"], "Origin", "{path}");
        }
        // Another page's preflight of the metadata is refused like any other.
        let mut pre = preflight(&server, "http://localhost:3000", "GET", None);
        *pre.uri_mut() = "/.well-known/oauth-protected-resource".parse().unwrap();
        let (status, headers, _) = server.call(pre).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(has_no_cors(&headers), "{headers:?}");
    })
    .await;
}
