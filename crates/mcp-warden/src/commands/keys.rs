//! `mcp-warden keys create|list|revoke`: API keys for the HTTP face.
//!
//! Keys live in `<data dir>/api-keys/` (a file store) as HMAC-SHA-256 digests; the HMAC key is
//! `<data dir>/api-key-hmac.key` (`0600`). The key is printed once, by `create`, and is not
//! recoverable afterwards. A running `serve` picks changes up within `auth.api_key_refresh`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt as _;
use serde_json::json;
use warden_auth::api_key::{self, ApiKeyVerifier, HmacKey, KeyAdmin, KeyRecord, StoreOpener};
use warden_config::env::ProcessEnv;
use warden_store::{DynStore, FileStore, Limits, StoreError};

use crate::cli::{KeysAction, KeysArgs, OutputFormat};

/// How long to wait for the key store while `serve` holds it for a refresh.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let prepared = super::prepare(&args.common, "warn", false)?;
    let data_dir = prepared
        .config
        .resolve_data_dir(args.common.data_dir.as_deref(), &ProcessEnv)
        .context("cannot locate the data directory")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, &data_dir))
}

async fn run(args: KeysArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let create = matches!(args.action, KeysAction::Create { .. });
    let hmac = HmacKey::load(data_dir, create).context("cannot load the api key hmac key")?;
    let Some(hmac) = hmac else {
        // No key was ever created here: nothing to list or revoke.
        return match args.action {
            KeysAction::List { format, .. } => {
                write_list(&[], format)?;
                Ok(ExitCode::SUCCESS)
            }
            _ => anyhow::bail!("no api keys exist in {}", data_dir.display()),
        };
    };
    let store = open_store(&store_dir(data_dir)).await?;
    let admin = KeyAdmin {
        store: &store,
        hmac: &hmac,
    };
    match args.action {
        KeysAction::Create {
            principal,
            roles,
            label,
            expires_in,
            format,
        } => {
            let created = admin
                .create(&principal, roles, label, expires_in.map(Into::into))
                .await
                .context("cannot create the api key")?;
            let record = &created.record;
            let text = match format {
                OutputFormat::Json => json!({
                    "key": created.key,
                    "id": record.id,
                    "principal": record.principal,
                    "roles": record.roles,
                    "expires": record.expires,
                })
                .to_string(),
                OutputFormat::Text => format!(
                    "{}\n\nid: {}\nprincipal: {}\nroles: {}\nexpires: {}\n\nThis key is shown once; store it now. Send it as `Authorization: Bearer <key>`.",
                    created.key,
                    record.id,
                    record.principal,
                    record.roles.join(", "),
                    record.expires.map_or_else(|| "never".to_owned(), time),
                ),
            };
            out(&text)?;
        }
        KeysAction::List { principal, format } => {
            let mut records = admin.list().await.context("cannot list api keys")?;
            if let Some(principal) = principal {
                records.retain(|r| r.principal == principal);
            }
            records.sort_by(|a, b| (&a.principal, a.created).cmp(&(&b.principal, b.created)));
            write_list(&records, format)?;
        }
        KeysAction::Revoke { id } => {
            let record = admin
                .revoke(&id)
                .await
                .with_context(|| format!("cannot revoke api key {id}"))?;
            out(&format!(
                "revoked {} (principal {})",
                record.id, record.principal
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_list(records: &[KeyRecord], format: OutputFormat) -> anyhow::Result<()> {
    let now = api_key_now();
    let text = match format {
        OutputFormat::Json => {
            let list: Vec<_> = records
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "principal": r.principal,
                        "roles": r.roles,
                        "label": r.label,
                        "created": r.created,
                        "expires": r.expires,
                        "revoked": r.revoked,
                        "last_used": r.last_used,
                        "status": r.status(now),
                    })
                })
                .collect();
            serde_json::Value::Array(list).to_string()
        }
        OutputFormat::Text => {
            let mut text = String::from(
                "ID                PRINCIPAL  STATUS   ROLES  CREATED  EXPIRES  LAST USED",
            );
            for r in records {
                text.push_str(&format!(
                    "\n{}  {}  {}  {}  {}  {}  {}",
                    r.id,
                    r.principal,
                    r.status(now),
                    if r.roles.is_empty() {
                        "-".to_owned()
                    } else {
                        r.roles.join(",")
                    },
                    time(r.created),
                    r.expires.map_or_else(|| "never".to_owned(), time),
                    r.last_used.map_or_else(|| "never".to_owned(), time),
                ));
            }
            text
        }
    };
    out(&text)
}

fn api_key_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC, to the second.
fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// The one writer of command output.
fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").context("cannot write to stdout")
}

/// The key store's directory inside the data directory.
pub(crate) fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(api_key::STORE_DIR)
}

/// Opens the key store, waiting while another process (a running `serve` refreshing its
/// snapshot, another `keys` command) holds it.
async fn open_store(dir: &Path) -> anyhow::Result<DynStore> {
    let deadline = tokio::time::Instant::now() + STORE_LOCK_WAIT;
    loop {
        match FileStore::open(dir, Limits::default()).await {
            Ok(store) => return Ok(Arc::new(store)),
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot open the api key store in {}", dir.display())
                });
            }
        }
    }
}

/// The verifier `serve` uses: loads the HMAC key (created if missing, so a gateway started
/// before the first key exists picks keys up later) and reads the store at each refresh.
pub(crate) fn verifier(data_dir: &Path) -> anyhow::Result<ApiKeyVerifier> {
    let hmac = HmacKey::load(data_dir, true)
        .context("cannot load the api key hmac key")?
        .context("the api key hmac key is missing")?;
    let dir = store_dir(data_dir);
    let opener: StoreOpener = Arc::new(move || {
        let dir = dir.clone();
        async move {
            let store: DynStore = Arc::new(FileStore::open(&dir, Limits::default()).await?);
            Ok(store)
        }
        .boxed()
    });
    Ok(ApiKeyVerifier::new(hmac, opener))
}
