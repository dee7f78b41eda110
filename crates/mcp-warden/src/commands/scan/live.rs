//! Live analysis for `scan --start` / `--connect`: each server is started under the gateway's
//! sandbox (stdio) or connected to (remote) through the gateway's own upstream transports,
//! with a timeout, and its tools, prompts, resources and instructions go through the
//! detection engine. Nothing is sent to any service but the server itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use warden_detect::{Finding, ServerTools, Severity};
use warden_guard::{Pipeline, Principal};
use warden_proto::{Limits, decode};
use warden_scan::{ScanFinding, ServerEntry, Transport as ConfigTransport};
use warden_session::{
    EraPreference, Face, Gateway, GatewayOptions, Handler, Reply, Transport, UpstreamDef,
};
use warden_upstream::{HttpSpec, StdioSpec};

/// Most servers analysed at once: start-up dominates, and each may be a heavy process.
const CONCURRENCY: usize = 4;

/// What the scan may do.
#[derive(Debug, Clone)]
pub(crate) struct Consent {
    /// Start stdio servers (runs the commands in the configs, sandboxed).
    pub(crate) start: bool,
    /// Connect to remote servers.
    pub(crate) connect: bool,
    /// Longest wait for one server's start-up and listings.
    pub(crate) timeout: Duration,
    /// Roots trusted besides the Mozilla ones for remote servers (`--ca-file`).
    pub(crate) tls: warden_http::TlsOptions,
}

/// What one server exposed.
struct Fetched {
    tools: Vec<Value>,
    prompts: Vec<Value>,
    resources: Vec<Value>,
    instructions: Option<String>,
}

/// Expands `${env:VAR}`, `${VAR}` and `$VAR` from the scanner's environment; anything else
/// (`${input:...}`) stays unresolved and is passed empty.
fn expand(value: &str) -> String {
    let v = value.trim();
    let name = v
        .strip_prefix("${env:")
        .or_else(|| v.strip_prefix("${"))
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| v.strip_prefix('$'));
    match name {
        Some(n) if n.starts_with("input:") => String::new(),
        Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            std::env::var(n).unwrap_or_default()
        }
        _ => value.to_owned(),
    }
}

fn def_for(entry: &ServerEntry, consent: &Consent) -> Result<Option<UpstreamDef>, String> {
    let config = warden_config::Config::default();
    let transport = match &entry.transport {
        Some(ConfigTransport::Stdio { command, args, env }) if consent.start => {
            let vars: Vec<(String, String)> =
                env.iter().map(|(k, v)| (k.clone(), expand(v))).collect();
            let prepared = crate::sandbox::prepare(
                &entry.name,
                &config.sandbox,
                command,
                args,
                None,
                vars,
                &crate::commands::env(),
            )
            .map_err(|e| e.to_string())?;
            let mut spec = StdioSpec::new(entry.name.clone(), command.clone());
            spec.args = args.clone();
            spec.env = prepared.env;
            spec.env_clear = true;
            spec.sandbox = prepared.sandbox;
            Transport::Stdio(spec)
        }
        Some(ConfigTransport::Remote { url, headers }) if consent.connect => {
            let url = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
            let mut spec = HttpSpec::new(entry.name.clone(), url);
            spec.headers = headers
                .iter()
                .map(|(k, v)| (k.clone(), expand(v)))
                .collect();
            spec.request_timeout = consent.timeout;
            spec.tls = consent.tls.clone();
            Transport::Http(spec)
        }
        _ => return Ok(None),
    };
    Ok(Some(UpstreamDef {
        name: entry.name.clone(),
        transport,
        era: EraPreference::Auto,
        request_timeout: consent.timeout,
        startup_timeout: consent.timeout,
        namespace: false,
        lifecycle: Default::default(),
    }))
}

