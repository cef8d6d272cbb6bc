// The firewall policy (roles/common/firewall.ts) and its input checks, without hosts:
//   - one policy rendered on both paths: every input accept rule has its forward twin on the original
//     destination port of DNATed traffic, and both chains end in a counted drop
//   - bad firewall input (a CIDR like 10.0.0.0/33, a port, a proto, an empty from, an apt_proxy that is not a plain
//     http(s) URL) is refused by the role's variable schemas with file:line:col and field, and by the renderer
//   - a real run (playbooks/run-role.ts common) with such an inventory exits 4 naming the file, line and field,
//     before any connection: the inventory's host is a TCP listener of this test that counts connections (0)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { checkVars, loadInventory } from '../../lib/inventory.ts';
import { InputErrors } from '../../lib/schema.ts';
import type { HostSpec } from '../../lib/types.ts';
import { firewallPolicy, renderFirewall } from '../../roles/common/firewall.ts';
import common, { aptProxyProblem } from '../../roles/common/role.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-fw-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const H = (name: string, address: string, groups: string[]) => ({ name, address, port: 22, user: 'root', groups, vars: {} }) as HostSpec;
const mgr1 = H('mgr1', '10.77.0.11', ['managers', 'swarm', 'edge']);
const wk1 = H('wk1', '10.77.0.21', ['workers', 'swarm']);
const mon1 = H('mon1', '10.77.0.51', ['monitoring', 'swarm']);
const base = { all: [mgr1, wk1, mon1], managers: [mgr1], swarm: [mgr1, wk1, mon1], monitoring: [mon1], managementCidrs: ['10.77.0.0/24'] };

test('one policy on input and on forward (original port of DNATed traffic), both ending in a counted drop', () => {
  const text = renderFirewall({ ...base, host: mgr1, extraRules: [{ port: '6000-6010', proto: 'udp', from: ['192.0.2.0/24'] }] });
  const input = [...text.matchAll(/^ {4}(tcp|udp) dport (\S+|\{ [^}]+ \})(.*) accept(.*)$/gm)].map((m) => `${m[1]} ${m[2]}${m[3]}${m[4]}`);
  const fwd = [...text.matchAll(/^ {4}meta l4proto (tcp|udp) ct original proto-dst (\S+|\{ [^}]+ \})(.*) accept(.*)$/gm)].map(
    (m) => `${m[1]} ${m[2]}${m[3]}${m[4]}`,
  );
  assert.ok(input.length >= 10, input.join('\n'));
  assert.deepEqual(fwd, input);
  assert.equal(
    input.length,
    firewallPolicy({ ...base, host: mgr1, extraRules: [{ port: '6000-6010', proto: 'udp', from: ['192.0.2.0/24'] }] }).length,
  );
  assert.ok(input.includes('tcp { 80, 443 } comment "web (edge)"'), 'web open to the world on an edge node');
  assert.ok(input.includes('tcp 8082 ip saddr @monitoring comment "traefik metrics"'));
  assert.ok(input.includes('tcp 2377 ip saddr @swarm comment "swarm control plane"'));
  assert.ok(input.includes('udp { 4789, 7946 } ip saddr @swarm comment "swarm gossip and VXLAN"'));
  assert.ok(input.includes('udp 6000-6010 ip saddr { 192.0.2.0/24 }'));
  assert.match(text, /type filter hook forward priority filter - 1; policy accept;/);
  assert.match(text, /ct state new ct status dnat counter name forward_published jump published/);
  assert.match(text, /counter name forward_dropped drop/);
  assert.match(text, /counter name input_dropped drop/);
  const worker = renderFirewall({ ...base, host: wk1 });
  assert.doesNotMatch(worker, /80, 443|8082|2377/, 'a worker is neither edge nor manager');
});

test('the renderer refuses what the schema refuses (nothing is opened by a typo)', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ port: 8080, from: ['10.0.0.0/33'] }, /firewall_extra_rules\[0\]\.from: '10\.0\.0\.0\/33' is not an IPv4/],
    [{ port: 8080, from: [] }, /from must list at least one CIDR/],
    [{ port: '80;drop' }, /firewall_extra_rules\[0\]\.port must be a port/],
    [{ port: 70000 }, /port must be a port/],
    [{ port: '9000-8000' }, /port must be a port/],
    [{ port: 80, proto: 'tcp accept;' }, /proto must be "tcp" or "udp"/],
  ];
  for (const [rule, re] of bad) {
    assert.throws(() => renderFirewall({ ...base, host: wk1, extraRules: [rule as never] }), re, JSON.stringify(rule));
  }
});

