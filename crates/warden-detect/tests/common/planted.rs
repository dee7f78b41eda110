//! Planted-secret generator for the secrets evaluation and the property tests.
//!
//! Every generator draws a fresh value in the documented format of its kind (random body,
//! valid checksum where the format has one), independent of the detector's patterns: formats
//! come from the issuers' documentation (token prefixes and lengths, PEM, RFC 7519, WIF, BIP-32,
//! BIP-39, ISO 13616, Luhn, SSA rules, national check digits). Contexts place the value in the
//! kinds of text tool results carry: env files, JSON, YAML, logs, prose, HTTP headers, CSV.
//! Hard negatives are drawn from the look-alikes a scanner must not flag.
#![allow(dead_code, unreachable_pub)]

use base64::Engine as _;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sha2::{Digest, Sha256};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const SYMBOLS: &[u8] = b"!#%&*+-.=?^_~";

pub fn pick(rng: &mut StdRng, alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

fn digits(rng: &mut StdRng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.random_range(0..10u8)).collect()
}

fn show(d: &[u8]) -> String {
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

/// A password people choose: letters, digits and a symbol or two.
fn password(rng: &mut StdRng) -> String {
    let n = rng.random_range(8..16);
    let mut s = pick(rng, ALNUM, n);
    s.push_str(&pick(rng, b"0123456789", 2));
    s.push_str(&pick(rng, SYMBOLS, 1));
    s
}

/// One planted value: the detector family expected for it, the value, and the name it is
/// assigned to in key-value contexts.
pub struct Secret {
    /// Expected kind family (a detector kind, or `service` for gitleaks service rules).
    pub family: &'static str,
    /// Human-readable format name, used to group results.
    pub format: &'static str,
    /// The value to plant.
    pub value: String,
    /// A name for `NAME=value` contexts.
    pub name: &'static str,
    /// Whether the value is only a secret next to its name (generic assignments).
    pub needs_name: bool,
}

type Gen = fn(&mut StdRng) -> Secret;

fn svc(format: &'static str, name: &'static str, value: String) -> Secret {
    Secret {
        family: "service",
        format,
        value,
        name,
        needs_name: false,
    }
}

fn luhn_complete(mut d: Vec<u8>) -> Vec<u8> {
    d.push(0);
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                if x * 2 > 9 { x * 2 - 9 } else { x * 2 }
            } else {
                x
            }
        })
        .sum();
    let last = d.len() - 1;
    d[last] = u8::try_from((10 - sum % 10) % 10).expect("a digit");
    d
}

fn base58check(payload: &[u8]) -> String {
    let check = Sha256::digest(Sha256::digest(payload));
    let mut raw = payload.to_vec();
    raw.extend_from_slice(&check[..4]);
    bs58::encode(raw).into_string()
}

