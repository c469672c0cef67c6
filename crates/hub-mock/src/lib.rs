//! A stand-in for the Hugging Face Hub, for tests and the compose end-to-end run: serves the
//! repositories under a folder with the URLs, headers and errors that `hf-hub` (and so our
//! model and data set downloads) relies on, as read from hf-hub 0.5's `api/sync.rs`:
//!
//! - `GET /api/{models|datasets}/{id}/revision/{rev}`: `{"sha", "siblings": [{"rfilename"}]}`.
//! - `GET /{id}/resolve/{rev}/{file}` (models) and `/datasets/{id}/resolve/{rev}/{file}`:
//!   small files answer the `Range: bytes=0-0` probe with 206, `Content-Range`, `ETag` and
//!   `X-Repo-Commit`; large ones (weights, parquet) redirect (302) to an absolute CDN URL with
//!   `X-Linked-Etag` and `X-Repo-Commit`, as the Hub does for LFS files.
//! - `GET /cdn/...`: the bytes, honouring `Range`.
//! - A wrong or missing token (when one is required) is 401, an unknown repository or file
//!   404 with the Hub's `X-Error-Code`, and [`HubMock::fail_downloads`] makes every transfer a
//!   500 while the probes still succeed (a server failing mid-download).
//!
//! The folder holds `{models|datasets}/{id}/{revision}/{files}`: one folder per revision, each
//! with its own deterministic commit hash.

#![forbid(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode, Uri, header};

/// What the mock serves and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The address clients reach the mock at, for the CDN redirects (default: the bound
    /// address, right for loopback but not for other containers).
    pub public_url: Option<String>,
}

struct State {
    root: PathBuf,
    base: String,
    options: Options,
    fail: AtomicBool,
}

/// A running mock, on a thread of its own; stops when dropped.
pub struct HubMock {
    pub url: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HubMock {
    /// Serves `root` on a free loopback port.
    pub fn start(root: &Path, options: Options) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        Self::serve(listener, addr, root, options)
    }

    /// Serves `root` on `listener` (whose address is `addr`).
    pub fn serve(
        listener: std::net::TcpListener,
        addr: SocketAddr,
        root: &Path,
        options: Options,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let url = options
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let state = Arc::new(State {
            root: root.to_path_buf(),
            base: url.clone(),
            options,
            fail: AtomicBool::new(false),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        });
        Ok(Self {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// From now on, every file transfer fails with 500 (the metadata probes still answer).
    pub fn fail_downloads(&self, fail: bool) {
        self.state.fail.store(fail, Ordering::SeqCst);
    }

    /// Serves until the process ends (for the binary).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HubMock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(state: Arc<State>) -> Router {
    Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let state = state.clone();
        async move { answer(&state, &uri, &headers) }
    })
}

/// Runs `cmd` (a binary that uses the Hub) against a cache folder of its own, as a user whose
/// environment sets only `env` (e.g. `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`): the
/// test's own Hub variables are cleared, so runs are hermetic.
pub fn run_isolated(
    mut cmd: std::process::Command,
    hf_home: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    cmd.env("HF_HOME", hf_home).env("RUST_LOG", "warn");
    for k in ["HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the command runs")
}

/// The commit hash of one revision of one repository: 40 hex digits, stable across runs.
pub fn commit_of(kind: &str, id: &str, revision: &str) -> String {
    let part = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, kind, id, revision).hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}{:08x}", part(1), part(2), part(3) as u32)
}

fn etag_of(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}{:016x}", h.finish(), bytes.len())
}

fn reply(status: StatusCode, error_code: Option<&str>, message: &str) -> Response<Body> {
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(code) = error_code {
        r = r.header("x-error-code", code);
    }
    r.body(Body::from(
        serde_json::json!({ "error": message }).to_string(),
    ))
    .expect("a valid response")
}

/// Large files go through the CDN redirect, as LFS files do on the Hub.
fn is_lfs(file: &str) -> bool {
    [".safetensors", ".bin", ".parquet"]
        .iter()
        .any(|e| file.ends_with(e))
}

fn answer(state: &State, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    if let Some(token) = &state.options.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return reply(
                StatusCode::UNAUTHORIZED,
                None,
                "Invalid credentials in Authorization header",
            );
        }
    }
    let path = uri.path().trim_start_matches('/');
    if let Some(rest) = path.strip_prefix("api/") {
        return info(state, rest);
    }
    if let Some(rest) = path.strip_prefix("cdn/") {
        return blob(state, rest, headers);
    }
    let Some((repo, rest)) = path.split_once("/resolve/") else {
        return reply(StatusCode::NOT_FOUND, None, "Not Found");
    };
    let (kind, id) = match repo.strip_prefix("datasets/") {
        Some(id) => ("datasets", id),
        None => ("models", repo),
    };
    let Some((revision, file)) = rest.split_once('/') else {
        return reply(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            "no file named",
        );
    };
    let revision = revision.replace("%2F", "/");
    resolve(state, kind, id, &revision, file, headers)
}

