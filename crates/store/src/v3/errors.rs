//! etcd's v3 errors as gRPC statuses (codes and messages as etcd's `rpctypes`).

use tonic::{Code, Status};

use crate::state::auth::AuthError;
use crate::state::mvcc::V3Error;

pub fn status(e: V3Error) -> Status {
    let code = match e {
        V3Error::Auth(a) => return auth(a),
        V3Error::Compacted | V3Error::FutureRev | V3Error::LeaseTtlTooLarge => Code::OutOfRange,
        V3Error::LeaseNotFound => Code::NotFound,
        V3Error::LeaseExist => Code::FailedPrecondition,
        V3Error::KeyNotFound => Code::InvalidArgument,
    };
    Status::new(code, e.to_string())
}

pub fn empty_key() -> Status {
    Status::invalid_argument("etcdserver: key is not provided")
}

pub fn too_many_ops() -> Status {
    Status::invalid_argument("etcdserver: too many operations in txn request")
}

pub fn duplicate_key() -> Status {
    Status::invalid_argument("etcdserver: duplicate key given in txn request")
}

pub fn value_provided() -> Status {
    Status::invalid_argument("etcdserver: value is provided")
}

pub fn lease_provided() -> Status {
    Status::invalid_argument("etcdserver: lease is provided")
}

pub fn stopped() -> Status {
    Status::unavailable("etcdserver: server stopped")
}

/// What etcd answers when a request needs the leader and there is none reachable.
pub fn no_leader() -> Status {
    Status::unavailable("etcdserver: no leader")
}

/// An auth error with etcd's code (its `rpctypes.ErrGRPC*`).
pub fn auth(e: AuthError) -> Status {
    use AuthError as A;
    let code = match e {
        A::UserEmpty | A::RoleEmpty | A::AuthFailed | A::InvalidAuthMgmt => Code::InvalidArgument,
        A::PermissionDenied => Code::PermissionDenied,
        A::InvalidAuthToken => Code::Unauthenticated,
        A::RootUserNotExist
        | A::RootRoleNotExist
        | A::UserAlreadyExist
        | A::UserNotFound
        | A::RoleAlreadyExist
        | A::RoleNotFound
        | A::RoleNotGranted
        | A::PermissionNotGranted
        | A::AuthNotEnabled => Code::FailedPrecondition,
    };
    Status::new(code, e.to_string())
}
