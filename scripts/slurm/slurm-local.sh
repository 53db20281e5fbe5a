#!/usr/bin/env bash
# slurm-local.sh -- run one or more REAL Slurm 22.05 clusters (Debian bookworm
# packages) on a single host, without systemd, for automated tests.
# The project's own copy of ../shared/slurm/slurm-local.sh (CI must own its harness); changes:
# MariaDB over TCP 127.0.0.1:3306 (reused when one answers), enforced accounting limits with
# --accounting dbd (GrpTRESMins banking), openssh-server in `install`. Driven by harness.sh.
#
# Every cluster lives in its own directory  $SLURM_LOCAL_ROOT/<name>/
#   etc/ (slurm.conf gres.conf slurmdbd.conf jwt_hs256.key)  state/  spool/<node>/
#   log/  run/ (pid files)  dev/ (fake GPU device nodes)
# Clients select a cluster with  SLURM_CONF=$SLURM_LOCAL_ROOT/<name>/etc/slurm.conf
# (print it with:  slurm-local.sh env <name>).
#
# Shared, host-wide services (started on demand, stopped by `stop-shared`):
#   munged   (system default socket /run/munge/munge.socket.2, key /etc/munge/munge.key)
#   mariadbd (only for --accounting dbd; 127.0.0.1:3306, user root without password; an
#            already running server is reused, otherwise one is started bound to 127.0.0.1)
#
# Usage:
#   slurm-local.sh install [--with-dbd]          apt-get the packages (root)
#   slurm-local.sh start NAME [options]          (re)create + start a cluster, wait until idle
#   slurm-local.sh stop NAME                     cancel jobs, stop that cluster's daemons by PID
#   slurm-local.sh stop-shared                   stop munged / mariadbd if this script started them
#   slurm-local.sh stop-all                      stop every cluster under the root + shared services
#   slurm-local.sh env NAME                      print `export SLURM_CONF=...` (eval it)
#   slurm-local.sh token NAME USER [SECONDS]     print a JWT for slurmrestd (X-SLURM-USER-TOKEN)
#   slurm-local.sh status                        list clusters and daemon liveness
#   slurm-local.sh stop-ctld NAME / start-ctld NAME   stop/start only slurmctld (state kept)
#
# start options (defaults in brackets, also settable through the env var named):
#   --port-base N     [16800] SLURM_PORT_BASE  slurmctld=N, slurmdbd=N+1, slurmrestd=N+2,
#                                              slurmd of node i = N+10+i-1
#   --nodes N         [4]     SLURM_NODES      fake nodes, each one slurmd on 127.0.0.1
#   --node-prefix P   [n]     SLURM_NODE_PREFIX  node names P1..PN
#   --cpus N          [4]     SLURM_CPUS       CPUs advertised per node (may exceed real cores)
#   --mem MB          [8192]  SLURM_MEM        RealMemory advertised per node
#   --gpus N          [4]     SLURM_GPUS       fake GPUs per node (0 = none)
#   --gpu-type T      []      SLURM_GPU_TYPE   e.g. h100 -> Gres=gpu:h100:N
#   --partition P     [debug] SLURM_PARTITION
#   --accounting A    [none]  SLURM_ACCOUNTING none | dbd (own slurmdbd + MariaDB, enables sacct)
#                             | shared:PORT (use the slurmdbd already listening on 127.0.0.1:PORT,
#                               e.g. another cluster's; enables -M/--clusters across clusters)
#   --rest            [off]   SLURM_REST=1     slurmrestd with JWT on 127.0.0.1:port-base+2
#   --first-job-id N  [1]     SLURM_FIRST_JOB_ID  distinct job-id ranges per cluster
#   --keep-state              keep StateSaveLocation / accounting DB from a previous run
#   --timeout S       [60]    seconds to wait for readiness
set -euo pipefail

