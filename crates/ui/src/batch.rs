//! CSV files uploaded in the browser: checked, classified through the api in chunks, and
//! returned with `sentiment` and `confidence` columns added.

use api_types::LabelScore;

use crate::client::{ApiClient, ApiFailure};

/// Rows classified through the ui; bigger files belong to `batch_predict`.
pub const MAX_ROWS: usize = 20_000;
/// Rows shown in the preview.
pub const PREVIEW_ROWS: usize = 20;
/// Characters of text shown per preview row.
const PREVIEW_CHARS: usize = 160;

/// A parsed upload.
#[derive(Debug, Clone)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<csv::StringRecord>,
}

/// Why an upload cannot be used, worded for the person who sent it.
pub fn parse(bytes: &[u8]) -> Result<Table, String> {
    if bytes.is_empty() {
        return Err("the file is empty: choose a CSV file with a header row".into());
    }
    if bytes.contains(&0) {
        return Err("this is not a CSV file (it contains binary data): export your data as CSV with a header row".into());
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(
            "this is not a UTF-8 CSV file: save it as CSV UTF-8 and upload it again".into(),
        );
    }
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("this is not a readable CSV file: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err("the file has no header row: the first line must name the columns".into());
    }
    let mut rows = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.map_err(|e| format!("line {}: not valid CSV ({e})", i + 2))?;
        if rows.len() == MAX_ROWS {
            return Err(format!(
                "the file has more than {MAX_ROWS} rows: classify it with the batch command instead \
                 (docker compose exec api batch_predict INPUT.csv OUTPUT.csv)"
            ));
        }
        rows.push(r);
    }
    if rows.is_empty() {
        return Err("the file has a header but no rows".into());
    }
    Ok(Table { headers, rows })
}

/// One preview line.
#[derive(Debug, Clone)]
pub struct PreviewRow {
    pub text: String,
    pub sentiment: String,
    pub confidence: String,
}

/// The classified file and its preview.
#[derive(Debug, Clone)]
pub struct Classified {
    pub csv: Vec<u8>,
    pub preview: Vec<PreviewRow>,
    pub rows: usize,
    pub empty: usize,
    pub counts: Vec<(String, usize)>,
}

/// Classifies the `column` of every row through the api, `chunk` texts per request.
pub async fn classify(
    client: &ApiClient,
    table: &Table,
    column: usize,
    chunk: usize,
) -> Result<Classified, ApiFailure> {
    let texts: Vec<Option<String>> = table
        .rows
        .iter()
        .map(|r| {
            r.get(column)
                .map(str::to_string)
                .filter(|t| !t.trim().is_empty())
        })
        .collect();
    let present: Vec<String> = texts.iter().flatten().cloned().collect();
    let (mut scores, mut ids) = (Vec::with_capacity(present.len()), Vec::new());
    for part in present.chunks(chunk.max(1)) {
        let (s, i) = client.predict_many(part).await?;
        scores.extend(s);
        ids.extend(i);
    }
    // With a prediction log, every row carries its prediction's id, so that a corrected
    // copy of the file can be sent back as feedback.
    let ids = (!ids.is_empty() && ids.len() == scores.len()).then_some(ids);
    let best = scores
        .into_iter()
        .map(|mut s| {
            s.sort_by(|a, b| b.score.total_cmp(&a.score));
            s.into_iter().next()
        })
        .collect();
    Ok(write_result(table, &texts, best, ids))
}

/// The table with each row's top label, its probability and (with a log) its prediction id,
/// and the preview and counts the page shows; `best` and `ids` are per row with a text.
fn write_result(
    table: &Table,
    texts: &[Option<String>],
    best: Vec<Option<LabelScore>>,
    ids: Option<Vec<String>>,
) -> Classified {
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    let mut header = table.headers.clone();
    header.extend(["sentiment".into(), "confidence".into()]);
    if ids.is_some() {
        header.push(ID_COLUMN.into());
    }
    writer.write_record(&header).expect("writing to memory");
    let (mut best, mut ids) = (best.into_iter(), ids.map(Vec::into_iter));
    let mut out = Classified {
        csv: Vec::new(),
        preview: Vec::new(),
        rows: table.rows.len(),
        empty: 0,
        counts: Vec::new(),
    };
    for (row, text) in table.rows.iter().zip(texts) {
        let mut fields: Vec<String> = row.iter().map(str::to_string).collect();
        fields.resize(table.headers.len().max(fields.len()), String::new());
        let top = text.as_ref().and_then(|_| best.next().flatten());
        out.empty += usize::from(text.is_none());
        let (sentiment, confidence) = top.map_or_else(Default::default, |top| {
            (top.label, format!("{:.6}", top.score))
        });
        out.count(&sentiment);
        out.preview_row(text.as_deref().unwrap_or_default(), &sentiment, &confidence);
        fields.extend([sentiment, confidence]);
        if let Some(ids) = &mut ids {
            fields.push(text.as_ref().and_then(|_| ids.next()).unwrap_or_default());
        }
        writer.write_record(&fields).expect("writing to memory");
    }
    out.csv = writer.into_inner().expect("flushing to memory");
    out
}

