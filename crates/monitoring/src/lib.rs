//! Drift monitoring, with no model, database or HTTP in it: what a model's predictions looked
//! like on its own validation data ([`Reference`], written by `train` beside the model), what
//! they look like on served traffic ([`Profile`] of a [`Window`] or of logged rows), and how
//! far apart the two are ([`psi`], the population stability index, per feature).
//!
//! The features are the ones that need no true label: the predicted label's share, the
//! confidence (the top probability) and the text's length in word pieces. A model meeting
//! text unlike its training data shows it in all three before anyone has labelled anything.

mod histogram;
mod profile;
mod psi;
mod reference;
mod window;

pub use histogram::{Histogram, confidence_edges, length_edges};
pub use profile::{Drift, Observation, Profile};
pub use psi::{PSI_ALERT, PSI_WARN, psi};
pub use reference::{REFERENCE_FILE, Reference, ReferenceError};
pub use window::{Window, WindowSummary};
