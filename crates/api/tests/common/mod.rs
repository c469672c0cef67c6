//! What the api's HTTP tests share: texts, a tiny model, and a server on an ephemeral port.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use classifier::testing::{TinySize, vocab_for, write_tiny_model};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TEXTS: [&str; 8] = [
    "a wonderful heart warming film",
    "dull and far too long",
    "the acting was superb and the music lovely",
    "terrible plot, wooden acting, i left early",
    "not bad at all",
    "meh",
    "great great great",
    "worst movie of the year by far",
];

/// A model that takes a noticeable time per forward pass of long texts.
pub const SLOW: TinySize = TinySize {
    dim: 128,
    layers: 4,
    heads: 4,
    hidden: 512,
    max_positions: 512,
};

pub fn tiny_model(dir: &Path, size: TinySize) -> PathBuf {
    let model = dir.join("model_output");
    write_tiny_model(&model, &vocab_for(&TEXTS), size, 3).unwrap();
    model
}

pub struct Server {
    pub url: String,
    pub client: reqwest::Client,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(model: &Path, extra: &[&str]) -> Self {
        let mut argv = vec![
            "api".to_string(),
            "--model-path".into(),
            model.display().to_string(),
            "--results-dir".into(),
            model
                .parent()
                .unwrap()
                .join("results")
                .display()
                .to_string(),
            "--model-retry-seconds".into(),
            "1".into(),
        ];
        // No grace period unless a test asks: stopping would otherwise wait it out.
        if !extra.contains(&"--shutdown-grace-seconds") {
            argv.extend(["--shutdown-grace-seconds".into(), "0".into()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let args = api::Args::parse_from(argv);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::http::serve(args, listener, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    pub async fn ready(model: &Path, extra: &[&str]) -> Self {
        let s = Self::start(model, extra).await;
        s.wait_healthy().await;
        s
    }

    pub async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.client.get(format!("{}/health", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the server never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/predict", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn predict(&self, body: Value) -> (u16, Value) {
        self.post(body.to_string()).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

pub fn assert_error(status: u16, body: &Value, want_status: u16, want_type: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error_type"], want_type, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.len() > 10),
        "{body}"
    );
}
