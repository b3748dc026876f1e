#!/usr/bin/env bash
# A one-node SLURM on this machine, for the `cluster` tests (tests/test_cluster.py).
#
#   sudo tests/cluster/start_slurm.sh start    install (Debian packages) and start; idempotent
#   sudo tests/cluster/start_slurm.sh stop     stop the daemons (packages and config stay)
#   tests/cluster/start_slurm.sh status        exit 0 when the node answers, is usable and has GPUs
#
# It installs Debian's slurmctld, slurmd, slurm-client and munge, writes /etc/slurm/slurm.conf
# for one node named after this host with two partitions on it, `cpu` (default) and a
# `gpu` partition whose node declares 4 GPUs as generic resources without any hardware behind
# them (gres.conf: AutoDetect=off, four harmless character devices as their files): jobs that ask
# for GPUs (sbatch --gpus=1) are scheduled and counted like on a GPU cluster, which checks the
# profile's routing and GPU requests, not CUDA.  It starts munged, slurmctld and slurmd.
#
# The node advertises at least 64 GB so that the production memory requests of
# profiles/slurm (up to 32 GB for training) are accepted; memory is not a consumable
# resource here (SelectTypeParameters=CR_Core) and SlurmdParameters=config_overrides keeps
# slurmd from draining the node for having less.  No slurmdbd: without accounting the
# workflow is run with an empty account (TBOTAN_SLURM_ACCOUNT=) and status comes from squeue
# (MinJobAge is long enough for it).
#
# Exit codes: 0 done, 77 cannot run here (not root, no apt-get/packages, daemons would not
# start): the message on stderr says why, and the tests skip with it.  Anything else: a bug.
set -uo pipefail

action=${1:-start}
conf_dir=/etc/slurm
log_dir=/var/log/slurm
node=$(hostname -s)
skip() { echo "start_slurm.sh: $*" >&2; exit 77; }


node_ready() {
    command -v sinfo >/dev/null 2>&1 || return 1
    local state
    state=$(timeout 10 sinfo -h -n "$node" -o %T 2>/dev/null | head -n1)
    case "$state" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

# the node declares GPUs as generic resources (the GPU tests need them)
usable() {
    node_ready && timeout 10 sinfo -h -n "$node" -o %G 2>/dev/null | grep -q "gpu:"
}

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || skip "SLURM is not installed (${missing[*]} missing) and apt-get is not available to install it"
    local packages=(slurmctld slurmd slurm-client munge) log=/tmp/start_slurm_apt.log
    echo "start_slurm.sh: installing ${packages[*]} (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    # without package lists (a fresh machine) the first try fails: update, then try again
    if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >"$log" 2>&1; then
        apt-get update -q >>"$log" 2>&1 \
            && apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$log" 2>&1 \
            || skip "apt-get could not install SLURM (see $log): $(tail -n 1 "$log")"
    fi
}

write_config() {
    local cpus mem_mb gpus=4
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
    [ "$mem_mb" -lt 64000 ] && mem_mb=64000
    mkdir -p "$conf_dir" "$log_dir" /var/spool/slurmctld /var/spool/slurmd
    cat >"$conf_dir/slurm.conf" <<CONF
# Written by tbotan tests/cluster/start_slurm.sh: a one-node test cluster.
ClusterName=tbotan-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$gpus State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
CONF
    # GPUs as counted resources only: no autodetection (there is no NVML).  slurmd wants one
    # character device per GPU (without File it reports 0 and the node goes INVAL): four
    # harmless ones stand in for them
    cat >"$conf_dir/gres.conf" <<CONF
# Written by tbotan tests/cluster/start_slurm.sh: $gpus GPUs without hardware, for scheduling tests.
AutoDetect=off
NodeName=$node Name=gpu File=/dev/null,/dev/zero,/dev/full,/dev/urandom
CONF
}

start_munge() {
    if timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile /etc/munge/munge.key
        else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
    fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged --force || skip "munged would not start"
    timeout 5 munge -n </dev/null | timeout 5 unmunge >/dev/null 2>&1 || skip "munge does not round-trip a credential"
}

start() {
    [ "$(id -u)" -eq 0 ] || { usable && exit 0; skip "needs root to install and start SLURM (run it with sudo)"; }
    usable && { echo "start_slurm.sh: SLURM already up on $node" >&2; exit 0; }
    if node_ready; then  # up, but configured by an older version of this script (no GPUs)
        echo "start_slurm.sh: restarting SLURM on $node to declare its GPUs" >&2
        pkill -x slurmd; pkill -x slurmctld
        for _ in $(seq 20); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.5; done
    fi
    install_packages
    write_config
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld || skip "slurmctld would not start: $(tail -n 3 $log_dir/slurmctld.log 2>/dev/null)"
    pgrep -x slurmd >/dev/null || slurmd || skip "slurmd would not start: $(tail -n 3 $log_dir/slurmd.log 2>/dev/null)"
    for _ in $(seq 60); do
        usable && { echo "start_slurm.sh: SLURM up on $node (partitions cpu, gpu; $(sinfo -h -n "$node" -o %G))" >&2; exit 0; }
        scontrol update nodename="$node" state=resume >/dev/null 2>&1
        sleep 1
    done
    skip "node $node did not become idle in 60 s: $(sinfo -h -N -o '%N %T %E' 2>&1)"
}

stop() {
    [ "$(id -u)" -eq 0 ] || skip "needs root to stop SLURM"
    pkill -x slurmd; pkill -x slurmctld
    pkill -x munged
    echo "start_slurm.sh: stopped" >&2
}

case "$action" in
    start) start ;;
    stop) stop ;;
    status) usable ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
