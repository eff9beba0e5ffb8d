//! The load and fault campaign, short: a few paying clients for under a
//! minute while every kind of fault happens once (a node, the relayer, the
//! gateway and a verifier SIGKILLed and restarted, the chain's RPC down, a
//! node partitioned from its peers), then the books reconciled to the base
//! unit. The binary is the one operators run (`strata-load-campaign`), with
//! smaller numbers.

use std::process::Command;

use strata_test_utils::workspace_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_once_and_the_books_still_add_up() {
    let _turn = crate::one_at_a_time().await;
    // The services as processes of their own, from this build.
    let node = workspace_binary("strata-node", "strata-node");
    for (package, bin) in [
        ("strata-gateway", "strata-gateway"),
        ("strata-relayer", "strata-relayer"),
        ("strata-verifier", "strata-verifier"),
    ] {
        workspace_binary(package, bin);
    }
    let bin_dir = node.parent().expect("the binaries' directory");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata-load-campaign"));
    cmd.args(["--clients", "4", "--duration-secs", "50", "--nodes", "3"])
        .args(["--verifiers", "1", "--seed", "11", "--down-secs", "2"])
        .args(["--rpc-outage-secs", "6", "--partition-secs", "8"])
        .args(["--extra-fault-every-secs", "1000", "--settle-secs", "150"])
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--dir")
        .arg(dir.path().join("campaign"));
    let partition = namespaces_available();
    if !partition {
        println!("SKIPPED the partition: this machine cannot make a user and network namespace");
        cmd.arg("--no-partition");
    }
    let out = cmd.output().expect("running strata-load-campaign");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the campaign failed ({}):\n{stdout}\n{}",
        out.status,
        stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(stdout.contains("reconciliation: exact"), "{stdout}");
    let mut kinds = vec![
        "KillNode",
        "KillRelayer",
        "KillGateway",
        "KillVerifier",
        "RpcOutage",
    ];
    if partition {
        kinds.push("Partition");
    }
    for kind in kinds {
        assert!(
            stdout.lines().any(|l| l.contains(&format!("s  {kind}: "))),
            "no {kind} in the fault log:\n{stdout}"
        );
    }
    // The clients really were served, and their requests reconciled.
    let served = stdout
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix(
                "served tasks in exactly one posted batch, proof to the chain's root: ",
            )
        })
        .and_then(|v| v.split_once('/'))
        .map(|(a, b)| {
            (
                a.trim().parse::<usize>().unwrap(),
                b.trim().parse::<usize>().unwrap(),
            )
        })
        .expect("the reconciliation line");
    assert!(served.1 > 0 && served.0 == served.1, "{served:?}");
}

fn namespaces_available() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("iptables").arg("--version").output().is_ok()
}
