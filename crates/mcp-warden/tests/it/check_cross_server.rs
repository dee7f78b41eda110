//! `mcp-warden check` reports cross-server findings from the pin store, without connecting to
//! any upstream. The pin store is filled the way it always is: the real `mcp-warden serve` in
//! front of real Python SDK servers (`fixtures/python/pinning_server.py`, which lists `fetch`,
//! `calls`, `echo` and `rug_pull`, and `fixtures/python/list_changed_server.py`, which lists
//! `add_tool` and adds tools at runtime), listed by a real client; the gateway is then stopped
//! and `check` reads what it pinned.
//!
//! Proves: MULTI-2, PROMPT-7 (the findings of the report-only `cross_server` guard on what
//! clients are served, counted in the rows and listed)

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use warden_test::deps;
use warden_test::http::HttpClient;

use crate::support::{Serve, bin, sorted_tool_names, toml_str};

/// `[upstreams.<name>]` running `fixture` (with `args`) outside the sandbox, as the other
/// `serve` tests do; `extra` goes into the table.
fn upstream(name: &str, fixture: &str, args: &[String], extra: &str) -> String {
    let mut all = vec![toml_str(&deps::fixture(fixture).display().to_string())];
    all.push(toml_str("stdio"));
    all.extend(args.iter().map(|a| toml_str(a)));
    format!(
        "[upstreams.{name}]\ncommand = {}\nargs = [{}]\n{extra}[upstreams.{name}.sandbox]\nenabled = false\n",
        toml_str(&deps::python().display().to_string()),
        all.join(", ")
    )
}

/// `pinning_server.py`: `fetch`, `calls`, `echo`, `rug_pull`.
fn pinning_server(name: &str) -> String {
    let description = deps::fixture("python/benign-description.txt")
        .display()
        .to_string();
    upstream(
        name,
        "python/pinning_server.py",
        &["--description-file".into(), description],
        "",
    )
}

/// `list_changed_server.py`: `add_tool`, and whatever it adds.
fn list_changed_server(name: &str) -> String {
    upstream(name, "python/list_changed_server.py", &[], "")
}

/// `mcp-warden ARGS... --data-dir DATA` with logs at `warn`, bounded in time (the child is
/// killed if it overruns).
async fn warden(args: &[&str], data: &Path) -> Output {
    let mut c = tokio::process::Command::new(bin());
    c.args(args)
        .arg("--data-dir")
        .arg(data)
        .env("MCP_WARDEN_LOG", "warn")
        .env_remove("MCP_WARDEN_CONFIG")
        .env_remove("MCP_WARDEN_DATA_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .unwrap_or_else(|_| panic!("mcp-warden {args:?} did not finish in time"))
        .unwrap()
}

/// `check --config F --data-dir D --format json`: the rows.
async fn check_json(config: &Path, data: &Path) -> Vec<Value> {
    let config = config.display().to_string();
    let out = warden(&["check", "--config", &config, "--format", "json"], data).await;
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 129, "one row per control");
    rows
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter().find(|r| r["id"] == id).unwrap()
}

