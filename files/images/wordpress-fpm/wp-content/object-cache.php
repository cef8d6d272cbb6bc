<?php
/*
Plugin Name: wpfarm Redis object cache
Description: WordPress's object cache in the site's own Redis (phpredis), with an in-request cache in front. Installed by the image's entrypoint when WPFARM_OBJECT_CACHE=redis.
Version: 1
*/

// Drop-in for wp-content/object-cache.php, written for the WordPress of this image (6.1: the wp_cache_*
// signatures of wp-includes/cache.php; cache-compat.php is not needed, every function is defined here).
//
// Keys in Redis: WP_CACHE_KEY_SALT (wp-config: "<site id>:") . group . ":" . [blog id ":"] . key
// (":" and "%" in a group name are escaped, so a group's keys never match another group's pattern).
// Values: integers as plain decimal strings (so incr/decr work in Redis), everything else PHP-serialized.
//
// Runtime cache: every value read or written is kept for the rest of the request (objects are cloned,
// as core's cache does); non-persistent groups live only there; get(..., $force = true) goes to Redis.
//
// Redis unreachable: one error_log line per request, the request goes on with the runtime cache only
// (the site keeps serving). Connection and read timeouts are 1 s (WP_REDIS_TIMEOUT). After a failure
// the next attempts wait WPFARM_OBJECT_CACHE_RETRY seconds (5): a file under /run/wpfarm records it,
// so not every request pays the timeout. A write missed while Redis was away (set/delete/flush: the
// database changed but Redis was not told) leaves a "dirty" mark; the first request that reaches Redis
// again flushes this site's keys first, so no stale value outlives the outage.
//
// wp_cache_flush() removes only this site's keys (SCAN + UNLINK of the prefix), never FLUSHDB/FLUSHALL.

defined('ABSPATH') || exit;

// phpcs:disable WordPress.NamingConventions -- the names are WordPress's own API.

#[AllowDynamicProperties]
class WP_Object_Cache
{
    public int $cache_hits = 0;
    public int $cache_misses = 0;
    /** round trips to Redis in this request (stats) */
    public int $redis_calls = 0;

    /** @var array<string, array<int|string, mixed>> runtime cache: [group][id] => value */
    private array $cache = [];
    /** @var array<string, true> */
    private array $global_groups = [];
    /** @var array<string, true> */
    private array $non_persistent_groups = [];
    private bool $multisite;
    private string $blog_prefix;
    /** prefix of every key of this site in Redis */
    private string $prefix;

    private ?Redis $redis = null;
    private bool $tried = false;
    private bool $logged = false;
    private bool $dirty_marked = false;

    private string $host;
    private int $port;
    private int $database;
    private float $timeout;
    private int $retry;
    private string $state_dir;

    /** incr/decr in Redis: core's semantics (missing: false; non-numeric: 0; never below 0), TTL kept. */
    private const INCR_LUA = <<<'LUA'
local v = redis.call('GET', KEYS[1])
if not v then return false end
local n
if string.match(v, '^%-?%d+$') then
  n = tonumber(v)
else
  local s = string.match(v, '^i:(%-?%d+);$') or string.match(v, '^s:%d+:"(%-?%d+)";$')
  n = s and tonumber(s) or 0
end
n = n + tonumber(ARGV[1])
if n < 0 then n = 0 end
redis.call('SET', KEYS[1], string.format('%d', n), 'KEEPTTL')
return n
LUA;

    public function __construct()
    {
        $this->multisite = function_exists('is_multisite') && is_multisite();
        $this->blog_prefix = $this->multisite ? get_current_blog_id() . ':' : '';
        if (defined('WP_CACHE_KEY_SALT') && is_string(WP_CACHE_KEY_SALT) && WP_CACHE_KEY_SALT !== '') {
            $this->prefix = WP_CACHE_KEY_SALT;
        } else {
            $site = getenv('WPFARM_SITE_ID');
            $this->prefix = (is_string($site) && $site !== '' ? $site : 'wp') . ':';
        }
        $this->host = defined('WP_REDIS_HOST') ? (string) WP_REDIS_HOST : 'redis';
        $this->port = defined('WP_REDIS_PORT') ? (int) WP_REDIS_PORT : 6379;
        $this->database = defined('WP_REDIS_DATABASE') ? (int) WP_REDIS_DATABASE : 0;
        $this->timeout = defined('WP_REDIS_TIMEOUT') ? (float) WP_REDIS_TIMEOUT : 1.0;
        $this->retry = defined('WPFARM_OBJECT_CACHE_RETRY') ? (int) WPFARM_OBJECT_CACHE_RETRY : 5;
        $this->state_dir = defined('WPFARM_OBJECT_CACHE_STATE_DIR') ? (string) WPFARM_OBJECT_CACHE_STATE_DIR : '/run/wpfarm';
    }

