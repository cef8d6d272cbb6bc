#!/bin/bash
# seed.sh sites UPLOADS_MB | bench N MB   (the sites' admin password on stdin), copied into the legacy host with the
# rest of files/lab/legacy-seed and run there by scripts/lab/legacy.ts (docker exec); each site seeded once (marker).
#   sites: the two sites of `lab.ts legacy-up` (test/lab/66-migrate):
#   shop.legacy.test  Debian's package layout (/usr/share/wordpress, /etc/wordpress/config-shop.legacy.test.php,
#                     /var/lib/wordpress/wp-content), prefix wp_, DB_HOST localhost (socket), theme
#                     twentytwentythree (a link into /usr/share), UPLOADS_MB MB of uploads (random data)
#   blog.legacy.test  a plain WordPress tree in /srv/www/blog, prefix lg7_, DB_HOST 127.0.0.1:3307, a DB password
#                     with quotes, a hash and a backslash, its own classic theme, pretty permalinks
#   bench: bench01..benchN.legacy.test (bench/migrate.ts): plain trees in /srv/www/benchNN, DB_HOST 127.0.0.1:3307,
#          the classic theme, MB MB of uploads each
# All: utf8mb4 posts (emoji, RTL), pages, media, the plugin "Legacy Hello" active, options and postmeta holding
# nested serialized arrays with the old URL (seed.php does the WordPress part through WordPress's own API).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SEED=$HERE/seed.php
MARKS=/var/lib/wpfarm-legacy
MODE=${1:?usage: seed.sh sites UPLOADS_MB | bench N MB  (password on stdin)}
PW=$(cat)
[ -n "$PW" ] || { echo "the admin password comes on stdin" >&2; exit 4; }
install -d $MARKS
for _ in $(seq 150); do mariadb -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done

sqlq() { printf "%s" "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }
phpq() { printf "'%s'" "$(printf "%s" "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"; }
salts() { for k in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
  echo "define( '$k', '$(head -c 48 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_')' );"; done; }
randpw() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
# DB NAME USER HOST PASSWORD: a database and its user (rights on it only)
db() {
  mariadb <<SQL
CREATE DATABASE IF NOT EXISTS \`$1\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$2'@'$3' IDENTIFIED BY '$(sqlq "$4")';
GRANT ALL ON \`$1\`.* TO '$2'@'$3';
SQL
}
# random upload data in DIR: MB files of 1 MB
blobs() { install -d "$1"; for i in $(seq "$2"); do head -c 1048576 /dev/urandom > "$1/scan-$i.bin"; done; }
# plain ROOT DBNAME DBUSER DBPASSWORD PREFIX: a plain WordPress tree (the same WordPress, copied) with its wp-config.php
plain() {
  rm -rf "$1" && install -d "$(dirname "$1")" && cp -a /usr/share/wordpress "$1"
  rm -rf "$1/wp-content" "$1/wp-config.php"
  install -d "$1/wp-content/plugins" "$1/wp-content/themes" "$1/wp-content/uploads"
  install -d "$1/wp-content/plugins/legacy-hello" "$1/wp-content/themes/legacy-classic"
  cp "$HERE/legacy-hello.php" "$1/wp-content/plugins/legacy-hello/"
  cp "$HERE/theme-style.css" "$1/wp-content/themes/legacy-classic/style.css"
  cp "$HERE/theme-index.php" "$1/wp-content/themes/legacy-classic/index.php"
  cat > "$1/wp-config.php" <<PHP
<?php
/** The base configuration for WordPress (written by hand years ago) */
define( 'DB_NAME', '$2' );
define( 'DB_USER', '$3' );
define( 'DB_PASSWORD', $(phpq "$4") );
define( 'DB_HOST', '127.0.0.1:3307' ); // MariaDB moved to another port
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
$(salts)
\$table_prefix = '$5';
define( 'WP_DEBUG', false );
if ( ! defined( 'ABSPATH' ) ) { define( 'ABSPATH', __DIR__ . '/' ); }
require_once ABSPATH . 'wp-settings.php';
PHP
  chown -R www-data:www-data "$1/wp-content"
  chown root:www-data "$1/wp-config.php" && chmod 0640 "$1/wp-config.php"
}
# wp ROOT DOMAIN TITLE THEME: WordPress installed and its content made (seed.php)
wp() {
  printf '%s' "$PW" | php "$SEED" install "$1" "$2" "$3" "$4"
  printf '%s' "$PW" | php "$SEED" content "$1" "$2" "$3" "$4"
}

case "$MODE" in
sites)
  MB=${2:?UPLOADS_MB}
  [ -e $MARKS/seeded ] && { echo "already seeded"; exit 0; }
  SHOP_PW=$(randpw)
  BLOG_PW='Bl#og'"'"'Pw"7;x\y'
  db shop_wp shop localhost "$SHOP_PW"
  # shop: Debian's layout; the dispatcher /usr/share/wordpress/wp-config.php loads this file for Host shop.legacy.test
  cat > /etc/wordpress/config-shop.legacy.test.php <<PHP
<?php
define( 'DB_NAME', 'shop_wp' );
define( 'DB_USER', 'shop' );
define( 'DB_PASSWORD', $(phpq "$SHOP_PW") );
define( 'DB_HOST', 'localhost' );
define( 'DB_CHARSET', 'utf8mb4' );
$(salts)
PHP
  chown root:www-data /etc/wordpress/config-shop.legacy.test.php && chmod 0640 /etc/wordpress/config-shop.legacy.test.php
  C=/var/lib/wordpress/wp-content
  install -d -o www-data -g www-data $C/plugins $C/themes $C/uploads $C/plugins/legacy-hello
  cp "$HERE/legacy-hello.php" $C/plugins/legacy-hello/
  db blogdb bloguser 127.0.0.1 "$BLOG_PW"
  plain /srv/www/blog blogdb bloguser "$BLOG_PW" lg7_
  wp /usr/share/wordpress shop.legacy.test 'Boutique Ancienne 🛒' twentytwentythree
  wp /srv/www/blog blog.legacy.test 'Vieux blog 😀 مدونة' legacy-classic
  # the big site's uploads: random data, written in seconds
  blobs $C/uploads/2023/archive "$MB"
  printf 'bonjour' > "/srv/www/blog/wp-content/uploads/na me 😀.txt"
  chown -R www-data:www-data $C /srv/www/blog/wp-content
  date -u +%FT%TZ > $MARKS/seeded
  echo "seeded shop.legacy.test and blog.legacy.test ($(du -sm $C/uploads | cut -f1) MB of shop uploads)"
  ;;
bench)
  N=${2:?N}
  MB=${3:?MB}
  made=0
  for i in $(seq -w 1 "$N"); do
    [ ${#i} -lt 2 ] && i=0$i
    site=bench$i
    [ -e $MARKS/$site ] && continue
    pw=$(randpw)
    db "$site" "$site" 127.0.0.1 "$pw"
    plain "/srv/www/$site" "$site" "$site" "$pw" wp_
    wp "/srv/www/$site" "$site.legacy.test" "Banc d'essai $i 🧪" legacy-classic >/dev/null
    blobs "/srv/www/$site/wp-content/uploads/2023/archive" "$MB"
    chown -R www-data:www-data "/srv/www/$site/wp-content"
    date -u +%FT%TZ > $MARKS/$site
    made=$((made + 1))
  done
  echo "bench sites: $made seeded, $N in all (bench01..bench$(printf %02d "$N").legacy.test, $MB MB of uploads each)"
  ;;
*)
  echo "usage: seed.sh sites UPLOADS_MB | bench N MB" >&2
  exit 4
  ;;
esac
