use std::sync::Arc;

use futures::FutureExt as _;
use warden_store::{FileStore, Limits, MemoryStore};

use super::*;

fn admin_parts() -> (DynStore, HmacKey) {
    (
        Arc::new(MemoryStore::default()),
        HmacKey::from_bytes(&[7; 32]),
    )
}

fn verifier_over(store: &DynStore) -> ApiKeyVerifier {
    let store = Arc::clone(store);
    ApiKeyVerifier::new(
        HmacKey::from_bytes(&[7; 32]),
        Arc::new(move || {
            let store = Arc::clone(&store);
            async move { Ok(store) }.boxed()
        }),
    )
}

#[tokio::test]
async fn created_keys_verify_and_carry_their_roles() {
    let (store, hmac) = admin_parts();
    let admin = KeyAdmin {
        store: &store,
        hmac: &hmac,
    };
    let created = admin
        .create("alice", vec!["dev".into(), "admin".into()], None, None)
        .await
        .unwrap();
    assert!(created.key.starts_with("mwk_"));
    assert_eq!(created.key.len(), KEY_LEN);
    assert_eq!(parse_key(&created.key), Some(created.record.id.as_str()));
    // Only the keyed hash is stored.
    let stored = store
        .get(Namespace::API_KEY, &created.record.id)
        .await
        .unwrap()
        .unwrap();
    let stored = String::from_utf8(stored.to_vec()).unwrap();
    assert!(!stored.contains(&created.key[KEY_PREFIX.len() + ID_HEX + 1..]));

    let verifier = verifier_over(&store);
    assert_eq!(verifier.refresh().await.unwrap(), 1);
    let principal = verifier.verify(&created.key, unix_now()).unwrap();
    assert_eq!(&*principal.subject, "alice");
    assert_eq!(principal.method, AuthMethod::ApiKey);
    assert!(principal.has_role("admin") && principal.has_role("dev"));
}

#[tokio::test]
async fn refuses_revoked_expired_unknown_and_altered_keys() {
    let (store, hmac) = admin_parts();
    let admin = KeyAdmin {
        store: &store,
        hmac: &hmac,
    };
    let revoked = admin.create("alice", vec![], None, None).await.unwrap();
    let expiring = admin
        .create("alice", vec![], None, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let active = admin.create("alice", vec![], None, None).await.unwrap();
    admin.revoke(&revoked.record.id).await.unwrap();
    let verifier = verifier_over(&store);
    verifier.refresh().await.unwrap();
    let now = unix_now();

    assert_eq!(verifier.verify(&revoked.key, now), Err(KeyRefusal::Revoked));
    assert!(verifier.verify(&expiring.key, now).is_ok());
    assert_eq!(
        verifier.verify(&expiring.key, now + 60),
        Err(KeyRefusal::Expired)
    );
    // Several active keys per principal.
    assert!(verifier.verify(&active.key, now).is_ok());

    // A different secret under a real id, with a valid checksum: the HMAC refuses it.
    let id = &active.record.id;
    let body = format!("{KEY_PREFIX}{id}_{}", "0".repeat(SECRET_HEX));
    let forged = format!("{body}{:08x}", crc32fast::hash(body.as_bytes()));
    assert_eq!(verifier.verify(&forged, now), Err(KeyRefusal::Unknown));
    // A flipped character breaks the checksum.
    let mut typo = active.key.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        verifier.verify(std::str::from_utf8(&typo).unwrap(), now),
        Err(KeyRefusal::Malformed)
    );
    // Another gateway's HMAC key: nothing verifies.
    let other = ApiKeyVerifier::new(HmacKey::from_bytes(&[8; 32]), {
        let store = Arc::clone(&store);
        Arc::new(move || {
            let store = Arc::clone(&store);
            async move { Ok(store) }.boxed()
        })
    });
    other.refresh().await.unwrap();
    assert_eq!(other.verify(&active.key, now), Err(KeyRefusal::Unknown));
}

