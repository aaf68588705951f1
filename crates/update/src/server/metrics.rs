//! Prometheus text format: instances per version and status, failures per version, and each
//! group's rollout and pause.

use super::state::State;
use std::collections::BTreeMap;
use std::fmt::Write;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(state: &State) -> String {
    let mut out = String::new();
    let mut per: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for i in state.instances.values() {
        *per.entry((i.version.as_str(), i.status.as_str()))
            .or_default() += 1;
    }
    out.push_str("# HELP ferro_update_instances Machines by running version and update status.\n");
    out.push_str("# TYPE ferro_update_instances gauge\n");
    for ((v, s), n) in per {
        let _ = writeln!(
            out,
            "ferro_update_instances{{version=\"{}\",status=\"{s}\"}} {n}",
            label(v)
        );
    }
    out.push_str("# HELP ferro_update_failures Machines that failed to update to a version.\n");
    out.push_str("# TYPE ferro_update_failures gauge\n");
    out.push_str("# HELP ferro_update_granted Machines offered a version.\n");
    out.push_str("# TYPE ferro_update_granted gauge\n");
    for (v, o) in &state.outcomes {
        let v = label(v);
        let _ = writeln!(
            out,
            "ferro_update_failures{{version=\"{v}\"}} {}",
            o.failed.len()
        );
        let _ = writeln!(
            out,
            "ferro_update_granted{{version=\"{v}\"}} {}",
            o.granted.len()
        );
    }
    out.push_str("# HELP ferro_update_group_paused 1 when the group's rollout is paused.\n");
    out.push_str("# TYPE ferro_update_group_paused gauge\n");
    out.push_str("# HELP ferro_update_group_rollout_percent Share of the group offered its channel's version.\n");
    out.push_str("# TYPE ferro_update_group_rollout_percent gauge\n");
    for (name, g) in &state.groups {
        let n = label(name);
        let _ = writeln!(
            out,
            "ferro_update_group_paused{{group=\"{n}\",channel=\"{}\"}} {}",
            label(&g.channel),
            u8::from(g.paused)
        );
        let _ = writeln!(
            out,
            "ferro_update_group_rollout_percent{{group=\"{n}\"}} {}",
            g.rollout_percent
        );
    }
    out.push_str("# HELP ferro_update_fleetlock_holders Nodes holding a FleetLock reboot slot.\n");
    out.push_str("# TYPE ferro_update_fleetlock_holders gauge\n");
    for (group, holders) in &state.fleetlock {
        let _ = writeln!(
            out,
            "ferro_update_fleetlock_holders{{group=\"{}\"}} {}",
            label(group),
            holders.len()
        );
    }
    out
}

/// A small HTML page: channels, groups, and instances per version and status.
pub fn page(state: &State) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut h = String::from(
        "<!doctype html><meta charset=utf-8><title>Ferrocore updates</title>\
         <h1>Ferrocore updates</h1><h2>Channels</h2><table border=1><tr><th>channel<th>version",
    );
    for (c, v) in &state.channels {
        let _ = write!(
            h,
            "<tr><td>{}<td>{}",
            esc(c),
            esc(v.as_deref().unwrap_or("-"))
        );
    }
    h.push_str(
        "</table><h2>Groups</h2><table border=1><tr><th>group<th>channel<th>rollout<th>paused",
    );
    for (n, g) in &state.groups {
        let _ = write!(
            h,
            "<tr><td>{}<td>{}<td>{}%<td>{}",
            esc(n),
            esc(&g.channel),
            g.rollout_percent,
            esc(&match (&g.paused, &g.pause_reason) {
                (true, Some(r)) => r.clone(),
                (true, None) => "yes".into(),
                _ => "no".into(),
            })
        );
    }
    h.push_str("</table><h2>Instances</h2><table border=1><tr><th>version<th>status<th>machines");
    let mut per: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for i in state.instances.values() {
        *per.entry((i.version.as_str(), i.status.as_str()))
            .or_default() += 1;
    }
    for ((v, s), n) in per {
        let _ = write!(h, "<tr><td>{}<td>{s}<td>{n}", esc(v));
    }
    h.push_str("</table>\n");
    h
}
