//! CSV and TSV tables for `batch_predict`: rows read a chunk at a time across the input's
//! files (one header for all), written back with the prediction columns after the input's
//! own, and the parts of a sharded run joined.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use classifier::Prediction;

use super::input::{Format, Input};
use super::shard::{PartFile, Shard};
use super::{RowReader, RowWriter, prediction_columns};

type Reader = csv::Reader<BufReader<File>>;

fn open(path: &Path, format: Format) -> Result<(Reader, csv::ByteRecord)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(format.delimiter())
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers = reader
        .byte_headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .clone();
    Ok((reader, headers))
}

/// The rows of a shard of CSV/TSV input.
pub struct CsvRows {
    files: Vec<(usize, PathBuf)>,
    format: Format,
    headers: csv::ByteRecord,
    column: usize,
    shard: Option<Shard>,
    current: Option<(Reader, PathBuf)>,
    /// Rows read of the current file, taken or not (the row shard counts them).
    row: u64,
    done_bytes: u64,
    total_bytes: u64,
    taken: Vec<PartFile>,
}

impl CsvRows {
    /// Opens the shard's files and finds the text column in every one, before any model work.
    pub fn open(input: &Input, shard: Option<Shard>, text_column: &str) -> Result<Self> {
        let files = input.files_for(shard);
        // The first file of the input sets the header, so a shard without files still
        // writes an (empty) part with it.
        let (_, headers) = open(&input.files[0], input.format)?;
        let column = text_column_index(&headers, text_column, &input.files[0])?;
        let mut total_bytes = 0;
        for (_, path) in &files {
            let (_, h) = open(path, input.format)?;
            total_bytes += std::fs::metadata(path).map_or(0, |m| m.len());
            ensure!(
                h == headers,
                "{} has other columns than {}: every file of an input needs the same header",
                path.display(),
                input.files[0].display()
            );
        }
        Ok(Self {
            files,
            format: input.format,
            headers,
            column,
            shard: input.row_shard(shard),
            current: None,
            row: 0,
            done_bytes: 0,
            total_bytes,
            taken: Vec::new(),
        })
    }

    pub fn headers(&self) -> &csv::ByteRecord {
        &self.headers
    }

    /// The open file, opening the next one when the last has ended; `None` after the last.
    fn reader(&mut self) -> Result<Option<&mut (Reader, PathBuf)>> {
        if self.current.is_none() {
            let Some((index, path)) = (!self.files.is_empty()).then(|| self.files.remove(0)) else {
                return Ok(None);
            };
            let (reader, _) = open(&path, self.format)?;
            self.taken.push(PartFile {
                index,
                path: path.clone(),
                rows: 0,
            });
            self.current = Some((reader, path));
            self.row = 0;
        }
        Ok(self.current.as_mut())
    }
}

fn text_column_index(headers: &csv::ByteRecord, column: &str, path: &Path) -> Result<usize> {
    ensure!(
        !headers.is_empty(),
        "{} is empty: expected a header row with a `{column}` column",
        path.display()
    );
    let names = classifier::dataset::header_names(headers);
    names.iter().position(|h| h == column).ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no `{column}` column (columns: {}); name the text column with --text-column",
            path.display(),
            names.join(", ")
        )
    })
}

impl RowReader for CsvRows {
    type Chunk = Vec<csv::ByteRecord>;

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Self::Chunk>> {
        let mut chunk = Vec::with_capacity(max_rows);
        while chunk.len() < max_rows {
            let mut record = csv::ByteRecord::new();
            let ended = match self.reader()? {
                None => break,
                Some((reader, path)) => match reader.read_byte_record(&mut record) {
                    Ok(read) => (!read).then(|| reader.position().byte()),
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        bail!("{} line {line}: {e}", path.display());
                    }
                },
            };
            if let Some(bytes) = ended {
                self.done_bytes += bytes;
                self.current = None;
                continue;
            }
            if self.shard.is_none_or(|s| s.takes(self.row)) {
                chunk.push(record);
                self.taken.last_mut().expect("an open file").rows += 1;
            }
            self.row += 1;
        }
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    fn texts(&self, chunk: &Self::Chunk) -> Result<Vec<Option<String>>> {
        Ok(chunk
            .iter()
            .map(|r| {
                r.get(self.column)
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .filter(|t| !t.trim().is_empty())
            })
            .collect())
    }

