//! What `batch_predict` reads: one CSV, TSV or Parquet file, or every such file in a folder
//! or matching a glob (in name order, all of one format); and what of it a shard takes:
//! every N-th row of a single file, every N-th file of several.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::shard::Shard;

/// A table file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Parquet,
}

impl Format {
    /// The format a file name says; `None` for another extension.
    pub fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "tsv" => Some(Self::Tsv),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format of an output path: Parquet by its extension, else CSV (or TSV).
    pub fn of_output(path: &Path) -> Self {
        Self::of(path).unwrap_or(Self::Csv)
    }

    pub fn is_parquet(self) -> bool {
        self == Self::Parquet
    }

    pub fn delimiter(self) -> u8 {
        if self == Self::Tsv { b'\t' } else { b',' }
    }

    /// The extension of a shard's part: Parquet stays Parquet, text tables become CSV.
    pub fn part_extension(self) -> &'static str {
        if self.is_parquet() { "parquet" } else { "csv" }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Csv => "CSV",
            Self::Tsv => "TSV",
            Self::Parquet => "Parquet",
        }
    }
}

/// The input of a run, resolved to its files.
#[derive(Debug, Clone)]
pub struct Input {
    /// As given: a file, a folder or a glob.
    pub spec: PathBuf,
    /// In name order.
    pub files: Vec<PathBuf>,
    pub format: Format,
    /// A folder or a glob: shards take whole files.
    pub several: bool,
}

impl Input {
    /// A file (any extension but .parquet/.tsv reads as CSV), a folder of .csv/.tsv/.parquet
    /// files, or a glob such as `data/parts/*.parquet`.
    pub fn resolve(spec: &Path) -> Result<Self> {
        if spec.is_dir() {
            return Self::several(spec, list_folder(spec)?);
        }
        if spec.exists() || !is_glob(spec) {
            return Ok(Self {
                spec: spec.to_path_buf(),
                files: vec![spec.to_path_buf()],
                format: Format::of(spec).unwrap_or(Format::Csv),
                several: false,
            });
        }
        Self::several(spec, glob_files(spec)?)
    }

    fn several(spec: &Path, files: Vec<PathBuf>) -> Result<Self> {
        ensure!(
            !files.is_empty(),
            "{} matches no .csv, .tsv or .parquet file: pass a file, a folder of them or a \
             glob such as data/parts/*.parquet",
            spec.display()
        );
        let format = format_of_listed(&files[0])?;
        for f in &files[1..] {
            let other = format_of_listed(f)?;
            ensure!(
                other == format,
                "{} mixes formats: {} is {} but {} is {}; keep one format per input",
                spec.display(),
                files[0].display(),
                format.name(),
                f.display(),
                other.name()
            );
        }
        Ok(Self {
            spec: spec.to_path_buf(),
            files,
            format,
            several: true,
        })
    }

    /// The files that `shard` reads, each with its position in the input.
    pub fn files_for(&self, shard: Option<Shard>) -> Vec<(usize, PathBuf)> {
        self.files
            .iter()
            .enumerate()
            .filter(|(k, _)| !self.several || shard.is_none_or(|s| s.takes(*k as u64)))
            .map(|(k, f)| (k, f.clone()))
            .collect()
    }

    /// The shard's filter on rows: only a single file is split by rows.
    pub fn row_shard(&self, shard: Option<Shard>) -> Option<Shard> {
        shard.filter(|_| !self.several)
    }

    /// Total size and latest modification (seconds since the epoch) of every file of the
    /// input: what a part's manifest records of where it was cut from.
    pub fn identity(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut modified) = (0, 0);
        for f in &self.files {
            let meta =
                std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
            bytes += meta.len();
            let secs = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            modified = modified.max(secs);
        }
        Ok((bytes, modified))
    }

    /// Checks that `output` is written in a format this input can fill.
    pub fn check_output(&self, output: &Path) -> Result<()> {
        let out = Format::of_output(output);
        ensure!(
            out.is_parquet() == self.format.is_parquet(),
            "{} would be {} but the input is {}: batch_predict writes the input's format \
             (every input column kept as it is); name the output .{}",
            output.display(),
            out.name(),
            self.format.name(),
            self.format.part_extension()
        );
        Ok(())
    }
}

fn format_of_listed(path: &Path) -> Result<Format> {
    Format::of(path).with_context(|| {
        format!(
            "{} is not a .csv, .tsv or .parquet file: narrow the glob or move it out",
            path.display()
        )
    })
}

fn is_glob(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.contains(['*', '?', '[']))
}

/// The table files of a folder (hidden files left out), in name order.
fn list_folder(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_file() && !hidden && Format::of(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn glob_files(spec: &Path) -> Result<Vec<PathBuf>> {
    let pattern = spec.to_str().context("the input glob is not UTF-8")?;
    let mut files = Vec::new();
    for entry in glob::glob(pattern).with_context(|| format!("`{pattern}` is not a valid glob"))? {
        let path = entry.with_context(|| format!("cannot read a match of `{pattern}`"))?;
        if path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        bail!("`{pattern}` matches no file");
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_globs_list_their_tables_in_name_order_and_refuse_mixed_formats() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", ".hidden.csv", "notes.txt", "c.csv"] {
            std::fs::write(dir.path().join(name), "text\nx\n").unwrap();
        }
        let input = Input::resolve(dir.path()).unwrap();
        let names: Vec<_> = input
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.csv", "b.csv", "c.csv"]);
        assert!(input.several && input.format == Format::Csv);
        let shard = Shard::new(1, 2).unwrap();
        let taken: Vec<usize> = input.files_for(Some(shard)).iter().map(|f| f.0).collect();
        assert_eq!(taken, [1], "the second of three files, for shard 1/2");
        assert_eq!(input.row_shard(Some(shard)), None);

        let glob = Input::resolve(&dir.path().join("[ab].csv")).unwrap();
        assert_eq!(glob.files.len(), 2);
        std::fs::write(dir.path().join("d.parquet"), "").unwrap();
        let err = Input::resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("mixes formats"), "{err}");
        let err = Input::resolve(&dir.path().join("*.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("notes.txt"), "{err}");
    }

    #[test]
    fn the_output_keeps_the_input_format() {
        let input = Input::resolve(Path::new("in.parquet")).unwrap();
        assert!(input.check_output(Path::new("out.parquet")).is_ok());
        let err = input
            .check_output(Path::new("out.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(".parquet"), "{err}");
        let csv = Input::resolve(Path::new("in.tsv")).unwrap();
        assert!(csv.check_output(Path::new("out.csv")).is_ok());
    }
}
