//! Training data: seeded stratified sampling, tokenization, and length-grouped micro-batches.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use std::path::Path;

use classifier::dataset::{Example, TRAIN_FILE, VALIDATION_FILE, read_examples, read_labels};

/// The share of train.csv held out for validation when a data folder has no
/// validation.csv (made by a `preprocess` from before validation splits).
pub const FALLBACK_VALIDATION_SHARE: f64 = 0.1;

/// The training and validation examples of a processed data folder. The test split is not
/// read here: the trainer opens it only for the final evaluation.
pub struct Splits {
    /// Class names in index order (the folder's labels.json).
    pub labels: Vec<String>,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    /// Where the validation examples came from, for the records.
    pub validation_from: String,
}

/// Reads train.csv and validation.csv; a folder without validation rows gets a seeded,
/// stratified tenth of train.csv held out, with a warning.
pub fn load_splits(data_dir: &Path, seed: u64) -> anyhow::Result<Splits> {
    let labels = read_labels(data_dir)?;
    let train_path = data_dir.join(TRAIN_FILE);
    let train = read_examples(&train_path)?;
    anyhow::ensure!(!train.is_empty(), "{} has no rows", train_path.display());
    let validation_path = data_dir.join(VALIDATION_FILE);
    let validation = if validation_path.is_file() {
        read_examples(&validation_path)?
    } else {
        Vec::new()
    };
    if !validation.is_empty() {
        return Ok(Splits {
            labels,
            train,
            validation,
            validation_from: VALIDATION_FILE.into(),
        });
    }
    anyhow::ensure!(
        train.len() >= 2,
        "{} has one row: nothing can be held out for validation",
        train_path.display()
    );
    tracing::warn!(
        "{} is missing or empty (an older `preprocess`, or too little data): holding out {:.0}% of {} for validation; re-run `preprocess` for a validation split grouped like the test split",
        validation_path.display(),
        100.0 * FALLBACK_VALIDATION_SHARE,
        TRAIN_FILE
    );
    let (train, validation) = hold_out(train, FALLBACK_VALIDATION_SHARE, seed ^ 0x7641);
    Ok(Splits {
        labels,
        train,
        validation,
        validation_from: format!(
            "{:.0}% of {TRAIN_FILE} (no validation rows in {VALIDATION_FILE})",
            100.0 * FALLBACK_VALIDATION_SHARE
        ),
    })
}

/// Micro-batches per sorting window: batches are cut from windows of this many batches'
/// worth of examples sorted by length, so padding stays small while order stays random.
const WINDOW_BATCHES: usize = 64;

/// A seeded, stratified sample of at most `n` examples (all of them when `n` is 0 or large
/// enough), in their original order.
pub fn stratified_sample(examples: Vec<Example>, n: usize, seed: u64) -> Vec<Example> {
    if n == 0 || n >= examples.len() {
        return examples;
    }
    let chosen = stratified_choice(&examples, n, seed);
    examples
        .into_iter()
        .zip(chosen)
        .filter_map(|(e, c)| c.then_some(e))
        .collect()
}

/// Splits a seeded, stratified `fraction` off `examples`: `(the rest, the fraction)`, both
/// in their original order.
pub fn hold_out(examples: Vec<Example>, fraction: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let n = ((examples.len() as f64 * fraction).round() as usize).clamp(1, examples.len());
    let chosen = stratified_choice(&examples, n, seed);
    let (mut rest, mut held) = (Vec::new(), Vec::new());
    for (e, c) in examples.into_iter().zip(chosen) {
        if c { &mut held } else { &mut rest }.push(e);
    }
    (rest, held)
}

/// Which `n` of `examples` a seeded, stratified draw picks.
fn stratified_choice(examples: &[Example], n: usize, seed: u64) -> Vec<bool> {
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
    chosen
}

/// The micro-batches (indices into the examples) of one epoch: shuffled by `(seed, epoch)`,
/// grouped by length within windows, batch order shuffled again.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(kernels::site_seed(seed, 1 + epoch as u64));
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
    fn hold_out_is_disjoint_stratified_and_seeded() {
        let all: Vec<Example> = (0..1000).map(|i| ex(usize::from(i % 10 < 3), i)).collect();
        let (rest, held) = hold_out(all.clone(), 0.1, 5);
        assert_eq!((rest.len(), held.len()), (900, 100));
        assert_eq!(held.iter().filter(|e| e.label == 1).count(), 30);
        assert!(held.iter().all(|h| !rest.contains(h)));
        assert_eq!(hold_out(all, 0.1, 5).1, held);
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
