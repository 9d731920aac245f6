#!/usr/bin/env bash
# make run: an embedded redis-server (unless REDIS_URL is set), one gateway and one router, in the
# foreground. Ctrl-C or SIGTERM stops all three. Data (AOF), the generated JWT secret and metrics
# token live in var/.
# Everything under var/ is private to the user who runs it (directories 0700, files 0600): the
# umask is inherited by redis-server (AOF, log) and the gateway and router.
set -uo pipefail
umask 077
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VAR=${CHATGW_VAR_DIR:-$PWD/var}
mkdir -p "$VAR"
# A var/ left by an older run.sh (0755/0644): take group and other access away.
chmod -R go= "$VAR"
for f in jwt_secret metrics_token; do
  [ -s "$VAR/$f" ] || od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$VAR/$f"
done
export CHATGW_JWT_SECRET=${CHATGW_JWT_SECRET:-$(cat "$VAR/jwt_secret")}
export CHATGW_METRICS_TOKEN=${CHATGW_METRICS_TOKEN:-$(cat "$VAR/metrics_token")}
export CHATGW_LISTEN=${CHATGW_LISTEN:-127.0.0.1:8080}
export CHATGW_CONFIG=${CHATGW_CONFIG:-$PWD/config/chatgw.ini}

pids=()      # gateway and router
redis_pid=
stopping=
# Signals only raise a flag: the waiting and the clean-up happen in the main flow below, because
# bash's `wait` is unreliable around signals.
trap 'stopping=1' INT TERM
# Should the script die anyway, leave nothing running.
trap 'kill -TERM "${pids[@]}" $redis_pid 2>/dev/null' EXIT

if [ -n "${REDIS_URL:-}" ]; then
  export CHATGW_REDIS_URL=$REDIS_URL
else
  sock=$VAR/redis.sock
  # Its own session: Ctrl-C reaches the gateway and router only; Redis is stopped after them.
  setsid redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$VAR" \
    --appendonly yes --save '' --logfile "$VAR/redis.log" &
  redis_pid=$!
  for _ in $(seq 1 100); do
    redis-cli -s "$sock" ping >/dev/null 2>&1 && break
    kill -0 "$redis_pid" 2>/dev/null || { echo "redis-server failed to start: see $VAR/redis.log"; exit 1; }
    sleep 0.05
  done
  export CHATGW_REDIS_URL=unix:$sock
fi

"$BUILD/chatgw-gateway" & pids+=($!)
"$BUILD/chatgw-router" & pids+=($!)

# Two demo agents who together serve every queue of the shipped configuration: an agent with
# every customer-facing queue, and a supervisor who also takes escalations and overflow. A queue
# no agent can reach is reported (chatgw-router --check-config) before anyone is stranded there.
agent_skills=general,presales,faq,tech_support,after_sales,complaints
supervisor_skills=supervisors,$agent_skills
"$BUILD/chatgw-router" --check-config --skills "$agent_skills" --skills "$supervisor_skills" \
  | grep -E 'UNREACHABLE|no agent can reach' || true
token=$("$BUILD/chatgw-token" --agent demo-agent --name "Demo Agent" --skills "$agent_skills" --cap 4 --ttl 86400)
sup_token=$("$BUILD/chatgw-token" --agent demo-supervisor --name "Demo Supervisor" --skills "$supervisor_skills" --cap 4 --ttl 86400)
cat <<MSG

  chatgw is running (Ctrl-C stops it).
    customer widget : http://$CHATGW_LISTEN/
    agent console   : http://$CHATGW_LISTEN/agent#token=$token
    supervisor      : http://$CHATGW_LISTEN/agent#token=$sup_token
    health          : http://$CHATGW_LISTEN/healthz
    metrics         : http://$CHATGW_LISTEN/metrics (Authorization: Bearer <$VAR/metrics_token>)
  Open the widget and an agent console in two tabs, click "Away · Go online" in the console (it
  connects away: agents choose when they take conversations) and start chatting.

MSG
# gone PID...: 0 once none of them runs; waits at most 10 s. (Polling, not `wait`: bash 5.2's
# `wait` can hang on a child that was reaped while a signal was being handled.)
gone() {
  for _ in $(seq 1 200); do
    local alive=
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && return 0
    sleep 0.05
  done
  return 1
}

# Until Ctrl-C / SIGTERM, or until one of them exits.
while [ -z "$stopping" ] && kill -0 "${pids[0]}" 2>/dev/null && kill -0 "${pids[1]}" 2>/dev/null; do
  sleep 0.2
done
[ -z "$stopping" ] && echo "a chatgw process exited; stopping the others."
trap '' INT TERM   # a second Ctrl-C must not cut the clean-up short
kill -TERM "${pids[@]}" 2>/dev/null
gone "${pids[@]}" || echo "chatgw: gateway or router did not stop in 10 s"
if [ -n "$redis_pid" ]; then   # Redis last, once nobody writes to it any more
  kill -TERM "$redis_pid" 2>/dev/null
  gone "$redis_pid" || echo "chatgw: redis-server did not stop in 10 s"
fi
trap - EXIT
echo "chatgw stopped."
