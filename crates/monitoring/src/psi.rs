//! The population stability index: how far one distribution over bins has moved from
//! another, `sum((a - e) * ln(a / e))` over the bins' shares.

/// PSI above this: a moderate shift, worth a look (the customary reading in credit scoring,
/// where the index comes from).
pub const PSI_WARN: f64 = 0.1;
/// PSI above this: a significant shift; the model is seeing text unlike its training data.
/// The shipped Prometheus alert (`docker/prometheus/drift-alerts.yml`) fires on it.
pub const PSI_ALERT: f64 = 0.25;

/// Shares below this are taken as this, so that a bin empty on one side gives a large but
/// finite term rather than infinity.
const FLOOR: f64 = 1e-4;

/// The PSI of `actual` shares against `expected` shares over the same bins (0 = the same).
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    assert_eq!(expected.len(), actual.len(), "PSI needs the same bins");
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_shares_have_no_drift() {
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
    }

    #[test]
    fn a_known_shift_has_its_textbook_value() {
        // 50/50 -> 80/20: (0.3 ln 1.6) + (-0.3 ln 0.4) = 0.1410 + 0.2749.
        let v = psi(&[0.5, 0.5], &[0.8, 0.2]);
        assert!((v - 0.415_888).abs() < 1e-5, "{v}");
        assert!(v > PSI_ALERT);
        // Symmetric in the sense that matters: both directions count as drift.
        assert!((psi(&[0.8, 0.2], &[0.5, 0.5]) - v).abs() < 1e-12);
    }

    #[test]
    fn an_empty_bin_gives_a_finite_large_value() {
        let v = psi(&[0.5, 0.5], &[1.0, 0.0]);
        assert!(v.is_finite() && v > 1.0, "{v}");
    }
}