    // -----------------------------------------------------------------------------------------
    // Connection, failure and recovery

    /** The connection, or null while Redis is unreachable (connects on first use). */
    private function redis(): ?Redis
    {
        if ($this->redis !== null || $this->tried) return $this->redis;
        $this->tried = true;
        if (!class_exists('Redis')) {
            $this->fail('the phpredis extension is not loaded');
            return null;
        }
        $down = $this->state_file('down');
        if ($down !== null) {
            clearstatcache(true, $down);
            $since = @filemtime($down);
            if ($since !== false && time() - $since < $this->retry) return null; // still backing off
        }
        try {
            $r = new Redis();
            // (@: phpredis also warns on a failed connect; fail() logs the one line that says it all)
            if (!@$r->connect($this->host, $this->port, $this->timeout)) throw new RedisException('connect failed');
            $r->setOption(Redis::OPT_READ_TIMEOUT, (string) $this->timeout);
            $r->setOption(Redis::OPT_SERIALIZER, (string) Redis::SERIALIZER_NONE);
            $r->setOption(Redis::OPT_SCAN, (string) Redis::SCAN_RETRY);
            if ($this->database !== 0) $r->select($this->database);
        } catch (Throwable $e) {
            $this->fail('connect', $e);
            return null;
        }
        $this->redis = $r;
        if ($down !== null && file_exists($down)) @unlink($down);
        $dirty = $this->state_file('dirty');
        if ($dirty !== null && file_exists($dirty)) {
            // Writes were missed while Redis was away: what it holds may be stale.
            try {
                $n = $this->delete_matching($this->glob($this->prefix) . '*');
                @unlink($dirty);
                error_log("wpfarm object-cache: redis at {$this->host}:{$this->port} is back; flushed this site's {$n} keys (writes were missed while it was away)");
            } catch (Throwable $e) {
                $this->fail('flush after recovery', $e);
                return null;
            }
        }
        return $this->redis;
    }

    /** Redis failed: log once per request, back off, serve from the runtime cache. */
    private function fail(string $what, ?Throwable $e = null): void
    {
        $this->redis = null;
        $this->tried = true;
        if (!$this->logged) {
            $this->logged = true;
            $why = $e ? ': ' . $e->getMessage() : '';
            error_log("wpfarm object-cache: redis at {$this->host}:{$this->port}: {$what} failed{$why}; serving from the in-request cache only (retry in {$this->retry} s)");
        }
        $down = $this->state_file('down');
        if ($down !== null) @touch($down);
    }

    /** A write could not reach Redis: flush this site's keys when it is back. */
    private function mark_dirty(): void
    {
        if ($this->dirty_marked) return;
        $this->dirty_marked = true;
        $dirty = $this->state_file('dirty');
        if ($dirty === null || !@touch($dirty)) {
            error_log('wpfarm object-cache: cannot record a missed write (state directory not writable); Redis may serve stale values after it is back');
        }
    }

    private function state_file(string $name): ?string
    {
        if ($this->state_dir === '' || !is_dir($this->state_dir)) return null;
        return $this->state_dir . '/object-cache.' . $name;
    }

    /** SCAN + UNLINK of every key matching $pattern; the count removed. */
    private function delete_matching(string $pattern): int
    {
        $r = $this->redis;
        if ($r === null) return 0;
        $n = 0;
        $it = null;
        while (($keys = $r->scan($it, $pattern, 1000)) !== false) {
            $this->redis_calls++;
            if ($keys) $n += (int) $r->unlink($keys);
            if ($it === 0) break;
        }
        return $n;
    }

    // -----------------------------------------------------------------------------------------
    // Keys and values

    private function glob(string $s): string
    {
        return addcslashes($s, '\\*?[]^');
    }

