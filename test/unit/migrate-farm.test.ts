// The site record of a migrated site: `migrated_from` written by roles/migrate/farm.ts, read back by the site
// record schema (roles/wp-site/site.ts), replaced in place at cutover; a bad section is refused with its line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migratedFromYaml, withMigratedFrom } from '../../roles/migrate/farm.ts';
import { recordYaml } from '../../roles/wp-site/playbook-util.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';

const inv = { management_cidrs: ['192.0.2.0/24'] };
const base = recordYaml({ id: 'new-example-net', domain: 'new.example.net', aliases: [] });
const started = { source: 'ssh://root@192.0.2.7:2222/var/www/old site', domain: 'old.example', started: '2026-12-06T06:00:00.000Z' };

test('migrated_from: written at copy, completed at cutover, read back by the record schema', () => {
  const first = base + migratedFromYaml(started);
  assert.deepEqual(parseSiteRecord('new-example-net.yml', first, inv).migrated_from, started);
  const done = {
    ...started,
    cutover: '2026-12-06T06:10:00.000Z',
    verification: { tables: 12, rows: 3456, uploads: 42 },
  };
  const text = withMigratedFrom(first, done);
  assert.equal(text.match(/migrated_from:/g)?.length, 1, text);
  const rec = parseSiteRecord('new-example-net.yml', text, inv);
  assert.deepEqual(rec.migrated_from, done);
  assert.equal(rec.domain, 'new.example.net');
  // the rest of the record is kept, in its place
  assert.ok(text.startsWith(base), text);
  // a record without the section is a record as before
  assert.equal(parseSiteRecord('new-example-net.yml', base, inv).migrated_from, undefined);
});

test('a bad migrated_from is refused with file, line and field', () => {
  const bad = `${base}migrated_from:\n  source: x\n  domain: Old.Example\n  started: now\n  colour: blue\n`;
  assert.throws(
    () => parseSiteRecord('new-example-net.yml', bad, inv),
    (e: Error) =>
      /new-example-net\.yml:6:\d+ migrated_from\.domain: .*lowercase/.test(e.message) &&
      /migrated_from\.colour: unknown key/.test(e.message),
  );
});
