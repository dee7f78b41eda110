//! A small seeded mutator for the stable harness: no coverage feedback, so it leans on
//! structure-aware tokens (a dictionary per target), splicing between corpus entries and
//! repetition (deep nesting, long lines) to reach the parsers' edge cases.

use crate::splitmix;

/// A deterministic pseudo-random source (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Tokens worth inserting, per target.
pub fn dictionary(target: &str) -> &'static [&'static [u8]] {
    match target {
        "jsonrpc_decode" => &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b" ",
            b"\\",
            b"\\u0000",
            b"\\ud800",
            b"\\udc00",
            b"\\u0069d",
            b"\\u006e",
            b"\\\"",
            b"\"jsonrpc\":\"2.0\"",
            b"\"jsonrpc\":\"1.0\"",
            b"\"id\":",
            b"\"\\u0069d\":",
            b"\"method\":",
            b"\"params\":",
            b"\"result\":",
            b"\"error\":",
            b"{\"code\":-32600,\"message\":\"x\"}",
            b"{\"code\":1.5,\"message\":\"x\"}",
            b"null",
            b"true",
            b"false",
            b"0",
            b"-0",
            b"1.0",
            b"1e309",
            b"-1e-400",
            b"18446744073709551615",
            b"18446744073709551616",
            b"-9223372036854775809",
            b"0.1e1",
            b"123456789012345678901234567890",
            b"\xff",
            b"\xc3\xa9",
            b"\xed\xa0\x80",
            b"\xf0\x9f\x98\x80",
            b"\x00",
            b"\n",
            b"\t",
        ],
        "stdio_framing" => &[
            b"\n", b"\r", b"\r\n", b" ", b"\t", b"{}", b"\n\n", b"\r\r\n",
        ],
        "sse_event" => &[
            b"data:",
            b"data: ",
            b"id:",
            b"id: ",
            b"event:",
            b"retry:",
            b"retry: 100",
            b":",
            b": keep-alive",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b"\r\n\r\n",
            b"\r\r",
            b"\xEF\xBB\xBF",
            b"\x00",
            b"\xff",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        ],
        "config_parse" => &[
            b"\n",
            b"[upstreams.a]\n",
            b"[upstreams.\"x y\"]\n",
            b"[[upstreams]]\n",
            b"command = \"x\"\n",
            b"url = \"http://127.0.0.1/mcp\"\n",
            b"url = \"ftp://u:p@h/#f\"\n",
            b"args = [\"a\", 1]\n",
            b"env = { A = \"env:B\", \"=\" = \"file:\" }\n",
            b"headers = { Host = \"x\", host = \"y\" }\n",
            b"era = \"modern\"\n",
            b"shutdown_grace = \"0s\"\n",
            b"request_timeout = \"400days\"\n",
            b"listen = \"127.0.0.1:0\"\n",
            b"listen = 8080\n",
            b"allowed_hosts = []\n",
            b"allowed_origins = [\"http://[::1]:*\"]\n",
            b"[limits]\n",
            b"max_depth = 0\n",
            b"max_message_bytes = 1_073_741_825\n",
            b"[http]\n",
            b"tls_cert = \"\"\n",
            b"=",
            b"\"",
            b"'''",
            b"\"\"\"",
            b"[",
            b"]",
            b"{",
            b"}",
            b".",
            b"#",
            b"\r\n",
            b"\\u0000",
            b"\x00",
            b"1979-05-27T07:32:00Z",
            b"inf",
            b"nan",
            b"0x1F",
        ],
        "audit_line" => &[
            b"\n",
            b"{\"seq\":",
            b",\"rec\":",
            b",\"prev\":\"",
            b"\",\"hash\":\"",
            b"\",\"mac\":\"",
            b"\"}",
            b"0000000000000000000000000000000000000000000000000000000000000000",
            b"{\"ts\":\"2026-01-01T00:00:00Z\",\"event\":\"checkpoint\",\"covers_seq\":0}",
            b"\"event\":\"checkpoint\"",
            b"\"sig\":\"",
            b"18446744073709551615",
            b"18446744073709551616",
            b"00",
            b"{}",
            b"\xff",
        ],
        "hidden_tags" => &[
            b"<!--",
            b"-->",
            b"<SECRET>",
            b"</SECRET>",
            b"<important ",
            b"</Important>",
            b"<system>",
            b"<",
            b">",
            b"\xe2\x80\xb9",
            b"\xe2\x80\xba",
            b"{\"text\":\"",
            b"\"}",
        ],
        "redact" => &[
            b"\n",
            b"password = ",
            b"\"api_key\": \"",
            b"AKIA",
            b"ghp_",
            b"xoxb-",
            b"sk-proj-",
            b"T3BlbkFJ",
            b"eyJhbGciOiJIUzI1NiJ9.",
            b"-----BEGIN PRIVATE KEY-----\n",
            b"-----END PRIVATE KEY-----",
            b"@example.com",
            b"+1 415 555 2671",
            b"4111 1111 1111 1111",
            b"DE89 3704 0044 0532 0130 00",
            b"123-45-6789",
            b"abandon ",
            b"[REDACTED:",
            b"://user:",
            b"\xc3\xa9",
            b"\xe2\x80\xae",
        ],
        "detect_text" | "detect_tool" => &[
            b"ignore",
            b" previous instructions",
            b"<IMPORTANT>",
            b"</IMPORTANT>",
            b"<!--",
            b"-->",
            b"\xe2\x80\x8b",
            b"\xe2\x80\xae",
            b"\xf3\xa0\x81\x81",
            b"\x1b[",
            b"\x1b]52;",
            b"![x](http://a?q={",
            b"SWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM=",
            b"%49%67%6e",
            b"System:",
            b"~/.ssh/id_rsa",
            b"send",
            b"`x_y`",
            b"@a.bc",
            b"e.g. ",
            b"\"description\":",
            b"\"name\":",
            b"\"enum\":[",
            b"\"properties\":{",
            b"\"readOnlyHint\":true",
            b"\xe5\xbf\xbd\xe7\x95\xa5",
            b"<|im_start|>",
        ],
        "policy_eval" => &[
            b"\n",
            b"*",
            b"\"",
            b"\\",
            b"\\*",
            b"/",
            b"\")",
            b";",
            b"permit(",
            b"when {",
            b"}",
            b"{\"__entity\":{\"type\":\"Principal\",\"id\":\"u\"}}",
            b"{\"__extn\":",
            b"{\"x\":",
            b"[",
            b"]",
            b"null",
            b"1e400",
            b"-9223372036854775808",
            b"\xc3\xa9",
        ],
        "jwt_parse" => &[
            b"\n",
            b".",
            b"eyJhbGciOiJub25lIn0",
            b"eyJhbGciOiJFZERTQSJ9",
            b"eyJhbGciOiJIUzI1NiJ9",
            b"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"",
            b"{\"kty\":\"RSA\",\"n\":\"",
            b"\"aud\":[",
            b"\"exp\":1e308",
            b"\"nbf\":-1",
            b"\"crit\":[]",
        ],
        "trace_context" => &[
            b"\"traceparent\":",
            b"\"tracestate\":",
            b"\"_meta\":",
            b"\"params\":",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"-00000000000000000000000000000000-",
            b"-0000000000000000-",
            b"4BF92F35",
            b"\"\\u005fmeta\"",
            b"null",
            b"[]",
            b"{}",
        ],
        "egress_allow" => &[
            b"\n",
            b",",
            b"*.",
            b":443",
            b"[::1]:",
            b"[::ffff:127.0.0.1]:",
            b"127.0.0.1:",
            b"0x7f.1",
            b"api.github.com:443",
            b".",
            b"-",
        ],
        "launcher_spec" => &[
            b"\n",
            b"\0",
            b"@",
            b"==",
            b"===",
            b"://",
            b"git+https://",
            b"github:",
            b"#",
            b"@sha256:",
            b":latest",
            b"--from",
            b"--package=",
            b"-p",
            b"--",
            b"-m",
            b"run",
            b"dlx",
            b"npx",
            b"uvx",
            b"docker",
        ],
        _ => &[b"\n"],
    }
}

