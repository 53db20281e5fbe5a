#!/usr/bin/env bash
# harness.sh -- the project's Slurm test harness: two real Slurm 22.05 clusters and an sshd
# on this host (root, Debian bookworm, no systemd needed).
#
#   factory1  4 nodes n[1-4] x 4 GPUs, no accounting         ports 16800.. (ctld 16800)
#   factory2  2 nodes f2n[1-2] x 8 h100 GPUs, slurmdbd on MariaDB 127.0.0.1:3306,
#             slurmrestd v0.0.38 + JWT on 127.0.0.1:16902, job ids from 5000, limits enforced
#   sshd      127.0.0.1:2222, key-only login as user aifjob (keys under /var/tmp/aif-sshd)
#
# Usage (run with bash; CI's copy of the tree may lack exec bits):
#   harness.sh up            install what is missing, start whatever is not running (idempotent);
#                            exits non-zero with a message when Slurm cannot be started
#   harness.sh restart       stop everything, then up (fresh state, fresh job ids)
#   harness.sh status        daemon liveness
#   harness.sh stop-all      stop both clusters, sshd and the shared daemons this harness started
#   harness.sh env NAME      print `export SLURM_CONF=...` for cluster NAME
#   harness.sh token USER    print a JWT for factory2's slurmrestd
#   harness.sh info          print the harness facts as KEY=VALUE lines (read by the tests)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SLURM_LOCAL_ROOT=${SLURM_LOCAL_ROOT:-/var/tmp/slurm-local}
SL="bash $HERE/slurm-local.sh"
SSHD_DIR=${AIF_SSHD_DIR:-/var/tmp/aif-sshd}
SSHD_PORT=${AIF_SSHD_PORT:-2222}
JOB_USER=${AIF_JOB_USER:-aifjob}
JOB_ROOT=${AIF_JOB_ROOT:-/var/tmp/aif-slurm-jobs}
F1_BASE=16800
F2_BASE=16900

log() { printf '[harness %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
conf() { echo "$SLURM_LOCAL_ROOT/$1/etc/slurm.conf"; }

# A cluster is healthy when slurmctld answers and no node is down, drained or invalid
# ("planned": idle, but held by the backfill plan of a pending job).
cluster_healthy() {
  local c states
  c=$(conf "$1")
  [ -f "$c" ] || return 1
  SLURM_CONF=$c timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
  states=$(SLURM_CONF=$c timeout 10 sinfo -h -N -o '%T' 2>/dev/null | sort -u) || return 1
  [ -n "$states" ] || return 1
  ! grep -qvE '^(idle|allocated|mixed|completing|planned)$' <<<"$states"
}

rest_healthy() {
  curl -s -o /dev/null -m 5 "http://127.0.0.1:$((F2_BASE + 2))/openapi/v3"
}

ensure_installed() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null &&
    command -v slurmrestd >/dev/null && command -v munged >/dev/null &&
    command -v sshd >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/auth_jwt.so ] &&
    command -v curl >/dev/null && command -v sudo >/dev/null; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root"
  log "installing Slurm, munge, slurmdbd, slurmrestd, openssh-server, sudo (run-as-person over ssh)"
  $SL install --with-dbd || die "could not install the Slurm packages (apt-get failed)"
}

ensure_job_user() {
  if ! id "$JOB_USER" >/dev/null 2>&1; then
    useradd -r -m -d "/var/lib/$JOB_USER" -s /bin/bash "$JOB_USER"
  fi
  # "!" (locked) makes sshd without PAM refuse even key logins; "*" is "no password" only.
  usermod -p '*' "$JOB_USER"
  # Job directories: the sticky, world-writable root lets root (local transport) and the job
  # user (SSH, REST) create their own per-job directories without reading each other's.
  mkdir -p "$JOB_ROOT"
  chmod 1777 "$JOB_ROOT"
}

ensure_factory1() {
  if cluster_healthy factory1; then log "factory1 already running"; return 0; fi
  $SL start factory1 --port-base $F1_BASE --nodes 4 --gpus 4 --node-prefix n
}

ensure_factory2() {
  if cluster_healthy factory2 && rest_healthy; then log "factory2 already running"; return 0; fi
  $SL start factory2 --port-base $F2_BASE --nodes 2 --gpus 8 --gpu-type h100 \
    --accounting dbd --rest --first-job-id 5000 --node-prefix f2n
  # Limits are enforced, so every submitting user needs an association; the site's own default
  # account stands in for whatever a real site gives its service users.
  SLURM_CONF=$(conf factory2) sacctmgr -i add account aif-default \
    Description=aifactory-default Organization=aifactory >/dev/null
  SLURM_CONF=$(conf factory2) sacctmgr -i add user root "$JOB_USER" \
    account=aif-default >/dev/null
  SLURM_CONF=$(conf factory2) sacctmgr -i modify user where name=root "$JOB_USER" \
    set DefaultAccount=aif-default >/dev/null
}

# ------------------------------------------------------------------ sshd
sshd_pid() {
  local pid
  [ -s "$SSHD_DIR/sshd.pid" ] || return 1
  pid=$(tr -dc '0-9' <"$SSHD_DIR/sshd.pid")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] && echo "$pid"
}