/// Why a revision folder is not there, as the Hub says it.
enum Missing {
    Repo,
    Revision,
}

impl Missing {
    fn reply(&self, revision: &str) -> Response<Body> {
        match self {
            Missing::Repo => reply(
                StatusCode::NOT_FOUND,
                Some("RepoNotFound"),
                "Repository not found",
            ),
            Missing::Revision => reply(
                StatusCode::NOT_FOUND,
                Some("RevisionNotFound"),
                &format!("Invalid rev id: {revision}"),
            ),
        }
    }
}

/// The folder of one revision of a repository.
fn revision_dir(state: &State, kind: &str, id: &str, revision: &str) -> Result<PathBuf, Missing> {
    let repo = state.root.join(kind).join(id);
    if !repo.is_dir() {
        return Err(Missing::Repo);
    }
    let dir = repo.join(revision);
    if !dir.is_dir() {
        return Err(Missing::Revision);
    }
    Ok(dir)
}

fn info(state: &State, rest: &str) -> Response<Body> {
    let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (id, revision) = match rest.split_once("/revision/") {
        Some((id, rev)) => (id, rev.replace("%2F", "/")),
        None => (rest, "main".to_string()),
    };
    let dir = match revision_dir(state, kind, id, &revision) {
        Ok(d) => d,
        Err(m) => return m.reply(&revision),
    };
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files);
    files.sort();
    let siblings: Vec<_> = files
        .iter()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    let body = serde_json::json!({
        "id": id,
        "sha": commit_of(kind, id, &revision),
        "siblings": siblings,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn resolve(
    state: &State,
    kind: &str,
    id: &str,
    revision: &str,
    file: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let dir = match revision_dir(state, kind, id, revision) {
        Ok(d) => d,
        Err(m) => return m.reply(revision),
    };
    let Ok(bytes) = std::fs::read(dir.join(file)) else {
        return reply(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            &format!("{file} does not exist in this revision"),
        );
    };
    let commit = commit_of(kind, id, revision);
    let etag = etag_of(&bytes);
    if is_lfs(file) {
        let escaped = revision.replace('/', "%2F");
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(
                header::LOCATION,
                format!("{}/cdn/{kind}/{id}/{escaped}/{file}", state.base),
            )
            .header("x-repo-commit", &commit)
            .header("x-linked-etag", format!("\"{etag}\""))
            .header("x-linked-size", bytes.len())
            .body(Body::empty())
            .expect("a valid response");
    }
    let (mut parts, body) = ranged(state, bytes, headers).into_parts();
    parts
        .headers
        .insert("x-repo-commit", commit.parse().expect("hex"));
    parts
        .headers
        .insert(header::ETAG, format!("\"{etag}\"").parse().expect("hex"));
    Response::from_parts(parts, body)
}

fn blob(state: &State, rest: &str, headers: &HeaderMap) -> Response<Body> {
    // cdn/{kind}/{id}/{revision}/{file} is the file's path under the root.
    let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let path = state.root.join(kind).join(rest.replace("%2F", "/"));
    match std::fs::read(&path) {
        Ok(bytes) => ranged(state, bytes, headers),
        Err(_) => reply(StatusCode::NOT_FOUND, None, "no such blob"),
    }
}

/// The bytes of a file, as the `Range` header asks (206) or whole (200). A transfer (anything
/// but the one-byte probe) fails with 500 while [`HubMock::fail_downloads`] is on.
fn ranged(state: &State, bytes: Vec<u8>, headers: &HeaderMap) -> Response<Body> {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="));
    let size = bytes.len();
    let Some(range) = range else {
        if state.fail.load(Ordering::SeqCst) {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, None, "failed");
        }
        return Response::new(Body::from(bytes));
    };
    let (start, end) = range.split_once('-').unwrap_or((range, ""));
    let start: usize = start.parse().unwrap_or(0).min(size);
    let end: usize = end
        .parse()
        .map(|e: usize| e.min(size.saturating_sub(1)))
        .unwrap_or(size.saturating_sub(1));
    let probe = start == 0 && end == 0;
    if !probe && state.fail.load(Ordering::SeqCst) {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, None, "failed");
    }
    let body = if size == 0 {
        Vec::new()
    } else {
        bytes[start..=end.max(start)].to_vec()
    };
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("a valid response")
}
