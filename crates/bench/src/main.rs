//! `sentiment-bench`: inference and training speed of the classifier at DistilBERT-base size
//! (random weights; speed does not depend on their values), optionally beside PyTorch on the
//! same shapes, printed as one table with ratios.
//!
//! Every workload runs in a fresh child process, ours and PyTorch's alike, so each reports its
//! own peak RSS and none inherits another's heap.
//!
//! With `--python`, each row also runs a baseline on the same shape: PyTorch fp32 for our f32
//! rows and training; for the `-int8` rows (our int8 serving path, `PRECISION=int8`), ONNX
//! Runtime on a dynamically int8-quantised export and PyTorch with bf16 autocast, the
//! reduced-precision paths users would otherwise pick; for the `-bf16` rows (bf16 products
//! on AMX or AVX-512 BF16, `train --matmul-precision bf16`), PyTorch fp32 and PyTorch bf16 autocast.
//!
//! ```sh
//! cargo run --release -p bench                                  # ours only
//! cargo run --release -p bench -- --python venv/bin/python      # beside the baselines
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use classifier::models::distilbert::Config;
use classifier::models::{Mode, ModelConfig, SequenceClassifier};
use classifier::models::{Trainable, random_tensors};
use classifier::runtime::on_pool;
use classifier::{MatmulPrecision, Precision};
use kernels::gemm::{self, View, ViewMut};
use serde::{Deserialize, Serialize};
use train::optim::{AdamW, AdamWConfig};

/// Benchmark inference and training of DistilBERT-base (and RoBERTa-base) on the CPU.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Timed iterations per workload; the median is reported.
    #[arg(long, env = "BENCH_ITERS", default_value_t = 10)]
    iters: usize,
    /// Untimed iterations before timing, for every engine alike. On shared VMs the first
    /// half dozen batch-1 passes after loading ran up to 1.7x slower than later ones.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 10)]
    warmup: usize,
    /// CPU threads (default: all available cores); PyTorch gets the same number.
    #[arg(long, env = "NUM_THREADS")]
    threads: Option<usize>,
    /// A Python with torch and transformers (and onnxruntime, onnx, onnxscript for the ONNX
    /// Runtime baseline): also run the baselines in crates/bench/python on the same shapes,
    /// back to back.
    #[arg(long, env = "BENCH_PYTHON")]
    python: Option<PathBuf>,
    /// Which baselines to run with --python (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "torch-fp32,torch-bf16,ort-int8"
    )]
    baselines: Vec<Baseline>,
    /// Where the ONNX export for the ONNX Runtime baseline is kept (made on first use).
    #[arg(long, value_name = "DIR")]
    onnx_dir: Option<PathBuf>,
    /// Run only these workloads (comma-separated names from the table).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the table (markdown) to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Instead of benchmarking, write a model folder of DistilBERT-base size with random
    /// weights here (for load-testing the api: scripts/load-test.sh), then exit.
    #[arg(long, value_name = "DIR")]
    write_model: Option<PathBuf>,
    /// The vocab.txt (one WordPiece token per line) for --write-model, e.g. any BERT-uncased
    /// checkpoint's; realistic tokenization needs a real vocabulary.
    #[arg(long, value_name = "FILE", requires = "write_model")]
    vocab: Option<PathBuf>,
    /// Internal: run one workload in this process and print its result.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

/// What a row compares ours with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
enum Baseline {
    /// PyTorch eager fp32 (transformers' DistilBertForSequenceClassification).
    TorchFp32,
    /// PyTorch with bf16 autocast (AMX tiles or AVX-512 BF16 where the CPU has them).
    TorchBf16,
    /// ONNX Runtime on the dynamically int8-quantised ONNX export.
    OrtInt8,
}

impl Baseline {
    fn label(self) -> &'static str {
        match self {
            Baseline::TorchFp32 => "PyTorch fp32",
            Baseline::TorchBf16 => "PyTorch bf16",
            Baseline::OrtInt8 => "ONNX Runtime int8",
        }
    }
}

