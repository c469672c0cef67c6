//! The api over HTTP on an ephemeral port, with a tiny generated model: every endpoint,
//! every error, overload, readiness, auth, and batching equivalence.

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use classifier::Classifier;
use classifier::testing::{TinySize, vocab_for, write_tiny_model};
use common::{SLOW, Server, TEXTS, assert_error, tiny_model};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    std::fs::create_dir_all(dir.path().join("results")).unwrap();
    std::fs::write(
        dir.path().join("results/metrics.json"),
        r#"{"accuracy": 0.9, "f1_score": 0.88}"#,
    )
    .unwrap();
    let s = Server::ready(&model, &[]).await;

    let (status, body) = s.get("/health").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let (status, body) = s.predict(json!({"text": "a wonderful film"})).await;
    assert_eq!(status, 200, "{body}");
    let sentiment = body["sentiment"].as_str().unwrap();
    assert!(["negative", "positive"].contains(&sentiment));
    let scores = body["scores"].as_array().unwrap();
    let probs: Vec<f64> = scores
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    assert!(
        (probs.iter().sum::<f64>() - 1.0).abs() < 1e-5,
        "probabilities sum to 1"
    );
    let best = probs.iter().cloned().fold(f64::MIN, f64::max);
    assert!(
        (body["confidence"].as_f64().unwrap() - best).abs() < 1e-7,
        "confidence is the top probability"
    );
    assert_eq!(scores[0]["label"], "negative");

    // The answer names the model that gave it, as /info does.
    let (_, info) = s.get("/info").await;
    let version = serde_json::from_str::<Value>(&info).unwrap()["model_version"].clone();
    assert_eq!(version.as_str().map(str::len), Some(16), "{info}");
    let r = s
        .client
        .post(format!("{}/predict", s.url))
        .json(&json!({"text": "a wonderful film"}))
        .send()
        .await
        .unwrap();
    let header = r.headers()["x-model-version"].to_str().unwrap().to_string();
    assert_eq!(json!(header), version);

    // TEI forms: one input -> sorted list; many -> list of lists; raw scores -> logits.
    let (status, one) = s.predict(json!({"inputs": "a wonderful film"})).await;
    assert_eq!(status, 200);
    let one = one.as_array().unwrap();
    assert!(
        one[0]["score"].as_f64() >= one[1]["score"].as_f64(),
        "sorted by score"
    );
    assert_eq!(one[0]["label"], sentiment);
    let (status, many) = s
        .predict(json!({"inputs": ["great great great", "meh"]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(many.as_array().unwrap().len(), 2);
    let (_, raw) = s
        .predict(json!({"inputs": "a wonderful film", "raw_scores": true}))
        .await;
    let raw: Vec<f64> = raw
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["score"].as_f64().unwrap())
        .collect();
    let z: f64 = raw.iter().map(|l| l.exp()).sum();
    assert!(
        ((raw[0].exp() / z) - one[0]["score"].as_f64().unwrap()).abs() < 1e-5,
        "softmax(raw) = probabilities"
    );

    let (status, info) = s.get("/info").await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["labels"], json!(["negative", "positive"]));
    assert_eq!(info["ready"], true);
    assert_eq!(info["training_metrics"]["accuracy"], 0.9);
    assert_eq!(info["precision"], "f32");
    assert_eq!(info["limits"]["max_inputs"], 64);

    s.get("/training").await;
    let (status, _) = s.get("/no-such-route").await;
    assert_eq!(status, 404);
    let (status, metrics) = s.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"}",
        "http_requests_total{method=\"GET\",route=\"/training\",",
        "http_requests_total{method=\"GET\",route=\"other\",status=\"404\"}",
        "predict_queue_duration_seconds_bucket",
        "predict_tokenization_duration_seconds_bucket",
        "predict_inference_duration_seconds_bucket",
        "predict_batch_size_bucket",
        "predict_queue_depth",
        "http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }

    let (status, spec) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    let spec: Value = serde_json::from_str(&spec).unwrap();
    assert!(spec["paths"]["/predict"]["post"].is_object());
    let (status, docs) = s.get("/docs").await;
    assert_eq!(status, 200);
    assert!(docs.contains("/predict") && docs.contains("ErrorResponse"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let s = Server::ready(&model, &["--max-inputs", "3", "--max-body-bytes", "1024"]).await;

    let (st, b) = s.post("{not json").await;
    assert_error(st, &b, 400, "invalid_json");
    let (st, b) = s.post(b"{\"text\": \"caf\xe9\"}".to_vec()).await;
    assert_error(st, &b, 400, "invalid_json");
    let (st, b) = s.predict(json!({"text": 3})).await;
    assert_error(st, &b, 422, "validation");
    let (st, b) = s.predict(json!({"text": "   "})).await;
    assert_error(st, &b, 422, "validation");
    let (st, b) = s.predict(json!({"inputs": []})).await;
    assert_error(st, &b, 422, "validation");
    let (st, b) = s.predict(json!({"inputs": ["ok", ""]})).await;
    assert_error(st, &b, 422, "validation");
    assert!(b["error"].as_str().unwrap().contains("input 1"));
    let (st, b) = s.predict(json!({"inputs": ["a", "b", "c", "d"]})).await;
    assert_error(st, &b, 422, "validation");
    let (st, b) = s.predict(json!({"review": "x"})).await;
    assert_error(st, &b, 422, "validation");
    let (st, b) = s.predict(json!(["a list"])).await;
    assert_error(st, &b, 422, "validation");
    let (st, b) = s.predict(json!({"text": "x".repeat(2000)})).await;
    assert_error(st, &b, 413, "payload_too_large");
    // Too long for the model: read in windows by default (so nothing is cut), truncated on
    // request, and refused when truncation is asked for but not allowed.
    let long = "great ".repeat(150);
    let (st, _) = s.predict(json!({"inputs": long, "truncate": false})).await;
    assert_eq!(st, 200, "windows read the whole text");
    let (st, _) = s
        .predict(json!({"inputs": long, "long_text": "truncate"}))
        .await;
    assert_eq!(st, 200);
    let (st, b) = s
        .predict(json!({"inputs": long, "truncate": false, "long_text": "truncate"}))
        .await;
    assert_error(st, &b, 422, "validation");
    assert!(b["error"].as_str().unwrap().contains("tokens"));
    let (st, b) = s
        .predict(json!({"text": long, "long_text": "sideways"}))
        .await;
    assert_error(st, &b, 422, "validation");

    let (st, b) = s.get("/nope").await;
    assert_error(st, &serde_json::from_str(&b).unwrap(), 404, "not_found");
    let (st, b) = s.get("/predict").await;
    assert_error(
        st,
        &serde_json::from_str(&b).unwrap(),
        405,
        "method_not_allowed",
    );
    // The server is still fine.
    assert_eq!(s.predict(json!({"text": "great"})).await.0, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_predict_and_reload_only() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let s = Server::ready(&model, &["--api-key", "s3cret"]).await;
    let (st, b) = s.predict(json!({"text": "great"})).await;
    assert_error(st, &b, 401, "unauthorized");
    let with_key = |key: &'static str| {
        s.client
            .post(format!("{}/predict", s.url))
            .bearer_auth(key)
            .json(&json!({"text": "great"}))
            .send()
    };
    assert_eq!(with_key("wrong").await.unwrap().status(), 401);
    assert_eq!(with_key("s3cret").await.unwrap().status(), 200);
    assert_eq!(s.get("/health").await.0, 200);
    // Reloading is guarded like /predict; with the key, the folder's model is the one
    // already serving.
    let reload = |key: Option<&'static str>| {
        let r = s.client.post(format!("{}/admin/reload", s.url));
        match key {
            Some(k) => r.bearer_auth(k).send(),
            None => r.send(),
        }
    };
    assert_eq!(reload(None).await.unwrap().status(), 401);
    let r = reload(Some("s3cret")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["swapped"], false);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_until_a_model_appears() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model_output");
    let s = Server::start(&model, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, body) = s.get("/health").await;
    assert_eq!(st, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("run `docker compose up trainer`"),
        "{body}"
    );
    let (st, b) = s.predict(json!({"text": "great"})).await;
    assert_error(st, &b, 503, "unhealthy");
    let (_, info) = s.get("/info").await;
    assert_eq!(
        serde_json::from_str::<Value>(&info).unwrap()["ready"],
        false
    );

    // The trainer finishes: the api picks the model up without a restart.
    tiny_model(dir.path(), TinySize::default());
    s.wait_healthy().await;
    assert_eq!(s.predict(json!({"text": "great"})).await.0, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // Slow enough per forward pass that the queue stays full while requests pile up.
    let model = tiny_model(dir.path(), SLOW);
    let s = Server::ready(
        &model,
        &[
            "--max-queue",
            "8",
            "--max-inputs",
            "8",
            "--max-batch-size",
            "1",
        ],
    )
    .await;
    let text = "a wonderful heart warming film ".repeat(60);
    // Truncated: one queue slot per text, so eight texts fill the queue exactly.
    let body = json!({"inputs": vec![text; 8], "long_text": "truncate"}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, body) = (s.client.clone(), s.url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("{url}/predict"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            (status, retry, r.json::<Value>().await.unwrap())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        if status == 429 {
            assert_eq!(body["error_type"], "overloaded");
            assert!(retry, "429 carries Retry-After");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        s.predict(json!({"text": "great"})).await.0,
        200,
        "recovers once drained"
    );
    s.stop().await;
}

/// Concurrent requests are merged into batches, and a batched answer equals the answer to
/// the same text alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_answers_equal_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let s = Server::ready(&model, &[]).await;
    let mut alone = Vec::new();
    for t in TEXTS {
        let (st, b) = s.predict(json!({"inputs": t})).await;
        assert_eq!(st, 200);
        alone.push(b);
    }
    let (st, together) = s.predict(json!({"inputs": TEXTS})).await;
    assert_eq!(st, 200);
    let mut concurrent = Vec::new();
    for t in TEXTS {
        let (client, url) = (s.client.clone(), s.url.clone());
        concurrent.push(tokio::spawn(async move {
            client
                .post(format!("{url}/predict"))
                .json(&json!({"inputs": t}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    for (i, (a, t)) in alone.iter().zip(together.as_array().unwrap()).enumerate() {
        let c = concurrent.remove(0).await.unwrap();
        for other in [t, &c] {
            for (x, y) in a.as_array().unwrap().iter().zip(other.as_array().unwrap()) {
                assert_eq!(x["label"], y["label"], "text {i}");
                let d = (x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs();
                assert!(d < 1e-5, "text {i}: {d}");
            }
        }
    }
    let (_, metrics) = s.get("/metrics").await;
    assert!(metrics.contains("predict_batch_size_bucket"));
    s.stop().await;
}

/// `--precision int8` serves the quantised model: /info says so, and its probabilities stay
/// close to the f32 model's for the same text. A precision the api does not know is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_precision_serves_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let s = Server::ready(&model, &["--precision", "int8"]).await;
    let (_, info) = s.get("/info").await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["precision"], "int8");

    let f32_model = Classifier::load_dir(&model).unwrap();
    for text in ["a wonderful film", "dull and far too long", "meh"] {
        let (status, body) = s.predict(json!({"text": text})).await;
        assert_eq!(status, 200, "{body}");
        let want = &f32_model.predict(&[text]).unwrap()[0];
        let got: Vec<f64> = body["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["score"].as_f64().unwrap())
            .collect();
        for (g, w) in got.iter().zip(&want.probabilities) {
            assert!(
                (g - f64::from(*w)).abs() < 0.02,
                "{text}: {got:?} vs {want:?}"
            );
        }
    }
    s.stop().await;

    let err = api::Args::try_parse_from(["api", "--precision", "bf16"]).unwrap_err();
    assert!(err.to_string().contains("f32 or int8"), "{err}");
}

/// A text longer than the model's max length is read in windows through the queue, and the
/// api's answer is the library's (the mean of the windows' logits, with the temperature);
/// `LONG_TEXT=truncate` serves the truncated reading instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_texts_are_read_in_windows_as_the_library_reads_them() {
    use classifier::{LongText, LongTextPolicy};
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let clf = Classifier::load_dir(&model).unwrap();
    let long = TEXTS
        .join(" ")
        .repeat(1 + 3 * clf.pipeline().max_length / TEXTS.len());
    assert!(clf.encode_windows(&[&long]).unwrap()[0].len() > 2);
    let scores = |body: &Value| -> Vec<f64> {
        body["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["score"].as_f64().unwrap())
            .collect()
    };
    for (flags, mode) in [
        (vec![], LongText::Windows),
        (vec!["--long-text", "truncate"], LongText::Truncate),
    ] {
        let s = Server::ready(&model, &flags).await;
        let (status, body) = s.predict(json!({"text": long})).await;
        assert_eq!(status, 200, "{body}");
        let want = Classifier::load_dir(&model)
            .unwrap()
            .with_long_text(LongTextPolicy { mode, stride: 0 })
            .predict(&[&long])
            .unwrap()
            .remove(0);
        for (g, w) in scores(&body).iter().zip(&want.probabilities) {
            assert!(
                (g - f64::from(*w)).abs() < 1e-6,
                "{mode}: {body} vs {want:?}"
            );
        }
        let (_, info) = s.get("/info").await;
        let info: Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["long_text"], mode.to_string());
        s.stop().await;
    }
}

/// Kubernetes-style probes and the SIGTERM drain: live answers throughout; ready turns 503
/// `draining` at the signal while the server still answers for the grace period; a request
/// in flight at the signal completes; then the server exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_the_shutdown_drain() {
    let dir = tempfile::tempdir().unwrap();
    // Slow enough that a request is still in flight when the signal comes.
    let model = tiny_model(dir.path(), SLOW);
    // A grace period long enough to probe within it.
    let s = Server::ready(&model, &["--shutdown-grace-seconds", "2"]).await;
    let status = |body: &str| serde_json::from_str::<Value>(body).unwrap()["status"].clone();
    let (code, body) = s.get("/health/live").await;
    assert_eq!((code, status(&body)), (200, json!("live")));
    let (code, body) = s.get("/health/ready").await;
    assert_eq!((code, status(&body)), (200, json!("ok")));

    let text = "a wonderful heart warming film ".repeat(60);
    let body = json!({"inputs": vec![text; 32], "long_text": "truncate"}).to_string();
    let (client, url) = (s.client.clone(), s.url.clone());
    let in_flight = tokio::spawn(async move {
        let r = client
            .post(format!("{url}/predict"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !in_flight.is_finished(),
        "the request must be in flight at the signal"
    );
    let Server {
        url,
        client,
        mut stop,
        task,
    } = s;
    stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = |path: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(format!("{url}{path}")).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (code, body) = probe("/health/ready").await;
    assert_eq!((code, &body["status"]), (503, &json!("draining")), "{body}");
    assert_eq!(probe("/health/live").await.0, 200);
    let (code, answer) = in_flight.await.unwrap();
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer.as_array().map(Vec::len), Some(32), "{answer}");
    task.await.unwrap().unwrap();
}

/// A newly trained model written over the served folder is swapped in while a client keeps
/// sending: no request fails, the answers' model version changes exactly once; a broken
/// model written next is rejected and the one serving keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_is_swapped_in_under_traffic_and_a_broken_one_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let s = Server::ready(&model, &["--model-poll-seconds", "1"]).await;
    let version =
        |info: &str| serde_json::from_str::<Value>(info).unwrap()["model_version"].clone();
    let first = version(&s.get("/info").await.1);

    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let client = {
        let (client, url, sending) = (s.client.clone(), s.url.clone(), sending.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while sending.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(format!("{url}/predict"))
                    .json(&json!({"text": "a wonderful heart warming film"}))
                    .send()
                    .await
                    .unwrap();
                let v = r
                    .headers()
                    .get("x-model-version")
                    .map(|v| v.to_str().unwrap().to_string());
                seen.push((r.status().as_u16(), v));
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // As `train` writes it: the whole folder swapped in at once.
    write_tiny_model(&model, &vocab_for(&TEXTS), TinySize::default(), 4).unwrap();
    let started = Instant::now();
    let second = loop {
        let v = version(&s.get("/info").await.1);
        if v != first {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never swapped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = client.await.unwrap();
    assert!(seen.iter().all(|(status, _)| *status == 200), "{seen:?}");
    let mut versions: Vec<Value> = seen.iter().map(|(_, v)| json!(v)).collect();
    versions.dedup();
    assert_eq!(
        versions,
        [first.clone(), second.clone()],
        "one switch, old to new"
    );

    classifier::model_dir::atomic::replace_dir(&model, |tmp| {
        std::fs::write(tmp.join("config.json"), "{ not a config").unwrap();
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    while !s
        .get("/metrics")
        .await
        .1
        .contains(r#"model_reloads_total{outcome="rejected"} 1"#)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never tried the broken model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = s.predict(json!({"text": "great"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version(&s.get("/info").await.1), second);
    let r = s
        .client
        .post(format!("{}/admin/reload", s.url))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("old one keeps serving"),
        "{body}"
    );
    s.stop().await;
}

/// GET /models lists the versions `train` kept, oldest first, and marks the one whose
/// model_version the api serves (not merely the one registry.json names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_kept_versions_and_marks_the_served_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let served = classifier::model_dir::content_version(&model).unwrap();
    let models = dir.path().join("models");
    for (id, version, f1) in [
        ("r2", served.as_str(), 0.9),
        ("r1", "0000000000000000", 0.8),
    ] {
        std::fs::create_dir_all(models.join(id)).unwrap();
        let v = json!({"id": id, "created_at": "", "base_model": "tiny", "labels": ["negative", "positive"],
                       "validation_macro_f1": f1, "test_macro_f1": null, "test_accuracy": 0.7,
                       "model_version": version, "data_hashes": {}});
        std::fs::write(models.join(id).join("version.json"), v.to_string()).unwrap();
    }
    let registry = json!({"serving": "r1", "promotions": [{"id": "r1", "at": "", "reason": ""}]});
    std::fs::write(models.join("registry.json"), registry.to_string()).unwrap();

    let s = Server::ready(&model, &[]).await;
    let (status, body) = s.get("/models").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert_eq!(v["promoted"], "r1");
    assert_eq!(v["serving_model_version"], served.as_str());
    assert_eq!(
        v["versions"][1]["serving"], true,
        "r2's files are the ones served"
    );
    assert_eq!(v["versions"][0]["serving"], false);
    assert_eq!(v["versions"][0]["was_promoted"], true);
    assert_eq!(v["versions"][1]["test_accuracy"], 0.7);
    s.stop().await;
}

/// With polling an hour apart, file events alone swap models in: a whole folder swapped
/// (which only its parent's events show), then files rewritten inside the new folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_events_swap_models_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), TinySize::default());
    let s = Server::ready(&model, &["--model-poll-seconds", "3600"]).await;
    let version =
        |info: &str| serde_json::from_str::<Value>(info).unwrap()["model_version"].clone();
    let wait_for_change = |from: Value| {
        let s = &s;
        async move {
            let started = Instant::now();
            loop {
                let v = version(&s.get("/info").await.1);
                if v != from {
                    return v;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no swap from file events"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let first = version(&s.get("/info").await.1);
    write_tiny_model(&model, &vocab_for(&TEXTS), TinySize::default(), 4).unwrap();
    let second = wait_for_change(first).await;

    // File by file inside the folder now served, config.json last, as on a bind mount.
    let next = dir.path().join("next");
    write_tiny_model(&next, &vocab_for(&TEXTS), TinySize::default(), 5).unwrap();
    for entry in std::fs::read_dir(&next).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "config.json" {
            std::fs::copy(next.join(&name), model.join(&name)).unwrap();
        }
    }
    std::fs::remove_file(model.join("config.json")).unwrap();
    std::fs::copy(next.join("config.json"), model.join("config.json")).unwrap();
    let third = wait_for_change(second.clone()).await;
    assert_ne!(third, second);
    s.stop().await;
}
