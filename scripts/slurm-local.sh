#!/usr/bin/env bash
# A real single-node SLURM on localhost, for CI and tests/test_slurm.py:   scripts/slurm-local.sh start|stop|status
#
#   start   installs Debian's slurm-wlm + munge if missing (apt-get update; --no-install-recommends), writes
#           /etc/slurm/slurm.conf + gres.conf for this machine, starts munged, slurmctld and slurmd directly (no
#           systemd), and waits until the node is idle. Idempotent: a running cluster with the same config is left
#           alone; a changed config restarts the daemons this script started.
#   stop    stops only the daemons this script started (pid files under $STATE), never anything found running.
#   status  prints the daemons and the node; exit 0 iff the node accepts jobs.
#
# The node is shaped like one GPU node of the paper's cluster (4 GPUs, 64 CPUs, 512 GB), so the real profile's
# requests (workflow/profiles/default: --gpus=4 --cpus-per-gpu=8 --mem=...) are scheduled unchanged:
#   - the 4 GPUs are a fake GRES: gres.conf points at symlinks to /dev/null (SLURM rejects regular files; a
#     count-only gres.conf makes the node INVAL). SLURM still counts them, serialises 4-GPU jobs and sets
#     CUDA_VISIBLE_DEVICES in each job; CPU-only torch ignores it.
#   - CPUs and memory beyond the machine's are declared with SlurmdParameters=config_overrides, and
#     TaskPlugin=task/none binds nothing, so every job sees the machine's real cores (as a local run does: same
#     thread count, same numbers). Nothing is enforced (no cgroups): this is a scheduler test bed, not isolation.
# Without slurmdbd there is no sacct: the profile's status command is squeue, which sees finished jobs for MinJobAge
# (here 1 h, so that tests can read every job's record after a run; SLURM's default is 300 s).
# Environment: SLURM_LOCAL_GPUS (4), SLURM_LOCAL_CPUS (64), SLURM_LOCAL_MEM_MB (524288), SLURM_LOCAL_TIMEOUT (60).
set -euo pipefail

CMD=${1:-status}
STATE=/run/prift-slurm-local            # pid files of the daemons *this script* started
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by prift scripts/slurm-local.sh"
GPU_DIR=/var/lib/prift-slurm-local/gpus
LOG_DIR=/var/log/slurm
GPUS=${SLURM_LOCAL_GPUS:-4}
CPUS=${SLURM_LOCAL_CPUS:-64}
MEM_MB=${SLURM_LOCAL_MEM_MB:-524288}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
HOST=$(hostname -s)

say() { echo "slurm-local: $*" >&2; }
die() { say "$*"; exit "${2:-1}"; }

alive() {  # alive NAME PIDFILE: the pid in PIDFILE runs a process called NAME
    local pid
    [ -s "$2" ] || return 1
    pid=$(cat "$2" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$1" ]
}

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (installs packages, writes /etc/slurm, starts daemons)" 2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm is not installed and there is no apt-get to install it" 3
    # one apt-get at a time (scripts/install-tex.sh, install-chromium.sh take the same lock)
    exec 9>/var/lock/prift-apt.lock
    flock -w 1800 9 || die "waited 30 min for /var/lock/prift-apt.lock" 3
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    local log=/var/log/prift-slurm-local-apt.log
    apt-get update -qq >>"$log" 2>&1 || die "apt-get update failed (see $log)" 3
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$log" 2>&1 || die "apt-get install failed (see $log)" 3
}

node_memory() {  # the memory to declare: what slurmd sees, unless SLURM_LOCAL_MEM_MB asks for more
    local real
    real=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    real=$(( ${real:-2048} * 9 / 10 ))
    echo $(( MEM_MB > real ? MEM_MB : real ))
}

