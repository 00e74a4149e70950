//! Test harness: runs the real `passerelle` binary on free loopback ports
//! with its own data directory, and stops it with real signals.

// Test support code: failing loudly is its job.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Gateway {
    pub child: Child,
    pub http_addr: SocketAddr,
    pub mllp_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Default)]
pub struct Options {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub data_dir: Option<PathBuf>,
}

impl Gateway {
    pub fn start() -> Gateway {
        Self::start_with(Options::default())
    }

    /// Starts a gateway with extra environment (configuration overrides).
    pub fn start_with_env(env: &[(&str, &str)]) -> Gateway {
        Self::start_with(Options {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let log_path = dir.path().join("gateway.log");
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mllp_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
        command
            .args(&options.args)
            .env_remove("PASSERELLE_CONFIG")
            .env("PASSERELLE_HTTP__LISTEN", http_addr.to_string())
            .env("PASSERELLE_MLLP__LISTEN", mllp_addr.to_string())
            .env("PASSERELLE_STORAGE__DATA_DIR", &data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn passerelle");
        let mut gateway = Gateway {
            child,
            http_addr,
            mllp_addr,
            data_dir,
            log_path,
            _dir: dir,
        };
        gateway.wait_ready();
        gateway
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("passerelle exited early with {status}: {}", self.logs());
            }
            if http_get(self.http_addr, "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("passerelle not ready within 30 s: {}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the gateway process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "passerelle did not exit within {timeout:?}: {}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET returning the raw response, or None when
/// the connection fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

pub fn http_request(addr: SocketAddr, raw: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(raw).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}
