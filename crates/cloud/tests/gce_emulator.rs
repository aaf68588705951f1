//! The GCE image upload: the service-account token exchange against a local token endpoint that
//! verifies the JWT, the resumable upload against gcp-storage-emulator (through a proxy that
//! fails and cuts chunks), and images.insert against a local Compute double that checks the
//! request against the documented Image resource.

mod support;

use cloud::backoff::Backoff;
use cloud::gcp::auth::ServiceAccount;
use cloud::gcp::compute::{Compute, Image};
use cloud::gcp::publish::{publish, Publish};
use cloud::gcp::storage::{Storage, CHUNK_QUANTUM};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Action, Recorded, Reply};

const TOKEN: &str = "ya29.ferrocore-test";
const BUCKET: &str = "ferrocore-images";

/// A fresh RSA key: (private PEM, public PEM).
fn rsa_key(dir: &Path) -> (String, Vec<u8>) {
    let key = dir.join(format!("key-{}.pem", uuid_like()));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let path = key.to_str().unwrap();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path,
    ]);
    let public = run(&["pkey", "-in", path, "-pubout"]);
    (std::fs::read_to_string(&key).unwrap(), public)
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A service-account key file as Google issues it.
fn key_file(dir: &Path, private_pem: &str, token_uri: &str) -> std::path::PathBuf {
    let file = dir.join("sa.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "type": "service_account",
            "project_id": "ferrocore-test",
            "private_key_id": "k1",
            "private_key": private_pem,
            "client_email": "uploader@ferrocore-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        })
        .to_string(),
    )
    .unwrap();
    file
}

/// Google's token endpoint as RFC 7523 describes it: a jwt-bearer grant whose assertion is
/// signed by the account's key, for this audience, with a scope.
fn token_endpoint(public_pem: Vec<u8>) -> support::Server {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let server = support::serve(
        None,
        Box::new(move |r: &Recorded| {
            let form = r.form();
            let bad = |why: &str| {
                Action::Reply(Reply::json(
                    400,
                    &serde_json::json!({"error": "invalid_grant", "error_description": why}),
                ))
            };
            if r.method != "POST" || r.target != "/token" {
                return bad("wrong endpoint");
            }
            if form.get("grant_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            {
                return bad("grant_type");
            }
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            v.set_audience(&[format!("{}/token", b.lock().unwrap())]);
            v.set_issuer(&["uploader@ferrocore-test.iam.gserviceaccount.com"]);
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public_pem).unwrap();
            match jsonwebtoken::decode::<cloud::gcp::auth::Claims>(
                form.get("assertion").map(String::as_str).unwrap_or(""),
                &key,
                &v,
            ) {
                Ok(t)
                    if t.claims.scope.contains("auth/compute")
                        && t.claims.scope.contains("auth/devstorage.read_write")
                        && t.claims.exp > t.claims.iat
                        && t.header.kid.as_deref() == Some("k1") =>
                {
                    Action::Reply(Reply::json(
                        200,
                        &serde_json::json!({"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
                    ))
                }
                Ok(_) => bad("claims"),
                Err(e) => bad(&format!("Invalid JWT: {e}")),
            }
        }),
    );
    *base.lock().unwrap() = server.base.clone();
    server
}

/// Compute's images.insert and globalOperations.get, checking the documented Image fields.
fn compute_double(storage_base: String) -> support::Server {
    let polls = AtomicU32::new(0);
    support::serve(
        None,
        Box::new(move |r: &Recorded| {
            let err = |code: u16, msg: &str| {
                Action::Reply(Reply::json(
                    code,
                    &serde_json::json!({"error": {"code": code, "message": msg}}),
                ))
            };
            if r.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
                return err(
                    401,
                    "Request is missing required authentication credential.",
                );
            }
            match (r.method.as_str(), r.target.as_str()) {
                ("POST", "/compute/v1/projects/ferrocore-test/global/images") => {
                    match check_image(&r.body, &storage_base) {
                        Ok(name) => Action::Reply(Reply::json(
                            200,
                            &serde_json::json!({
                                "kind": "compute#operation",
                                "name": "operation-1",
                                "operationType": "insert",
                                "status": "RUNNING",
                                "targetLink": format!("https://www.googleapis.com/compute/v1/projects/ferrocore-test/global/images/{name}"),
                            }),
                        )),
                        Err(m) => err(400, &m),
                    }
                }
                ("GET", "/compute/v1/projects/ferrocore-test/global/operations/operation-1") => {
                    let done = polls.fetch_add(1, Ordering::SeqCst) >= 1;
                    Action::Reply(Reply::json(
                        200,
                        &serde_json::json!({
                            "kind": "compute#operation",
                            "name": "operation-1",
                            "status": if done { "DONE" } else { "RUNNING" },
                            "targetLink": "https://www.googleapis.com/compute/v1/projects/ferrocore-test/global/images/checked",
                        }),
                    ))
                }
                _ => err(404, "not found"),
            }
        }),
    )
}

