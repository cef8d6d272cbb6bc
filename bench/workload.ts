// The bench's 23-task workload as a wpfarm role (bench/ansible/playbook.yml is the same in Ansible):
// directories, file contents, a template, lineinfile and blockinfile edits, mode changes, a command with
// creates, a stat-conditioned step, one handler, a replace, a symlink and a copy that never overwrites (force: false).
import { blockinfile } from '../lib/ops/blockinfile.ts';
import { command } from '../lib/ops/command.ts';
import { directory, file } from '../lib/ops/files.ts';
import { lineinfile } from '../lib/ops/lineinfile.ts';
import { replace } from '../lib/ops/replace.ts';
import { stat } from '../lib/ops/stat.ts';
import { template } from '../lib/ops/template.ts';
import type { Role } from '../lib/types.ts';
import type { StatResult } from '../lib/ops/stat.ts';

const B = '/srv/bench';

const role: Role = {
  name: 'bench-workload',
  hosts: 'all',
  handlers: {
    'reload app': () => [command({ cmd: ['sh', '-c', `date >> ${B}/handler.log`] })],
  },
  steps: (ctx) => [
    directory({ path: B, mode: '0755' }), // 1
    directory({ path: `${B}/conf`, mode: '0755' }), // 2
    directory({ path: `${B}/data`, mode: '0750' }), // 3
    directory({ path: `${B}/logs`, mode: '0755' }), // 4
    file({ path: `${B}/conf/a.conf`, content: 'alpha=1\nbeta=2\n', mode: '0644' }), // 5
    file({ path: `${B}/conf/b.conf`, content: 'gamma=3\n', mode: '0644' }), // 6
    file({ path: `${B}/conf/c.conf`, content: 'delta=4\n', mode: '0600' }), // 7
    file({ path: `${B}/conf/d.conf`, content: 'epsilon=5\n' }), // 8 (mode left to step 15)
    template(
      {
        path: `${B}/conf/app.conf`,
        src: 'bench/templates/app.conf.ejs',
        mode: '0644',
        vars: { host: ctx.host.name, port: 8080, workers: 4, upstreams: ['10.0.0.1', '10.0.0.2'] },
      },
      { notify: 'reload app' },
    ), // 9
    lineinfile({ path: `${B}/conf/lines.conf`, regexp: '^max=', line: 'max=10', create: true }), // 10
    lineinfile({ path: `${B}/conf/lines.conf`, regexp: '^beta=', line: 'beta=20', create: true }), // 11
    lineinfile({ path: `${B}/conf/lines.conf`, line: 'zeta=6', insertBefore: 'BOF', create: true }), // 12
    blockinfile({ path: `${B}/conf/block.conf`, block: 'server one\nserver two', create: true }), // 13
    file({ path: `${B}/data/state.db`, content: 'state\n', mode: '0640' }), // 14
    file({ path: `${B}/conf/d.conf`, mode: '0640' }), // 15: mode change only
    file({ path: `${B}/logs/app.log`, state: 'touch', mode: '0640', modificationTime: 'preserve', accessTime: 'preserve' }), // 16
    command({ cmd: ['sh', '-c', `date > ${B}/initialized`], creates: `${B}/initialized` }), // 17
    stat(`${B}/initialized`, { register: 'init' }), // 18
    file(
      { path: `${B}/data/ready`, content: 'ready\n', mode: '0644' },
      { when: (c) => (c.registered.init?.result as StatResult | undefined)?.exists ?? false },
    ), // 19
    file({ path: `${B}/conf/e.conf`, content: 'eta=7\n', mode: '0644' }, { notify: 'reload app' }), // 20
    file({ path: `${B}/conf/local.conf`, content: 'local=1\n', mode: '0644', force: false }), // 21: seeded once, never overwritten
    file({ path: `${B}/current`, src: `${B}/conf`, state: 'link' }), // 22
    replace({ path: `${B}/conf/local.conf`, regexp: '^local=(\\d)$', replace: 'local=\\g<1>0' }), // 23: edits the seeded copy once
  ],
};
export default role;
