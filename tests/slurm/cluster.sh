#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on localhost, for the workflow's SLURM tests.
#
#   tests/slurm/cluster.sh start    install what is missing (apt), configure, start, wait until idle
#   tests/slurm/cluster.sh stop     stop the daemons this script started (pid files), nothing else
#   tests/slurm/cluster.sh status   exit 0 when all daemons run and the node accepts jobs
#   tests/slurm/cluster.sh env      print the `export SLURM_CONF=...` line clients need
#
# Everything of ours lives under one state directory ($PR_SLURM_STATE, default
# /tmp/prompt-reliability-slurm): configs, munge key, spool, logs, pid files. Outside it, only
# runtime paths: munged's default socket /run/munge/munge.socket.2 (an already running munged is
# used instead of a second one) and /run/slurm/conf, the link a "configless" slurmd makes to the
# config it fetched from slurmctld, where srun inside a job finds it. Nothing under /etc is
# written; the daemons listen on their own ports (16817/16818). Clients outside jobs (sbatch,
# squeue, the Snakemake executor plugin) can use SLURM_CONF (`env`). `start` and `stop` are
# idempotent: start leaves a healthy cluster alone, stop signals only pids from our pid files
# whose executable is the expected daemon.
#
# Needs root: slurmd must run as root, and packages come from apt. Facts behind the choices
# below are in the project's NOTES-slurm.md (accounting-free setup, squeue status checks).
set -euo pipefail

