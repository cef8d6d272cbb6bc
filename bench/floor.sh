# The floor: all 20 checks of the workload as ONE script per host (read-only; what a perfect tool must at least do).
B=/srv/bench
for d in "$B" "$B/conf" "$B/data" "$B/logs"; do stat -c '%a %U %G' "$d"; done
for f in a.conf b.conf c.conf d.conf app.conf e.conf; do sha256sum "$B/conf/$f"; stat -c '%a %U %G' "$B/conf/$f"; done
grep -c '^max=10$' "$B/conf/lines.conf"; grep -c '^beta=20$' "$B/conf/lines.conf"; grep -c '^zeta=6$' "$B/conf/lines.conf"
grep -c 'WPFARM MANAGED BLOCK' "$B/conf/block.conf"
sha256sum "$B/data/state.db"; stat -c '%a' "$B/logs/app.log"
test -e "$B/initialized" && echo initialized
test -e "$B/data/ready" && sha256sum "$B/data/ready"
true
