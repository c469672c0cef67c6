//! An exponential moving average of the weights (Polyak averaging), which evaluation and the
//! saved model use instead of the raw weights.
//!
//! Averaging the last few hundred optimizer steps smooths out the noise of small-batch
//! fine-tuning, and costs one more copy of the weights and one pass over them per step.
//! The average warms up as in TensorFlow's `ExponentialMovingAverage(num_updates=...)`:
//! update `n` uses `min(decay, (1 + n) / (10 + n))`, so early steps do not drag in the base
//! model for long.

use candle_core::{Result, Var};
use kernels::cpu::{update_f32, with_f32};
use rayon::prelude::*;

use crate::optim::CHUNK;

pub struct Ema {
    decay: f64,
    /// One average per parameter, in the order of the parameters given to [`Ema::new`].
    shadow: Vec<Vec<f32>>,
    /// Updates applied so far (equal to the optimizer steps).
    updates: u64,
}

impl Ema {
    /// An average that starts at the current weights.
    pub fn new(params: &[(String, Var)], decay: f64) -> Result<Self> {
        let shadow = params
            .iter()
            .map(|(_, v)| with_f32(v.as_tensor(), <[f32]>::to_vec))
            .collect::<Result<_>>()?;
        Ok(Self {
            decay,
            shadow,
            updates: 0,
        })
    }

    /// Folds the current weights into the average (after an optimizer step).
    pub fn update(&mut self, params: &[(String, Var)]) -> Result<()> {
        self.updates += 1;
        let n = self.updates as f64;
        let d = self.decay.min((1.0 + n) / (10.0 + n)) as f32;
        for ((_, var), avg) in params.iter().zip(&mut self.shadow) {
            with_f32(var.as_tensor(), |w| {
                avg.par_chunks_mut(CHUNK)
                    .zip(w.par_chunks(CHUNK))
                    .for_each(|(a, w)| {
                        for (a, w) in a.iter_mut().zip(w) {
                            *a = d * *a + (1.0 - d) * w;
                        }
                    })
            })?;
        }
        Ok(())
    }

    /// Exchanges the weights and the average in place: call once to put the average into
    /// the model, and again to put the training weights back.
    pub fn swap(&mut self, params: &[(String, Var)]) -> Result<()> {
        for ((_, var), avg) in params.iter().zip(&mut self.shadow) {
            update_f32(var.as_tensor(), |w| w.swap_with_slice(avg))?;
        }
        Ok(())
    }

    /// The averages, for a checkpoint.
    pub fn shadow(&self) -> &[Vec<f32>] {
        &self.shadow
    }

    /// Restores checkpointed averages taken after `updates` optimizer steps.
    pub fn load(&mut self, shadow: Vec<Vec<f32>>, updates: u64) -> std::result::Result<(), String> {
        if shadow.len() != self.shadow.len()
            || shadow
                .iter()
                .zip(&self.shadow)
                .any(|(a, b)| a.len() != b.len())
        {
            return Err("the checkpoint's weight averages do not fit the model".into());
        }
        self.shadow = shadow;
        self.updates = updates;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
    }

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor().to_vec1().unwrap()
    }

    #[test]
    fn averages_with_a_warming_decay_and_swaps_both_ways() {
        let w = var(&[0.0, 10.0]);
        let params = vec![("w".to_string(), w.clone())];
        let mut ema = Ema::new(&params, 0.5).unwrap();
        w.set(&Tensor::new(&[4.0f32, 2.0], &Device::Cpu).unwrap())
            .unwrap();
        // Update 1 uses min(0.5, 2/11) = 2/11 of the old average.
        ema.update(&params).unwrap();
        let d = 2.0 / 11.0;
        let expect = [4.0 * (1.0 - d), d * 10.0 + 2.0 * (1.0 - d)];
        for (a, e) in ema.shadow()[0].iter().zip(expect) {
            assert!((a - e).abs() < 1e-6, "{a} vs {e}");
        }
        // Much later the decay is the configured one.
        ema.updates = 100;
        let before = ema.shadow()[0].clone();
        ema.update(&params).unwrap();
        assert!((ema.shadow()[0][0] - (0.5 * before[0] + 0.5 * 4.0)).abs() < 1e-6);

        let avg = ema.shadow()[0].clone();
        ema.swap(&params).unwrap();
        assert_eq!(values(&w), avg);
        assert_eq!(ema.shadow()[0], [4.0, 2.0]);
        ema.swap(&params).unwrap();
        assert_eq!(values(&w), [4.0, 2.0]);
        assert_eq!(ema.shadow()[0], avg);
    }

    #[test]
    fn refuses_averages_of_another_shape() {
        let params = vec![("w".to_string(), var(&[1.0, 2.0]))];
        let mut ema = Ema::new(&params, 0.9).unwrap();
        assert!(ema.load(vec![vec![0.0; 3]], 5).is_err());
        assert!(ema.load(vec![vec![0.0; 2]], 5).is_ok());
        assert_eq!(ema.updates, 5);
    }
}
