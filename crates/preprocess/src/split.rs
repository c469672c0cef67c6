//! Seeded, stratified train/test splitting, optionally keeping groups on one side.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// For rows with classes `labels` (and, when grouping, `groups`), returns which rows go to
/// test: about `test_size` of each class, chosen by `seed`.
///
/// Without groups the split is exactly stratified. With groups, whole groups are taken in a
/// seeded order whenever that brings every class closer to its target, so the class balance
/// stays close to the data's while no group straddles the split.
pub fn test_rows(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    test_size: f64,
    seed: u64,
) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut per_class = vec![0usize; classes];
    for &l in labels {
        per_class[l] += 1;
    }
    let target: Vec<f64> = per_class.iter().map(|&n| n as f64 * test_size).collect();
    let mut is_test = vec![false; labels.len()];
    match groups {
        None => {
            for (c, t) in target.iter().enumerate() {
                let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
                rows.shuffle(&mut rng);
                for &i in rows.iter().take(t.round() as usize) {
                    is_test[i] = true;
                }
            }
        }
        Some(groups) => {
            // Rows without a group value stand alone.
            let mut members: HashMap<String, Vec<usize>> = HashMap::new();
            let mut order: Vec<String> = Vec::new();
            for (i, g) in groups.iter().enumerate() {
                let key = match g {
                    Some(g) if !g.is_empty() => format!("g:{g}"),
                    _ => format!("row:{i}"),
                };
                members
                    .entry(key.clone())
                    .or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    })
                    .push(i);
            }
            order.shuffle(&mut rng);
            let mut taken = vec![0f64; classes];
            let distance =
                |t: &[f64]| -> f64 { t.iter().zip(&target).map(|(a, b)| (a - b).abs()).sum() };
            for key in order {
                let rows = &members[&key];
                let mut with = taken.clone();
                for &i in rows {
                    with[labels[i]] += 1.0;
                }
                if distance(&with) < distance(&taken) {
                    taken = with;
                    for &i in rows {
                        is_test[i] = true;
                    }
                }
            }
        }
    }
    is_test
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_exactly_and_seeded() {
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 4 == 0)).collect();
        let a = test_rows(&labels, None, 0.2, 7);
        assert_eq!(a, test_rows(&labels, None, 0.2, 7));
        assert_ne!(a, test_rows(&labels, None, 0.2, 8));
        let pos = (0..1000).filter(|&i| a[i] && labels[i] == 1).count();
        let neg = (0..1000).filter(|&i| a[i] && labels[i] == 0).count();
        assert_eq!((neg, pos), (150, 50));
    }

    #[test]
    fn groups_never_straddle_and_balance_stays_close() {
        let n = 2000;
        let labels: Vec<usize> = (0..n).map(|i| usize::from((i * 7) % 10 < 6)).collect();
        let groups: Vec<Option<String>> =
            (0..n).map(|i| Some(format!("movie{}", i / 13))).collect();
        let t = test_rows(&labels, Some(&groups), 0.2, 1);
        let mut side: HashMap<&str, bool> = HashMap::new();
        for i in 0..n {
            let g = groups[i].as_deref().unwrap();
            assert_eq!(
                *side.entry(g).or_insert(t[i]),
                t[i],
                "group {g} split across sides"
            );
        }
        let test_n = t.iter().filter(|x| **x).count() as f64;
        assert!(
            (test_n / n as f64 - 0.2).abs() < 0.02,
            "test fraction {}",
            test_n / n as f64
        );
        let pos_rate = (0..n).filter(|&i| t[i] && labels[i] == 1).count() as f64 / test_n;
        assert!(
            (pos_rate - 0.6).abs() < 0.03,
            "positive rate in test {pos_rate}"
        );
    }
}