/// Mutates `input` in place with 1 to 8 random edits, keeping it at most `max_len` bytes.
pub fn mutate(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    corpus: &[Vec<u8>],
    dict: &[&[u8]],
    max_len: usize,
) {
    let edits = 1 + rng.below(8);
    for _ in 0..edits {
        let len = input.len();
        match rng.below(11) {
            // Flip a bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // Overwrite a byte (biased to ASCII).
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = if rng.one_in(4) {
                    rng.next_u64() as u8
                } else {
                    (rng.below(95) + 32) as u8
                };
            }
            // Insert a random byte.
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next_u64() as u8);
            }
            // Delete a range.
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            // Duplicate a range in place.
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let copy = input[i..i + n].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, copy);
            }
            // Repeat a short range many times: deep nesting, long lines, many keys.
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                let most = if rng.one_in(4) { 2000 } else { 70 };
                let times = 1 + rng.below(most);
                let copy = input[i..i + n].repeat(times);
                input.splice(i..i, copy);
            }
            // Splice with another corpus entry.
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let at = rng.below(len + 1);
                    input.truncate(at);
                    input.extend_from_slice(&other[from..]);
                }
            }
            // Swap two bytes.
            7 if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                input.swap(a, b);
            }
            // Change the two header bytes (limits, chunking) of framing and SSE inputs.
            8 if len > 1 => {
                input[rng.below(2)] = rng.next_u64() as u8;
            }
            // Insert or overwrite with a dictionary token (the most productive edit).
            _ => {
                let token = dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                if rng.one_in(3) && at + token.len() <= len {
                    input[at..at + token.len()].copy_from_slice(token);
                } else {
                    input.splice(at..at, token.iter().copied());
                }
            }
        }
        if input.len() > max_len {
            input.truncate(max_len);
        }
    }
}
