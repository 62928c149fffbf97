#!/usr/bin/env bash
# Make sure the local docker engine answers, for sessions (`make run`) and the session tests
# (`make test`): when `docker info` fails, start dockerd in the background (its own session,
# so it outlives make; log in $DOCKERD_LOG) and wait until it answers. Fails with the reason
# and the log's last lines when docker is not installed, dockerd dies, or it does not answer
# within $DOCKER_START_TIMEOUT seconds (default 60).
#   scripts/start-docker.sh
set -euo pipefail
timeout_s="${DOCKER_START_TIMEOUT:-60}"
log="${DOCKERD_LOG:-/var/log/vfd-dockerd.log}"

answers() { timeout 20 docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
    echo "start-docker: docker is not installed (apt-get install docker.io, or make system-deps)" >&2
    exit 1
fi
if answers; then
    echo "start-docker: docker answers"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "start-docker: docker does not answer and only root can start dockerd" >&2
    exit 1
fi
if [ -d /run/systemd/system ] && systemctl start docker >/dev/null 2>&1; then
    how="systemctl start docker"
    pid=""
else
    mkdir -p "$(dirname "$log")"
    setsid dockerd >"$log" 2>&1 </dev/null &
    pid=$!
    how="dockerd (pid $pid, log $log)"
fi
deadline=$((SECONDS + timeout_s))
until answers; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
        echo "start-docker: dockerd exited before it answered; last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "start-docker: docker did not answer within ${timeout_s}s after $how" >&2
        [ -n "$pid" ] && { tail -n 20 "$log" >&2 || true; }
        exit 1
    fi
    sleep 0.5
done
echo "start-docker: started $how"
