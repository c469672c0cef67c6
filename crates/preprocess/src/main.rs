//! `preprocess` binary: see the library for what it does.

#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    service::init();
    let args = preprocess::Args::parse();
    let report = preprocess::run(&args)?;
    for s in &report.sources {
        let malformed: u64 = s.malformed.values().map(|p| p.count).sum();
        let unmapped: u64 = s.unmapped_labels.values().sum();
        println!(
            "{}: read {}, kept {} (malformed {malformed}, no text {}, no label {}, unmapped label {unmapped}, empty after cleaning {}, duplicates {}, conflicting duplicates {}), split: {}",
            s.name,
            s.rows_read,
            s.kept,
            s.missing_text.count,
            s.missing_label.count,
            s.empty_after_cleaning.count,
            s.duplicates_removed,
            s.conflicting_duplicates_removed,
            s.split
        );
    }
    println!(
        "train {} rows {:?}, validation {} rows {:?}, test {} rows {:?}, small_test {} rows; {} p50/p95/max: {:?}/{:?}/{:?}; {:.1}% longer than {}",
        report.train.rows,
        report.train.class_balance,
        report.validation.rows,
        report.validation.class_balance,
        report.test.rows,
        report.test.class_balance,
        report.small_test_rows,
        report.lengths.unit,
        report.lengths.percentiles.get("p50"),
        report.lengths.percentiles.get("p95"),
        report.lengths.percentiles.get("max"),
        100.0 * report.lengths.fraction_truncated,
        report.lengths.max_length
    );
    println!("wrote {}", args.output_dir.display());
    Ok(())
}