/// (rule, upstream, tool) of every finding the MULTI-2 row carries, sorted.
fn findings(rows: &[Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = row(rows, "MULTI-2")["cross_server"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no cross_server on MULTI-2: {}", row(rows, "MULTI-2")))
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["upstream"].as_str().unwrap().to_owned(),
                f["tool"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The per-upstream states of the MULTI-2 row: (upstream, state, tools, held).
fn states(rows: &[Value]) -> Vec<(String, String, u64, u64)> {
    row(rows, "MULTI-2")["cross_server"]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["upstream"].as_str().unwrap().to_owned(),
                u["state"].as_str().unwrap().to_owned(),
                u["tools"].as_u64().unwrap(),
                u["held"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Starts `serve` on `upstreams`, lists its tools once with a real client (which pins every
/// upstream's list), runs `during` with the client, and stops the gateway. Returns the data
/// directory (also holding `warden.toml`) and the names listed.
async fn pin_through_serve<F>(upstreams: &str, during: F) -> (tempfile::TempDir, Vec<String>)
where
    F: AsyncFnOnce(&mut HttpClient, &Path),
{
    let serve = Serve::start(upstreams).await.unwrap();
    let Serve {
        guard, dir, url, ..
    } = serve;
    let mut client = HttpClient::new(url);
    client.initialize("2025-11-25").await.unwrap();
    let listed = sorted_tool_names(&client.request("tools/list", json!({})).await.unwrap());
    during(&mut client, dir.path()).await;
    // Killing the process group stops the gateway and its upstreams; every pin was written
    // before the list that recorded it was answered.
    drop(guard);
    (dir, listed)
}

#[tokio::test]
async fn check_lists_the_cross_server_findings_of_what_serve_pinned() {
    let upstreams = format!(
        "{}{}{}",
        pinning_server("alpha"),
        pinning_server("beta"),
        list_changed_server("gamma")
    );
    let (dir, listed) = pin_through_serve(&upstreams, async |client, data| {
        // `gamma` adds `echo_secure` (`echo` plus a qualifier) after its baseline: pinning
        // holds it, so clients are not served it.
        let added = client
            .request(
                "tools/call",
                json!({"name": "gamma__add_tool", "arguments": {"name": "echo_secure"}}),
            )
            .await
            .unwrap();
        assert_eq!(added["result"]["isError"], json!(false), "{added}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = client.request("tools/list", json!({})).await.unwrap();
            assert!(
                !sorted_tool_names(&list).contains(&"gamma__echo_secure".to_owned()),
                "a held tool is withheld: {list}"
            );
            let pins = warden(
                &["pins", "list", "--upstream", "gamma", "--format", "json"],
                data,
            )
            .await;
            assert!(pins.status.success(), "{pins:?}");
            let pins: Value = serde_json::from_slice(&pins.stdout).unwrap();
            if pins
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["tool"] == "echo_secure" && p["status"] == "added")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "echo_secure never pinned: {pins}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(listed.contains(&"alpha__echo".to_owned()), "{listed:?}");
    assert!(listed.contains(&"beta__echo".to_owned()), "{listed:?}");
    let config = dir.path().join("warden.toml");

    let rows = check_json(&config, dir.path()).await;
    // Every tool of `alpha` and `beta` collides with the other's; `gamma`'s `add_tool` with
    // nothing, and its held `echo_secure` is not analysed.
    let mut expected = Vec::new();
    for upstream in ["alpha", "beta"] {
        for tool in ["calls", "echo", "fetch", "rug_pull"] {
            expected.push((
                "poison.name-collision".to_owned(),
                upstream.to_owned(),
                tool.to_owned(),
            ));
        }
    }
    assert_eq!(findings(&rows), expected);
    assert_eq!(
        states(&rows),
        [
            ("alpha".into(), "analysed".into(), 4, 0),
            ("beta".into(), "analysed".into(), 4, 0),
            ("gamma".into(), "analysed".into(), 1, 1),
        ]
    );
    for id in ["MULTI-2", "PROMPT-7"] {
        let r = row(&rows, id);
        assert_eq!(r["status"], "partial", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("8 cross-server findings on the pinned tool definitions clients are served (alpha, beta, gamma); the `cross_server` guard reports them and withholds nothing"),
            "{reason}"
        );
        assert!(
            reason.contains("1 held definition (not served) left out"),
            "{reason}"
        );
        assert_eq!(r["cross_server"]["source"], "pins");
    }
    let echo = row(&rows, "MULTI-2")["cross_server"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["upstream"] == "alpha" && f["tool"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(
        echo,
        json!({
            "rule": "poison.name-collision",
            "severity": "high",
            "upstream": "alpha",
            "tool": "echo",
            "field": "name",
            "location": "name[0..4]",
            "evidence": "same name as `echo` of server `beta`",
        })
    );
    // Rows of other controls keep the documented shape.
    assert_eq!(
        row(&rows, "INT-1").as_object().unwrap().len(),
        3,
        "{}",
        row(&rows, "INT-1")
    );

    // Once approved, `echo_secure` is served: now it is analysed, and looks like `echo`.
    let approved = warden(&["pins", "approve", "gamma", "echo_secure"], dir.path()).await;
    assert!(approved.status.success(), "{approved:?}");
    let rows = check_json(&config, dir.path()).await;
    let lookalike: Vec<&Value> = row(&rows, "MULTI-2")["cross_server"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["upstream"] == "gamma")
        .collect();
    assert_eq!(
        lookalike,
        [&json!({
            "rule": "poison.lookalike-name",
            "severity": "medium",
            "upstream": "gamma",
            "tool": "echo_secure",
            "field": "name",
            "location": "name[0..11]",
            "evidence": "`echo` plus the qualifier `secure` of server `alpha`",
        })]
    );
    assert_eq!(findings(&rows).len(), 9);

    // An upstream added to the configuration since has no pins: named, not analysed.
    let grown = dir.path().join("grown.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&grown, format!("{text}\n{}", pinning_server("delta"))).unwrap();
    let rows = check_json(&grown, dir.path()).await;
    let delta = states(&rows).into_iter().find(|s| s.0 == "delta").unwrap();
    assert_eq!(delta, ("delta".into(), "no_pins".into(), 0, 0));
    let reason = row(&rows, "MULTI-2")["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("not analysed: delta (no pins yet"),
        "{reason}"
    );

    // The table says the same for people.
    let out = warden(
        &["check", "--config", &config.display().to_string()],
        dir.path(),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("\nCross-server analysis (MULTI-2, PROMPT-7) of the pinned tool definitions clients are served, read from the pin store (no upstream contacted):\n"),
        "{table}"
    );
    assert!(
        table.contains("  gamma                2 tools analysed\n"),
        "{table}"
    );
    assert!(
        table.contains("\n9 findings (reported by the `cross_server` guard, never withheld):\n"),
        "{table}"
    );
    assert!(
        table.contains("  high     poison.name-collision            alpha/echo at name[0..4]: same name as `echo` of server `beta`\n"),
        "{table}"
    );
    assert!(
        table.contains("  medium   poison.lookalike-name            gamma/echo_secure at name[0..11]: `echo` plus the qualifier `secure` of server `alpha`\n"),
        "{table}"
    );
    let multi = table.lines().find(|l| l.starts_with("MULTI-2 ")).unwrap();
    assert!(
        multi.starts_with("MULTI-2    partial   9 cross-server findings"),
        "{multi}"
    );
}

#[tokio::test]
async fn upstreams_without_shared_or_look_alike_names_give_no_findings() {
    let upstreams = format!(
        "{}{}",
        pinning_server("alpha"),
        list_changed_server("gamma")
    );
    let (dir, listed) = pin_through_serve(&upstreams, async |_, _| {}).await;
    assert!(listed.contains(&"gamma__add_tool".to_owned()), "{listed:?}");
    let rows = check_json(&dir.path().join("warden.toml"), dir.path()).await;
    assert_eq!(findings(&rows), []);
    assert_eq!(
        states(&rows),
        [
            ("alpha".into(), "analysed".into(), 4, 0),
            ("gamma".into(), "analysed".into(), 1, 0),
        ]
    );
    let r = row(&rows, "MULTI-2");
    assert_eq!(r["status"], "enforced", "{r}");
    assert!(
        r["reason"].as_str().unwrap().starts_with(
            "no cross-server finding on the pinned tool definitions clients are served (alpha, gamma)"
        ),
        "{r}"
    );
}

/// A configuration of two upstreams that are never started (`check` connects to nothing).
fn never_started(extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n{}{}",
        pinning_server("alpha"),
        list_changed_server("gamma")
    )
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("warden.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn without_pins_check_says_there_is_nothing_to_compare() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &never_started(""));
    let rows = check_json(&config, dir.path()).await;
    assert_eq!(findings(&rows), []);
    assert_eq!(
        states(&rows),
        [
            ("alpha".into(), "no_pins".into(), 0, 0),
            ("gamma".into(), "no_pins".into(), 0, 0),
        ]
    );
    let r = row(&rows, "MULTI-2");
    // The guards are installed (enforced); there is just nothing stored to analyse.
    assert_eq!(r["status"], "enforced", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("cross-server analysis of the pin store: fewer than two upstreams have pinned definitions to compare; not analysed: alpha (no pins yet"),
        "{reason}"
    );

    // With pinning off nothing is stored: said so, per upstream.
    let config = write_config(dir.path(), &never_started("pinning = \"off\""));
    let rows = check_json(&config, dir.path()).await;
    let states = states(&rows);
    assert!(states.iter().all(|s| s.1 == "pinning_off"), "{states:?}");
    assert!(
        row(&rows, "MULTI-2")["reason"]
            .as_str()
            .unwrap()
            .contains("alpha (pinning off: no stored definitions)"),
        "{}",
        row(&rows, "MULTI-2")
    );
}

#[tokio::test]
async fn an_unreadable_pin_store_is_reported_or_refused_never_taken_for_clean() {
    let dir = tempfile::tempdir().unwrap();
    // Something that is not a pin store where the pin store belongs.
    std::fs::write(dir.path().join("pins"), "not a store").unwrap();
    // `pinning = "report"`: the gateway would start, so `check` reports and says why.
    let config = write_config(dir.path(), &never_started("pinning = \"report\""));
    let rows = check_json(&config, dir.path()).await;
    for s in states(&rows) {
        assert_eq!(s.1, "unreadable", "{s:?}");
    }
    let r = row(&rows, "MULTI-2");
    assert_eq!(r["status"], "partial", "unknown is not clean: {r}");
    assert!(
        r["cross_server"]["upstreams"][0]["error"]
            .as_str()
            .unwrap()
            .contains("pin store"),
        "{r}"
    );
    assert_eq!(r["cross_server"]["findings"], json!([]));
    // `pinning = "block"` (the default): the gateway reads the store at start and would
    // refuse to start; so does `check`, naming the store.
    let config = write_config(dir.path(), &never_started(""));
    let out = warden(
        &[
            "check",
            "--config",
            &config.display().to_string(),
            "--format",
            "json",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pin store"), "{stderr}");
}
