<?php
// Idempotent database upgrade after a WordPress core update, through core's own wp_upgrade() (wp-cli is not
// obtainable here). Environment: WORDPRESS_URL. Output: one JSON line {"changed":bool,"from":N,"to":N,"version":V};
// exit 0 on success, 1 on failure.
declare(strict_types=1);

function fail(string $msg): never
{
    fwrite(STDERR, "wpfarm-upgrade-db: $msg\n");
    echo json_encode(['changed' => false, 'error' => $msg]), "\n";
    exit(1);
}

$url = (string) getenv('WORDPRESS_URL');
$host = parse_url($url, PHP_URL_HOST);
if (!$host) fail('WORDPRESS_URL is not set');
$_SERVER['HTTP_HOST'] = $host;
$_SERVER['SERVER_NAME'] = $host;
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['HTTPS'] = str_starts_with($url, 'https:') ? 'on' : 'off';

define('WP_INSTALLING', true);
require '/var/www/html/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

if (!is_blog_installed()) fail('WordPress is not installed in this database');
$to = (int) $GLOBALS['wp_db_version'];
$from = (int) get_option('db_version');
$version = $GLOBALS['wp_version'] ?? 'unknown';
if ($from >= $to) {
    echo json_encode(['changed' => false, 'from' => $from, 'to' => $to, 'version' => $version]), "\n";
    exit(0);
}
wp_upgrade();
wp_cache_flush();
$now = (int) get_option('db_version');
if ($now !== $to) fail("db_version is $now after wp_upgrade(), expected $to");
echo json_encode(['changed' => true, 'from' => $from, 'to' => $to, 'version' => $version]), "\n";
