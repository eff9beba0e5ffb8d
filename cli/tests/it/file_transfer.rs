//! `strata file seed` and `strata file fetch` as separate processes over real
//! libp2p on 127.0.0.1: a fetch killed half-way resumes from what it had, the
//! result is byte-identical, and bad arguments are one-line errors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

const SIZE: usize = 24 << 20;

fn strata(dir: &Path) -> Command {
    let mut c = common::strata();
    // No keypair file: the p2p identity is a throw-away key.
    c.arg("--keypair").arg(dir.join("no-key.json"));
    c
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "fetch printed no JSON ({e}): stdout {text:?} stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn seed_fetch_interrupt_resume_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("weights.bin");
    let mut data = vec![0u8; SIZE];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&src, &data).unwrap();

    // The seeder's uplink is capped at 8 MB/s so the first fetch can be
    // interrupted part-way.
    let mut seeder = Kill(
        strata(dir.path())
            .args(["--json", "file", "seed"])
            .arg(&src)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--upload-mbps", "8"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = seeder.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let seeded: Value = serde_json::from_str(line.trim()).expect("seed prints one JSON line");
    let root = seeded["root"].as_str().unwrap().to_string();
    let addr = seeded["addrs"][0].as_str().unwrap().to_string();
    assert_eq!(root.len(), 64);
    assert_eq!(seeded["bytes"].as_u64(), Some(SIZE as u64));
    assert!(addr.contains("/p2p/"), "{addr}");

    // First fetch, killed after about a second (~8 of 24 MB).
    let dest = dir.path().join("fetched.bin");
    let mut first = Kill(
        strata(dir.path())
            .args(["--json", "file", "fetch", &root, "--peer", &addr, "-o"])
            .arg(&dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if std::fs::metadata(&dest)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1200));
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    // Second fetch resumes and completes.
    let out = strata(dir.path())
        .args(["--json", "file", "fetch", &root, "--peer", &addr, "-o"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&out);
    println!("{report}");
    let resumed = report["chunks_resumed"].as_u64().unwrap();
    let fetched = report["chunks_fetched"].as_u64().unwrap();
    let chunks = (SIZE as u64).div_ceil(256 * 1024);
    assert!(
        resumed > 0 && resumed < chunks,
        "the interrupted fetch left part of the file ({resumed} of {chunks} chunks)"
    );
    assert_eq!(
        resumed + fetched,
        chunks,
        "every chunk either resumed or fetched"
    );
    assert_eq!(report["chunks_rejected"].as_u64(), Some(0));
    assert_eq!(report["root"].as_str(), Some(root.as_str()));
    assert_eq!(std::fs::read(&dest).unwrap(), data, "byte-identical");

    // Bad arguments: one line on stderr, exit status 1, nothing written.
    let bad_root = strata(dir.path())
        .args(["file", "fetch", "abc", "--peer", &addr, "-o"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(bad_root.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_root.stderr);
    assert!(err.contains("64 hex digits"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let bad_peer = strata(dir.path())
        .args([
            "file",
            "fetch",
            &root,
            "--peer",
            "/ip4/127.0.0.1/tcp/1",
            "-o",
        ])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(bad_peer.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_peer.stderr);
    assert!(err.contains("/p2p/<peer id>"), "{err}");
    let missing = strata(dir.path())
        .args(["file", "seed"])
        .arg(dir.path().join("nope.bin"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such file"));
    assert!(!dir.path().join("x").exists());
}
