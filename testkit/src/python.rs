//! The Python side of the interop tests and `bench --legacy`: the venv `scripts/test.sh` makes
//! (hypha, hypha-rpc, msgpack, numpy from PyPI), a real hypha server, and the real hypha-rpc
//! echo provider (`rhizomorph/tests/interop/hypha_peers.py`).
//!
//! Owns finding the venv and starting and stopping those processes (each is killed when its
//! handle drops). Never installs anything: `scripts/test.sh` does.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The repository's root (the workspace this test kit belongs to).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The venv holding hypha and hypha-rpc: `$RHIZOMORPH_VENV`, else `.venv` at the repository's root.
pub fn venv_python() -> io::Result<PathBuf> {
    let venv = std::env::var_os("RHIZOMORPH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    let python = venv.join("bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import hypha, hypha_rpc, msgpack, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(io::Error::other(format!(
            "--legacy needs hypha and hypha-rpc in {}: run scripts/test.sh (it creates the venv) \
             or set RHIZOMORPH_VENV",
            venv.display()
        )))
    }
}

/// A real hypha server on loopback, stopped when dropped.
pub struct HyphaServer {
    _child: Child,
    /// Its WebSocket URL (`ws://127.0.0.1:<port>/ws`).
    pub url: String,
}

impl HyphaServer {
    /// Starts `python -m hypha.server` on a free port (per-client rate limits raised: the
    /// default 200 msg/s is for the public internet) and waits until it accepts connections.
    pub async fn start(python: &Path) -> io::Result<HyphaServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python)
            .args(["-m", "hypha.server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .env("HYPHA_WS_MSG_RATE_LIMIT", "1000000")
            .env("HYPHA_WS_MSG_BURST_LIMIT", "1000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                return Err(io::Error::other("the hypha server did not start in 120 s"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(HyphaServer {
            _child: child,
            url: format!("ws://127.0.0.1:{port}/ws"),
        })
    }

    /// The server process's id (for its CPU time in `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self._child.id()
    }
}

/// The real hypha-rpc provider (`tests/interop/hypha_peers.py provider`): returns the process
/// (stopped when dropped) and the provider's full id.
pub async fn start_python_provider(python: &Path, url: &str) -> io::Result<(Child, String)> {
    let script = repo_root().join("rhizomorph/tests/interop/hypha_peers.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(["provider", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .map_err(|_| io::Error::other("the Python provider did not register in 60 s"))??
    .ok_or_else(|| io::Error::other("the Python provider exited"))?;
    let v: serde_json::Value = serde_json::from_str(&line).map_err(io::Error::other)?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| io::Error::other(format!("unexpected provider output {line}")))?
        .to_string();
    Ok((child, id))
}
