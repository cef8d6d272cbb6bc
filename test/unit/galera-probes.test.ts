// The galera role's no-change answers from its probes (roles/galera/role.ts; issue 17): a node's state script and
// its parser, MariaDB's PASSWORD() on the controller, the users step's probe (built as a string) and its reading.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import type { HostSpec } from '../../lib/types.ts';
import {
  NODE_SCRIPT,
  nativePasswordHash,
  parseNode,
  settings,
  userSpecs,
  usersInPlace,
  usersProbeScript,
} from '../../roles/galera/role.ts';

const H: HostSpec = { name: 'db1', address: '10.0.0.31', port: 22, user: 'root', groups: ['db'], vars: {} };

test("nativePasswordHash is MariaDB's PASSWORD() for mysql_native_password", () => {
  // SELECT PASSWORD('password') on MariaDB 10.11
  assert.equal(nativePasswordHash('password'), '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19');
});

test('NODE_SCRIPT and parseNode: a synced primary node, a stopped one', () => {
  assert.match(NODE_SCRIPT, /^echo @@installed; command -v mariadbd \|\| true\necho @@active; systemctl is-active mariadb/);
  assert.match(NODE_SCRIPT, /SHOW GLOBAL STATUS WHERE Variable_name IN \('wsrep_cluster_status','wsrep_cluster_size'/);
  const up = parseNode(
    [
      '@@installed',
      '/usr/sbin/mariadbd',
      '@@active',
      'active',
      '@@grastate',
      '# GALERA saved state',
      '@@gvw',
      '@@wsrep',
      'wsrep_cluster_size\t3',
      'wsrep_cluster_status\tPrimary',
      'wsrep_local_state\t4',
      'wsrep_ready\tON',
    ].join('\n'),
    H,
  );
  assert.equal(up.installed, true);
  assert.equal(up.running, true);
  assert.equal(up.primary, true);
  assert.equal(up.wsrep.wsrep_cluster_size, '3');
  const down = parseNode('@@installed\n/usr/sbin/mariadbd\n@@active\ninactive\n@@grastate\n@@gvw\nempty\n@@wsrep\n', H);
  assert.equal(down.running, false);
  assert.equal(down.primary, false);
  assert.equal(down.gvwEmpty, true);
});

const SECRETS = { sst_password: 'sst-pw-1', admin_password: 'adm-pw-1', exporter_password: "exp'pw" };
const specs = userSpecs(settings({ private_cidr: '10.0.0.0/24' }), SECRETS, ['10.0.0.31']);

test('usersProbeScript: status, then users and each grant, names quoted for SQL and the shell (no password in it)', () => {
  const script = usersProbeScript([...specs, { user: "o'brien", host: 'localhost' }]);
  assert.match(
    script,
    /^echo @@status\ntimeout 10 mariadb --connect-timeout=5 \$'--init-command=SET SESSION lock_wait_timeout=5' -NB -e \$?'SHOW GLOBAL STATUS LIKE/,
  );
  assert.match(script, /echo @@users\n.*SELECT User, Host, SHA2\(authentication_string, 256\) FROM mysql\.user/);
  assert.match(script, /echo @@g0\n.*SHOW GRANTS FOR .*sst.*@.*localhost/);
  // SQL's 'o\'brien' inside the shell's $'...'
  assert.ok(script.includes(String.raw`-e $'SHOW GRANTS FOR \'o\\\'brien\'@\'localhost\''`), script);
  for (const pw of Object.values(SECRETS)) assert.ok(!script.includes(pw), 'no password in the probe');
});

/** the probe's output for users as stored, with `tweak` applied */
function output(tweak: { user?: string; password?: string; drop?: string } = {}): string {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const lines = ['@@status', 'Primary', '@@users'];
  for (const u of specs) {
    if (u.user === tweak.drop) continue;
    const pw = u.user === tweak.user && tweak.password !== undefined ? tweak.password : u.password;
    lines.push(`${u.user}\t${u.host}\t${sha(pw === undefined ? '' : nativePasswordHash(pw))}`);
  }
  specs.forEach((u, i) => {
    const privs = u.privileges.filter((p) => p !== 'USAGE');
    const grant = `GRANT ${privs.length ? privs.join(', ') : 'USAGE'} ON *.* TO \`${u.user}\`@\`${u.host}\``;
    lines.push(`@@g${i}`, `${grant}${u.grantOption ? ' WITH GRANT OPTION' : ''}`);
  });
  return lines.join('\n');
}

test('usersInPlace: every user with its password and privileges; any difference is not in place', () => {
  assert.equal(usersInPlace(output(), specs), true);
  assert.equal(usersInPlace(output({ user: 'wpfarm_admin', password: 'other' }), specs), false, 'a changed password');
  assert.equal(usersInPlace(output({ drop: 'exporter' }), specs), false, 'a missing user');
  assert.equal(usersInPlace(output().replace(' WITH GRANT OPTION', ''), specs), false, 'the admin without GRANT OPTION');
  assert.equal(usersInPlace(output().replace('GRANT PROCESS, REPLICATION CLIENT, SELECT', 'GRANT PROCESS'), specs), false);
  assert.equal(usersInPlace(output().replace('Primary', 'non-Primary'), specs), false, 'not a primary node');
  assert.equal(usersInPlace('', specs), false);
});
