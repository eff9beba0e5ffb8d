//! The protocol fee on a voucher redemption, computed the same way by the
//! program (which takes it) and by the relayer and tests (which predict it).

/// Basis points in one whole.
const BPS: u128 = 10_000;

/// The protocol fee on redeeming `amount`: `amount × bps / 10 000`, rounded
/// **up**.
///
/// Rounding down would let a client and a node settle in slices small enough
/// that every slice's fee is zero (at 5 % any redemption under 20 base units
/// paid nothing), starving the reward pool; rounding up makes splitting cost
/// at least as much as settling at once. The fee never exceeds `amount`
/// (`bps` is at most 10 000 wherever it is used; larger values are clamped to
/// `amount`).
pub fn protocol_fee(amount: u64, bps: u16) -> u64 {
    // A u64 times a u16 fits in u128, so neither the product nor the +9 999 overflows.
    let fee = (u128::from(amount) * u128::from(bps)).div_ceil(BPS);
    u64::try_from(fee).map_or(amount, |fee| fee.min(amount))
}

#[cfg(test)]
mod tests {
    use super::protocol_fee;

    #[test]
    fn small_amounts_pay_a_fee() {
        assert_eq!(protocol_fee(1, 500), 1);
        assert_eq!(protocol_fee(19, 500), 1);
        assert_eq!(protocol_fee(20, 500), 1);
        assert_eq!(protocol_fee(21, 500), 2);
        assert_eq!(protocol_fee(0, 500), 0);
        assert_eq!(protocol_fee(7, 0), 0);
    }

    #[test]
    fn exact_multiples_are_unchanged_and_large_amounts_do_not_overflow() {
        assert_eq!(protocol_fee(200, 500), 10);
        assert_eq!(protocol_fee(u64::MAX, 10_000), u64::MAX);
        assert_eq!(protocol_fee(u64::MAX, 5_000), u64::MAX / 2 + 1);
        assert_eq!(protocol_fee(3, u16::MAX), 3, "clamped to the amount");
    }
}
