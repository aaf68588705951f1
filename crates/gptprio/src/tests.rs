//! The boot rule, the update transitions and the grubenv format. Disk-level tests (GPT + FAT ESP
//! on a sparse image, sgdisk as the peer) are in `tests/disk.rs`; the CLI in `tests/cli.rs`.

use super::*;
use proptest::prelude::*;
use std::process::Command;

fn st(priority: u8, tries: u8, successful: bool) -> SlotState {
    SlotState {
        priority,
        tries,
        successful,
    }
}

fn any_state() -> impl Strategy<Value = SlotState> {
    (0u8..16, 0u8..16, any::<bool>()).prop_map(|(p, t, s)| st(p, t, s))
}

#[test]
fn bits_are_chromeos_positions() {
    let s = st(2, 1, true);
    assert_eq!(s.apply_to(0), (2 << 48) | (1 << 52) | (1 << 56));
    assert_eq!(
        SlotState::from_attributes(0x0102_0000_0000_0000),
        st(2, 0, true)
    );
    // The highest values fill exactly bits 48..=56.
    assert_eq!(st(15, 15, true).apply_to(0), 0x01ff_0000_0000_0000);
}

#[test]
fn slot_names() {
    for (name, slot) in [
        ("A", Slot::A),
        ("a", Slot::A),
        ("USR-A", Slot::A),
        ("usr-b", Slot::B),
        ("B", Slot::B),
    ] {
        assert_eq!(Slot::from_name(name), Some(slot), "{name}");
    }
    assert_eq!(Slot::from_name("C"), None);
    assert_eq!(Slot::from_name("USR-AB"), None);
    assert_eq!(Slot::A.other(), Slot::B);
    assert_eq!((Slot::B.label(), Slot::B.env_prefix()), ("USR-B", "usr_b"));
}

// One test per clause of the rule GRUB implements in image/grub.cfg.

#[test]
fn rule_successful_slot_boots_without_tries_or_priority() {
    assert!(st(1, 0, true).bootable());
    assert!(st(0, 0, true).bootable(), "successful alone is enough");
    assert_eq!(choose_next(st(1, 0, true), st(0, 0, false)), Some(Slot::A));
    assert_eq!(choose_next(st(0, 0, false), st(0, 0, true)), Some(Slot::B));
}

#[test]
fn rule_untried_slot_needs_priority_and_tries() {
    assert!(st(2, 1, false).bootable());
    assert!(!st(2, 0, false).bootable(), "tries used up");
    assert!(
        !st(0, 3, false).bootable(),
        "priority 0 never boots untried"
    );
    assert_eq!(choose_next(st(0, 3, false), st(1, 1, false)), Some(Slot::B));
}

#[test]
fn rule_higher_priority_wins() {
    assert_eq!(choose_next(st(1, 0, true), st(2, 1, false)), Some(Slot::B));
    assert_eq!(choose_next(st(3, 0, true), st(2, 1, false)), Some(Slot::A));
}

#[test]
fn rule_a_wins_ties() {
    assert_eq!(choose_next(st(2, 0, true), st(2, 0, true)), Some(Slot::A));
    assert_eq!(choose_next(st(2, 1, false), st(2, 0, true)), Some(Slot::A));
}

#[test]
fn rule_unbootable_slot_loses_whatever_its_priority() {
    assert_eq!(choose_next(st(1, 0, true), st(15, 0, false)), Some(Slot::A));
    assert_eq!(
        choose_next(st(15, 0, false), st(1, 1, false)),
        Some(Slot::B)
    );
}

#[test]
fn rule_no_bootable_slot() {
    assert_eq!(choose_next(st(0, 0, false), st(0, 0, false)), None);
    assert_eq!(choose_next(st(1, 0, false), st(5, 0, false)), None);
    assert_eq!(choose_next(st(0, 9, false), st(0, 1, false)), None);
}

#[test]
fn spent_update_falls_back() {
    // B was activated (one try), GRUB spent it, B never became good: A again.
    assert_eq!(choose_next(st(1, 0, true), st(2, 0, false)), Some(Slot::A));
}

#[test]
fn transitions() {
    assert_eq!(mark_successful(st(2, 1, false)), st(2, 0, true));
    assert_eq!(mark_successful(st(0, 3, false)), st(0, 0, true));
    assert_eq!(mark_failed(st(3, 2, true)), SlotState::default());
    assert_eq!(prepare_update(st(3, 0, true)), SlotState::default());
    assert_eq!(activate(st(1, 0, true)), (st(2, 1, false), st(1, 0, true)));
    assert_eq!(
        activate(st(0, 0, false)),
        (st(1, 1, false), st(0, 0, false))
    );
    // At the top of the range the other slot makes room.
    assert_eq!(
        activate(st(15, 0, true)),
        (st(15, 1, false), st(14, 0, true))
    );
}

