//! The shared client against real servers on loopback: bounded bodies, redirects returned as
//! answers, timeouts, and URLs it refuses.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use warden_http::{Client, Error};

/// Serves `answer` for every request on a free loopback port; returns the base URL.
async fn serve(
    answer: fn(http::Request<Incoming>) -> http::Response<Full<Bytes>>,
) -> (url::Url, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |r| async move { Ok::<_, Infallible>(answer(r)) });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/path")).expect("a url");
    (url, task)
}

fn get(url: &url::Url) -> warden_http::Request {
    warden_http::request(
        Method::GET,
        warden_http::uri(url).expect("a request target"),
        HeaderMap::new(),
        Bytes::new(),
    )
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the test finished in time")
}

#[tokio::test]
async fn bodies_are_read_under_their_bound() {
    bounded(async {
        let (url, server) = serve(|r| {
            let n = if r.uri().query() == Some("big") {
                2000
            } else {
                1000
            };
            http::Response::new(Full::new(Bytes::from(vec![b'x'; n])))
        })
        .await;
        let client = Client::new(Duration::from_secs(5)).unwrap();
        let fetched = client
            .fetch(get(&url), Duration::from_secs(5), 1000)
            .await
            .unwrap();
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.body.len(), 1000);
        let mut big = url.clone();
        big.set_query(Some("big"));
        let refused = client.fetch(get(&big), Duration::from_secs(5), 1000).await;
        assert!(matches!(refused, Err(Error::TooLarge(1000))), "{refused:?}");
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn a_redirect_is_an_answer_not_followed() {
    // Also: the user agent is set when the request sets none.
    bounded(async {
        let (url, server) = serve(|r| {
            assert_eq!(
                r.headers()["user-agent"].to_str().unwrap(),
                warden_http::USER_AGENT_VALUE
            );
            let mut answer = http::Response::new(Full::new(Bytes::new()));
            *answer.status_mut() = StatusCode::FOUND;
            answer
                .headers_mut()
                .insert("location", "http://127.0.0.1:9/elsewhere".parse().unwrap());
            answer
        })
        .await;
        let client = Client::new(Duration::from_secs(5)).unwrap();
        let fetched = client
            .fetch(get(&url), Duration::from_secs(5), 1000)
            .await
            .unwrap();
        assert_eq!(fetched.status, StatusCode::FOUND);
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out() {
    bounded(async {
        // Accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let client = Client::new(Duration::from_secs(5)).unwrap();
        let error = client
            .fetch(get(&url), Duration::from_millis(200), 1000)
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        server.abort();
    })
    .await;
}

#[test]
fn urls_with_credentials_or_fragments_are_refused() {
    for bad in [
        "http://u:p@127.0.0.1/",
        "http://u@127.0.0.1/",
        "http://127.0.0.1/#f",
    ] {
        let url = url::Url::parse(bad).unwrap();
        assert!(matches!(warden_http::uri(&url), Err(Error::Url)), "{bad}");
    }
    let ok = url::Url::parse("https://127.0.0.1:8443/mcp?x=1").unwrap();
    assert_eq!(
        warden_http::uri(&ok).unwrap().to_string(),
        "https://127.0.0.1:8443/mcp?x=1"
    );
}

/// A server answering every request with 256 KiB (not sent with the head); `keep_alive` false
/// closes each connection after its answer. Returns the URL and the count of connections.
async fn counting_server(
    keep_alive: bool,
) -> (
    url::Url,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|_r| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(vec![
                        b' ';
                        256 * 1024
                    ]))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("a url");
    (url, accepted, server)
}

/// Connections `n` sequential requests open against a `counting_server(keep_alive)`, each
/// answer read to the end. With keep-alive, each request waits until the connection is back
/// in the pool (it goes back from a task of its own).
async fn connections_for(keep_alive: bool, n: usize) -> usize {
    let (url, accepted, server) = counting_server(keep_alive).await;
    let client = Client::new(Duration::from_secs(5)).expect("a client");
    for _ in 0..n {
        let fetched = client
            .fetch(get(&url), Duration::from_secs(5), 1 << 20)
            .await
            .expect("an answer");
        assert_eq!(fetched.body.len(), 256 * 1024);
        if keep_alive {
            while client.idle_connections() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    server.abort();
    accepted.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn connections_are_reused_once_their_answer_is_read() {
    assert_eq!(bounded(connections_for(true, 5)).await, 1);
}

#[tokio::test]
async fn connections_the_server_closes_are_not_reused() {
    assert_eq!(bounded(connections_for(false, 3)).await, 3);
}
