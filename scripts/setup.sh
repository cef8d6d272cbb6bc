#!/usr/bin/env bash
# One-time set-up of the controller machine: node modules and the Debian packages that the lab and `make bootstrap`
# need; with --test (make test and the other test targets) also the ones only the tests use. Idempotent and quiet
# when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
APT=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
need=()
# the lab (docker.io, debootstrap for its base image, iproute2/iptables/nftables for its network and faults), age
# (the lab's backup key pair, the backups' encryption on the controller), git, rsync, zip/unzip (plugins, bundles)
pkgs=(openssh-client iproute2 iptables nftables debootstrap docker.io git rsync zip unzip age)
# only the tests: sshd hosts of the engine tier, the registry, Varnish and keepalived of the contract tier, chromium
# (the headless browser of lab 61, a site as a web page, and the engine's timeline test; set up here because lab 61
# once ran before the timeline test had installed it, the two tiers running side by side), php-cli (the migrate
# contract test reads the serialized rewrite back with PHP's own unserialize())
[ "${1:-}" = --test ] && pkgs+=(openssh-server docker-registry varnish keepalived chromium php-cli)
for pkg in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] || "${APT[@]}" update
  "${APT[@]}" install --no-install-recommends "${need[@]}"
fi
if [ -L node_modules ]; then
  # a worktree sharing another checkout's modules: npm ci here would empty that checkout's node_modules
  [ -f node_modules/.package-lock.json ] || { echo "setup: node_modules links to $(readlink node_modules), which has no modules" >&2; exit 1; }
elif [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing node modules"
  npm ci --no-audit --no-fund 2>/dev/null || npm install --no-audit --no-fund
fi
