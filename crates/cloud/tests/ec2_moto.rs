//! The AMI upload against moto's server on 127.0.0.1 (EC2, EBS direct APIs, S3, IAM), with a
//! recording proxy in front that checks each request's documented fields and injects throttling.

mod support;

use cloud::aws::ami::{self, Publish, Transfer};
use cloud::aws::client::{Body, Request};
use cloud::aws::ebs::{Ebs, BLOCK_SIZE};
use cloud::aws::ec2::Ec2;
use cloud::aws::s3::S3;
use cloud::aws::{Client, Credentials, Error, Settings};
use cloud::backoff::Backoff;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{Action, Recorded, Reply};

fn client(endpoint: &str, key_id: &str, secret: &str) -> Client {
    let mut c = Client::new(Settings {
        credentials: Credentials {
            access_key_id: key_id.into(),
            secret_access_key: secret.into(),
            session_token: None,
            source: "the test".into(),
        },
        region: "us-east-1".into(),
        endpoint_url: Some(endpoint.into()),
    })
    .unwrap();
    c.backoff = Backoff {
        attempts: 4,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    c
}

/// 5 blocks and a bit: data in blocks 0, 2, 5 (the short last one), zeros elsewhere.
fn test_image(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let bs = BLOCK_SIZE as usize;
    let mut bytes = vec![0u8; 5 * bs + 4096];
    for (i, b) in bytes[..bs].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    bytes[2 * bs + 17] = 0xAA;
    bytes[5 * bs + 4095] = 0x55;
    let path = dir.join("disk.raw");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn publish_spec(image: std::path::PathBuf, transfer: Transfer) -> Publish {
    Publish {
        image,
        name: "ferrocore-0.1.0-abc123".into(),
        description: "Ferrocore 0.1.0 (build abc123)".into(),
        tags: vec![
            ("Name".into(), "ferrocore-0.1.0-abc123".into()),
            ("version".into(), "0.1.0".into()),
            ("build-id".into(), "abc123".into()),
        ],
        transfer,
        public: true,
        copy_to_regions: vec!["us-west-2".into()],
        timeout: Duration::from_secs(60),
    }
}

fn operation(r: &Recorded) -> String {
    r.form().get("Action").cloned().unwrap_or_else(|| {
        let t = &r.target;
        match (r.method.as_str(), t.as_str()) {
            ("POST", "/snapshots") => "StartSnapshot".into(),
            ("PUT", t) if t.contains("/blocks/") => "PutSnapshotBlock".into(),
            ("POST", t) if t.starts_with("/snapshots/completion/") => "CompleteSnapshot".into(),
            _ => format!("{} {t}", r.method),
        }
    })
}

/// The credential scope of a SigV4 Authorization header: `<key>/<date>/<region>/<service>`.
fn scope(r: &Recorded) -> String {
    let auth = r.header("authorization").unwrap_or_default();
    let cred = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split(',').next())
        .unwrap_or_default();
    let parts: Vec<&str> = cred.split('/').collect();
    format!(
        "{}/{}/{}",
        parts.first().unwrap_or(&""),
        parts.get(2).unwrap_or(&""),
        parts.get(3).unwrap_or(&"")
    )
}

#[test]
fn ebs_direct_upload_registers_an_ami_whose_snapshot_holds_the_image() {
    let (_moto, moto_url) = support::moto(&[]);
    // Throttle the first two RegisterImage calls and one PutSnapshotBlock, as EC2 and EBS do.
    let register_calls = Arc::new(AtomicU32::new(0));
    let block_calls = Arc::new(AtomicU32::new(0));
    let (rc, bc) = (register_calls.clone(), block_calls.clone());
    let proxy = support::serve(
        Some(moto_url.clone()),
        Box::new(move |r: &Recorded| {
            match operation(r).as_str() {
            "RegisterImage" if rc.fetch_add(1, Ordering::SeqCst) < 2 => Action::Reply(Reply::new(
                503,
                "text/xml",
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>t</RequestID></Response>",
            )),
            "PutSnapshotBlock" if bc.fetch_add(1, Ordering::SeqCst) == 1 => {
                Action::Reply(Reply::json(
                    400,
                    &serde_json::json!({"__type": "ThrottlingException", "Message": "Rate exceeded"}),
                ))
            }
            _ => Action::Forward,
        }
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = test_image(dir.path());
    let c = client(&proxy.base, "AKIDFERROCORETEST", "not-a-real-secret");

    let lines = std::sync::Mutex::new(Vec::new());
    let sent = AtomicU32::new(0);
    let published = ami::publish(
        &c,
        &publish_spec(image, Transfer::Direct { threads: 3 }),
        &|n| {
            sent.fetch_add(n as u32, Ordering::Relaxed);
        },
        &|l| lines.lock().unwrap().push(l.to_string()),
    )
    .unwrap();
    assert_eq!(
        sent.into_inner() as usize,
        bytes.len(),
        "progress covers the image"
    );
    assert_eq!((published.blocks_written, published.blocks_skipped), (3, 3));
    assert_eq!(published.images.len(), 2);
    assert_eq!(published.images[0].0, "us-east-1");
    assert_eq!(published.images[1].0, "us-west-2");

    // The snapshot holds exactly the image: written blocks read back (checksums checked by
    // get_block), everything else zero.
    let direct = client(&moto_url, "AKIDFERROCORETEST", "x");
    let ebs = Ebs { client: &direct };
    let blocks = ebs.list_blocks(&published.snapshot_id).unwrap();
    let indices: Vec<u64> = blocks.iter().map(|b| b.block_index).collect();
    assert_eq!(indices, [0, 2, 5]);
    let mut volume = vec![0u8; 6 * BLOCK_SIZE as usize];
    for b in &blocks {
        let data = ebs.get_block(&published.snapshot_id, b).unwrap();
        assert_eq!(data.len(), BLOCK_SIZE as usize);
        let at = (b.block_index * BLOCK_SIZE) as usize;
        volume[at..at + data.len()].copy_from_slice(&data);
    }
    assert_eq!(&volume[..bytes.len()], &bytes[..]);
    assert!(volume[bytes.len()..].iter().all(|&b| b == 0));

    // The AMIs exist with their tags, in both regions.
    let expected_tags = {
        let mut t = publish_spec(dir.path().into(), Transfer::Direct { threads: 1 }).tags;
        t.sort();
        t
    };
    for (region, id) in &published.images {
        let info = Ec2::in_region(&direct, region).describe_image(id).unwrap();
        assert_eq!(info.name, "ferrocore-0.1.0-abc123", "{region}");
        let mut tags = info.tags.clone();
        tags.sort();
        assert_eq!(tags, expected_tags, "{region}");
    }

    // Each request as the APIs document it.
    let seen = proxy.seen();
    let ops: Vec<String> = seen.iter().map(operation).collect();
    assert_eq!(
        register_calls.load(Ordering::SeqCst),
        3,
        "two throttled, then registered"
    );
    let start = seen
        .iter()
        .find(|r| operation(r) == "StartSnapshot")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&start.body).unwrap();
    assert_eq!(body["VolumeSize"], 1);
    assert!(body["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["Key"] == "build-id"));
    let puts: Vec<&Recorded> = seen
        .iter()
        .filter(|r| operation(r) == "PutSnapshotBlock")
        .collect();
    assert_eq!(
        puts.len(),
        4,
        "3 blocks, one of them throttled once: {ops:?}"
    );
    for p in &puts {
        assert_eq!(p.body.len(), BLOCK_SIZE as usize);
        assert_eq!(p.header("x-amz-data-length"), Some("524288"));
        assert_eq!(p.header("x-amz-checksum-algorithm"), Some("SHA256"));
        assert_eq!(
            p.header("x-amz-checksum"),
            Some(cloud::aws::ebs::checksum(&p.body).as_str())
        );
        assert_eq!(scope(p), "AKIDFERROCORETEST/us-east-1/ebs");
    }
    let complete = seen
        .iter()
        .find(|r| operation(r) == "CompleteSnapshot")
        .unwrap();
    assert_eq!(complete.header("x-amz-changedblockscount"), Some("3"));
    let register = seen
        .iter()
        .rfind(|r| operation(r) == "RegisterImage")
        .unwrap()
        .form();
    for (k, v) in [
        ("Architecture", "x86_64"),
        ("VirtualizationType", "hvm"),
        ("EnaSupport", "true"),
        ("BootMode", "uefi-preferred"),
        ("ImdsSupport", "v2.0"),
        ("RootDeviceName", "/dev/xvda"),
        ("BlockDeviceMapping.1.DeviceName", "/dev/xvda"),
        (
            "BlockDeviceMapping.1.Ebs.SnapshotId",
            published.snapshot_id.as_str(),
        ),
        ("Name", "ferrocore-0.1.0-abc123"),
    ] {
        assert_eq!(
            register.get(k).map(String::as_str),
            Some(v),
            "RegisterImage {k}"
        );
    }
    let modify: Vec<_> = seen
        .iter()
        .filter(|r| operation(r) == "ModifyImageAttribute")
        .map(|r| r.form())
        .collect();
    assert_eq!(modify.len(), 2, "both AMIs made public");
    assert!(modify
        .iter()
        .all(|f| f.get("LaunchPermission.Add.1.Group").map(String::as_str) == Some("all")));
    let copy = seen.iter().find(|r| operation(r) == "CopyImage").unwrap();
    assert_eq!(
        scope(copy),
        "AKIDFERROCORETEST/us-west-2/ec2",
        "sent to the destination"
    );
    assert_eq!(
        copy.form().get("SourceImageId"),
        Some(&published.images[0].1)
    );
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("3 blocks written")));
}

#[test]
fn persistent_throttling_gives_up_with_the_reason() {
    let (_moto, moto_url) = support::moto(&[]);
    let proxy = support::serve(
        Some(moto_url),
        Box::new(|r: &Recorded| {
            if r.form().get("Action").map(String::as_str) == Some("DescribeImages") {
                Action::Reply(Reply::new(
                    503,
                    "text/xml",
                    "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors></Response>",
                ))
            } else {
                Action::Forward
            }
        }),
    );
    let c = client(&proxy.base, "AKIDFERROCORETEST", "x");
    let err = Ec2::new(&c).describe_image("ami-12345678").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::GaveUp { attempts: 4, .. }), "{text}");
    assert!(
        text.contains("ec2 DescribeImages: giving up after 4 attempts")
            && text.contains("RequestLimitExceeded"),
        "{text}"
    );
    assert_eq!(proxy.seen().len(), 4);
}

/// A non-retryable API error is reported at once, with its code.
#[test]
fn api_errors_are_not_retried() {
    let (_moto, moto_url) = support::moto(&[]);
    let proxy = support::serve(Some(moto_url), Box::new(|_: &Recorded| Action::Forward));
    let c = client(&proxy.base, "AKIDFERROCORETEST", "x");
    let err = Ec2::new(&c)
        .wait_snapshot("snap-00000000000000000", Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DescribeSnapshots failed") && err.contains("InvalidSnapshot.NotFound"),
        "{err}"
    );
    assert_eq!(proxy.seen().len(), 1);
}

/// With moto checking signatures (its IAM), our SigV4 passes; a wrong secret or an unknown key
/// gives a message naming the key id, never the secret, and is not retried.
#[test]
fn moto_verifies_our_signatures_and_bad_credentials_are_named() {
    // The first three requests (the IAM setup) go unauthenticated.
    let (_moto, url) = support::moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
    let setup = client(&url, "AKIDSETUP", "setup");
    let iam = |action: &'static str, params: &[(&str, &str)]| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action)
            .append_pair("Version", "2010-05-08");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let resp = setup
            .send(
                &Request::new("iam", action, http::Method::POST, "/".into())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::Bytes(form.finish().into_bytes())),
            )
            .unwrap();
        cloud::xml::Element::parse(&resp.text()).unwrap()
    };
    iam("CreateUser", &[("UserName", "builder")]);
    iam(
        "PutUserPolicy",
        &[
            ("UserName", "builder"),
            ("PolicyName", "all"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            ),
        ],
    );
    let key = iam("CreateAccessKey", &[("UserName", "builder")]);
    let id = key.find_text("AccessKeyId").unwrap();
    let secret = key.find_text("SecretAccessKey").unwrap();

    // Right key: EBS direct (JSON and binary bodies), S3 (unsigned payload) and EC2 all verify.
    // (Not CompleteSnapshot: with an empty body moto checks the signature against its parsed
    // parameters instead, so no client's signature can match there.)
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = test_image(dir.path());
    let good = client(&url, &id, &secret);
    let ebs = Ebs { client: &good };
    let snapshot = ebs
        .start_snapshot(1, "signed", &[("k".into(), "v".into())])
        .unwrap();
    ebs.put_block(&snapshot, 0, &bytes[..BLOCK_SIZE as usize])
        .unwrap();
    let s3 = S3 { client: &good };
    s3.create_bucket("ferrocore-images").unwrap();
    s3.put_file("ferrocore-images", "dir/disk.raw", &image)
        .unwrap();
    assert_eq!(s3.get("ferrocore-images", "dir/disk.raw").unwrap(), bytes);
    Ec2::new(&good)
        .create_tags(&[&snapshot], &[("k".into(), "v".into())])
        .unwrap();

    // Wrong secret: moto recomputes the signature and refuses it.
    let wrong = client(&url, &id, "wrong-secret-value");
    let err = Ec2::new(&wrong).describe_image("ami-12345678").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Auth { .. }), "{text}");
    // EC2 says AuthFailure for a bad signature, as the real service does.
    assert!(text.contains(&id) && text.contains("AuthFailure"), "{text}");
    assert!(!text.contains("wrong-secret-value"));
    let text = Ebs { client: &wrong }
        .start_snapshot(1, "x", &[])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(&id) && text.contains("SignatureDoesNotMatch"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"));
    // Unknown key.
    let unknown = client(&url, "AKIDNOSUCHKEY0000000", "whatever");
    let text = Ebs { client: &unknown }
        .start_snapshot(1, "x", &[])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("AKIDNOSUCHKEY0000000") && text.contains("refused the credentials"),
        "{text}"
    );
}

