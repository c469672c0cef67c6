//! GFLOP/s of each f32 product a DistilBERT-base training step runs (batch 8 x 128 tokens),
//! best of 15, on the kernel this CPU uses (`SENTIMENT_F32_KERNEL` picks another): which
//! shapes fall short of the 2048-cube product the bench reports.
//!
//! `cargo run --release -p kernels --example gemm_shapes [bf16]`: `bf16` times bf16 products.
use kernels::gemm::{View, ViewMut, matmul};
use std::time::Instant;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("bf16") {
        let now = kernels::gemm::set_matmul_precision(kernels::gemm::MatmulPrecision::Bf16);
        println!("products in {}", now.as_str());
    }
    let threads = rayon::current_num_threads();
    let t = 1024;
    // (name, m, k, n, a transposed, b transposed)
    let shapes = [
        ("fwd qkv  x@Wt", t, 768, 2304, false, true),
        ("fwd out  x@Wt", t, 768, 768, false, true),
        ("fwd ffn1 x@Wt", t, 768, 3072, false, true),
        ("fwd ffn2 x@Wt", t, 3072, 768, false, true),
        ("bwd dx qkv g@W", t, 2304, 768, false, false),
        ("bwd dx ffn1 g@W", t, 3072, 768, false, false),
        ("bwd dx ffn2 g@W", t, 768, 3072, false, false),
        ("bwd dw qkv gT@x", 2304, t, 768, true, false),
        ("bwd dw ffn1 gT@x", 3072, t, 768, true, false),
        ("bwd dw ffn2 gT@x", 768, t, 3072, true, false),
        ("square 2048", 2048, 2048, 2048, false, false),
    ];
    for (name, m, k, n, at, bt) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32) * 0.01).collect();
        let mut c = vec![0f32; m * n];
        let av = if at {
            View::rows(&a, k, m).t()
        } else {
            View::rows(&a, m, k)
        };
        let bv = if bt {
            View::rows(&b, n, k).t()
        } else {
            View::rows(&b, k, n)
        };
        let mut best = f64::MAX;
        for _ in 0..15 {
            let t0 = Instant::now();
            matmul(ViewMut::rows(&mut c, m, n), av, bv, false, 1.0, threads);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        let gf = 2.0 * (m * n * k) as f64 / best / 1e9;
        println!(
            "{name:20} {m:5}x{k:5}x{n:5}  {:7.2} ms  {gf:6.1} GFLOP/s",
            best * 1e3
        );
    }
}
