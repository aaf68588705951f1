//! `coreos-install`: puts a signed Ferrocore image on a disk. Order of work, so that a refusal
//! never touches the disk: check the disk (block device, whole, unused), validate the
//! cloud-config, verify the manifest's signature, check the size, stream the image once to check
//! its hash, then write it (see [`writer`]), then place the cloud-config and OEM id.

pub mod configure;
pub mod device;
pub mod source;
pub mod writer;