const FP32: &[Baseline] = &[Baseline::TorchFp32];
const TORCH: &[Baseline] = &[Baseline::TorchFp32, Baseline::TorchBf16];
const REDUCED: &[Baseline] = &[Baseline::OrtInt8, Baseline::TorchBf16];

/// The base-size architecture a row runs, with random weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Arch {
    /// distilbert-base-uncased: 6 layers.
    DistilBert,
    /// roberta-base: 12 layers, a 50k vocabulary, positions after the padding index.
    Roberta,
    /// deberta-v3-base: 12 layers, a 128k vocabulary, disentangled relative attention.
    DebertaV3,
}

impl Arch {
    /// `BENCH_ARCH` of the PyTorch script (unset for DistilBERT).
    fn torch_name(self) -> Option<&'static str> {
        match self {
            Arch::DistilBert => None,
            Arch::Roberta => Some("roberta"),
            Arch::DebertaV3 => Some("deberta-v3"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Infer,
    Train,
    Gemm,
}

#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    arch: Arch,
    kind: Kind,
    batch: usize,
    seq: usize,
    /// Our precision (inference).
    precision: Precision,
    /// How our f32 products run (`--matmul-precision` of train).
    matmul: MatmulPrecision,
    /// What `--python` compares this row with.
    baselines: &'static [Baseline],
}

const fn infer(name: &'static str, batch: usize, seq: usize, precision: Precision) -> Workload {
    Workload {
        name,
        arch: Arch::DistilBert,
        kind: Kind::Infer,
        batch,
        seq,
        precision,
        matmul: MatmulPrecision::F32,
        baselines: match precision {
            Precision::F32 => FP32,
            Precision::Int8 => REDUCED,
        },
    }
}

const fn train(name: &'static str, matmul: MatmulPrecision) -> Workload {
    Workload {
        name,
        arch: Arch::DistilBert,
        kind: Kind::Train,
        batch: 8,
        seq: 128,
        precision: Precision::F32,
        matmul,
        baselines: match matmul {
            MatmulPrecision::F32 => FP32,
            MatmulPrecision::Bf16 => TORCH,
        },
    }
}

const fn gemm(name: &'static str, matmul: MatmulPrecision) -> Workload {
    Workload {
        name,
        arch: Arch::DistilBert,
        kind: Kind::Gemm,
        batch: 1,
        seq: 2048,
        precision: Precision::F32,
        matmul,
        baselines: match matmul {
            MatmulPrecision::F32 => FP32,
            MatmulPrecision::Bf16 => TORCH,
        },
    }
}

const fn on(arch: Arch, w: Workload) -> Workload {
    Workload { arch, ..w }
}

const WORKLOADS: [Workload; 13] = [
    infer("infer-b1-s32", 1, 32, Precision::F32),
    infer("infer-b1-s128", 1, 128, Precision::F32),
    infer("infer-b32-s128", 32, 128, Precision::F32),
    infer("infer-b1-s32-int8", 1, 32, Precision::Int8),
    infer("infer-b1-s128-int8", 1, 128, Precision::Int8),
    infer("infer-b32-s128-int8", 32, 128, Precision::Int8),
    train("train-b8-s128", MatmulPrecision::F32),
    train("train-b8-s128-bf16", MatmulPrecision::Bf16),
    gemm("gemm-2048", MatmulPrecision::F32),
    gemm("gemm-2048-bf16", MatmulPrecision::Bf16),
    on(
        Arch::Roberta,
        infer("roberta-infer-b8-s128", 8, 128, Precision::F32),
    ),
    on(
        Arch::DebertaV3,
        infer("deberta-v3-infer-b8-s128", 8, 128, Precision::F32),
    ),
    on(
        Arch::DebertaV3,
        train("deberta-v3-train-b8-s128", MatmulPrecision::F32),
    ),
];

/// One workload's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Measured {
    /// Median milliseconds per iteration.
    median_ms: f64,
    /// Sequences (inference), examples (training) or GFLOP (GEMM) per second.
    throughput: f64,
    peak_rss_mb: Option<f64>,
    /// Median milliseconds of each phase of a training step.
    #[serde(default)]
    phases_ms: Vec<(String, f64)>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn inputs(batch: usize, seq: usize, vocab: usize, seed: u64) -> Result<(Tensor, Tensor)> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu)?;
    let mask = Tensor::ones((batch, seq), DType::U32, &Device::Cpu)?;
    Ok((ids, mask))
}

