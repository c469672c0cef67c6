//! `preprocess`: raw sentiment data in, a clean, de-duplicated, seeded, stratified split out.
//!
//! sources ([`source`]) -> label mapping ([`labels`]) -> cleaning (the core library's
//! [`Cleaning`], saved for serving) -> drop empty texts -> de-duplicate -> split ([`split`])
//! -> `train.csv`, `validation.csv`, `test.csv`, `small_test.csv`, `cleaning.json`,
//! `report.json`.

#![forbid(unsafe_code)]

pub mod labels;
pub mod source;
pub mod split;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use classifier::dataset::{Example, check_label_names, write_examples, write_labels};
use classifier::model_dir::atomic::{write_file, write_json};
use classifier::{Cleaning, TextTokenizer};
use rand::SeedableRng;
use rand::seq::index::sample;
use serde::Serialize;

use crate::labels::LabelMap;
use crate::source::{Defaults, Malformed, Row, SourceSpec, Split};

pub use classifier::text::cleaning::CLEANING_FILE;
pub const REPORT_FILE: &str = "report.json";
pub use classifier::dataset::{TEST_FILE, TRAIN_FILE, VALIDATION_FILE};

/// Line numbers kept per kind of problem in the report.
const EXAMPLES_KEPT: usize = 5;

/// Prepare sentiment data for training: read sources, clean, de-duplicate, split.
///
/// Writes train.csv, validation.csv, test.csv and small_test.csv (columns text,label,source;
/// label = class index: 0 = negative, 1 = positive unless --label-map says otherwise),
/// labels.json (the class names), cleaning.json and report.json into the output folder.
/// The trainer selects and calibrates on validation.csv and evaluates test.csv once.
#[derive(Parser, Debug, Clone)]
#[command(version, after_help = SOURCE_HELP)]
pub struct Args {
    /// An input: a Hub data set id (`imdb` = stanfordnlp/imdb), a CSV, TSV, JSONL or parquet
    /// file, or an aclImdb-style folder (pos/ and neg/, optionally under train/ and test/).
    /// Repeat for several sources (or separate them with `;` in the env var). Per-source
    /// settings follow commas; see below.
    #[arg(
        long = "source",
        env = "SOURCES",
        value_delimiter = ';',
        default_value = "imdb"
    )]
    pub sources: Vec<String>,

    /// The column holding the text, for sources that do not say otherwise.
    #[arg(long, env = "TEXT_COLUMN", default_value = "text")]
    pub text_column: String,

    /// The column holding the label, for sources that do not say otherwise.
    #[arg(long, env = "LABEL_COLUMN", default_value = "label")]
    pub label_column: String,

    /// Which label values make each class, one side per class joined by `/`, alternatives by
    /// `|`: 0/1, 0/4 (Sentiment140), negative/positive, rotten/fresh, 1|2/4|5 (stars, two
    /// classes), negative/neutral/positive or 1|2/3/4|5 (three). Case-insensitive. Rows with
    /// other values are dropped and counted.
    #[arg(long, env = "LABEL_MAP", default_value = "0/1")]
    pub label_map: String,

    /// The class names, comma-separated, one per side of the label map (default:
    /// negative,positive for two classes, negative,neutral,positive for three, else each
    /// class's first value). The model's labels, as the api reports them.
    #[arg(long, env = "LABEL_NAMES", value_delimiter = ',')]
    pub label_names: Vec<String>,

    /// Keep all rows sharing this column's value (e.g. one movie) on the same side of the
    /// split, so the test set measures generalisation to unseen groups.
    #[arg(long, env = "GROUP_COLUMN")]
    pub group_column: Option<String>,

    /// Fraction of each source held out for testing when the source has no split of its own.
    #[arg(long, env = "TEST_SIZE", default_value_t = 0.2)]
    pub test_size: f64,

    /// Fraction of each source's non-test rows held out as validation.csv (seeded,
    /// stratified, grouped like the test split): the trainer picks its epoch and fits its
    /// calibration there, so test.csv stays unseen until the final evaluation.
    #[arg(long, env = "VALIDATION_SIZE", default_value_t = 0.1)]
    pub validation_size: f64,

    /// Seed of the split and of small_test.csv's sample.
    #[arg(long, env = "SEED", default_value_t = 42)]
    pub seed: u64,

    /// Where to write the processed files.
    #[arg(long, env = "DATA_DIR", default_value = "data/processed")]
    pub output_dir: PathBuf,

    /// Rows in small_test.csv, a seeded sample of test.csv for quick batch runs.
    #[arg(long, env = "SMALL_TEST_SIZE", default_value_t = 100)]
    pub small_test_size: usize,

    /// Stop at the first malformed row instead of skipping and counting it.
    #[arg(long, env = "STRICT")]
    pub strict: bool,

    /// Tokenizer (model folder or Hub id) for the token-length percentiles in the report;
    /// word counts are reported instead when it cannot be loaded.
    #[arg(long, env = "MODEL_NAME", default_value = "distilbert-base-uncased")]
    pub tokenizer: String,

    /// The training max length, to report how many texts exceed it.
    #[arg(long, env = "MAX_LENGTH", default_value_t = classifier::text::pipeline::DEFAULT_MAX_LENGTH)]
    pub max_length: usize,

    /// Keep upper case (default: lowercase, as the original and uncased models).
    #[arg(long, env = "NO_LOWERCASE")]
    pub no_lowercase: bool,

    /// Keep URLs (default: removed).
    #[arg(long, env = "KEEP_URLS")]
    pub keep_urls: bool,

    /// Keep @mentions (default: removed).
    #[arg(long, env = "KEEP_MENTIONS")]
    pub keep_mentions: bool,

    /// Keep the `#` of hashtags (default: removed, keeping the word).
    #[arg(long, env = "KEEP_HASH_SIGNS")]
    pub keep_hash_signs: bool,

    /// Remove punctuation, as the Python original did (default: kept; "!" and ":(" carry
    /// sentiment).
    #[arg(long, env = "STRIP_PUNCTUATION")]
    pub strip_punctuation: bool,

    /// Keep HTML character references such as `&amp;` and `&lt;3` as written (default:
    /// decoded, as tweets and scraped reviews carry them).
    #[arg(long, env = "KEEP_HTML_ENTITIES")]
    pub keep_html_entities: bool,

    /// Keep HTML line breaks (`<br />`) (default: replaced by spaces).
    #[arg(long, env = "KEEP_HTML_BREAKS")]
    pub keep_html_breaks: bool,

    /// Keep whitespace as is (default: runs collapsed to one space, ends trimmed).
    #[arg(long, env = "KEEP_WHITESPACE")]
    pub keep_whitespace: bool,

    /// Skip Unicode NFC normalisation (default: applied).
    #[arg(long, env = "NO_NFC")]
    pub no_nfc: bool,
}

