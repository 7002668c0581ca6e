# shellcheck shell=bash
# Shared by scripts/cluster-up.sh and scripts/cluster-down.sh (sourced, not run).
#
# A pid file in $STATE/pids/NAME.pid holds "PID START": the pid of a process that leads its
# own session (so PID is also its process group id) and its start time (field 22 of
# /proc/PID/stat), so that a pid reused after a reboot is never taken for ours. START may be
# left out (a bare pid is trusted). Whatever the CASCADE_CLUSTER_AFTER_UP hook starts (the
# operator) is recorded the same way to be stopped by cluster-down.sh:
#   setsid cmd ... >"$CASCADE_CLUSTER_DIR/logs/NAME.log" 2>&1 </dev/null &
#   echo "$! $(proc_start $!)" >"$CASCADE_CLUSTER_DIR/pids/NAME.pid"

# proc_start PID: print the start time of a live (not zombie) process; fail otherwise.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # after "(comm) ": state is field 1, start time field 20
  read -r -a f <<<"$stat"
  [[ ${f[0]} != Z ]] || return 1
  echo "${f[19]}"
}

# running PIDFILE: the process recorded there is alive and is the one recorded.
running() {
  local pid start now
  read -r pid start <"$1" 2>/dev/null || [[ -n ${pid:-} ]] || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  now=$(proc_start "$pid") || return 1
  [[ -z ${start:-} || $start == "$now" ]]
}

# record_pid NAME PID
record_pid() { echo "$2 $(proc_start "$2" || true)" >"$STATE/pids/$1.pid"; }

# The cluster's network namespace: every component, and every client of it, runs inside
# (`make cluster-up` makes it; its name is in $STATE/netns). nsenter enters the network
# namespace only: `ip netns exec` would also give the command a mount namespace of its own,
# and the kubelet's volume mounts must be seen by containerd.
netns_path() { echo "/run/netns/$(cat "$1/netns")"; }
# inns CMD...: run CMD in $NETNS (set by cluster-up.sh / node-up.sh)
inns() { nsenter --net="$NETNS" -- "$@"; }
# start_in_ns NAME PROGRAM ARGS...: PROGRAM (from $STATE/bin, or PATH) in the namespace, in its
# own session (pid = process group id), output to logs/NAME.log, recorded in pids/NAME.pid.
start_in_ns() {
  local name=$1 prog=$2; shift 2
  [[ -x $STATE/bin/$prog ]] && prog=$STATE/bin/$prog
  setsid nsenter --net="$NETNS" -- "$prog" "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  record_pid "$name" $!
}
# wait_for WHAT COMMAND...: retry until it succeeds, $TIMEOUT seconds at most; fail (the
# caller's `fail`) when a recorded process exits meanwhile.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT)) f
  until "$@" >/dev/null 2>&1; do
    for f in "$STATE"/pids/*.pid; do
      running "$f" || fail "$(basename "$f" .pid) exited while waiting for $what"
    done
    ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}
