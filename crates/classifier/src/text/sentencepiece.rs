//! A SentencePiece Unigram model file (`spm.model`, as DeBERTa-v3 repositories ship their
//! tokenizer, without a tokenizer.json) read into the `tokenizers` pipeline transformers
//! builds from it (`DebertaV2Tokenizer`): the pieces and their scores, the unknown piece, and
//! the file's own normalisation table (`precompiled_charsmap`, NFKC with SentencePiece's
//! rules), then a `▁` before every word.
//!
//! The file is a protobuf `ModelProto`; only the fields read here are declared (prost skips
//! the rest), with their numbers from SentencePiece's `sentencepiece_model.proto`.

use std::path::Path;

use prost::Message;
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{
    Lowercase, NFC, NormalizerWrapper, Precompiled, Replace, Sequence as Normalizers, Strip,
};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::punctuation::Punctuation;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<Piece>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    normalizer_spec: Option<NormalizerSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct Piece {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
}

#[derive(Clone, PartialEq, Message)]
struct TrainerSpec {
    /// 1 = Unigram, 2 = BPE, 3 = word, 4 = char.
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
    #[prost(bool, optional, tag = "35")]
    byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40")]
    unk_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct NormalizerSpec {
    #[prost(bytes = "vec", optional, tag = "2")]
    precompiled_charsmap: Option<Vec<u8>>,
}

const UNIGRAM: i32 = 1;

/// How `tokenizer_config.json` asks the text to be split.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpmOptions {
    pub do_lower_case: bool,
    /// DeBERTa's `split_by_punct`: punctuation becomes words of its own first.
    pub split_by_punct: bool,
}

/// The tokenizer transformers builds from the SentencePiece Unigram model at `path`.
pub fn read(path: &Path, opts: SpmOptions) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |why: String| Error::artifact(path, why);
    let proto = ModelProto::decode(bytes.as_slice())
        .map_err(|e| bad(format!("not a SentencePiece model file: {e}")))?;
    let trainer = proto.trainer_spec.unwrap_or_default();
    if trainer.model_type.unwrap_or(UNIGRAM) != UNIGRAM {
        return Err(bad(
            "only SentencePiece Unigram models are read (DeBERTa-v3's spm.model); save the \
             tokenizer once with transformers to get its tokenizer.json"
                .into(),
        ));
    }
    let vocab: Vec<(String, f64)> = proto
        .pieces
        .into_iter()
        .map(|p| {
            (
                p.piece.unwrap_or_default(),
                f64::from(p.score.unwrap_or(0.0)),
            )
        })
        .collect();
    let unk_id = usize::try_from(trainer.unk_id.unwrap_or(0)).ok();
    let model = Unigram::from(vocab, unk_id, trainer.byte_fallback.unwrap_or(false))
        .map_err(|e| bad(format!("invalid SentencePiece vocabulary: {e}")))?;
    let charsmap = proto.normalizer_spec.and_then(|n| n.precompiled_charsmap);
    let mut tokenizer = Tokenizer::new(model);
    let normalizer = normalizer(charsmap.as_deref(), opts).map_err(bad)?;
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| bad(format!("cannot build its normalizer: {e}")))?;
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(opts)));
    tokenizer.with_decoder(Some(MetaspaceDecoder::new(
        '▁',
        PrependScheme::Always,
        true,
    )));
    Ok(tokenizer)
}

/// `DebertaV2Tokenizer`'s normalizer: the model's own table when it has one, else runs of
/// whitespace to one space and NFC; trailing spaces stripped.
fn normalizer(
    charsmap: Option<&[u8]>,
    opts: SpmOptions,
) -> std::result::Result<Normalizers, String> {
    let replace = |pattern: &str| {
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into()),
            " ",
        )
        .map_err(|e| format!("{e}"))
    };
    let mut steps: Vec<NormalizerWrapper> = Vec::new();
    if opts.do_lower_case {
        steps.push(Lowercase.into());
    }
    match charsmap.filter(|c| !c.is_empty()) {
        Some(table) => {
            let table = Precompiled::from(table)
                .map_err(|e| format!("invalid precompiled_charsmap: {e}"))?;
            steps.push(table.into());
            steps.push(Strip::new(false, true).into());
            steps.push(replace(" {2,}")?.into());
        }
        None => {
            steps.push(replace(r"\s{2,}|[\n\r\t]")?.into());
            steps.push(NFC.into());
            steps.push(Strip::new(false, true).into());
        }
    }
    Ok(Normalizers::new(steps))
}

fn pre_tokenizer(opts: SpmOptions) -> PreTokenizers {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    if opts.split_by_punct {
        steps.push(Punctuation::new(SplitDelimiterBehavior::Isolated).into());
    }
    steps.push(Metaspace::new('▁', PrependScheme::Always, true).into());
    PreTokenizers::new(steps)
}
