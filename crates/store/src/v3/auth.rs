//! The Auth service and how the other services learn who calls: etcd's simple tokens.
//!
//! Every auth request goes through the log (reads too, as in etcd) and is checked when applied;
//! the users, roles and permissions live in the replicated [`crate::state::auth::AuthStore`].
//! A token is handed out when an Authenticate entry is applied, on every member, so a token
//! from one member works on all; tokens are member-local memory otherwise (as etcd's simple
//! tokens) and last [`TOKEN_TTL`] after their last use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::errors;
use super::pb::etcdserverpb as pb;
use crate::core::Core;
use crate::state::auth::{AuthError, AuthRequest, AuthResult, Perm, PermType};
use crate::state::{Command, Output};

/// etcd's simple token TTL (`--auth-token simple`).
pub const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// etcd's default `--bcrypt-cost`.
const BCRYPT_COST: u32 = 10;

#[derive(Default)]
pub struct Tokens {
    /// Token to (user, when it runs out).
    map: HashMap<String, (String, Instant)>,
}

impl Tokens {
    /// The user of a live token, renewing its TTL (etcd's `simpleTokenTTLKeeper`).
    fn user(&mut self, token: &str) -> Option<String> {
        let now = Instant::now();
        self.map.retain(|_, (_, d)| *d > now);
        let (user, deadline) = self.map.get_mut(token)?;
        *deadline = now + TOKEN_TTL;
        Some(user.clone())
    }

    /// Follows an applied auth request: new tokens; none left for a deleted user, one whose
    /// password changed, or once auth is disabled (as etcd's `invalidateUser` and `disable`).
    pub fn applied(&mut self, req: &AuthRequest, result: &AuthResult) {
        match (req, result) {
            (AuthRequest::Authenticate { name, .. }, AuthResult::Token(t)) => {
                self.map
                    .insert(t.clone(), (name.clone(), Instant::now() + TOKEN_TTL));
            }
            (AuthRequest::Disable, _) => self.map.clear(),
            (
                AuthRequest::UserDelete { name } | AuthRequest::UserChangePassword { name, .. },
                _,
            ) => self.map.retain(|_, (u, _)| u != name),
            _ => {}
        }
    }
}

/// The user of a request's `token` metadata (what etcdctl sends once authenticated), `None`
/// without one. An unknown or expired token is etcd's "invalid auth token" (etcdctl then
/// authenticates again), whether or not auth is enabled.
pub fn caller(core: &Core, md: &MetadataMap) -> Result<Option<String>, Status> {
    let Some(t) = md.get("token").or_else(|| md.get("authorization")) else {
        return Ok(None);
    };
    let invalid = || errors::auth(AuthError::InvalidAuthToken);
    let t = t.to_str().map_err(|_| invalid())?;
    let mut inner = core.lock();
    match inner.tokens.user(t) {
        Some(u) if inner.state.auth.user_exists(&u) => Ok(Some(u)),
        _ => Err(invalid()),
    }
}

/// etcd's `IsAdminPermitted` for the caller of a Maintenance admin RPC. etcd answers these with
/// its auth package's bare error (code Unknown, "auth: ..."), and so do we.
pub fn require_admin<T>(core: &Core, req: &Request<T>) -> Result<(), Status> {
    let bare = |e: AuthError| {
        let msg = e.to_string();
        let msg = msg.strip_prefix("etcdserver: ").unwrap_or(&msg);
        Status::unknown(format!("auth: {msg}"))
    };
    let user = match caller(core, req.metadata()) {
        Ok(u) => u,
        Err(_) => return Err(bare(AuthError::InvalidAuthToken)),
    };
    core.lock()
        .state
        .auth
        .check_admin(user.as_deref())
        .map_err(bare)
}

/// The random part of a simple token: 16 letters, as etcd's.
fn token_prefix() -> Result<String, Status> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| Status::internal(format!("random: {e}")))?;
    Ok(b.iter()
        .map(|x| {
            let c = x % 52;
            (if c < 26 { b'a' + c } else { b'A' + c - 26 }) as char
        })
        .collect())
}

async fn hash(password: String) -> Result<String, Status> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| Status::internal(format!("hashing: {e}")))?
        .map_err(|e| Status::internal(format!("hashing: {e}")))
}

pub struct Auth {
    pub core: Arc<Core>,
}

impl Auth {
    /// Proposes an auth request on behalf of the request's caller.
    async fn run<T>(
        &self,
        req: &Request<T>,
        r: AuthRequest,
    ) -> Result<(AuthResult, Option<pb::ResponseHeader>), Status> {
        let user = caller(&self.core, req.metadata())?;
        self.run_as(user, r).await
    }

