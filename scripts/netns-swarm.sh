#!/usr/bin/env bash
# A private swarm across "machines" on this one machine: network namespaces
# stand in for the machines, so you can watch the steps of the README's
# "A private swarm on your own machines" before doing them on real ones.
#
#   chain host   10.78.0.1 (bridge br0)   strata-testnet up --listen 10.78.0.1 --nodes 0 --verifiers 0
#   machine 1    10.78.0.2 (veth)         strata-node --url http://10.78.0.1:8899 ...
#   machine N    10.78.0.N+1
#
# Everything happens inside a new user, network and PID namespace made with
# `unshare` (no root needed where unprivileged user namespaces are allowed;
# nothing on the host's network is touched) and dies with it. The script
# prints each command with the machine it runs on, sends one paid chat
# completion through the gateway, checks its receipt with `strata audit`
# from a joining machine, and exits. Logs stay in the printed directory.
#
# usage: scripts/netns-swarm.sh [--machines N] [--keep]
#   --machines N   joining machines (default 1), each running one node
#   --keep         stay up until Ctrl-C after the check
# Needs: iproute2 (ip), util-linux (unshare, nsenter), curl, the model
# (scripts/fetch-model; the namespaces have no internet).
set -euo pipefail

HOST_IP=10.78.0.1
MACHINES=1
KEEP=0

if [ "${1:-}" = "--inside" ]; then
    shift
    INSIDE=1
else
    INSIDE=0
fi
while [ $# -gt 0 ]; do
    case "$1" in
        --machines) MACHINES="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--machines N] [--keep]" >&2; exit 2 ;;
    esac
done

if [ "$INSIDE" = 0 ]; then
    cd "$(dirname "$0")/.."
    for tool in ip unshare nsenter curl; do
        command -v "$tool" >/dev/null || { echo "netns-swarm: needs $tool" >&2; exit 1; }
    done
    if ! unshare --user --map-root-user --net true 2>/dev/null; then
        echo "netns-swarm: this machine does not allow user and network namespaces (unshare -rn)" >&2
        exit 1
    fi
    echo "Building strata-testnet, strata-node and strata..."
    cargo build -q -p strata-testnet --bin strata-testnet -p strata-node --bin strata-node \
        -p strata-cli --bin strata
    TARGET="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    export NETNS_BIN="$TARGET/debug"
    export NETNS_WORK="$(mktemp -d /tmp/strata-swarm.XXXXXX)"
    echo "Logs and keys: $NETNS_WORK"
    flags=(--machines "$MACHINES")
    [ "$KEEP" = 1 ] && flags+=(--keep)
    exec unshare --user --map-root-user --net --pid --fork --mount-proc --kill-child \
        bash "$0" --inside "${flags[@]}"
fi

# ---- inside the namespaces: we are the chain host ----
BIN="$NETNS_BIN"
WORK="$NETNS_WORK"
STATE="$WORK/chain-host"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

say() { # say MACHINE COMMAND...: print it as typed on that machine
    local where="$1"; shift
    printf '\n[%s]$ %s\n' "$where" "$*"
}

wait_for_line() { # wait_for_line FILE TEXT SECONDS PID: until the line, the time or the process ends
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || break
        sleep 0.2
    done
    echo "netns-swarm: no \"$2\" in $1 (waited up to $3 s):" >&2
    tail -20 "$1" >&2
    exit 1
}