#[tokio::test]
async fn last_use_is_written_back_on_refresh() {
    let (store, hmac) = admin_parts();
    let admin = KeyAdmin {
        store: &store,
        hmac: &hmac,
    };
    let created = admin.create("bob", vec![], None, None).await.unwrap();
    let verifier = verifier_over(&store);
    verifier.refresh().await.unwrap();
    verifier.verify(&created.key, 1_900_000_000).unwrap();
    verifier.refresh().await.unwrap();
    let listed = admin.list().await.unwrap();
    assert_eq!(listed[0].last_used, Some(1_900_000_000));
}

#[tokio::test]
async fn names_are_checked() {
    let (store, hmac) = admin_parts();
    let admin = KeyAdmin {
        store: &store,
        hmac: &hmac,
    };
    for bad in ["", "a b", "a\nb", &"x".repeat(129)] {
        assert!(admin.create(bad, vec![], None, None).await.is_err());
        assert!(
            admin
                .create("ok", vec![bad.to_owned()], None, None)
                .await
                .is_err()
        );
    }
    assert!(matches!(
        admin.revoke("0000000000000000").await,
        Err(ApiKeyError::NotFound { .. })
    ));
}

#[tokio::test]
async fn hmac_key_file_is_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("data");
    assert!(HmacKey::load(&sub, false).unwrap().is_none());
    let first = HmacKey::load(&sub, true).unwrap().unwrap();
    let second = HmacKey::load(&sub, true).unwrap().unwrap();
    assert_eq!(first.digest("k"), second.digest("k"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(sub.join(HMAC_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(sub.join(HMAC_KEY_FILE), b"short").unwrap();
    assert!(matches!(
        HmacKey::load(&sub, true),
        Err(ApiKeyError::HmacLength { .. })
    ));
}

#[tokio::test]
async fn works_over_the_file_store_reopened_per_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let hmac = HmacKey::from_bytes(&[7; 32]);
    let key = {
        let store: DynStore = Arc::new(FileStore::open(&path, Limits::default()).await.unwrap());
        KeyAdmin {
            store: &store,
            hmac: &hmac,
        }
        .create("carol", vec![], None, None)
        .await
        .unwrap()
    };
    let opener_path = path.clone();
    let verifier = ApiKeyVerifier::new(
        HmacKey::from_bytes(&[7; 32]),
        Arc::new(move || {
            let path = opener_path.clone();
            async move {
                let store: DynStore = Arc::new(FileStore::open(&path, Limits::default()).await?);
                Ok(store)
            }
            .boxed()
        }),
    );
    verifier.refresh().await.unwrap();
    assert!(verifier.verify(&key.key, unix_now()).is_ok());
    // The verifier released the store: an administrator can revoke meanwhile.
    {
        let store: DynStore = Arc::new(FileStore::open(&path, Limits::default()).await.unwrap());
        KeyAdmin {
            store: &store,
            hmac: &hmac,
        }
        .revoke(&key.record.id)
        .await
        .unwrap();
    }
    verifier.refresh().await.unwrap();
    assert_eq!(
        verifier.verify(&key.key, unix_now()),
        Err(KeyRefusal::Revoked)
    );
}

proptest::proptest! {
    #[test]
    fn parse_key_never_panics(text in "mwk_[0-9a-f_]{0,100}") {
        let _ = parse_key(&text);
    }

    /// A key of the right byte length with a multi-byte character anywhere (a header value
    /// may carry any byte from 0x80 up) is refused, not split inside the character.
    #[test]
    fn parse_key_refuses_non_ascii_of_the_right_length(
        at in 0usize..KEY_LEN - 1,
        c in proptest::char::range('\u{80}', '\u{10ffff}'),
    ) {
        let mut key = String::from("mwk_");
        while key.len() < KEY_LEN {
            key.push('0');
        }
        let at = at.max(4);
        let mut text: String = key[..at].to_owned();
        text.push(c);
        while text.len() < KEY_LEN {
            text.push('0');
        }
        proptest::prop_assume!(text.len() == KEY_LEN);
        proptest::prop_assert_eq!(parse_key(&text), None);
    }
}

/// The key the review found: `é` across the id's end, 93 bytes in all.
#[test]
fn parse_key_refuses_a_character_across_a_split() {
    let key = format!("mwk_{}é{}", "0".repeat(15), "0".repeat(72));
    assert_eq!(key.len(), KEY_LEN);
    assert_eq!(parse_key(&key), None);
}
