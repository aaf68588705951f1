//! S3, only what the ImportSnapshot path needs: PutObject of a whole file (up to S3's 5 GiB
//! single-request limit), and CreateBucket for emulators and first-time setups.

use super::client::{Body, Client, Error, Request};
use http::Method;
use std::path::Path;

/// S3's limit for one PutObject.
pub const MAX_PUT: u64 = 5 << 30;

pub struct S3<'a> {
    pub client: &'a Client,
}

fn enc_key(key: &str) -> String {
    // Keys keep their slashes; everything else outside the unreserved set is encoded.
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

impl S3<'_> {
    /// Path-style against an emulator, virtual-hosted against AWS.
    fn path(&self, bucket: &str, key: &str) -> (String, Option<String>) {
        if self.client.settings.endpoint_url.is_some() {
            (format!("/{bucket}/{}", enc_key(key)), None)
        } else {
            (format!("/{}", enc_key(key)), Some(bucket.to_string()))
        }
    }

    fn request(&self, op: &'static str, method: Method, bucket: &str, key: &str) -> Request {
        let (path, host_bucket) = self.path(bucket, key);
        let mut r = Request::new("s3", op, method, path);
        // Virtual-hosted style: the bucket is part of the host name.
        r.host = host_bucket.map(|b| format!("{b}.s3.{}.amazonaws.com", self.client.region()));
        r
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        let region = self.client.region();
        let mut r = self.request("CreateBucket", Method::PUT, bucket, "");
        if region != "us-east-1" {
            r = r.body(Body::Bytes(
                format!("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>").into_bytes(),
            ));
        }
        self.client.send(&r).map(|_| ())
    }

    pub fn put_file(&self, bucket: &str, key: &str, file: &Path) -> Result<(), Error> {
        let size = std::fs::metadata(file)
            .map_err(|source| Error::Io {
                context: format!("reading {}", file.display()),
                source,
            })?
            .len();
        if size > MAX_PUT {
            return Err(Error::Unexpected {
                what: "s3 PutObject".to_string(),
                message: format!(
                    "{} is {size} bytes, more than one PutObject takes (5 GiB); use the EBS direct upload",
                    file.display()
                ),
            });
        }
        self.client
            .send(
                &self
                    .request("PutObject", Method::PUT, bucket, key)
                    .header("content-type", "application/octet-stream")
                    .body(Body::File(file.into())),
            )
            .map(|_| ())
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
        Ok(self
            .client
            .send(&self.request("GetObject", Method::GET, bucket, key))?
            .body)
    }
}
