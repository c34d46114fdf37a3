//! httpGet probes, as the kubelet runs them: a GET on the pod's address, success for a
//! status from 200 to 399 within `timeoutSeconds`; consecutive results against the
//! success and failure thresholds.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spec::HttpProbe;

/// One GET. `Ok(status)` or an error text.
pub async fn http_get(ip: Ipv4Addr, probe: &HttpProbe) -> Result<u16, String> {
    let attempt = async {
        let mut s = TcpStream::connect((ip, probe.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {ip}:{}\r\nUser-Agent: kube-probe/causeway-e2e\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            probe.path, probe.port
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = vec![0u8; 256];
        let mut got = 0;
        while got < 12 {
            let n = s
                .read(&mut buf[got..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        parse_status(&buf[..got]).ok_or_else(|| "malformed response".to_string())
    };
    match tokio::time::timeout(Duration::from_secs(probe.timeout_s), attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {}s", probe.timeout_s)),
    }
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    let code = line.strip_prefix("HTTP/1.")?.get(2..5)?;
    code.parse().ok()
}

/// The running state of one probe of one container.
#[derive(Debug)]
pub struct ProbeState {
    pub probe: HttpProbe,
    next: Instant,
    successes: u32,
    failures: u32,
    /// The probe's verdict: ready (readiness) or alive (liveness).
    pub ok: bool,
    pub last_error: Option<String>,
}

/// What changed after a probe ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Passed,
    Failed,
}

impl ProbeState {
    /// A readiness probe starts not ready; a liveness probe starts alive.
    pub fn new(probe: HttpProbe, started: Instant, initially_ok: bool) -> Self {
        let next = started + Duration::from_secs(probe.initial_delay_s);
        ProbeState {
            probe,
            next,
            successes: 0,
            failures: 0,
            ok: initially_ok,
            last_error: None,
        }
    }

    /// Runs the probe when due. `cap` bounds the period (the runner polls readiness at
    /// least every second so tests see changes quickly).
    pub async fn tick(&mut self, ip: Ipv4Addr, now: Instant, cap: Duration) -> Verdict {
        if now < self.next {
            return Verdict::Unchanged;
        }
        self.next = now + Duration::from_secs(self.probe.period_s).min(cap);
        match http_get(ip, &self.probe).await {
            Ok(code) if (200..400).contains(&code) => {
                self.failures = 0;
                self.successes += 1;
                self.last_error = None;
                if !self.ok && self.successes >= self.probe.success_threshold {
                    self.ok = true;
                    return Verdict::Passed;
                }
            }
            result => {
                self.successes = 0;
                self.failures += 1;
                self.last_error = Some(match result {
                    Ok(code) => format!("HTTP probe failed with statuscode: {code}"),
                    Err(e) => e,
                });
                if self.ok && self.failures >= self.probe.failure_threshold {
                    self.ok = false;
                    return Verdict::Failed;
                }
            }
        }
        Verdict::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn probe(port: u16) -> HttpProbe {
        HttpProbe {
            path: "/readyz".into(),
            port,
            initial_delay_s: 0,
            period_s: 1,
            timeout_s: 1,
            failure_threshold: 2,
            success_threshold: 1,
        }
    }

    async fn serve(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn status_codes_decide() {
        let ok = serve("200 OK").await;
        let bad = serve("503 Service Unavailable").await;
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(http_get(lo, &probe(ok)).await, Ok(200));
        assert_eq!(http_get(lo, &probe(bad)).await, Ok(503));

        let mut readiness = ProbeState::new(probe(ok), Instant::now(), false);
        assert_eq!(
            readiness
                .tick(lo, Instant::now(), Duration::from_secs(1))
                .await,
            Verdict::Passed
        );
        assert!(readiness.ok);

        let mut liveness = ProbeState::new(probe(bad), Instant::now(), true);
        let t = Instant::now();
        assert_eq!(
            liveness.tick(lo, t, Duration::from_secs(1)).await,
            Verdict::Unchanged,
            "one failure is below the threshold"
        );
        assert_eq!(
            liveness.tick(lo, t, Duration::from_secs(1)).await,
            Verdict::Unchanged,
            "not due yet"
        );
        assert_eq!(
            liveness
                .tick(lo, t + Duration::from_secs(2), Duration::from_secs(1))
                .await,
            Verdict::Failed
        );
        assert!(liveness.last_error.as_deref().unwrap().contains("503"));
    }

    #[test]
    fn status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500 x"), Some(500));
        assert_eq!(parse_status(b"garbage"), None);
    }
}
