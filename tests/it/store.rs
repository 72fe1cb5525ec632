//! The attachment store against a real S3-compatible server (moto): the
//! bytes and Content-Type come back through the presigned URL, keys are
//! fresh for every put and laid out as documented, and a missing bucket or
//! a dead endpoint is an error, never a hang.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mail_laser::mail::unix_to_rfc3339;
use mail_laser::store::{AttachmentStore, StoreError, StoreSettings, StoredObject};

use crate::common::DEADLINE;
use crate::common::moto::Moto;

const BUCKET: &str = "mail-laser-it";

/// Settings for `BUCKET` at `endpoint`, presigning for ten minutes.
fn settings(endpoint: &str) -> StoreSettings {
    StoreSettings {
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        key_prefix: "it/".into(),
        presign_ttl: Some(Duration::from_secs(600)),
        timeout: Duration::from_secs(10),
    }
}

/// moto takes any non-empty credentials.
fn store(settings: StoreSettings) -> AttachmentStore {
    AttachmentStore::with_credentials(settings, "test", "test").expect("the store builds")
}

/// A started moto with [`BUCKET`] created.
async fn moto_with_bucket(binary: &std::path::Path) -> Moto {
    let moto = Moto::start(binary).await;
    moto.create_bucket(BUCKET).await;
    moto
}

/// About 1 MiB holding every byte value, in no simple period.
fn binary_body() -> Bytes {
    let body: Vec<u8> = (0..1_048_583u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add((i >> 8) as u8))
        .collect();
    assert_eq!(body.iter().collect::<BTreeSet<_>>().len(), 256);
    Bytes::from(body)
}

/// `store.put` bounded by the suite's deadline: a hang fails the test.
async fn put(
    store: &AttachmentStore,
    name: Option<&str>,
    content_type: &str,
    bytes: Bytes,
) -> Result<StoredObject, StoreError> {
    tokio::time::timeout(DEADLINE, store.put(name, content_type, bytes))
        .await
        .expect("put finishes (with success or an error) in time")
}

/// GET `url`: status, Content-Type, body.
async fn get(url: &str) -> (u16, Option<String>, Bytes) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(DEADLINE)
        .send()
        .await
        .expect("GET answered");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, content_type, response.bytes().await.expect("body"))
}

/// Today's UTC date as the key spells it.
fn utc_date() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    unix_to_rfc3339(seconds as i64).unwrap()[..10].replace('-', "/")
}

#[tokio::test]
async fn the_presigned_url_returns_the_same_bytes_and_content_type() {
    let [moto_server] = require_tool!("moto_server");
    let moto = moto_with_bucket(&moto_server).await;
    let store = store(settings(&moto.endpoint));
    let body = binary_body();

    let stored = put(&store, Some("scan.pdf"), "application/pdf", body.clone())
        .await
        .expect("the upload succeeds");

    let presigned = stored.presigned_url.as_deref().expect("a presigned URL");
    // The plain URL is the presigned one without its query: the same
    // path-style location, encoded the same way.
    assert_eq!(
        presigned.split_once('?').map(|(url, _)| url),
        Some(stored.url.as_str())
    );
    assert!(presigned.contains("X-Amz-Signature="), "{presigned}");
    assert!(presigned.contains("X-Amz-Expires=600"), "{presigned}");
    let (status, content_type, fetched) = get(presigned).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/pdf"));
    assert_eq!(fetched.len(), body.len());
    assert!(
        fetched == body,
        "the fetched bytes differ from the uploaded ones"
    );

    // Without the signature the object is private, as on S3.
    let (status, _, _) = get(&stored.url).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn two_puts_of_the_same_name_get_different_keys() {
    let [moto_server] = require_tool!("moto_server");
    let moto = moto_with_bucket(&moto_server).await;
    let store = store(settings(&moto.endpoint));

    let first = put(&store, Some("report.txt"), "text/plain", "first".into())
        .await
        .unwrap();
    let second = put(&store, Some("report.txt"), "text/plain", "second".into())
        .await
        .unwrap();

    assert_ne!(first.key, second.key);
    // Both objects are there, each with its own content: nothing was
    // overwritten.
    for (stored, content) in [(&first, "first"), (&second, "second")] {
        let (status, content_type, fetched) = get(stored.presigned_url.as_deref().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some("text/plain"));
        assert_eq!(fetched, content.as_bytes());
    }

    // Without a TTL there is no presigned URL.
    let unsigned = self::store(StoreSettings {
        presign_ttl: None,
        ..settings(&moto.endpoint)
    });
    let third = put(&unsigned, Some("report.txt"), "text/plain", "third".into())
        .await
        .unwrap();
    assert_eq!(third.presigned_url, None);
    assert!(third.key != first.key && third.key != second.key);
}

#[tokio::test]
async fn keys_have_the_prefix_the_utc_date_random_hex_and_a_safe_name() {
    let [moto_server] = require_tool!("moto_server");
    let moto = moto_with_bucket(&moto_server).await;
    let store = store(settings(&moto.endpoint));

    let before = utc_date();
    let stored = put(
        &store,
        Some("../../etc/passwd"),
        "application/octet-stream",
        "x".into(),
    )
    .await
    .unwrap();
    let after = utc_date();

    let segments: Vec<&str> = stored.key.split('/').collect();
    assert_eq!(segments.len(), 6, "{}", stored.key);
    assert_eq!(segments[0], "it");
    let date = segments[1..4].join("/");
    assert!(date == before || date == after, "{date} is not today (UTC)");
    assert_eq!(segments[4].len(), 32);
    assert!(
        segments[4]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{}",
        segments[4]
    );
    assert_eq!(segments[5], ".._.._etc_passwd");
    assert_eq!(
        stored.url,
        format!("{}/{BUCKET}/{}", moto.endpoint, stored.key)
    );
    let (status, _, fetched) = get(stored.presigned_url.as_deref().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, "x".as_bytes());
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_is_an_error() {
    let [moto_server] = require_tool!("moto_server");
    let moto = Moto::start(&moto_server).await;
    let store = store(StoreSettings {
        bucket: "no-such-bucket".into(),
        ..settings(&moto.endpoint)
    });

    let error = put(&store, Some("a.txt"), "text/plain", "x".into())
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::Upload { .. }), "{error:?}");
}

#[tokio::test]
async fn a_dead_endpoint_is_an_error_not_a_hang() {
    // A port nothing listens on: bound, then released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = store(StoreSettings {
        timeout: Duration::from_secs(2),
        ..settings(&format!("http://127.0.0.1:{port}"))
    });

    let error = put(&store, None, "text/plain", "x".into())
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::Upload { .. }), "{error:?}");
}
