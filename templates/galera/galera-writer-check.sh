#!/bin/sh
# Managed by wpfarm (roles/galera). HAProxy external check for the Galera single-writer endpoint:
# called as `<this> <proxy_addr> <proxy_port> <server_addr> <server_port>`; exit 0 = server up.
# Up means Synced (wsrep_local_state 4) AND wsrep_ready ON: a node that accepts connections but is
# non-primary (partitioned), joining or desynced (donor) gets no traffic.
out=$(timeout 3 mariadb --no-defaults --connect-timeout=2 -h "$3" -P "$4" -u haproxy_check -N -B \
  -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state','wsrep_ready')" 2>/dev/null) || exit 1
printf '%s\n' "$out" | grep -q '^wsrep_local_state[[:space:]]4$' || exit 1
printf '%s\n' "$out" | grep -q '^wsrep_ready[[:space:]]ON$' || exit 1
exit 0