    async fn run_as(
        &self,
        user: Option<String>,
        req: AuthRequest,
    ) -> Result<(AuthResult, Option<pb::ResponseHeader>), Status> {
        let applied = self
            .core
            .propose(Command::Auth { user, req })
            .await
            .map_err(|_| errors::stopped())?;
        let rev = self.core.lock().state.v3.revision();
        match applied.output {
            Output::Auth(Ok(r)) => Ok((r, Some((self.core.header)(rev)))),
            Output::Auth(Err(e)) => Err(errors::auth(e)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn names<T>(
        &self,
        req: &Request<T>,
        r: AuthRequest,
    ) -> Result<(Vec<String>, Option<pb::ResponseHeader>), Status> {
        match self.run(req, r).await? {
            (AuthResult::Names(n), h) => Ok((n, h)),
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }
}

fn to_pb(p: Perm) -> super::pb::authpb::Permission {
    super::pb::authpb::Permission {
        perm_type: p.perm_type.to_pb(),
        key: p.key,
        range_end: p.range_end,
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for Auth {
    async fn auth_enable(
        &self,
        req: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let _r = *req.get_ref();
        let (_, header) = self.run(&req, AuthRequest::Enable).await?;
        Ok(Response::new(pb::AuthEnableResponse { header }))
    }
    async fn auth_disable(
        &self,
        req: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let _r = *req.get_ref();
        let (_, header) = self.run(&req, AuthRequest::Disable).await?;
        Ok(Response::new(pb::AuthDisableResponse { header }))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = req.into_inner();
        // Check against what the cluster has committed, as etcd does.
        self.core
            .read_barrier()
            .await
            .map_err(|_| errors::no_leader())?;
        let stored = self
            .core
            .lock()
            .state
            .auth
            .password_hash(&r.name)
            .map_err(errors::auth)?;
        let password = r.password;
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &stored))
            .await
            .map_err(|e| Status::internal(format!("checking the password: {e}")))?
            .unwrap_or(false);
        if !ok {
            return Err(errors::auth(AuthError::AuthFailed));
        }
        let req = AuthRequest::Authenticate {
            name: r.name,
            token: token_prefix()?,
        };
        match self.run_as(None, req).await? {
            (AuthResult::Token(token), header) => {
                Ok(Response::new(pb::AuthenticateResponse { header, token }))
            }
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn user_add(
        &self,
        req: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let r = req.get_ref().clone();
        let no_password = r.options.is_some_and(|o| o.no_password);
        let hash = if no_password {
            None
        } else {
            Some(hash(r.password).await?)
        };
        let (_, header) = self
            .run(&req, AuthRequest::UserAdd { name: r.name, hash })
            .await?;
        Ok(Response::new(pb::AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        req: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let name = req.get_ref().name.clone();
        let (roles, header) = self.names(&req, AuthRequest::UserGet { name }).await?;
        Ok(Response::new(pb::AuthUserGetResponse { header, roles }))
    }

    async fn user_list(
        &self,
        req: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let (users, header) = self.names(&req, AuthRequest::UserList).await?;
        Ok(Response::new(pb::AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        req: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let r = req.get_ref().clone();
        let (_, header) = self
            .run(&req, AuthRequest::UserDelete { name: r.name })
            .await?;
        Ok(Response::new(pb::AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let r = req.get_ref().clone();
        let hash = hash(r.password).await?;
        let (_, header) = self
            .run(&req, AuthRequest::UserChangePassword { name: r.name, hash })
            .await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let r = req.get_ref().clone();
        let (_, header) = self
            .run(
                &req,
                AuthRequest::UserGrantRole {
                    user: r.user,
                    role: r.role,
                },
            )
            .await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse { header }))
    }
    async fn user_revoke_role(
        &self,
        req: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let r = req.get_ref().clone();
        let (_, header) = self
            .run(
                &req,
                AuthRequest::UserRevokeRole {
                    name: r.name,
                    role: r.role,
                },
            )
            .await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse { header }))
    }
    async fn role_add(
        &self,
        req: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let r = req.get_ref().clone();
        let (_, header) = self
            .run(&req, AuthRequest::RoleAdd { name: r.name })
            .await?;
        Ok(Response::new(pb::AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        req: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let role = req.get_ref().role.clone();
        match self.run(&req, AuthRequest::RoleGet { role }).await? {
            (AuthResult::Perms(p), header) => Ok(Response::new(pb::AuthRoleGetResponse {
                header,
                perm: p.into_iter().map(to_pb).collect(),
            })),
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn role_list(
        &self,
        req: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let (roles, header) = self.names(&req, AuthRequest::RoleList).await?;
        Ok(Response::new(pb::AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        req: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let r = req.get_ref().clone();
        let (_, header) = self
            .run(&req, AuthRequest::RoleDelete { role: r.role })
            .await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let r = req.get_ref().clone();
        let p = r
            .perm
            .ok_or_else(|| Status::invalid_argument("etcdserver: permission not given"))?;
        let perm = Perm {
            perm_type: PermType::from_pb(p.perm_type),
            key: p.key,
            range_end: p.range_end,
        };
        let (_, header) = self
            .run(
                &req,
                AuthRequest::RoleGrantPermission { name: r.name, perm },
            )
            .await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header,
        }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let r = req.get_ref().clone();
        let (_, header) = self
            .run(
                &req,
                AuthRequest::RoleRevokePermission {
                    role: r.role,
                    key: r.key,
                    range_end: r.range_end,
                },
            )
            .await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header,
        }))
    }
}
