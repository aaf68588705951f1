//! locksmith's reboot semaphore, the JSON value at
//! `/coreos.com/updateengine/rebootlock/semaphore`: `{"semaphore":N,"max":N,"holders":[…]}`, where
//! `semaphore` is the number of free slots and `holders` the machine ids holding one.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    pub semaphore: i64,
    pub max: i64,
    #[serde(default)]
    pub holders: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("semaphore is at 0")]
    Full,
    #[error("lock is already held by {0}")]
    AlreadyHeld(String),
    #[error("lock is not held by {0}")]
    NotHeld(String),
    #[error("max {0} is negative")]
    BadMax(i64),
}

impl Default for Semaphore {
    /// What locksmith creates on first use: one reboot at a time.
    fn default() -> Self {
        Semaphore {
            semaphore: 1,
            max: 1,
            holders: Vec::new(),
        }
    }
}

impl Semaphore {
    pub fn lock(&mut self, id: &str) -> Result<(), Refused> {
        if self.holders.iter().any(|h| h == id) {
            return Err(Refused::AlreadyHeld(id.into()));
        }
        if self.semaphore <= 0 {
            return Err(Refused::Full);
        }
        self.semaphore -= 1;
        self.holders.push(id.into());
        Ok(())
    }

    pub fn unlock(&mut self, id: &str) -> Result<(), Refused> {
        let at = self
            .holders
            .iter()
            .position(|h| h == id)
            .ok_or_else(|| Refused::NotHeld(id.into()))?;
        self.holders.remove(at);
        self.semaphore += 1;
        Ok(())
    }

    /// Changes `max`, moving the free count by the same amount (it may go below 0 while more
    /// machines hold the lock than the new max allows; they release as usual).
    pub fn set_max(&mut self, max: i64) -> Result<(), Refused> {
        if max < 0 {
            return Err(Refused::BadMax(max));
        }
        self.semaphore += max - self.max;
        self.max = max;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_unlock_and_max() {
        let mut s = Semaphore::default();
        s.lock("a").unwrap();
        assert_eq!(s.lock("b"), Err(Refused::Full));
        assert_eq!(s.lock("a"), Err(Refused::AlreadyHeld("a".into())));
        s.set_max(2).unwrap();
        s.lock("b").unwrap();
        assert_eq!(
            s,
            Semaphore {
                semaphore: 0,
                max: 2,
                holders: vec!["a".into(), "b".into()]
            }
        );
        s.set_max(1).unwrap();
        assert_eq!(s.semaphore, -1);
        s.unlock("a").unwrap();
        assert_eq!(s.lock("c"), Err(Refused::Full));
        s.unlock("b").unwrap();
        s.lock("c").unwrap();
        assert_eq!(s.unlock("zz"), Err(Refused::NotHeld("zz".into())));
        assert_eq!(s.set_max(-1), Err(Refused::BadMax(-1)));
    }

    #[test]
    fn reads_locksmiths_json() {
        let s: Semaphore =
            serde_json::from_str(r#"{"semaphore":0,"max":1,"holders":["4b1d"]}"#).unwrap();
        assert_eq!(s.holders, ["4b1d"]);
        let s: Semaphore =
            serde_json::from_str(r#"{"semaphore":1,"max":1,"holders":null}"#).unwrap_or_default();
        assert_eq!(s.max, 1);
    }
}
