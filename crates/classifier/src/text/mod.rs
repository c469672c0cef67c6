//! From raw text to token ids, identically at training and serving time: [`cleaning`] (the
//! normalisation preprocess applies and the model folder records), [`tokenizer`] (WordPiece
//! from tokenizer.json or vocab.txt, truncation and windows), [`sentencepiece`] (a
//! SentencePiece model file into the same pipeline) and [`pipeline`] (the settings
//! saved beside the weights that tie the two together).

pub mod cleaning;
pub mod pipeline;
pub mod sentencepiece;
pub mod tokenizer;
