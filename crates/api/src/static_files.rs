//! The console's static files from `console.dir`, with SPA fallback to
//! index.html. Unknown `/api` and `/hr` paths answer 404 in the JSON
//! envelope instead.

use std::path::{Component, Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The file under `root` for a URL path, or `None` if it tries to escape.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in Path::new(url_path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(p)
}

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>centralita</title>\
<h1>Console not built</h1><p>The API is running, but the web console has not been built. \
Run <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code> (or set \
<code>CENTRALITA_CONSOLE_DIR</code> / <code>console.dir</code> to a built console) and reload.</p>";

pub async fn fallback(State(st): State<AppState>, req: Request) -> Response {
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") || path == "/hr" || path.starts_with("/hr/") {
        return AppError::NotFound("route").into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return AppError::NotFound("route").into_response();
    }
    let root = &st.config.console_dir;
    if !tokio::fs::metadata(root).await.is_ok_and(|m| m.is_dir()) {
        return (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response();
    }
    let Some(file) = resolve(root, path) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    let is_file = tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_file());
    let (file, spa) = if is_file {
        (file, false)
    } else {
        (root.join("index.html"), true)
    };
    // A missing asset (with an extension) is a 404, not the SPA page.
    if spa && Path::new(path).extension().is_some() {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let cache = if spa || file.ends_with("index.html") {
                "no-cache"
            } else {
                "public, max-age=3600"
            };
            (
                [
                    (header::CONTENT_TYPE, content_type(&file)),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response(),
    }
}