async fn call(
    gateway: &Gateway,
    session: &Arc<warden_session::Session>,
    body: Value,
) -> Option<Value> {
    let m = decode(Bytes::from(body.to_string()), &Limits::default()).ok()?;
    let Reply::Stream(mut stream) = gateway.handle(Some(session), &Principal::local(), m).await
    else {
        return None;
    };
    while let Some(m) = stream.next().await {
        if m.is_response() {
            return Some(m.into_value());
        }
    }
    None
}

/// Every page of `method`'s `key` list.
async fn list_all(
    gateway: &Gateway,
    session: &Arc<warden_session::Session>,
    method: &str,
    key: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<Value> = None;
    for id in 10..60 {
        let mut params = json!({});
        if let Some(c) = &cursor {
            params["cursor"] = c.clone();
        }
        let Some(r) = call(
            gateway,
            session,
            json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}),
        )
        .await
        else {
            break;
        };
        if let Some(items) = r["result"][key].as_array() {
            out.extend(items.iter().cloned());
        }
        match r["result"].get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => break,
        }
    }
    out
}

async fn fetch(def: UpstreamDef, timeout: Duration) -> Result<Fetched, String> {
    let work = async {
        let gateway = Gateway::start(
            vec![def],
            Pipeline::passthrough(),
            GatewayOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        // The gateway answers `initialize` itself: a server that could not be reached or did
        // not complete its handshake would otherwise look like one that exposes nothing.
        if !gateway.upstreams_undescribed().is_empty() {
            gateway.shutdown().await;
            return Err(
                "the server could not be reached or did not complete the MCP handshake \
                        (MCP_WARDEN_LOG=error shows why)"
                    .into(),
            );
        }
        let session = gateway
            .open_session(Principal::local(), Face::Http)
            .await
            .map_err(|e| e.to_string())?;
        let init = call(
            &gateway,
            &session,
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-warden-scan","version":env!("CARGO_PKG_VERSION")}}}),
        )
        .await;
        let result = init.as_ref().and_then(|r| r.get("result"));
        let Some(result) = result else {
            gateway.shutdown().await;
            let why = init
                .and_then(|r| r["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no answer to initialize".into());
            return Err(why);
        };
        let instructions = result["instructions"].as_str().map(str::to_owned);
        let caps = result["capabilities"].clone();
        let tools = list_all(&gateway, &session, "tools/list", "tools").await;
        let prompts = if caps.get("prompts").is_some() {
            list_all(&gateway, &session, "prompts/list", "prompts").await
        } else {
            vec![]
        };
        let resources = if caps.get("resources").is_some() {
            list_all(&gateway, &session, "resources/list", "resources").await
        } else {
            vec![]
        };
        gateway.shutdown().await;
        Ok(Fetched {
            tools,
            prompts,
            resources,
            instructions,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

fn to_scan(entry: &ServerEntry, what: &str, f: Finding) -> ScanFinding {
    ScanFinding {
        rule: f.rule,
        severity: f.severity,
        file: entry.location.path.display().to_string(),
        line: entry.line,
        client: entry.location.client,
        server: entry.name.clone(),
        message: format!("{what}: {}", f.location),
        evidence: f.evidence,
    }
}

/// For an `https` server: `Some(reason)` when its certificate is refused (untrusted issuer,
/// expired, wrong name). Any HTTP answer, even an error status, means TLS itself is sound.
async fn tls_problem(
    url: &str,
    timeout: Duration,
    tls: &warden_http::TlsOptions,
) -> Option<String> {
    if !url.starts_with("https://") {
        return None;
    }
    let uri = url::Url::parse(url)
        .ok()
        .and_then(|u| warden_http::uri(&u).ok())?;
    let limit = timeout.min(Duration::from_secs(10));
    let client = warden_http::Client::with_tls(limit, tls.clone());
    let request = warden_http::request(
        http::Method::GET,
        uri,
        http::HeaderMap::new(),
        bytes::Bytes::new(),
    );
    let err = match tokio::time::timeout(limit, client.send(request)).await {
        Ok(Err(err)) => err,
        // An answer (any status), or no answer in time: nothing says the certificate is bad.
        Ok(Ok(_)) | Err(_) => return None,
    };
    let text = err.chain();
    let lower = text.to_lowercase();
    (lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("notvalidforname"))
    .then_some(text)
}

/// Starts or connects to each server the consent allows and analyses what it exposes.
pub(crate) async fn analyse(entries: &[ServerEntry], consent: Consent) -> Vec<ScanFinding> {
    let consent = &consent;
    let jobs = entries
        .iter()
        .filter(|e| !e.disabled)
        .filter_map(|e| match def_for(e, consent) {
            Ok(Some(def)) => Some((e, Ok(def))),
            Ok(None) => None,
            Err(why) => Some((e, Err(why))),
        });
    let results: Vec<(&ServerEntry, Result<Fetched, String>)> = futures::stream::iter(jobs)
        .map(|(e, def)| async move {
            match def {
                Ok(mut def) => {
                    // Speak the initialize-based era first: the listings below use it, and a
                    // dual-era stdio server would otherwise be started twice (once per era).
                    // A server that only speaks the stateless era is retried with detection.
                    let auto = def.clone();
                    def.era = EraPreference::Legacy;
                    match fetch(def, consent.timeout).await {
                        Ok(f) => (e, Ok(f)),
                        Err(_) => (e, fetch(auto, consent.timeout).await),
                    }
                }
                Err(why) => (e, Err(why)),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::new();
    if consent.connect {
        for e in entries.iter().filter(|e| !e.disabled) {
            if let Some(ConfigTransport::Remote { url, .. }) = &e.transport
                && let Some(why) = tls_problem(url, consent.timeout, &consent.tls).await
            {
                out.push(ScanFinding {
                    rule: "server.bad-tls",
                    severity: Severity::High,
                    file: e.location.path.display().to_string(),
                    line: e.line,
                    client: e.location.client,
                    server: e.name.clone(),
                    message: "the server's TLS certificate is not valid for it: a client that accepts it can be impersonated".into(),
                    evidence: why,
                });
            }
        }
    }
    let mut fetched: Vec<(&ServerEntry, Fetched)> = Vec::new();
    for (e, r) in results {
        match r {
            Ok(f) => fetched.push((e, f)),
            Err(why) => out.push(ScanFinding {
                rule: "server.unreachable",
                severity: Severity::Low,
                file: e.location.path.display().to_string(),
                line: e.line,
                client: e.location.client,
                server: e.name.clone(),
                message: format!("could not be analysed: {why}"),
                evidence: String::new(),
            }),
        }
    }
    fetched.sort_by(|a, b| (&a.0.location.path, a.0.line).cmp(&(&b.0.location.path, b.0.line)));
    // Definitions of all servers together: the engine's cross-server checks (the same or a
    // look-alike tool name on two servers, references to another server's tools) need them
    // side by side.
    let sets: Vec<ServerTools<'_>> = fetched
        .iter()
        .map(|(e, f)| ServerTools {
            server: &e.name,
            tools: &f.tools,
        })
        .collect();
    let analysed = warden_detect::analyze_servers(&sets);
    for ((e, f), per_tool) in fetched.iter().zip(analysed) {
        for (tool, findings) in f.tools.iter().zip(per_tool) {
            let name = tool["name"].as_str().unwrap_or("?");
            for finding in findings {
                out.push(to_scan(e, &format!("tool `{name}`"), finding));
            }
        }
        if let Some(i) = &f.instructions {
            for finding in warden_detect::analyze_instructions(i) {
                out.push(to_scan(e, "server instructions", finding));
            }
        }
        for (kind, items) in [("prompt", &f.prompts), ("resource", &f.resources)] {
            for item in items {
                let name = item["name"].as_str().unwrap_or("?");
                let text = [item.get("description"), item.get("title")]
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n");
                for finding in
                    warden_detect::analyze_text(&text, warden_detect::TextKind::ToolDescription)
                {
                    out.push(to_scan(e, &format!("{kind} `{name}`"), finding));
                }
            }
        }
    }
    out
}