/// The Image resource as documented (compute/docs/reference/rest/v1/images): known fields only,
/// name and family patterns, a Cloud Storage URL that exists, documented feature names.
fn check_image(body: &[u8], storage_base: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not an object")?;
    const FIELDS: &[&str] = &[
        "name",
        "family",
        "description",
        "rawDisk",
        "guestOsFeatures",
        "architecture",
        "labels",
        "licenses",
        "storageLocations",
        "diskSizeGb",
        "sourceType",
    ];
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{k}\""
            ));
        }
    }
    let pattern = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && !s.ends_with('-')
    };
    let name = v["name"].as_str().ok_or("name missing")?;
    if !pattern(name) {
        return Err(format!("Invalid value for field 'resource.name': '{name}'"));
    }
    if !pattern(v["family"].as_str().ok_or("family missing")?) {
        return Err("Invalid value for field 'resource.family'".into());
    }
    if v["architecture"] != "X86_64" {
        return Err("architecture".into());
    }
    let source = v["rawDisk"]["source"]
        .as_str()
        .ok_or("rawDisk.source missing")?;
    let object = source
        .strip_prefix("https://storage.googleapis.com/")
        .ok_or_else(|| format!("rawDisk.source {source} is not a Cloud Storage URL"))?;
    let (bucket, name_in_bucket) = object
        .split_once('/')
        .ok_or("no object in rawDisk.source")?;
    let url = format!(
        "{storage_base}/storage/v1/b/{bucket}/o/{}",
        name_in_bucket.replace('/', "%2F")
    );
    // The double asks the emulator as Compute asks Storage; a single-threaded emulator busy with
    // another test's request may drop the connection, so the double retries as Compute would.
    let mut attempt = 0;
    let meta = loop {
        match reqwest::blocking::get(&url) {
            Ok(m) => break m,
            Err(e) if attempt >= 2 => return Err(format!("asking Cloud Storage for {url}: {e}")),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    };
    if !meta.status().is_success() {
        return Err(format!("The resource '{source}' was not found"));
    }
    const FEATURES: &[&str] = &[
        "UEFI_COMPATIBLE",
        "VIRTIO_SCSI_MULTIQUEUE",
        "GVNIC",
        "SEV_CAPABLE",
        "MULTI_IP_SUBNET",
        "SECURE_BOOT",
        "WINDOWS",
        "IDPF",
        "SEV_SNP_CAPABLE",
        "TDX_CAPABLE",
    ];
    let features: Vec<&str> = v["guestOsFeatures"]
        .as_array()
        .ok_or("guestOsFeatures missing")?
        .iter()
        .map(|f| f["type"].as_str().unwrap_or(""))
        .collect();
    for f in &features {
        if !FEATURES.contains(f) {
            return Err(format!(
                "Invalid value for field 'resource.guestOsFeatures[].type': '{f}'"
            ));
        }
    }
    for want in ["UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC"] {
        if !features.contains(&want) {
            return Err(format!("{want} missing"));
        }
    }
    for (k, val) in v["labels"].as_object().ok_or("labels")? {
        let ok = |s: &str| {
            s.len() <= 63
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        };
        if !ok(k) || !ok(val.as_str().unwrap_or("X")) {
            return Err(format!("Invalid label {k}"));
        }
    }
    Ok(name.to_string())
}