fn iban(rng: &mut StdRng) -> String {
    let (country, bban) = match rng.random_range(0..4) {
        0 => ("DE", show(&digits(rng, 18))),
        1 => (
            "GB",
            format!(
                "{}{}",
                pick(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                show(&digits(rng, 14))
            ),
        ),
        2 => (
            "FR",
            format!(
                "{}{}{}",
                show(&digits(rng, 10)),
                pick(rng, UPPER_ALNUM, 11),
                show(&digits(rng, 2))
            ),
        ),
        _ => (
            "NL",
            format!(
                "{}{}",
                pick(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                show(&digits(rng, 10))
            ),
        ),
    };
    let rearranged = format!("{bban}{country}00");
    let mut rem: u32 = 0;
    for b in rearranged.bytes() {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    let compact = format!("{country}{:02}{bban}", 98 - rem);
    if rng.random_bool(0.5) {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ASCII"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        compact
    }
}

fn mnemonic(rng: &mut StdRng) -> String {
    let words = if rng.random_bool(0.5) { 12 } else { 24 };
    let entropy_bytes = words * 4 / 3;
    let entropy: Vec<u8> = (0..entropy_bytes).map(|_| rng.random()).collect();
    let mut bits: Vec<bool> = entropy
        .iter()
        .flat_map(|b| (0..8).map(move |i| b & (0x80 >> i) != 0))
        .collect();
    let hash = Sha256::digest(&entropy);
    for i in 0..(words / 3) {
        bits.push(hash[0] & (0x80 >> i) != 0);
    }
    let list = bip39::Language::English.word_list();
    bits.chunks(11)
        .map(|c| list[c.iter().fold(0usize, |acc, &b| acc * 2 + usize::from(b))])
        .collect::<Vec<_>>()
        .join(" ")
}

fn pem(rng: &mut StdRng) -> String {
    let label = [
        "RSA PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ]
    .choose(rng)
    .copied()
    .expect("non-empty");
    let lines = rng.random_range(3..20);
    let mut body = String::new();
    for _ in 0..lines {
        body.push_str(&pick(rng, B64, 64));
        body.push('\n');
    }
    body.push_str(&pick(rng, B64, 20));
    body.push_str("==\n");
    format!("-----BEGIN {label}-----\n{body}-----END {label}-----")
}

fn jwt(rng: &mut StdRng) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg = ["HS256", "RS256", "ES256"]
        .choose(rng)
        .copied()
        .expect("non-empty");
    let header = e.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    let payload = e.encode(format!(
        r#"{{"sub":"{}","iat":{},"scope":"{}"}}"#,
        pick(rng, LOWER_ALNUM, 10),
        rng.random_range(1_500_000_000u64..1_800_000_000),
        pick(rng, LOWER_ALNUM, 6)
    ));
    format!("{header}.{payload}.{}", pick(rng, URLSAFE, 43))
}

fn card(rng: &mut StdRng) -> String {
    let (prefix, len): (Vec<u8>, usize) = match rng.random_range(0..4) {
        0 => (vec![4], 16),
        1 => (vec![5, rng.random_range(1..6)], 16),
        2 => (vec![3, if rng.random_bool(0.5) { 4 } else { 7 }], 15),
        _ => (vec![6, 0, 1, 1], 16),
    };
    let mut d = prefix;
    let fill = len - 1 - d.len();
    d.extend(digits(rng, fill));
    let d = luhn_complete(d);
    let s = show(&d);
    match (rng.random_range(0..3), len) {
        (0, _) => s,
        (_, 15) => format!("{} {} {}", &s[..4], &s[4..10], &s[10..]),
        (k, _) => {
            let sep = if k == 1 { " " } else { "-" };
            s.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).expect("ASCII"))
                .collect::<Vec<_>>()
                .join(sep)
        }
    }
}

fn ssn(rng: &mut StdRng) -> String {
    let area = loop {
        let a = rng.random_range(1..900);
        if a != 666 {
            break a;
        }
    };
    format!(
        "{area:03}-{:02}-{:04}",
        rng.random_range(1..100),
        rng.random_range(1..10000)
    )
}

fn cpf(rng: &mut StdRng) -> String {
    let mut d = digits(rng, 9);
    for n in [9usize, 10] {
        let sum: u32 = d
            .iter()
            .enumerate()
            .map(|(i, &x)| u32::from(x) * (n as u32 + 1 - i as u32))
            .sum();
        let r = (sum * 10) % 11;
        d.push(if r == 10 {
            0
        } else {
            u8::try_from(r).expect("a digit")
        });
    }
    let s = show(&d);
    format!("{}.{}.{}-{}", &s[..3], &s[3..6], &s[6..9], &s[9..])
}

fn dni(rng: &mut StdRng) -> String {
    let n: u32 = rng.random_range(10_000_000..100_000_000);
    let letter = b"TRWAGMYFPDXBNJZSQVHLCKE"[(n % 23) as usize];
    format!("{n}{}", char::from(letter))
}

fn cn_id(rng: &mut StdRng) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!(
        "{}{}{:02}{:02}{:03}",
        rng.random_range(110_000..660_000),
        rng.random_range(1950..2010),
        rng.random_range(1..13),
        rng.random_range(1..29),
        rng.random_range(0..1000)
    );
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    format!("{body}{}", char::from(b"10X98765432"[(sum % 11) as usize]))
}

fn phone(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => format!(
            "+1 {} {} {}",
            rng.random_range(201..990),
            rng.random_range(200..1000),
            rng.random_range(1000..10000)
        ),
        1 => format!(
            "+44 20 {} {}",
            rng.random_range(7000..8000),
            rng.random_range(1000..10000)
        ),
        2 => format!("+49 30 {}", rng.random_range(1_000_000..100_000_000)),
        _ => format!(
            "({}) {}-{}",
            rng.random_range(201..990),
            rng.random_range(200..1000),
            rng.random_range(1000..10000)
        ),
    }
}

