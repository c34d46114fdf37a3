//! Guest stdout/stderr: captured per call into a bounded buffer (never the worker's own
//! stdio), then kept per plugin in a bounded ring of recent lines and sent to tracing.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of output one call may write; the rest is dropped (the guest is not told).
pub const CALL_LOG_BYTES: usize = 64 << 10;
/// Lines kept per plugin.
pub const PLUGIN_LOG_LINES: usize = 200;
/// Longest line kept.
const MAX_LINE: usize = 2048;

#[derive(Default)]
struct Buf {
    bytes: Vec<u8>,
    dropped: usize,
}

/// One call's output; stdout and stderr share it.
#[derive(Clone, Default)]
pub(crate) struct CallLog {
    buf: Arc<Mutex<Buf>>,
}

impl CallLog {
    fn write(&self, data: &[u8]) {
        let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let room = CALL_LOG_BYTES.saturating_sub(b.bytes.len());
        let take = room.min(data.len());
        b.bytes.extend_from_slice(&data[..take]);
        b.dropped += data.len() - take;
    }

    /// The lines written so far, and how many bytes were dropped.
    pub fn lines(&self) -> (Vec<String>, usize) {
        let b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&b.bytes);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                if l.len() > MAX_LINE {
                    format!("{}…", truncate(l, MAX_LINE))
                } else {
                    l.to_string()
                }
            })
            .collect();
        (lines, b.dropped)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl IsTerminal for CallLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CallLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CallLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Recent log lines of every plugin.
#[derive(Default)]
pub(crate) struct PluginLogs {
    rings: Mutex<HashMap<String, VecDeque<String>>>,
}

impl PluginLogs {
    pub fn record(&self, plugin: &str, call: &CallLog) {
        let (lines, dropped) = call.lines();
        if lines.is_empty() && dropped == 0 {
            return;
        }
        for line in &lines {
            tracing::info!(target: "causeway_plugins::guest", plugin, "{line}");
        }
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let ring = rings.entry(plugin.to_string()).or_default();
        ring.extend(lines);
        if dropped > 0 {
            ring.push_back(format!(
                "[{dropped} bytes of output dropped: over the {CALL_LOG_BYTES}-byte per-call limit]"
            ));
        }
        while ring.len() > PLUGIN_LOG_LINES {
            ring.pop_front();
        }
    }

    pub fn get(&self, plugin: &str) -> Vec<String> {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        rings
            .get(plugin)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        rings.retain(|k, _| keep(k));
    }
}
