//! Reading the task key out of a queue message's text fields, defensively: anyone with
//! access to pgmq can put anything into a queue, and one odd message must not break polling.

/// Parses a canonical UUID (`8-4-4-4-12` hex digits, either case).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
    // Every one of the 32 must be a hex digit: u8::from_str_radix alone would take "+0".
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A task index: a non-negative `int`.
pub fn parse_task_index(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i32>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let u = parse_uuid("00000000-0000-0000-0000-0000000fa112").unwrap();
        assert_eq!(u[15], 0x12);
        assert_eq!(u[14], 0xa1);
        assert_eq!(
            parse_uuid("A0B1C2D3-E4F5-0617-2839-4A5B6C7D8E9F").unwrap()[0],
            0xa0
        );
        for bad in [
            "",
            "nope",
            "00000000000000000000000000000000",
            "0000000-00000-0000-0000-000000000000",
            "g0000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000+",
            "00000000-0000-0000-0000-0000000000+0",
            "+0000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000 ",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn task_indexes() {
        assert_eq!(parse_task_index("0"), Some(0));
        assert_eq!(parse_task_index("9999"), Some(9999));
        for bad in ["", "-1", "1.5", "x", "99999999999", "+3", " 1"] {
            assert_eq!(parse_task_index(bad), None, "{bad}");
        }
    }
}
