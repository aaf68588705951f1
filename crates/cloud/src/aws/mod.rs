//! AWS: credentials and region the standard way, SigV4-signed requests with retries, and the
//! operations an AMI upload needs (EBS direct APIs, S3, EC2's Query API).

pub mod ami;
pub mod client;
pub mod config;
pub mod ebs;
pub mod ec2;
pub mod s3;

pub use client::{Client, Error};
pub use config::{Credentials, Settings};
