state=@STATE@/{node}.$1.on
resource=$1
marker() { [ -e "@STATE@/$1.{node}.$resource" ]; }
case "$2" in
start)
  marker hang-start && sleep 600
  marker fail-start && exit 1
  touch "$state"; echo "{node} start $1" >> @LEDGER@;;
stop)
  marker hang-stop && sleep 600
  marker fail-stop && exit 1
  [ -e "$state" ] && echo "{node} stop $1" >> @LEDGER@; rm -f "$state";;
status)
  if [ -e "$state" ] && marker die; then rm -f "$state" "@STATE@/die.{node}.$1"; echo "{node} crash $1" >> @LEDGER@; fi
  if [ -e "$state" ]; then echo running; else echo stopped; fi;;
esac
exit 0
