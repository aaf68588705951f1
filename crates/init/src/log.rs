//! Console messages: short, prefixed, and loud on fatal errors.

pub fn info(msg: &str) {
    println!("ferrocore-init: {msg}");
}

pub fn fatal(msg: &str) {
    println!("ferrocore-init: FATAL: {msg}");
    println!("ferrocore-init: the system cannot start from this slot");
}
