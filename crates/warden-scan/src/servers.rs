//! The MCP servers a configuration file declares, read without starting anything.

use std::path::Path;

use serde::Serialize;

use crate::clients::{ConfigLocation, Format};
use crate::jsonc::{self, Node};

/// How a client reaches a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Transport {
    /// A local process speaking stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables the client sets (values as written in the file).
        env: Vec<(String, String)>,
    },
    /// A remote server (Streamable HTTP or SSE).
    Remote {
        /// Its URL.
        url: String,
        /// Headers the client sends (values as written in the file).
        headers: Vec<(String, String)>,
    },
}

/// One configured server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerEntry {
    /// The server's name in the file.
    pub name: String,
    /// Where it is configured.
    pub location: ConfigLocation,
    /// Path of the entry inside the file, e.g. `mcpServers.github`.
    pub field: String,
    /// 1-based line of the entry's name in the file.
    pub line: usize,
    /// 1-based lines of the entry's own fields (`command`, `args`, `url`, `env.NAME`,
    /// `headers.NAME`), where the file format tells them.
    #[serde(skip)]
    pub field_lines: std::collections::BTreeMap<String, usize>,
    /// How it is reached; `None` when the entry has neither a command nor a URL.
    pub transport: Option<Transport>,
    /// The client marks it disabled.
    pub disabled: bool,
}

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not valid JSON(C).
    #[error("`{path}` is not valid JSON")]
    Json {
        /// The file.
        path: String,
        /// Where.
        #[source]
        source: jsonc::JsoncError,
    },
    /// Not valid TOML.
    #[error("`{path}` is not valid TOML")]
    Toml {
        /// The file.
        path: String,
        /// Where.
        #[source]
        source: toml_edit::TomlError,
    },
}

/// The byte offset → 1-based line number of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Where the servers object(s) of a JSON(C) file are, with their field paths.
pub(crate) fn server_tables(root: &Node, format: Format) -> Vec<(String, &Node)> {
    let mut out = Vec::new();
    match format {
        Format::McpServers => {
            if let Some(n) = root.get("mcpServers") {
                out.push(("mcpServers".to_owned(), n));
            }
        }
        Format::ClaudeCodeUser => {
            if let Some(n) = root.get("mcpServers") {
                out.push(("mcpServers".to_owned(), n));
            }
            if let Some(projects) = root.get("projects") {
                for p in projects.members() {
                    if let Some(n) = p.value.get("mcpServers") {
                        out.push((format!("projects.{}.mcpServers", p.key), n));
                    }
                }
            }
        }
        Format::VsCodeServers => {
            if let Some(n) = root.get("servers") {
                out.push(("servers".to_owned(), n));
            }
        }
        Format::VsCodeSettings => {
            if let Some(n) = root.get("mcp").and_then(|m| m.get("servers")) {
                out.push(("mcp.servers".to_owned(), n));
            }
        }
        Format::ZedContextServers => {
            if let Some(n) = root.get("context_servers") {
                out.push(("context_servers".to_owned(), n));
            }
        }
        Format::CodexToml => {}
    }
    out
}

