//! Amounts on the command line: decimal strings ("100", "0.5") turned into
//! integer base units, refused early (by clap) when they are zero, negative,
//! not a number, too precise or too large.

use crate::token::DECIMALS;

/// Decimals of SOL (lamports per SOL = 10^9).
pub const SOL_DECIMALS: u8 = 9;

/// Parses a non-negative decimal with at most `decimals` fractional digits
/// into base units.
pub fn parse_decimal(text: &str, decimals: u8) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("amount is empty".into());
    }
    if s.starts_with('-') {
        return Err(format!(
            "amount {s:?} is negative; amounts must be positive"
        ));
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(format!(
            "amount {s:?} is not a number (expected e.g. 100 or 2.5)"
        ));
    }
    if frac.len() > usize::from(decimals) {
        return Err(format!(
            "amount {s:?} has more than {decimals} decimal places"
        ));
    }
    let too_large = || format!("amount {s:?} is too large");
    let scale = 10u64
        .checked_pow(u32::from(decimals))
        .ok_or_else(too_large)?;
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let padded = format!("{frac:0<width$}", width = usize::from(decimals));
    let frac: u64 = if padded.is_empty() {
        0
    } else {
        padded.parse().map_err(|_| too_large())?
    };
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(too_large)
}

/// A strictly positive token amount (clap value parser).
pub fn tokens(text: &str) -> Result<u64, String> {
    positive(parse_decimal(text, DECIMALS)?)
}

/// A token amount that may be zero (clap value parser, for the faucet).
pub fn tokens_or_zero(text: &str) -> Result<u64, String> {
    parse_decimal(text, DECIMALS)
}

/// A SOL amount in lamports that may be zero (clap value parser, for the faucet).
pub fn sol_or_zero(text: &str) -> Result<u64, String> {
    parse_decimal(text, SOL_DECIMALS)
}

fn positive(amount: u64) -> Result<u64, String> {
    if amount == 0 {
        Err("amount must be greater than zero".into())
    } else {
        Ok(amount)
    }
}

/// Formats base units as a decimal, without trailing zeros ("2.5", "100").
pub fn format_decimal(amount: u64, decimals: u8) -> String {
    let scale = 10u64.pow(u32::from(decimals));
    let whole = amount / scale;
    let frac = amount % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Formats token base units for people.
pub fn format_tokens(amount: u64) -> String {
    format!("{} tokens", format_decimal(amount, DECIMALS))
}

/// Formats lamports for people.
pub fn format_sol(lamports: u64) -> String {
    format!("{} SOL", format_decimal(lamports, SOL_DECIMALS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals() {
        assert_eq!(tokens("1"), Ok(1_000_000));
        assert_eq!(tokens("2.5"), Ok(2_500_000));
        assert_eq!(tokens("0.000001"), Ok(1));
        assert_eq!(tokens(".5"), Ok(500_000));
        assert_eq!(tokens("7."), Ok(7_000_000));
        assert_eq!(sol_or_zero("1.5"), Ok(1_500_000_000));
        assert_eq!(tokens_or_zero("0"), Ok(0));
        assert_eq!(
            tokens(&(u64::MAX / 1_000_000).to_string()),
            Ok(u64::MAX / 1_000_000 * 1_000_000)
        );
    }

    #[test]
    fn refuses_bad_amounts() {
        for bad in [
            "0",
            "0.0",
            "-1",
            "abc",
            "",
            ".",
            "1.2.3",
            "1e5",
            "+1",
            "0x10",
            "0.0000001",
            "1 000",
        ] {
            assert!(tokens(bad).is_err(), "{bad:?} accepted");
        }
        assert!(tokens("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(tokens("18446744073710").unwrap_err().contains("too large"));
        assert!(tokens("-1").unwrap_err().contains("negative"));
        assert!(tokens("0").unwrap_err().contains("greater than zero"));
    }

    #[test]
    fn formats_round_trip() {
        for (units, text) in [
            (0, "0"),
            (1, "0.000001"),
            (2_500_000, "2.5"),
            (100_000_000, "100"),
        ] {
            assert_eq!(format_decimal(units, DECIMALS), text);
            assert_eq!(parse_decimal(text, DECIMALS), Ok(units));
        }
        assert_eq!(format_sol(1_500_000_000), "1.5 SOL");
        assert_eq!(format_decimal(u64::MAX, DECIMALS), "18446744073709.551615");
    }
}