fn base_model(arch: Arch) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
    let cfg = match arch {
        Arch::DistilBert => ModelConfig::default(),
        // roberta-base's config.json, the keys that differ from RobertaConfig's defaults.
        Arch::Roberta => ModelConfig::Roberta(serde_json::from_value(serde_json::json!({
            "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
        }))?),
        // deberta-v3-base's config.json, the keys that differ from DebertaV2Config's defaults.
        Arch::DebertaV3 => ModelConfig::DebertaV2(serde_json::from_value(serde_json::json!({
            "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "relative_attention": true, "position_buckets": 256,
            "norm_rel_ebd": "layer_norm", "share_att_key": true, "pos_att_type": "p2c|c2p",
            "position_biased_input": false, "pooler_hidden_size": 768,
        }))?),
    };
    let tensors = random_tensors(&cfg, 0)?.into_iter().collect();
    Ok((cfg, tensors))
}

/// Writes a DistilBERT-base-size classifier (random weights) with the given vocabulary.
fn write_base_model(dir: &Path, vocab: Option<&Path>) -> Result<()> {
    let vocab = vocab.context("--write-model needs --vocab FILE (a BERT-uncased vocab.txt)")?;
    let text = std::fs::read_to_string(vocab)
        .with_context(|| format!("cannot read the vocabulary {}", vocab.display()))?;
    let tokens: Vec<String> = text.lines().map(str::to_string).collect();
    let base = Config::default();
    let size = classifier::testing::TinySize {
        dim: base.dim,
        layers: base.n_layers,
        heads: base.n_heads,
        hidden: base.hidden_dim,
        max_positions: base.max_position_embeddings,
    };
    classifier::testing::write_tiny_model(dir, &tokens, size, 0)
        .with_context(|| format!("cannot write the model to {}", dir.display()))?;
    println!(
        "wrote a {}-layer, {}-dim model with {} tokens to {}",
        size.layers,
        size.dim,
        tokens.len(),
        dir.display()
    );
    Ok(())
}

fn run_worker(w: Workload, warmup: usize, iters: usize) -> Result<Measured> {
    if classifier::set_matmul_precision(w.matmul) != w.matmul {
        let why = kernels::gemm::bf16_fallback_reason().unwrap_or_default();
        bail!("{}: {} products run in f32 here: {why}", w.name, w.matmul);
    }
    let (times, phases) = match w.kind {
        Kind::Gemm => return time_gemm(w.seq, warmup, iters),
        Kind::Infer => (time_inference(&w, warmup, iters)?, Vec::new()),
        Kind::Train => time_training(&w, warmup, iters)?,
    };
    let m = median(times);
    Ok(Measured {
        median_ms: m * 1e3,
        throughput: w.batch as f64 / m,
        peak_rss_mb: None,
        phases_ms: phases
            .into_iter()
            .map(|(n, t)| (n.to_string(), median(t) * 1e3))
            .collect(),
    })
}