    private static function group_name(string $group): string
    {
        return strtr($group, ['%' => '%25', ':' => '%3A']);
    }

    /** @param int|string $key */
    private function id($key, string $group): string
    {
        return ($this->multisite && !isset($this->global_groups[$group])) ? $this->blog_prefix . $key : (string) $key;
    }

    private function rkey(string $id, string $group): string
    {
        return $this->prefix . self::group_name($group) . ':' . $id;
    }

    private function persistent(string $group): bool
    {
        return !isset($this->non_persistent_groups[$group]);
    }

    /** @param mixed $key */
    private function valid_key($key): bool
    {
        if (is_int($key)) return true;
        if (is_string($key) && trim($key) !== '') return true;
        if (function_exists('_doing_it_wrong')) {
            $msg = is_string($key) ? 'Cache key must not be an empty string.' : sprintf('Cache key must be integer or non-empty string, %s given.', gettype($key));
            _doing_it_wrong(__CLASS__ . '::' . (debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS, 2)[1]['function'] ?? ''), $msg, '6.1.0');
        }
        return false;
    }

    /** @param mixed $data */
    private static function encode($data): string
    {
        return is_int($data) ? (string) $data : serialize($data);
    }

    /** @return array{0:bool,1:mixed} [found, value] */
    private static function decode(string $raw): array
    {
        if (preg_match('/^-?[0-9]+$/D', $raw)) return [true, (int) $raw];
        if ($raw === 'b:0;') return [true, false];
        $v = @unserialize($raw);
        return $v === false ? [false, null] : [true, $v];
    }

    private function exists_runtime(string $id, string $group): bool
    {
        return isset($this->cache[$group]) && (isset($this->cache[$group][$id]) || array_key_exists($id, $this->cache[$group]));
    }

    /** @param mixed $data */
    private function keep(string $id, $data, string $group): void
    {
        $this->cache[$group][$id] = is_object($data) ? clone $data : $data;
    }

    /** @param mixed $data */
    private function write(string $id, $data, string $group, int $expire, ?string $mode): bool
    {
        $r = $this->redis();
        if ($r === null) {
            $this->mark_dirty();
            return false;
        }
        $opts = [];
        if ($mode !== null) $opts[] = $mode;
        if ($expire > 0) $opts['ex'] = $expire;
        try {
            $this->redis_calls++;
            return (bool) ($opts ? $r->set($this->rkey($id, $group), self::encode($data), $opts) : $r->set($this->rkey($id, $group), self::encode($data)));
        } catch (Throwable $e) {
            $this->fail('write', $e);
            $this->mark_dirty();
            return false;
        }
    }

    // -----------------------------------------------------------------------------------------
    // WP_Object_Cache API

    /** @param int|string $key @param mixed $data */
    public function add($key, $data, $group = 'default', $expire = 0)
    {
        if (function_exists('wp_suspend_cache_addition') && wp_suspend_cache_addition()) return false;
        if (!$this->valid_key($key)) return false;
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $id = $this->id($key, $group);
        if ($this->exists_runtime($id, $group)) return false;
        // (an add missed while Redis is away needs no flush later: it only fills an empty key)
        if ($this->persistent($group) && $this->redis() !== null) {
            if (!$this->write($id, $data, $group, (int) $expire, 'nx')) {
                if ($this->redis !== null) return false; // Redis holds it already
            }
        }
        $this->keep($id, $data, $group);
        return true;
    }

    /** @param array<int|string, mixed> $data @return bool[] */
    public function add_multiple(array $data, $group = '', $expire = 0)
    {
        $out = [];
        foreach ($data as $key => $value) $out[$key] = $this->add($key, $value, $group, $expire);
        return $out;
    }

    /** @param int|string $key @param mixed $data */
    public function replace($key, $data, $group = 'default', $expire = 0)
    {
        if (!$this->valid_key($key)) return false;
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $id = $this->id($key, $group);
        if ($this->persistent($group) && $this->redis() !== null) {
            if (!$this->write($id, $data, $group, (int) $expire, 'xx')) {
                if ($this->redis !== null) return false; // not in Redis
                if (!$this->exists_runtime($id, $group)) return false;
            }
        } else {
            if ($this->persistent($group)) $this->mark_dirty();
            if (!$this->exists_runtime($id, $group)) return false;
        }
        $this->keep($id, $data, $group);
        return true;
    }

    /** @param int|string $key @param mixed $data */
    public function set($key, $data, $group = 'default', $expire = 0)
    {
        if (!$this->valid_key($key)) return false;
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $id = $this->id($key, $group);
        if ($this->persistent($group)) $this->write($id, $data, $group, (int) $expire, null);
        $this->keep($id, $data, $group);
        return true;
    }

    /** @param array<int|string, mixed> $data @return bool[] */
    public function set_multiple(array $data, $group = '', $expire = 0)
    {
        $out = [];
        foreach ($data as $key => $value) $out[$key] = $this->set($key, $value, $group, $expire);
        return $out;
    }

    /** @param int|string $key @return mixed */
    public function get($key, $group = 'default', $force = false, &$found = null)
    {
        if (!$this->valid_key($key)) return false;
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $id = $this->id($key, $group);
        $persistent = $this->persistent($group);
        $r = $persistent && ($force || !$this->exists_runtime($id, $group)) ? $this->redis() : null;
        if ($r !== null) {
            try {
                $this->redis_calls++;
                $raw = $r->get($this->rkey($id, $group));
            } catch (Throwable $e) {
                $this->fail('read', $e);
                $raw = null;
            }
            if (is_string($raw)) {
                [$ok, $value] = self::decode($raw);
                if ($ok) {
                    $this->cache[$group][$id] = $value;
                    $found = true;
                    $this->cache_hits++;
                    return is_object($value) ? clone $value : $value;
                }
            }
            if ($raw === false) { // a miss in Redis: the runtime copy (if any) is gone elsewhere
                unset($this->cache[$group][$id]);
                $found = false;
                $this->cache_misses++;
                return false;
            }
        }
        if ($this->exists_runtime($id, $group)) {
            $found = true;
            $this->cache_hits++;
            $value = $this->cache[$group][$id];
            return is_object($value) ? clone $value : $value;
        }
        $found = false;
        $this->cache_misses++;
        return false;
    }

    /** @param array<int|string> $keys @return array<int|string, mixed> */
    public function get_multiple($keys, $group = 'default', $force = false)
    {
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $out = [];
        $ask = [];
        foreach ($keys as $key) {
            if (!$this->valid_key($key)) {
                $out[$key] = false;
                continue;
            }
            $id = $this->id($key, $group);
            if ($this->persistent($group) && ($force || !$this->exists_runtime($id, $group))) $ask[$key] = $id;
            else $out[$key] = $this->get($key, $group);
        }
        $r = $ask ? $this->redis() : null;
        if ($r !== null) {
            try {
                $this->redis_calls++;
                $raws = $r->mget(array_map(fn (string $id): string => $this->rkey($id, $group), array_values($ask)));
            } catch (Throwable $e) {
                $this->fail('read', $e);
                $raws = false;
            }
            if (is_array($raws)) {
                $i = 0;
                foreach ($ask as $key => $id) {
                    $raw = $raws[$i++] ?? false;
                    [$ok, $value] = is_string($raw) ? self::decode($raw) : [false, null];
                    if ($ok) {
                        $this->cache[$group][$id] = $value;
                        $this->cache_hits++;
                        $out[$key] = is_object($value) ? clone $value : $value;
                    } else {
                        unset($this->cache[$group][$id]);
                        $this->cache_misses++;
                        $out[$key] = false;
                    }
                }
                $ask = [];
            }
        }
        foreach ($ask as $key => $id) $out[$key] = $this->get($key, $group); // Redis unreachable: runtime
        $ordered = [];
        foreach ($keys as $key) if (is_int($key) || is_string($key)) $ordered[$key] = $out[$key] ?? false;
        return $ordered;
    }

    /** @param int|string $key */
    public function delete($key, $group = 'default', $deprecated = false)
    {
        if (!$this->valid_key($key)) return false;
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $id = $this->id($key, $group);
        $had = $this->exists_runtime($id, $group);
        unset($this->cache[$group][$id]);
        if (!$this->persistent($group)) return $had;
        $r = $this->redis();
        if ($r === null) {
            $this->mark_dirty();
            return $had;
        }
        try {
            $this->redis_calls++;
            return ((int) $r->del($this->rkey($id, $group))) > 0 || $had;
        } catch (Throwable $e) {
            $this->fail('delete', $e);
            $this->mark_dirty();
            return $had;
        }
    }

    /** @param array<int|string> $keys @return bool[] */
    public function delete_multiple(array $keys, $group = '')
    {
        $out = [];
        foreach ($keys as $key) $out[$key] = $this->delete($key, $group);
        return $out;
    }

    /** @param int|string $key @return int|false */
    public function incr($key, $offset = 1, $group = 'default')
    {
        return $this->add_to($key, (int) $offset, $group);
    }

    /** @param int|string $key @return int|false */
    public function decr($key, $offset = 1, $group = 'default')
    {
        return $this->add_to($key, -(int) $offset, $group);
    }

    /** @param int|string $key @return int|false */
    private function add_to($key, int $offset, $group)
    {
        if (!$this->valid_key($key)) return false;
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        $id = $this->id($key, $group);
        if ($this->persistent($group)) {
            $r = $this->redis();
            if ($r !== null) {
                try {
                    $this->redis_calls++;
                    $n = $r->eval(self::INCR_LUA, [$this->rkey($id, $group), (string) $offset], 1);
                } catch (Throwable $e) {
                    $this->fail('incr/decr', $e);
                    $n = null;
                }
                if (is_int($n)) {
                    $this->cache[$group][$id] = $n;
                    return $n;
                }
                if ($n === false && $this->redis !== null) {
                    $err = $r->getLastError();
                    if ($err !== null) { // a script error, not a missing key
                        $r->clearLastError();
                        error_log("wpfarm object-cache: incr/decr: {$err}");
                    }
                    unset($this->cache[$group][$id]);
                    return false; // not in Redis
                }
            }
            $this->mark_dirty();
        }
        if (!$this->exists_runtime($id, $group)) return false;
        $v = $this->cache[$group][$id];
        $v = is_numeric($v) ? $v + $offset : $offset;
        if ($v < 0) $v = 0;
        $this->cache[$group][$id] = $v;
        return $v;
    }

    /** Removes every key of this site (its prefix), never anything else in Redis. */
    public function flush()
    {
        $this->cache = [];
        $r = $this->redis();
        if ($r === null) {
            $this->mark_dirty();
            return false;
        }
        try {
            $this->delete_matching($this->glob($this->prefix) . '*');
            return true;
        } catch (Throwable $e) {
            $this->fail('flush', $e);
            $this->mark_dirty();
            return false;
        }
    }

    public function flush_runtime()
    {
        $this->cache = [];
        return true;
    }

    /** @param string $group */
    public function flush_group($group)
    {
        $group = $group === '' || $group === null ? 'default' : (string) $group;
        unset($this->cache[$group]);
        if (!$this->persistent($group)) return true;
        $r = $this->redis();
        if ($r === null) {
            $this->mark_dirty();
            return false;
        }
        try {
            $this->delete_matching($this->glob($this->prefix . self::group_name($group) . ':') . '*');
            return true;
        } catch (Throwable $e) {
            $this->fail('flush_group', $e);
            $this->mark_dirty();
            return false;
        }
    }

    /** @param string|string[] $groups */
    public function add_global_groups($groups)
    {
        $this->global_groups = array_merge($this->global_groups, array_fill_keys((array) $groups, true));
    }

    /** @param string|string[] $groups */
    public function add_non_persistent_groups($groups)
    {
        $this->non_persistent_groups = array_merge($this->non_persistent_groups, array_fill_keys((array) $groups, true));
    }

    /** @param int $blog_id */
    public function switch_to_blog($blog_id)
    {
        $this->blog_prefix = $this->multisite ? ((int) $blog_id) . ':' : '';
    }

    public function reset()
    {
        if (function_exists('_deprecated_function')) _deprecated_function(__FUNCTION__, '3.5.0', 'WP_Object_Cache::switch_to_blog()');
        foreach (array_keys($this->cache) as $group) {
            if (!isset($this->global_groups[$group])) unset($this->cache[$group]);
        }
    }

    public function close()
    {
        if ($this->redis !== null) {
            try {
                $this->redis->close();
            } catch (Throwable $e) {
                // closing a broken connection: nothing to do
            }
        }
        $this->redis = null;
        $this->tried = false;
        return true;
    }

    /** Whether this request is talking to Redis (false: runtime cache only). */
    public function redis_connected(): bool
    {
        return $this->redis() !== null;
    }

    public function key_prefix(): string
    {
        return $this->prefix;
    }

    public function stats()
    {
        $state = $this->redis !== null ? 'connected' : 'not connected (in-request cache only)';
        echo '<p>';
        echo "<strong>Redis:</strong> {$state} ({$this->redis_calls} calls)<br />";
        echo "<strong>Cache Hits:</strong> {$this->cache_hits}<br />";
        echo "<strong>Cache Misses:</strong> {$this->cache_misses}<br />";
        echo '</p>';
    }
}