fn email(rng: &mut StdRng) -> String {
    let first = [
        "jane",
        "li.wei",
        "m.garcia",
        "olga",
        "k_tanaka",
        "sam+billing",
    ]
    .choose(rng)
    .copied()
    .expect("non-empty");
    let domain = [
        "corp.example.com",
        "mail.example.org",
        "example.net",
        "uni.example.edu",
    ]
    .choose(rng)
    .copied()
    .expect("non-empty");
    format!("{first}{}@{domain}", rng.random_range(1..100))
}

/// Every generator, one per format.
pub fn generators() -> Vec<Gen> {
    vec![
        |r| {
            svc(
                "aws-access-key",
                "AWS_ACCESS_KEY_ID",
                format!("AKIA{}", pick(r, B32, 16)),
            )
        },
        |r| {
            svc(
                "github-pat",
                "GITHUB_TOKEN",
                format!("ghp_{}", pick(r, ALNUM, 36)),
            )
        },
        |r| {
            svc(
                "github-oauth",
                "GH_TOKEN",
                format!("gho_{}", pick(r, ALNUM, 36)),
            )
        },
        |r| {
            svc(
                "github-fine-grained-pat",
                "GITHUB_TOKEN",
                format!(
                    "github_pat_{}",
                    pick(
                        r,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_",
                        82
                    )
                ),
            )
        },
        |r| {
            svc(
                "gitlab-pat",
                "GITLAB_TOKEN",
                format!("glpat-{}", pick(r, URLSAFE, 20)),
            )
        },
        |r| {
            svc(
                "slack-bot-token",
                "SLACK_TOKEN",
                format!(
                    "xoxb-{}-{}-{}",
                    show(&digits(r, 12)),
                    show(&digits(r, 13)),
                    pick(r, ALNUM, 24)
                ),
            )
        },
        |r| {
            svc(
                "stripe-secret-key",
                "STRIPE_KEY",
                format!("sk_live_{}", {
                    let n = 24 + r.random_range(0..76);
                    pick(r, ALNUM, n)
                }),
            )
        },
        |r| {
            svc(
                "openai-api-key",
                "OPENAI_API_KEY",
                format!(
                    "sk-proj-{}T3BlbkFJ{}",
                    pick(r, URLSAFE, 74),
                    pick(r, URLSAFE, 74)
                ),
            )
        },
        |r| {
            svc(
                "anthropic-api-key",
                "ANTHROPIC_API_KEY",
                format!("sk-ant-api03-{}AA", pick(r, URLSAFE, 93)),
            )
        },
        |r| {
            svc(
                "gcp-api-key",
                "GOOGLE_API_KEY",
                format!("AIza{}", pick(r, URLSAFE, 35)),
            )
        },
        |r| {
            svc(
                "sendgrid-api-key",
                "SENDGRID_API_KEY",
                format!("SG.{}.{}", pick(r, URLSAFE, 22), pick(r, URLSAFE, 43)),
            )
        },
        |r| {
            svc(
                "npm-token",
                "NPM_TOKEN",
                format!("npm_{}", pick(r, ALNUM, 36)),
            )
        },
        |r| {
            svc(
                "pypi-token",
                "PYPI_TOKEN",
                format!("pypi-AgEIcHlwaS5vcmc{}", {
                    let n = 60 + r.random_range(0..60);
                    pick(r, URLSAFE, n)
                }),
            )
        },
        |r| {
            svc(
                "twilio-api-key",
                "TWILIO_KEY",
                format!("SK{}", pick(r, HEX, 32)),
            )
        },
        |r| {
            svc(
                "huggingface-token",
                "HF_TOKEN",
                format!(
                    "hf_{}",
                    pick(
                        r,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                        34
                    )
                ),
            )
        },
        |r| {
            svc(
                "digitalocean-pat",
                "DO_TOKEN",
                format!("dop_v1_{}", pick(r, HEX, 64)),
            )
        },
        |r| {
            svc(
                "shopify-access-token",
                "SHOPIFY_TOKEN",
                format!("shpat_{}", pick(r, HEX, 32)),
            )
        },
        |r| {
            svc(
                "databricks-token",
                "DATABRICKS_TOKEN",
                format!("dapi{}", pick(r, HEX, 32)),
            )
        },
        |r| {
            svc(
                "linear-api-key",
                "LINEAR_KEY",
                format!("lin_api_{}", pick(r, LOWER_ALNUM, 40)),
            )
        },
        |r| {
            svc(
                "grafana-sa-token",
                "GRAFANA_TOKEN",
                format!("glsa_{}_{}", pick(r, ALNUM, 32), pick(r, HEX, 8)),
            )
        },
        |r| {
            svc(
                "postman-api-key",
                "POSTMAN_KEY",
                format!("PMAK-{}-{}", pick(r, HEX, 24), pick(r, HEX, 34)),
            )
        },
        |r| {
            svc(
                "sentry-user-token",
                "SENTRY_TOKEN",
                format!("sntryu_{}", pick(r, HEX, 64)),
            )
        },
        |r| {
            svc(
                "vault-token",
                "VAULT_TOKEN",
                format!("hvs.{}", pick(r, URLSAFE, 95)),
            )
        },
        |r| {
            svc(
                "slack-webhook",
                "SLACK_WEBHOOK",
                format!("https://hooks.slack.com/services/{}", pick(r, ALNUM, 44)),
            )
        },
        |r| Secret {
            family: "private-key",
            format: "pem-private-key",
            value: pem(r),
            name: "TLS_KEY",
            needs_name: false,
        },
        |r| Secret {
            family: "jwt",
            format: "jwt",
            value: jwt(r),
            name: "ID_TOKEN",
            needs_name: false,
        },
        |r| {
            let mut payload = vec![0x80];
            payload.extend((0..32).map(|_| r.random::<u8>()));
            if r.random_bool(0.5) {
                payload.push(0x01);
            }
            Secret {
                family: "wallet-private-key",
                format: "wif",
                value: base58check(&payload),
                name: "WALLET",
                needs_name: false,
            }
        },
        |r| {
            let mut payload = vec![0x04, 0x88, 0xAD, 0xE4];
            payload.extend((0..41).map(|_| r.random::<u8>()));
            payload.push(0x00);
            payload.extend((0..32).map(|_| r.random::<u8>()));
            Secret {
                family: "wallet-private-key",
                format: "bip32-xprv",
                value: base58check(&payload),
                name: "XPRV",
                needs_name: false,
            }
        },
        |r| Secret {
            family: "wallet-private-key",
            format: "hex-private-key",
            value: format!("0x{}", pick(r, HEX, 64)),
            name: "PRIVATE_KEY",
            needs_name: true,
        },
        |r| Secret {
            family: "bip39-mnemonic",
            format: "bip39-mnemonic",
            value: mnemonic(r),
            name: "SEED_PHRASE",
            needs_name: false,
        },
        |r| Secret {
            family: "generic",
            format: "password-assignment",
            value: password(r),
            name: "DB_PASSWORD",
            needs_name: true,
        },
        |r| Secret {
            family: "generic",
            format: "api-key-assignment",
            value: pick(r, ALNUM, 32),
            name: "api_key",
            needs_name: true,
        },
        |r| Secret {
            family: "generic",
            format: "client-secret-assignment",
            value: format!("{}~{}", pick(r, ALNUM, 20), pick(r, URLSAFE, 12)),
            name: "client_secret",
            needs_name: true,
        },
        |r| Secret {
            family: "pii",
            format: "email",
            value: email(r),
            name: "contact",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "phone",
            value: phone(r),
            name: "phone",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "credit-card",
            value: card(r),
            name: "card",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "iban",
            value: iban(r),
            name: "iban",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "us-ssn",
            value: ssn(r),
            name: "ssn",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "es-dni",
            value: dni(r),
            name: "dni",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "br-cpf",
            value: cpf(r),
            name: "cpf",
            needs_name: false,
        },
        |r| Secret {
            family: "pii",
            format: "cn-resident-id",
            value: cn_id(r),
            name: "id_number",
            needs_name: false,
        },
    ]
}