/// An `n x n x n` product through [`gemm::matmul`], in GFLOP/s.
fn time_gemm(n: usize, warmup: usize, iters: usize) -> Result<Measured> {
    let a = Tensor::randn(0f32, 1.0, n * n, &Device::Cpu)?.to_vec1::<f32>()?;
    let b = Tensor::randn(0f32, 1.0, n * n, &Device::Cpu)?.to_vec1::<f32>()?;
    // The pool `runtime::init` sized from --threads.
    let threads = candle_core::utils::get_num_threads();
    let mut times = Vec::new();
    for i in 0..warmup + iters {
        let t = Instant::now();
        let mut c = vec![0f32; n * n];
        let (av, bv) = (View::rows(&a, n, n), View::rows(&b, n, n));
        gemm::matmul(ViewMut::rows(&mut c, n, n), av, bv, false, 1.0, threads);
        drop(c);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let m = median(times);
    Ok(Measured {
        median_ms: m * 1e3,
        throughput: 2.0 * (n as f64).powi(3) / m / 1e9,
        ..Default::default()
    })
}

/// Seconds per forward pass of the base-size classifier.
fn time_inference(w: &Workload, warmup: usize, iters: usize) -> Result<Vec<f64>> {
    let (cfg, tensors) = base_model(w.arch)?;
    let vb = constant_builder(tensors);
    let model = SequenceClassifier::load(vb, &cfg)?.with_precision(w.precision)?;
    let (ids, mask) = inputs(w.batch, w.seq, cfg.vocab_size(), 1)?;
    let mut times = Vec::new();
    for i in 0..warmup + iters {
        let t = Instant::now();
        let logits = model.forward(&ids, &mask, Mode::Eval)?;
        logits.to_vec2::<f32>()?;
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// Seconds per training step, and per phase of it.
type StepTimes = (Vec<f64>, Vec<(&'static str, Vec<f64>)>);

/// Seconds per training step of the base-size classifier, and per phase (forward, backward,
/// optimizer).
fn time_training(w: &Workload, warmup: usize, iters: usize) -> Result<StepTimes> {
    let (cfg, tensors) = base_model(w.arch)?;
    let trainable = Trainable::new(&cfg, &tensors)?;
    drop(tensors);
    let mut opt = AdamW::new(trainable.params.clone(), AdamWConfig::default());
    let (ids, mask) = inputs(w.batch, w.seq, cfg.vocab_size(), 2)?;
    let labels = Tensor::from_vec(
        (0..w.batch as u32).map(|i| i % 2).collect::<Vec<_>>(),
        w.batch,
        &Device::Cpu,
    )?;
    let mut phases = vec![
        ("forward", vec![]),
        ("backward", vec![]),
        ("optimizer", vec![]),
    ];
    let mut times = Vec::new();
    for i in 0..warmup + iters {
        // As the trainer does: each phase starts on the pool (`runtime::on_pool`).
        let t0 = Instant::now();
        let loss = on_pool(|| {
            let mode = Mode::Train { seed: i as u64 };
            let logits = trainable.model.forward(&ids, &mask, mode)?;
            let loss = kernels::cross_entropy(&logits, &labels)?;
            loss.to_scalar::<f32>()?;
            anyhow::Ok(loss)
        })?;
        let t1 = Instant::now();
        let grads = on_pool(|| loss.backward())?;
        let t2 = Instant::now();
        on_pool(|| {
            opt.accumulate(&grads, w.batch as f64)?;
            drop(grads);
            opt.step(5e-5)
        })?;
        let t3 = Instant::now();
        if i >= warmup {
            times.push((t3 - t0).as_secs_f64());
            phases[0].1.push((t1 - t0).as_secs_f64());
            phases[1].1.push((t2 - t1).as_secs_f64());
            phases[2].1.push((t3 - t2).as_secs_f64());
        }
    }
    Ok((times, phases))
}

/// A builder over plain tensors (no gradients): what inference uses.
fn constant_builder(tensors: HashMap<String, Tensor>) -> candle_nn::VarBuilder<'static> {
    candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
}

/// Runs `cmd`, returning its stdout and its peak RSS in MB (from wait4's rusage).
fn run_measured(cmd: &mut Command) -> Result<(String, Option<f64>)> {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as libc_pid;
    let mut stdout = child.stdout.context("no stdout")?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out)?;
    let (status, rss) = wait_rusage(pid)?;
    if status != 0 {
        bail!("{cmd:?} failed with status {status}");
    }
    Ok((out, rss))
}

#[allow(non_camel_case_types)]
type libc_pid = i32;

#[cfg(unix)]
fn wait_rusage(pid: libc_pid) -> Result<(i32, Option<f64>)> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `pid` is our own child, not yet reaped; the out-pointers are valid for writes.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    // SAFETY: wait4 succeeded, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // ru_maxrss is in KiB on Linux.
    Ok((code, Some(usage.ru_maxrss as f64 / 1024.0)))
}

#[cfg(not(unix))]
fn wait_rusage(_pid: libc_pid) -> Result<(i32, Option<f64>)> {
    bail!("child measurement needs a Unix system")
}

fn ours(args: &Args, w: Workload) -> Result<Measured> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["--worker", w.name])
        .args(["--iters", &args.iters.to_string()])
        .args(["--warmup", &args.warmup.to_string()]);
    if let Some(t) = args.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let (out, rss) = run_measured(&mut cmd)?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("worker printed no RESULT line")?;
    let mut m: Measured = serde_json::from_str(line)?;
    m.peak_rss_mb = rss;
    Ok(m)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// A baseline's Python process, on our thread count.
fn python_command(args: &Args, python: &Path, script_name: &str) -> Command {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut cmd = Command::new(python);
    cmd.arg(script(script_name))
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("BENCH_THREADS", threads.to_string());
    cmd
}

fn baseline(args: &Args, python: &Path, w: Workload, b: Baseline) -> Result<Measured> {
    let shape = [w.batch, w.seq].map(|n| n.to_string());
    let timing = [args.warmup, args.iters].map(|n| n.to_string());
    let mut cmd = match b {
        Baseline::TorchFp32 | Baseline::TorchBf16 => {
            let mode = match w.kind {
                Kind::Infer => "infer",
                Kind::Train => "train",
                Kind::Gemm => "gemm",
            };
            let precision = if b == Baseline::TorchBf16 {
                "bf16"
            } else {
                "fp32"
            };
            let mut cmd = python_command(args, python, "torch_bench.py");
            cmd.args([mode, precision]);
            if let Some(arch) = w.arch.torch_name() {
                cmd.env("BENCH_ARCH", arch);
            }
            cmd
        }
        Baseline::OrtInt8 => {
            let model = onnx_int8_model(args, python)?;
            let mut cmd = python_command(args, python, "ort_bench.py");
            cmd.arg(model);
            cmd
        }
    };
    cmd.args(shape).args(timing);
    let (out, rss) = run_measured(&mut cmd).with_context(|| format!("{} baseline", b.label()))?;
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .with_context(|| format!("the {} baseline printed no RESULT line", b.label()))?;
    let field = |key: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key} in `{line}`"))?
            .parse()
            .with_context(|| format!("bad {key} in `{line}`"))
    };
    let (median_ms, throughput) = match w.kind {
        Kind::Infer => (field("median_ms")?, field("seq_per_s")?),
        Kind::Train => (field("median_step_ms")?, field("ex_per_s")?),
        Kind::Gemm => (field("median_ms")?, field("GFLOP/s")?),
    };
    Ok(Measured {
        median_ms,
        throughput,
        peak_rss_mb: rss,
        phases_ms: vec![],
    })
}