impl Classified {
    fn count(&mut self, sentiment: &str) {
        if sentiment.is_empty() {
            return;
        }
        match self.counts.iter_mut().find(|(l, _)| l == sentiment) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((sentiment.to_string(), 1)),
        }
    }

    fn preview_row(&mut self, text: &str, sentiment: &str, confidence: &str) {
        if self.preview.len() >= PREVIEW_ROWS {
            return;
        }
        let shown: String = text.chars().take(PREVIEW_CHARS).collect();
        self.preview.push(PreviewRow {
            text: if shown.len() < text.len() {
                format!("{shown}…")
            } else {
                shown
            },
            sentiment: sentiment.to_string(),
            confidence: confidence.to_string(),
        });
    }
}

/// The column of a classified file that holds each row's prediction id.
pub const ID_COLUMN: &str = "prediction_id";
/// The column of a corrections file that holds the right label.
pub const LABEL_COLUMN: &str = "label";

/// The corrections in an uploaded file: (prediction id, right label) for every row whose
/// `label` is filled in.
pub fn corrections(table: &Table) -> Result<Vec<(String, String)>, String> {
    let column = |name: &str| table.headers.iter().position(|h| h == name);
    let (Some(id), Some(label)) = (column(ID_COLUMN), column(LABEL_COLUMN)) else {
        return Err(format!(
            "a corrections file needs a `{ID_COLUMN}` column (as in a file classified here) and a              `{LABEL_COLUMN}` column with the right label for the rows you checked (columns: {})",
            table.headers.join(", ")
        ));
    };
    let found: Vec<(String, String)> = table
        .rows
        .iter()
        .filter_map(|r| {
            let (id, label) = (r.get(id)?.trim(), r.get(label)?.trim());
            (!id.is_empty() && !label.is_empty()).then(|| (id.to_string(), label.to_string()))
        })
        .collect();
    if found.is_empty() {
        return Err(format!(
            "no row has both a `{ID_COLUMN}` and a `{LABEL_COLUMN}`: fill in the right label for the rows you checked"
        ));
    }
    Ok(found)
}

/// What sending a corrections file did.
#[derive(Debug, Clone, Default)]
pub struct FeedbackSummary {
    pub file_name: String,
    pub sent: usize,
    /// Rows where the model was wrong.
    pub corrected: usize,
    /// Rows where the model was right.
    pub confirmed: usize,
    /// The first refusals, with their rows.
    pub errors: Vec<String>,
    pub failed: usize,
}

/// Sends every correction to the api.
pub async fn send_corrections(
    client: &ApiClient,
    file_name: String,
    rows: &[(String, String)],
) -> Result<FeedbackSummary, ApiFailure> {
    let mut summary = FeedbackSummary {
        file_name,
        ..FeedbackSummary::default()
    };
    for (i, (id, label)) in rows.iter().enumerate() {
        summary.sent += 1;
        match client.feedback(id, label).await {
            Ok(r) if r.correct => summary.confirmed += 1,
            Ok(_) => summary.corrected += 1,
            // The api is gone: the rest would fail the same way.
            Err(e @ ApiFailure::Unreachable { .. }) => return Err(e),
            Err(e) => {
                summary.failed += 1;
                if summary.errors.len() < 5 {
                    summary.errors.push(format!("correction {}: {e}", i + 1));
                }
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_a_usable_csv() {
        assert!(parse(b"").unwrap_err().contains("empty"));
        assert!(
            parse(b"\x89PNG\r\n\x1a\n\0\0")
                .unwrap_err()
                .contains("not a CSV")
        );
        assert!(parse(b"text\n\xff\xfe\n").unwrap_err().contains("UTF-8"));
        assert!(parse(b"text,label\n").unwrap_err().contains("no rows"));
        let t = parse("id,text\n1,\"a, b\"\n2,\n".as_bytes()).unwrap();
        assert_eq!(t.headers, ["id", "text"]);
        assert_eq!(t.rows.len(), 2);
    }

    #[test]
    fn corrections_are_the_rows_with_a_label() {
        let t = parse(
            b"text,prediction_id,label
a,id1,negative
b,id2,
c,,positive
",
        )
        .unwrap();
        assert_eq!(
            corrections(&t).unwrap(),
            vec![("id1".to_string(), "negative".to_string())]
        );
        let none = parse(
            b"text,prediction_id,label
a,id1,
",
        )
        .unwrap();
        assert!(
            corrections(&none)
                .unwrap_err()
                .contains("fill in the right label")
        );
        let wrong = parse(
            b"text,sentiment
a,positive
",
        )
        .unwrap();
        let e = corrections(&wrong).unwrap_err();
        assert!(
            e.contains("`prediction_id`") && e.contains("text, sentiment"),
            "{e}"
        );
    }
}
