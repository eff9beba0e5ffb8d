//! Private swarms across machines: what `strata-testnet up --listen <ip>`
//! refuses before it binds anything, and what it prints for the machines
//! that join it.
//!
//! A testnet is on loopback unless told otherwise. `--listen` names one
//! address of this machine and every listener binds there: the chain's RPC
//! and websocket, the relayer's HTTP API and explorer, the gateway's HTTP API
//! and the p2p listeners of the in-process services (consecutive ports from
//! [`DEFAULT_P2P_PORT`], so that a firewall can name them). Another machine
//! then runs `strata-node --url http://<ip>:8899 --relayer <multiaddr>` and
//! finds its peers on the chain. What this exposes, and why it is for a swarm
//! of one's own machines only, is in the README ("A private swarm on your own
//! machines").

use std::net::IpAddr;
use std::path::Path;

use crate::TestnetManifest;

/// First p2p port of the in-process services with `--listen` (relayer,
/// gateway, nodes, verifiers in that order). Clear of `strata-node`'s
/// default 4001, so a node can also run beside the testnet.
pub const DEFAULT_P2P_PORT: u16 = 4100;

/// Why `--listen` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// The unspecified address without `--listen-any`.
    #[error(
        "--listen {0} means every interface of this machine: the chain (airdrops, admin \
         methods), the relayer and the gateway with its demo API key would answer anyone who \
         can reach any of them. Name the address the swarm's machines share (for example \
         --listen 192.168.1.10), or add --listen-any if every interface is really meant"
    )]
    Unspecified(IpAddr),
    /// Cheating nodes on a chain other machines can reach.
    #[error(
        "--cheaters needs the chain on loopback: nodes cheat only against a local chain \
         (127.0.0.1) that no other machine can reach, and --listen {0} opens it to the \
         network. Drop --cheaters, or --listen"
    )]
    CheatersOffLoopback(IpAddr),
}

/// Checks `--listen ip` (with `--listen-any` or not, and `cheaters`
/// cheating nodes) before anything starts.
pub fn check_listen(ip: IpAddr, listen_any: bool, cheaters: usize) -> Result<(), ListenError> {
    if ip.is_unspecified() && !listen_any {
        return Err(ListenError::Unspecified(ip));
    }
    // The node's own rule (`strata_node::cheat::allowed_on`) looks at the
    // RPC URL, which names loopback when the chain binds every interface:
    // refuse here, where the bind address is known.
    if !ip.is_loopback() && cheaters > 0 {
        return Err(ListenError::CheatersOffLoopback(ip));
    }
    Ok(())
}

/// The TCP ports a swarm's machines must reach on the chain host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwarmPorts {
    /// Chain JSON-RPC.
    pub rpc: u16,
    /// Chain websocket.
    pub ws: u16,
    /// Relayer HTTP API and explorer.
    pub relayer_http: u16,
    /// Gateway HTTP API.
    pub gateway_http: u16,
    /// First and last p2p port of the in-process services (`None`: each
    /// picked a free port).
    pub p2p: Option<(u16, u16)>,
}

