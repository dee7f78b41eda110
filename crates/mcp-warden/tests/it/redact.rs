//! `mcp-warden redact`: the real binary on files and standard input.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::bin;

const INPUT: &str = "token: ghp_R8xT2mQv9LpZ4nW7yK1sB6cJ0dF3hG5aE2uV\nmail jane@corp.example.com\n";

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn redacts_standard_input_as_text() {
    let out = run(&["redact", "-"], INPUT.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "token: [REDACTED:github-pat]\nmail [REDACTED:email]\n"
    );
}

#[test]
fn json_output_has_byte_offsets_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    std::fs::write(&path, INPUT).unwrap();
    let out = run(&["redact", "--format", "json", path.to_str().unwrap()], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    for f in findings {
        let (start, end) = (
            f["start"].as_u64().unwrap() as usize,
            f["end"].as_u64().unwrap() as usize,
        );
        let kind = f["kind"].as_str().unwrap();
        let span = &INPUT[start..end];
        match kind {
            "github-pat" => assert!(span.starts_with("ghp_")),
            "email" => assert_eq!(span, "jane@corp.example.com"),
            other => panic!("unexpected kind {other}"),
        }
    }
    assert_eq!(
        v["text"],
        "token: [REDACTED:github-pat]\nmail [REDACTED:email]\n"
    );
}

#[test]
fn refuses_input_that_is_not_utf8_with_exit_2() {
    let out = run(&["redact", "-"], b"ok \xff\xfe");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not UTF-8") && err.contains("offset 3"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
