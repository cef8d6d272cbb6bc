// Galera over regions (roles/galera/regions.ts): segments per region, WAN timeouts, and the rendered
// wsrep_provider_options line of templates/galera/60-galera.cnf.ejs, checked as strings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import type { HostSpec } from '../../lib/types.ts';
import { durationMs, galeraRegions, WAN_DEFAULTS } from '../../roles/galera/regions.ts';

const host = (name: string, region?: string): HostSpec => ({
  name,
  address: `10.0.0.${name.slice(-1)}`,
  port: 22,
  user: 'root',
  groups: ['db'],
  vars: region ? { region } : {},
});

const cnf = (me: HostSpec, hosts: HostSpec[], vars: Record<string, unknown> = {}) =>
  renderTemplate(templatePath('galera', '60-galera.cnf.ejs'), {
    node_name: me.name,
    node_address: me.address,
    cluster_name: 'wpfarm',
    peers: hosts.map((h) => h.address),
    sst_method: 'mariabackup',
    buffer_pool: '128M',
    max_connections: 300,
    gcache_size: '256M',
    slave_threads: 2,
    wan_options: galeraRegions(me, hosts, vars).options,
  });
const providerLine = (text: string) => text.split('\n').find((l) => l.startsWith('wsrep_provider_options'));

test('one region (or none): the provider options are gcache.size alone, as before regions existed', () => {
  const none = [host('db1'), host('db2'), host('db3')];
  assert.equal(providerLine(cnf(none[0]!, none)), 'wsrep_provider_options   = "gcache.size=256M"');
  const one = [host('db1', 'fra1'), host('db2', 'fra1'), host('db3', 'fra1')];
  assert.equal(providerLine(cnf(one[1]!, one)), 'wsrep_provider_options   = "gcache.size=256M"');
  assert.deepEqual([...galeraRegions(one[0]!, one, {}).segments], [['fra1', 0]]);
});

test('three regions: one gmcast.segment per region (the cloud order first) and the WAN timeouts', () => {
  const hosts = [host('db1', 'fra1'), host('db2', 'ams3'), host('db3', 'lon1')];
  const vars = { regions: ['fra1', 'ams3', 'lon1'] };
  assert.equal(
    providerLine(cnf(hosts[1]!, hosts, vars)),
    'wsrep_provider_options   = "gcache.size=256M; gmcast.segment=1; evs.keepalive_period=PT3S; evs.suspect_timeout=PT30S; ' +
      'evs.inactive_timeout=PT1M; evs.install_timeout=PT1M"',
  );
  assert.match(providerLine(cnf(hosts[2]!, hosts, vars))!, /; gmcast\.segment=2; /);
  // without the cloud's order: names sorted (ams3 0, fra1 1, lon1 2), stable across runs
  assert.deepEqual(
    [...galeraRegions(hosts[0]!, hosts, {}).segments],
    [
      ['ams3', 0],
      ['fra1', 1],
      ['lon1', 2],
    ],
  );
  assert.match(providerLine(cnf(hosts[0]!, hosts))!, /; gmcast\.segment=1; /);
  // two nodes of a region share its segment
  const four = [...hosts, host('db4', 'fra1')];
  assert.deepEqual(galeraRegions(four[3]!, four, vars).options[0], 'gmcast.segment=0');
});

test('galera_wan_options overrides a default and adds options (gcs.max_packet_size)', () => {
  const hosts = [host('db1', 'a'), host('db2', 'b'), host('db3', 'c')];
  const vars = { galera_wan_options: { 'evs.suspect_timeout': 'PT10S', 'evs.inactive_timeout': 'PT15S', 'gcs.max_packet_size': 1048576 } };
  assert.deepEqual(galeraRegions(hosts[2]!, hosts, vars).options, [
    'gmcast.segment=2',
    `evs.keepalive_period=${WAN_DEFAULTS['evs.keepalive_period']}`,
    'evs.suspect_timeout=PT10S',
    'evs.inactive_timeout=PT15S',
    'evs.install_timeout=PT1M',
    'gcs.max_packet_size=1048576',
  ]);
});

test('refused: mixed regions, bad option names/values, timeouts out of order, segment by hand', () => {
  const hosts = [host('db1', 'a'), host('db2', 'b'), host('db3', 'c')];
  assert.throws(() => galeraRegions(hosts[0]!, [...hosts, host('db4')], {}), /db hosts db4 have no var region/);
  assert.throws(() => galeraRegions(hosts[0]!, hosts, { galera_wan_options: { 'evs.x; y': 1 } }), /not a Galera provider option name/);
  assert.throws(() => galeraRegions(hosts[0]!, hosts, { galera_wan_options: { 'evs.send_window': '1;x=2' } }), /bad value/);
  assert.throws(() => galeraRegions(hosts[0]!, hosts, { galera_wan_options: { 'gmcast.segment': 3 } }), /set by the role/);
  assert.throws(
    () => galeraRegions(hosts[0]!, hosts, { galera_wan_options: { 'evs.suspect_timeout': 'PT2M' } }),
    /keepalive_period < suspect_timeout < inactive_timeout <= install_timeout/,
  );
  assert.throws(() => galeraRegions(hosts[0]!, hosts, { galera_wan_options: { 'evs.install_timeout': '60' } }), /not an ISO 8601 duration/);
  assert.throws(() => galeraRegions(hosts[0]!, hosts, { galera_wan_options: ['x'] }), /expected a mapping/);
});

test('durationMs reads Galera durations', () => {
  assert.equal(durationMs('PT3S'), 3000);
  assert.equal(durationMs('PT1M'), 60_000);
  assert.equal(durationMs('PT1.5S'), 1500);
  assert.equal(durationMs('P1DT1H'), 90_000_000);
  assert.equal(durationMs('PT'), undefined);
  assert.equal(durationMs('30'), undefined);
});
