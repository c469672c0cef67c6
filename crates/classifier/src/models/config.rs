//! A model folder's `config.json` as one type: an enum tagged on `model_type` (as TEI's candle
//! backend reads it) over each architecture's own config, and what every caller asks of any
//! of them (labels, sizes, parameter names, the transformers class to save as).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::head::Pooling;
use super::{bert, deberta_v2, distilbert, electra, roberta};

/// `config.json` of a sequence classifier this tool runs. BERT checkpoints are converted to
/// the DistilBERT layout when read (see [`super::bert`]), so they arrive as `DistilBert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model_type")]
pub enum ModelConfig {
    #[serde(rename = "distilbert")]
    DistilBert(distilbert::Config),
    #[serde(rename = "roberta")]
    Roberta(roberta::Config),
    #[serde(rename = "xlm-roberta")]
    XlmRoberta(roberta::Config),
    #[serde(rename = "camembert")]
    Camembert(roberta::Config),
    #[serde(rename = "electra")]
    Electra(electra::Config),
    #[serde(rename = "deberta-v2")]
    DebertaV2(deberta_v2::Config),
}

impl Default for ModelConfig {
    /// `distilbert-base-uncased` with two labels.
    fn default() -> Self {
        Self::DistilBert(distilbert::Config::default())
    }
}

/// Label names in class-index order from `id2label`; `transformers` defaults to `LABEL_0`,
/// `LABEL_1` when a config names none.
pub fn labels_of(id2label: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    if id2label.is_empty() {
        return Ok(vec!["LABEL_0".into(), "LABEL_1".into()]);
    }
    let mut labels = vec![None; id2label.len()];
    for (id, label) in id2label {
        let i: usize = id
            .parse()
            .map_err(|_| format!("id2label key `{id}` is not a class index"))?;
        let slot = labels.get_mut(i).ok_or_else(|| {
            format!(
                "id2label has {} entries but names class {i}: indices must be 0..{}",
                id2label.len(),
                id2label.len()
            )
        })?;
        *slot = Some(label.clone());
    }
    Ok(labels.into_iter().map(|l| l.expect("filled")).collect())
}

/// How many classes `id2label` names: 2 when empty, as transformers' default.
pub fn num_labels_of(id2label: &BTreeMap<String, String>) -> usize {
    match id2label.len() {
        0 => 2,
        n => n,
    }
}

/// `id2label` and `label2id` for `labels`, as transformers writes them.
pub fn label_maps(labels: &[String]) -> (BTreeMap<String, String>, BTreeMap<String, usize>) {
    let id2label = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone()))
        .collect();
    let label2id = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i))
        .collect();
    (id2label, label2id)
}

/// Checks a label set: at least two classes.
pub fn check_labels(id2label: &BTreeMap<String, String>) -> Result<(), String> {
    if labels_of(id2label)?.len() < 2 {
        return Err("a classifier needs at least two labels in id2label".into());
    }
    Ok(())
}

/// Checks a dropout probability by its config name.
pub fn check_dropout(name: &str, p: f64) -> Result<(), String> {
    if !(0.0..1.0).contains(&p) {
        return Err(format!("{name} must be in [0, 1), got {p}"));
    }
    Ok(())
}

/// Checks that sizes are positive and the hidden size splits into the heads.
pub fn check_sizes(sizes: &[(&str, usize)], hidden: usize, heads: usize) -> Result<(), String> {
    if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{name} must be positive"));
    }
    if !hidden.is_multiple_of(heads) {
        return Err(format!(
            "the hidden size {hidden} is not divisible by the {heads} attention heads"
        ));
    }
    Ok(())
}

