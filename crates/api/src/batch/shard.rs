//! Sharded batch jobs: `batch_predict --shard I/N` classifies every N-th row of a file from
//! row I, or every N-th file of a folder or glob from file I (a Kubernetes Indexed Job's
//! pod, a Swarm job's task), into its own part file; `batch_predict merge` joins the parts
//! back into one table in input order.
//!
//! Rows (or files) are dealt round-robin, so a shard needs no row count up front and the
//! merge streams through all parts at once. Each part has a manifest naming the input it was
//! cut from (path, size, modification time), the shard, its row count and the files it read;
//! merge refuses a set with a part missing, one cut from another input or into another
//! count, or rows that do not add up. Rerunning a shard replaces its part and nothing else.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::input::Input;

/// Shard `index` of `count` (0-based): rows `index`, `index + count`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N`, as `--shard 2/8`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: write I/N, e.g. 0/4 (I from 0 to N-1)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(index, count)
    }
}

impl Shard {
    pub fn new(index: usize, count: usize) -> std::result::Result<Self, String> {
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index} of {count} does not exist: the index runs from 0 to the count - 1"
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether row `row` (0-based, header excluded) is this shard's.
    pub fn takes(&self, row: u64) -> bool {
        row % self.count as u64 == self.index as u64
    }

    /// How many of `rows` rows are this shard's.
    pub fn rows_of(&self, rows: u64) -> u64 {
        let (n, i) = (self.count as u64, self.index as u64);
        rows.saturating_sub(i).div_ceil(n)
    }

    /// `part-I-of-N.<extension>` in `dir`.
    pub fn part_path(&self, dir: &Path, extension: &str) -> PathBuf {
        dir.join(format!("part-{}-of-{}.{extension}", self.index, self.count))
    }

    fn manifest_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("part-{}-of-{}.json", self.index, self.count))
    }
}

/// One file of a folder or glob input that a part read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartFile {
    /// Its position in the input's files.
    pub index: usize,
    pub path: PathBuf,
    /// Rows of it in the part.
    pub rows: u64,
}

/// What a part was cut from, written beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file, folder or glob as given.
    pub input: PathBuf,
    /// Bytes of all the input's files.
    pub input_bytes: u64,
    /// Seconds since the epoch of the latest modification of the input's files.
    pub input_modified: u64,
    /// How many files the input has.
    #[serde(default = "one")]
    pub input_files: usize,
    pub shard: Shard,
    pub rows: u64,
    /// The files this part read, for a folder or glob input (empty for one file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PartFile>,
    /// The part's extension: csv or parquet.
    #[serde(default = "csv_extension")]
    pub format: String,
}

fn one() -> usize {
    1
}

fn csv_extension() -> String {
    "csv".into()
}

impl Manifest {
    /// The input's identity, for `shard` with `rows` rows read from the `taken` files.
    pub fn of(input: &Input, shard: Shard, rows: u64, taken: Vec<PartFile>) -> Result<Self> {
        let (bytes, modified) = input.identity()?;
        Ok(Self {
            input: input.spec.clone(),
            input_bytes: bytes,
            input_modified: modified,
            input_files: input.files.len(),
            shard,
            rows,
            files: if input.several { taken } else { Vec::new() },
            format: input.format.part_extension().into(),
        })
    }

    /// Writes the manifest of a finished part (atomically: a reader sees all or nothing).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = self.shard.manifest_path(dir);
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        serde_json::to_writer_pretty(tmp.as_file(), self)?;
        tmp.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| {
            format!(
                "{} is missing: its part was not finished (rerun that shard)",
                path.display()
            )
        })?;
        serde_json::from_reader(BufReader::new(file))
            .with_context(|| format!("{} is not a part manifest", path.display()))
    }

    fn same_input(&self, other: &Self) -> bool {
        let identity = |m: &Self| {
            (
                m.input.clone(),
                m.input_bytes,
                m.input_modified,
                m.input_files,
                m.shard.count,
                m.format.clone(),
            )
        };
        identity(self) == identity(other)
    }

    fn part_path(&self, dir: &Path) -> PathBuf {
        self.shard.part_path(dir, &self.format)
    }
}

/// The manifests of every part in `dir`, in shard order, checked to be one complete set.
fn complete_set(dir: &Path) -> Result<Vec<Manifest>> {
    let mut counts: Vec<usize> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(shard) = part_name(&name) {
            counts.push(shard.count);
        }
    }
    counts.sort_unstable();
    counts.dedup();
    let count = match counts.as_slice() {
        [n] => *n,
        [] => bail!(
            "{} has no part-I-of-N.csv (or .parquet) files: run the shards first",
            dir.display()
        ),
        several => bail!(
            "{} holds parts of several splits (of {several:?}): keep one split per folder",
            dir.display()
        ),
    };
    let manifests = (0..count)
        .map(|index| {
            let shard = Shard { index, count };
            let manifest = Manifest::read(&shard.manifest_path(dir)).with_context(|| {
                format!("part {index}/{count} is missing or unfinished: rerun that shard")
            })?;
            ensure!(
                manifest.part_path(dir).is_file(),
                "{} is missing: rerun shard {index}/{count}",
                manifest.part_path(dir).display()
            );
            Ok(manifest)
        })
        .collect::<Result<Vec<_>>>()?;
    check_set(&manifests)?;
    Ok(manifests)
}

