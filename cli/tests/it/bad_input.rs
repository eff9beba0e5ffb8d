//! The `strata` binary without a chain: keys, JSON output, and every kind of
//! bad input refused with one line on stderr and a non-zero exit. Each run
//! gets its own temporary HOME and working directory, so the real
//! `~/.config/solana` is never touched.

use std::path::Path;

use crate::common::{in_home, run, Run};

fn strata(home: &Path, args: &[&str]) -> Run {
    run(in_home(home).args(args))
}

/// Asserts a failure with one error line containing every `needle`.
fn assert_fails(run: &Run, needles: &[&str]) {
    assert_ne!(run.code, 0, "expected failure, got success: {}", run.stdout);
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "not one line: {:?}",
        run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in {:?}",
            run.stderr
        );
    }
}

fn keygen(home: &Path, name: &str) -> (String, String) {
    let path = home.join(name).display().to_string();
    let run = strata(home, &["keygen", "--outfile", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (path, run.stdout.trim().to_string())
}

#[test]
fn keygen_and_address_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let (path, pubkey) = keygen(home.path(), "id.json");
    assert!(pubkey.len() >= 32, "{pubkey}");
    let run = strata(home.path(), &["address", "--keypair", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), pubkey);

    // No overwrite without --force; with it, a new key.
    let again = strata(home.path(), &["keygen", "--outfile", &path]);
    assert_fails(&again, &["already exists", "--force"]);
    let forced = strata(home.path(), &["keygen", "--outfile", &path, "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_ne!(forced.stdout.trim(), pubkey);
    let run = strata(home.path(), &["address", "--keypair", &path]);
    assert_eq!(run.stdout.trim(), forced.stdout.trim());
}

#[test]
fn default_keypair_is_under_home_like_the_solana_cli() {
    let home = tempfile::tempdir().unwrap();
    let run = strata(home.path(), &["keygen"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(home.path().join(".config/solana/id.json").exists());
    let address = strata(home.path(), &["address"]);
    assert_eq!(address.stdout.trim(), run.stdout.trim());
}

#[test]
fn json_output_parses() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("k.json").display().to_string();
    let run = strata(home.path(), &["--json", "keygen", "--outfile", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let made: serde_json::Value = serde_json::from_str(&run.stdout).expect("keygen --json");
    let pubkey = made["pubkey"].as_str().expect("pubkey").to_string();
    assert_eq!(made["outfile"], path.as_str());

    let run = strata(home.path(), &["address", "--keypair", &path, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&run.stdout).expect("address --json");
    assert_eq!(shown["pubkey"], pubkey.as_str());
}

#[test]
fn missing_keypair_names_the_path_and_suggests_keygen() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("nope.json").display().to_string();
    for args in [
        vec!["address", "--keypair", &path],
        vec!["--keypair", &path, "stake", "5"],
        vec!["--keypair", &path, "status", "node"],
    ] {
        assert_fails(&strata(home.path(), &args), &[&path, "strata keygen"]);
    }
    // The default path, under the (temporary) home.
    let default = home
        .path()
        .join(".config/solana/id.json")
        .display()
        .to_string();
    assert_fails(
        &strata(home.path(), &["address"]),
        &[&default, "strata keygen"],
    );
}

#[test]
fn malformed_keypair_files_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let cases = [
        ("junk.json", "not json".to_string(), "not a Solana keypair"),
        (
            "short.json",
            "[1,2,3]".to_string(),
            "expected 64 bytes, found 3",
        ),
        ("big.json", "[1,2,300]".to_string(), "not a Solana keypair"),
        (
            "mismatch.json",
            serde_json::to_string(&vec![7u8; 64]).unwrap(),
            "invalid ed25519 keypair",
        ),
    ];
    for (name, content, reason) in cases {
        let path = home.path().join(name);
        std::fs::write(&path, content).unwrap();
        let path = path.display().to_string();
        assert_fails(
            &strata(home.path(), &["address", "--keypair", &path]),
            &[&path, reason],
        );
    }
}

#[test]
fn unknown_url_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let (path, _) = keygen(home.path(), "id.json");
    for url in ["moonnet", "ftp://127.0.0.1", "127.0.0.1:8899"] {
        let run = strata(
            home.path(),
            &["--url", url, "--keypair", &path, "status", "config"],
        );
        assert_fails(&run, &["unknown cluster", url]);
    }
}

/// `--url devnet` resolves to the public devnet endpoint inside the binary.
/// No request may leave the machine: every HTTP(S) proxy variable points at
/// a closed local port, so the call fails at once and names where it went.
#[test]
fn cluster_names_resolve_to_public_endpoints_without_network() {
    let home = tempfile::tempdir().unwrap();
    let (path, _) = keygen(home.path(), "id.json");
    for (name, endpoint) in [
        ("devnet", "https://api.devnet.solana.com"),
        ("d", "https://api.devnet.solana.com"),
        ("testnet", "https://api.testnet.solana.com"),
    ] {
        let mut cmd = in_home(home.path());
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env(var, "http://127.0.0.1:1");
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy");
        let run = run(cmd.args(["--url", name, "--keypair", &path, "status", "config"]));
        assert_fails(&run, &["could not reach", endpoint]);
    }
}

#[test]
fn unreachable_rpc_says_so() {
    let home = tempfile::tempdir().unwrap();
    let (path, pubkey) = keygen(home.path(), "id.json");
    let url = "http://127.0.0.1:1";
    for args in [
        vec!["status", "config"],
        vec!["balance", pubkey.as_str()],
        vec!["stake", "10"],
        vec!["deposit", "10"],
        vec!["node", "register", "--multiaddr", "/ip4/127.0.0.1/tcp/4001"],
        vec!["chat", "hello"],
    ] {
        let mut all = vec!["--url", url, "--keypair", &path];
        all.extend(args);
        assert_fails(&strata(home.path(), &all), &["could not reach", url]);
    }
}

#[test]
fn chat_refuses_bad_sampling_before_any_network_call() {
    let home = tempfile::tempdir().unwrap();
    for t in ["-1", "nan", "inf"] {
        let flag = format!("--temperature={t}");
        let run = strata(
            home.path(),
            &["--url", "http://127.0.0.1:1", "chat", "hi", &flag],
        );
        assert_fails(&run, &["--temperature"]);
    }
    let run = strata(
        home.path(),
        &[
            "--url",
            "http://127.0.0.1:1",
            "chat",
            "hi",
            "--max-tokens=-3",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn bad_amounts_are_refused_before_any_network_call() {
    let home = tempfile::tempdir().unwrap();
    // No keypair and no chain: the argument parser must refuse first.
    for command in ["stake", "unstake", "deposit", "request-withdrawal"] {
        for amount in [
            "0",
            "-1",
            "abc",
            "1.0000001",
            "18446744073709551616",
            "99999999999999",
        ] {
            let run = strata(
                home.path(),
                &["--url", "http://127.0.0.1:1", command, amount],
            );
            assert_eq!(run.code, 2, "{command} {amount}: {}", run.stderr);
            assert_fails(&run, &["invalid value", amount]);
        }
    }
    let run = strata(home.path(), &["faucet", "--sol", "-3"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = strata(home.path(), &["balance", "not-a-key"]);
    assert!(
        run.stderr.contains("not a base58 public key"),
        "{}",
        run.stderr
    );
    let run = strata(
        home.path(),
        &["node", "register", "--multiaddr", "127.0.0.1:4001"],
    );
    assert!(run.stderr.contains("not a multiaddr"), "{}", run.stderr);
}

#[test]
fn faucet_without_a_testnet_explains_how_to_start_one() {
    let home = tempfile::tempdir().unwrap();
    let (path, _) = keygen(home.path(), "id.json");
    let dir = home.path().join("no-testnet").display().to_string();
    let run = strata(
        home.path(),
        &["--keypair", &path, "faucet", "--testnet-dir", &dir],
    );
    assert_fails(
        &run,
        &["no local testnet manifest at", &dir, "strata-testnet up"],
    );
}