write_sshd_files() {
  local home
  mkdir -p "$SSHD_DIR/keys" /run/sshd
  chmod 755 "$SSHD_DIR"
  chmod 700 "$SSHD_DIR/keys"
  [ -s "$SSHD_DIR/keys/host_ed25519" ] ||
    ssh-keygen -q -t ed25519 -N '' -C aif-sshd-host -f "$SSHD_DIR/keys/host_ed25519"
  [ -s "$SSHD_DIR/keys/client_ed25519" ] ||
    ssh-keygen -q -t ed25519 -N '' -C aif-sshd-client -f "$SSHD_DIR/keys/client_ed25519"
  printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$SSHD_DIR/keys/host_ed25519.pub")" \
    >"$SSHD_DIR/known_hosts"
  home=$(getent passwd "$JOB_USER" | cut -d: -f6)
  [ -d "$home" ] || die "home of $JOB_USER missing"
  # sshd's StrictModes refuses keys below a world-writable directory such as /var/tmp, so the
  # client key is authorized in the user's own home like on a real login node.
  install -d -m 700 -o "$JOB_USER" -g "$JOB_USER" "$home/.ssh"
  install -m 600 -o "$JOB_USER" -g "$JOB_USER" "$SSHD_DIR/keys/client_ed25519.pub" \
    "$home/.ssh/authorized_keys"
  cat >"$SSHD_DIR/sshd_config.new" <<EOF
# Generated by scripts/slurm/harness.sh: login-node stand-in for the SSH transport tests
ListenAddress 127.0.0.1
Port $SSHD_PORT
HostKey $SSHD_DIR/keys/host_ed25519
PidFile $SSHD_DIR/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers $JOB_USER
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
EOF
  # A changed config needs a restarted sshd; an unchanged one keeps the running daemon.
  if ! cmp -s "$SSHD_DIR/sshd_config.new" "$SSHD_DIR/sshd_config"; then
    stop_sshd
    mv "$SSHD_DIR/sshd_config.new" "$SSHD_DIR/sshd_config"
  else
    rm -f "$SSHD_DIR/sshd_config.new"
  fi
}

ensure_sshd() {
  write_sshd_files
  if sshd_pid >/dev/null; then log "sshd already running on 127.0.0.1:$SSHD_PORT"; return 0; fi
  /usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config" || die "sshd config rejected"
  # sshd daemonizes itself; its own stdio must not hold a caller's pipe open.
  /usr/sbin/sshd -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" </dev/null >/dev/null 2>&1 ||
    die "sshd did not start: $(tail -n 3 "$SSHD_DIR/sshd.log" 2>/dev/null)"
  local i
  for ((i = 0; i < 50; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$SSHD_PORT") 2>/dev/null && { log "sshd ready on 127.0.0.1:$SSHD_PORT"; return 0; }
    sleep 0.1
  done
  die "sshd not listening on 127.0.0.1:$SSHD_PORT: $(tail -n 3 "$SSHD_DIR/sshd.log" 2>/dev/null)"
}

stop_sshd() {
  local pid
  pid=$(sshd_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  rm -f "$SSHD_DIR/sshd.pid"
  log "stopped sshd (pid $pid)"
}

# ------------------------------------------------------------------ commands
cmd_up() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || die "the Slurm harness needs root (slurmd runs as root)"
  ensure_installed
  ensure_job_user
  ensure_factory1 || die "factory1 could not be started (logs: $SLURM_LOCAL_ROOT/factory1/log)"
  ensure_factory2 || die "factory2 could not be started (logs: $SLURM_LOCAL_ROOT/factory2/log)"
  ensure_sshd
  cluster_healthy factory1 || die "factory1 is not healthy after start"
  cluster_healthy factory2 || die "factory2 is not healthy after start"
  log "Slurm harness up in $((SECONDS - t0))s"
}

cmd_info() {
  cat <<EOF
FACTORY1_CONF=$(conf factory1)
FACTORY2_CONF=$(conf factory2)
FACTORY2_REST_URL=http://127.0.0.1:$((F2_BASE + 2))
SSHD_HOST=127.0.0.1
SSHD_PORT=$SSHD_PORT
SSHD_USER=$JOB_USER
SSHD_KEY=$SSHD_DIR/keys/client_ed25519
SSHD_KNOWN_HOSTS=$SSHD_DIR/known_hosts
JOB_USER=$JOB_USER
JOB_ROOT=$JOB_ROOT
EOF
}

case ${1:-} in
  up) cmd_up ;;
  restart) $SL stop-all; stop_sshd; cmd_up ;;
  status) $SL status; sshd_pid >/dev/null && echo "sshd: up" || echo "sshd: down" ;;
  stop-all) $SL stop-all; stop_sshd ;;
  env) shift; $SL env "$@" ;;
  token) shift; $SL token factory2 "${1:-$JOB_USER}" "${2:-3600}" ;;
  info) cmd_info ;;
  stop-ctld | start-ctld) $SL "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 2 ;;
esac
