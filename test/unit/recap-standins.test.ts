// The recap names the production components a run replaced by lab stand-ins or skipped, with the reason, in a
// section of its own and in its last line (issue 17: not a line lost in the log).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRecap, recapRows, standInsOf } from '../../lib/output.ts';
import type { StepResult } from '../../lib/types.ts';

const step = (host: string, name: string, extra: Partial<StepResult> = {}): StepResult => ({
  host,
  step: name,
  kind: 'task',
  status: 'ok',
  changes: [],
  ms: 1,
  ...extra,
});

test('stand-ins and skipped components: once each, in run order, in their section and the summary line', () => {
  const results = [
    step('mgr1', 'traefik replaced by the edge stand-in', {
      standIn: { component: 'traefik', by: 'haproxy', why: 'edge_standin: haproxy' },
    }),
    step('mgr2', 'traefik replaced by the edge stand-in', {
      standIn: { component: 'traefik', by: 'haproxy', why: 'edge_standin: haproxy' },
    }),
    step('mgr1', 'portainer images', {
      status: 'skipped',
      reason: 'image portainer/portainer-ce cannot be pulled here',
      standIn: { component: 'portainer', why: 'image portainer/portainer-ce cannot be pulled here' },
    }),
    step('mgr1', 'file /etc/x'),
  ];
  assert.deepEqual(
    standInsOf(results).map((x) => x.component),
    ['traefik', 'portainer'],
  );
  const text = formatRecap(recapRows(results, new Map(), ['mgr1', 'mgr2']), results, 1500);
  const lines = text.split('\n');
  const at = lines.indexOf('NOT AS IN PRODUCTION (stand-ins and skipped components)');
  assert.ok(at > 0, text);
  assert.equal(lines[at + 1], '  traefik: replaced by haproxy: edge_standin: haproxy');
  assert.equal(lines[at + 2], '  portainer: skipped: image portainer/portainer-ce cannot be pulled here');
  assert.equal(lines.at(-1), 'wall time 1.50 s; not as in production: traefik → haproxy, portainer skipped');
  // a run without any: no section, the plain summary line
  const plain = formatRecap(recapRows([results[3]!], new Map(), ['mgr1']), [results[3]!], 1500);
  assert.ok(!plain.includes('NOT AS IN PRODUCTION'));
  assert.equal(plain.split('\n').at(-1), 'wall time 1.50 s');
});