ROOT=${SLURM_LOCAL_ROOT:-/var/tmp/slurm-local}
MUNGE_PID=/run/munge/munged.pid
MYSQL_HOST=${SLURM_MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${SLURM_MYSQL_PORT:-3306}
MYSQL_PID=/run/mysqld/mysqld.pid
mysql_root() { mariadb -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u root "$@"; }
mysql_ping() { mariadb-admin -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u root ping; }
DB_USER=slurm
DB_PASS=${SLURM_DB_PASS:-slurm-local-pass}
REST_USER=${SLURM_REST_USER:-slurmrest}

log() { printf '[slurm-local %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

# ---------------------------------------------------------------- pid helpers
running() {  # pid: exists and is not a zombie (an exited daemon stays a zombie until
  # whatever PID 1 is reaps it, which can take seconds in containers/VMs)
  local st
  st=$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

pid_alive() {  # pidfile [expected comm]
  local f=$1 want=${2:-} pid comm
  [ -s "$f" ] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && running "$pid" || return 1
  if [ -n "$want" ]; then
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [ "$comm" = "$want" ] || return 1
  fi
  echo "$pid"
}

stop_pidfiles() {  # comm grace pidfile...   TERM all, wait, KILL leftovers
  local comm=$1 grace=$2 f pid i left
  shift 2
  local -a pids=()
  for f in "$@"; do
    if pid=$(pid_alive "$f" "$comm"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$f"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for ((i = 0; i < grace * 10; i++)); do
    left=0
    for pid in "${pids[@]}"; do running "$pid" && left=1; done
    [ $left = 0 ] && { log "stopped $comm (pid ${pids[*]})"; return 0; }
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if running "$pid"; then
      log "$comm (pid $pid) ignored TERM for ${grace}s, sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}
stop_pidfile() { stop_pidfiles "$2" "${3:-10}" "$1"; }

wait_for() {  # seconds description log-glob|- command...   (fails fast on "fatal:" in the logs)
  local secs=$1 what=$2 logs=$3 t0 i bad
  shift 3
  t0=$(now)
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then log "$what ready after $(since "$t0")s"; return 0; fi
    if [ "$logs" != - ]; then
      # shellcheck disable=SC2086
      bad=$(grep -hE 'fatal:|initialization failed' $logs 2>/dev/null | head -3 || true)
      [ -n "$bad" ] && die "$what failed: $bad"
    fi
    sleep 0.1
  done
  die "$what not ready after ${secs}s"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- install
cmd_install() {
  local with_dbd=0 pkgs added_policy=0
  [ "${1:-}" = "--with-dbd" ] && with_dbd=1
  [ "$(id -u)" = 0 ] || die "install needs root"
  export DEBIAN_FRONTEND=noninteractive
  local policy
  policy=$(apt-cache policy slurm-wlm 2>/dev/null || true)
  case $policy in *"Candidate: 22."*) ;; *) apt-get -o DPkg::Lock::Timeout=300 update -q || die "apt-get update failed" ;; esac
  pkgs="slurm-wlm slurm-wlm-jwt-plugin slurmrestd munge openssh-server sudo"
  command -v curl >/dev/null || pkgs="$pkgs curl"
  [ $with_dbd = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  # Without systemd, package postinst scripts would try to start the services
  # through /etc/init.d; a policy-rc.d that answers 101 prevents that.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  local t0; t0=$(now)
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $pkgs || {
    [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    die "apt-get install $pkgs failed"
  }
  [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "apt-get install took $(since "$t0")s"
}

# ---------------------------------------------------------------- shared services
ensure_munge() {
  command -v munged >/dev/null || die "munge not installed (run: $0 install)"
  if pid_alive "$MUNGE_PID" munged >/dev/null && munge -n </dev/null >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge /var/log/munge
  chmod 0600 /etc/munge/munge.key
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 ||
    die "munged did not start: $(tail -n 3 /var/log/munge/munged.log 2>/dev/null)"
  wait_for 10 munged - munge -n
  touch /run/munge/.started-by-slurm-local
}

ensure_mariadb() {
  # Machines of this kind start MariaDB before any work begins (127.0.0.1:3306, root without
  # password); reuse it. Otherwise start one bound to 127.0.0.1 only.
  if mysql_ping >/dev/null 2>&1; then return 0; fi
  command -v mariadbd >/dev/null || die "mariadb-server not installed (run: $0 install --with-dbd)"
  mkdir -p /run/mysqld "$ROOT"
  chown mysql:mysql /run/mysqld
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
    --bind-address="$MYSQL_HOST" --port="$MYSQL_PORT" --pid-file="$MYSQL_PID" \
    --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
    </dev/null >>"$ROOT/mariadb.log" 2>&1 &
  wait_for 30 mariadb - mysql_ping
  # A fresh datadir only lets root in through the Unix socket; allow TCP root like the CI image.
  mariadb -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" 2>/dev/null || true
  touch /run/mysqld/.started-by-slurm-local
}

cmd_stop_shared() {
  if [ -e /run/mysqld/.started-by-slurm-local ]; then
    stop_pidfile "$MYSQL_PID" mariadbd 30
    rm -f /run/mysqld/.started-by-slurm-local
  fi
  if [ -e /run/munge/.started-by-slurm-local ]; then
    stop_pidfile "$MUNGE_PID" munged 10
    rm -f /run/munge/.started-by-slurm-local
  fi
}

# ---------------------------------------------------------------- config
write_configs() {
  local d=$1 etc=$1/etc last=$((NODES))
  local first_port=$((PORT_BASE + 10)) last_port=$((PORT_BASE + 10 + NODES - 1))
  local gres_node="" acct
  mkdir -p "$etc" "$d/state" "$d/log" "$d/run" "$d/dev"
  for ((i = 1; i <= NODES; i++)); do mkdir -p "$d/spool/${PREFIX}$i"; done
  [ -s "$etc/jwt_hs256.key" ] || dd if=/dev/urandom of="$etc/jwt_hs256.key" bs=32 count=1 status=none
  chmod 0600 "$etc/jwt_hs256.key"

  if [ "$GPUS" -gt 0 ]; then
    # gres/gpu drops GPUs that have no File=.  The files need not be GPUs, but they must
    # stat() as char/block devices: with plain files slurmd logs "not a valid character
    # or block device" and, worse, jobs get an EMPTY CUDA_VISIBLE_DEVICES.  Symlinks to
    # /dev/null work (and need no mknod capability).
    for ((i = 0; i < GPUS; i++)); do
      ln -sfn /dev/null "$d/dev/nvidia$i"
    done
    if [ -n "$GPU_TYPE" ]; then gres_node="Gres=gpu:$GPU_TYPE:$GPUS"; else gres_node="Gres=gpu:$GPUS"; fi
  fi

  case $ACCOUNTING in
    none) acct="AccountingStorageType=accounting_storage/none" ;;
    dbd | shared:*) acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# track GPUs as a TRES (AllocTRES gres/gpu=N in sacct); slurmctld refuses this without slurmdbd
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
# enforce associations and limits: GrpTRESMins=gres/gpu=N is how a project's GPU budget binds
AccountingStorageEnforce=associations,limits,safe
# GrpTRESMins binds only under priority/multifactor, and the usage it counts must never decay
# or reset: a budget is given back by the ledger, never by the passing of time
PriorityType=priority/multifactor
PriorityDecayHalfLife=0
PriorityUsageResetPeriod=NONE" ;;
    *) die "--accounting must be none, dbd or shared:PORT" ;;
  esac

  cat >"$etc/slurm.conf" <<EOF
# Generated by slurm-local.sh -- single-host test cluster "$NAME"
ClusterName=$NAME
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT_BASE
SlurmdPort=$first_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$etc/jwt_hs256.key
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
# scheduling
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
# default batch_sched_delay=3 makes back-to-back submissions wait up to 3 s
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
GresTypes=gpu
# bind slurmctld/slurmd to their configured address (127.0.0.1), not 0.0.0.0
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
FirstJobId=$FIRST_JOB_ID
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
# finished jobs stay visible to squeue/scontrol/REST for this many seconds
MinJobAge=300
# accounting
$acct
JobCompType=jobcomp/filetxt
JobCompLoc=$d/log/jobcomp.txt
# nodes: N slurmd processes on 127.0.0.1, one port each, started as  slurmd -N <node>
NodeName=${PREFIX}[1-$last] NodeAddr=127.0.0.1 NodeHostname=localhost Port=[$first_port-$last_port] CPUs=$CPUS RealMemory=$MEM $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

  if [ "$GPUS" -gt 0 ]; then
    local tline=""
    [ -n "$GPU_TYPE" ] && tline=" Type=$GPU_TYPE"
    cat >"$etc/gres.conf" <<EOF
# Generated by slurm-local.sh: fake GPUs (symlinks to /dev/null)
AutoDetect=off
Name=gpu$tline File=$d/dev/nvidia[0-$((GPUS - 1))]
EOF
  else
    printf 'AutoDetect=off\n' >"$etc/gres.conf"
  fi

  if [ "$ACCOUNTING" = dbd ]; then
    cat >"$etc/slurmdbd.conf" <<EOF
# Generated by slurm-local.sh
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$etc/jwt_hs256.key
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
DebugLevel=info
LogFile=$d/log/slurmdbd.log
PidFile=$d/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=$MYSQL_HOST
StoragePort=$MYSQL_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
    chmod 0600 "$etc/slurmdbd.conf"
  fi
}

# ---------------------------------------------------------------- start / stop
nodes_all_idle() {
  local states
  states=$(sinfo -h -N -o '%T' 2>/dev/null | sort -u | tr '\n' ' ')
  [ "$states" = "idle " ]
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

rest_up() { curl -s -o /dev/null "http://127.0.0.1:$((PORT_BASE + 2))/openapi/v3"; }

cmd_start() {
  NAME=${1:-}; [ -n "$NAME" ] || die "usage: start NAME [options]"; shift
  PORT_BASE=${SLURM_PORT_BASE:-16800}; NODES=${SLURM_NODES:-4}; PREFIX=${SLURM_NODE_PREFIX:-n}
  CPUS=${SLURM_CPUS:-4}; MEM=${SLURM_MEM:-8192}; GPUS=${SLURM_GPUS:-4}; GPU_TYPE=${SLURM_GPU_TYPE:-}
  PARTITION=${SLURM_PARTITION:-debug}; ACCOUNTING=${SLURM_ACCOUNTING:-none}; REST=${SLURM_REST:-0}
  FIRST_JOB_ID=${SLURM_FIRST_JOB_ID:-1}; KEEP=0; TIMEOUT=60
  while [ $# -gt 0 ]; do
    case $1 in
      --port-base) PORT_BASE=$2; shift ;;
      --nodes) NODES=$2; shift ;;
      --node-prefix) PREFIX=$2; shift ;;
      --cpus) CPUS=$2; shift ;;
      --mem) MEM=$2; shift ;;
      --gpus) GPUS=$2; shift ;;
      --gpu-type) GPU_TYPE=$2; shift ;;
      --partition) PARTITION=$2; shift ;;
      --accounting) ACCOUNTING=$2; shift ;;
      --rest) REST=1 ;;
      --first-job-id) FIRST_JOB_ID=$2; shift ;;
      --keep-state) KEEP=1 ;;
      --timeout) TIMEOUT=$2; shift ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  [ "$(id -u)" = 0 ] || die "start needs root (slurmd must run as root)"
  command -v slurmctld >/dev/null || die "slurm not installed (run: $0 install)"
  local d=$ROOT/$NAME t0
  DB_NAME="slurm_$(echo "$NAME" | tr -c 'A-Za-z0-9_\n' '_')"
  DBD_PORT=$((PORT_BASE + 1))
  case $ACCOUNTING in shared:*) DBD_PORT=${ACCOUNTING#shared:} ;; esac
  t0=$(now)
  export SLURM_CONF=$d/etc/slurm.conf
  if [ -e "$d/run/slurmctld.pid" ] || ls "$d"/run/slurmd-*.pid >/dev/null 2>&1; then
    log "cluster $NAME seems to be running; stopping it first"
    cmd_stop "$NAME"
  fi
  rm -rf "$d/log" "$d/run"
  [ $KEEP = 1 ] || rm -rf "$d/state" "$d/spool"
  write_configs "$d"

  ensure_munge

  if [ "$ACCOUNTING" = dbd ]; then
    ensure_mariadb
    [ $KEEP = 0 ] && mysql_root -e "DROP DATABASE IF EXISTS \`$DB_NAME\`"
    # CREATE USER IF NOT EXISTS keeps an old password: ALTER it too (else slurmdbd loops on
    # "Access denied").
    mysql_root -e "CREATE USER IF NOT EXISTS '$DB_USER'@'$MYSQL_HOST' IDENTIFIED BY '$DB_PASS';
      ALTER USER '$DB_USER'@'$MYSQL_HOST' IDENTIFIED BY '$DB_PASS';
      GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'$MYSQL_HOST'; FLUSH PRIVILEGES;" ||
      die "cannot prepare the accounting database on $MYSQL_HOST:$MYSQL_PORT"
    slurmdbd </dev/null >>"$d/log/slurmdbd.stdout" 2>&1 ||
      die "slurmdbd did not start: $(tail -n 3 "$d/log/slurmdbd.stdout" "$d/log/slurmdbd.log" 2>/dev/null)"
    wait_for "$TIMEOUT" "slurmdbd($NAME)" "$d/log/slurmdbd.log" tcp_open "$DBD_PORT"
  elif [ "$DBD_PORT" != $((PORT_BASE + 1)) ]; then
    tcp_open "$DBD_PORT" || die "no slurmdbd on 127.0.0.1:$DBD_PORT (start the cluster owning it first)"
  fi

  slurmctld </dev/null >>"$d/log/slurmctld.stdout" 2>&1 ||
    die "slurmctld did not start: $(tail -n 3 "$d/log/slurmctld.stdout" "$d/log/slurmctld.log" 2>/dev/null)"
  wait_for "$TIMEOUT" "slurmctld($NAME)" "$d/log/slurmctld.log" ctld_up

  for ((i = 1; i <= NODES; i++)); do
    slurmd -N "${PREFIX}$i" </dev/null >>"$d/log/slurmd.stdout" 2>&1 ||
      die "slurmd ${PREFIX}$i did not start: $(tail -n 3 "$d/log/slurmd.stdout" "$d/log/slurmd-${PREFIX}$i.log" 2>/dev/null)"
  done
  wait_for "$TIMEOUT" "nodes($NAME) idle" "$d/log/slurmd-*.log" nodes_all_idle

  if [ "$REST" = 1 ]; then
    id "$REST_USER" >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin "$REST_USER"
    # slurmrestd refuses to run as root; -u drops privileges after binding.
    # SLURM_JWT=daemon: talk to slurmctld with the caller's JWT, not munge.
    SLURM_JWT=daemon setsid slurmrestd -u "$REST_USER" -a rest_auth/jwt \
      -s openapi/v0.0.38,openapi/dbv0.0.38 "127.0.0.1:$((PORT_BASE + 2))" \
      </dev/null >>"$d/log/slurmrestd.log" 2>&1 &
    echo $! >"$d/run/slurmrestd.pid"
    wait_for "$TIMEOUT" "slurmrestd($NAME)" "$d/log/slurmrestd.log" rest_up
  fi
  log "cluster $NAME ready in $(since "$t0")s  (export SLURM_CONF=$SLURM_CONF)"
}

