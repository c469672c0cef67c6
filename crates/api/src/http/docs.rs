//! `GET /docs`: a self-contained HTML page rendered from the OpenAPI document (no CDN, no
//! JavaScript, so it works in offline deployments).

use std::fmt::Write;

use serde_json::Value;
use utoipa::openapi::OpenApi;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ref_name(v: &Value) -> Option<String> {
    v.get("$ref")
        .and_then(Value::as_str)
        .map(|r| r.rsplit('/').next().unwrap_or(r).to_string())
}

/// A short type description of a JSON schema.
fn type_of(schema: &Value) -> String {
    if let Some(name) = ref_name(schema) {
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(&name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(items) = schema.get(key).and_then(Value::as_array) {
            return items.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!("[{}]", schema.get("items").map(type_of).unwrap_or_default())
        }
        Some(Value::String(t)) => esc(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(esc)
            .collect::<Vec<_>>()
            .join(" | "),
        _ if schema.get("enum").is_some() => "enum".into(),
        _ => "object".into(),
    }
}

/// The page for `api`.
pub fn render(api: &OpenApi) -> String {
    let doc = serde_json::to_value(api).expect("the spec serializes");
    let mut h = String::new();
    header(&mut h, &doc);
    h.push_str("<h2>Endpoints</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                operation(&mut h, method, path, op);
            }
        }
    }
    h.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            schema_section(&mut h, name, schema);
        }
    }
    h.push_str("<p>* required</p></body></html>");
    h
}

/// The page's style sheet: GitHub-like, no external assets.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1f2328}\
    code,pre{background:#f6f8fa;border-radius:4px;padding:.1rem .3rem}pre{padding:.75rem;overflow-x:auto}\
    .op{border:1px solid #d0d7de;border-radius:6px;padding:1rem;margin:1rem 0}\
    .m{font-weight:700;text-transform:uppercase;margin-right:.5rem}table{border-collapse:collapse}\
    td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}";

/// A first request to try, shown under the title.
const TRY: &str = r#"<code>curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"text": "A wonderful film"}'</code>"#;

/// The head, the style sheet, the title and a first request to try.
fn header(h: &mut String, doc: &Value) {
    let title = esc(doc["info"]["title"].as_str().unwrap_or("API"));
    let description = esc(doc["info"]["description"].as_str().unwrap_or(""));
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} docs</title><style>{STYLE}</style></head><body><h1>{title}</h1>\
         <p>{description}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
         Try: {TRY}</p>",
    );
}

/// One endpoint: method, path, summary, request body and its responses.
fn operation(h: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        h,
        "<div class=\"op\"><div><span class=\"m\">{}</span><code>{}</code></div>",
        esc(method),
        esc(path)
    );
    if let Some(s) = op["summary"].as_str() {
        let _ = write!(h, "<p><strong>{}</strong></p>", esc(s));
    }
    if let Some(d) = op["description"].as_str() {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    if let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema") {
        let _ = write!(h, "<p>Request body: {}</p>", type_of(schema));
    }
    if let Some(responses) = op["responses"].as_object() {
        h.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
        for (code, r) in responses {
            let body = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .and_then(|c| c.get("schema"))
                .map(type_of)
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(code),
                esc(r["description"].as_str().unwrap_or("")),
                body
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
}

/// One schema: its fields (required ones starred), its values, or its type.
fn schema_section(h: &mut String, name: &str, schema: &Value) {
    let _ = write!(h, "<h3 id=\"schema-{0}\">{0}</h3>", esc(name));
    if let Some(d) = schema["description"].as_str() {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    if let Some(props) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        h.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
        for (field, p) in props {
            let star = if required.contains(&field.as_str()) {
                " *"
            } else {
                ""
            };
            let _ = write!(
                h,
                "<tr><td><code>{}</code>{star}</td><td>{}</td><td>{}</td></tr>",
                esc(field),
                type_of(p),
                esc(p["description"].as_str().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    } else if let Some(values) = schema["enum"].as_array() {
        let list: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("<code>{}</code>", esc(v)))
            .collect();
        let _ = write!(h, "<p>One of {}</p>", list.join(", "));
    } else {
        let _ = write!(h, "<p>{}</p>", type_of(schema));
    }
}
