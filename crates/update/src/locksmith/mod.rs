//! Reboot coordination as locksmith does it: a counting semaphore in etcd (v2 keys API), taken
//! before an updated machine reboots and released after it comes back, so at most `max` machines
//! of a group reboot at once.

pub mod etcd;
pub mod fleetlock;
pub mod policy;
pub mod semaphore;
pub mod window;

pub use semaphore::{Refused, Semaphore};

/// Where locksmith keeps the semaphore (per group: `…/rebootlock/groups/<group>/semaphore`).
pub fn key(group: Option<&str>) -> String {
    match group {
        None | Some("") => "/coreos.com/updateengine/rebootlock/semaphore".into(),
        Some(g) => format!("/coreos.com/updateengine/rebootlock/groups/{g}/semaphore"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Etcd(#[from] etcd::Error),
    #[error("{key}: not a semaphore: {source}")]
    Value {
        key: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{0}: still changing under us after 100 tries")]
    Contended(String),
}

pub struct Lock {
    client: etcd::Client,
    key: String,
}

impl Lock {
    pub fn new(endpoint: &str, group: Option<&str>) -> Lock {
        Lock {
            client: etcd::Client::new(endpoint),
            key: key(group),
        }
    }

    /// The semaphore (created with max 1 if there is none yet) and its index.
    fn read(&self) -> Result<(Semaphore, u64), Error> {
        loop {
            if let Some((v, idx)) = self.client.get(&self.key)? {
                let s = serde_json::from_str(&v).map_err(|source| Error::Value {
                    key: self.key.clone(),
                    source,
                })?;
                return Ok((s, idx));
            }
            let init = serde_json::to_string(&Semaphore::default()).expect("json");
            // Whoever creates it first wins; everyone reads it back.
            self.client.put_if(&self.key, &init, None)?;
        }
    }

    pub fn get(&self) -> Result<Semaphore, Error> {
        Ok(self.read()?.0)
    }

    /// Read, change, compare-and-swap; again if another machine wrote in between.
    fn update(
        &self,
        f: impl Fn(&mut Semaphore) -> Result<(), Refused>,
    ) -> Result<Semaphore, Error> {
        for _ in 0..100 {
            let (mut s, idx) = self.read()?;
            f(&mut s)?;
            let v = serde_json::to_string(&s).expect("json");
            if self.client.put_if(&self.key, &v, Some(idx))? == etcd::Write::Done {
                return Ok(s);
            }
        }
        Err(Error::Contended(self.key.clone()))
    }

    pub fn lock(&self, id: &str) -> Result<Semaphore, Error> {
        self.update(|s| s.lock(id))
    }

    pub fn unlock(&self, id: &str) -> Result<Semaphore, Error> {
        self.update(|s| s.unlock(id))
    }

    pub fn set_max(&self, max: i64) -> Result<Semaphore, Error> {
        self.update(|s| s.set_max(max))
    }
}
