<?php
/**
 * Plugin Name: wpfarm admin audit trail
 * Description: One JSON line per administrative action (logins, failed logins, logouts, plugin, theme and
 * user changes, core/plugin/theme updates) on the container's log stream, for the farm's log pipeline.
 *
 * A line is `wpfarm-audit {json}` written through PHP's error log, which the image sends to php-fpm's
 * stderr (docker service logs, then Promtail/Loki, where its retention is `retention.logs.audit_days`).
 * Fields: event, site, actor (the logged-in user's login, or "-"), the object acted on, client (the
 * client's network only: IPv4 /24, IPv6 /48, "cli" outside a request; docs/security.md), request (method
 * and path; never the query string, which may hold tokens or e-mail addresses). Never a password.
 * Must-use: it comes with the image and cannot be deactivated from wp-admin.
 */

if (!defined('ABSPATH')) {
    exit;
}

final class Wpfarm_Audit
{
    /** The client's network (never the full address), as nginx logs it. */
    public static function client(): string
    {
        if (PHP_SAPI === 'cli') {
            return 'cli';
        }
        $ip = isset($_SERVER['REMOTE_ADDR']) ? (string) $_SERVER['REMOTE_ADDR'] : '';
        $bin = $ip === '' ? false : @inet_pton($ip);
        if ($bin === false) {
            return '-';
        }
        if (strlen($bin) === 4) {
            return (string) inet_ntop(substr($bin, 0, 3) . "\0");
        }
        if (substr($bin, 0, 12) === str_repeat("\0", 10) . "\xff\xff") {
            return (string) inet_ntop(substr($bin, 12, 3) . "\0");
        }
        return (string) inet_ntop(substr($bin, 0, 6) . str_repeat("\0", 10));
    }

    private static function actor(): string
    {
        $u = function_exists('wp_get_current_user') ? wp_get_current_user() : null;
        return ($u instanceof WP_User && $u->exists()) ? $u->user_login : '-';
    }

    /** @param array<string, mixed> $fields */
    public static function log(string $event, array $fields = []): void
    {
        $path = isset($_SERVER['REQUEST_URI']) ? strtok((string) $_SERVER['REQUEST_URI'], '?') : '';
        $line = array_merge(
            [
                'event' => $event,
                'time' => gmdate('Y-m-d\TH:i:s\Z'),
                'site' => (string) wp_parse_url(home_url(), PHP_URL_HOST),
                'actor' => self::actor(),
            ],
            $fields,
            [
                'client' => self::client(),
                'request' => PHP_SAPI === 'cli' ? 'cli' : ($_SERVER['REQUEST_METHOD'] ?? '-') . ' ' . $path,
            ]
        );
        error_log('wpfarm-audit ' . wp_json_encode($line, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
    }

    public static function hook(): void
    {
        add_action('wp_login', static function ($login, $user = null): void {
            self::log('login', ['user' => (string) $login, 'actor' => (string) $login]);
        }, 10, 2);
        add_action('wp_login_failed', static function ($login): void {
            // the name that was tried (it may not exist); never the password
            self::log('login_failed', ['user' => (string) $login]);
        }, 10, 1);
        add_action('wp_logout', static function ($user_id = 0): void {
            $u = get_userdata((int) $user_id);
            self::log('logout', ['user' => $u ? $u->user_login : (string) $user_id]);
        }, 10, 1);
        add_action('activated_plugin', static function ($plugin): void {
            self::log('plugin_activated', ['plugin' => (string) $plugin]);
        }, 10, 1);
        add_action('deactivated_plugin', static function ($plugin): void {
            self::log('plugin_deactivated', ['plugin' => (string) $plugin]);
        }, 10, 1);
        add_action('deleted_plugin', static function ($plugin, $deleted = true): void {
            self::log('plugin_deleted', ['plugin' => (string) $plugin, 'ok' => (bool) $deleted]);
        }, 10, 2);
        add_action('switch_theme', static function ($name, $new = null, $old = null): void {
            $from = $old instanceof WP_Theme ? $old->get_stylesheet() : '';
            $to = $new instanceof WP_Theme ? $new->get_stylesheet() : (string) $name;
            self::log('theme_switched', ['theme' => $to, 'from' => $from]);
        }, 10, 3);
        add_action('deleted_theme', static function ($stylesheet, $deleted = true): void {
            self::log('theme_deleted', ['theme' => (string) $stylesheet, 'ok' => (bool) $deleted]);
        }, 10, 2);
        add_action('upgrader_process_complete', static function ($upgrader, $extra = []): void {
            $extra = is_array($extra) ? $extra : [];
            $items = $extra['plugins'] ?? $extra['themes'] ?? (isset($extra['plugin']) ? [$extra['plugin']] : []);
            self::log('updated', [
                'type' => (string) ($extra['type'] ?? '-'),
                'action' => (string) ($extra['action'] ?? '-'),
                'items' => array_values(array_map('strval', (array) $items)),
            ]);
        }, 10, 2);
        add_action('user_register', static function ($user_id): void {
            $u = get_userdata((int) $user_id);
            self::log('user_created', ['user' => $u ? $u->user_login : (string) $user_id, 'roles' => $u ? array_values($u->roles) : []]);
        }, 10, 1);
        add_action('profile_update', static function ($user_id): void {
            $u = get_userdata((int) $user_id);
            self::log('user_updated', ['user' => $u ? $u->user_login : (string) $user_id]);
        }, 10, 1);
        add_action('set_user_role', static function ($user_id, $role, $old = []): void {
            $u = get_userdata((int) $user_id);
            self::log('user_role_changed', [
                'user' => $u ? $u->user_login : (string) $user_id,
                'role' => (string) $role,
                'from' => array_values(array_map('strval', (array) $old)),
            ]);
        }, 10, 3);
        add_action('delete_user', static function ($user_id): void {
            $u = get_userdata((int) $user_id);
            self::log('user_deleted', ['user' => $u ? $u->user_login : (string) $user_id]);
        }, 10, 1);
        add_action('after_password_reset', static function ($user): void {
            self::log('password_reset', ['user' => $user instanceof WP_User ? $user->user_login : '-']);
        }, 10, 1);
    }
}

Wpfarm_Audit::hook();
