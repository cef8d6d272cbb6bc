<?php
// Prints this container's IPv4 address in the subnet of one of the hosts named in FPM_LISTEN_VIA
// (space separated; e.g. the service's own alias in the site network, then "redis").
// Retries for FPM_LISTEN_WAIT seconds (default 60): DNS entries appear as tasks start.
declare(strict_types=1);

$names = preg_split('/\s+/', trim((string) getenv('FPM_LISTEN_VIA')), -1, PREG_SPLIT_NO_EMPTY) ?: [];
$wait = (int) (getenv('FPM_LISTEN_WAIT') ?: 60);
if (!$names) {
    fwrite(STDERR, "listen-addr: FPM_LISTEN_VIA is empty\n");
    exit(2);
}

/** @return list<array{0:int,1:int,2:string}> [address as int, mask as int, address] */
function local_ipv4(): array
{
    $out = [];
    foreach (net_get_interfaces() ?: [] as $iface) {
        foreach ($iface['unicast'] ?? [] as $u) {
            if (($u['family'] ?? 0) !== 2 || empty($u['address']) || empty($u['netmask'])) continue;
            $a = ip2long($u['address']);
            $m = ip2long($u['netmask']);
            if ($a === false || $m === false || ($a >> 24) === 127) continue;
            $out[] = [$a, $m, $u['address']];
        }
    }
    return $out;
}

$deadline = time() + $wait;
do {
    $locals = local_ipv4();
    foreach ($names as $name) {
        foreach (gethostbynamel($name) ?: [] as $ip) {
            $r = ip2long($ip);
            if ($r === false) continue;
            foreach ($locals as [$a, $m, $addr]) {
                if (($a & $m) === ($r & $m)) {
                    echo $addr, "\n";
                    exit(0);
                }
            }
        }
    }
    sleep(1);
} while (time() < $deadline);

fwrite(STDERR, 'listen-addr: none of [' . implode(' ', $names) . "] resolves into a local subnet after {$wait}s\n");
exit(1);
