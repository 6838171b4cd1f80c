//! Retry arithmetic.

/// Seconds to wait before retrying after failed attempt `attempt` (1-based):
/// `base_delay * 2^(attempt-1)`, saturating at `i32::MAX` instead of overflowing.
pub fn retry_delay_seconds(base_delay: i32, attempt: i32) -> i32 {
    if base_delay <= 0 {
        return 0;
    }
    let exponent = (attempt.max(1) - 1).min(31) as u32;
    let delay = i64::from(base_delay) << exponent;
    delay.min(i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base() {
        assert_eq!(retry_delay_seconds(1, 1), 1);
        assert_eq!(retry_delay_seconds(1, 2), 2);
        assert_eq!(retry_delay_seconds(1, 3), 4);
        assert_eq!(retry_delay_seconds(3, 4), 24);
    }

    #[test]
    fn zero_base_means_immediate_retry() {
        assert_eq!(retry_delay_seconds(0, 1), 0);
        assert_eq!(retry_delay_seconds(0, 30), 0);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(retry_delay_seconds(1, 32), i32::MAX);
        assert_eq!(retry_delay_seconds(i32::MAX, 2), i32::MAX);
        assert_eq!(retry_delay_seconds(5, 1000), i32::MAX);
    }
}
