// The lab's backups: its S3 store answering with the lab's keys (the bucket made), and the backup schedule on
// its controller as real systemd timers (`backup.ts --install-timers`, run there as an operator does on theirs).
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { readEnvFile, lookupEnv } from '../../lib/env.ts';
import { ObjectStore } from '../../roles/backup/s3.ts';
import { CTL, INVENTORY_FILE, PATHS, ROOT, S3, containerName } from './config.ts';
import { waitFor } from './util.ts';

/** The store answers signed requests with the lab's keys (its service made the user) and the bucket exists. */
export async function waitS3(timeoutMs = 180_000): Promise<void> {
  const env = readEnvFile(PATHS.envFile);
  const need = (n: string): string => {
    const v = lookupEnv(n, env);
    if (!v) throw new Error(`${path.relative(ROOT, PATHS.envFile)}: ${n} is not set`);
    return v;
  };
  const store = new ObjectStore({
    endpoint: S3.endpoint,
    region: S3.region,
    bucket: need('WPFARM_S3_BUCKET'),
    accessKeyId: need('WPFARM_S3_ACCESS_KEY'),
    secretAccessKey: need('WPFARM_S3_SECRET_KEY'),
    maxAttempts: 1,
  });
  try {
    await waitFor(
      `the lab's S3 store (${S3.endpoint}) and its bucket`,
      async () => {
        await store.ensureBucket();
        return true;
      },
      timeoutMs,
      1000,
    );
  } finally {
    store.destroy();
  }
}

export interface ScheduleReport {
  changed: boolean;
  systemd: boolean;
  timers: string[];
}

/**
 * The backup schedule on the lab's controller: `playbooks/backup.ts --install-timers` run there (this checkout,
 * mounted at the same path) for the lab's inventory. Idempotent: a rerun changes nothing.
 */
export async function installBackupSchedule(): Promise<ScheduleReport> {
  if (!fs.existsSync(INVENTORY_FILE)) throw new Error(`${INVENTORY_FILE} is missing: write the inventory first`);
  const cmd = [
    '/usr/bin/node',
    '--no-warnings',
    '--import',
    'tsx',
    'playbooks/backup.ts',
    '--install-timers',
    '--inventory',
    INVENTORY_FILE,
  ];
  const r = await $`docker exec -w ${ROOT} ${containerName(CTL.name)} ${cmd}`.nothrow().quiet();
  if (r.exitCode !== 0) throw new Error(`backup.ts --install-timers on ${CTL.name} exited ${r.exitCode}: ${r.stderr.trim().slice(-2000)}`);
  const rep = JSON.parse(r.stdout) as ScheduleReport;
  if (!rep.systemd) throw new Error(`${CTL.name}: systemd is not running there: the backup timers were written but not enabled`);
  return rep;
}