write_conf() {  # prints "changed" if the config files were (re)written
    local mem new gres i
    if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite a real cluster's config" 4
    fi
    mkdir -p "$CONF_DIR" "$GPU_DIR" "$LOG_DIR" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
    gres=""
    for ((i = 0; i < GPUS; i++)); do
        ln -sfn /dev/null "$GPU_DIR/nvidia$i"
        gres+="Name=gpu File=$GPU_DIR/nvidia$i"$'\n'
    done
    mem=$(node_memory)
    new=$(cat <<EOF
$MARK; edits are overwritten by 'start'.
ClusterName=prift-local
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
SchedulerType=sched/backfill
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmUser=root
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
    local changed=""
    if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$new" ]; then
        printf '%s\n' "$new" > "$CONF"; changed=1
    fi
    if [ ! -e "$CONF_DIR/gres.conf" ] || [ "$(cat "$CONF_DIR/gres.conf")" != "$MARK"$'\n'"${gres%$'\n'}" ]; then
        printf '%s\n%s' "$MARK" "$gres" > "$CONF_DIR/gres.conf"; changed=1
    fi
    [ -z "$changed" ] || echo changed
}

start_munge() {
    if alive munged /run/munge/munged.pid; then return; fi
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    fi
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid || true
    for _ in $(seq 50); do alive munged /run/munge/munged.pid && break; sleep 0.1; done
    alive munged /run/munge/munged.pid || die "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE/munged.pid"
}

start_daemon() {  # start_daemon NAME
    local name=$1 pidfile=/run/$1.pid
    if alive "$name" "$pidfile"; then return; fi
    rm -f "$pidfile"
    "/usr/sbin/$name" -f "$CONF" || true
    for _ in $(seq 100); do alive "$name" "$pidfile" && break; sleep 0.1; done
    if ! alive "$name" "$pidfile"; then
        tail -3 "$LOG_DIR/$name.log" >&2 || true
        die "$name did not start (see $LOG_DIR/$name.log; '$name -D -vvvv' says why)"
    fi
    cp "$pidfile" "$STATE/$name.pid"
}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1; }

stop_one() {  # stop_one NAME DAEMON_PIDFILE: only if this script started it (its pid is in $STATE)
    local name=$1 own=$STATE/$1.pid pid
    alive "$name" "$own" || { rm -f "$own"; return 0; }
    pid=$(cat "$own")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then say "$name ($pid) did not stop; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$own" "$2"
    say "stopped $name ($pid)"
}

case "$CMD" in
start)
    need_root
    install
    mkdir -p "$STATE"
    changed=$(write_conf)
    if [ -n "$changed" ] && { alive slurmctld /run/slurmctld.pid || alive slurmd /run/slurmd.pid; }; then
        say "config changed: restarting the daemons"
        if ! alive slurmctld "$STATE/slurmctld.pid" && alive slurmctld /run/slurmctld.pid; then
            die "slurmctld runs but was not started by this script; stop it first" 4
        fi
        stop_one slurmd /run/slurmd.pid
        stop_one slurmctld /run/slurmctld.pid
    fi
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    t0=$SECONDS
    while :; do
        s=$(node_state)
        case "$s" in
        idle*|mixed*|allocated*) break ;;
        down*|drain*|inval*|fail*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
        esac
        [ $((SECONDS - t0)) -lt "$TIMEOUT" ] || die "node '$HOST' is '${s:-unknown}' after ${TIMEOUT}s (see $LOG_DIR)"
        sleep 0.5
    done
    say "node $HOST is ${s} ($(sinfo -h -N -n "$HOST" -o '%c CPUs, %m MB, %G'))"
    ;;
stop)
    need_root
    stop_one slurmd /run/slurmd.pid
    stop_one slurmctld /run/slurmctld.pid
    stop_one munged /run/munge/munged.pid
    ;;
status)
    rc=0
    for d in munged:/run/munge/munged.pid slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid; do
        n=${d%%:*}; p=${d#*:}
        if alive "$n" "$p"; then
            own=""; alive "$n" "$STATE/$n.pid" && own=" (started by this script)"
            echo "$n: running, pid $(cat "$p")$own"
        else
            echo "$n: not running"; rc=1
        fi
    done
    if [ $rc = 0 ]; then
        s=$(node_state); echo "node $HOST: ${s:-unknown}"
        case "$s" in idle*|mixed*|allocated*|completing*) ;; *) rc=1 ;; esac
    fi
    exit $rc
    ;;
*)
    die "usage: $0 start|stop|status" 64
    ;;
esac