cmd_stop() {
  NAME=${1:-}; [ -n "$NAME" ] || die "usage: stop NAME"
  local d=$ROOT/$NAME f ids i
  [ -d "$d" ] || { log "no cluster $NAME under $ROOT"; return 0; }
  export SLURM_CONF=$d/etc/slurm.conf
  stop_pidfile "$d/run/slurmrestd.pid" slurmrestd 5
  if pid_alive "$d/run/slurmctld.pid" slurmctld >/dev/null; then
    # Cancel every job so no slurmstepd / job process outlives the cluster.
    ids=$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${ids// /}" ]; then
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      for ((i = 0; i < 150; i++)); do
        [ -z "$(squeue -h -t RUNNING,COMPLETING,SUSPENDED -o %A 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  stop_pidfiles slurmd 10 "$d"/run/slurmd-*.pid
  stop_pidfile "$d/run/slurmctld.pid" slurmctld 15
  stop_pidfile "$d/run/slurmdbd.pid" slurmdbd 10
  return 0
}

# Stop / start only the controller (state kept), to test clients against an outage.
cmd_stop_ctld() {
  [ -n "${1:-}" ] || die "usage: stop-ctld NAME"
  stop_pidfile "$ROOT/$1/run/slurmctld.pid" slurmctld 15
}

cmd_start_ctld() {
  [ -n "${1:-}" ] || die "usage: start-ctld NAME"
  local d=$ROOT/$1
  export SLURM_CONF=$d/etc/slurm.conf
  pid_alive "$d/run/slurmctld.pid" slurmctld >/dev/null && return 0
  slurmctld </dev/null >>"$d/log/slurmctld.stdout" 2>&1 || die "slurmctld($1) did not start"
  wait_for 60 "slurmctld($1)" - ctld_up
}

cmd_stop_all() {
  local d
  for d in "$ROOT"/*/; do
    [ -f "$d/etc/slurm.conf" ] && cmd_stop "$(basename "$d")"
  done
  cmd_stop_shared
}

cmd_env() {
  [ -n "${1:-}" ] || die "usage: env NAME"
  echo "export SLURM_CONF=$ROOT/$1/etc/slurm.conf"
}

cmd_token() {
  [ $# -ge 2 ] || die "usage: token NAME USER [SECONDS]"
  SLURM_CONF=$ROOT/$1/etc/slurm.conf scontrol token username="$2" lifespan="${3:-3600}" | sed 's/^SLURM_JWT=//'
}

cmd_status() {
  local d n f c
  pid_alive "$MUNGE_PID" munged >/dev/null && echo "munged: up" || echo "munged: down"
  mysql_ping >/dev/null 2>&1 && echo "mariadb: up" || echo "mariadb: down"
  for d in "$ROOT"/*/; do
    [ -f "$d/etc/slurm.conf" ] || continue
    n=$(basename "$d")
    printf '%s:' "$n"
    for f in "$d"/run/*.pid; do
      [ -e "$f" ] || continue
      c=$(basename "$f" .pid); c=${c%%-*}
      pid_alive "$f" "$c" >/dev/null && printf ' %s=up' "$(basename "$f" .pid)" || printf ' %s=dead' "$(basename "$f" .pid)"
    done
    echo
  done
}

case ${1:-} in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  stop-shared) cmd_stop_shared ;;
  stop-all) cmd_stop_all ;;
  env) shift; cmd_env "$@" ;;
  token) shift; cmd_token "$@" ;;
  status) cmd_status ;;
  stop-ctld) shift; cmd_stop_ctld "$@" ;;
  start-ctld) shift; cmd_start_ctld "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 2 ;;
esac
