//! `keygate demo` as a newcomer runs it: start the binary, run the curl lines it prints.

use crate::common::keygate;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_working_curl_lines() {
    let mut child = keygate()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("demo starts")
        .unwrap();
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("curl -i ") else {
            continue;
        };
        let url = rest.split_whitespace().next().unwrap();
        let mut req = http.get(url);
        if let Some(auth) = rest.split("-H 'Authorization: ").nth(1) {
            req = req.header("authorization", auth.trim_end_matches('\''));
        }
        let status = req.send().await.unwrap().status().as_u16();
        let comment = &lines[i - 1];
        let expected: u16 = comment
            .trim_start_matches("# ")
            .split([':', ' '])
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(status, expected, "{comment}\n{line}");
        statuses.push(status);
    }
    assert_eq!(statuses, vec![200, 200, 401, 401, 403, 200]);
    assert!(started.elapsed() < Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
}
