//! Request checks etcd makes before proposing (its `v3rpc/key.go`): empty keys, `ignore_*`
//! conflicts, the txn op limit, and keys written twice in one txn branch.

use tonic::Status;

use super::errors;
use super::pb::etcdserverpb as pb;
use crate::state::mvcc::in_range;

pub fn range(r: &pb::RangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    Ok(())
}

pub fn put(r: &pb::PutRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(errors::value_provided());
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(errors::lease_provided());
    }
    Ok(())
}

pub fn delete(r: &pb::DeleteRangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    Ok(())
}

pub fn txn(t: &pb::TxnRequest, max_ops: usize) -> Result<(), Status> {
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(errors::too_many_ops());
    }
    for ops in [&t.success, &t.failure] {
        for op in ops.iter() {
            use pb::request_op::Request as Q;
            match &op.request {
                Some(Q::RequestRange(r)) => range(r)?,
                Some(Q::RequestPut(r)) => put(r)?,
                Some(Q::RequestDeleteRange(r)) => delete(r)?,
                Some(Q::RequestTxn(r)) => txn(r, max_ops)?,
                None => {}
            }
        }
        no_overlaps(ops)?;
    }
    Ok(())
}

/// A key may be written once per branch: no two puts of it, no put inside a deleted range.
fn no_overlaps(ops: &[pb::RequestOp]) -> Result<(), Status> {
    use pb::request_op::Request as Q;
    let mut puts: Vec<&[u8]> = Vec::new();
    let mut deletes: Vec<(&[u8], &[u8])> = Vec::new();
    for op in ops {
        match &op.request {
            Some(Q::RequestPut(p)) => {
                if puts.contains(&p.key.as_slice()) {
                    return Err(errors::duplicate_key());
                }
                puts.push(&p.key);
            }
            Some(Q::RequestDeleteRange(d)) => deletes.push((&d.key, &d.range_end)),
            _ => {}
        }
    }
    if puts
        .iter()
        .any(|k| deletes.iter().any(|(s, e)| in_range(k, s, e)))
    {
        return Err(errors::duplicate_key());
    }
    Ok(())
}