/// What `strata-testnet up --listen` prints once it is up: the commands
/// that fund and start a node on another machine, and the ports to open.
/// `manifest` is the one written after the services started (it names the
/// relayer); `state_dir` is where it lives, as the operator typed it.
pub fn join_instructions(
    listen: IpAddr,
    manifest: &TestnetManifest,
    state_dir: &Path,
    ports: &SwarmPorts,
) -> String {
    let host = if listen.is_unspecified() {
        "<this machine's LAN address>".to_string()
    } else {
        match listen {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        }
    };
    let rpc_url = format!("http://{host}:{}", ports.rpc);
    let relayer = match manifest.relayer_multiaddrs.first() {
        // Bound on every interface, the relayer may have reported loopback
        // first: name the host as for the RPC URL.
        Some(addr) if listen.is_unspecified() => {
            let mut parts: Vec<&str> = addr.split('/').collect();
            if let Some(ip) = parts.get_mut(2) {
                *ip = &host;
            }
            parts.join("/")
        }
        Some(addr) => addr.clone(),
        None => "<the relayer's multiaddr>".to_string(),
    };
    let p2p = match ports.p2p {
        Some((first, last)) => format!("{first}-{last} (p2p)"),
        None => {
            "the services' p2p ports (free ones this time: pass --p2p-port to fix them)".to_string()
        }
    };
    let key = "~/.config/strata/node.json";
    [
        "Join from another machine (README: \"A private swarm on your own machines\"):".to_string(),
        format!("  there:  strata keygen --outfile {key}        # prints its public key"),
        format!(
            "  here:   strata faucet --testnet-dir {} --to <that public key> --sol 10 --tokens 2000",
            state_dir.display()
        ),
        format!(
            "  there:  strata-node --keypair {key} --url {rpc_url} --relayer {relayer} --listen /ip4/0.0.0.0/tcp/4001 --stake 1000"
        ),
        format!(
            "  firewall here, open to the swarm's machines only: TCP {} (chain RPC), {} (chain websocket), {p2p}, {} (explorer), {} (gateway, for clients)",
            ports.rpc, ports.ws, ports.relayer_http, ports.gateway_http
        ),
        "  firewall there: TCP 4001 (the node's p2p listener), open to this machine and the other nodes".to_string(),
        format!(
            "  check: {host}:{} in a browser (the explorer lists the new node once it has served)",
            ports.relayer_http
        ),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn every_interface_needs_its_own_flag_and_cheaters_need_loopback() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let lan = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1));
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            check_listen(any, false, 0),
            Err(ListenError::Unspecified(any))
        );
        let v6_any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            check_listen(v6_any, false, 0),
            Err(ListenError::Unspecified(v6_any))
        );
        assert_eq!(check_listen(any, true, 0), Ok(()));
        assert_eq!(check_listen(lan, false, 0), Ok(()));
        assert_eq!(
            check_listen(lan, false, 1),
            Err(ListenError::CheatersOffLoopback(lan))
        );
        assert_eq!(
            check_listen(any, true, 2),
            Err(ListenError::CheatersOffLoopback(any))
        );
        assert_eq!(check_listen(lo, false, 6), Ok(()));
        let msg = ListenError::Unspecified(any).to_string();
        assert!(msg.contains("--listen-any"), "{msg}");
    }

    #[test]
    fn join_instructions_name_the_chain_the_relayer_and_the_ports() {
        let manifest: TestnetManifest = serde_json::from_value(serde_json::json!({
            "rpc_url": "http://10.78.0.1:8899",
            "ws_url": "ws://10.78.0.1:8900",
            "program_id": "p",
            "mint": "m",
            "faucet_keypair": "k",
            "admin_keypair": "k",
            "relayer_keypair": "k",
            "client_keypair": "k",
            "node_keypairs": [],
            "nodes": [],
            "relayer_multiaddrs": ["/ip4/10.78.0.1/tcp/4100/p2p/12D3KooWRelayer"],
        }))
        .unwrap();
        let ports = SwarmPorts {
            rpc: 8899,
            ws: 8900,
            relayer_http: 8788,
            gateway_http: 8080,
            p2p: Some((4100, 4101)),
        };
        let dir = PathBuf::from(".strata/testnet");
        let lan = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1));
        let text = join_instructions(lan, &manifest, &dir, &ports);
        assert!(text.contains(
            "--url http://10.78.0.1:8899 --relayer /ip4/10.78.0.1/tcp/4100/p2p/12D3KooWRelayer"
        ));
        assert!(text.contains("strata faucet --testnet-dir .strata/testnet --to"));
        assert!(text.contains("8899 (chain RPC), 8900 (chain websocket), 4100-4101 (p2p)"));
        let any = join_instructions(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &manifest, &dir, &ports);
        assert!(any.contains("--url http://<this machine's LAN address>:8899"));
        assert!(any
            .contains("--relayer /ip4/<this machine's LAN address>/tcp/4100/p2p/12D3KooWRelayer"));
        let v6 = join_instructions("fd00::1".parse().unwrap(), &manifest, &dir, &ports);
        assert!(v6.contains("--url http://[fd00::1]:8899"));
        let free = SwarmPorts { p2p: None, ..ports };
        let text = join_instructions(lan, &manifest, &dir, &free);
        assert!(text.contains("pass --p2p-port"), "{text}");
    }
}