// ---------------------------------------------------------------------------------------------
// wp_cache_* (signatures of wp-includes/cache.php, WordPress 6.1)

function wp_cache_init()
{
    $GLOBALS['wp_object_cache'] = new WP_Object_Cache();
}

function wp_cache_add($key, $data, $group = '', $expire = 0)
{
    global $wp_object_cache;
    return $wp_object_cache->add($key, $data, $group, (int) $expire);
}

function wp_cache_add_multiple(array $data, $group = '', $expire = 0)
{
    global $wp_object_cache;
    return $wp_object_cache->add_multiple($data, $group, $expire);
}

function wp_cache_replace($key, $data, $group = '', $expire = 0)
{
    global $wp_object_cache;
    return $wp_object_cache->replace($key, $data, $group, (int) $expire);
}

function wp_cache_set($key, $data, $group = '', $expire = 0)
{
    global $wp_object_cache;
    return $wp_object_cache->set($key, $data, $group, (int) $expire);
}

function wp_cache_set_multiple(array $data, $group = '', $expire = 0)
{
    global $wp_object_cache;
    return $wp_object_cache->set_multiple($data, $group, $expire);
}

function wp_cache_get($key, $group = '', $force = false, &$found = null)
{
    global $wp_object_cache;
    return $wp_object_cache->get($key, $group, $force, $found);
}