test('apt_proxy: a plain http(s) URL only', () => {
  for (const ok of ['http://10.0.0.5:3142', 'https://proxy.example.com/', 'http://[fd00::1]:3142/apt'])
    assert.equal(aptProxyProblem(ok), null, ok);
  for (const no of [
    '10.0.0.5:3142',
    'ftp://x',
    'http://x";\nAcquire::x "y',
    'http://x/?a=b',
    'http://x y',
    'file:///etc/passwd',
    'http://',
  ]) {
    assert.match(aptProxyProblem(no) ?? '', /must be a plain http/, no);
  }
});

function inventory(name: string, port: number, vars: string): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    [
      'settings:',
      `  known_hosts: ${path.join(dir, 'known_hosts')}`,
      'vars:',
      ...(vars.includes('management_cidrs') ? [] : ['  management_cidrs: [127.0.0.0/8]']),
      vars,
      'hosts:',
      `  h1: { address: 127.0.0.1, port: ${port}, user: root }`,
      '',
    ].join('\n'),
  );
  return file;
}

test('checkVars: every bad field at its file:line:col, at every level', () => {
  const file = inventory(
    'levels.yml',
    22,
    [
      '  firewall_extra_rules:',
      '    - { port: 8080, from: [10.0.0.0/33] }',
      '    - { port: 81, proto: sctp }',
      '  apt_proxy: "http://x\\";"',
    ].join('\n'),
  );
  const inv = loadInventory(file);
  assert.throws(
    () => checkVars(inv, common.vars!),
    (e: unknown) => {
      assert.ok(e instanceof InputErrors);
      const m = e.messages;
      assert.equal(m.length, 3, m.join('\n'));
      assert.match(m[0]!, /levels\.yml:6:28 vars\.firewall_extra_rules\[0\]\.from\[0\]: must be an IPv4 address or CIDR.*10\.0\.0\.0\/33/);
      assert.match(m[1]!, /levels\.yml:7:26 vars\.firewall_extra_rules\[1\]\.proto: must be "tcp" or "udp", got the string 'sctp'/);
      assert.match(m[2]!, /levels\.yml:8:14 vars\.apt_proxy: must be a plain http/);
      return true;
    },
  );
  // a good inventory passes
  checkVars(loadInventory(inventory('good.yml', 22, '  firewall_extra_rules: [{ port: 8080, from: [10.0.0.0/8] }]')), common.vars!);
});

/** run a playbook; resolves with the exit code and the output */
function runRole(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'playbooks/run-role.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

test('a run with invalid firewall input exits 4 naming file, line and field, before any connection', async () => {
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const cases: Array<[string, string, RegExp]> = [
      [
        'cidr.yml',
        '  firewall_extra_rules: [{ port: 8080, from: [10.0.0.0/33] }]',
        /cidr\.yml:5:47 vars\.firewall_extra_rules\[0\]\.from\[0\]: must be an IPv4/,
      ],
      ['port.yml', '  firewall_extra_rules: [{ port: "80;drop" }]', /port\.yml:5:34 vars\.firewall_extra_rules\[0\]\.port: must be a port/],
      [
        'proto.yml',
        '  firewall_extra_rules: [{ port: 80, proto: "tcp accept" }]',
        /proto\.yml:5:45 vars\.firewall_extra_rules\[0\]\.proto: must be "tcp" or "udp"/,
      ],
      ['proxy.yml', '  apt_proxy: "http://10.0.0.5:3142\\"; Acquire::x \\"y"', /proxy\.yml:5:14 vars\.apt_proxy: must be a plain http/],
      ['mgmt.yml', '  management_cidrs: [10.0.0.0/33]', /mgmt\.yml:4:22 vars\.management_cidrs\[0\]: must be an IPv4/],
    ];
    for (const [name, vars, re] of cases) {
      const file = inventory(name, port, vars);
      const r = await runRole(['common', '-i', file]);
      assert.equal(r.code, 4, `${name}: exit 4 (bad input)\n${r.out}`);
      assert.match(r.out, re, name);
    }
    assert.equal(connections, 0, 'no connection to the host was attempted');
  } finally {
    server.close();
  }
});
