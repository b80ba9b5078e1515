//! Store tests against real sled databases in temporary directories.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tokd_protocol::Secret;

use super::crypto::{KEYCHECK_AAD, KEYCHECK_PLAINTEXT, RecordCipher, session_aad};
use super::key::{KeyBytes, decode_hex, parse_key};
use super::schema::tests::{full_record, minimal_record};
use super::schema::{self, SCHEMA_V1};
use super::*;

struct Env {
    tmp: TempDir,
    opts: StoreOptions,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        state_dir: tmp.path().join("state"),
        key_file: tmp.path().join("config/tokd/key"),
        credentials_dir: None,
    };
    Env { tmp, opts }
}

fn open(opts: &StoreOptions) -> (Store, Loaded) {
    match Store::open(opts) {
        Ok(v) => v,
        Err(e) => panic!("open failed: {e}"),
    }
}

fn open_err(opts: &StoreOptions) -> StoreError {
    match Store::open(opts) {
        Ok(_) => panic!("open unexpectedly succeeded"),
        Err(e) => e,
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, contents).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").mode() & 0o7777
}

/// Every entry under `dir`: relative path -> (mode, contents for files).
fn snapshot(dir: &Path) -> Snapshot {
    fn walk(base: &Path, dir: &Path, out: &mut Snapshot) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let rel = path.strip_prefix(base).expect("prefix").to_path_buf();
            if meta.is_dir() {
                out.insert(rel, (meta.mode(), None));
                walk(base, &path, out);
            } else {
                out.insert(rel, (meta.mode(), Some(fs::read(&path).expect("read"))));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

type Snapshot = BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>;

/// Asserts two snapshots are identical, naming the differing paths (not dumping bytes).
fn assert_unchanged(before: &Snapshot, after: &Snapshot) {
    let changed: std::collections::BTreeSet<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| p.display().to_string())
        .collect();
    assert!(changed.is_empty(), "files changed: {changed:?}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Opens the store's sled database directly (the store must be closed).
fn raw_db(opts: &StoreOptions) -> sled::Db {
    open_sled(&opts.state_dir.join(DB_DIR), &opts.state_dir).expect("raw sled open")
}

fn key_cipher(opts: &StoreOptions) -> RecordCipher {
    let bytes = fs::read(&opts.key_file).expect("read key");
    RecordCipher::new(&parse_key(&bytes).expect("key"))
}

fn names(loaded: &Loaded) -> Vec<&str> {
    loaded.records.iter().map(|r| r.name.as_str()).collect()
}

fn corrupt_names(loaded: &Loaded) -> Vec<&str> {
    loaded.corrupt.iter().map(|c| c.name.as_str()).collect()
}

/// Creates a store holding alice, bob and carol, then closes it.
async fn three_records(opts: &StoreOptions) {
    let (store, _) = open(opts);
    for name in ["alice", "bob", "carol"] {
        store.put(&full_record(name)).await.expect("put");
    }
}

#[tokio::test]
async fn put_open_round_trip_across_reopen() {
    let env = env();
    let (store, loaded) = open(&env.opts);
    assert_eq!(
        loaded,
        Loaded {
            records: vec![],
            corrupt: vec![]
        }
    );
    let mut alice = full_record("alice");
    store.put(&alice).await.expect("put alice");
    store.put(&minimal_record("bob")).await.expect("put bob");
    alice.refresh_count += 1;
    alice.access_token = Secret::new("at-alice-new");
    alice.terminal = Some(Terminal::NeedsConfig {
        reason: "invalid_client".into(),
    });
    store.put(&alice).await.expect("overwrite alice");
    drop(store);

    let (store, loaded) = open(&env.opts);
    assert!(loaded.corrupt.is_empty());
    assert_eq!(loaded.records, vec![alice.clone(), minimal_record("bob")]);
    assert!(store.remove("bob").await.expect("remove"));
    assert!(!store.remove("bob").await.expect("remove again"));
    drop(store);

    let (_store, loaded) = open(&env.opts);
    assert_eq!(loaded.records, vec![alice]);
}

#[tokio::test]
async fn fresh_start_creates_private_key_state_dir_and_keycheck() {
    let env = env();
    let (store, _) = open(&env.opts);
    let key = &env.opts.key_file;
    assert_eq!(store.key_source(), &KeySource::File(key.clone()));
    assert_eq!(store.state_dir(), env.opts.state_dir);
    assert_eq!(mode_of(key), 0o600);
    assert_eq!(fs::read(key).expect("read key").len(), 32);
    assert_eq!(mode_of(key.parent().expect("parent")), 0o700);
    assert_eq!(mode_of(&env.opts.state_dir), 0o700);
    let keycheck = env.opts.state_dir.join(KEYCHECK_FILE);
    assert_eq!(mode_of(&keycheck), 0o600);
    let leftovers: Vec<_> = fs::read_dir(&env.opts.state_dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(store);
    // The key is not re-minted on the next start.
    let before = fs::read(key).expect("read key");
    let _ = open(&env.opts);
    assert_eq!(fs::read(key).expect("read key"), before);
}

#[tokio::test]
async fn db_files_do_not_contain_plaintext_secrets() {
    let env = env();
    let (store, _) = open(&env.opts);
    let mut r = full_record("leakcheck");
    r.access_token = Secret::new("ACCESS-TOKEN-PLAINTEXT-7f3a9c");
    r.refresh_token = Some(Secret::new("REFRESH-TOKEN-PLAINTEXT-91be20"));
    r.id_token = Some(Secret::new("ID-TOKEN-PLAINTEXT-c0ffee"));
    r.provider = "PROVIDER-NAME-PLAINTEXT-55aa".into();
    store.put(&r).await.expect("put");
    store.flush().await.expect("flush");
    drop(store);

    let files = snapshot(&env.opts.state_dir);
    let total: usize = files
        .values()
        .filter_map(|(_, c)| c.as_ref())
        .map(Vec::len)
        .sum();
    assert!(total > 0);
    for (path, (_, contents)) in &files {
        let Some(contents) = contents else { continue };
        for marker in [
            "ACCESS-TOKEN-PLAINTEXT",
            "REFRESH-TOKEN-PLAINTEXT",
            "ID-TOKEN-PLAINTEXT",
            "PROVIDER-NAME-PLAINTEXT",
        ] {
            assert!(
                !contains(contents, marker.as_bytes()),
                "{marker} found in {}",
                path.display()
            );
        }
    }
    // Sanity: the search does find what is stored in clear (the session name is the key).
    assert!(
        files
            .values()
            .filter_map(|(_, c)| c.as_ref())
            .any(|c| contains(c, b"leakcheck"))
    );
}

#[tokio::test]
async fn wrong_key_is_refused_and_leaves_files_byte_identical() {
    let env = env();
    three_records(&env.opts).await;
    let before = snapshot(&env.opts.state_dir);
    let good_key = fs::read(&env.opts.key_file).expect("read key");

    // Wrong key file.
    write_file(&env.opts.key_file, &[0x11; 32], 0o600);
    let err = open_err(&env.opts);
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("the key does not open this database"), "{msg}");
    assert!(
        msg.contains(&format!("key file {}", env.opts.key_file.display())),
        "{msg}"
    );
    assert_unchanged(&before, &snapshot(&env.opts.state_dir));

    // Wrong systemd credential (takes precedence over the right key file).
    write_file(&env.opts.key_file, &good_key, 0o600);
    let creds = env.tmp.path().join("creds");
    write_file(&creds.join("tokd.key"), &[0x22; 32], 0o400);
    let opts = StoreOptions {
        credentials_dir: Some(creds.clone()),
        ..env.opts.clone()
    };
    let err = open_err(&opts);
    assert!(
        err.to_string().contains(&format!(
            "systemd credential {}",
            creds.join("tokd.key").display()
        )),
        "{err}"
    );
    assert_unchanged(&before, &snapshot(&env.opts.state_dir));

    // And the right key still opens everything.
    let (_store, loaded) = open(&env.opts);
    assert_eq!(names(&loaded), ["alice", "bob", "carol"]);
}

#[tokio::test]
async fn wrong_key_is_detected_without_any_session() {
    let env = env();
    drop(open(&env.opts));
    let before = snapshot(&env.opts.state_dir);
    write_file(&env.opts.key_file, &[0x33; 32], 0o600);
    assert!(matches!(open_err(&env.opts), StoreError::WrongKey { .. }));
    assert_unchanged(&before, &snapshot(&env.opts.state_dir));
}

#[test]
fn opening_sled_modifies_files_which_is_why_the_keycheck_is_a_file() {
    // Documents the empirical fact the design relies on (sled 0.34.7): open + drop of a
    // database, with nothing written, rewrites its files. If this ever stops failing the
    // keycheck file is still correct, merely no longer necessary.
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("db");
    {
        let db = sled_config(&path).open().expect("open");
        db.insert("k", "v").expect("insert");
        db.flush().expect("flush");
    }
    let before = snapshot(tmp.path());
    drop(sled_config(&path).open().expect("reopen"));
    assert!(
        snapshot(tmp.path()) != before,
        "sled left its files untouched"
    );
}

#[tokio::test]
async fn missing_key_with_existing_db_is_refused_and_mints_nothing() {
    let env = env();
    three_records(&env.opts).await;
    fs::remove_file(&env.opts.key_file).expect("rm key");
    let before = snapshot(&env.opts.state_dir);
    let err = open_err(&env.opts);
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("never minted"), "{msg}");
    assert!(
        msg.contains(&env.opts.key_file.display().to_string()),
        "{msg}"
    );
    assert!(!env.opts.key_file.exists());
    assert_unchanged(&before, &snapshot(&env.opts.state_dir));

    // With a credentials directory configured, the message names both places.
    let creds = env.tmp.path().join("creds");
    let opts = StoreOptions {
        credentials_dir: Some(creds.clone()),
        ..env.opts.clone()
    };
    let msg = open_err(&opts).to_string();
    assert!(
        msg.contains(&creds.join("tokd.key").display().to_string()),
        "{msg}"
    );
    assert!(!env.opts.key_file.exists());
}

#[test]
fn key_file_accessible_by_others_is_refused() {
    for mode in [0o644, 0o640, 0o604, 0o620] {
        let env = env();
        write_file(&env.opts.key_file, &[0x44; 32], mode);
        let err = open_err(&env.opts);
        assert!(matches!(err, StoreError::KeyPermissions { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", env.opts.key_file.display())),
            "{err}"
        );
        // Nothing was created under the refused key.
        assert!(!env.opts.state_dir.join(KEYCHECK_FILE).exists());
    }
    // Owner-only modes are fine.
    let env = env();
    write_file(&env.opts.key_file, &[0x44; 32], 0o400);
    drop(open(&env.opts));
}

#[tokio::test]
async fn hex_key_file_is_accepted_and_equals_raw_form() {
    let env = env();
    let raw: Vec<u8> = (100u8..132).collect();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    write_file(&env.opts.key_file, format!("{hex}\n").as_bytes(), 0o600);
    let (store, _) = open(&env.opts);
    store.put(&full_record("hexed")).await.expect("put");
    drop(store);
    // Without the newline, upper case: same key.
    write_file(&env.opts.key_file, hex.to_uppercase().as_bytes(), 0o600);
    let (_, loaded) = open(&env.opts);
    assert_eq!(names(&loaded), ["hexed"]);
    drop(loaded);
    // Raw form: same key.
    write_file(&env.opts.key_file, &raw, 0o600);
    let (_, loaded) = open(&env.opts);
    assert_eq!(names(&loaded), ["hexed"]);
}

#[test]
fn malformed_key_file_is_refused_without_showing_it() {
    for contents in [
        &b"short"[..],
        &[b'z'; 64][..],
        &[0x55; 33][..],
        &[b'a'; 200][..],
    ] {
        let env = env();
        write_file(&env.opts.key_file, contents, 0o600);
        let err = open_err(&env.opts);
        assert!(matches!(err, StoreError::KeyFormat { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("32 raw bytes or 64 hex digits"), "{msg}");
        assert!(!msg.contains("zzzz") && !msg.contains("short") && !msg.contains("aaaa"));
    }
}

#[test]
fn credential_wins_over_key_file_and_skips_mode_check() {
    let env = env();
    let creds = env.tmp.path().join("creds");
    write_file(&creds.join("tokd.key"), &[0x66; 32], 0o644);
    let opts = StoreOptions {
        credentials_dir: Some(creds.clone()),
        ..env.opts.clone()
    };
    let (store, _) = open(&opts);
    assert_eq!(
        store.key_source(),
        &KeySource::Credential(creds.join("tokd.key"))
    );
    assert_eq!(
        store.key_source().to_string(),
        format!("systemd credential {}", creds.join("tokd.key").display())
    );
    assert!(!env.opts.key_file.exists(), "no key file is minted");
}

#[test]
fn credentials_dir_without_tokd_key_falls_back_to_key_file() {
    let env = env();
    let creds = env.tmp.path().join("creds");
    fs::create_dir_all(&creds).expect("mkdir");
    let opts = StoreOptions {
        credentials_dir: Some(creds),
        ..env.opts.clone()
    };
    let (store, _) = open(&opts);
    assert_eq!(
        store.key_source(),
        &KeySource::File(env.opts.key_file.clone())
    );
}

#[test]
fn group_accessible_state_dir_is_refused() {
    let env = env();
    fs::create_dir_all(&env.opts.state_dir).expect("mkdir");
    fs::set_permissions(&env.opts.state_dir, fs::Permissions::from_mode(0o750)).expect("chmod");
    let err = open_err(&env.opts);
    assert!(
        matches!(err, StoreError::StateDirPermissions { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("chmod 700 {}", env.opts.state_dir.display())),
        "{err}"
    );
    assert!(!env.opts.key_file.exists(), "refused before minting a key");
}

#[tokio::test]
async fn flipped_byte_quarantines_one_record_until_discarded() {
    let env = env();
    three_records(&env.opts).await;
    let original = {
        let db = raw_db(&env.opts);
        let tree = db.open_tree(SESSIONS_TREE).expect("tree");
        let original = tree.get("bob").expect("get").expect("bob stored").to_vec();
        let mut bad = original.clone();
        bad[1 + 24 + 3] ^= 0x80; // a ciphertext byte
        tree.insert("bob", bad).expect("insert");
        db.flush().expect("flush");
        original
    };
    let mut flipped = original.clone();
    flipped[1 + 24 + 3] ^= 0x80;

    let (store, loaded) = open(&env.opts);
    assert_eq!(names(&loaded), ["alice", "carol"]);
    assert_eq!(corrupt_names(&loaded), ["bob"]);
    assert!(
        loaded.corrupt[0].reason.contains("authentication failed"),
        "{}",
        loaded.corrupt[0].reason
    );
    assert_eq!(store.corrupt_names(), ["bob"]);

    // Never overwritten or deleted by normal writes.
    let err = store.put(&full_record("bob")).await.expect_err("refused");
    assert!(matches!(err, StoreError::Quarantined { .. }), "{err}");
    let err = store.remove("bob").await.expect_err("refused");
    assert!(matches!(err, StoreError::Quarantined { .. }), "{err}");
    let err = store.discard_corrupt("alice").await.expect_err("refused");
    assert!(matches!(err, StoreError::NotQuarantined { .. }), "{err}");
    drop(store);

    // Still quarantined (and still the same bytes) after a restart.
    let (store, loaded) = open(&env.opts);
    assert_eq!(corrupt_names(&loaded), ["bob"]);
    store.discard_corrupt("bob").await.expect("discard");
    assert!(store.corrupt_names().is_empty());
    store
        .put(&minimal_record("bob"))
        .await
        .expect("put after discard");
    drop(store);

    let (store, loaded) = open(&env.opts);
    assert!(loaded.corrupt.is_empty());
    assert_eq!(names(&loaded), ["alice", "bob", "carol"]);
    drop(store);

    let db = raw_db(&env.opts);
    let quarantine = db.open_tree(QUARANTINE_TREE).expect("tree");
    let entries: Vec<(String, Vec<u8>)> = quarantine
        .iter()
        .map(|kv| {
            let (k, v) = kv.expect("entry");
            (String::from_utf8(k.to_vec()).expect("utf8 key"), v.to_vec())
        })
        .collect();
    assert_eq!(entries.len(), 1);
    let (qkey, qvalue) = &entries[0];
    let ms = qkey.strip_prefix("bob/").expect("bob/<ms>");
    assert!(ms.parse::<u64>().expect("epoch ms") > 1_600_000_000_000);
    assert_eq!(qvalue, &flipped, "raw bytes moved unchanged");
}

#[tokio::test]
async fn swapped_values_make_both_records_corrupt() {
    let env = env();
    three_records(&env.opts).await;
    {
        let db = raw_db(&env.opts);
        let tree = db.open_tree(SESSIONS_TREE).expect("tree");
        let a = tree.get("alice").expect("get").expect("alice");
        let c = tree.get("carol").expect("get").expect("carol");
        tree.insert("alice", c).expect("insert");
        tree.insert("carol", a).expect("insert");
        db.flush().expect("flush");
    }
    let (_store, loaded) = open(&env.opts);
    assert_eq!(names(&loaded), ["bob"]);
    assert_eq!(corrupt_names(&loaded), ["alice", "carol"]);
}

#[tokio::test]
async fn bad_envelope_schema_and_name_are_reported() {
    let env = env();
    three_records(&env.opts).await;
    let cipher = key_cipher(&env.opts);
    {
        let db = raw_db(&env.opts);
        let tree = db.open_tree(SESSIONS_TREE).expect("tree");
        // Unknown envelope version.
        let mut v = tree.get("alice").expect("get").expect("alice").to_vec();
        v[0] = 9;
        tree.insert("alice", v).expect("insert");
        // Authentic, but an unknown schema version.
        let mut plain = schema::encode(&full_record("bob"))
            .expect("encode")
            .to_vec();
        plain[0] = 99;
        let sealed = cipher.seal(&session_aad("bob"), &plain).expect("seal");
        tree.insert("bob", sealed).expect("insert");
        // Authentic, but the record inside names another session.
        let plain = schema::encode(&full_record("mallory")).expect("encode");
        let sealed = cipher.seal(&session_aad("carol"), &plain).expect("seal");
        tree.insert("carol", sealed).expect("insert");
        // Truncated.
        tree.insert("dave", vec![1u8, 2, 3]).expect("insert");
        db.flush().expect("flush");
    }
    let (_store, loaded) = open(&env.opts);
    assert!(loaded.records.is_empty());
    let reasons: BTreeMap<&str, &str> = loaded
        .corrupt
        .iter()
        .map(|c| (c.name.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(reasons["alice"], "unknown envelope version 9");
    assert_eq!(reasons["bob"], "unknown schema version 99");
    assert_eq!(reasons["carol"], "the record's name does not match its key");
    assert_eq!(reasons["dave"], "sealed value is truncated (3 bytes)");
}

#[test]
fn second_open_of_the_same_state_dir_is_locked() {
    let env = env();
    let (first, _) = open(&env.opts);
    let err = open_err(&env.opts);
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "another tokd-daemon is using the state directory {} (a second daemon needs its \
             own --state-dir and its own --socket)",
            env.opts.state_dir.display()
        )
    );
    // Clones share the one open database.
    let clone = first.clone();
    drop(first);
    assert!(matches!(open_err(&env.opts), StoreError::Locked { .. }));
    drop(clone);
    drop(open(&env.opts));
}

#[test]
fn sled_lock_conflict_maps_to_locked() {
    // The directory lock normally fires first; this covers sled's own lock (e.g. a
    // process that opened the db without the store).
    let tmp = tempfile::tempdir().expect("tempdir");
    let _held = sled::open(tmp.path().join("db")).expect("open");
    let err = sled::Config::new()
        .path(tmp.path().join("db"))
        .open()
        .expect_err("second sled open must fail");
    assert!(matches!(
        map_sled_open_error(err, tmp.path()),
        StoreError::Locked { .. }
    ));
}

#[tokio::test]
async fn missing_keycheck_with_existing_db_is_refused() {
    let env = env();
    three_records(&env.opts).await;
    fs::remove_file(env.opts.state_dir.join(KEYCHECK_FILE)).expect("rm");
    let err = open_err(&env.opts);
    assert!(matches!(err, StoreError::KeyCheckMissing { .. }), "{err}");
}

#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let env = env();
    let (store, _) = open(&env.opts);
    let record = minimal_record("x");
    assert_send(store.put(&record));
    assert_send(store.remove("x"));
    assert_send(store.discard_corrupt("x"));
    assert_send(store.flush());
    fn assert_sync_clone<T: Send + Sync + Clone + 'static>(_: &T) {}
    assert_sync_clone(&store);
}

// Golden fixtures: bytes written by schema v1 / envelope v1 must decode forever.

/// Fixed test key of the fixtures: bytes 0x00..=0x1f.
fn fixture_cipher() -> RecordCipher {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::try_from(i).expect("small");
    }
    RecordCipher::new(&KeyBytes::from_array(key))
}

/// Fixed nonce of the fixtures: bytes 0xa0..=0xb7.
fn fixture_nonce() -> [u8; 24] {
    let mut nonce = [0u8; 24];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = 0xa0 + u8::try_from(i).expect("small");
    }
    nonce
}

fn fixture_bytes(hex: &str) -> Vec<u8> {
    let hex: String = hex.split_whitespace().collect();
    let mut out = vec![0u8; hex.len() / 2];
    assert!(decode_hex(hex.as_bytes(), &mut out), "fixture is not hex");
    out
}

fn to_hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned() + "\n")
        .collect()
}

/// The record in `fixtures/session_v1.hex`. Frozen: spelled out here rather than shared
/// with other tests so that nobody changes it by accident.
fn golden_record() -> SessionRecord {
    SessionRecord {
        name: "golden".to_owned(),
        provider: "example".to_owned(),
        attrs: vec![
            ("account".to_owned(), "alice@example.com".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ],
        access_token: Secret::new("at-golden-0123456789"),
        token_type: "Bearer".to_owned(),
        expires_at_ms: 1_700_000_360_000,
        refresh_token: Some(Secret::new("rt-golden-abcdef")),
        refresh_expires_at_ms: Some(1_702_592_000_000),
        id_token: Some(Secret::new("eyJhbGciOiJub25lIn0.e30.")),
        scope: Some("openid offline_access".to_owned()),
        created_at_ms: 1_700_000_000_000,
        last_refresh_at_ms: Some(1_700_000_300_000),
        refresh_count: 7,
        terminal: Some(Terminal::NeedsLogin {
            reason: "invalid_grant: token revoked".to_owned(),
        }),
        refresh_origin: Some("https://login.example.com".to_owned()),
        in_flight_since_ms: Some(-5),
    }
}

const SESSION_V1_FIXTURE: &str = include_str!("fixtures/session_v1.hex");
const KEYCHECK_V1_FIXTURE: &str = include_str!("fixtures/keycheck_v1.hex");

#[test]
fn golden_session_v1_still_decodes() {
    let sealed = fixture_bytes(SESSION_V1_FIXTURE);
    let cipher = fixture_cipher();
    let record =
        open_record(&cipher, b"golden", &sealed).unwrap_or_else(|reason| panic!("{reason}"));
    assert_eq!(record, golden_record());
    // While v1 is the current schema, encoding must also reproduce the fixture exactly:
    // an accidental change to the v1 layout fails here before it ships.
    if schema::CURRENT_SCHEMA == SCHEMA_V1 {
        let plain = schema::encode(&golden_record()).expect("encode");
        let resealed = cipher
            .seal_with_nonce(&fixture_nonce(), &session_aad("golden"), &plain)
            .expect("seal");
        assert_eq!(
            resealed,
            sealed,
            "schema v1 encoding changed; new bytes:\n{}",
            to_hex(&resealed)
        );
    }
}

#[test]
fn golden_keycheck_v1_still_verifies() {
    let sealed = fixture_bytes(KEYCHECK_V1_FIXTURE);
    let cipher = fixture_cipher();
    let plain = cipher.open(KEYCHECK_AAD, &sealed).expect("keycheck opens");
    assert_eq!(plain.as_slice(), KEYCHECK_PLAINTEXT);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(KEYCHECK_FILE);
    fs::write(&path, &sealed).expect("write");
    let source = KeySource::File("fixture".into());
    verify_keycheck(&cipher, &path, &source, tmp.path()).expect("verifies");
    let other = RecordCipher::new(&KeyBytes::from_array([0xee; 32]));
    assert!(matches!(
        verify_keycheck(&other, &path, &source, tmp.path()),
        Err(StoreError::WrongKey { .. })
    ));
}

/// sled's `flush_async` deadlocked under concurrent flushes (a refresh storm); the group
/// commit must see every one of many concurrent writers through, and persist them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_puts_all_complete_and_persist() {
    let e = env();
    let (store, _) = open(&e.opts);
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut record = minimal_record(&format!("s{i}"));
                record.refresh_token = Some(Secret::new(format!("rt-{i}")));
                store.put(&record).await
            })
        })
        .collect();
    let all = async {
        for w in writers {
            w.await.expect("task").expect("put");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("every concurrent put completes");
    drop(store);
    let (_, loaded) = open(&e.opts);
    assert_eq!(loaded.records.len(), 64);
}

#[tokio::test]
async fn a_failed_removal_leaves_the_journal_witnessing_the_record() {
    let env = env();
    let opts = &env.opts;
    {
        let (store, _) = open(opts);
        store.put(&full_record("gone")).await.expect("put");
        store.fail_next_write();
        store
            .remove("gone")
            .await
            .expect_err("the injected failure");
    }
    // The database then loses the record it still held (truncated files, say).
    {
        let db = raw_db(opts);
        db.open_tree("sessions")
            .expect("tree")
            .remove("gone")
            .expect("remove");
        db.flush().expect("flush");
    }
    let (_, loaded) = open(opts);
    assert_eq!(
        corrupt_names(&loaded),
        ["gone"],
        "the journal still names the session the failed removal kept"
    );
}
