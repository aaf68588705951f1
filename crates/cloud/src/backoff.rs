//! Exponential backoff between attempts of a request that failed in a way worth retrying
//! (throttling, server errors, dropped connections).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 8,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based): first_delay, doubled each time, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let b = Backoff {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
        };
        let d: Vec<u128> = (1..=5).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 700, 700]);
    }
}
