#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, for trying corpus-engine's cluster path (submit, node loss)
# without a cloud: a head and N worker nodes, each its own `ray start` on 127.0.0.1, token authentication on.
#
#   cluster/local_cluster.sh up [WORKERS]     # default 2 workers; CPUS_PER_NODE (default 1) CPUs each
#   corpus-engine submit jobs/sample.yaml --address http://127.0.0.1:8265 --output "$PWD/out/sample-cluster"
#   cluster/local_cluster.sh status
#   cluster/local_cluster.sh down             # stops exactly this cluster's processes, no other Ray
#
# The token is yours: `ray get-auth-token --generate` creates ~/.ray/auth_token if it is missing, and both the
# nodes and `corpus-engine submit` read it from there. Every node runs in its own process group (recorded in
# $STATE/pids), so `down` never touches another Ray on the machine (unlike `ray stop`).
# Settings (environment): CORPUS_ENGINE_CLUSTER_DIR (state, logs, Ray temp dir; default
# /tmp/corpus-engine-cluster), DASHBOARD_PORT (8265), GCS_PORT (6380), CPUS_PER_NODE (1), RAY (ray on PATH).
set -euo pipefail

STATE=${CORPUS_ENGINE_CLUSTER_DIR:-/tmp/corpus-engine-cluster}
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
GCS_PORT=${GCS_PORT:-6380}
CPUS_PER_NODE=${CPUS_PER_NODE:-1}
RAY=${RAY:-ray}
PYTHON=python3
if RAY_PATH=$(command -v "$RAY"); then
  RAY_BIN=$(dirname "$RAY_PATH")
  [ -x "$RAY_BIN/python" ] && PYTHON="$RAY_BIN/python"
  # Jobs run `python -m engine ...` on the nodes: the Python that has Ray (and the engine's requirements).
  export PATH="$RAY_BIN:$PATH"
fi
export RAY_AUTH_MODE=token

usage() {
  echo "usage: $0 up [WORKERS] | down | status" >&2
  exit 2
}

# Wait until the dashboard answers with the token and reports $1 alive nodes.
wait_for_nodes() {
  "$PYTHON" - "$DASHBOARD_PORT" "$1" <<'PY'
import json, pathlib, sys, time, urllib.request
port, want = sys.argv[1], int(sys.argv[2])
token = (pathlib.Path.home() / ".ray" / "auth_token").read_text().strip()
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/nodes?view=summary", headers={"Authorization": f"Bearer {token}"}
)
deadline = time.monotonic() + 180
alive = 0
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            summary = json.load(response)["data"]["summary"]
        alive = sum(1 for node in summary if node.get("raylet", {}).get("state") == "ALIVE")
        if alive >= want:
            sys.exit(0)
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(1)
sys.exit(f"only {alive} of {want} nodes came up within 180s; see the logs in the state directory")
PY
}

# Start one `ray start --block` in its own session (process group) and record its pid.
start_node() {
  local name=$1
  shift
  setsid "$RAY" start --block --disable-usage-stats --node-ip-address=127.0.0.1 --num-cpus="$CPUS_PER_NODE" "$@" \
    >"$STATE/logs/$name.log" 2>&1 &
  echo $! >>"$STATE/pids"
}

up() {
  local workers=${1:-2}
  if [ -s "$STATE/pids" ]; then
    echo "a local cluster is already recorded in $STATE/pids; run '$0 down' first" >&2
    exit 1
  fi
  mkdir -p "$STATE/logs"
  "$RAY" get-auth-token --generate >/dev/null 2>&1
  start_node head --head --port="$GCS_PORT" --temp-dir="$STATE/ray" \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
    --ray-client-server-port=$((GCS_PORT + 1)) --dashboard-agent-listen-port=$((GCS_PORT + 100))
  wait_for_nodes 1
  for i in $(seq 1 "$workers"); do
    # Every node on one machine needs its own agent and metrics ports. One at a time: nodes starting together
    # on a small machine can time out registering with the head.
    start_node "worker-$i" --address="127.0.0.1:$GCS_PORT" \
      --dashboard-agent-listen-port=$((GCS_PORT + 100 + i)) --metrics-export-port=$((GCS_PORT + 200 + i))
    wait_for_nodes $((i + 1))
  done
  echo "local Ray cluster up: head + $workers worker(s), $CPUS_PER_NODE CPU(s) each, token auth on"
  echo "  dashboard / job API: http://127.0.0.1:$DASHBOARD_PORT   (token: ~/.ray/auth_token)"
  echo "  corpus-engine submit jobs/sample.yaml --address http://127.0.0.1:$DASHBOARD_PORT --output \"\$PWD/out/sample-cluster\""
  echo "  stop it with: $0 down"
}

down() {
  if [ ! -s "$STATE/pids" ]; then
    echo "no local cluster recorded in $STATE/pids"
    return 0
  fi
  # Workers first, then the head: SIGTERM each process group, then SIGKILL what is left.
  local pids
  pids=$(tac "$STATE/pids")
  for pid in $pids; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 20); do
    local alive=0
    for pid in $pids; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in $pids; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  rm -f "$STATE/pids"
  echo "local Ray cluster stopped (logs kept in $STATE/logs)"
}

status() {
  if [ ! -s "$STATE/pids" ]; then
    echo "no local cluster recorded in $STATE/pids"
    return 1
  fi
  "$RAY" status --address="127.0.0.1:$GCS_PORT"
}

case "${1:-}" in
  up) up "${2:-2}" ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
