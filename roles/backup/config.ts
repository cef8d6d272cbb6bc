// The farm's configuration (inventory, site records, rendered stacks: everything committed in the wpfarm
// repository) as an encrypted git bundle in the bucket: config/<stamp>.bundle.age (+ manifest).
// Only committed history is in a bundle: the roles commit what they render before a backup counts on it.
import { createReadStream } from 'node:fs';
import { sh } from '../../lib/shell.ts';
import { formatStamp, listBackups, readManifest, writeManifest, pickAtOrBefore, type Manifest } from './catalog.ts';
import { encryptPipe, decryptPipe, AGE_IDENTITY_ENV, type HostCommand } from './commands.ts';
import { downloadVerified, pruneSiteDbLike, type PruneReport } from './db.ts';
import { BackupError, NoBackupError } from './errors.ts';
import { DB_POLICY } from './retention.ts';
import { startHostCommand, stderrTail, uploadHostOutput, type Shell } from './runner.ts';
import type { ObjectStore } from './s3.ts';

export const CONFIG_EXT = '.bundle.age';

export function configBundleCommand(repoDir: string, recipient: string): HostCommand {
  return {
    script: ['set -euo pipefail', `${sh`git -C ${repoDir} bundle create - --all`} | ${encryptPipe(recipient)}`].join('\n'),
    secrets: [],
  };
}

/** Clone a bundle from stdin (encrypted) into `dir` (must not exist). */
export function configRestoreCommand(dir: string): HostCommand {
  return {
    script: [
      'set -euo pipefail',
      `IFS= read -r ${AGE_IDENTITY_ENV} || exit 97`,
      `export ${AGE_IDENTITY_ENV}`,
      'tmp=$(mktemp)',
      `trap 'rm -f "$tmp"' EXIT`,
      `${decryptPipe()} > "$tmp"`,
      sh`git clone -q "$tmp" ${dir}`,
    ].join('\n'),
    secrets: [AGE_IDENTITY_ENV],
  };
}

export async function backupConfig(o: {
  shell: Shell;
  store: ObjectStore;
  repoDir: string;
  recipient: string;
  at?: Date;
}): Promise<Manifest> {
  const at = o.at ?? new Date();
  const key = `config/${formatStamp(at)}${CONFIG_EXT}`;
  const up = await uploadHostOutput({
    shell: o.shell,
    store: o.store,
    key,
    cmd: configBundleCommand(o.repoDir, o.recipient),
    upload: 'configuration bundle',
    exit: { stage: 'config', what: `git bundle of ${o.repoDir}` },
  });
  return writeManifest(o.store, up, { kind: 'config', site: 'config', at, recipient: o.recipient, host: o.shell.name });
}

export async function restoreConfig(o: { shell: Shell; store: ObjectStore; at: Date; dir: string; ageIdentity: string }): Promise<string> {
  const e = pickAtOrBefore(await listBackups(o.store, 'config/', CONFIG_EXT), o.at);
  if (!e) throw new NoBackupError(`no configuration bundle at or before ${o.at.toISOString()}`);
  const dl = await downloadVerified(o.store, await readManifest(o.store, e.key));
  try {
    const run = startHostCommand(o.shell, configRestoreCommand(o.dir), { [AGE_IDENTITY_ENV]: o.ageIdentity }, createReadStream(dl.path));
    run.stdout.resume();
    const fin = await run.done;
    if (fin.code !== 0) throw new BackupError('restore', `restoring ${e.key} exited ${fin.code}: ${stderrTail(fin.stderr)}`);
    return e.key;
  } finally {
    await dl.cleanup();
  }
}

export async function pruneConfig(o: { store: ObjectStore; now: Date; dryRun?: boolean }): Promise<PruneReport> {
  return pruneSiteDbLike(o.store, await listBackups(o.store, 'config/', CONFIG_EXT), DB_POLICY, o.now, 'config/', o.dryRun);
}
