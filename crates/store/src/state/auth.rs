//! etcd's v3 auth store (its `auth/store.go`): users, roles, key permissions and the enabled
//! flag, replicated as part of the state machine and its snapshots.
//!
//! Passwords arrive already bcrypt-hashed: hashing is salted, so it happens before proposing
//! and every member applies the same bytes. Tokens are not here: they are member-local (see
//! `v3::auth`), as etcd's simple tokens are.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::mvcc::Mvcc;
use super::V3Request;
use crate::v3::pb::etcdserverpb as pb;

/// The user and role with every permission (etcd's `rootUser`, `rootRole`).
pub const ROOT: &str = "root";

/// etcd's auth errors; `v3::errors` maps them to its gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermType {
    Read,
    Write,
    ReadWrite,
}

impl PermType {
    /// authpb's `Permission.Type` numbers.
    pub fn from_pb(n: i32) -> PermType {
        match n {
            0 => PermType::Read,
            1 => PermType::Write,
            _ => PermType::ReadWrite,
        }
    }

    pub fn to_pb(self) -> i32 {
        match self {
            PermType::Read => 0,
            PermType::Write => 1,
            PermType::ReadWrite => 2,
        }
    }

    fn allows(self, want: PermType) -> bool {
        self == PermType::ReadWrite || self == want
    }
}

/// A key permission: one key (`range_end` empty), `[key, range_end)`, or from `key` on
/// (`range_end` = `\0`), as in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perm {
    pub perm_type: PermType,
    #[serde(with = "super::b64")]
    pub key: Vec<u8>,
    #[serde(with = "super::b64")]
    pub range_end: Vec<u8>,
}

impl Perm {
    /// The half-open interval it covers; `None` as the end is "no end". A single key is
    /// `[key, key\0)`, as etcd's `BytesAffinePoint`.
    fn interval(&self) -> (&[u8], Option<Vec<u8>>) {
        (&self.key, interval_end(&self.key, &self.range_end))
    }
}