STATE=${PR_SLURM_STATE:-/tmp/prompt-reliability-slurm}
CTLD_PORT=${PR_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${PR_SLURM_SLURMD_PORT:-16818}
# Fake GPUs the node advertises, so the tests see per-model GPU requests reach the scheduler.
FAKE_GPUS=${PR_SLURM_FAKE_GPUS:-2}
PARTITION=${PR_SLURM_PARTITION:-debug}
CONF="$STATE/etc/slurm.conf"
# The default socket: a configless slurmd fetches its config before it could read another path.
MUNGE_SOCKET=/run/munge/munge.socket.2
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { printf '[slurm-harness] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- process bookkeeping ----------------------------------------------------------------------

# True when the pid file names a live (not zombie) process running the expected binary. PID 1
# here reaps late, so `kill -0` also succeeds on zombies: read the state from /proc/PID/stat.
# Checking the executable guards against a recycled pid after a reboot or a crash.
# (A daemon removes its own pid file as it exits, so the file may vanish between two reads.)
alive() {
    local pidfile=$1 binary=$2 pid state exe
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$pid/stat")
    [[ $state != Z && $state != X ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [[ ${exe% (deleted)} == "$(readlink -f "$(command -v "$binary")")" ]]
}

# Stop the daemon named by a pid file, if (and only if) it is the one we started.
stop_daemon() {
    local name=$1 pidfile=$2 binary=$3 pid
    if ! alive "$pidfile" "$binary"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(cat "$pidfile" 2>/dev/null) || return 0  # it exited meanwhile
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do  # slurmctld saves its state on SIGTERM: give it up to 10 s
        alive "$pidfile" "$binary" || break
        sleep 0.2
    done
    if alive "$pidfile" "$binary"; then
        log "$name did not stop on SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

# --- install ----------------------------------------------------------------------------------

install_missing() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and apt-get is not available"
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for dpkg's lock rather than fail: the browser test may install chromium at the same time.
    local apt=(apt-get -o DPkg::Lock::Timeout=600)
    # Try the existing package lists first (fast on a fresh image); refresh them only if needed.
    if ! "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1; then
        "${apt[@]}" update -qq >>"$STATE/log/apt.log" 2>&1 || die "apt-get update failed, see $STATE/log/apt.log"
        "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 \
            || die "apt-get install ${missing[*]} failed, see $STATE/log/apt.log"
    fi
}

# --- configure --------------------------------------------------------------------------------

write_config() {
    local host hw
    host=$(hostname -s)
    # CPUs, sockets, cores, threads and memory exactly as slurmd sees them, so the node is not
    # drained for a hardware mismatch. Drop the NodeName and UpTime fields slurmd -C adds.
    hw=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //; s/ ?UpTime=.*$//')
    mkdir -p "$STATE/etc" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log" "$STATE/run"
    cat >"$CONF" <<EOF
# Generated by tests/slurm/cluster.sh: single-node test cluster, no accounting.
ClusterName=prtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups: processes are tracked by parent pid; task/affinity avoids a cpu-binding warning
# that task/none prints into every job log.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# slurmd fetches this config from slurmctld ("configless") and exposes it at /run/slurm/conf,
# where clients without SLURM_CONF find it: the executor plugin strips SLURM_* variables before
# the srun inside each job, so SLURM_CONF alone does not reach it.
SlurmctldParameters=enable_configless
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# A node that was down comes back by itself when slurmd registers again.
ReturnToService=2
# Reject at submission what can never run (otherwise it stays PENDING forever).
EnforcePartLimits=ALL
# Finished jobs stay visible to squeue for 5 minutes: the executor plugin's squeue status checks
# need MinJobAge >= 3 x slurm-init-seconds-before-status-checks.
MinJobAge=300
KillWait=5
# No slurmdbd: sacct cannot work, status checks go through squeue.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 $hw Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # Fake GPUs. SLURM drops GPUs without device files, so each gets a character device with
    # /dev/null's numbers (c 1 3): harmless, yet enough for SLURM to schedule `--gpus=N`, account
    # it per job and set CUDA_VISIBLE_DEVICES in the job as on a real GPU node. Where mknod is not
    # allowed, plain files work too (slurmd then logs a warning per file).
    mkdir -p "$STATE/dev"
    local i
    for ((i = 0; i < FAKE_GPUS; i++)); do
        [[ -e $STATE/dev/gpu$i ]] || mknod "$STATE/dev/gpu$i" c 1 3 2>/dev/null || touch "$STATE/dev/gpu$i"
    done
    echo "NodeName=$host Name=gpu File=$STATE/dev/gpu[0-$((FAKE_GPUS - 1))]" >"$STATE/etc/gres.conf"
}

# --- start ------------------------------------------------------------------------------------

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    alive "$STATE/munge/munged.pid" munged && return 0
    # Any munged on the default socket serves as well, as long as all daemons and clients use
    # the same one: use a running one (not ours, so never stopped here) rather than a second.
    if munge_works; then
        log "using the munged already running on $MUNGE_SOCKET"
        return 0
    fi
    mkdir -p "$STATE/munge" "$(dirname "$MUNGE_SOCKET")"
    if [[ ! -s $STATE/munge/munge.key ]]; then
        dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$STATE/munge" "$(dirname "$MUNGE_SOCKET")"
    chmod 0700 "$STATE/munge"
    chmod 0755 "$(dirname "$MUNGE_SOCKET")"  # clients of any user reach the socket
    chmod 0400 "$STATE/munge/munge.key"
    log "starting munged"
    runuser -u munge -- munged \
        --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
    for _ in $(seq 50); do munge_works && return 0; sleep 0.1; done
    die "munged does not answer on $MUNGE_SOCKET; see $STATE/munge/munged.log"
}

start_slurm() {
    export SLURM_CONF=$CONF
    if ! alive "$STATE/run/slurmctld.pid" slurmctld; then
        log "starting slurmctld"
        # -c: start from a clean job state (a previous run's jobs are not resurrected).
        slurmctld -c -f "$CONF"
    fi
    if ! alive "$STATE/run/slurmd.pid" slurmd; then
        log "starting slurmd"
        slurmd --conf-server "127.0.0.1:$CTLD_PORT"
    fi
}

# The node is usable once it reports idle (or busy with jobs: mixed/allocated).
node_ready() {
    local state
    state=$(SLURM_CONF=$CONF sinfo -h -N -o '%T' 2>/dev/null | head -n1) || return 1
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

wait_ready() {
    local deadline=$((SECONDS + ${PR_SLURM_START_TIMEOUT:-60}))
    until node_ready; do
        if ((SECONDS > deadline)); then
            SLURM_CONF=$CONF sinfo -N -l >&2 || true
            tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
            die "the node did not become idle within ${PR_SLURM_START_TIMEOUT:-60}s"
        fi
        # A node left DOWN/DRAINED by an earlier, killed run: ask to resume it.
        if SLURM_CONF=$CONF sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(down|drain)'; then
            SLURM_CONF=$CONF scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
        fi
        sleep 0.5
    done
}

all_alive() {
    alive "$STATE/munge/munged.pid" munged && alive "$STATE/run/slurmctld.pid" slurmctld \
        && alive "$STATE/run/slurmd.pid" slurmd
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "must run as root (slurmd runs as root; packages come from apt)"
    mkdir -p "$STATE/log" "$STATE/run"
    if all_alive && node_ready; then
        log "already running (state: $STATE)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    install_missing
    # Inside a job, srun finds its config in /etc/slurm before /run/slurm/conf (where this
    # cluster's configless slurmd puts it): a machine's own SLURM config would capture it.
    [[ ! -e /etc/slurm/slurm.conf ]] \
        || die "/etc/slurm/slurm.conf exists: this machine has a SLURM of its own, which jobs of the test cluster would use"
    # Rewrite the config only when no daemon is using it.
    if ! alive "$STATE/run/slurmctld.pid" slurmctld && ! alive "$STATE/run/slurmd.pid" slurmd; then
        write_config
    fi
    start_munge
    start_slurm
    wait_ready
    log "node $(hostname -s) is idle; partition '$PARTITION', $FAKE_GPUS fake GPUs (state: $STATE)"
    echo "export SLURM_CONF=$CONF"
}

cmd_stop() {
    [[ -d $STATE/run ]] || return 0
    # Reverse start order: slurmd, then slurmctld, then munged (both SLURM daemons use munge).
    stop_daemon slurmd "$STATE/run/slurmd.pid" slurmd
    stop_daemon slurmctld "$STATE/run/slurmctld.pid" slurmctld
    stop_daemon munged "$STATE/munge/munged.pid" munged
    # The link our slurmd made to its config cache (see above); a link elsewhere is not ours.
    if [[ -L /run/slurm/conf && $(readlink /run/slurm/conf) == "$STATE"/* ]]; then
        rm -f /run/slurm/conf
    fi
    log "stopped (state kept in $STATE)"
}

cmd_status() {
    all_alive && node_ready
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