ip link set lo up
ip link add br0 type bridge
ip addr add "$HOST_IP/24" dev br0
ip link set br0 up
declare -a HOLDERS
for ((m = 1; m <= MACHINES; m++)); do
    unshare --net sleep infinity &
    pid=$!
    while [ "$(readlink /proc/$pid/ns/net 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] \
        || [ -z "$(readlink /proc/$pid/ns/net 2>/dev/null)" ]; do
        sleep 0.01
    done
    ip link add "veth-m$m" type veth peer name eth0 netns "$pid"
    ip link set "veth-m$m" master br0
    ip link set "veth-m$m" up
    nsenter -t "$pid" -n ip link set lo up
    nsenter -t "$pid" -n ip addr add "10.78.0.$((m + 1))/24" dev eth0
    nsenter -t "$pid" -n ip link set eth0 up
    HOLDERS[$m]=$pid
done
echo "Chain host at $HOST_IP; joining machines at 10.78.0.2..10.78.0.$((MACHINES + 1))."

say "chain host" strata-testnet up --listen "$HOST_IP" --nodes 0 --verifiers 0 --state-dir "$STATE"
"$BIN/strata-testnet" up --listen "$HOST_IP" --nodes 0 --verifiers 0 --state-dir "$STATE" \
    >"$WORK/chain-host.log" 2>&1 &
wait_for_line "$WORK/chain-host.log" "there:  strata-node" 120 $!
sed -n '/^Join from another machine/,$p' "$WORK/chain-host.log"
RELAYER="$(grep "there:  strata-node" "$WORK/chain-host.log" | grep -o -- '--relayer [^ ]*' | cut -d' ' -f2)"
declare -a NODES

for ((m = 1; m <= MACHINES; m++)); do
    on="machine $m"
    run_there=(nsenter -t "${HOLDERS[$m]}" -n)
    key="$WORK/machine-$m/node.json"
    mkdir -p "$WORK/machine-$m"
    say "$on" strata keygen --outfile "$key"
    "${run_there[@]}" "$BIN/strata" keygen --outfile "$key"
    pubkey="$("$BIN/strata" --keypair "$key" address)"
    say "chain host" strata faucet --testnet-dir "$STATE" --to "$pubkey" --sol 10 --tokens 2000
    "$BIN/strata" faucet --testnet-dir "$STATE" --to "$pubkey" --sol 10 --tokens 2000
    say "$on" strata-node --keypair "$key" --url "http://$HOST_IP:8899" --relayer "$RELAYER" \
        --listen /ip4/0.0.0.0/tcp/4001 --stake 1000
    "${run_there[@]}" "$BIN/strata-node" --keypair "$key" --url "http://$HOST_IP:8899" \
        --relayer "$RELAYER" --listen /ip4/0.0.0.0/tcp/4001 --stake 1000 --quiet \
        --state-dir "$WORK/machine-$m/state" >"$WORK/machine-$m.log" 2>&1 &
    NODES[$m]=$!
done
for ((m = 1; m <= MACHINES; m++)); do
    wait_for_line "$WORK/machine-$m.log" "serving:" 180 "${NODES[$m]}"
    grep "serving:" "$WORK/machine-$m.log"
done

echo
echo "Waiting for the gateway to hear the nodes' capacity on gossip..."
for ((i = 0; i < 300; i++)); do
    curl -s "http://$HOST_IP:8080/v1/models" | grep -q '"id"' && break
    sleep 0.2
done
say "chain host" curl "http://$HOST_IP:8080/v1/chat/completions" ...
reply="$(curl -s "http://$HOST_IP:8080/v1/chat/completions" \
    -H 'Authorization: Bearer strata-demo-key' -H 'Content-Type: application/json' \
    -d '{"model": "SmolLM2-135M-Instruct", "max_tokens": 24, "messages": [{"role": "user", "content": "Name three colours."}]}')"
echo "$reply"
task="$(echo "$reply" | grep -o '"task_id":"[0-9a-f]*"' | cut -d'"' -f4)"
[ -n "$task" ] || { echo "netns-swarm: no task id in the reply" >&2; exit 1; }

sleep 4 # the relayer posts a batch every 3 s
say "machine 1" strata --url "http://$HOST_IP:8899" audit "$task" --relayer "http://$HOST_IP:8788"
nsenter -t "${HOLDERS[1]}" -n "$BIN/strata" --url "http://$HOST_IP:8899" audit "$task" \
    --relayer "http://$HOST_IP:8788"

echo
echo "The private swarm works: a node on another machine served a paid task, and its receipt is on-chain."
if [ "$KEEP" = 1 ]; then
    echo "Up until Ctrl-C (logs in $WORK)."
    wait
fi