    fn progress(&self) -> (u64, u64) {
        let current = self
            .current
            .as_ref()
            .map_or(0, |(r, _)| r.position().byte());
        (self.done_bytes + current, self.total_bytes)
    }

    fn taken(&self) -> Vec<PartFile> {
        self.taken.clone()
    }
}

/// Writes rows with their prediction columns.
pub struct CsvOut<W: std::io::Write> {
    writer: csv::Writer<W>,
    width: usize,
    labels: Vec<String>,
    probabilities: bool,
}

impl<W: std::io::Write> CsvOut<W> {
    pub fn create(
        out: W,
        format: Format,
        headers: &csv::ByteRecord,
        labels: &[String],
        probabilities: bool,
    ) -> Result<Self> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(format.delimiter())
            .flexible(true)
            .from_writer(out);
        let names = classifier::dataset::header_names(headers);
        let mut header = headers.clone();
        for c in prediction_columns(&names, labels, probabilities) {
            header.push_field(c.as_bytes());
        }
        writer.write_byte_record(&header)?;
        Ok(Self {
            writer,
            width: headers.len(),
            labels: labels.to_vec(),
            probabilities,
        })
    }
}

impl<W: std::io::Write> RowWriter for CsvOut<W> {
    type Chunk = Vec<csv::ByteRecord>;

    fn write(&mut self, chunk: Self::Chunk, predictions: &[Option<Prediction>]) -> Result<()> {
        for (mut record, prediction) in chunk.into_iter().zip(predictions) {
            // Rows shorter than the header get their missing fields, so columns line up.
            while record.len() < self.width {
                record.push_field(b"");
            }
            match prediction {
                Some(p) => {
                    record.push_field(self.labels[p.class].as_bytes());
                    record.push_field(format!("{:.6}", p.confidence()).as_bytes());
                    if self.probabilities {
                        for prob in &p.probabilities {
                            record.push_field(format!("{prob:.6}").as_bytes());
                        }
                    }
                }
                None => {
                    let empty = 2 + if self.probabilities {
                        self.labels.len()
                    } else {
                        0
                    };
                    for _ in 0..empty {
                        record.push_field(b"");
                    }
                }
            }
            self.writer.write_byte_record(&record)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }
}

/// Joins CSV parts into `out`: output row r comes from the part `plan` yields for it.
pub fn merge(
    parts: &[PathBuf],
    plan: impl Iterator<Item = usize>,
    out: impl std::io::Write,
) -> Result<u64> {
    let mut readers = parts
        .iter()
        .map(|p| open(p, Format::Csv))
        .collect::<Result<Vec<_>>>()?;
    let header = readers[0].1.clone();
    for ((_, h), path) in readers.iter().zip(parts) {
        ensure!(
            h == &header,
            "{} has other columns than {}",
            path.display(),
            parts[0].display()
        );
    }
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(BufWriter::with_capacity(1 << 20, out));
    writer.write_byte_record(&header)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    for part in plan {
        ensure!(
            readers[part].0.read_byte_record(&mut record)?,
            "{} ends early: its file and manifest disagree; rerun that shard",
            parts[part].display()
        );
        writer.write_byte_record(&record)?;
        rows += 1;
    }
    for ((reader, _), path) in readers.iter_mut().zip(parts) {
        ensure!(
            !reader.read_byte_record(&mut record)?,
            "{} has more rows than its manifest: rerun that shard",
            path.display()
        );
    }
    writer.flush()?;
    Ok(rows)
}
