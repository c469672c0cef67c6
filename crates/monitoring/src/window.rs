//! The last predictions one server made, for live gauges that need no database.

use std::collections::VecDeque;

use crate::profile::{Observation, Profile};

/// A sliding window over the most recent `capacity` predictions.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    recent: VecDeque<Observation>,
}

/// The window's figures, as /metrics shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    pub profile: Profile,
    /// Length in word pieces at the 50th, 90th and 99th percentiles.
    pub length_quantiles: [(f64, u32); 3],
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            recent: VecDeque::with_capacity(capacity.max(1)),
        }
    }

    pub fn push(&mut self, o: Observation) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(o);
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Forgets everything (a new model: its predictions are another population).
    pub fn clear(&mut self) {
        self.recent.clear();
    }

    /// The window's profile for a model with `labels` labels, and its length percentiles.
    pub fn summary(&self, labels: usize) -> WindowSummary {
        let profile = Profile::of(labels, &self.recent);
        let mut lengths: Vec<u32> = self.recent.iter().map(|o| o.tokens).collect();
        lengths.sort_unstable();
        let at = |q: f64| {
            let i = ((lengths.len() as f64 - 1.0) * q).round() as usize;
            (q, lengths.get(i).copied().unwrap_or(0))
        };
        WindowSummary {
            profile,
            length_quantiles: [at(0.5), at(0.9), at(0.99)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(tokens: u32) -> Observation {
        Observation {
            label: 0,
            confidence: 0.9,
            tokens,
            unknown: 0,
            over_max_length: false,
        }
    }

    #[test]
    fn the_window_keeps_only_the_latest() {
        let mut w = Window::new(3);
        for t in 1..=5 {
            w.push(obs(t));
        }
        assert_eq!(w.len(), 3);
        let s = w.summary(2);
        assert_eq!(s.profile.predictions, 3);
        assert_eq!(s.length_quantiles, [(0.5, 4), (0.9, 5), (0.99, 5)]);
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.summary(2).length_quantiles[0], (0.5, 0));
    }
}
