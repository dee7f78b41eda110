//! Integration tests of the request guards through a real `mcp-warden serve` live in the
//! `mcp-warden` crate; these run the guards in a real pipeline.
