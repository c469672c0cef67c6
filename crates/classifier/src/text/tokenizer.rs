//! Tokenization for BERT-family models (WordPiece for BERT and DistilBERT, byte-level BPE for
//! RoBERTa, SentencePiece Unigram for XLM-R and CamemBERT), with our own truncation and
//! dynamic padding.
//!
//! Loads a `tokenizer.json` (any model the `tokenizers` crate reads) or builds the BERT
//! WordPiece pipeline from a bare `vocab.txt` (RoBERTa's from `vocab.json` + `merges.txt`,
//! DeBERTa-v3's from `spm.model`). Special tokens come from
//! `tokenizer_config.json`, else the family's defaults (`[CLS]`... or `<s>`...).
//! Padding and truncation baked into a `tokenizer.json` are removed: a model folder's
//! tokenizer often pads everything to 128 tokens, which would waste compute on short texts and
//! cut long ones silently. Texts are encoded without special tokens, truncated by a
//! [`Truncation`] strategy to fit `max_length` with `[CLS]`/`[SEP]` (`<s>`/`</s>`), and batches are padded to
//! their longest member.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{ModelWrapper, Tokenizer};

use super::sentencepiece::{self, SpmOptions};
use crate::error::{Error, Result};
use crate::model_dir::{
    BPE_VOCAB_FILE, MERGES_FILE, SPECIAL_TOKENS_MAP_FILE, SPM_FILE, TOKENIZER_CONFIG_FILE,
    TOKENIZER_JSON_FILE, VOCAB_FILE,
};

/// Which tokens of a too-long text to keep.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "kebab-case")]
#[strum(
    serialize_all = "kebab-case",
    ascii_case_insensitive,
    parse_err_ty = String,
    parse_err_fn = unknown_truncation
)]
pub enum Truncation {
    /// The first tokens (what `transformers` does by default).
    #[default]
    Head,
    /// The last tokens.
    Tail,
    /// The first quarter and the last three quarters of the budget: for long reviews, whose
    /// verdict is often at the end, Sun et al. 2019 ("How to Fine-Tune BERT for Text
    /// Classification?") found head+tail best on IMDb.
    #[strum(
        to_string = "head-tail",
        serialize = "head_tail",
        serialize = "head+tail"
    )]
    HeadTail,
}

fn unknown_truncation(s: &str) -> String {
    format!("unknown truncation `{s}`: expected head, tail or head-tail")
}

impl Truncation {
    pub const ALL: [Truncation; 3] = [Truncation::Head, Truncation::Tail, Truncation::HeadTail];

    /// Keeps at most `budget` of `ids`.
    pub fn apply<'a>(&self, ids: &'a [u32], budget: usize) -> (&'a [u32], &'a [u32]) {
        if ids.len() <= budget {
            return (ids, &[]);
        }
        match self {
            Truncation::Head => (&ids[..budget], &[]),
            Truncation::Tail => (&ids[ids.len() - budget..], &[]),
            Truncation::HeadTail => {
                let head = budget / 4;
                (&ids[..head], &ids[ids.len() - (budget - head)..])
            }
        }
    }
}

/// How a text longer than the model's max length is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// One window, cut to the max length this way.
    Truncate(Truncation),
    /// Overlapping windows starting every `stride` word pieces (0: half a window).
    Windows { stride: usize },
}

/// One text as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The windows read, each with `[CLS]`/`[SEP]` (one unless the text is long and read in
    /// windows).
    pub windows: Vec<Vec<u32>>,
    /// The text's word pieces before truncation, without special tokens.
    pub word_pieces: usize,
    /// Of those, how many are the unknown token.
    pub unknown: usize,
}

/// Where the windows of a text of `len` word pieces start: 0, then every `stride` while the
/// text goes on past the window, the last one moved back to end at the text's end.
pub fn window_starts(len: usize, budget: usize, stride: usize) -> impl Iterator<Item = usize> {
    let last = len.saturating_sub(budget);
    let stride = stride.max(1);
    let regular = (0..last).step_by(stride);
    regular.chain(std::iter::once(last))
}

/// The special tokens of a BERT-family vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub cls_token: String,
    pub sep_token: String,
    pub pad_token: String,
    pub unk_token: String,
    pub mask_token: String,
}