/// A text with one planted value and the value's byte span.
pub struct Planted {
    /// Format of the planted value.
    pub format: &'static str,
    /// The text.
    pub text: String,
    /// Where the value is.
    pub span: std::ops::Range<usize>,
}

/// Places `secret` in one of the contexts tool results carry.
pub fn plant(rng: &mut StdRng, secret: &Secret) -> Planted {
    let v = &secret.value;
    let n = secret.name;
    let multiline = v.contains('\n');
    // (prefix, suffix) around the value.
    let contexts: Vec<(String, String)> = if secret.needs_name {
        vec![
            (format!("{n}="), "\n".into()),
            (format!("export {n}=\""), "\"\n".into()),
            (
                format!("{{\"{}\": \"", n.to_lowercase()),
                "\", \"region\": \"eu-west-1\"}".into(),
            ),
            (
                format!("settings:\n  {}: ", n.to_lowercase()),
                "\n  retries: 3\n".into(),
            ),
            (
                format!("2024-05-01T12:00:00Z WARN loaded config {n}="),
                " from environment\n".into(),
            ),
        ]
    } else if multiline {
        vec![
            (
                "Here is the key you asked for:\n\n".into(),
                "\n\nKeep it safe.".into(),
            ),
            ("```\n".into(), "\n```\n".into()),
            (
                "{\"content\": [{\"type\": \"text\", \"text\": \"".into(),
                "\"}]}".into(),
            ),
        ]
    } else {
        vec![
            (format!("{n}="), "\n".into()),
            (
                format!("{{\"{}\": \"", n.to_lowercase()),
                "\", \"ok\": true}".into(),
            ),
            (format!("  {}: ", n.to_lowercase()), "\n".into()),
            (
                "2024-05-01T12:00:00Z INFO request used ".into(),
                " and succeeded\n".into(),
            ),
            (
                "Hi team, the value is ".into(),
                " — please rotate it after the demo.".into(),
            ),
            ("Authorization: Bearer ".into(), "\r\n".into()),
            (
                "id,name,value,created\n17,prod,".into(),
                ",2024-05-01\n".into(),
            ),
            ("The key is ".into(), ".".into()),
            (
                "GET https://api.example.com/v1/items?access_token=".into(),
                "&page=2 HTTP/1.1\n".into(),
            ),
            (
                "curl -H \"Authorization: token ".into(),
                "\" https://api.example.com/user\n".into(),
            ),
            (
                "<input type=\"hidden\" name=\"k\" value=\"".into(),
                "\">\n".into(),
            ),
            (
                "{\"type\": \"text\", \"text\": \"export VALUE=".into(),
                "\\nexport DEBUG=1\"}".into(),
            ),
            ("values:\n  - ".into(), "\n  - second\n".into()),
            (
                "Result of the lookup:\n\n| field | value |\n|---|---|\n| value | ".into(),
                " |\n".into(),
            ),
        ]
    };
    let (prefix, suffix) = contexts.choose(rng).cloned().expect("non-empty");
    // A JSON string value carries line breaks escaped, as a tool result would.
    let (v, suffix) = if prefix.contains("\"text\": \"") {
        (v.replace('\n', "\\n"), suffix)
    } else {
        (v.clone(), suffix)
    };
    let filler = FILLER.choose(rng).copied().expect("non-empty");
    let text = format!("{filler}\n{prefix}{v}{suffix}\n{filler}");
    let start = filler.len() + 1 + prefix.len();
    Planted {
        format: secret.format,
        text,
        span: start..start + v.len(),
    }
}