/// A tarball with incompressible content, so it spans several chunks.
fn tarball(dir: &Path) -> std::path::PathBuf {
    let work = dir.join("t");
    std::fs::create_dir_all(&work).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..1_300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(work.join("disk.raw"), data).unwrap();
    let out = dir.join("image.tar.gz");
    let st = Command::new("tar")
        .args(["--format=gnu", "-Sczf"])
        .arg(&out)
        .arg("-C")
        .arg(&work)
        .arg("disk.raw")
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
fn service_account_upload_and_image_insert() {
    let dir = tempfile::tempdir().unwrap();
    let (_gcs, gcs_url) = support::gcs(BUCKET);
    // The 2nd chunk PUT fails with 503; the 4th reaches the emulator but its answer is lost.
    let chunk_puts = Arc::new(AtomicU32::new(0));
    let cp = chunk_puts.clone();
    let proxy = support::serve(
        Some(gcs_url.clone()),
        Box::new(move |r: &Recorded| {
            let is_chunk = r.method == "PUT"
                && r.header("content-range")
                    .is_some_and(|c| !c.starts_with("bytes */"));
            if !is_chunk {
                return Action::Forward;
            }
            match cp.fetch_add(1, Ordering::SeqCst) {
                1 => Action::Reply(Reply::json(
                    503,
                    &serde_json::json!({"error": {"code": 503, "message": "Backend Error"}}),
                )),
                3 => Action::ForwardThenDrop,
                _ => Action::Forward,
            }
        }),
    );
    let (private, public) = rsa_key(dir.path());
    let token_server = token_endpoint(public);
    let sa = ServiceAccount::from_file(&key_file(
        dir.path(),
        &private,
        "https://oauth2.invalid/token",
    ))
    .unwrap();
    let token = sa
        .access_token(
            Some(&format!("{}/token", token_server.base)),
            cloud::gcp::auth::SCOPES,
        )
        .unwrap();
    assert_eq!(token, TOKEN);

    let tar = tarball(dir.path());
    let bytes = std::fs::read(&tar).unwrap();
    let mut storage = Storage::new(&proxy.base, &token).unwrap();
    storage.chunk_size = CHUNK_QUANTUM;
    storage.backoff = Backoff {
        attempts: 5,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    let compute_server = compute_double(gcs_url.clone());
    let mut compute = Compute::new(&compute_server.base, &token).unwrap();
    compute.poll = Duration::from_millis(20);
    let mut image = Image::new(
        "ferrocore-0-1-0-abc123",
        "ferrocore-dev",
        "Ferrocore 0.1.0",
        BUCKET,
        "x",
    );
    image.labels.insert("version".into(), "0-1-0".into());
    let progress = AtomicU32::new(0);
    let link = publish(
        &storage,
        &compute,
        &Publish {
            tarball: tar.clone(),
            project: "ferrocore-test".into(),
            bucket: BUCKET.into(),
            image,
            timeout: Duration::from_secs(30),
        },
        &|n| {
            progress.fetch_add(n as u32, Ordering::Relaxed);
        },
        &|_| {},
    )
    .unwrap();
    assert!(link.ends_with("/global/images/checked"), "{link}");
    assert_eq!(progress.into_inner() as usize, bytes.len());

    // The object in the emulator is the tarball, byte for byte.
    let stored = Storage::new(&gcs_url, &token)
        .unwrap()
        .download(BUCKET, "ferrocore-0-1-0-abc123.tar.gz")
        .unwrap();
    assert_eq!(stored.len(), bytes.len());
    assert!(stored == bytes, "stored object differs from the tarball");

    // Both faults happened and were followed by a status query, then the upload went on.
    let seen = proxy.seen();
    let status_queries = seen
        .iter()
        .filter(|r| {
            r.header("content-range")
                .is_some_and(|c| c.starts_with("bytes */"))
        })
        .count();
    assert_eq!(status_queries, 2, "one after each fault");
    let chunks = bytes.len().div_ceil(CHUNK_QUANTUM as usize) as u32;
    // The 503'd chunk was sent twice; the cut one was stored, so not sent again.
    assert_eq!(chunk_puts.load(Ordering::SeqCst), chunks + 1);
    let insert = compute_server
        .seen()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&insert.body).unwrap();
    assert_eq!(
        body["rawDisk"]["source"],
        format!("https://storage.googleapis.com/{BUCKET}/ferrocore-0-1-0-abc123.tar.gz")
    );
    assert_eq!(body["family"], "ferrocore-dev");
}

#[test]
fn a_refused_key_names_the_account() {
    let dir = tempfile::tempdir().unwrap();
    // The endpoint trusts another key than the one in the file.
    let (_, other_public) = rsa_key(dir.path());
    let server = token_endpoint(other_public);
    let (private, _) = rsa_key(dir.path());
    let file = key_file(dir.path(), &private, &format!("{}/token", server.base));
    let err = ServiceAccount::from_file(&file)
        .unwrap()
        .access_token(None, cloud::gcp::auth::SCOPES)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("uploader@ferrocore-test.iam.gserviceaccount.com")
            && err.contains("invalid_grant")
            && err.contains("InvalidSignature"),
        "{err}"
    );
}

#[test]
fn compute_errors_are_reported_with_googles_message() {
    let (_gcs, gcs_url) = support::gcs(BUCKET);
    let server = compute_double(gcs_url);
    let compute = Compute::new(&server.base, TOKEN).unwrap();
    // The tarball was never uploaded: the double answers as Compute does.
    let image = Image::new(
        "ferrocore-x",
        "ferrocore-dev",
        "d",
        BUCKET,
        "missing.tar.gz",
    );
    let err = compute
        .insert_image("ferrocore-test", &image, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 400") && err.contains("was not found"),
        "{err}"
    );
}
