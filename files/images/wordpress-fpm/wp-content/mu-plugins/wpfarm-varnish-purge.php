<?php
/**
 * Plugin Name: wpfarm Varnish purge
 * Description: Purges the site's Varnish (cache tier 2) when a post, page, menu or option changes.
 *
 * A post change purges its URLs (permalink, ?p=ID, archives, terms, home, feeds); a menu, theme or
 * option change bans the whole site (it shows on every page).
 *
 * Active only when WPFARM_VARNISH_PURGE is set ("<varnish service>:<port>", set by the wp-site stack
 * for sites with cache.varnish on). Changes during one request are collected and sent once, at
 * shutdown (the debounce: a save that fires many hooks costs one PURGE per URL). Every varnish task
 * gets the PURGE (each holds its own cache): the addresses come from tasks.<service> in Swarm's DNS.
 * Varnish accepts PURGE only from the site's php-fpm tasks and the farm (templates/varnish/site.vcl.ejs).
 */

if (!defined('ABSPATH')) {
    exit;
}

final class Wpfarm_Varnish_Purge
{
    /** @var array<string, true> paths to purge at shutdown */
    private static array $paths = [];
    private static bool $hooked = false;
    private static bool $ban = false;

    public static function target(): ?array
    {
        $t = getenv('WPFARM_VARNISH_PURGE');
        if (!is_string($t) || !preg_match('/^([a-z0-9][a-z0-9_.-]*):([0-9]{1,5})$/', $t, $m)) {
            return null;
        }
        return [$m[1], (int) $m[2]];
    }

    /** Queue the path of a URL of this site (query strings kept: they are part of Varnish's hash). */
    public static function queue(string $url): void
    {
        $p = wp_parse_url($url);
        if (!is_array($p)) {
            return;
        }
        $path = ($p['path'] ?? '/') . (isset($p['query']) ? '?' . $p['query'] : '');
        self::$paths[$path === '' ? '/' : $path] = true;
        self::hook();
    }

    private static function hook(): void
    {
        if (!self::$hooked) {
            self::$hooked = true;
            add_action('shutdown', [self::class, 'flush'], 1000);
        }
    }

    public static function queue_site(): void
    {
        self::queue(home_url('/'));
        self::queue(get_feed_link());
        self::queue(get_feed_link('comments_rss2'));
    }

    public static function queue_post(int $post_id): void
    {
        if (wp_is_post_revision($post_id) || wp_is_post_autosave($post_id)) {
            return;
        }
        $post = get_post($post_id);
        if (!$post || $post->post_type === 'nav_menu_item') {
            return;
        }
        $link = get_permalink($post);
        if (is_string($link)) {
            self::queue($link);
        }
        // the plain ?p=ID form as well: it may be what was cached before the permalink existed
        self::queue(home_url('/?p=' . $post_id));
        $archive = get_post_type_archive_link($post->post_type);
        if (is_string($archive)) {
            self::queue($archive);
        }
        foreach (wp_get_post_terms($post_id, get_object_taxonomies($post->post_type)) as $term) {
            if ($term instanceof WP_Term) {
                $l = get_term_link($term);
                if (is_string($l)) {
                    self::queue($l);
                }
            }
        }
        self::queue_site();
    }

    /** Everything of this site (menus, options, themes show on every page). */
    public static function queue_ban(): void
    {
        self::$ban = true;
        self::hook();
    }

    /** Send the queued PURGEs (or the BAN) to every varnish task; returns the number of answers 200. */
    public static function flush(): int
    {
        // a ban covers every path
        $requests = self::$ban ? [['BAN', '/']] : array_map(static fn ($p) => ['PURGE', $p], array_keys(self::$paths));
        self::$paths = [];
        self::$ban = false;
        $target = self::target();
        if (!$target || !$requests) {
            return 0;
        }
        [$service, $port] = $target;
        $addrs = gethostbynamel('tasks.' . $service) ?: [];
        $host = (string) wp_parse_url(home_url('/'), PHP_URL_HOST);
        $ok = 0;
        foreach ($addrs as $addr) {
            foreach ($requests as [$method, $path]) {
                $r = wp_remote_request("http://$addr:$port$path", [
                    'method' => $method,
                    'headers' => ['Host' => $host],
                    'timeout' => 2,
                    'redirection' => 0,
                    'blocking' => true,
                ]);
                if (is_wp_error($r)) {
                    error_log("wpfarm-varnish-purge: $method $path at $addr: " . $r->get_error_message());
                } elseif (wp_remote_retrieve_response_code($r) === 200) {
                    $ok++;
                } else {
                    error_log("wpfarm-varnish-purge: $method $path at $addr answered " . wp_remote_retrieve_response_code($r));
                }
            }
        }
        return $ok;
    }
}

if (Wpfarm_Varnish_Purge::target() !== null) {
    add_action('save_post', [Wpfarm_Varnish_Purge::class, 'queue_post'], 100);
    add_action('deleted_post', [Wpfarm_Varnish_Purge::class, 'queue_post'], 100);
    add_action('trashed_post', [Wpfarm_Varnish_Purge::class, 'queue_post'], 100);
    add_action('wp_update_nav_menu', [Wpfarm_Varnish_Purge::class, 'queue_ban'], 100);
    add_action('switch_theme', [Wpfarm_Varnish_Purge::class, 'queue_ban'], 100);
    add_action('updated_option', static function (string $option): void {
        // transients, cron and other bookkeeping options change on page views: they never purge
        if (str_starts_with($option, '_') || str_contains($option, 'transient')
            || $option === 'cron' || str_starts_with($option, 'wpfarm_')) {
            return;
        }
        Wpfarm_Varnish_Purge::queue_ban();
    }, 100);
}