/// The int8 ONNX export ONNX Runtime runs, made once (outside any timing) and kept.
fn onnx_int8_model(args: &Args, python: &Path) -> Result<PathBuf> {
    let dir = args
        .onnx_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("sentiment-bench-onnx"));
    let model = dir.join("distilbert_int8.onnx");
    if !model.is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "exporting DistilBERT to ONNX (once) into {} ...",
            dir.display()
        );
        let mut cmd = python_command(args, python, "onnx_export.py");
        cmd.arg(&dir);
        run_measured(&mut cmd).context(
            "the ONNX export failed: the Python needs torch, transformers, onnx, onnxscript \
             and onnxruntime (or leave ort-int8 out of --baselines)",
        )?;
    }
    Ok(model)
}

fn unit(kind: Kind) -> &'static str {
    match kind {
        Kind::Infer => "seq/s",
        Kind::Train => "ex/s",
        Kind::Gemm => "GFLOP/s",
    }
}

/// The workloads `--only` names (all when it names none), in table order.
fn selected_workloads(only: &[String]) -> Result<Vec<Workload>> {
    for name in only {
        if !WORKLOADS.iter().any(|w| w.name == name) {
            let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
            bail!(
                "unknown workload `{name}`; choose from {}",
                names.join(", ")
            );
        }
    }
    Ok(WORKLOADS
        .iter()
        .copied()
        .filter(|w| only.is_empty() || only.iter().any(|o| o == w.name))
        .collect())
}

