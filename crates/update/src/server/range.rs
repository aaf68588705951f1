//! HTTP Range requests (RFC 9110), one range per request, which is what a resuming download asks.

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a `len`-byte file: `Ok(None)` for a
/// header we serve as a whole file (several ranges, other units), `Err` when unsatisfiable.
/// The range cannot be served from a file of this length (answer 416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

pub fn parse(header: &str, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (
            len.saturating_sub(n),
            len.checked_sub(1).ok_or(Unsatisfiable)?,
        )
    } else {
        let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| Unsatisfiable)?
                .min(len.saturating_sub(1))
        };
        (start, end)
    };
    if start >= len || end < start {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::{parse, Unsatisfiable};

    #[test]
    fn ranges() {
        assert_eq!(parse("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse("bytes=90-500", 100), Ok(Some((90, 99))));
        assert_eq!(parse("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse("bytes=-500", 100), Ok(Some((0, 99))));
        assert_eq!(parse("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse("items=0-1", 100), Ok(None));
        assert_eq!(parse("bytes=100-", 100), Err(Unsatisfiable));
        assert_eq!(parse("bytes=5-2", 100), Err(Unsatisfiable));
        assert_eq!(parse("bytes=x-2", 100), Err(Unsatisfiable));
        assert_eq!(parse("bytes=0-", 0), Err(Unsatisfiable));
    }
}