#[test]
fn full_update_cycle() {
    // Fresh image: A good, B empty.
    let (a, b) = (st(1, 0, true), SlotState::default());
    let b = prepare_update(b);
    assert_eq!(
        choose_next(a, b),
        Some(Slot::A),
        "half-written B never boots"
    );
    let (b, a) = activate(a);
    assert_eq!(choose_next(a, b), Some(Slot::B), "B is tried once");
    // GRUB takes B's try; a healthy boot marks it good, and B stays the choice.
    let b = mark_successful(SlotState { tries: 0, ..b });
    assert_eq!(choose_next(a, b), Some(Slot::B));
    // The next update goes the other way.
    let (a, b) = activate(b);
    assert_eq!((a, b), (st(3, 1, false), st(2, 0, true)));
    assert_eq!(choose_next(a, b), Some(Slot::A));
}

#[test]
fn roll_back_after_a_failed_health_check() {
    // B was tried (GRUB spent its try) and failed its health checks; A is known good.
    let (a, b) = (st(1, 0, true), st(2, 0, false));
    let (b, a) = roll_back(b, a).unwrap();
    assert_eq!((a, b), (st(1, 0, true), SlotState::default()));
    assert_eq!(choose_next(a, b), Some(Slot::A));
    // A known-good slot without a priority gets one, so it boots.
    assert_eq!(
        roll_back(st(2, 0, false), st(0, 0, true)).unwrap().1,
        st(1, 0, true)
    );
    // Nothing known good to go back to: nothing changes.
    assert_eq!(roll_back(st(2, 0, false), st(1, 0, false)), None);
    assert_eq!(roll_back(st(2, 0, false), SlotState::default()), None);
}

#[test]
fn fall_back_is_recognised_from_the_slot_bits() {
    // B was activated, GRUB spent its try, B never marked good: running A is a fall-back.
    assert!(fell_back_from(st(1, 0, true), st(2, 0, false)));
    // B still has a try left (this boot ran A for another reason), or B is good, or B was never
    // activated (fresh image), or we rolled it back ourselves (priority 0): not a fall-back.
    assert!(!fell_back_from(st(1, 0, true), st(2, 1, false)));
    assert!(!fell_back_from(st(1, 0, true), st(2, 0, true)));
    assert!(!fell_back_from(st(1, 0, true), SlotState::default()));
    assert!(!fell_back_from(st(2, 0, true), st(1, 0, false)));
}

#[test]
fn grubenv_slot_round_trip_and_limits() {
    let mut env = grubenv::GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::A, st(1, 0, true));
    grubenv_set_slot(&mut env, Slot::B, st(2, 1, false));
    let bytes = env.to_bytes().unwrap();
    assert_eq!(bytes.len(), 1024);
    assert!(bytes.starts_with(
        b"# GRUB Environment Block\nusr_a_priority=1\nusr_a_tries=0\nusr_a_successful=1\n"
    ));
    assert!(bytes.ends_with(b"###"));
    let back = grubenv::GrubEnv::parse(&bytes).unwrap();
    assert_eq!(grubenv_slot(&back, Slot::A), Some(st(1, 0, true)));
    assert_eq!(grubenv_slot(&back, Slot::B), Some(st(2, 1, false)));
    assert_eq!(
        grubenv::GrubEnv::parse(&bytes[..1000]),
        Err(grubenv::Error::Size(1000))
    );
    assert_eq!(
        grubenv::GrubEnv::parse(&[b'#'; 1024]),
        Err(grubenv::Error::Header)
    );
    let mut big = grubenv::GrubEnv::new();
    big.set("x", &"y".repeat(1100));
    assert!(matches!(big.to_bytes(), Err(grubenv::Error::Full(_))));
}

#[test]
fn grubenv_slot_rejects_bad_values() {
    let mut env = grubenv::GrubEnv::new();
    assert_eq!(grubenv_slot(&env, Slot::A), None, "unset");
    grubenv_set_slot(&mut env, Slot::A, st(1, 0, true));
    env.set("usr_a_tries", "16");
    assert_eq!(grubenv_slot(&env, Slot::A), None, "out of range");
    env.set("usr_a_tries", "0");
    env.set("usr_a_successful", "yes");
    assert_eq!(grubenv_slot(&env, Slot::A), None, "not 0/1");
}

