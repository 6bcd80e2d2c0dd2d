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
        HyphaServer::start_with(python, &[]).await
    }

    /// The same with more `hypha.server` arguments (`--redis-uri redis://…` for several
    /// instances as one).
    pub async fn start_with(python: &Path, extra: &[&str]) -> io::Result<HyphaServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python)
            .args(["-m", "hypha.server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(extra)
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

/// An unmodified hypha-rpc program (`rhizomorph/tests/interop/hypha_apps.py <args>`) whose
/// stdout is JSON lines, one per thing it did; killed when dropped.
pub struct HyphaApp {
    /// The Python process (its stdin takes the role's commands).
    pub child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl HyphaApp {
    /// Starts the role `args[0]` of `hypha_apps.py` with the venv's Python.
    pub fn start(args: &[&str]) -> io::Result<HyphaApp> {
        let python = venv_python()?;
        let mut child = Command::new(python)
            .arg(repo_root().join("rhizomorph/tests/interop/hypha_apps.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        Ok(HyphaApp {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The value of `key` in the next JSON line that has it (90 s at most; panics otherwise,
    /// naming the key: this is for tests).
    pub async fn expect(&mut self, key: &str) -> serde_json::Value {
        let deadline = Duration::from_secs(90);
        loop {
            let line = tokio::time::timeout(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {key:?} from python in {deadline:?}"))
                .unwrap_or_else(|e| panic!("reading python's output: {e}"))
                .unwrap_or_else(|| panic!("python ended before {key:?}"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(x) = v.get(key) {
                return x.clone();
            }
        }
    }

    /// The next line of its output as JSON (`Null` if it is not JSON), `None` once it ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (tokio's `Lines::next_line` is): a line is never lost to a `select!`.
    pub async fn next_json(&mut self) -> Option<serde_json::Value> {
        let line = self.lines.next_line().await.ok().flatten()?;
        Some(serde_json::from_str(&line).unwrap_or_default())
    }

    /// Writes `quit` to its stdin and waits (10 s at most) for it to end.
    pub async fn quit(mut self) {
        use tokio::io::AsyncWriteExt;
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"quit\n").await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Checks what `hypha_apps.py caller` reports of its calls to the provider's `calc` service:
/// a nested echo, a numpy scale, an arange sum and a generator's items, each as the provider
/// computes them (panics with the whole report otherwise).
pub fn check_calculator_calls(calls: &serde_json::Value) {
    assert_eq!(
        calls["echo"]["nested"],
        serde_json::json!([1, 2.5, "x"]),
        "{calls}"
    );
    assert_eq!(calls["scale"], serde_json::json!([11, 21, 31]), "{calls}");
    assert_eq!(calls["arange_sum"], 10.0, "{calls}");
    assert_eq!(calls["count"], serde_json::json!([0, 1, 2, 3]), "{calls}");
}