const SOURCE_HELP: &str = "\
Per-source settings: --source LOCATION[,key=value...] with keys
  name=NAME      label in the source column and per-source metrics (default: file stem)
  format=FMT     csv, tsv, jsonl, parquet, aclimdb, hub or feedback (default: from the
                 extension; feedback for sqlite:, postgres:// and .db: the api's
                 prediction log, whose corrected predictions become labelled rows)
  text=COL       text column          label=COL   label column
  labels=A/B     label map (as many classes as --label-map)      group=COL   group column
  split=COL      column of train/test values: keep the source's own split

Examples:
  preprocess                                                  # IMDB from the Hugging Face Hub
  preprocess --source data/raw/aclImdb
  preprocess --source rt.csv,group=movie_name --source tweets.csv,name=tweets,labels=0/4
  preprocess --source data/raw/aclImdb --source results/predictions.db   # + user corrections";

impl Args {
    pub fn cleaning(&self) -> Cleaning {
        Cleaning {
            decode_html_entities: !self.keep_html_entities,
            unicode_nfc: !self.no_nfc,
            html_line_breaks: !self.keep_html_breaks,
            strip_urls: !self.keep_urls,
            strip_mentions: !self.keep_mentions,
            strip_hash_signs: !self.keep_hash_signs,
            lowercase: !self.no_lowercase,
            strip_punctuation: self.strip_punctuation,
            normalize_whitespace: !self.keep_whitespace,
        }
    }
}

/// Counts and first locations of one kind of problem.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Problem {
    pub count: u64,
    pub first: Vec<String>,
}

impl Problem {
    fn add(&mut self, location: &str) {
        self.count += 1;
        if self.first.len() < EXAMPLES_KEPT {
            self.first.push(location.to_string());
        }
    }
}

