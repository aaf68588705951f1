//! Versions compare numerically, component by component: 0.10.0 is newer than 0.9.3.

use std::cmp::Ordering;

/// Missing trailing components count as 0, so 1.2 == 1.2.0.
#[derive(Clone, Debug)]
pub struct Version(Vec<u64>);

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a version (numbers separated by dots, e.g. 1.2.3)")]
pub struct BadVersion(pub String);

impl std::str::FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, BadVersion> {
        let parts: Result<Vec<u64>, _> = s.split('.').map(str::parse).collect();
        match parts {
            Ok(p) if !p.is_empty() => Ok(Version(p)),
            _ => Err(BadVersion(s.to_string())),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        let at = |v: &Version, i: usize| v.0.get(i).copied().unwrap_or(0);
        (0..n)
            .map(|i| at(self, i).cmp(&at(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn numeric_not_lexical() {
        assert!(v("0.10.0") > v("0.9.3"));
        assert!(v("1.2") == v("1.2.0"));
        assert!(v("2") > v("1.99.99"));
        assert!("1.x".parse::<Version>().is_err());
        assert!("".parse::<Version>().is_err());
    }

    proptest! {
        #[test]
        fn order_matches_tuples(a in proptest::collection::vec(0u64..1000, 3), b in proptest::collection::vec(0u64..1000, 3)) {
            let va = Version(a.clone());
            let vb = Version(b.clone());
            prop_assert_eq!(va.cmp(&vb), a.cmp(&b));
        }
    }
}
