#!/bin/sh
# The broker advertises the address it binds to, so it binds to the advertised listener's address
# (the container's IP on the compose network) and socat relays loopback for in-container tools.
set -eu
listener=${KAFKA_ADVERTISED_LISTENERS:-PLAINTEXT://localhost:9092}
hostport=${listener#*://}
host=${hostport%:*}
port=${hostport##*:}
ip=$(getent hosts "$host" | awk '{print $1; exit}')
[ -n "$ip" ] || ip=$(hostname -i | awk '{print $1}')
if [ "$ip" != 127.0.0.1 ]; then
  socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "TCP:$ip:$port" &
fi
exec noida-db start --data-dir /var/lib/kafka/data --only kafka --host "$ip" --kafka-port "$port"
