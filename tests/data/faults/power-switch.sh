#!/bin/sh
device=@DEVICE@
case "$1" in
gethosts) echo "$hostlist" | tr ',' '\n';;
getconfignames) echo hostlist;;
getinfo-devid|getinfo-devname) echo "hb-lab power switch";;
getinfo-devdescr) echo "kills a lab node's cgroup, as pulling its power would";;
getinfo-devurl) echo "https://github.com/heartbeat-rs";;
getinfo-xml) echo "<parameters/>";;
status|on) exit 0;;
off|reset)
  mode=$(cat "$device/mode" 2>/dev/null || echo works)
  echo "$1 $2 $mode" >> "$device/log"
  case "$mode" in
  fails) exit 1;;
  hangs) sleep 600; exit 1;;
  lies) exit 0;;
  esac
  cgroup=$(cat "$device/$2.cgroup") || exit 1
  echo 1 > "$cgroup/cgroup.kill" || exit 1
  tries=0
  while [ -s "$cgroup/cgroup.procs" ] && [ $tries -lt 500 ]; do sleep 0.01; tries=$((tries+1)); done
  [ -s "$cgroup/cgroup.procs" ] && exit 1
  echo "$2 off all" >> @LEDGER@
  exit 0;;
*) exit 1;;
esac
