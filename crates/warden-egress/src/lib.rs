//! The egress proxy of sandboxed stdio upstreams with `network = { allow = [...] }`.
//!
//! Such a server runs in a network namespace of its own with only loopback up: it reaches
//! nothing directly. A forwarder in that namespace (started by `warden-sandbox`'s launcher
//! before the server's restrictions) listens on `127.0.0.1:<port>` and relays every TCP
//! connection to a Unix socket; behind that socket, in the gateway, this crate's [`Proxy`]
//! speaks HTTP `CONNECT` and opens a tunnel only to a `host:port` the [`AllowList`] names.
//! The server finds the forwarder through `HTTPS_PROXY` and friends.
//!
//! The proxy resolves names itself and refuses loopback, private, link-local, metadata and
//! other non-public addresses (classified by [`warden_policy::address`]) unless the allow-list
//! names that address as an IP literal. It logs every allowed and refused tunnel (host, port,
//! reason; never a header: `Proxy-Authorization` is read past, never kept).

pub use warden_config::egress_allow as allow;
pub mod proxy;

pub use proxy::{Decision, Limits, Proxy, ProxyError, ProxyHandle, Refusal};
pub use warden_config::egress_allow::{
    AllowList, AllowListError, HostPattern, Rule, Target, parse_authority,
};
