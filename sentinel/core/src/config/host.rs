//! `[host] min_available`: bytes, or a share of RAM with an optional cap.

use super::MinAvailable;
use crate::units::ByteSize;

/// A problem at a byte offset of the file.
type Problem = (usize, String);

/// `min_available = "2GiB"` or `"10%"`, with `min_available_cap` bounding
/// a share; the built-in floor when neither is given.
pub(super) fn min_available(
    raw: Option<toml::Spanned<String>>,
    cap: Option<toml::Spanned<ByteSize>>,
) -> Result<MinAvailable, Problem> {
    let Some(raw) = raw else {
        if let Some(cap) = cap {
            return Err((
                cap.span().start,
                "applies to a share of RAM: set min_available = \"N%\" as well".into(),
            ));
        }
        return Ok(super::DEFAULT_MIN_AVAILABLE);
    };
    let at = raw.span().start;
    let text = raw.get_ref().trim();
    let Some(percent) = text.strip_suffix('%') else {
        if let Some(cap) = cap {
            return Err((
                cap.span().start,
                format!("applies to a share of RAM, and min_available is `{text}`"),
            ));
        }
        return ByteSize::parse(text)
            .map(|b| MinAvailable::Bytes(b.0))
            .map_err(|e| (at, e));
    };
    let percent: f64 = percent
        .trim()
        .parse()
        .ok()
        .filter(|p: &f64| (0.0..100.0).contains(p))
        .ok_or_else(|| {
            (
                at,
                format!("`{text}`: a share of RAM from 0% to under 100%"),
            )
        })?;
    Ok(MinAvailable::Share {
        percent,
        at_most: cap.map(|c| c.into_inner().0),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DEFAULT_MIN_AVAILABLE, MinAvailable};

    fn floor(text: &str) -> Result<MinAvailable, String> {
        Config::parse(text, "t.toml")
            .map(|c| c.host.min_available)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_floor_is_bytes_or_a_share_of_ram_capped() {
        assert_eq!(floor("").unwrap(), DEFAULT_MIN_AVAILABLE);
        assert_eq!(DEFAULT_MIN_AVAILABLE.of(24 << 30), (24u64 << 30) / 10);
        assert_eq!(DEFAULT_MIN_AVAILABLE.of(512 << 30), 4 << 30);
        assert_eq!(
            floor("[host]\nmin_available = \"1GiB\"\n").unwrap(),
            MinAvailable::Bytes(1 << 30)
        );
        let share =
            floor("[host]\nmin_available = \"5%\"\nmin_available_cap = \"2GiB\"\n").unwrap();
        assert_eq!(share.of(100 << 30), 2 << 30);
        assert_eq!(share.of(10 << 30), (10u64 << 30) / 20);
        let e = floor("[host]\nmin_available = \"150%\"\n").unwrap_err();
        assert!(
            e.contains("key `host.min_available`") && e.contains("under 100%"),
            "{e}"
        );
        let e =
            floor("[host]\nmin_available = \"1GiB\"\nmin_available_cap = \"2GiB\"\n").unwrap_err();
        assert!(e.contains("key `host.min_available_cap`"), "{e}");
    }
}