/// What happened to one source's rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub spec: Option<SourceSpec>,
    pub rows_read: u64,
    pub malformed: BTreeMap<String, Problem>,
    pub missing_text: Problem,
    pub missing_label: Problem,
    /// Label values the map does not name, with their counts.
    pub unmapped_labels: BTreeMap<String, u64>,
    pub empty_after_cleaning: Problem,
    pub duplicates_removed: u64,
    pub conflicting_duplicates_removed: u64,
    pub kept: u64,
    pub split: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    pub rows: usize,
    pub class_balance: BTreeMap<String, usize>,
    pub per_source: BTreeMap<String, BTreeMap<String, usize>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LengthReport {
    /// `tokens` (word pieces of `tokenizer`, without [CLS]/[SEP]) or `words` when the
    /// tokenizer could not be loaded.
    pub unit: String,
    pub tokenizer: Option<String>,
    pub measured_rows: usize,
    pub percentiles: BTreeMap<String, usize>,
    pub max_length: usize,
    /// Share of texts that the max length (minus [CLS] and [SEP]) truncates.
    pub fraction_truncated: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub created_at: String,
    /// The class names, in class-index order (labels.json).
    pub labels: Vec<String>,
    pub seed: u64,
    pub test_size: f64,
    pub validation_size: f64,
    pub cleaning: Cleaning,
    pub sources: Vec<SourceReport>,
    pub rows_read: u64,
    pub rows_kept: u64,
    pub train: SideReport,
    pub validation: SideReport,
    pub test: SideReport,
    pub small_test_rows: usize,
    pub lengths: LengthReport,
}

struct Candidate {
    text: String,
    label: usize,
    source: usize,
    group: Option<String>,
    split: Option<Split>,
}

fn text_hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Runs the whole preprocessing and returns its report (also written to report.json).
pub fn run(args: &Args) -> Result<Report> {
    let specs = source_specs(args)?;
    let labels = class_names(args, &specs)?;
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    let cleaning = args.cleaning();
    let (candidates, mut reports) = read_sources(&specs, &cleaning, args)?;
    let mut kept = deduplicate(candidates, &mut reports);
    if kept.is_empty() {
        bail!(
            "no usable rows: every row was malformed, unlabelled or empty (see the counts above)"
        );
    }
    let is_test = test_rows(&kept, &mut reports, &specs, args);
    let is_validation = validation_rows(&kept, &is_test, &specs, args);
    let (train, validation, test) = assign(&kept, &is_test, &is_validation, &specs, args)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut small_idx =
        sample(&mut rng, test.len(), args.small_test_size.min(test.len())).into_vec();
    small_idx.sort_unstable();
    let small: Vec<Example> = small_idx.iter().map(|&i| test[i].clone()).collect();

    let lengths = measure_lengths(
        args,
        &kept.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
    );
    kept.clear();

    let out = &args.output_dir;
    write_file(&out.join(TRAIN_FILE), |p| write_examples(p, &train))?;
    write_file(&out.join(VALIDATION_FILE), |p| {
        write_examples(p, &validation)
    })?;
    write_file(&out.join(TEST_FILE), |p| write_examples(p, &test))?;
    write_file(&out.join("small_test.csv"), |p| write_examples(p, &small))?;
    write_json(&out.join(CLEANING_FILE), &cleaning)?;
    write_labels(out, &labels)?;

    let report = Report {
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        seed: args.seed,
        test_size: args.test_size,
        validation_size: args.validation_size,
        cleaning,
        rows_read: reports.iter().map(|r| r.rows_read).sum(),
        rows_kept: (train.len() + validation.len() + test.len()) as u64,
        sources: reports,
        train: side(&train, &labels),
        validation: side(&validation, &labels),
        test: side(&test, &labels),
        labels,
        small_test_rows: small.len(),
        lengths,
    };
    write_json(&out.join(REPORT_FILE), &report)?;
    Ok(report)
}

/// The sources to read, after checking the split sizes, the label map and that no two
/// sources share a name.
fn source_specs(args: &Args) -> Result<Vec<SourceSpec>> {
    for (flag, v) in [
        ("--test-size", args.test_size),
        ("--validation-size", args.validation_size),
    ] {
        if !(v > 0.0 && v < 1.0) {
            bail!("{flag} must be in (0, 1), got {v}");
        }
    }
    let labels = args
        .label_map
        .parse::<LabelMap>()
        .map_err(anyhow::Error::msg)
        .context("--label-map")?;
    // The api logs labels by the model's names, which train took from the class names.
    let names = if args.label_names.is_empty() {
        labels.default_names()
    } else {
        args.label_names.clone()
    };
    let defaults = Defaults {
        text_column: args.text_column.clone(),
        label_column: args.label_column.clone(),
        feedback_labels: names.join("/").parse().unwrap_or_else(|_| labels.clone()),
        labels,
        group_column: args.group_column.clone(),
    };
    let specs: Vec<SourceSpec> = args
        .sources
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| SourceSpec::parse(s, &defaults))
        .collect::<Result<_>>()?;
    if specs.is_empty() {
        bail!("no --source given");
    }
    let mut names = std::collections::HashSet::new();
    for s in &specs {
        if !names.insert(&s.name) {
            bail!(
                "two sources are named `{}`: give one another name with ,name=...",
                s.name
            );
        }
    }
    Ok(specs)
}

