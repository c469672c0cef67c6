//! Training data: seeded stratified sampling, tokenization, and length-grouped micro-batches.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use classifier::dataset::Example;

/// Micro-batches per sorting window: batches are cut from windows of this many batches'
/// worth of examples sorted by length, so padding stays small while order stays random.
const WINDOW_BATCHES: usize = 64;

/// A seeded, stratified sample of at most `n` examples (all of them when `n` is 0 or large
/// enough), in their original order.
pub fn stratified_sample(examples: Vec<Example>, n: usize, seed: u64) -> Vec<Example> {
    if n == 0 || n >= examples.len() {
        return examples;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total = examples.len();
    let classes = examples.iter().map(|e| e.label).max().unwrap_or(0) + 1;
    let mut chosen = vec![false; total];
    let mut taken = 0;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..total).filter(|&i| examples[i].label == c).collect();
        let want = if c + 1 == classes {
            n - taken
        } else {
            ((idx.len() as f64) * n as f64 / total as f64).round() as usize
        };
        idx.shuffle(&mut rng);
        for &i in idx.iter().take(want) {
            chosen[i] = true;
        }
        taken += want.min(idx.len());
    }
    examples
        .into_iter()
        .zip(chosen)
        .filter_map(|(e, c)| c.then_some(e))
        .collect()
}

/// The micro-batches (indices into the examples) of one epoch: shuffled by `(seed, epoch)`,
/// grouped by length within windows, batch order shuffled again.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(classifier::ops::site_seed(seed, 1 + epoch as u64));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size * WINDOW_BATCHES) {
        let mut window = window.to_vec();
        window.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(window.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(label: usize, i: usize) -> Example {
        Example {
            text: format!("t{i}"),
            label,
            source: String::new(),
        }
    }

    #[test]
    fn sample_keeps_class_balance_and_is_seeded() {
        let all: Vec<Example> = (0..1000).map(|i| ex(usize::from(i % 10 < 3), i)).collect();
        let s = stratified_sample(all.clone(), 100, 1);
        assert_eq!(s.len(), 100);
        assert_eq!(s.iter().filter(|e| e.label == 1).count(), 30);
        assert_eq!(s, stratified_sample(all.clone(), 100, 1));
        assert_ne!(s, stratified_sample(all.clone(), 100, 2));
        assert_eq!(stratified_sample(all.clone(), 0, 1).len(), 1000);
    }

    #[test]
    fn batches_cover_every_example_once_with_little_padding() {
        let lengths: Vec<usize> = (0..1000).map(|i| 5 + (i * 7919) % 200).collect();
        let batches = epoch_batches(&lengths, 8, 3, 0);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        let padded: usize = batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap())
            .sum();
        let real: usize = lengths.iter().sum();
        assert!(
            (padded as f64) < 1.1 * real as f64,
            "padding overhead {}",
            padded as f64 / real as f64
        );
        assert_eq!(batches, epoch_batches(&lengths, 8, 3, 0));
        assert_ne!(batches, epoch_batches(&lengths, 8, 3, 1));
    }
}
