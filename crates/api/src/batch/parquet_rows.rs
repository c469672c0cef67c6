//! Parquet tables for `batch_predict`: record batches read across the input's files (one
//! schema for all), written back with every input column as it was (types kept) and the
//! prediction columns after them, and the parts of a sharded run joined.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use classifier::Prediction;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::input::Input;
use super::shard::{PartFile, Shard};
use super::{RowReader, RowWriter, prediction_columns};

/// Rows a merge gathers before it writes them out.
const MERGE_ROWS: usize = 8192;

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))
}

fn writer<W: std::io::Write + Send>(out: W, schema: SchemaRef) -> Result<ArrowWriter<W>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    Ok(ArrowWriter::try_new(out, schema, Some(props))?)
}

/// The schema of `first`, checked to be every file's, and the files' rows.
fn common_schema(first: &Path, files: &[PathBuf]) -> Result<(SchemaRef, u64)> {
    let schema = builder(first)?.schema().clone();
    let mut rows = 0;
    for path in files {
        let b = builder(path)?;
        rows += b.metadata().file_metadata().num_rows().max(0) as u64;
        ensure!(
            same_columns(b.schema(), &schema),
            "{} has other columns than {}: every file of an input needs the same schema",
            path.display(),
            first.display()
        );
    }
    Ok((schema, rows))
}

/// Same column names and types. Nullability may differ: writers mark a column nullable only
/// when a file happens to hold a null.
fn same_columns(a: &Schema, b: &Schema) -> bool {
    let columns = |s: &Schema| -> Vec<(String, DataType)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    columns(a) == columns(b)
}

/// The rows of a shard of Parquet input.
pub struct ParquetRows {
    files: Vec<(usize, PathBuf)>,
    schema: SchemaRef,
    column: usize,
    shard: Option<Shard>,
    current: Option<ParquetRecordBatchReader>,
    /// Rows read of the current file, taken or not (the row shard counts them).
    row: u64,
    done_rows: u64,
    total_rows: u64,
    taken: Vec<PartFile>,
}

impl ParquetRows {
    /// Opens the shard's files and checks the text column, before any model work.
    pub fn open(input: &Input, shard: Option<Shard>, text_column: &str) -> Result<Self> {
        let files = input.files_for(shard);
        let paths: Vec<PathBuf> = files.iter().map(|f| f.1.clone()).collect();
        // The first file of the input sets the schema, so a shard without files still
        // writes an (empty) part with it.
        let path = &input.files[0];
        let (schema, total_rows) = common_schema(path, &paths)?;
        let column = schema.index_of(text_column).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            anyhow::anyhow!(
                "{} has no `{text_column}` column (columns: {}); name the text column with \
                 --text-column",
                path.display(),
                names.join(", ")
            )
        })?;
        let kind = schema.field(column).data_type();
        ensure!(
            matches!(
                kind,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ),
            "{}: column `{text_column}` holds {kind}, not text; name the text column with \
             --text-column",
            path.display()
        );
        Ok(Self {
            files,
            schema,
            column,
            shard: input.row_shard(shard),
            current: None,
            row: 0,
            done_rows: 0,
            total_rows,
            taken: Vec::new(),
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The shard's rows of `batch`, which starts at row `self.row` of its file.
    fn take(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(shard) = self.shard else {
            return Ok(batch);
        };
        let mask: BooleanArray = (0..batch.num_rows() as u64)
            .map(|i| Some(shard.takes(self.row + i)))
            .collect();
        Ok(arrow_select::filter::filter_record_batch(&batch, &mask)?)
    }
}

impl RowReader for ParquetRows {
    type Chunk = RecordBatch;

    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        loop {
            if self.current.is_none() {
                if self.files.is_empty() {
                    return Ok(None);
                }
                let (index, path) = self.files.remove(0);
                self.current = Some(builder(&path)?.with_batch_size(max_rows).build()?);
                self.taken.push(PartFile {
                    index,
                    path,
                    rows: 0,
                });
                self.row = 0;
            }
            let next = self.current.as_mut().expect("an open file").next();
            let Some(batch) = next else {
                self.current = None;
                continue;
            };
            let path = &self.taken.last().expect("an open file").path;
            let batch =
                batch.with_context(|| format!("{}: corrupt Parquet data", path.display()))?;
            let read = batch.num_rows() as u64;
            let batch = self.take(batch)?;
            self.row += read;
            self.done_rows += read;
            self.taken.last_mut().expect("an open file").rows += batch.num_rows() as u64;
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }

    fn texts(&self, chunk: &RecordBatch) -> Result<Vec<Option<String>>> {
        let col = chunk.column(self.column);
        let clean = |t: Option<&str>| t.filter(|t| !t.trim().is_empty()).map(str::to_owned);
        Ok(match col.data_type() {
            DataType::Utf8 => col.as_string::<i32>().iter().map(clean).collect(),
            DataType::LargeUtf8 => col.as_string::<i64>().iter().map(clean).collect(),
            _ => col.as_string_view().iter().map(clean).collect(),
        })
    }

    fn progress(&self) -> (u64, u64) {
        (self.done_rows, self.total_rows)
    }

    fn taken(&self) -> Vec<PartFile> {
        self.taken.clone()
    }
}

/// Writes record batches with their prediction columns (`sentiment` text, `confidence` and
/// `prob_<label>` as float32, null for rows without text).
pub struct ParquetOut<W: std::io::Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    labels: Vec<String>,
    probabilities: bool,
}

