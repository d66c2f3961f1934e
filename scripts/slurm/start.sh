#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for lrbench's cluster tests (tests/test_slurm_cluster.py)
# and for trying `lrbench sweep --executor slurm` without a real cluster.
#
#   sudo bash scripts/slurm/start.sh     # installs Debian's slurmctld, slurmd, slurm-client, munge if missing
#   sinfo                                # one node, partition "debug", idle
#   sudo bash scripts/slurm/stop.sh
#
# Starts munged, slurmctld and slurmd directly (no systemd needed: works in containers and CI).
# Process tracking is proctrack/linuxproc and there is no cgroup, no accounting database.
# It writes /etc/slurm/slurm.conf (refusing to replace one it did not write) and keeps state and
# logs under $LRBENCH_SLURM_STATE (default /var/spool/slurm-lrbench); every start begins afresh.
# Environment: LRBENCH_SLURM_NO_INSTALL=1 never runs apt-get; LRBENCH_SLURM_CPUS / _MEM_MB
# override the node's size (default: what `slurmd -C` detects).
set -euo pipefail

STATE=${LRBENCH_SLURM_STATE:-/var/spool/slurm-lrbench}
CONF=/etc/slurm/slurm.conf
MARK="# written by lrbench scripts/slurm/start.sh"

die() { echo "slurm/start.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (it starts munged, slurmctld and slurmd)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    [[ ${LRBENCH_SLURM_NO_INSTALL:-0} == 1 ]] && die "slurmctld/slurmd/sbatch/munged missing"
    echo "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; move it away first"
fi

# Already up (e.g. started twice)? Then leave it alone.
if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
    echo "slurm is already running:"; sinfo; exit 0
fi

HOST=$(hostname -s)
NODE=$(slurmd -C | head -1)             # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
CPUS=${LRBENCH_SLURM_CPUS:-$(sed -E 's/.* CPUs=([0-9]+).*/\1/' <<<"$NODE")}
MEM=${LRBENCH_SLURM_MEM_MB:-$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$NODE")}

# --- munge: authentication between the daemons and the commands -----------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
fi

# --- slurm ------------------------------------------------------------------------------------
rm -rf "$STATE"
mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/log" /etc/slurm
cat >"$CONF" <<CONF
$MARK
# A one-node test cluster: $HOST with $CPUS CPUs and $MEM MB.
ClusterName=lrbench
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Fast turnaround for tests: a cancelled job is SIGKILLed 2 s after SIGTERM, finished jobs
# leave squeue after 60 s.
KillWait=2
MinJobAge=60
InactiveLimit=0
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
echo "wrote $CONF"

slurmctld -c        # -c: start without any saved state
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
scontrol ping | grep -q "is UP" || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
slurmd
for _ in $(seq 150); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    [[ $state == idle* ]] && break
    sleep 0.2
done
state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
if [[ $state != idle* ]]; then
    scontrol update nodename="$HOST" state=resume 2>/dev/null || true
    sleep 1
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
fi
[[ $state == idle* ]] || die "node $HOST is '$state', not idle (see $STATE/log/slurmd.log and slurmctld.log)"
sinfo
echo "slurm is up: partition debug, node $HOST ($CPUS CPUs, $MEM MB); logs in $STATE/log"
