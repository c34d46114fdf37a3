//! Baseline 1, the HTTP floor: `http-floor --listen 127.0.0.1:PORT`.
//!
//! The worker's ingress stack without the worker: the same tokio multi-threaded runtime,
//! hyper's HTTP/1.1 server connection with the same options (keep-alive, header read
//! timeout), the body read to the end under a size limit and a timeout, and a
//! `202 {"id": …}` answer of the same shape. Nothing is parsed or stored.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

static NEXT: AtomicU64 = AtomicU64::new(1);

async fn handle(req: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        Limited::new(req.into_body(), 1 << 20).collect(),
    )
    .await;
    let (status, body) = match read {
        Ok(Ok(_)) => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            // Same length as the worker's UUID v7 answer.
            (
                202,
                format!(r#"{{"id":"00000000-0000-7000-8000-{n:012x}"}}"#),
            )
        }
        _ => (400, r#"{"error":"body could not be read"}"#.to_string()),
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let svc = service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true);
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let listen = match (
        args.next().as_deref(),
        args.next().map(|a| a.parse::<SocketAddr>()),
    ) {
        (Some("--listen"), Some(Ok(a))) => a,
        _ => {
            eprintln!("usage: http-floor --listen 127.0.0.1:PORT");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http-floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-floor: {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}