/// The class names: --label-names, or the label map's defaults; every source's map must
/// have as many classes.
fn class_names(args: &Args, specs: &[SourceSpec]) -> Result<Vec<String>> {
    let map: LabelMap = args.label_map.parse().map_err(anyhow::Error::msg)?;
    for s in specs {
        if s.labels.num_classes() != map.num_classes() {
            bail!(
                "source `{}` maps its labels to {} classes ({}), but --label-map `{map}` has {}: \
                 every source needs the same classes, in the same order",
                s.name,
                s.labels.num_classes(),
                s.labels,
                map.num_classes()
            );
        }
    }
    if args.label_names.is_empty() {
        return Ok(map.default_names());
    }
    if args.label_names.len() != map.num_classes() {
        bail!(
            "--label-names gives {} names ({}) for the {} classes of --label-map `{map}`",
            args.label_names.len(),
            args.label_names.join(","),
            map.num_classes()
        );
    }
    let names: Vec<String> = args
        .label_names
        .iter()
        .map(|n| n.trim().to_string())
        .collect();
    check_label_names(&names).map_err(|e| anyhow::anyhow!("--label-names: {e}"))?;
    Ok(names)
}

/// Reads every source: the rows that survive cleaning, and each source's counts.
fn read_sources(
    specs: &[SourceSpec],
    cleaning: &Cleaning,
    args: &Args,
) -> Result<(Vec<Candidate>, Vec<SourceReport>)> {
    let hub = classifier::model_dir::hub::HubSettings::from_env();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut reports: Vec<SourceReport> = Vec::new();
    for (si, spec) in specs.iter().enumerate() {
        let mut rep = SourceReport {
            name: spec.name.clone(),
            spec: Some(spec.clone()),
            ..Default::default()
        };
        let progress =
            indicatif::ProgressBar::new_spinner().with_message(format!("reading {}", spec.name));
        progress.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {human_pos} rows ({per_sec})",
            )
            .expect("valid template"),
        );
        let mut sink = |row: std::result::Result<Row, Malformed>| -> Result<()> {
            rep.rows_read += 1;
            progress.inc(1);
            if let Some(c) = candidate(row, si, spec, cleaning, &mut rep, args.strict)? {
                candidates.push(c);
            }
            Ok(())
        };
        source::read(spec, &hub, &mut sink).with_context(|| format!("source `{}`", spec.name))?;
        progress.finish_and_clear();
        tracing::info!(source = %spec.name, rows = rep.rows_read, "read");
        reports.push(rep);
    }
    Ok((candidates, reports))
}

/// One row of source `si` as a labelled, cleaned candidate, or `None` (counted in `rep`)
/// when it is malformed, lacks a text or a label, has a label the map does not know, or is
/// empty after cleaning. With `strict`, a malformed row is an error.
fn candidate(
    row: std::result::Result<Row, Malformed>,
    si: usize,
    spec: &SourceSpec,
    cleaning: &Cleaning,
    rep: &mut SourceReport,
    strict: bool,
) -> Result<Option<Candidate>> {
    let row = match row {
        Ok(r) => r,
        Err(m) => {
            if strict {
                bail!(
                    "{} ({}): {}: {} (drop --strict to skip and count such rows)",
                    spec.shown_location(),
                    spec.name,
                    m.location,
                    m.reason
                );
            }
            rep.malformed
                .entry(m.reason.clone())
                .or_default()
                .add(&m.location);
            return Ok(None);
        }
    };
    let Some(text) = row.text.filter(|t| !t.trim().is_empty()) else {
        rep.missing_text.add(&row.location);
        return Ok(None);
    };
    let Some(raw_label) = row.label.filter(|l| !l.trim().is_empty()) else {
        rep.missing_label.add(&row.location);
        return Ok(None);
    };
    let Some(label) = spec.labels.class(&raw_label) else {
        *rep.unmapped_labels
            .entry(labels::normalize(&raw_label))
            .or_default() += 1;
        return Ok(None);
    };
    let text = cleaning.clean(&text);
    if text.is_empty() {
        rep.empty_after_cleaning.add(&row.location);
        return Ok(None);
    }
    Ok(Some(Candidate {
        text,
        label,
        source: si,
        group: row.group,
        split: row.split,
    }))
}

