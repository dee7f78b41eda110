//! Quick throughput figure without criterion: `cargo run --release -p warden-detect --example
//! throughput [MiB] [description]` analyses a mixed 1 MiB result and prints MB/s (the criterion bench
//! `poisoning` is the reference).
#![expect(clippy::print_stdout, reason = "prints its figure")]

#[expect(
    clippy::disallowed_types,
    reason = "a wall-clock figure in a plain binary, no async runtime whose time could be paused"
)]
fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let parts = [
        "# Release notes\n\n- Fixed a crash when the session token expires.\n- Added dark mode.\n\n",
        "{\"id\": 1182, \"title\": \"Fix login bug\", \"state\": \"open\", \"user\": {\"login\": \"octocat\"}, \"sha\": \"9fceb02d0ae598e95dc970b74767f19372d61af8\"}\n",
        "fn main() {\n    let args: Vec<String> = std::env::args().collect();\n    println!(\"{:?}\", args);\n}\n",
        "Estimado cliente: su pedido ha sido enviado. Debe firmar al recibirlo.\n",
        "今天的新闻：央行宣布维持利率不变。专家表示，必须关注通胀数据。\n",
        "<p>Mix 500 g flour with 350 g water.</p><!-- footer --><a href=\"https://example.com/?q=bread\">more</a>\n",
    ];
    let description = "Get details about specific GitHub Actions resources. Use this tool to get \
details about individual workflows, workflow runs, jobs, and artifacts by their unique IDs. Provide \
a workflow ID or workflow file name (e.g. ci.yaml) for 'get_workflow' method. IMPORTANT: results are \
paginated; call list_workflows first to find the ID. ";
    let desc_mode = std::env::args().nth(2).is_some_and(|a| a == "description");
    let parts: &[&str] = if desc_mode { &[description] } else { &parts };
    let mut text = String::new();
    let mut i = 0;
    while text.len() < mib << 20 {
        text.push_str(parts[i % parts.len()]);
        i += 1;
    }
    // Build the automaton outside the measurement.
    let _ = warden_detect::analyze_text("warm up", warden_detect::TextKind::ToolResult);
    let kind = if desc_mode {
        warden_detect::TextKind::ToolDescription
    } else {
        warden_detect::TextKind::ToolResult
    };
    let start = std::time::Instant::now();
    let f = warden_detect::analyze_text(&text, kind);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} bytes, {} findings, {:.1} MB/s",
        text.len(),
        f.len(),
        text.len() as f64 / secs / 1e6
    );
}
