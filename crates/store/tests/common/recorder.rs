//! Recording a concurrent client history over the v2 API, for the linearizability checker.

use std::time::Duration;

use super::linearizability::{check, Kind, Op};

/// One client's operation against a member: a v2 write, or a quorum (linearizable) read.
/// `Err`: the outcome is unknown (a timeout, a refusal, an error status).
pub fn record(url: &str, key: &str, kind: &Kind) -> Result<Kind, ()> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    match kind {
        Kind::Write(v) => {
            let r = c
                .put(format!("{url}/v2/keys/{key}"))
                .form(&[("value", v)])
                .send()
                .map_err(|_| ())?;
            r.status().is_success().then(|| kind.clone()).ok_or(())
        }
        Kind::Read(_) => {
            let r = c
                .get(format!("{url}/v2/keys/{key}?quorum=true"))
                .send()
                .map_err(|_| ())?;
            match r.status().as_u16() {
                200 => {
                    let v: serde_json::Value = r.json().map_err(|_| ())?;
                    Ok(Kind::Read(v["node"]["value"].as_str().map(String::from)))
                }
                404 => Ok(Kind::Read(None)),
                _ => Err(()),
            }
        }
    }
}

/// splitmix64's finaliser: well-spread bits from a counter.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Panics with the offending key's history (times in ms from its first call) if `history`
/// has no linearization.
pub fn assert_linearizable(history: &[Op]) {
    let Err(v) = check(history) else { return };
    let t0 = v.ops.iter().map(|o| o.call).min().unwrap();
    let lines: Vec<String> = v
        .ops
        .iter()
        .map(|o| {
            format!(
                "c{} {:?} {}..{}",
                o.client,
                o.kind,
                o.call.duration_since(t0).as_millis(),
                o.ret
                    .map_or("?".into(), |r| r.duration_since(t0).as_millis().to_string())
            )
        })
        .collect();
    panic!("key {} has no linearization:\n{}", v.key, lines.join("\n"));
}