/// De-duplicates on the cleaned text: keeps the first, drops later copies, and drops every
/// copy of a text that appears with two labels (which is right is unknowable).
fn deduplicate(candidates: Vec<Candidate>, reports: &mut [SourceReport]) -> Vec<Candidate> {
    let mut first_seen: HashMap<u64, usize> = HashMap::new();
    let mut keep = vec![true; candidates.len()];
    let mut conflicted = vec![false; candidates.len()];
    for i in 0..candidates.len() {
        let h = text_hash(&candidates[i].text);
        match first_seen.get(&h) {
            Some(&j) if candidates[j].text == candidates[i].text => {
                keep[i] = false;
                reports[candidates[i].source].duplicates_removed += 1;
                if candidates[j].label != candidates[i].label {
                    conflicted[j] = true;
                }
            }
            Some(_) => {}
            None => {
                first_seen.insert(h, i);
            }
        }
    }
    for i in 0..candidates.len() {
        if conflicted[i] && keep[i] {
            keep[i] = false;
            reports[candidates[i].source].conflicting_duplicates_removed += 1;
        }
    }
    candidates
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

/// The train, validation and test examples; an error when train or test would be empty.
fn assign(
    kept: &[Candidate],
    is_test: &[bool],
    is_validation: &[bool],
    specs: &[SourceSpec],
    args: &Args,
) -> Result<(Vec<Example>, Vec<Example>, Vec<Example>)> {
    let (mut train, mut validation, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (i, c) in kept.iter().enumerate() {
        let side = if is_test[i] {
            &mut test
        } else if is_validation[i] {
            &mut validation
        } else {
            &mut train
        };
        side.push(Example {
            text: c.text.clone(),
            label: c.label,
            source: specs[c.source].name.clone(),
        });
    }
    if train.is_empty() || test.is_empty() {
        bail!(
            "the split left {} training and {} test rows: both need some (check --test-size and the sources' split columns)",
            train.len(),
            test.len()
        );
    }
    if validation.is_empty() {
        tracing::warn!(
            "--validation-size {} of {} training rows is no row: validation.csv is empty, and `train` will hold out a share of train.csv instead",
            args.validation_size,
            train.len()
        );
    }
    Ok((train, validation, test))
}

/// Which rows go to test: a source's own split where it has one, else seeded and stratified
/// per source (grouped by its group column). Records each source's kept rows and split kind.
fn test_rows(
    kept: &[Candidate],
    reports: &mut [SourceReport],
    specs: &[SourceSpec],
    args: &Args,
) -> Vec<bool> {
    let mut is_test = vec![false; kept.len()];
    for (si, rep) in reports.iter_mut().enumerate() {
        let rows: Vec<usize> = (0..kept.len()).filter(|&i| kept[i].source == si).collect();
        rep.kept = rows.len() as u64;
        let own = rows.iter().filter(|&&i| kept[i].split.is_some()).count();
        if !rows.is_empty() && own == rows.len() {
            rep.split = "source";
            for &i in &rows {
                is_test[i] = kept[i].split == Some(Split::Test);
            }
            continue;
        }
        let loose: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| kept[i].split.is_none())
            .collect();
        for &i in &rows {
            is_test[i] = kept[i].split == Some(Split::Test);
        }
        rep.split = if specs[si].group_column.is_some() {
            "stratified, grouped"
        } else {
            "stratified"
        };
        let labels: Vec<usize> = loose.iter().map(|&i| kept[i].label).collect();
        let groups: Option<Vec<Option<String>>> = specs[si]
            .group_column
            .as_ref()
            .map(|_| loose.iter().map(|&i| kept[i].group.clone()).collect());
        let seed = kernels::site_seed(args.seed, si as u64);
        let test = split::test_rows(&labels, groups.as_deref(), args.test_size, seed);
        for (k, &i) in loose.iter().enumerate() {
            is_test[i] = test[k];
        }
    }

    is_test
}

/// Which rows (of those not in test) go to validation: about `--validation-size` of each
/// source's, stratified by class and grouped by the source's group column, seeded apart
/// from the test split.
fn validation_rows(
    kept: &[Candidate],
    is_test: &[bool],
    specs: &[SourceSpec],
    args: &Args,
) -> Vec<bool> {
    let mut is_validation = vec![false; kept.len()];
    for (si, spec) in specs.iter().enumerate() {
        let rows: Vec<usize> = (0..kept.len())
            .filter(|&i| kept[i].source == si && !is_test[i])
            .collect();
        let labels: Vec<usize> = rows.iter().map(|&i| kept[i].label).collect();
        let groups: Option<Vec<Option<String>>> = spec
            .group_column
            .as_ref()
            .map(|_| rows.iter().map(|&i| kept[i].group.clone()).collect());
        let seed = kernels::site_seed(args.seed ^ VALIDATION_SEED, si as u64);
        let chosen = split::test_rows(&labels, groups.as_deref(), args.validation_size, seed);
        for (k, &i) in rows.iter().enumerate() {
            is_validation[i] = chosen[k];
        }
    }
    is_validation
}

/// Keeps the validation split's draws independent of the test split's.
const VALIDATION_SEED: u64 = 0x5641_4C49_4441_5445;

fn side(rows: &[Example], labels: &[String]) -> SideReport {
    let mut class_balance = BTreeMap::new();
    let mut per_source: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for r in rows {
        let label = labels[r.label].clone();
        *class_balance.entry(label.clone()).or_default() += 1;
        *per_source
            .entry(r.source.clone())
            .or_default()
            .entry(label)
            .or_default() += 1;
    }
    SideReport {
        rows: rows.len(),
        class_balance,
        per_source,
    }
}

/// Rows measured for the length percentiles (a seeded sample beyond this).
const LENGTH_SAMPLE: usize = 50_000;

fn measure_lengths(args: &Args, texts: &[&str]) -> LengthReport {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let idx = sample(&mut rng, texts.len(), LENGTH_SAMPLE.min(texts.len())).into_vec();
    let chosen: Vec<&str> = idx.iter().map(|&i| texts[i]).collect();
    let tokenizer = classifier::model_dir::hub::resolve_tokenizer(&args.tokenizer, None)
        .and_then(|src| TextTokenizer::from_dir(&src.path));
    let (unit, tokenizer_name, mut lens): (&str, Option<String>, Vec<usize>) = match tokenizer {
        Ok(tok) => {
            let ids = tok.encode_batch(&chosen, usize::MAX, classifier::Truncation::Head);
            match ids {
                Ok(ids) => (
                    "tokens",
                    Some(args.tokenizer.clone()),
                    ids.iter().map(|i| i.len() - 2).collect(),
                ),
                Err(e) => {
                    tracing::warn!(
                        "tokenizing for the length report failed ({e}); reporting words"
                    );
                    (
                        "words",
                        None,
                        chosen
                            .iter()
                            .map(|t| t.split_whitespace().count())
                            .collect(),
                    )
                }
            }
        }
        Err(e) => {
            tracing::warn!(
                "no tokenizer for the length report ({e}); reporting words instead of tokens"
            );
            (
                "words",
                None,
                chosen
                    .iter()
                    .map(|t| t.split_whitespace().count())
                    .collect(),
            )
        }
    };
    lens.sort_unstable();
    let pct = |p: f64| {
        lens.get(((lens.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let mut percentiles = BTreeMap::new();
    for (name, p) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p95", 0.95),
        ("p99", 0.99),
        ("max", 1.0),
    ] {
        percentiles.insert(name.to_string(), pct(p));
    }
    let budget = args.max_length.saturating_sub(2);
    let truncated = lens.iter().filter(|&&l| l > budget).count();
    LengthReport {
        unit: unit.to_string(),
        tokenizer: tokenizer_name,
        measured_rows: lens.len(),
        percentiles,
        max_length: args.max_length,
        fraction_truncated: if lens.is_empty() {
            0.0
        } else {
            truncated as f64 / lens.len() as f64
        },
    }
}

/// Compose passes `${NAME:-}`, so these defaults are the ones in force.
#[cfg(test)]
#[test]
fn env_example_shows_the_defaults() {
    let env_example = include_str!("../../../.env.example");
    service::check_env_example(&<Args as clap::CommandFactory>::command(), env_example);
}
