//! CPU thread count for everything that runs in parallel: candle's matmuls, our kernels,
//! tokenization. All of them use rayon's global pool; candle sizes its GEMM work by
//! `RAYON_NUM_THREADS`, so both are set together, once, at start-up.

use crate::error::{Error, Result};

/// Sets up `requested` threads (all available cores when `None` or 0) and returns the count.
/// Call once, early in `main`, before any other thread starts.
pub fn init_threads(requested: Option<usize>) -> Result<usize> {
    let n = match requested {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // SAFETY: called at start-up before other threads exist (documented contract), so no
    // concurrent getenv can race this setenv.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        Ok(()) => Ok(n),
        // Already built (tests, or a second call): report the pool that exists.
        Err(_) if rayon::current_num_threads() == n => Ok(n),
        Err(e) => Err(Error::Input(format!(
            "cannot start {n} threads (a pool of {} exists): {e}",
            rayon::current_num_threads()
        ))),
    }
}
