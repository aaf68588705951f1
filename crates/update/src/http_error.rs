//! reqwest's message stops at "error sending request for url (…)"; why (connection refused, an
//! unknown certificate authority) is in its sources. Errors shown to the admin carry the chain.

/// `e` and each of its causes, joined with ": ".
pub fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
