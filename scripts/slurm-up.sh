#!/usr/bin/env bash
# Start a single-node SLURM cluster on loopback, for tests, benchmarks and trying
# `bidsfill --use-plugin slurm.yml` on one machine.
#
#   bash scripts/slurm-up.sh [STATE_DIR]      (default: /tmp/bidsfill-slurm)
#   export SLURM_CONF=STATE_DIR/slurm.conf    (the script prints this line last)
#   bash scripts/slurm-down.sh [STATE_DIR]
#
# It installs Debian's `slurm-wlm` and `munge` with apt-get when slurmctld, slurmd, sbatch
# or munged is missing, then writes a munge key, slurm.conf (one node `localhost` with the
# CPUs and memory `slurmd -C` detects, one partition) and starts munged, slurmctld and slurmd
# with every socket, pid file, log and spool directory inside STATE_DIR, so that nothing of a
# system-wide SLURM or munge is touched. It waits until the node is idle.
# Running it again while the cluster is up does nothing. Must run as root (or with sudo):
# slurmd starts each job as the submitting user.
# Exit codes: 0 up; 3 SLURM is missing and cannot be installed (no apt-get, not root);
# 1 any other failure (the logs in STATE_DIR say why).
set -euo pipefail

STATE=${1:-${BIDSFILL_SLURM_DIR:-/tmp/bidsfill-slurm}}
CTLD_PORT=${BIDSFILL_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${BIDSFILL_SLURMD_PORT:-6818}
PATH=$PATH:/usr/sbin:/sbin

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "slurm-up: needs root (or passwordless sudo) to run slurmd." >&2
        exit 3
    fi
fi

# --- install ---------------------------------------------------------------------------
missing=0
for exe in slurmctld slurmd sbatch squeue sinfo munged mungekey; do
    command -v "$exe" >/dev/null 2>&1 || missing=1
done
if [ "$missing" -eq 1 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "slurm-up: slurm-wlm/munge are not installed and there is no apt-get." >&2
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -q && \
           $SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge; } >&2; then
        echo "slurm-up: apt-get could not install slurm-wlm and munge." >&2
        exit 3
    fi
fi

# --- already up? -------------------------------------------------------------------------
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
export SLURM_CONF="$STATE/slurm.conf"
if alive "$STATE/munged.pid" && alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
    echo "slurm-up: cluster in $STATE is already running." >&2
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
fi

$SUDO mkdir -p "$STATE"
$SUDO chmod 0755 "$STATE"
$SUDO mkdir -p -m 0700 "$STATE/munge" "$STATE/ctld" "$STATE/spool"
$SUDO mkdir -p -m 0755 "$STATE/munge-run"  # munged wants its socket's folder executable by all

# --- munge -------------------------------------------------------------------------------
if [ ! -s "$STATE/munge/munge.key" ]; then
    $SUDO mungekey --create --keyfile="$STATE/munge/munge.key" --force
    $SUDO chmod 0600 "$STATE/munge/munge.key"
fi
if ! alive "$STATE/munged.pid"; then
    $SUDO munged --socket="$STATE/munge-run/munge.socket" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munged.pid" --log-file="$STATE/munged.log" \
        --seed-file="$STATE/munge/munged.seed" --num-threads=2
fi

# --- slurm.conf --------------------------------------------------------------------------
# The node line is what slurmd detects on this machine, renamed to localhost; 5% of the
# memory is kept back for the daemons and the submitting process.
detected=$(slurmd -C | head -n 1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$detected")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")
mem=$((mem * 95 / 100))
node_hw=$(sed -e 's/^NodeName=[^ ]* //' -e 's/RealMemory=[0-9]*//' <<<"$detected")
$SUDO tee "$SLURM_CONF" >/dev/null <<EOF
# Written by bidsfill scripts/slurm-up.sh: a one-node cluster on loopback.
ClusterName=bidsfill
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge-run/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No cgroups inside containers: track job processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost $node_hw RealMemory=$mem State=UNKNOWN
PartitionName=bidsfill Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# --- daemons -----------------------------------------------------------------------------
# -c: start from a clean controller state (no jobs left over from an earlier cluster).
if ! alive "$STATE/slurmctld.pid"; then
    $SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -c -f "$SLURM_CONF"
fi
if ! alive "$STATE/slurmd.pid"; then
    $SUDO env SLURM_CONF="$SLURM_CONF" slurmd -N localhost -f "$SLURM_CONF"
fi

state=""
for _ in $(seq 1 60); do
    state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
    case "$state" in
        idle|idle~|mix|alloc) break ;;
    esac
    sleep 1
done
case "$state" in
    idle|idle~|mix|alloc) ;;
    *)
        echo "slurm-up: node localhost did not become idle (state '${state}'); see $STATE/*.log" >&2
        exit 1
        ;;
esac
echo "slurm-up: one-node cluster up (CPUs=$cpus, RealMemory=${mem}M) in $STATE." >&2
echo "export SLURM_CONF=$SLURM_CONF"