/// Ordinary text around planted values; mentions the words secret scanners key on.
pub const FILLER: &[&str] = &[
    "The deployment finished in 42 seconds. Rotate your API key every 90 days.",
    "Le mot de passe doit contenir au moins 12 caractères. Voir la documentation.",
    "Der Token wird nach 3600 Sekunden ungültig; danach bitte neu anmelden.",
    "请在设置页面中更新访问令牌，然后重新运行任务。",
    "Build #1289 passed: 312 tests, 0 failures, coverage 87.5%.",
    "Use `list_calendars` first, then `create_event` with the calendar id.",
    "The password field is required and must match the confirmation field.",
    "Ticket PROJ-4821 was moved to review by the on-call engineer at 09:12 UTC.",
];

fn base64_of(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// One hard negative: text that resembles a secret or personal datum but is neither.
pub fn hard_negative(rng: &mut StdRng) -> (&'static str, String) {
    match rng.random_range(0..34) {
        0 => (
            "uuid",
            format!(
                "request id {}-{}-4{}-a{}-{}",
                pick(rng, HEX, 8),
                pick(rng, HEX, 4),
                pick(rng, HEX, 3),
                pick(rng, HEX, 3),
                pick(rng, HEX, 12)
            ),
        ),
        1 => (
            "git-sha",
            format!("commit {}\nAuthor: the maintainer", pick(rng, HEX, 40)),
        ),
        2 => (
            "git-sha-short",
            format!(
                "Fixed in {} (see PR #{}).",
                pick(rng, HEX, 7),
                rng.random_range(100..9999)
            ),
        ),
        3 => ("sha256", format!("sha256:{}", pick(rng, HEX, 64))),
        4 => (
            "sha256-named",
            format!("checksum = \"{}\"", pick(rng, HEX, 64)),
        ),
        5 => ("md5", format!("{}  release.tar.gz", pick(rng, HEX, 32))),
        6 => ("sri", format!("integrity: sha512-{}==", pick(rng, B64, 86))),
        7 => (
            "base64-text",
            format!(
                "payload: {}",
                base64_of(FILLER.choose(rng).copied().expect("non-empty"))
            ),
        ),
        8 => (
            "docs-example-key",
            [
                "AKIAIOSFODNN7EXAMPLE",
                "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
                "token: ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                "OPENAI_API_KEY=sk-...your-key...",
                "api_key = \"<YOUR_API_KEY>\"",
                "password: ********",
            ]
            .choose(rng)
            .copied()
            .expect("non-empty")
            .to_owned(),
        ),
        9 => (
            "placeholder",
            [
                "token = ${GITHUB_TOKEN}",
                "password = os.environ['DB_PASSWORD']",
                "api_key: {{ .Values.apiKey }}",
                "secret_key = settings.SECRET_KEY",
                "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
                "password: string",
            ]
            .choose(rng)
            .copied()
            .expect("non-empty")
            .to_owned(),
        ),
        10 => ("luhn-invalid-card", {
            let mut d = vec![4];
            d.extend(digits(rng, 14));
            let mut d = luhn_complete(d);
            let last = d.len() - 1;
            d[last] = (d[last] + 1 + rng.random_range(0..8)) % 10;
            format!("order number {}", show(&d))
        }),
        11 => ("invalid-iban", {
            let s = iban(rng);
            // Swap two adjacent digits of the account number: mod 97 catches every such swap.
            let mut b = s.into_bytes();
            let i = b.iter().rposition(|&c| c.is_ascii_digit()).expect("digits");
            let j = b[..i]
                .iter()
                .rposition(|&c| c.is_ascii_digit())
                .expect("digits");
            if b[i] == b[j] {
                b[i] = if b[i] == b'9' { b'0' } else { b[i] + 1 };
            } else {
                b.swap(i, j);
            }
            format!("account {}", String::from_utf8(b).expect("ASCII"))
        }),
        12 => (
            "invalid-ssn",
            format!(
                "ref {}-{:02}-{:04}",
                ["000", "666", "900", "987"]
                    .choose(rng)
                    .copied()
                    .expect("non-empty"),
                rng.random_range(1..100),
                rng.random_range(1..10000)
            ),
        ),
        13 => (
            "timestamp",
            format!(
                "ts={} took {}ms",
                rng.random_range(1_600_000_000_000u64..1_800_000_000_000),
                rng.random_range(1..999)
            ),
        ),
        14 => (
            "version-ip-date",
            format!(
                "v{}.{}.{} on 10.{}.{}.{} at 2024-0{}-1{} 12:34:56",
                rng.random_range(0..20),
                rng.random_range(0..50),
                rng.random_range(0..100),
                rng.random_range(0..255),
                rng.random_range(0..255),
                rng.random_range(0..255),
                rng.random_range(1..10),
                rng.random_range(0..10)
            ),
        ),
        15 => (
            "prose-keywords",
            [
                "Your API key grants access to the project; never share the secret with anyone.",
                "Tokens expire after one hour. Refresh the token with the refresh endpoint.",
                "Set password_min_length to 12 and enable the secret scanning feature.",
                "The key_id and token_type fields are returned with every response.",
            ]
            .choose(rng)
            .copied()
            .expect("non-empty")
            .to_owned(),
        ),
        16 => ("bip39-words-bad-checksum", {
            let list = bip39::Language::English.word_list();
            loop {
                let idx: Vec<u16> = (0..12).map(|_| rng.random_range(0..2048u16)).collect();
                if !warden_detect::secrets::keys::bip39_checksum_ok(&idx) {
                    break idx
                        .iter()
                        .map(|&i| list[usize::from(i)])
                        .collect::<Vec<_>>()
                        .join(" ");
                }
            }
        }),
        17 => ("hex64-digest", format!("digest {}", pick(rng, HEX, 64))),
        18 => (
            "jwt-lookalike",
            format!(
                "eyJ{}.{}.{}",
                pick(rng, ALNUM, 20),
                pick(rng, ALNUM, 30),
                pick(rng, ALNUM, 20)
            ),
        ),
        19 => (
            "asset-name",
            format!("icon{}@2x.png", rng.random_range(1..50)),
        ),
        20 => (
            "url",
            format!(
                "https://docs.example.com/guide/{}?page={}#token-auth",
                pick(rng, LOWER_ALNUM, 8),
                rng.random_range(1..20)
            ),
        ),
        21 => (
            "random-digits",
            format!(
                "invoice {} / qty {}",
                show(&digits(rng, 10)),
                rng.random_range(1..100)
            ),
        ),
        22 => (
            "css-code",
            "color: #ffaa00; key = cache.get(user_id); token_count += 1;".to_owned(),
        ),
        24 => (
            "named-base64-text",
            format!(
                "{{\"key\": \"{}\", \"encoding\": \"base64\"}}",
                base64_of(FILLER.choose(rng).copied().expect("non-empty"))
            ),
        ),
        25 => (
            "named-digest",
            format!(
                "{} = \"{}\"",
                [
                    "cache_key",
                    "token_hash",
                    "etag",
                    "secret_sha256",
                    "key_fingerprint"
                ]
                .choose(rng)
                .copied()
                .expect("non-empty"),
                {
                    let n = [32, 40, 64].choose(rng).copied().expect("non-empty");
                    pick(rng, HEX, n)
                }
            ),
        ),
        26 => (
            "named-uuid",
            format!(
                "\"{}\": \"{}-{}-4{}-8{}-{}\"",
                ["idempotency_key", "api_key_id", "client_id", "session_key"]
                    .choose(rng)
                    .copied()
                    .expect("non-empty"),
                pick(rng, HEX, 8),
                pick(rng, HEX, 4),
                pick(rng, HEX, 3),
                pick(rng, HEX, 3),
                pick(rng, HEX, 12)
            ),
        ),
        27 => (
            "public-key",
            format!(
                "public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} user@host",
                pick(rng, B64, 43)
            )
            .replace(" user@host", ""),
        ),
        28 => (
            "code-call",
            [
                "api_key = get_api_key(config)",
                "token = await client.fetchToken({ scope })",
                "password = hash_password(form.password.data)",
                "const SECRET_HEADER = \"X-Secret-Token\";",
                "let key = format!(\"{prefix}:{id}\");",
            ]
            .choose(rng)
            .copied()
            .expect("non-empty")
            .to_owned(),
        ),
        29 => (
            "data-uri",
            format!(
                "<img src=\"data:image/png;base64,iVBORw0KGgo{}\">",
                pick(rng, B64, 200)
            ),
        ),
        30 => (
            "request-id",
            format!(
                "x-request-id: req_{}  trace_id={}",
                pick(rng, LOWER_ALNUM, 24),
                pick(rng, HEX, 32)
            ),
        ),
        31 => (
            "k8s-secret-ref",
            format!(
                "secretName: {}-tls\n  secretKeyRef:\n    name: db-credentials\n    key: password",
                pick(rng, b"abcdefghijklmnopqrstuvwxyz", 6)
            ),
        ),
        32 => (
            "publishable-key",
            format!(
                "stripe.publishableKey = \"pk_live_{}\"",
                pick(rng, ALNUM, 24)
            ),
        ),
        _ => (
            "docker-digest",
            format!("image: ghcr.io/example/app@sha256:{}", pick(rng, HEX, 64)),
        ),
    }
}
