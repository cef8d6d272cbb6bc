#!/bin/sh
# Managed by wpfarm (roles/galera): /usr/local/lib/wpfarm/galera-upgrade-info, run by mariadb.service before Debian's
# /etc/mysql/debian-start (templates/galera/mariadb-upgrade-info.conf).
# A node that joined by mariabackup SST has the donor's system tables but no mysql_upgrade_info (mariabackup does not
# copy it), so debian-start runs mysql_upgrade while the node already applies the cluster's write-sets. Seen in the
# lab (2026-12-07): its ALTER TABLE mysql.columns_priv and the applier's CREATE USER waited on each other for good;
# the node stopped applying, every read of mysql.user on it hung, and the cluster would have stalled on flow control.
# When the donor ran this very server version (xtrabackup_info, written by the SST), there is nothing to upgrade:
# record the version as mysql_upgrade does, and debian-start skips the upgrade. Any other case (a first install, an
# SST from an older donor during a version upgrade, a package upgrade) is left to debian-start as before.
set -u
datadir=/var/lib/mysql
info=$datadir/mysql_upgrade_info
sst=$datadir/xtrabackup_info
[ -s "$info" ] && exit 0
[ -r "$sst" ] || exit 0
# "server_version = 10.11.19-MariaDB-0+deb12u1" and "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ...": 10.11.19-MariaDB
donor=$(sed -n 's/^server_version = \([0-9.]*-MariaDB\).*/\1/p' "$sst")
here=$(/usr/sbin/mariadbd --version | sed -n 's/.* Ver \([0-9.]*-MariaDB\).*/\1/p')
if [ -z "$donor" ] || [ "$donor" != "$here" ]; then
  echo "SST donor version ${donor:-unknown}, this server $here: debian-start upgrades the system tables"
  exit 0
fi
printf '%s' "$here" > "$info.wpfarm" && chown mysql:mysql "$info.wpfarm" && chmod 0644 "$info.wpfarm" && mv "$info.wpfarm" "$info"
echo "joined by SST from a $donor donor: $info set to $here (no mysql_upgrade while applying write-sets)"
