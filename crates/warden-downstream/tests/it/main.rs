//! Integration tests of the downstream transports, over real TCP on 127.0.0.1:0 and real
//! in-memory pipes, against a test handler.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a broken fixture should fail loudly"
)]

mod cors;
mod http;
mod modern;
mod rate_limited;
mod stdio;
mod support;
mod tls;
