//! `rhizomorph connect` (issue 19): the real binary against a real echo server — a line sent
//! as a message comes back printed, a line sent as a call prints its reply, and a server that
//! is not there gives an error naming the URL.

use std::io::Write;
use std::process::{Command, Stdio};

use rhizomorph::{Config, Listener};
use rhizomorph_testkit::echo_server;

fn connect(args: &[&str], input: &str) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rhizomorph"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the rhizomorph binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sends_lines_and_prints_what_comes_back() {
    let listener = Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let url = listener.url();
    tokio::spawn(echo_server::serve(listener));
    let u = url.clone();
    let (out, err, ok) = tokio::task::spawn_blocking(move || connect(&[&u], "hello there\n"))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("<- rpc [to=echo] \"hello there\""),
        "{out}\n{err}"
    );
    let u = url.clone();
    let (out, err, ok) = tokio::task::spawn_blocking(move || {
        connect(&[&u, "--call", "--header", "method=add"], "1, 2\n")
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("type=reply") && out.contains("\"1, 2\"") && out.contains(" ms)"),
        "{out}\n{err}"
    );
}

#[test]
fn connect_to_nothing_names_the_url() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", free.local_addr().unwrap());
    drop(free);
    let (_, err, ok) = connect(&[&url], "");
    assert!(!ok);
    assert!(err.contains(&url) && err.contains("opening TCP"), "{err}");
}
