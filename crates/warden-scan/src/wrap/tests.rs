use proptest::prelude::*;

use super::*;
use crate::clients::Format;

const CLAUDE: &str = r#"{
  // my servers
  "mcpServers": {
    "everything": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-everything@2026.8.31"
      ],
      "env": { "DEBUG": "1" }, /* kept */
      "x-vendor": {"keep": true}
    },
    "bare": {"command": "/usr/local/bin/server"},
    "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${env:TOKEN}"}},
  },
  "globalShortcut": "Ctrl+Space"
}
"#;

fn round_trip(text: &str, format: Format) -> (Outcome, Manifest) {
    let mut manifest = Manifest::default();
    let wrapped = wrap(text, format, "mcp-warden", &mut manifest).unwrap();
    let back = unwrap(&wrapped.text, format, &manifest).unwrap();
    assert_eq!(back.text, text, "unwrap(wrap(x)) is x, byte for byte");
    let again = wrap(&wrapped.text, format, "mcp-warden", &mut manifest.clone()).unwrap();
    assert_eq!(again.text, wrapped.text, "wrapping twice changes nothing");
    assert!(again.changed.is_empty());
    (wrapped, manifest)
}

#[test]
fn wraps_stdio_and_remote_entries_and_keeps_everything_else() {
    let (w, _) = round_trip(CLAUDE, Format::McpServers);
    assert_eq!(w.changed.len(), 3, "{:?}", w.skipped);
    let v = jsonc::parse(&w.text).unwrap().to_value();
    let s = &v["mcpServers"];
    assert_eq!(s["everything"]["command"], "mcp-warden");
    assert_eq!(
        s["everything"]["args"],
        serde_json::json!([
            "run",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-everything@2026.8.31"
        ])
    );
    assert_eq!(s["everything"]["env"]["DEBUG"], "1");
    assert_eq!(s["everything"]["x-vendor"]["keep"], true);
    assert_eq!(
        s["bare"]["args"],
        serde_json::json!(["run", "--", "/usr/local/bin/server"])
    );
    assert_eq!(
        s["remote"]["args"],
        serde_json::json!([
            "run",
            "--url",
            "https://mcp.example.com/mcp",
            "--header",
            "Authorization: Bearer ${env:TOKEN}"
        ])
    );
    assert!(s["remote"].get("url").is_none());
    assert!(w.text.contains("// my servers") && w.text.contains("/* kept */"));
    assert_eq!(v["globalShortcut"], "Ctrl+Space");
}

#[test]
fn unwrap_survives_edits_elsewhere_and_restores_edited_entries_by_shape() {
    let mut manifest = Manifest::default();
    let w = wrap(CLAUDE, Format::McpServers, "mcp-warden", &mut manifest).unwrap();
    // The user adds a key elsewhere and reformats one wrapped entry by hand.
    let edited = w.text.replace(
        "\"globalShortcut\"",
        "\"theme\": \"dark\",\n  \"globalShortcut\"",
    );
    let edited = edited.replace(
        r#"{"command": "mcp-warden", "args": ["run", "--", "/usr/local/bin/server"]}"#,
        r#"{"command": "mcp-warden", "args": ["run", "--", "/usr/local/bin/server", "--v"]}"#,
    );
    let back = unwrap(&edited, Format::McpServers, &manifest).unwrap();
    let v = jsonc::parse(&back.text).unwrap().to_value();
    assert_eq!(v["theme"], "dark");
    assert_eq!(v["mcpServers"]["bare"]["command"], "/usr/local/bin/server");
    assert_eq!(v["mcpServers"]["bare"]["args"], serde_json::json!(["--v"]));
    assert!(back.text.contains(
        "\"args\": [\n        \"-y\",\n        \"@modelcontextprotocol/server-everything@2026.8.31\"\n      ]"
    ), "untouched entries come back byte for byte");
}

#[test]
fn vscode_zed_and_codex_round_trip() {
    let vscode = "{\n\t\"servers\": {\n\t\t\"gh\": {\"type\": \"http\", \"url\": \"https://api.example.com/mcp\"},\n\t\t\"fs\": {\"type\": \"stdio\", \"command\": \"uvx\", \"args\": [\"mcp-server-fs\"]}\n\t},\n\t\"inputs\": []\n}\n";
    let (w, _) = round_trip(vscode, Format::VsCodeServers);
    let v = jsonc::parse(&w.text).unwrap().to_value();
    assert_eq!(v["servers"]["gh"]["type"], "stdio");
    assert_eq!(v["servers"]["fs"]["type"], "stdio");

    let zed = "{\n  \"theme\": \"One Dark\",\n  \"context_servers\": {\n    \"old\": {\"command\": {\"path\": \"node\", \"args\": [\"s.js\"], \"env\": {}}, \"settings\": {}},\n    \"new\": {\"source\": \"custom\", \"command\": \"python3\", \"args\": [\"-m\", \"srv\"]}\n  }\n}\n";
    let (w, _) = round_trip(zed, Format::ZedContextServers);
    let v = jsonc::parse(&w.text).unwrap().to_value();
    assert_eq!(v["context_servers"]["old"]["command"]["path"], "mcp-warden");
    assert_eq!(
        v["context_servers"]["new"]["args"],
        serde_json::json!(["run", "--", "python3", "-m", "srv"])
    );

    let codex = "model = \"o3\"\n\n# servers\n[mcp_servers.docs]\ncommand = \"npx\"\nargs = [\"-y\", \"docs-mcp@1.0.0\"]\n\n[mcp_servers.docs.env]\nKEY = \"${KEY}\"\n\n[mcp_servers.remote]\nurl = \"https://x.example/mcp\"\n";
    let (w, _) = round_trip(codex, Format::CodexToml);
    let doc: toml_edit::DocumentMut = w.text.parse().unwrap();
    assert_eq!(
        doc["mcp_servers"]["docs"]["command"].as_str(),
        Some("mcp-warden")
    );
    assert_eq!(
        doc["mcp_servers"]["docs"]["env"]["KEY"].as_str(),
        Some("${KEY}")
    );
    assert_eq!(
        doc["mcp_servers"]["remote"]["args"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(w.text.starts_with("model = \"o3\"\n\n# servers\n"));
}

proptest! {
    /// Any set of stdio servers, however formatted, round-trips byte for byte.
    #[test]
    fn any_config_round_trips(
        servers in prop::collection::btree_map("[a-z][a-z0-9_-]{0,8}", (
            "[a-z./][a-z0-9./_-]{0,12}",
            prop::collection::vec("[ -~]{0,10}", 0..4),
        ), 0..5),
        pretty in any::<bool>(),
    ) {
        let mut obj = serde_json::Map::new();
        for (name, (cmd, args)) in &servers {
            obj.insert(name.clone(), serde_json::json!({"command": cmd, "args": args}));
        }
        let v = serde_json::json!({"mcpServers": obj, "other": [1, 2]});
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        let mut manifest = Manifest::default();
        let w = wrap(&text, Format::McpServers, "mcp-warden", &mut manifest).unwrap();
        let parsed = jsonc::parse(&w.text).unwrap().to_value();
        for (name, (cmd, args)) in &servers {
            if program_name(cmd) == WARDEN {
                continue;
            }
            let wargs = parsed["mcpServers"][name]["args"].as_array().unwrap();
            prop_assert_eq!(&wargs[2], &serde_json::json!(cmd));
            prop_assert_eq!(wargs.len(), args.len() + 3);
        }
        let back = unwrap(&w.text, Format::McpServers, &manifest).unwrap();
        prop_assert_eq!(back.text, text);
    }
}