impl<W: std::io::Write + Send> ParquetOut<W> {
    pub fn create(out: W, input: &Schema, labels: &[String], probabilities: bool) -> Result<Self> {
        let names: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        // Every column nullable: the files of an input may differ in that (same_columns).
        let mut fields: Vec<Arc<Field>> = input
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        for (i, name) in prediction_columns(&names, labels, probabilities)
            .into_iter()
            .enumerate()
        {
            let kind = if i == 0 {
                DataType::Utf8
            } else {
                DataType::Float32
            };
            fields.push(Arc::new(Field::new(name, kind, true)));
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        Ok(Self {
            writer: writer(out, schema.clone())?,
            schema,
            labels: labels.to_vec(),
            probabilities,
        })
    }
}

impl<W: std::io::Write + Send> RowWriter for ParquetOut<W> {
    type Chunk = RecordBatch;

    fn write(&mut self, chunk: RecordBatch, predictions: &[Option<Prediction>]) -> Result<()> {
        let mut columns: Vec<ArrayRef> = chunk.columns().to_vec();
        let labels: StringArray = predictions
            .iter()
            .map(|p| p.as_ref().map(|p| self.labels[p.class].as_str()))
            .collect();
        columns.push(Arc::new(labels));
        let floats = |f: &dyn Fn(&Prediction) -> f32| -> ArrayRef {
            let values: Float32Array = predictions.iter().map(|p| p.as_ref().map(f)).collect();
            Arc::new(values)
        };
        columns.push(floats(&|p| p.confidence()));
        if self.probabilities {
            for j in 0..self.labels.len() {
                columns.push(floats(&|p| p.probabilities[j]));
            }
        }
        self.writer
            .write(&RecordBatch::try_new(self.schema.clone(), columns)?)?;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        self.writer.close()?;
        Ok(())
    }
}

/// Where a merge stands in one part: its batch in the pool, the batch's rows, the next row.
#[derive(Clone, Copy)]
struct Cursor {
    pool: usize,
    rows: usize,
    at: usize,
}

/// Joins Parquet parts into `out`: output row r comes from the part `plan` yields for it.
pub fn merge<W: std::io::Write + Send>(
    parts: &[PathBuf],
    plan: impl Iterator<Item = usize>,
    out: W,
) -> Result<u64> {
    let (schema, _) = common_schema(&parts[0], parts)?;
    let mut readers = parts
        .iter()
        .map(|p| Ok(builder(p)?.with_batch_size(MERGE_ROWS).build()?))
        .collect::<Result<Vec<_>>>()?;
    let mut writer = writer(out, schema)?;
    let mut cursors: Vec<Option<Cursor>> = vec![None; parts.len()];
    let (mut pool, mut picks) = (Vec::new(), Vec::with_capacity(MERGE_ROWS));
    let mut rows = 0;
    for part in plan {
        while cursors[part].is_none_or(|c| c.at == c.rows) {
            let batch = readers[part].next().transpose()?.with_context(|| {
                format!(
                    "{} ends early: its file and manifest disagree; rerun that shard",
                    parts[part].display()
                )
            })?;
            let batch_rows = batch.num_rows();
            pool.push(batch);
            cursors[part] = Some(Cursor {
                pool: pool.len() - 1,
                rows: batch_rows,
                at: 0,
            });
        }
        let c = cursors[part].as_mut().expect("a batch with rows left");
        picks.push((c.pool, c.at));
        c.at += 1;
        rows += 1;
        if picks.len() == MERGE_ROWS {
            flush(&mut writer, &mut pool, &mut cursors, &mut picks)?;
        }
    }
    flush(&mut writer, &mut pool, &mut cursors, &mut picks)?;
    for ((reader, cursor), path) in readers.iter_mut().zip(&cursors).zip(parts) {
        let left = cursor.is_some_and(|c| c.at < c.rows)
            || reader.any(|b| b.map_or(true, |b| b.num_rows() > 0));
        ensure!(
            !left,
            "{} has more rows than its manifest: rerun that shard",
            path.display()
        );
    }
    writer.close()?;
    Ok(rows)
}

/// Writes the picked rows and keeps only the batches the cursors still read from.
fn flush<W: std::io::Write + Send>(
    writer: &mut ArrowWriter<W>,
    pool: &mut Vec<RecordBatch>,
    cursors: &mut [Option<Cursor>],
    picks: &mut Vec<(usize, usize)>,
) -> Result<()> {
    if picks.is_empty() {
        return Ok(());
    }
    let batches: Vec<&RecordBatch> = pool.iter().collect();
    writer.write(&arrow_select::interleave::interleave_record_batch(
        &batches, picks,
    )?)?;
    picks.clear();
    let mut kept = Vec::new();
    for c in cursors.iter_mut().flatten() {
        kept.push(pool[c.pool].clone());
        c.pool = kept.len() - 1;
    }
    *pool = kept;
    Ok(())
}
