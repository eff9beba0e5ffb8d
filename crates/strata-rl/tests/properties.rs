//! Properties of every reward over arbitrary text: bounded, deterministic,
//! and exact answers score 1.

use proptest::prelude::*;
use strata_rl::{score, REWARDS};

proptest! {
    #[test]
    fn rewards_are_in_the_unit_interval_and_deterministic(
        expected in "[a-z0-9 -]{0,40}",
        completion in any::<String>(),
    ) {
        for r in REWARDS {
            let Ok(s) = r.score(&expected, &completion) else {
                // Only an expected answer arithmetic cannot read is refused.
                prop_assert_eq!(r.name, "arithmetic");
                continue;
            };
            prop_assert!((0.0..=1.0).contains(&s), "{} scored {}", r.name, s);
            prop_assert_eq!(Ok(s), score(r.name, &expected, &completion));
        }
    }

    #[test]
    fn exact_answers_score_one(n in -999i64..=999, text in "[a-z]{0,20}", noise in "[a-z .]{0,30}") {
        let expected = n.to_string();
        prop_assert_eq!(score("arithmetic", &expected, &format!("{noise}\nAnswer: {n}\n")), Ok(1.0));
        for name in ["copy", "reverse"] {
            prop_assert_eq!(score(name, &text, &format!("{noise}\nAnswer: {text}")), Ok(1.0));
        }
        prop_assert_eq!(score("format", "", &format!("Answer: x{text}")), Ok(1.0));
    }

    #[test]
    fn a_closer_copy_never_scores_less(text in "[a-z]{4,12}", cut in 1usize..4) {
        let shorter: String = text.chars().take(text.len() - cut).collect();
        let exact = score("copy", &text, &format!("Answer: {text}")).unwrap();
        let partial = score("copy", &text, &format!("Answer: {shorter}")).unwrap();
        prop_assert!(partial < exact && partial > 0.0);
    }
}