fn interval_end(key: &[u8], range_end: &[u8]) -> Option<Vec<u8>> {
    match range_end {
        [] => Some([key, &[0]].concat()),
        [0] => None,
        e => Some(e.to_vec()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The bcrypt hash; `None` for a user added with `no_password` (cannot authenticate).
    pub password: Option<String>,
    pub roles: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Sorted by key, as etcd keeps them (and `role get` lists them).
    pub perms: Vec<Perm>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStore {
    pub enabled: bool,
    /// Bumped by every change, as etcd's auth revision.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

/// An auth request as it goes through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthRequest {
    Enable,
    Disable,
    /// The password was checked by the member that proposed this; `token` is the random part
    /// of the token it will hand out.
    Authenticate {
        name: String,
        token: String,
    },
    UserAdd {
        name: String,
        hash: Option<String>,
    },
    UserGet {
        name: String,
    },
    UserList,
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        hash: String,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleGet {
        role: String,
    },
    RoleList,
    RoleDelete {
        role: String,
    },
    RoleGrantPermission {
        name: String,
        perm: Perm,
    },
    RoleRevokePermission {
        role: String,
        #[serde(with = "super::b64")]
        key: Vec<u8>,
        #[serde(with = "super::b64")]
        range_end: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    Done,
    Token(String),
    Names(Vec<String>),
    Perms(Vec<Perm>),
}

impl AuthRequest {
    /// etcd's `needAdminPermission`: what only root may do once auth is enabled.
    fn needs_admin(&self) -> bool {
        !matches!(
            self,
            AuthRequest::Authenticate { .. }
                | AuthRequest::UserGet { .. }
                | AuthRequest::RoleGet { .. }
        )
    }
}

impl AuthStore {
    /// etcd's `IsAdminPermitted`.
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let user = user.filter(|u| !u.is_empty()).ok_or(AuthError::UserEmpty)?;
        match self.users.get(user) {
            None => Err(AuthError::UserNotFound),
            Some(u) if u.roles.contains(ROOT) => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }

    /// etcd's `isOpPermitted`: may `user` do `want` on the key or range?
    pub fn check(
        &self,
        user: Option<&str>,
        key: &[u8],
        range_end: &[u8],
        want: PermType,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|u| !u.is_empty()).ok_or(AuthError::UserEmpty)?;
        let u = self.users.get(name).ok_or(AuthError::PermissionDenied)?;
        if u.roles.contains(ROOT) {
            return Ok(());
        }
        let perms: Vec<_> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| &r.perms)
            .filter(|p| p.perm_type.allows(want))
            .map(Perm::interval)
            .collect();
        if covered(&perms, key, interval_end(key, range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    pub fn check_range(&self, user: Option<&str>, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
        self.check(user, key, end, PermType::Read)
    }

    fn check_put(&self, user: Option<&str>, key: &[u8]) -> Result<(), AuthError> {
        self.check(user, key, &[], PermType::Write)
    }

    /// etcd's `checkLeasePuts`: a lease may be used or revoked only by who may write all its keys.
    fn check_lease(&self, user: Option<&str>, id: i64, mvcc: &Mvcc) -> Result<(), AuthError> {
        if let Some(l) = mvcc.leases().get(&id) {
            for k in &l.keys {
                self.check_put(user, k)?;
            }
        }
        Ok(())
    }

    /// The permission checks of etcd's `authApplierV3` for a v3 write, made when it is applied
    /// (so a permission revoked while the write was in flight is honoured).
    pub fn check_v3(
        &self,
        user: Option<&str>,
        r: &V3Request,
        mvcc: &Mvcc,
    ) -> Result<(), AuthError> {
        use prost::Message;
        if !self.enabled {
            return Ok(());
        }
        match r {
            V3Request::Put(b) => self.check_put_req(
                user,
                &pb::PutRequest::decode(b.as_slice()).unwrap_or_default(),
                mvcc,
            ),
            V3Request::DeleteRange(b) => self.check_delete(
                user,
                &pb::DeleteRangeRequest::decode(b.as_slice()).unwrap_or_default(),
            ),
            V3Request::Txn(b) => self.check_txn(
                user,
                &pb::TxnRequest::decode(b.as_slice()).unwrap_or_default(),
            ),
            V3Request::LeaseRevoke(id) => self.check_lease(user, *id, mvcc),
            // etcd 3.4 checks neither (compaction and grants touch no key a user could read).
            V3Request::Compact(_) | V3Request::LeaseGrant { .. } => Ok(()),
        }
    }

    fn check_put_req(
        &self,
        user: Option<&str>,
        p: &pb::PutRequest,
        mvcc: &Mvcc,
    ) -> Result<(), AuthError> {
        self.check_put(user, &p.key)?;
        self.check_lease(user, p.lease, mvcc)?;
        if p.prev_kv {
            self.check_range(user, &p.key, &[])?;
        }
        Ok(())
    }

    fn check_delete(
        &self,
        user: Option<&str>,
        d: &pb::DeleteRangeRequest,
    ) -> Result<(), AuthError> {
        self.check(user, &d.key, &d.range_end, PermType::Write)?;
        if d.prev_kv {
            self.check_range(user, &d.key, &d.range_end)?;
        }
        Ok(())
    }

    /// etcd's `checkTxnAuth`: every compare is a read, every op of both branches is checked
    /// (puts for their key only, as etcd: not their lease or prev_kv).
    fn check_txn(&self, user: Option<&str>, t: &pb::TxnRequest) -> Result<(), AuthError> {
        use pb::request_op::Request as Q;
        for c in &t.compare {
            self.check_range(user, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(Q::RequestRange(r)) => self.check_range(user, &r.key, &r.range_end)?,
                Some(Q::RequestPut(p)) => self.check_put(user, &p.key)?,
                Some(Q::RequestDeleteRange(d)) => self.check_delete(user, d)?,
                Some(Q::RequestTxn(t)) => self.check_txn(user, t)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Applies an auth request made by `user` (the token's user; `None` without a token).
    pub fn apply(&mut self, user: Option<&str>, r: &AuthRequest) -> Result<AuthResult, AuthError> {
        if r.needs_admin() {
            self.check_admin(user)?;
        }
        let result = self.apply_unchecked(user, r)?;
        if !matches!(
            r,
            AuthRequest::Authenticate { .. }
                | AuthRequest::UserGet { .. }
                | AuthRequest::UserList
                | AuthRequest::RoleGet { .. }
                | AuthRequest::RoleList
        ) {
            self.revision += 1;
        }
        Ok(result)
    }

    fn apply_unchecked(
        &mut self,
        user: Option<&str>,
        r: &AuthRequest,
    ) -> Result<AuthResult, AuthError> {
        use AuthRequest as R;
        let done = Ok(AuthResult::Done);
        match r {
            R::Enable => {
                if self.enabled {
                    return done;
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.contains(ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                done
            }
            R::Disable => {
                self.enabled = false;
                done
            }
            R::Authenticate { name, token } => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                if !self.users.contains_key(name) {
                    return Err(AuthError::AuthFailed);
                }
                // etcd's simple token: the random part, a dot, and something unique per grant.
                Ok(AuthResult::Token(format!("{token}.{}", self.revision + 1)))
            }
            R::UserAdd { name, hash } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let u = User {
                    password: hash.clone(),
                    roles: BTreeSet::new(),
                };
                self.users.insert(name.clone(), u);
                done
            }
            R::UserGet { name } => {
                // Anyone may look at themselves; others need root (etcd's authApplierV3.UserGet).
                if let Err(e) = self.check_admin(user) {
                    if user != Some(name.as_str()) {
                        return Err(e);
                    }
                }
                let u = self.users.get(name).ok_or(AuthError::UserNotFound)?;
                Ok(AuthResult::Names(u.roles.iter().cloned().collect()))
            }
            R::UserList => Ok(AuthResult::Names(self.users.keys().cloned().collect())),
            R::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
                done
            }
            R::UserChangePassword { name, hash } => {
                let u = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                u.password = Some(hash.clone());
                done
            }
            R::UserGrantRole { user, role } => {
                // The user first, then the role (root's need not exist), as etcd.
                if !self.users.contains_key(user) {
                    return Err(AuthError::UserNotFound);
                }
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
                let u = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                // Granting a role twice is ignored, as in etcd.
                u.roles.insert(role.clone());
                done
            }
            R::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let u = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                if !u.roles.remove(role) {
                    return Err(AuthError::RoleNotGranted);
                }
                done
            }
            R::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Role::default());
                done
            }
            R::RoleGet { role } => {
                // A user may look at a role it has; others need root.
                if let Err(e) = self.check_admin(user) {
                    let has = user
                        .and_then(|u| self.users.get(u))
                        .is_some_and(|u| u.roles.contains(role));
                    if !has {
                        return Err(e);
                    }
                }
                let r = self.roles.get(role).ok_or(AuthError::RoleNotFound)?;
                Ok(AuthResult::Perms(r.perms.clone()))
            }
            R::RoleList => Ok(AuthResult::Names(self.roles.keys().cloned().collect())),
            R::RoleDelete { role } => {
                if self.enabled && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(role).ok_or(AuthError::RoleNotFound)?;
                // Users lose the role with it.
                for u in self.users.values_mut() {
                    u.roles.remove(role);
                }
                done
            }
            R::RoleGrantPermission { name, perm } => {
                let r = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                match r
                    .perms
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(p) => p.perm_type = perm.perm_type,
                    None => {
                        r.perms.push(perm.clone());
                        r.perms.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                done
            }
            R::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let r = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let before = r.perms.len();
                r.perms
                    .retain(|p| !(&p.key == key && &p.range_end == range_end));
                if r.perms.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                done
            }
        }
    }

    /// The password hash of a user who may authenticate (etcd's `CheckPassword` before bcrypt).
    pub fn password_hash(&self, name: &str) -> Result<String, AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        self.users
            .get(name)
            .and_then(|u| u.password.clone())
            .ok_or(AuthError::AuthFailed)
    }

    pub fn user_exists(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }
}

/// Whether the union of `perms` covers `[key, end)` (`end` `None`: to the end of the keyspace).
fn covered(perms: &[(&[u8], Option<Vec<u8>>)], key: &[u8], end: Option<Vec<u8>>) -> bool {
    let mut at = key.to_vec();
    loop {
        if end.as_ref().is_some_and(|e| at >= *e) {
            return true;
        }
        // The furthest any permission that contains `at` reaches.
        let reach = perms
            .iter()
            .filter(|(s, e)| *s <= at.as_slice() && e.as_ref().is_none_or(|e| at < *e))
            .map(|(_, e)| e.clone())
            .max_by(|a, b| match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Greater,
                (_, None) => std::cmp::Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            });
        match reach {
            None => return false,
            Some(None) => return true,
            Some(Some(e)) => at = e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(perms: &[(&str, &str, PermType)]) -> AuthStore {
        let mut s = AuthStore::default();
        let none = None;
        s.apply(none, &AuthRequest::RoleAdd { name: "r".into() })
            .unwrap();
        for (k, e, t) in perms {
            let perm = Perm {
                perm_type: *t,
                key: k.as_bytes().to_vec(),
                range_end: e.as_bytes().to_vec(),
            };
            s.apply(
                none,
                &AuthRequest::RoleGrantPermission {
                    name: "r".into(),
                    perm,
                },
            )
            .unwrap();
        }
        for (u, role) in [("root", ROOT), ("alice", "r")] {
            s.apply(
                none,
                &AuthRequest::UserAdd {
                    name: u.into(),
                    hash: Some("h".into()),
                },
            )
            .unwrap();
            s.apply(
                none,
                &AuthRequest::UserGrantRole {
                    user: u.into(),
                    role: role.into(),
                },
            )
            .unwrap();
        }
        s.apply(none, &AuthRequest::Enable).unwrap();
        s
    }

    #[test]
    fn ranges_must_be_covered_by_the_union_of_permissions() {
        let s = store_with(&[
            ("a", "c", PermType::Read),
            ("c", "e", PermType::ReadWrite),
            ("x", "", PermType::Write),
        ]);
        let alice = Some("alice");
        assert_eq!(s.check_range(alice, b"a", b"e"), Ok(()));
        assert_eq!(s.check_range(alice, b"b", b""), Ok(()));
        assert_eq!(
            s.check_range(alice, b"a", b"f"),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            s.check_range(alice, b"a", b"\0"),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            s.check(alice, b"b", b"", PermType::Write),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(s.check(alice, b"d", b"", PermType::Write), Ok(()));
        assert_eq!(s.check(alice, b"x", b"", PermType::Write), Ok(()));
        assert_eq!(
            s.check(alice, b"xy", b"", PermType::Write),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(s.check_range(Some("root"), b"", b"\0"), Ok(()));
        assert_eq!(s.check_range(None, b"a", b""), Err(AuthError::UserEmpty));
        assert_eq!(
            s.check_range(Some("bob"), b"a", b""),
            Err(AuthError::PermissionDenied)
        );
    }

    #[test]
    fn admin_requests_need_root_once_enabled() {
        let mut s = store_with(&[]);
        let add = AuthRequest::RoleAdd { name: "q".into() };
        assert_eq!(
            s.apply(Some("alice"), &add),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(s.apply(None, &add), Err(AuthError::UserEmpty));
        assert_eq!(s.apply(Some("root"), &add), Ok(AuthResult::Done));
        let own = AuthRequest::UserGet {
            name: "alice".into(),
        };
        assert_eq!(
            s.apply(Some("alice"), &own),
            Ok(AuthResult::Names(vec!["r".into()]))
        );
        let other = AuthRequest::UserGet {
            name: "root".into(),
        };
        assert_eq!(
            s.apply(Some("alice"), &other),
            Err(AuthError::PermissionDenied)
        );
        let del = AuthRequest::UserDelete { name: ROOT.into() };
        assert_eq!(s.apply(Some("root"), &del), Err(AuthError::InvalidAuthMgmt));
    }
}
