<?php
// Idempotent WordPress install through core's own wp_install() (wp-cli is not obtainable here).
// Environment: WORDPRESS_URL, WP_INSTALL_TITLE, WP_INSTALL_ADMIN_USER, WP_INSTALL_ADMIN_EMAIL,
// WP_INSTALL_ADMIN_PASSWORD_FILE (a file: the password never travels in the environment).
// Output: one JSON line {"changed":bool,"version":...}; exit 0 on success, 1 on failure.
declare(strict_types=1);

function fail(string $msg): never
{
    fwrite(STDERR, "wpfarm-install: $msg\n");
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

$version = $GLOBALS['wp_version'] ?? 'unknown';
if (is_blog_installed()) {
    echo json_encode(['changed' => false, 'version' => $version]), "\n";
    exit(0);
}
$title = (string) (getenv('WP_INSTALL_TITLE') ?: $host);
$user = (string) getenv('WP_INSTALL_ADMIN_USER');
$email = (string) getenv('WP_INSTALL_ADMIN_EMAIL');
$pwFile = (string) getenv('WP_INSTALL_ADMIN_PASSWORD_FILE');
if ($user === '' || !validate_username($user)) fail('WP_INSTALL_ADMIN_USER is missing or invalid');
if (!is_email($email)) fail('WP_INSTALL_ADMIN_EMAIL is missing or invalid');
if ($pwFile === '' || !is_readable($pwFile)) fail('WP_INSTALL_ADMIN_PASSWORD_FILE is not readable');
$password = rtrim((string) file_get_contents($pwFile), "\r\n");
if (strlen($password) < 12) fail('the admin password is shorter than 12 characters');

$result = wp_install($title, $user, $email, true, '', wp_slash($password));
if (is_wp_error($result) || empty($result['user_id'])) fail('wp_install failed');
echo json_encode(['changed' => true, 'version' => $version, 'user_id' => $result['user_id']]), "\n";
