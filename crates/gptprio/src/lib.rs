//! A/B slot state for the USR partitions, with ChromeOS/CoreOS semantics.
//!
//! The GPT attribute bits of USR-A/USR-B are the source of truth: bits 48–51 priority, 52–55
//! tries left, 56 successful. Stock GRUB cannot read them, so every write mirrors them into
//! `/ferrocore/grubenv` on the ESP, where `image/grub.cfg` applies the same rule as
//! [`choose_next`] and decrements tries before booting an untried slot.

pub mod disk;
pub mod grubenv;

pub use disk::{Disk, Error, PartitionInfo};

/// The CoreOS "usr" partition type.
pub const USR_TYPE_GUID: &str = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_BIT: u64 = 1 << 56;
const MASK: u64 = 0x1ff << PRIORITY_SHIFT;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "USR-A",
            Slot::B => "USR-B",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    /// Prefix of this slot's grubenv variables (`usr_a_priority`, …).
    pub fn env_prefix(self) -> &'static str {
        match self {
            Slot::A => "usr_a",
            Slot::B => "usr_b",
        }
    }
    /// "A", "a", "USR-A" (and B alike).
    pub fn from_name(name: &str) -> Option<Slot> {
        match name.to_ascii_uppercase().as_str() {
            "A" | "USR-A" => Some(Slot::A),
            "B" | "USR-B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotState {
    /// 0–15; 0 means never boot.
    pub priority: u8,
    /// 0–15 boot attempts left before the slot counts as failed.
    pub tries: u8,
    pub successful: bool,
}

impl SlotState {
    pub fn from_attributes(attrs: u64) -> SlotState {
        SlotState {
            priority: ((attrs >> PRIORITY_SHIFT) & 0xf) as u8,
            tries: ((attrs >> TRIES_SHIFT) & 0xf) as u8,
            successful: attrs & SUCCESSFUL_BIT != 0,
        }
    }

    /// Replaces our bits in `attrs`, keeping every other bit.
    pub fn apply_to(self, attrs: u64) -> u64 {
        let mut a = attrs & !MASK;
        a |= u64::from(self.priority.min(15)) << PRIORITY_SHIFT;
        a |= u64::from(self.tries.min(15)) << TRIES_SHIFT;
        if self.successful {
            a |= SUCCESSFUL_BIT;
        }
        a
    }

    /// The boot loader's rule: a slot may boot if it is known good, or is wanted and has tries.
    pub fn bootable(self) -> bool {
        self.successful || (self.priority > 0 && self.tries > 0)
    }
}

/// The slot to boot: the bootable one with the higher priority, A on a tie; `None` when neither
/// may boot.
pub fn choose_next(a: SlotState, b: SlotState) -> Option<Slot> {
    match (a.bootable(), b.bootable()) {
        (false, false) => None,
        (true, false) => Some(Slot::A),
        (false, true) => Some(Slot::B),
        (true, true) => Some(if b.priority > a.priority {
            Slot::B
        } else {
            Slot::A
        }),
    }
}

/// After a healthy boot of `s`: known good, no tries needed.
pub fn mark_successful(s: SlotState) -> SlotState {
    SlotState {
        tries: 0,
        successful: true,
        ..s
    }
}

/// A slot that must not boot again (it failed).
pub fn mark_failed(_: SlotState) -> SlotState {
    SlotState::default()
}

/// A slot on trial that failed its health checks gives way to the slot it was updated from.
/// `failed` must never boot again; `previous` boots next (it stays known good, and gets a
/// priority if it had none). `None` when `previous` is not known good: there is nothing to roll
/// back to, so nothing changes.
pub fn roll_back(failed: SlotState, previous: SlotState) -> Option<(SlotState, SlotState)> {
    if !previous.successful {
        return None;
    }
    Some((
        mark_failed(failed),
        SlotState {
            priority: previous.priority.max(1),
            ..previous
        },
    ))
}

/// After a boot of `booted`, the other slot was an update that never came up: it was made the one
/// to try (a priority above ours), GRUB spent its tries, and it never became successful.
pub fn fell_back_from(booted: SlotState, other: SlotState) -> bool {
    !other.successful && other.tries == 0 && other.priority > booted.priority
}

/// Before an update writes into the slot: nothing may boot it while it is half written.
pub fn prepare_update(_: SlotState) -> SlotState {
    SlotState::default()
}

/// Make the target slot the next one to try, once: above the other's priority (the other is
/// lowered from 15 to make room), one try, not yet good. Returns the new (target, other) states.
pub fn activate(other: SlotState) -> (SlotState, SlotState) {
    let other = SlotState {
        priority: other.priority.min(14),
        ..other
    };
    (
        SlotState {
            priority: other.priority + 1,
            tries: 1,
            successful: false,
        },
        other,
    )
}

/// Puts `slot`'s state into grubenv variables.
pub fn grubenv_set_slot(env: &mut grubenv::GrubEnv, slot: Slot, st: SlotState) {
    let p = slot.env_prefix();
    env.set(&format!("{p}_priority"), &st.priority.to_string());
    env.set(&format!("{p}_tries"), &st.tries.to_string());
    env.set(
        &format!("{p}_successful"),
        if st.successful { "1" } else { "0" },
    );
}

/// Reads `slot`'s state from grubenv, if all three variables are there and valid.
pub fn grubenv_slot(env: &grubenv::GrubEnv, slot: Slot) -> Option<SlotState> {
    let p = slot.env_prefix();
    let num = |k: &str| {
        env.get(&format!("{p}_{k}"))?
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= 15)
    };
    Some(SlotState {
        priority: num("priority")?,
        tries: num("tries")?,
        successful: match env.get(&format!("{p}_successful"))? {
            "1" => true,
            "0" => false,
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests;
