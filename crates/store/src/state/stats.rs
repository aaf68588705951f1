//! `/v2/stats/store` counters, in etcd's JSON field order.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Get,
    Set,
    Delete,
    Update,
    Create,
    CompareAndSwap,
    CompareAndDelete,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStats {
    pub gets_success: u64,
    pub gets_fail: u64,
    pub sets_success: u64,
    pub sets_fail: u64,
    pub delete_success: u64,
    pub delete_fail: u64,
    pub update_success: u64,
    pub update_fail: u64,
    pub create_success: u64,
    pub create_fail: u64,
    pub compare_and_swap_success: u64,
    pub compare_and_swap_fail: u64,
    pub compare_and_delete_success: u64,
    pub compare_and_delete_fail: u64,
    pub expire_count: u64,
    pub watchers: u64,
}

impl StoreStats {
    pub fn count(&mut self, op: Op, ok: bool) {
        let (s, f) = match op {
            Op::Get => (&mut self.gets_success, &mut self.gets_fail),
            Op::Set => (&mut self.sets_success, &mut self.sets_fail),
            Op::Delete => (&mut self.delete_success, &mut self.delete_fail),
            Op::Update => (&mut self.update_success, &mut self.update_fail),
            Op::Create => (&mut self.create_success, &mut self.create_fail),
            Op::CompareAndSwap => (
                &mut self.compare_and_swap_success,
                &mut self.compare_and_swap_fail,
            ),
            Op::CompareAndDelete => (
                &mut self.compare_and_delete_success,
                &mut self.compare_and_delete_fail,
            ),
        };
        if ok {
            *s += 1;
        } else {
            *f += 1;
        }
    }
}
