//! A real `redis-server` (the Debian package) on a free loopback port, in a temp dir, with no
//! persistence: what the cluster tests and bench run against. Stopped when dropped.
//!
//! Owns the child process and its directory; never touches a Redis it did not start.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` (from `$PATH`, or `RHIZOMORPH_REDIS_SERVER`) on a free port and
    /// waits until it answers PING.
    pub fn start() -> io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("rz-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let bin =
            std::env::var("RHIZOMORPH_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::other(format!(
                    "cannot start {bin}: {e} (install it: apt-get install redis-server)"
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("redis-server did not answer PING in 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (`SIGKILL`: whatever it held is gone, as after a crash without persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// One command over a plain TCP connection (RESP), its reply's text: enough for PING and
    /// INFO without a client library.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = s.read(&mut buf)?;
            out.extend_from_slice(&buf[..n]);
            if n == 0 || reply_complete(&out) {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn ping(&self) -> bool {
        self.command(&["PING"])
            .is_ok_and(|r| r.starts_with("+PONG"))
    }

    /// `used_memory` from `INFO memory`, in bytes.
    pub fn used_memory(&self) -> io::Result<u64> {
        let info = self.command(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no used_memory in {info:.200}")))
    }

    /// An integer reply (`XLEN key`, `DBSIZE`…).
    pub fn integer(&self, args: &[&str]) -> io::Result<i64> {
        let r = self.command(args)?;
        r.strip_prefix(':')
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("{args:?} answered {r:.200}")))
    }
}

/// Whether `out` holds one whole simple RESP reply (a line, or a bulk string).
fn reply_complete(out: &[u8]) -> bool {
    let Some(end) = out.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if out[0] != b'$' {
        return true;
    }
    let len: i64 = std::str::from_utf8(&out[1..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    len < 0 || out.len() >= end + 2 + len as usize + 2
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
