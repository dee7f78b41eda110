use super::*;

fn kinds(text: &str) -> Vec<(&'static str, &str)> {
    scan(text)
        .into_iter()
        .map(|d| (d.kind, &text[d.span]))
        .collect()
}

#[test]
fn finds_pem_private_keys_whole() {
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yV2vG1w=\n-----END RSA PRIVATE KEY-----";
    let text = format!("here:\n{key}\nbye");
    assert!(kinds(&text).contains(&("private-key", key)));
}

#[test]
fn finds_a_truncated_pem_key() {
    let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\"";
    assert!(kinds(text).iter().any(|(k, _)| *k == "private-key"));
}

#[test]
fn finds_jwts_with_a_decodable_header_only() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let text = format!("Authorization: {jwt}");
    assert!(kinds(&text).contains(&("jwt", jwt)));
    assert!(
        kinds("eyJnotbase64json.eyJxxxxxxxx.abc")
            .iter()
            .all(|(k, _)| *k != "jwt")
    );
}

#[test]
fn verifies_bip39_checksums() {
    let valid = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let invalid = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
    assert!(kinds(&format!("seed: {valid}.")).contains(&("bip39-mnemonic", valid)));
    assert!(kinds(invalid).is_empty());
}

#[test]
fn finds_wallet_keys_by_checksum_or_context() {
    // WIF of private key 1 (compressed), a well-known test vector.
    let wif = "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn";
    assert!(kinds(&format!("import {wif}")).contains(&("wallet-private-key", wif)));
    let corrupted = "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWo";
    assert!(kinds(corrupted).is_empty());
    let hex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    assert!(
        kinds(&format!("PRIVATE_KEY=0x{hex}"))
            .iter()
            .any(|(k, v)| *k == "wallet-private-key" && v.ends_with(hex))
    );
    // The same 64 hex digits as a digest are not a key.
    assert!(kinds(&format!("sha256: {hex}")).is_empty());
}

#[test]
fn generic_assignments_need_plausible_values() {
    assert!(kinds("password = Tr0ub4dor&3").contains(&("password", "Tr0ub4dor&3")));
    for negative in [
        "password: string",
        "token = ${GITHUB_TOKEN}",
        "api_key = \"<your key here>\"",
        "max_tokens = 4096",
        "password = os.environ.get('DB')",
        "token_type: bearer_token_value",
        "password: ********",
    ] {
        assert!(
            kinds(negative).is_empty(),
            "{negative}: {:?}",
            kinds(negative)
        );
    }
}

#[test]
fn finds_credentials_in_urls() {
    let text = "DATABASE_URL=postgres://app:s3cr3tP4ss@db.internal:5432/app";
    assert!(kinds(text).contains(&("url-credentials", "s3cr3tP4ss")));
}

#[test]
fn hard_negatives_are_not_secrets() {
    for negative in [
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
        "id: 203db13e-70c7-462b-9a3d-bf32640cb0be",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "integrity sha512-7ZZXb1pX7e1J2Ry2fOVEUFh7kWWmvX3ZlaNXh1ybOsk",
        "The quick brown fox jumps over the lazy dog. VGhlIHF1aWNrIGJyb3duIGZveA==",
        "AKIAIOSFODNN7EXAMPLE",
    ] {
        assert!(
            kinds(negative).is_empty(),
            "{negative}: {:?}",
            kinds(negative)
        );
    }
}

#[test]
fn evidence_never_contains_the_secret() {
    let text = "ghp_R8xT2mQv9LpZ4nW7yK1sB6cJ0dF3hG5aE2uV";
    let d = scan(text).into_iter().next().expect("found");
    let f = d.to_finding("text");
    assert!(!f.evidence.contains("ghp_"));
    assert_eq!(f.rule, "secret.github-pat");
}

#[test]
fn the_packed_word_list_keeps_the_bip39_indices() {
    let list = bip39::Language::English.word_list();
    for (i, word) in list.iter().enumerate() {
        assert_eq!(
            keys::bip39_index_of(word),
            Some(u16::try_from(i).expect("2048 fits")),
            "{word}"
        );
    }
    assert_eq!(keys::bip39_index_of("ABANDON"), Some(0));
    assert_eq!(keys::bip39_index_of("the"), None);
}

#[test]
fn finds_xprv_keys_by_checksum() {
    use sha2::{Digest, Sha256};
    // A BIP-32 extended private key: version, depth, fingerprint, child, chain code, 0x00 + key.
    let mut payload = vec![0x04, 0x88, 0xAD, 0xE4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    payload.extend([0x11; 32]);
    payload.push(0);
    payload.extend([0x22; 32]);
    let check = Sha256::digest(Sha256::digest(&payload));
    payload.extend_from_slice(&check[..4]);
    let xprv = bs58::encode(&payload).into_string();
    assert!(xprv.starts_with("xprv"));
    assert!(kinds(&format!("backup: {xprv}\n")).contains(&("wallet-private-key", xprv.as_str())));
    let last = xprv.chars().last().expect("non-empty");
    let broken = format!(
        "{}{}",
        &xprv[..xprv.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    assert!(kinds(&broken).is_empty());
}
