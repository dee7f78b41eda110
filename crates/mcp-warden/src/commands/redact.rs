//! `mcp-warden redact FILE|-`: secrets and personal data redacted from text.
//!
//! Default output is the redacted text, byte for byte the input outside the redacted spans.
//! `--format json` prints `{"text","findings":[{"kind","start","end"}]}` with byte offsets into
//! the input (see docs/secrets.md).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use warden_detect::redact::{self, RedactOptions};

/// Largest input read, so a mistaken `redact /dev/zero` ends with an error, not out of memory.
const MAX_INPUT_BYTES: u64 = 512 * 1024 * 1024;

/// Output format of `redact`.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub(crate) enum RedactFormat {
    /// The redacted text.
    #[default]
    Text,
    /// `{"text","findings":[{"kind","start","end"}]}`, offsets in bytes into the input.
    Json,
}

/// Which classes of data `redact` replaces.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub(crate) enum RedactOnly {
    /// Secrets and personal data.
    #[default]
    All,
    /// Credentials, keys and tokens only.
    Secrets,
    /// Personal data only.
    Pii,
}

#[derive(Debug, Args)]
pub(crate) struct RedactArgs {
    /// The text to redact: a file, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub(crate) input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: RedactFormat,
    /// Which classes of data to redact.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) only: RedactOnly,
}

/// Reads the input, redacts it and writes the result to stdout.
pub(crate) fn redact(args: RedactArgs) -> anyhow::Result<ExitCode> {
    let mut bytes = Vec::new();
    if args.input.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(&args.input)
            .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read `{}`", args.input.display()))?;
    }
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        anyhow::bail!("input is larger than {MAX_INPUT_BYTES} bytes");
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "input is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let out = render(&text, args.format, args.only)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The command's output for `text`.
fn render(text: &str, format: RedactFormat, only: RedactOnly) -> anyhow::Result<String> {
    let options = match only {
        RedactOnly::All => RedactOptions::default(),
        RedactOnly::Secrets => RedactOptions {
            secrets: true,
            pii: false,
        },
        RedactOnly::Pii => RedactOptions {
            secrets: false,
            pii: true,
        },
    };
    let redaction = redact::redact_with(text, options);
    Ok(match format {
        RedactFormat::Text => redaction.text,
        RedactFormat::Json => {
            let mut json =
                serde_json::to_string(&redaction).context("cannot encode the redaction")?;
            json.push('\n');
            json
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "deploy log\n\
        AWS_ACCESS_KEY_ID=AKIAZ3MSJV7WQ4TLBN2K\n\
        docs example: AKIAIOSFODNN7EXAMPLE\n\
        contact: jane.doe@corp.example.com, +44 20 7946 0958\n\
        card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00\n\
        commit 9fceb02d0ae598e95dc970b74767f19372d61af8\n\
        DATABASE_URL=postgres://app:s3cr3tP4ss@db:5432/app\n\
        Grüße, ghp_R8xT2mQv9LpZ4nW7yK1sB6cJ0dF3hG5aE2uV\n";

    #[test]
    fn json_output_matches_the_contract() {
        let out = render(SAMPLE, RedactFormat::Json, RedactOnly::All).expect("renders");
        let value: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        insta::assert_json_snapshot!("redact_json", value);
        // Offsets point into the input, at exactly the redacted values.
        for f in value["findings"].as_array().expect("findings array") {
            let (start, end) = (
                f["start"].as_u64().expect("start"),
                f["end"].as_u64().expect("end"),
            );
            let span =
                &SAMPLE[usize::try_from(start).expect("fits")..usize::try_from(end).expect("fits")];
            assert!(!span.is_empty());
            assert!(
                !value["text"].as_str().expect("text").contains(span),
                "{span} leaked"
            );
        }
    }

    #[test]
    fn text_output_is_the_input_outside_redactions() {
        let out = render(SAMPLE, RedactFormat::Text, RedactOnly::All).expect("renders");
        assert!(out.contains("AWS_ACCESS_KEY_ID=[REDACTED:aws-access-token]\n"));
        assert!(out.contains("docs example: AKIAIOSFODNN7EXAMPLE\n"));
        assert!(out.contains("commit 9fceb02d0ae598e95dc970b74767f19372d61af8\n"));
        assert!(out.ends_with("Grüße, [REDACTED:github-pat]\n"));
    }

    #[test]
    fn only_selects_a_class() {
        let out = render(SAMPLE, RedactFormat::Text, RedactOnly::Secrets).expect("renders");
        assert!(out.contains("jane.doe@corp.example.com"));
        assert!(!out.contains("AKIAZ3MSJV7WQ4TLBN2K"));
        let out = render(SAMPLE, RedactFormat::Text, RedactOnly::Pii).expect("renders");
        assert!(!out.contains("jane.doe@corp.example.com"));
        assert!(out.contains("AKIAZ3MSJV7WQ4TLBN2K"));
    }
}
