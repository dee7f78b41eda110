//! `mcp-warden wrap [--client NAME] [PATH...]` routes every server of a client's configuration
//! through `mcp-warden run` (remote ones through `run --url`); `unwrap` puts them back.
//!
//! Each changed file gets a backup (`<file>.mcp-warden.bak`, the text before the last wrap)
//! and a manifest (`<file>.mcp-warden.json`) holding each changed entry's original text, so
//! `unwrap` restores entries byte for byte even after other edits to the file. Both are
//! idempotent. Files are replaced atomically (write to a temporary file, then rename).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use warden_scan::clients::ConfigLocation;
use warden_scan::wrap::{self, Manifest};

/// `mcp-warden wrap` / `unwrap`.
#[derive(Debug, Args)]
pub(crate) struct WrapArgs {
    /// Configuration files to rewrite instead of the discovered ones.
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
    /// Only this client's configuration files.
    #[arg(long, value_name = "NAME")]
    pub(crate) client: Option<String>,
    /// The program written into wrapped entries (default: `mcp-warden`, found on PATH).
    #[arg(long, value_name = "PROGRAM", default_value = "mcp-warden")]
    pub(crate) binary: String,
    /// Show what would change without writing anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// User and system scopes only: project files belong to repositories and are wrapped only
/// when named explicitly.
fn targets(args: &WrapArgs) -> anyhow::Result<Vec<ConfigLocation>> {
    super::scan::locate(&args.paths, args.client.as_deref(), None)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `text` to `path` atomically, keeping the file's permissions.
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write next to `{}`", path.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot replace `{}`", path.display()))?;
    Ok(())
}

/// Runs `wrap` (`undo = false`) or `unwrap`.
pub(crate) fn wrap(args: WrapArgs, undo: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let files = targets(&args)?;
    if files.is_empty() {
        writeln!(out, "no client configuration found")?;
    }
    for loc in files {
        let path = &loc.path;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let manifest_path = sidecar(path, ".mcp-warden.json");
        let mut manifest: Manifest = match std::fs::read(&manifest_path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("`{}` is not a wrap manifest", manifest_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(e).context("cannot read the wrap manifest"),
        };
        let outcome = if undo {
            wrap::unwrap(&text, loc.format, &manifest)
        } else {
            wrap::wrap(&text, loc.format, &args.binary, &mut manifest)
        }
        .with_context(|| format!("cannot rewrite `{}`", path.display()))?;
        for field in &outcome.changed {
            writeln!(
                out,
                "{} {}: {field}",
                if undo { "unwrapped" } else { "wrapped" },
                path.display()
            )?;
        }
        for (field, why) in &outcome.skipped {
            writeln!(out, "left {}: {field} ({why})", path.display())?;
        }
        if args.dry_run || outcome.text == text {
            continue;
        }
        if undo {
            replace_file(path, &outcome.text)?;
            for f in &outcome.changed {
                manifest.entries.remove(f);
            }
            if manifest.entries.is_empty() {
                let _ = std::fs::remove_file(&manifest_path);
            } else {
                replace_file(&manifest_path, &serde_json::to_string_pretty(&manifest)?)?;
            }
        } else {
            replace_file(&sidecar(path, ".mcp-warden.bak"), &text)?;
            replace_file(&manifest_path, &serde_json::to_string_pretty(&manifest)?)?;
            replace_file(path, &outcome.text)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
