//! `train` binary: see the library for what it does.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    service::init();
    if std::env::args().nth(1).as_deref() == Some("models") {
        let args = train::registry::ModelsArgs::parse_from(std::env::args().skip(1));
        print!("{}", args.run()?);
        return Ok(());
    }
    let args = train::Args::parse();
    let threads = classifier::runtime::init(args.threads)?;
    tracing::info!(threads, "CPU threads");

    // First Ctrl-C / SIGTERM: checkpoint and stop cleanly. Second: stop at once.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("interrupt: saving a checkpoint after this micro-batch (again to quit now)");
    })?;

    match train::run(&args, &stop)? {
        train::Outcome::Completed(summary) => {
            let best = summary
                .best_epoch
                .map_or_else(|| "none".to_string(), |e| e.to_string());
            let promoted = match summary.outputs.promoted {
                Some(true) => "promoted",
                _ => "not promoted",
            };
            println!(
                "done in {:.0}s ({:.1} training examples/s); best epoch {best}; model in {} ({promoted}: {}), metrics in {}",
                summary.wall_time_s,
                summary.train_examples_per_s,
                summary.outputs.model_dir.display(),
                summary.outputs.promotion.as_deref().unwrap_or_default(),
                summary.outputs.metrics.display()
            );
            Ok(())
        }
        train::Outcome::Interrupted { checkpoint } => {
            eprintln!(
                "stopped; resume with `train --resume` (checkpoint in {})",
                checkpoint.display()
            );
            std::process::exit(130)
        }
    }
}