/// The settings line and the table's header, with baseline columns when `--python` is set.
fn table_header(threads: usize, args: &Args) -> String {
    let mut table = format!(
        "threads={threads} iters={} warmup={} (medians)\n\n",
        args.iters, args.warmup
    );
    table.push_str("| workload | ours ms | ours | ours peak RSS |");
    if args.python.is_some() {
        table.push_str(
            " baseline | baseline ms | baseline | baseline peak RSS | speed ours/baseline |\n",
        );
        table.push_str("|---|---|---|---|---|---|---|---|---|\n");
    } else {
        table.push_str("\n|---|---|---|---|\n");
    }
    table
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.write_model {
        return write_base_model(dir, args.vocab.as_deref());
    }
    let threads = classifier::runtime::init(args.threads)?;
    if let Some(name) = &args.worker {
        let w = WORKLOADS
            .iter()
            .find(|w| w.name == name)
            .with_context(|| format!("unknown workload {name}"))?;
        let m = run_worker(*w, args.warmup, args.iters)?;
        println!("RESULT {}", serde_json::to_string(&m)?);
        return Ok(());
    }
    let mut table = table_header(threads, &args);
    // A baseline on one shape is measured once, whichever of our rows it stands beside.
    let mut baseline_runs = HashMap::new();
    for w in selected_workloads(&args.only)? {
        if let (MatmulPrecision::Bf16, Some(why)) = (w.matmul, gemm::bf16_fallback_reason()) {
            eprintln!("skipping {}: bf16 products run in f32 here: {why}", w.name);
            continue;
        }
        table.push_str(&table_rows(&args, w, &mut baseline_runs)?);
    }
    println!("{table}");
    if let Some(path) = &args.output {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Baselines measured so far, by baseline, architecture and shape.
type BaselineRuns = HashMap<(Baseline, Arch, &'static str, usize, usize), Measured>;

fn rss(m: &Measured) -> String {
    m.peak_rss_mb.map_or("-".into(), |r| format!("{r:.0} MB"))
}

/// Runs workload `w` (ours, then each chosen baseline not yet measured) and returns its
/// table rows: ours beside each baseline.
fn table_rows(args: &Args, w: Workload, baseline_runs: &mut BaselineRuns) -> Result<String> {
    eprintln!("running {} ...", w.name);
    let o = ours(args, w)?;
    if !o.phases_ms.is_empty() {
        let parts: Vec<String> = o
            .phases_ms
            .iter()
            .map(|(n, ms)| format!("{n} {ms:.0} ms"))
            .collect();
        eprintln!("  {}: {}", w.name, parts.join(", "));
    }
    let ours_cells = format!(
        "| {} | {:.1} | {:.2} {} | {} |",
        w.name,
        o.median_ms,
        o.throughput,
        unit(w.kind),
        rss(&o)
    );
    let Some(py) = &args.python else {
        return Ok(format!("{ours_cells}\n"));
    };
    let chosen: Vec<Baseline> = w
        .baselines
        .iter()
        .copied()
        .filter(|b| args.baselines.contains(b))
        .collect();
    if chosen.is_empty() {
        return Ok(format!("{ours_cells} - | - | - | - | - |\n"));
    }
    let mut rows = String::new();
    for b in chosen {
        let key = (b, w.arch, unit(w.kind), w.batch, w.seq);
        let t = match baseline_runs.get(&key) {
            Some(t) => t.clone(),
            None => baseline(args, py, w, b)?,
        };
        baseline_runs.insert(key, t.clone());
        rows.push_str(&format!(
            "{ours_cells} {} | {:.1} | {:.2} {} | {} | {:.2}x |\n",
            b.label(),
            t.median_ms,
            t.throughput,
            unit(w.kind),
            rss(&t),
            o.throughput / t.throughput
        ));
    }
    Ok(rows)
}
