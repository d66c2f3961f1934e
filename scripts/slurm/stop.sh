#!/usr/bin/env bash
# Stops the one-node Slurm cluster that scripts/slurm/start.sh started: cancels every job, stops
# slurmctld and slurmd (scontrol shutdown), then munged. Leaves the packages installed.
#   sudo bash scripts/slurm/stop.sh            # keep state and logs ($LRBENCH_SLURM_STATE)
#   sudo bash scripts/slurm/stop.sh --purge    # also remove them and /etc/slurm/slurm.conf
set -uo pipefail

STATE=${LRBENCH_SLURM_STATE:-/var/spool/slurm-lrbench}
CONF=/etc/slurm/slurm.conf
MARK="# written by lrbench scripts/slurm/start.sh"

if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    echo "slurm/stop.sh: $CONF was not written by start.sh; not touching this cluster" >&2
    exit 1
fi

stop_pid() {  # stop_pid NAME PIDFILE: SIGTERM, then SIGKILL after 10 s
    local name=$1 file=$2 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "$name ($pid) did not stop on SIGTERM; SIGKILL"
    kill -9 "$pid" 2>/dev/null
}

if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q "is UP"; then
    scancel --user="$(id -un)" 2>/dev/null || true
    scontrol shutdown 2>/dev/null || true
fi
stop_pid slurmd "$STATE/slurmd.pid"
stop_pid slurmctld "$STATE/slurmctld.pid"
for f in /run/munge/munged.pid /var/run/munge/munged.pid; do stop_pid munged "$f"; done

if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    [[ -e $CONF ]] && rm -f "$CONF"
fi
echo "slurm stopped"