impl ModelConfig {
    /// The BERT-layout config of every family but DistilBERT and DeBERTa.
    fn layout(&self) -> Option<&bert::Config> {
        match self {
            Self::DistilBert(_) | Self::DebertaV2(_) => None,
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) | Self::Electra(c) => {
                Some(c)
            }
        }
    }

    fn id2label(&self) -> &BTreeMap<String, String> {
        match self {
            Self::DistilBert(c) => &c.id2label,
            Self::DebertaV2(c) => &c.id2label,
            other => &other.layout().expect("BERT layout").id2label,
        }
    }

    /// Label names in class-index order.
    pub fn labels(&self) -> Result<Vec<String>, String> {
        labels_of(self.id2label())
    }

    pub fn num_labels(&self) -> usize {
        num_labels_of(self.id2label())
    }

    pub fn set_labels(&mut self, labels: &[String]) {
        let (id2label, label2id) = label_maps(labels);
        match self {
            Self::DistilBert(c) => (c.id2label, c.label2id) = (id2label, label2id),
            Self::DebertaV2(c) => (c.id2label, c.label2id) = (id2label, label2id),
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) | Self::Electra(c) => {
                (c.id2label, c.label2id) = (id2label, label2id)
            }
        }
    }

    /// `config.json`'s `model_type`.
    pub fn model_type(&self) -> &'static str {
        match self {
            Self::DistilBert(_) => "distilbert",
            Self::Roberta(_) => "roberta",
            Self::XlmRoberta(_) => "xlm-roberta",
            Self::Camembert(_) => "camembert",
            Self::Electra(_) => "electra",
            Self::DebertaV2(_) => "deberta-v2",
        }
    }

    /// The transformers class a saved folder loads as.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::DistilBert(_) => "DistilBertForSequenceClassification",
            Self::Roberta(_) => "RobertaForSequenceClassification",
            Self::XlmRoberta(_) => "XLMRobertaForSequenceClassification",
            Self::Camembert(_) => "CamembertForSequenceClassification",
            Self::Electra(_) => "ElectraForSequenceClassification",
            Self::DebertaV2(_) => "DebertaV2ForSequenceClassification",
        }
    }

    /// The transformers tokenizer class written to a saved `tokenizer_config.json`.
    pub fn tokenizer_class(&self) -> &'static str {
        match self {
            Self::DistilBert(_) => "DistilBertTokenizer",
            Self::Roberta(_) => "RobertaTokenizer",
            Self::XlmRoberta(_) => "XLMRobertaTokenizer",
            Self::Camembert(_) => "CamembertTokenizer",
            Self::Electra(_) => "ElectraTokenizer",
            Self::DebertaV2(_) => "DebertaV2Tokenizer",
        }
    }

    pub fn set_architectures(&mut self) {
        let arch = vec![self.architecture().to_string()];
        match self {
            Self::DistilBert(c) => c.architectures = arch,
            Self::DebertaV2(c) => c.architectures = arch,
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) | Self::Electra(c) => {
                c.architectures = arch
            }
        }
    }

    /// Keys of config.json this tool does not read, kept for saving (e.g. `_name_or_path`).
    pub fn extra(&self) -> &serde_json::Map<String, serde_json::Value> {
        match self {
            Self::DistilBert(c) => &c.extra,
            Self::DebertaV2(c) => &c.extra,
            other => &other.layout().expect("BERT layout").extra,
        }
    }

    pub fn extra_mut(&mut self) -> &mut serde_json::Map<String, serde_json::Value> {
        match self {
            Self::DistilBert(c) => &mut c.extra,
            Self::DebertaV2(c) => &mut c.extra,
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) | Self::Electra(c) => {
                &mut c.extra
            }
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::DistilBert(c) => c.dim,
            Self::DebertaV2(c) => c.hidden_size,
            other => other.layout().expect("BERT layout").hidden_size,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::DistilBert(c) => c.vocab_size,
            Self::DebertaV2(c) => c.vocab_size,
            other => other.layout().expect("BERT layout").vocab_size,
        }
    }

    /// The longest input, special tokens included, that the position table covers.
    pub fn max_tokens(&self) -> usize {
        match self {
            Self::DistilBert(c) => c.max_position_embeddings,
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) => roberta::max_tokens(c),
            // DeBERTa-v3 has no absolute positions: its relative ones were pretrained on
            // inputs up to this length.
            Self::Electra(c) => c.max_position_embeddings,
            Self::DebertaV2(c) => c.max_position_embeddings,
        }
    }

    pub fn initializer_range(&self) -> f64 {
        match self {
            Self::DistilBert(c) => c.initializer_range,
            Self::DebertaV2(c) => c.initializer_range,
            other => other.layout().expect("BERT layout").initializer_range,
        }
    }

    pub fn pooling(&self) -> Pooling {
        match self {
            Self::DistilBert(c) => c.pooling,
            Self::DebertaV2(c) => c.pooling,
            other => other.layout().expect("BERT layout").pooling,
        }
    }

    pub fn set_pooling(&mut self, pooling: Pooling) {
        match self {
            Self::DistilBert(c) => c.pooling = pooling,
            Self::DebertaV2(c) => c.pooling = pooling,
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) | Self::Electra(c) => {
                c.pooling = pooling
            }
        }
    }

    /// Checks the dimensions fit together; the message names the offending fields.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::DistilBert(c) => c.validate(),
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) => roberta::validate(c),
            Self::Electra(c) => electra::validate(c),
            Self::DebertaV2(c) => c.validate(),
        }
    }

    /// Every parameter of the `*ForSequenceClassification`: checkpoint name and shape, in
    /// checkpoint order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            Self::DistilBert(c) => c.parameter_shapes(),
            Self::Roberta(c) | Self::XlmRoberta(c) | Self::Camembert(c) => {
                roberta::parameter_shapes(c)
            }
            Self::Electra(c) => electra::parameter_shapes(c),
            Self::DebertaV2(c) => c.parameter_shapes(),
        }
    }

    /// The classification head's parameters (absent from a base encoder checkpoint).
    pub fn head_parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, n) = (self.hidden_size(), self.num_labels());
        match self {
            Self::DistilBert(_) => distilbert::head_parameter_shapes(d, n),
            Self::DebertaV2(_) => deberta_v2::head_parameter_shapes(d, n),
            _ => roberta::head_parameter_shapes(d, n),
        }
    }

    /// Parameters that transformers does not train (DistilBERT's sinusoidal positions).
    pub fn is_frozen(&self, name: &str) -> bool {
        matches!(self, Self::DistilBert(c) if c.sinusoidal_pos_embds
            && name.ends_with("position_embeddings.weight"))
    }
}
