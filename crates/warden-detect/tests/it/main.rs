//! Integration tests of the secrets and PII engines: property tests over generated text and
//! JSON, with planted secrets of every format.
#![allow(missing_docs, unreachable_pub)]

#[path = "../common/planted.rs"]
mod planted;

mod redact_props;
