<?php
// The active plugins and theme of one site, set through WordPress itself (activate_plugin(), deactivate_plugins(),
// switch_theme(): the plugins' activation hooks run). wp-cli is not obtainable here: roles/update/steps.ts sends
// this file on stdin to `php` in one of the site's php-fpm containers (WORDPRESS_URL comes from its environment).
// Argument: JSON {"plugins": [slug...] | null, "theme": slug | null, "check": bool, "installing": {"plugins": [...],
// "themes": [...]}}: plugins null leaves the plugins alone, else exactly these are active (every other one is
// deactivated); theme null leaves the theme alone. "installing": packages the update puts on the site before it
// activates (check mode may activate them; absent otherwise). A plugin is named by its directory (or, for a
// single-file plugin, its file name without .php). Idempotent: a second run changes nothing.
// Output: one JSON line {"plugins": [active slugs before], "theme": stylesheet before, "changes": [...]} or
// {"error": "..."} (exit 1).
declare(strict_types=1);

function fail(string $msg): never
{
    while (ob_get_level() > 0) ob_end_clean();
    fwrite(STDERR, "wpfarm-activation: $msg\n");
    echo json_encode(['error' => $msg]), "\n";
    exit(1);
}

$want = json_decode($argv[1] ?? '', true);
if (!is_array($want)) fail('expected one JSON argument');
$url = (string) getenv('WORDPRESS_URL');
$host = parse_url($url, PHP_URL_HOST);
if (!$host) fail('WORDPRESS_URL is not set');
$_SERVER['HTTP_HOST'] = $host;
$_SERVER['SERVER_NAME'] = $host;
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['HTTPS'] = str_starts_with($url, 'https:') ? 'on' : 'off';

ob_start(); // plugins loaded by wp-load.php may print: the JSON line must stay the only output
require '/var/www/html/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
if (!is_blog_installed()) fail('WordPress is not installed in this database');

$check = !empty($want['check']);
$installing = $want['installing'] ?? [];
/** "hello/hello.php" → "hello", "hello.php" → "hello" */
$slugOf = static fn (string $file): string => str_contains($file, '/') ? dirname($file) : basename($file, '.php');

$files = [];
foreach (array_keys(get_plugins()) as $file) {
    $files[$slugOf($file)] ??= $file;
}
$active = [];
foreach ((array) get_option('active_plugins', []) as $file) {
    $active[$slugOf((string) $file)] = (string) $file;
}
ksort($active);
$before = ['plugins' => array_keys($active), 'theme' => get_stylesheet()];
$changes = [];

if (isset($want['plugins']) && is_array($want['plugins'])) {
    $wantPlugins = array_map('strval', $want['plugins']);
    foreach (array_keys($active) as $slug) {
        if (in_array($slug, $wantPlugins, true)) continue;
        $changes[] = "deactivate plugin $slug";
        if (!$check) deactivate_plugins([$active[$slug]]);
    }
    foreach ($wantPlugins as $slug) {
        if (isset($active[$slug])) continue;
        if (!isset($files[$slug]) && !($check && in_array($slug, $installing['plugins'] ?? [], true))) {
            fail("plugin $slug is not installed on the site (wp-content/plugins/$slug)");
        }
        $changes[] = "activate plugin $slug";
        if ($check) continue;
        $r = activate_plugin($files[$slug]);
        if (is_wp_error($r)) fail("activate_plugin($files[$slug]): " . $r->get_error_message());
    }
}
if (isset($want['theme']) && is_string($want['theme']) && $want['theme'] !== get_stylesheet()) {
    $slug = $want['theme'];
    $theme = wp_get_theme($slug);
    if (!$theme->exists() && !($check && in_array($slug, $installing['themes'] ?? [], true))) {
        fail("theme $slug is not installed on the site (wp-content/themes/$slug)");
    }
    if ($theme->exists() && $theme->errors()) fail("theme $slug: " . $theme->errors()->get_error_message());
    $changes[] = 'theme: ' . get_stylesheet() . " -> $slug";
    if (!$check) {
        switch_theme($slug);
        if (get_stylesheet() !== $slug) fail("switch_theme($slug) left " . get_stylesheet() . ' active');
    }
}
ob_end_clean();
echo json_encode($before + ['changes' => $changes]), "\n";
