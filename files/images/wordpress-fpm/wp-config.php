<?php
// wpfarm: WordPress configuration from the environment and Swarm secrets.
// Secrets are read from files (*_FILE, mounted from Swarm secrets); no secret is ever an env value.

function wpfarm_fail(string $why): never
{
    error_log('wpfarm wp-config: ' . $why);
    if (PHP_SAPI !== 'cli') {
        http_response_code(500);
        header('Content-Type: text/plain');
        echo "Site configuration error.\n";
    }
    exit(1);
}

function wpfarm_env(string $name, ?string $default = null): string
{
    $v = getenv($name);
    if ($v === false || $v === '') {
        if ($default === null) wpfarm_fail("$name is not set");
        return $default;
    }
    return $v;
}

function wpfarm_secret_file(string $var): string
{
    $path = wpfarm_env($var);
    $v = @file_get_contents($path);
    if ($v === false) wpfarm_fail("$var: cannot read $path");
    return rtrim($v, "\r\n");
}

define('DB_NAME', wpfarm_env('WORDPRESS_DB_NAME'));
define('DB_USER', wpfarm_env('WORDPRESS_DB_USER'));
define('DB_PASSWORD', wpfarm_secret_file('WORDPRESS_DB_PASSWORD_FILE'));
define('DB_HOST', wpfarm_env('WORDPRESS_DB_HOST'));
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');

// Keys and salts: one secret file, one NAME=value per line.
$wpfarm_keys = [];
foreach (preg_split('/\r?\n/', wpfarm_secret_file('WORDPRESS_KEYS_FILE')) as $line) {
    if (preg_match('/^([A-Z_]+)=(.+)$/', $line, $m)) $wpfarm_keys[$m[1]] = $m[2];
}
foreach (['AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT', 'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT'] as $k) {
    if (!isset($wpfarm_keys[$k]) || strlen($wpfarm_keys[$k]) < 32) wpfarm_fail("WORDPRESS_KEYS_FILE: $k missing or shorter than 32 characters");
    define($k, $wpfarm_keys[$k]);
}
unset($wpfarm_keys, $line, $m, $k);

$table_prefix = 'wp_';

// Behind Traefik: TLS ends there.
if (($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '') === 'https') {
    $_SERVER['HTTPS'] = 'on';
}
$wpfarm_url = wpfarm_env('WORDPRESS_URL');
define('WP_HOME', $wpfarm_url);
define('WP_SITEURL', $wpfarm_url);
define('FORCE_SSL_ADMIN', wpfarm_env('WORDPRESS_FORCE_SSL_ADMIN', 'true') === 'true');

// Core comes from the image (pinned tag): no self-updates, no file editor.
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_AUTO_UPDATE_CORE', false);
define('DISALLOW_FILE_EDIT', true);
// Core files belong to root (read-only for PHP), so WordPress's ownership probe would ask for FTP
// credentials; plugins and themes go to the site's own (writable) directories directly.
define('FS_METHOD', 'direct');

// For the Redis object cache drop-in (wp-content/object-cache.php, linked by the entrypoint when
// WPFARM_OBJECT_CACHE=redis): the site's redis service, and the prefix of every key of this site.
define('WP_REDIS_HOST', wpfarm_env('WORDPRESS_REDIS_HOST', 'redis'));
define('WP_CACHE_KEY_SALT', wpfarm_env('WPFARM_SITE_ID', 'site') . ':');

// Cron from outside (the farm runs wp-cron.php on a schedule) instead of on page views.
if (wpfarm_env('WORDPRESS_DISABLE_WP_CRON', 'false') === 'true') define('DISABLE_WP_CRON', true);
// No outgoing HTTP except to the site itself (labs, locked-down sites).
if (wpfarm_env('WORDPRESS_BLOCK_EXTERNAL_HTTP', 'false') === 'true') define('WP_HTTP_BLOCK_EXTERNAL', true);

define('WP_DEBUG', false);

if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
