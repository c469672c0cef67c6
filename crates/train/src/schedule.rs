//! Learning-rate schedule: linear warm-up, then linear decay to zero.

/// `transformers`' `get_linear_schedule_with_warmup`, indexed by the optimizer step being
/// taken (1-based) so the first step already learns instead of running at lr 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LinearSchedule {
    /// `warmup_ratio` of `total_steps` (rounded up) warm up.
    pub fn new(peak_lr: f64, warmup_ratio: f64, total_steps: u64) -> Self {
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as u64;
        Self {
            peak_lr,
            warmup_steps: warmup_steps.min(total_steps),
            total_steps,
        }
    }

    /// The learning rate of optimizer step `step` (1 = the first).
    pub fn lr(&self, step: u64) -> f64 {
        if step <= self.warmup_steps && self.warmup_steps > 0 {
            self.peak_lr * step as f64 / self.warmup_steps as f64
        } else {
            let left = self.total_steps.saturating_sub(step) + 1;
            let span = (self.total_steps - self.warmup_steps).max(1);
            self.peak_lr * (left as f64 / span as f64).min(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_peaks_and_decays_to_a_small_last_step() {
        let s = LinearSchedule::new(1e-3, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert!((s.lr(1) - 1e-4).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr(11) - 1e-3).abs() < 1e-12);
        assert!(s.lr(50) < s.lr(11) && s.lr(50) > s.lr(100));
        assert!((s.lr(100) - 1e-3 / 90.0).abs() < 1e-12);
        let flat = LinearSchedule::new(1e-3, 0.0, 4);
        assert!((flat.lr(1) - 1e-3).abs() < 1e-12);
    }
}