fn string_map(node: Option<&Node>) -> Vec<(String, String)> {
    node.map(|n| {
        n.members()
            .iter()
            .map(|m| {
                let v = match &m.value {
                    Node::String { value, .. } => value.clone(),
                    other => other.to_value().to_string(),
                };
                (m.key.clone(), v)
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The transport of one JSON(C) server entry, whatever the client's dialect.
pub(crate) fn json_transport(entry: &Node) -> Option<Transport> {
    // Zed's older form nests the command: {"command": {"path", "args", "env"}}.
    if let Some(cmd @ Node::Object { .. }) = entry.get("command") {
        return Some(Transport::Stdio {
            command: cmd.get("path")?.as_str()?.to_owned(),
            args: cmd
                .get("args")
                .and_then(Node::as_str_array)
                .unwrap_or_default(),
            env: string_map(cmd.get("env")),
        });
    }
    if let Some(command) = entry.get("command").and_then(Node::as_str) {
        return Some(Transport::Stdio {
            command: command.to_owned(),
            args: entry
                .get("args")
                .and_then(Node::as_str_array)
                .unwrap_or_default(),
            env: string_map(entry.get("env")),
        });
    }
    // `url` (most), `serverUrl` (Windsurf), `httpUrl` (Gemini CLI).
    let url = ["url", "serverUrl", "httpUrl"]
        .iter()
        .find_map(|k| entry.get(k).and_then(Node::as_str))?;
    Some(Transport::Remote {
        url: url.to_owned(),
        headers: string_map(entry.get("headers")),
    })
}

/// Every server declared in `text`, the content of the file at `location`.
pub fn read_servers(location: &ConfigLocation, text: &str) -> Result<Vec<ServerEntry>, ReadError> {
    let display = location.path.display().to_string();
    if location.format == Format::CodexToml {
        return read_codex(location, text).map_err(|source| ReadError::Toml {
            path: display,
            source,
        });
    }
    let root = jsonc::parse(text).map_err(|source| ReadError::Json {
        path: display,
        source,
    })?;
    let mut out = Vec::new();
    for (field, table) in server_tables(&root, location.format) {
        for m in table.members() {
            let disabled = m.value.get("disabled").map(Node::to_value)
                == Some(serde_json::Value::Bool(true))
                || m.value.get("enabled").map(Node::to_value)
                    == Some(serde_json::Value::Bool(false));
            let mut field_lines = std::collections::BTreeMap::new();
            let holder = match m.value.get("command") {
                Some(c @ Node::Object { .. }) => c,
                _ => &m.value,
            };
            for (prefix, node) in [("", &m.value), ("", holder)] {
                for f in node.members() {
                    field_lines.insert(
                        format!("{prefix}{}", f.key),
                        line_of(text, f.key_span.start),
                    );
                    if matches!(f.key.as_str(), "env" | "headers") {
                        for v in f.value.members() {
                            field_lines.insert(
                                format!("{}.{}", f.key, v.key),
                                line_of(text, v.key_span.start),
                            );
                        }
                    }
                }
            }
            out.push(ServerEntry {
                name: m.key.clone(),
                location: location.clone(),
                field: format!("{field}.{}", m.key),
                line: line_of(text, m.key_span.start),
                field_lines,
                transport: json_transport(&m.value),
                disabled,
            });
        }
    }
    Ok(out)
}

fn toml_strings(item: Option<&toml_edit::Item>) -> Vec<String> {
    item.and_then(toml_edit::Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn toml_map(item: Option<&toml_edit::Item>) -> Vec<(String, String)> {
    let Some(item) = item else { return vec![] };
    let pairs: Vec<(String, String)> = if let Some(t) = item.as_table_like() {
        t.iter()
            .map(|(k, v)| {
                let s = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string().trim().to_owned());
                (k.to_owned(), s)
            })
            .collect()
    } else {
        vec![]
    };
    pairs
}

fn read_codex(
    location: &ConfigLocation,
    text: &str,
) -> Result<Vec<ServerEntry>, toml_edit::TomlError> {
    let doc: toml_edit::DocumentMut = text.parse()?;
    let mut out = Vec::new();
    let Some(servers) = doc
        .get("mcp_servers")
        .and_then(toml_edit::Item::as_table_like)
    else {
        return Ok(out);
    };
    for (name, item) in servers.iter() {
        let transport = if let Some(command) = item.get("command").and_then(toml_edit::Item::as_str)
        {
            Some(Transport::Stdio {
                command: command.to_owned(),
                args: toml_strings(item.get("args")),
                env: toml_map(item.get("env")),
            })
        } else {
            item.get("url")
                .and_then(toml_edit::Item::as_str)
                .map(|url| Transport::Remote {
                    url: url.to_owned(),
                    headers: toml_map(item.get("http_headers")),
                })
        };
        let line = find_toml_header(text, name)
            .map(|o| line_of(text, o))
            .unwrap_or(1);
        out.push(ServerEntry {
            name: name.to_owned(),
            location: location.clone(),
            field: format!("mcp_servers.{name}"),
            line,
            field_lines: std::collections::BTreeMap::new(),
            transport,
            disabled: item.get("enabled").and_then(toml_edit::Item::as_bool) == Some(false),
        });
    }
    Ok(out)
}

/// Offset of `[mcp_servers.<name>]` (bare or quoted) in `text`.
fn find_toml_header(text: &str, name: &str) -> Option<usize> {
    [
        format!("[mcp_servers.{name}]"),
        format!("[mcp_servers.\"{name}\"]"),
    ]
    .iter()
    .find_map(|h| text.find(h.as_str()))
}

/// Reads a file and its servers; a missing file is `Ok(None)`.
pub fn read_file(location: &ConfigLocation) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(&location.path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The program name of `command` without directories or a Windows extension.
pub fn program_name(command: &str) -> &str {
    let base = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(command);
    base.strip_suffix(".exe")
        .or_else(|| base.strip_suffix(".cmd"))
        .unwrap_or(base)
}