/// `part-I-of-N.csv` (or .parquet) as the shard it names.
fn part_name(name: &str) -> Option<Shard> {
    let rest = name.strip_prefix("part-")?;
    let rest = rest
        .strip_suffix(".csv")
        .or_else(|| rest.strip_suffix(".parquet"))?;
    let (i, n) = rest.split_once("-of-")?;
    Shard::new(i.parse().ok()?, n.parse().ok()?).ok()
}

/// Every part was cut from the same input into the same count, and the rows add up.
fn check_set(manifests: &[Manifest]) -> Result<()> {
    let first = &manifests[0];
    for m in manifests {
        ensure!(
            m.same_input(first),
            "part {}/{} was cut from {} ({} bytes) but part 0 from {} ({} bytes): a foreign \
             part; rerun that shard on the same input",
            m.shard.index,
            m.shard.count,
            m.input.display(),
            m.input_bytes,
            first.input.display(),
            first.input_bytes
        );
    }
    if first.input_files > 1 || !first.files.is_empty() {
        return check_files(manifests);
    }
    let total: u64 = manifests.iter().map(|m| m.rows).sum();
    for m in manifests {
        ensure!(
            m.rows == m.shard.rows_of(total),
            "part {}/{} has {} rows where a split of {total} rows gives it {}: parts from \
             different runs; rerun the shards",
            m.shard.index,
            m.shard.count,
            m.rows,
            m.shard.rows_of(total)
        );
    }
    Ok(())
}

/// Each part of a folder or glob input read exactly its files, all of them.
fn check_files(manifests: &[Manifest]) -> Result<()> {
    for m in manifests {
        let expected: Vec<usize> = (m.shard.index..m.input_files)
            .step_by(m.shard.count)
            .collect();
        let read: Vec<usize> = m.files.iter().map(|f| f.index).collect();
        ensure!(
            read == expected,
            "part {}/{} read files {read:?} of the input where its shard is files \
             {expected:?}: an unfinished or foreign part; rerun that shard",
            m.shard.index,
            m.shard.count
        );
        ensure!(
            m.files.iter().map(|f| f.rows).sum::<u64>() == m.rows,
            "part {}/{}: its files' rows do not add up to its own; rerun that shard",
            m.shard.index,
            m.shard.count
        );
    }
    Ok(())
}

/// For every output row in input order, the part it is in.
fn plan(manifests: &[Manifest]) -> Box<dyn Iterator<Item = usize> + '_> {
    let parts = manifests.len();
    if manifests[0].files.is_empty() && manifests[0].input_files <= 1 {
        let total: u64 = manifests.iter().map(|m| m.rows).sum();
        return Box::new((0..total).map(move |row| (row % parts as u64) as usize));
    }
    let files = manifests[0].input_files;
    Box::new((0..files).flat_map(move |k| {
        let part = k % parts;
        std::iter::repeat_n(part, manifests[part].files[k / parts].rows as usize)
    }))
}

/// Joins the parts in `dir` into `output`, in input order; returns the rows written.
pub fn merge(dir: &Path, output: &Path) -> Result<u64> {
    let manifests = complete_set(dir)?;
    let format = &manifests[0].format;
    let parquet = format == "parquet";
    ensure!(
        super::input::Format::of_output(output).is_parquet() == parquet,
        "the parts are .{format} files: name the merged output .{format}"
    );
    let parts: Vec<PathBuf> = manifests.iter().map(|m| m.part_path(dir)).collect();
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".batch_predict-merge-")
        .tempfile_in(&out_dir)
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let rows = if parquet {
        super::parquet_rows::merge(&parts, plan(&manifests), out)?
    } else {
        super::csv_rows::merge(&parts, plan(&manifests), out)?
    };
    super::persist(tmp, output)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row goes to exactly one shard, and each shard's count is what `rows_of` says.
    #[test]
    fn shards_cover_every_row_exactly_once() {
        for count in 1..=7 {
            for rows in [0u64, 1, 5, 6, 7, 13, 100] {
                let shards: Vec<Shard> =
                    (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
                for row in 0..rows {
                    let owners = shards.iter().filter(|s| s.takes(row)).count();
                    assert_eq!(owners, 1, "row {row} of {rows} in {count} shards");
                }
                for s in &shards {
                    let taken = (0..rows).filter(|r| s.takes(*r)).count() as u64;
                    assert_eq!(taken, s.rows_of(rows), "{s:?} of {rows} rows");
                }
            }
        }
    }

    #[test]
    fn shards_parse_as_i_of_n_and_refuse_what_does_not_exist() {
        assert_eq!(
            "2/8".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 8 }
        );
        for bad in ["8/8", "1/0", "2", "a/b", "-1/3"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("shard"), "{bad}: {err}");
        }
        assert_eq!(
            part_name("part-3-of-4.csv"),
            Some(Shard { index: 3, count: 4 })
        );
        assert_eq!(part_name("part-4-of-4.csv"), None);
    }
}