impl Default for SpecialTokens {
    /// BERT's and DistilBERT's.
    fn default() -> Self {
        Self {
            cls_token: "[CLS]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
            unk_token: "[UNK]".into(),
            mask_token: "[MASK]".into(),
        }
    }
}

impl SpecialTokens {
    /// RoBERTa's, XLM-R's and CamemBERT's (BPE and SentencePiece vocabularies).
    pub fn roberta() -> Self {
        Self {
            cls_token: "<s>".into(),
            sep_token: "</s>".into(),
            pad_token: "<pad>".into(),
            unk_token: "<unk>".into(),
            mask_token: "<mask>".into(),
        }
    }

    /// The family's defaults a vocabulary was built with: BERT's when it has `[CLS]`, else
    /// RoBERTa's when it has `<s>`.
    fn defaults_for(has: impl Fn(&str) -> bool) -> Self {
        let bert = Self::default();
        if !has(&bert.cls_token) && has("<s>") {
            Self::roberta()
        } else {
            bert
        }
    }

    /// `given`'s tokens where it names them, `defaults`' elsewhere.
    fn or(given: &PartialSpecialTokens, defaults: Self) -> Self {
        Self {
            cls_token: token_string(&given.cls_token).unwrap_or(defaults.cls_token),
            sep_token: token_string(&given.sep_token).unwrap_or(defaults.sep_token),
            pad_token: token_string(&given.pad_token).unwrap_or(defaults.pad_token),
            unk_token: token_string(&given.unk_token).unwrap_or(defaults.unk_token),
            mask_token: token_string(&given.mask_token).unwrap_or(defaults.mask_token),
        }
    }
}

/// The parts of `tokenizer_config.json` we read and write.
#[derive(Debug, Clone, Default, Deserialize)]
struct TokenizerConfigFile {
    /// Absent means the family's default: on for WordPiece (BERT), off for SentencePiece.
    do_lower_case: Option<bool>,
    #[serde(default)]
    split_by_punct: bool,
    #[serde(flatten)]
    special: PartialSpecialTokens,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PartialSpecialTokens {
    cls_token: Option<serde_json::Value>,
    sep_token: Option<serde_json::Value>,
    pad_token: Option<serde_json::Value>,
    unk_token: Option<serde_json::Value>,
    mask_token: Option<serde_json::Value>,
}

/// `tokenizer_config.json`'s lower-casing, punctuation splits and special tokens.
fn read_tokenizer_config_file(path: Option<&Path>) -> Result<TokenizerConfigFile> {
    let Some(path) = path else {
        return Ok(TokenizerConfigFile::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::artifact(path, format!("not a valid tokenizer_config.json: {e}")))
}

/// Special tokens are written either as strings or as `{"content": "[CLS]", ...}` objects.
fn token_string(v: &Option<serde_json::Value>) -> Option<String> {
    match v.as_ref()? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// A BERT-family tokenizer ready to encode texts into model inputs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialTokens,
    do_lower_case: bool,
    cls_id: u32,
    /// The unknown token's id, when the vocabulary has one (byte-level BPE needs none).
    unk_id: Option<u32>,
    sep_id: u32,
    pad_id: u32,
}

impl fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("do_lower_case", &self.do_lower_case)
            .finish()
    }
}

/// Input ids and attention mask of one padded batch, both `(batch, seq)` u32.
#[derive(Debug, Clone)]
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
}

