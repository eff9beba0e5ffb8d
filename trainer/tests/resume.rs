//! The trainer killed with SIGKILL mid-run resumes from its last checkpoint
//! and ends where an uninterrupted run ends: the same steps, once each, and
//! the same final adapter, bit for bit (prompts and seeds derive from the
//! step number, sampling and the update are deterministic).
//!
//! Real model, real engine sampling, real f32 updates; the run is tiny (one
//! prompt, groups of 2, 4 tokens, 3 steps).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn trainer(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata-trainer"));
    c.args(["train", "--task", "copy", "--steps", "2", "--prompts", "1"])
        .args(["--group", "2", "--max-tokens", "4", "--seed", "5", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn adapters(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("adapters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p: PathBuf| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn steps_logged(dir: &Path) -> Vec<u64> {
    let latest = std::fs::read_to_string(dir.join("checkpoints/LATEST")).unwrap();
    let state = std::fs::read_to_string(
        dir.join("checkpoints")
            .join(latest.trim())
            .join("state.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    v["state"]["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let (straight, killed) = (tmp.path().join("straight"), tmp.path().join("killed"));

    let out = trainer(&straight).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = trainer(&killed).spawn().unwrap();
    let latest = killed.join("checkpoints/LATEST");
    let t = Instant::now();
    loop {
        if std::fs::read_to_string(&latest).is_ok_and(|n| n.trim() == "ckpt-000001") {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        steps_logged(&killed).len() < 3,
        "killed too late to test a resume"
    );

    let out = trainer(&killed).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("step   0 "),
        "the resumed run redid step 0:\n{stdout}"
    );
    assert_eq!(steps_logged(&killed), vec![0, 1]);
    assert_eq!(steps_logged(&straight), vec![0, 1]);
    let (a, b) = (adapters(&straight), adapters(&killed));
    assert!(
        !a.is_empty(),
        "no update carried signal: the test shows nothing"
    );
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between the straight and the resumed run"
        );
    }

    // A different run in the same directory is refused, not mixed in.
    let out = trainer(&killed).args(["--lr", "0.5"]).output().unwrap();
    assert!(!out.status.success(), "another learning rate was accepted");
    let out = trainer(&killed)
        .args(["--temperature", "0.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}
