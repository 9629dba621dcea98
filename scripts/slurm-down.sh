#!/usr/bin/env bash
# Stop the single-node cluster that scripts/slurm-up.sh started in STATE_DIR: cancel its
# jobs, then stop slurmd, slurmctld and munged by the pids in their pid files (nothing else
# is signalled). `--purge` also removes STATE_DIR.
#
#   bash scripts/slurm-down.sh [STATE_DIR] [--purge]
set -uo pipefail

STATE=/tmp/bidsfill-slurm
[ -n "${BIDSFILL_SLURM_DIR:-}" ] && STATE=$BIDSFILL_SLURM_DIR
PURGE=0
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=1 ;;
        *) STATE=$arg ;;
    esac
done
PATH=$PATH:/usr/sbin:/sbin
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
export SLURM_CONF="$STATE/slurm.conf"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ -f "$SLURM_CONF" ] && alive "$STATE/slurmctld.pid"; then
    $SUDO env SLURM_CONF="$SLURM_CONF" scancel --partition=bidsfill 2>/dev/null || true
    for _ in $(seq 1 15); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 1
    done
fi

for daemon in slurmd slurmctld munged; do
    pidfile="$STATE/$daemon.pid"
    alive "$pidfile" || continue
    pid=$(cat "$pidfile")
    $SUDO kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        $SUDO kill -KILL "$pid" 2>/dev/null || true
    fi
    $SUDO rm -f "$pidfile"
done

if [ "$PURGE" -eq 1 ]; then
    $SUDO rm -rf "$STATE"
fi
echo "slurm-down: cluster in $STATE stopped." >&2
