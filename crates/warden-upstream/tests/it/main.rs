//! Integration tests of warden-upstream against real upstream processes and servers (Python
//! fixtures in `tests/fixtures/`, HTTP on 127.0.0.1 only). Every test is bounded by a timeout.

mod http;
mod lifecycle;
mod stdio;
mod support;