/// An account whose policy has no `ebs:*` (or a region without the EBS direct APIs): with a
/// bucket given, the upload falls back to S3 + ImportSnapshot. moto has no ImportSnapshot, so
/// the proxy plays EC2's VM Import: it reads the object the upload put into moto's S3 and turns
/// it into a real moto snapshot; the AMI is then registered on that snapshot as usual.
#[test]
fn refused_ebs_direct_falls_back_to_s3_and_import_snapshot() {
    const BUCKET: &str = "ferrocore-import";
    let (_moto, moto_url) = support::moto(&[]);
    let direct = client(&moto_url, "AKIDFERROCORETEST", "x");
    S3 { client: &direct }.create_bucket(BUCKET).unwrap();

    let polls = Arc::new(AtomicU32::new(0));
    let imported = Arc::new(std::sync::Mutex::new(None::<String>));
    let (p, imp, url) = (polls.clone(), imported.clone(), moto_url.clone());
    let proxy = support::serve(
        Some(moto_url.clone()),
        Box::new(move |r: &Recorded| match operation(r).as_str() {
            "StartSnapshot" => Action::Reply(Reply::json(
                403,
                &serde_json::json!({
                    "__type": "AccessDeniedException",
                    "Message": "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ebs:StartSnapshot"
                }),
            )),
            "ImportSnapshot" => {
                let f = r.form();
                assert_eq!(f["DiskContainer.Format"], "RAW");
                assert_eq!(f["DiskContainer.UserBucket.S3Bucket"], BUCKET);
                let key = &f["DiskContainer.UserBucket.S3Key"];
                let moto = client(&url, "AKIDFERROCORETEST", "x");
                let object = S3 { client: &moto }.get(BUCKET, key).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join("imported.raw");
                std::fs::write(&file, &object).unwrap();
                let up = Ebs { client: &moto }
                    .upload(&file, "imported", &[], 1, &|_| {})
                    .unwrap();
                *imp.lock().unwrap() = Some(up.snapshot_id);
                Action::Reply(Reply::new(
                    200,
                    "text/xml",
                    "<ImportSnapshotResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><importTaskId>import-snap-0123456789abcdef0</importTaskId></ImportSnapshotResponse>",
                ))
            }
            "DescribeImportSnapshotTasks" => {
                assert_eq!(r.form()["ImportTaskId.1"], "import-snap-0123456789abcdef0");
                let (status, progress) = if p.fetch_add(1, Ordering::SeqCst) == 0 {
                    ("active", "<progress>42</progress>")
                } else {
                    ("completed", "")
                };
                let snap = imp.lock().unwrap().clone().unwrap_or_default();
                Action::Reply(Reply::new(
                    200,
                    "text/xml",
                    format!("<DescribeImportSnapshotTasksResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><importSnapshotTaskSet><item><importTaskId>import-snap-0123456789abcdef0</importTaskId><snapshotTaskDetail><format>RAW</format>{progress}<status>{status}</status><snapshotId>{snap}</snapshotId></snapshotTaskDetail></item></importSnapshotTaskSet></DescribeImportSnapshotTasksResponse>"),
                ))
            }
            _ => Action::Forward,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let (image, bytes) = test_image(dir.path());
    let c = client(&proxy.base, "AKIDFERROCORETEST", "x");
    let lines = std::sync::Mutex::new(Vec::new());
    let mut spec = publish_spec(
        image,
        Transfer::DirectOrS3 {
            threads: 2,
            bucket: BUCKET.into(),
        },
    );
    spec.copy_to_regions.clear();
    let published = ami::publish(&c, &spec, &|_| {}, &|l| {
        lines.lock().unwrap().push(l.to_string())
    })
    .unwrap();

    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("falling back to S3 + ImportSnapshot")
                && l.contains("AccessDeniedException")),
        "{lines:?}"
    );
    // The object S3 holds is the image, byte for byte.
    let object = S3 { client: &direct }
        .get(BUCKET, "ferrocore-0.1.0-abc123.raw")
        .unwrap();
    assert!(object == bytes, "the S3 object differs from the image");
    // The AMI sits on the imported snapshot, which holds the image.
    assert_eq!(
        Some(published.snapshot_id.clone()),
        imported.lock().unwrap().clone()
    );
    assert_eq!(polls.load(Ordering::SeqCst), 2, "active, then completed");
    let ebs = Ebs { client: &direct };
    let mut volume = vec![0u8; 6 * BLOCK_SIZE as usize];
    for b in ebs.list_blocks(&published.snapshot_id).unwrap() {
        let data = ebs.get_block(&published.snapshot_id, &b).unwrap();
        let at = (b.block_index * BLOCK_SIZE) as usize;
        volume[at..at + data.len()].copy_from_slice(&data);
    }
    assert_eq!(&volume[..bytes.len()], &bytes[..]);
    let (region, ami_id) = &published.images[0];
    let info = Ec2::in_region(&direct, region)
        .describe_image(ami_id)
        .unwrap();
    assert_eq!(info.name, "ferrocore-0.1.0-abc123");
    let register = proxy
        .seen()
        .into_iter()
        .find(|r| operation(r) == "RegisterImage")
        .unwrap()
        .form();
    assert_eq!(
        register.get("BlockDeviceMapping.1.Ebs.SnapshotId"),
        Some(&published.snapshot_id)
    );
}

/// Rejected credentials are not a refusal of the EBS direct APIs: no fallback, the key named.
#[test]
fn rejected_credentials_do_not_fall_back_to_s3() {
    let proxy = support::serve(
        None,
        Box::new(|_: &Recorded| {
            Action::Reply(Reply::json(
                403,
                &serde_json::json!({"__type": "UnrecognizedClientException", "Message": "The security token included in the request is invalid."}),
            ))
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = test_image(dir.path());
    let c = client(&proxy.base, "AKIDREVOKED", "x");
    let spec = publish_spec(
        image,
        Transfer::DirectOrS3 {
            threads: 1,
            bucket: "b".into(),
        },
    );
    let err = ami::publish(&c, &spec, &|_| {}, &|_| {}).unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(err.to_string().contains("AKIDREVOKED"), "{err}");
    let ops: Vec<String> = proxy.seen().iter().map(operation).collect();
    assert_eq!(ops, ["StartSnapshot"], "nothing after the refusal");
}
