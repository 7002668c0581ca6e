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
