//! `batch_predict` binary: see `api::batch`.

#![forbid(unsafe_code)]

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

fn main() -> anyhow::Result<()> {
    service::init();
    if std::env::args().nth(1).as_deref() == Some("merge") {
        let args = api::batch::MergeArgs::parse_from(std::env::args().skip(1));
        let rows = api::batch::shard::merge(&args.parts, &args.output)?;
        println!("{rows} rows merged into {}", args.output.display());
        return Ok(());
    }
    let args = api::batch::BatchArgs::parse();
    classifier::runtime::init(args.threads)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {percent}% {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let summary = api::batch::run(&args, &mut |bytes, total, rows| {
        bar.set_length(total.max(bytes));
        bar.set_position(bytes);
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
    })?;
    bar.finish_and_clear();
    println!(
        "{} rows in {:.1}s ({:.0} rows/s): {} predicted {:?}, {} without text; wrote {}",
        summary.rows,
        summary.seconds,
        summary.rows_per_s,
        summary.predicted,
        summary.per_label,
        summary.empty,
        args.output.display()
    );
    Ok(())
}