impl TextTokenizer {
    /// Loads the tokenizer of a model folder: `tokenizer.json`, else `vocab.txt` (WordPiece),
    /// else `vocab.json` with `merges.txt` (RoBERTa's byte-level BPE), else `spm.model`
    /// (DeBERTa-v3's SentencePiece Unigram), with `tokenizer_config.json` when present.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let config = file(TOKENIZER_CONFIG_FILE);
        let (json, vocab) = (file(TOKENIZER_JSON_FILE), file(VOCAB_FILE));
        if json.is_some() || vocab.is_some() {
            return Self::from_files(json.as_deref(), vocab.as_deref(), config.as_deref());
        }
        if let Some(spm) = file(SPM_FILE) {
            return Self::from_spm(&spm, config.as_deref());
        }
        let Some(bpe_vocab) = file(BPE_VOCAB_FILE) else {
            return Err(Error::artifact(
                dir.join(TOKENIZER_JSON_FILE),
                "missing: the folder has no tokenizer.json, vocab.txt (WordPiece), \
                 vocab.json + merges.txt (byte-level BPE) or spm.model (SentencePiece \
                 Unigram). Another SentencePiece model (XLM-R's sentencepiece.bpe.model) is \
                 not read: save the tokenizer once with transformers \
                 (AutoTokenizer.from_pretrained(...).save_pretrained(...)) to get its \
                 tokenizer.json",
            ));
        };
        let merges = file(MERGES_FILE).ok_or_else(|| {
            Error::artifact(
                dir.join(MERGES_FILE),
                "missing: vocab.json (a byte-level BPE vocabulary) needs its merges.txt",
            )
        })?;
        Self::from_bpe_files(&bpe_vocab, &merges, config.as_deref())
    }

    /// Loads from a model folder's files: `tokenizer.json` if given, else `vocab.txt`;
    /// `tokenizer_config.json` (optional) for lower-casing and special tokens.
    pub fn from_files(
        tokenizer_json: Option<&Path>,
        vocab_txt: Option<&Path>,
        tokenizer_config: Option<&Path>,
    ) -> Result<Self> {
        let cfg = read_tokenizer_config_file(tokenizer_config)?;
        let given = cfg.special;
        match (tokenizer_json, vocab_txt) {
            (Some(path), _) => {
                let inner = Tokenizer::from_file(path).map_err(|e| {
                    Error::artifact(path, format!("not a valid tokenizer.json: {e}"))
                })?;
                let defaults = SpecialTokens::defaults_for(|t| inner.token_to_id(t).is_some());
                let special = SpecialTokens::or(&given, defaults);
                // tokenizer.json's own normalizer does the lower-casing; the flag is written
                // back to tokenizer_config.json, where transformers' DebertaV2Tokenizer
                // lower-cases again if it is on. Unstated, it is BERT's default only for
                // WordPiece.
                let wordpiece = matches!(inner.get_model(), ModelWrapper::WordPiece(_));
                let do_lower_case = cfg.do_lower_case.unwrap_or(wordpiece);
                Self::from_tokenizer(inner, special, do_lower_case, path)
            }
            (None, Some(path)) => {
                let do_lower_case = cfg.do_lower_case.unwrap_or(true);
                let special = SpecialTokens::or(&given, SpecialTokens::default());
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                let vocab: Vec<&str> = text.lines().collect();
                Self::from_vocab(&vocab, do_lower_case, special)
                    .map_err(|e| Error::artifact(path, e.to_string()))
            }
            (None, None) => Err(Error::Input(
                "no tokenizer: a model folder needs tokenizer.json or vocab.txt".into(),
            )),
        }
    }

    /// Builds DeBERTa-v3's SentencePiece Unigram pipeline from `spm.model`, as transformers'
    /// `DebertaV2Tokenizer` does (`[CLS] ... [SEP]`, no lower-casing unless the config asks).
    pub fn from_spm(spm_model: &Path, tokenizer_config: Option<&Path>) -> Result<Self> {
        let cfg = read_tokenizer_config_file(tokenizer_config)?;
        let opts = SpmOptions {
            do_lower_case: cfg.do_lower_case.unwrap_or(false),
            split_by_punct: cfg.split_by_punct,
        };
        let inner = sentencepiece::read(spm_model, opts)?;
        let special = SpecialTokens::or(&cfg.special, SpecialTokens::default());
        // Lower-casing, when asked, is a step of the normalizer built above.
        Self::from_tokenizer(inner, special, opts.do_lower_case, spm_model)
    }

    /// Builds RoBERTa's byte-level BPE pipeline from `vocab.json` and `merges.txt`, as
    /// `transformers`' `RobertaTokenizerFast` does: no prefix space, `<s> ... </s>`.
    pub fn from_bpe_files(
        vocab_json: &Path,
        merges_txt: &Path,
        tokenizer_config: Option<&Path>,
    ) -> Result<Self> {
        let given = read_tokenizer_config_file(tokenizer_config)?.special;
        let (vocab, merges) = (vocab_json.to_string_lossy(), merges_txt.to_string_lossy());
        let bpe = BPE::from_file(&vocab, &merges).build().map_err(|e| {
            Error::artifact(
                vocab_json,
                format!("not a BPE vocabulary with its merges: {e}"),
            )
        })?;
        let special = SpecialTokens::or(&given, SpecialTokens::roberta());
        let mut inner = Tokenizer::new(bpe);
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| {
                Error::artifact(vocab_json, format!("the vocabulary has no `{t}` token"))
            })
        };
        let (cls, sep) = (id(&special.cls_token)?, id(&special.sep_token)?);
        inner
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevel::default()))
            .with_post_processor(Some(RobertaProcessing::new(
                (special.sep_token.clone(), sep),
                (special.cls_token.clone(), cls),
            )));
        Self::from_tokenizer(inner, special, false, vocab_json)
    }

    /// Builds BERT's WordPiece pipeline over `vocab` (token `i` has id `i`), as
    /// `transformers`' `BertTokenizerFast` does from a `vocab.txt`.
    pub fn from_vocab(vocab: &[&str], do_lower_case: bool, special: SpecialTokens) -> Result<Self> {
        if vocab.iter().all(|t| t.trim().is_empty()) {
            return Err(Error::Tokenizer(
                "the vocabulary is empty: vocab.txt must list one token per line".into(),
            ));
        }
        let map: HashMap<String, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.trim_end_matches('\r').to_string(), i as u32))
            .collect();
        let get = |t: &str| {
            map.get(t)
                .copied()
                .ok_or_else(|| Error::Tokenizer(format!("the vocabulary has no `{t}` token")))
        };
        let (cls, sep) = (get(&special.cls_token)?, get(&special.sep_token)?);
        get(&special.unk_token)?;
        let wordpiece = WordPiece::builder()
            .vocab(map.into_iter().collect::<ahash::AHashMap<_, _>>())
            .unk_token(special.unk_token.clone())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut inner = Tokenizer::new(wordpiece);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, do_lower_case)))
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                (special.sep_token.clone(), sep),
                (special.cls_token.clone(), cls),
            )))
            .with_decoder(Some(WordPieceDecoder::default()));
        Self::from_tokenizer(inner, special, do_lower_case, Path::new(VOCAB_FILE))
    }

    fn from_tokenizer(
        mut inner: Tokenizer,
        special: SpecialTokens,
        do_lower_case: bool,
        origin: &Path,
    ) -> Result<Self> {
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        if inner.get_vocab_size(true) == 0 {
            return Err(Error::artifact(
                origin,
                "the tokenizer's vocabulary is empty",
            ));
        }
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| {
                Error::artifact(origin, format!("the vocabulary has no `{t}` token"))
            })
        };
        let (cls_id, sep_id, pad_id) = (
            id(&special.cls_token)?,
            id(&special.sep_token)?,
            id(&special.pad_token)?,
        );
        let unk_id = inner.token_to_id(&special.unk_token);
        Ok(Self {
            inner,
            special,
            do_lower_case,
            unk_id,
            cls_id,
            sep_id,
            pad_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Token ids of each text with `[CLS]`/`[SEP]`, at most `max_length` long.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        max_length: usize,
        truncation: Truncation,
    ) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .encode_batch_with_lengths(texts, max_length, truncation)?
            .into_iter()
            .map(|(ids, _)| ids)
            .collect())
    }

    /// [`TextTokenizer::encode_batch`], with each text's untruncated length (special tokens
    /// included).
    pub fn encode_batch_with_lengths(
        &self,
        texts: &[&str],
        max_length: usize,
        truncation: Truncation,
    ) -> Result<Vec<(Vec<u32>, usize)>> {
        Ok(self
            .encode_read(texts, max_length, Read::Truncate(truncation))?
            .into_iter()
            .map(|mut e| (e.windows.swap_remove(0), e.word_pieces + 2))
            .collect())
    }

    /// Every text as overlapping windows of at most `max_length` tokens, each with its own
    /// `[CLS]`/`[SEP]`: a text that fits is one window, exactly what [`Self::encode_batch`]
    /// gives; a longer one is covered by windows starting every `stride` word pieces (half a
    /// window when `stride` is 0), the last one ending at the text's end.
    pub fn encode_windows(
        &self,
        texts: &[&str],
        max_length: usize,
        stride: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        let read = Read::Windows { stride };
        Ok(self
            .encode_read(texts, max_length, read)?
            .into_iter()
            .map(|e| e.windows)
            .collect())
    }

    /// Every text as the model reads it (`read`), with what monitoring wants to know of it.
    pub fn encode_read(
        &self,
        texts: &[&str],
        max_length: usize,
        read: Read,
    ) -> Result<Vec<Encoded>> {
        let budget = max_length.saturating_sub(2);
        let encodings = self.word_pieces(texts, max_length)?;
        Ok(encodings
            .iter()
            .map(|enc| {
                let ids = enc.get_ids();
                let windows = match read {
                    Read::Truncate(truncation) => vec![self.wrap(ids, max_length, truncation)],
                    Read::Windows { stride } => {
                        let stride = if stride == 0 {
                            budget.div_ceil(2)
                        } else {
                            stride.min(budget)
                        };
                        window_starts(ids.len(), budget, stride)
                            .map(|start| {
                                let end = (start + budget).min(ids.len());
                                self.wrap(&ids[start..end], max_length, Truncation::Head)
                            })
                            .collect()
                    }
                };
                Encoded {
                    windows,
                    word_pieces: ids.len(),
                    unknown: self
                        .unk_id
                        .map_or(0, |u| ids.iter().filter(|&&i| i == u).count()),
                }
            })
            .collect())
    }

    /// The word pieces of `texts`, without special tokens, once `max_length` is known to
    /// leave room for some.
    fn word_pieces(&self, texts: &[&str], max_length: usize) -> Result<Vec<tokenizers::Encoding>> {
        if max_length < 3 {
            return Err(Error::Input(format!(
                "max_length {max_length} is too small: [CLS] and [SEP] alone take 2 tokens"
            )));
        }
        self.inner
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The number of word pieces of `text` before truncation, without special tokens.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.len())
    }

    fn wrap(&self, ids: &[u32], max_length: usize, truncation: Truncation) -> Vec<u32> {
        let (a, b) = truncation.apply(ids, max_length - 2);
        let mut out = Vec::with_capacity(a.len() + b.len() + 2);
        out.push(self.cls_id);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out.push(self.sep_id);
        out
    }

    /// Pads `seqs` to the longest one.
    pub fn pad(&self, seqs: &[&[u32]], device: &Device) -> Result<Batch> {
        pad_batch(seqs, self.pad_id, device)
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json` and (for a
    /// WordPiece model) `vocab.txt` into `dir`.
    pub fn save(&self, dir: &Path, model_max_length: usize, tokenizer_class: &str) -> Result<()> {
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::io(path, e))
        };
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        write(TOKENIZER_JSON_FILE, json.as_bytes())?;
        let s = &self.special;
        let special = serde_json::json!({
            "cls_token": s.cls_token, "sep_token": s.sep_token, "pad_token": s.pad_token,
            "unk_token": s.unk_token, "mask_token": s.mask_token,
        });
        let mut config = special.clone();
        let obj = config.as_object_mut().expect("object");
        obj.insert("do_lower_case".into(), self.do_lower_case.into());
        obj.insert("model_max_length".into(), model_max_length.into());
        obj.insert("tokenizer_class".into(), tokenizer_class.into());
        obj.insert("clean_up_tokenization_spaces".into(), true.into());
        obj.insert("tokenize_chinese_chars".into(), true.into());
        obj.insert("strip_accents".into(), serde_json::Value::Null);
        write(TOKENIZER_CONFIG_FILE, &to_pretty(&config))?;
        write(SPECIAL_TOKENS_MAP_FILE, &to_pretty(&special))?;
        if let ModelWrapper::WordPiece(wp) = self.inner.get_model() {
            use tokenizers::Model;
            let mut vocab: Vec<(String, u32)> = wp.get_vocab().into_iter().collect();
            vocab.sort_by_key(|(_, id)| *id);
            let mut text = String::new();
            for (token, _) in vocab {
                text.push_str(&token);
                text.push('\n');
            }
            write(VOCAB_FILE, text.as_bytes())?;
        }
        Ok(())
    }
}

fn to_pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).expect("json values serialize");
    bytes.push(b'\n');
    bytes
}

/// Pads `seqs` with `pad_id` to the longest one; mask 1 = token, 0 = padding.
pub fn pad_batch(seqs: &[&[u32]], pad_id: u32, device: &Device) -> Result<Batch> {
    let b = seqs.len();
    let s = seqs.iter().map(|x| x.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; b * s];
    let mut mask = vec![0u32; b * s];
    for (row, seq) in seqs.iter().enumerate() {
        ids[row * s..row * s + seq.len()].copy_from_slice(seq);
        mask[row * s..row * s + seq.len()].fill(1);
    }
    Ok(Batch {
        input_ids: Tensor::from_vec(ids, (b, s), device)?,
        attention_mask: Tensor::from_vec(mask, (b, s), device)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TextTokenizer {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "##s", "the", "!",
        ];
        TextTokenizer::from_vocab(&vocab, true, SpecialTokens::default()).unwrap()
    }

    #[test]
    fn encodes_lowercased_wordpieces_with_specials() {
        let ids = tiny()
            .encode_batch(&["The GOOD movies!", "zzz"], 64, Truncation::Head)
            .unwrap();
        assert_eq!(ids[0], vec![2, 9, 5, 7, 8, 10, 3]);
        assert_eq!(ids[1], vec![2, 1, 3]);
    }

    #[test]
    fn truncation_strategies_keep_the_right_tokens() {
        let ids: Vec<u32> = (0..10).collect();
        assert_eq!(Truncation::Head.apply(&ids, 4), (&ids[..4], &[][..]));
        assert_eq!(Truncation::Tail.apply(&ids, 4), (&ids[6..], &[][..]));
        assert_eq!(Truncation::HeadTail.apply(&ids, 8), (&ids[..2], &ids[4..]));
        assert_eq!(Truncation::HeadTail.apply(&ids, 20), (&ids[..], &[][..]));
        let t = tiny();
        let enc = t
            .encode_batch(&["good bad good bad good bad"], 5, Truncation::Tail)
            .unwrap();
        assert_eq!(enc[0], vec![2, 6, 5, 6, 3]);
        for s in ["head", "tail", "head-tail", "head+tail", "HEAD_TAIL"] {
            assert!(s.parse::<Truncation>().is_ok(), "{s}");
        }
        assert!(
            "middle"
                .parse::<Truncation>()
                .unwrap_err()
                .contains("head, tail or head-tail")
        );
        assert_eq!(Truncation::HeadTail.to_string(), "head-tail");
    }

    #[test]
    fn windows_cover_a_long_text_and_leave_a_short_one_alone() {
        let starts = |len, budget, stride| window_starts(len, budget, stride).collect::<Vec<_>>();
        assert_eq!(starts(3, 4, 2), [0]);
        assert_eq!(starts(4, 4, 2), [0]);
        assert_eq!(starts(10, 4, 2), [0, 2, 4, 6]);
        assert_eq!(
            starts(11, 4, 4),
            [0, 4, 7],
            "the last window ends at the end"
        );
        let t = tiny();
        let short = t.encode_windows(&["good movie"], 8, 0).unwrap();
        let truncated = t
            .encode_batch(&["good movie"], 8, Truncation::Head)
            .unwrap();
        assert_eq!(
            short[0], truncated,
            "a text that fits is one unchanged window"
        );
        // 6 word pieces, 4 per window, stride 2: [g b g b] [g b g b]... as ids.
        let long = t
            .encode_windows(&["good bad good bad good !"], 6, 0)
            .unwrap();
        assert_eq!(
            long[0],
            vec![vec![2, 5, 6, 5, 6, 3], vec![2, 5, 6, 5, 10, 3],]
        );
        assert!(t.encode_windows(&["good"], 2, 0).is_err());
    }

    #[test]
    fn pads_to_longest_with_mask() {
        let b = pad_batch(&[&[2, 5, 3], &[2, 3]], 0, &Device::Cpu).unwrap();
        assert_eq!(
            b.input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![2, 5, 3], vec![2, 3, 0]]
        );
        assert_eq!(
            b.attention_mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 1, 1], vec![1, 1, 0]]
        );
    }

    #[test]
    fn empty_vocab_is_a_clear_error() {
        let err = TextTokenizer::from_vocab(&["", " "], true, SpecialTokens::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
