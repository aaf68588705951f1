//! Uploading Ferrocore images to the clouds, with their own HTTP APIs (no SDKs):
//! EC2 through the EBS direct APIs (or S3 + ImportSnapshot) and RegisterImage, requests signed
//! with SigV4 (`aws`); GCE through a Cloud Storage resumable upload and Compute `images.insert`,
//! authorised with a service-account JWT (`gcp`). Every endpoint can be pointed at a local
//! emulator, which is how the tests run.

pub mod aws;
pub mod backoff;
pub mod gcp;
pub mod xml;

/// Called with the number of bytes just sent, from any upload thread.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);