/// Run a tool that ships with the Debian package named in `pkg`.
fn tool(pkg: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{:?} (Debian package {pkg}): {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn grubenv_matches_grub_editenv() {
    // GRUB's own tool is the peer: it reads what we write, and we read what it writes, escapes
    // included.
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    let mut env = grubenv::GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::B, st(3, 1, false));
    env.set("odd", "back\\slash\nnew line");
    std::fs::write(&ours, env.to_bytes().unwrap()).unwrap();
    let listed = tool(
        "grub-common",
        &["grub-editenv".as_ref(), ours.as_ref(), "list".as_ref()],
    );
    assert_eq!(
        listed,
        "usr_b_priority=3\nusr_b_tries=1\nusr_b_successful=0\nodd=back\\slash\nnew line\n"
    );

    let theirs = dir.path().join("theirs");
    let e = theirs.as_os_str();
    tool(
        "grub-common",
        &["grub-editenv".as_ref(), e, "create".as_ref()],
    );
    for kv in [
        "usr_a_priority=2",
        "usr_a_tries=0",
        "usr_a_successful=1",
        "odd=x\\y\nz",
    ] {
        tool(
            "grub-common",
            &["grub-editenv".as_ref(), e, "set".as_ref(), kv.as_ref()],
        );
    }
    let env = grubenv::GrubEnv::parse(&std::fs::read(&theirs).unwrap()).unwrap();
    assert_eq!(grubenv_slot(&env, Slot::A), Some(st(2, 0, true)));
    assert_eq!(env.get("odd"), Some("x\\y\nz"));
    assert_eq!(env.iter().count(), 4, "grub-editenv's warning is a comment");
}

proptest! {
    #[test]
    fn attributes_round_trip_and_keep_other_bits(state in any_state(), other: u64) {
        let attrs = state.apply_to(other);
        prop_assert_eq!(SlotState::from_attributes(attrs), state);
        prop_assert_eq!(attrs & !(0x1ffu64 << 48), other & !(0x1ffu64 << 48));
        // Applying what was read back changes nothing.
        prop_assert_eq!(SlotState::from_attributes(other).apply_to(other), other);
    }

    #[test]
    fn chosen_slot_follows_the_rule(a in any_state(), b in any_state()) {
        match choose_next(a, b) {
            Some(Slot::A) => prop_assert!(a.bootable() && (!b.bootable() || a.priority >= b.priority)),
            Some(Slot::B) => prop_assert!(b.bootable() && (!a.bootable() || b.priority > a.priority)),
            None => prop_assert!(!a.bootable() && !b.bootable()),
        }
    }

    #[test]
    fn activated_slot_boots_next(other in any_state(), t_is_a: bool) {
        let (t, o) = activate(other);
        let next = if t_is_a { choose_next(t, o) } else { choose_next(o, t) };
        prop_assert_eq!(next, Some(if t_is_a { Slot::A } else { Slot::B }));
        prop_assert_eq!((o.tries, o.successful), (other.tries, other.successful));
        // Its one try spent without success, the other slot boots again if it could before.
        let spent = SlotState { tries: 0, ..t };
        let fallback = if t_is_a { choose_next(spent, o) } else { choose_next(o, spent) };
        let other_slot = if t_is_a { Slot::B } else { Slot::A };
        prop_assert_eq!(fallback, other.bootable().then_some(other_slot));
    }

    #[test]
    fn failed_or_prepared_slot_never_boots(s in any_state()) {
        prop_assert!(!mark_failed(s).bootable());
        prop_assert!(!prepare_update(s).bootable());
        prop_assert!(mark_successful(s).bootable());
        prop_assert_eq!(mark_successful(s).priority, s.priority);
    }

    #[test]
    fn rolled_back_slot_never_boots_and_the_good_one_does(failed in any_state(), prev in any_state(), failed_is_a: bool) {
        match roll_back(failed, prev) {
            None => prop_assert!(!prev.successful),
            Some((f, p)) => {
                prop_assert!(!f.bootable());
                prop_assert!(p.successful && p.priority >= 1);
                let next = if failed_is_a { choose_next(f, p) } else { choose_next(p, f) };
                prop_assert_eq!(next, Some(if failed_is_a { Slot::B } else { Slot::A }));
            }
        }
    }

    #[test]
    fn grubenv_round_trips(vars in proptest::collection::vec(("[a-z_]{1,12}", "[ -~\n\\\\]{0,20}"), 0..15)) {
        let mut env = grubenv::GrubEnv::new();
        for (k, v) in &vars {
            env.set(k, v);
        }
        let bytes = env.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), 1024);
        prop_assert_eq!(grubenv::GrubEnv::parse(&bytes).unwrap(), env);
    }
}
