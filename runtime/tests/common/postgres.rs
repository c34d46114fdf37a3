//! A throwaway PostgreSQL for the tests: `scripts/postgres.sh` starts one server per test
//! binary on a free loopback port in a temp dir (password authentication, as users run it),
//! and it is stopped by its PID when the binary exits. `CAUSEWAY_TEST_POSTGRES_URL` points
//! the tests at a server of your own instead.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Server {
    url: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DIR: OnceLock<PathBuf> = OnceLock::new();

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

extern "C" fn stop_server() {
    if let Some(dir) = DIR.get() {
        let _ = Command::new(script()).arg("stop").arg(dir).status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The server's URL (started on first use).
pub fn url() -> String {
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("CAUSEWAY_TEST_POSTGRES_URL") {
                return Server { url };
            }
            let dir = std::env::temp_dir().join(format!(
                "causeway-pg-{}-{}",
                std::process::id(),
                super::free_port()
            ));
            let port = super::free_port();
            let out = Command::new(script())
                .arg("start")
                .arg(&dir)
                .arg(port.to_string())
                .output()
                .expect("run scripts/postgres.sh");
            assert!(
                out.status.success(),
                "scripts/postgres.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = DIR.set(dir);
            // SAFETY: registers a plain function with no captured state, called once at exit.
            unsafe {
                libc::atexit(stop_server);
            }
            Server {
                url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            }
        })
        .url
        .clone()
}

/// A schema nobody else uses in this run.
pub fn fresh_schema(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `psql -c` on the test server, as the test user.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url())
        .args(["-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server of the test's own, to stop and start again; stopped when dropped.
pub struct OwnServer {
    pub dir: PathBuf,
    pub url: String,
}

impl OwnServer {
    pub fn start() -> OwnServer {
        let dir = std::env::temp_dir().join(format!(
            "causeway-pg-own-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .arg(super::free_port().to_string())
            .output()
            .expect("run scripts/postgres.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        OwnServer {
            dir,
            url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }

    pub fn stop(&self) {
        let s = Command::new(script())
            .arg("stop")
            .arg(&self.dir)
            .status()
            .expect("stop");
        assert!(s.success());
    }

    pub fn restart(&self) {
        let out = Command::new(script())
            .arg("restart")
            .arg(&self.dir)
            .output()
            .expect("restart");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl OwnServer {
    /// TLS only from now on (a plain connection is refused); the CA file's path.
    pub fn tls_only(&self) -> PathBuf {
        let out = Command::new(script())
            .arg("tls")
            .arg(&self.dir)
            .output()
            .expect("tls");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
