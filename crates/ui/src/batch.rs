//! CSV files uploaded in the browser: checked, classified through the api in chunks, and
//! returned with `sentiment` and `confidence` columns added.

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
    let mut scores = Vec::with_capacity(present.len());
    for part in present.chunks(chunk.max(1)) {
        scores.extend(client.predict_many(part).await?);
    }
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    let mut header = table.headers.clone();
    header.push("sentiment".into());
    header.push("confidence".into());
    writer.write_record(&header).expect("writing to memory");
    let mut best = scores.into_iter().map(|mut s| {
        s.sort_by(|a, b| b.score.total_cmp(&a.score));
        s.into_iter().next()
    });
    let mut preview = Vec::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut empty = 0;
    for (row, text) in table.rows.iter().zip(&texts) {
        let mut fields: Vec<String> = row.iter().map(str::to_string).collect();
        fields.resize(table.headers.len().max(fields.len()), String::new());
        let (sentiment, confidence) = match text {
            Some(_) => match best.next().flatten() {
                Some(top) => (top.label, format!("{:.6}", top.score)),
                None => (String::new(), String::new()),
            },
            None => {
                empty += 1;
                (String::new(), String::new())
            }
        };
        if !sentiment.is_empty() {
            match counts.iter_mut().find(|(l, _)| *l == sentiment) {
                Some((_, n)) => *n += 1,
                None => counts.push((sentiment.clone(), 1)),
            }
        }
        if preview.len() < PREVIEW_ROWS {
            let t = text.clone().unwrap_or_default();
            let shown: String = t.chars().take(PREVIEW_CHARS).collect();
            preview.push(PreviewRow {
                text: if shown.len() < t.len() {
                    format!("{shown}…")
                } else {
                    shown
                },
                sentiment: sentiment.clone(),
                confidence: confidence.clone(),
            });
        }
        fields.push(sentiment);
        fields.push(confidence);
        writer.write_record(&fields).expect("writing to memory");
    }
    Ok(Classified {
        csv: writer.into_inner().expect("flushing to memory"),
        preview,
        rows: table.rows.len(),
        empty,
        counts,
    })
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
}
