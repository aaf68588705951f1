//! Reboot windows as locksmith takes them: `LOCKSMITHD_REBOOT_WINDOW_START` ("Thu 23:00" weekly, or
//! "23:00" daily) and `LOCKSMITHD_REBOOT_WINDOW_LENGTH` (a Go duration such as "1h30m"). Times are
//! UTC, as the machines' clocks are.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("reboot window start {0:?} is not \"[Mon..Sun] HH:MM\"")]
    Start(String),
    #[error("reboot window length {0:?} is not a duration such as 1h30m")]
    Length(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// 0 = Sunday; `None`: every day.
    pub day: Option<u64>,
    /// Seconds after midnight.
    pub start: u64,
    pub length: u64,
}

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;

/// `1h30m`, `45m`, `90s`, `2h`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let (mut total, mut num) = (0u64, String::new());
    if s.is_empty() {
        return None;
    }
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = num.parse().ok()?;
                num.clear();
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
            }
            _ => return None,
        }
    }
    num.is_empty().then_some(total)
}

impl Window {
    pub fn parse(start: &str, length: &str) -> Result<Window, Error> {
        let bad = || Error::Start(start.into());
        let mut words = start.split_whitespace();
        let (day, hm) = match (words.next(), words.next(), words.next()) {
            (Some(d), Some(t), None) => {
                let d = d.to_ascii_lowercase();
                let i = DAYS.iter().position(|p| d.starts_with(p)).ok_or_else(bad)?;
                (Some(i as u64), t)
            }
            (Some(t), None, None) => (None, t),
            _ => return Err(bad()),
        };
        let (h, m) = hm.split_once(':').ok_or_else(bad)?;
        let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        let length = parse_duration(length).ok_or_else(|| Error::Length(length.into()))?;
        Ok(Window {
            day,
            start: h * 3600 + m * 60,
            length,
        })
    }

    /// Whether `unix` seconds fall inside the window (which may wrap past midnight or Sunday).
    pub fn contains(&self, unix: u64) -> bool {
        let (period, now, start) = match self.day {
            // 1970-01-01 was a Thursday: shift by 4 days so the week starts on Sunday.
            Some(d) => (WEEK, (unix + 4 * DAY) % WEEK, d * DAY + self.start),
            None => (DAY, unix % DAY, self.start),
        };
        (now + period - start) % period < self.length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-04 (a Thursday) 00:00 UTC.
    const THU: u64 = 1_704_326_400;

    #[test]
    fn weekly_and_daily_windows() {
        let w = Window::parse("Thu 23:00", "1h30m").unwrap();
        assert_eq!((w.day, w.start, w.length), (Some(4), 23 * 3600, 5400));
        assert!(!w.contains(THU + 22 * 3600 + 3599));
        assert!(w.contains(THU + 23 * 3600));
        assert!(w.contains(THU + DAY + 29 * 60)); // Friday 00:29
        assert!(!w.contains(THU + DAY + 30 * 60));
        assert!(!w.contains(THU + 23 * 3600 + DAY)); // Friday 23:00
        assert!(w.contains(THU + 23 * 3600 + WEEK));
        // Saturday night into Sunday wraps the week.
        let w = Window::parse("sat 23:30", "1h").unwrap();
        assert!(w.contains(THU + 3 * DAY + 10 * 60)); // Sunday 00:10
        let d = Window::parse("04:00", "30m").unwrap();
        assert!(d.contains(THU + 5 * DAY + 4 * 3600 + 60));
        assert!(!d.contains(THU + 5 * DAY + 5 * 3600));
    }

    #[test]
    fn bad_windows() {
        assert!(Window::parse("Thu", "1h").is_err());
        assert!(Window::parse("Xyz 10:00", "1h").is_err());
        assert!(Window::parse("24:00", "1h").is_err());
        assert_eq!(
            Window::parse("10:00", "1 hour"),
            Err(Error::Length("1 hour".into()))
        );
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("15"), None);
    }
}