function wp_cache_get_multiple($keys, $group = '', $force = false)
{
    global $wp_object_cache;
    return $wp_object_cache->get_multiple($keys, $group, $force);
}

function wp_cache_delete($key, $group = '')
{
    global $wp_object_cache;
    return $wp_object_cache->delete($key, $group);
}

function wp_cache_delete_multiple(array $keys, $group = '')
{
    global $wp_object_cache;
    return $wp_object_cache->delete_multiple($keys, $group);
}

function wp_cache_incr($key, $offset = 1, $group = '')
{
    global $wp_object_cache;
    return $wp_object_cache->incr($key, $offset, $group);
}

function wp_cache_decr($key, $offset = 1, $group = '')
{
    global $wp_object_cache;
    return $wp_object_cache->decr($key, $offset, $group);
}

function wp_cache_flush()
{
    global $wp_object_cache;
    return $wp_object_cache->flush();
}

function wp_cache_flush_runtime()
{
    global $wp_object_cache;
    return $wp_object_cache->flush_runtime();
}

function wp_cache_flush_group($group)
{
    global $wp_object_cache;
    return $wp_object_cache->flush_group($group);
}

function wp_cache_supports($feature)
{
    switch ($feature) {
        case 'add_multiple':
        case 'set_multiple':
        case 'get_multiple':
        case 'delete_multiple':
        case 'flush_runtime':
        case 'flush_group':
            return true;
        default:
            return false;
    }
}

function wp_cache_close()
{
    global $wp_object_cache;
    return $wp_object_cache->close();
}

function wp_cache_add_global_groups($groups)
{
    global $wp_object_cache;
    $wp_object_cache->add_global_groups($groups);
}

function wp_cache_add_non_persistent_groups($groups)
{
    global $wp_object_cache;
    $wp_object_cache->add_non_persistent_groups($groups);
}

function wp_cache_switch_to_blog($blog_id)
{
    global $wp_object_cache;
    $wp_object_cache->switch_to_blog($blog_id);
}

function wp_cache_reset()
{
    if (function_exists('_deprecated_function')) _deprecated_function(__FUNCTION__, '3.5.0', 'wp_cache_switch_to_blog()');
    global $wp_object_cache;
    $wp_object_cache->reset();
}
