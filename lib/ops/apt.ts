// apt: Debian packages present / absent / latest.
//
// Probe (read-only): dpkg-query for the named packages, `apt-cache policy` for 'latest' (candidate vs
// installed), and the age of the package lists when update_cache is a number of seconds.
// Apply: ONE script: optional policy-rc.d (daemons must not autostart), optional `apt-get update`,
// then `apt-get install --no-install-recommends` (or remove / purge).
//
// update_cache semantics (so that a second run changes nothing):
//   true    — refresh the lists before installing, only when something is to be installed;
//   N (s)   — additionally refresh (a change of its own) when the lists are older than N seconds.
import type { Operation, Plan, StepOptions } from '../types.ts';
import { argSpec, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { memo, sh } from '../shell.ts';
import { parseDpkgQuery, isInstalled, type PackageInfo } from '../facts.ts';
import { keyValues, parts } from './sys-util.ts';

export interface AptArgs {
  packages: string[];
  state?: 'present' | 'absent' | 'latest';
  /** true: `apt-get update` before installing; a number: also when the lists are older than that (seconds) */
  update_cache?: boolean | number;
  /** false: daemons installed by this step are not started (policy-rc.d answers 101) */
  autostart?: boolean;
  /** with state absent: purge configuration files too (config-files leftovers then count as present) */
  purge?: boolean;
  installRecommends?: boolean;
}

const PKG = /^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$/;
const APT = ['apt-get', '-o', 'DPkg::Lock::Timeout=600', '-o', 'Acquire::http::Timeout=30', '-o', 'Acquire::Retries=3', '-y', '-q'];
const CONF = ['-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold'];

/** The op's `apt-get update` command line (without its lock-wait loop). */
export function aptGetUpdate(): string {
  return sh`${APT} update`;
}

/** The op's install command line: the same flags wherever packages are installed (the op, a golden image's build). */
export function aptGetInstall(packages: string[], installRecommends = false): string {
  return sh`${APT} ${CONF} install ${installRecommends ? [] : ['--no-install-recommends']} -- ${packages}`;
}

/** Touched after each successful `apt-get update` (the file Ansible's apt module and Ubuntu's apt hooks read too). */
export const UPDATE_STAMP = '/var/lib/apt/periodic/update-success-stamp';

export const DPKG_FORMAT = '${Package} ${Status} ${Version}\n';

/**
 * The package lists' age: the same answer for every apt step of a probe batch, so asked once there (memo: the other
 * steps read it back, one `cat` instead of six processes each).
 */
const CACHE_AGE =
  "echo now=$(date +%s); echo lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -printf '%T@\\n' | sort -n | tail -1 | cut -d. -f1)" +
  `; echo stamp=$(stat -c %Y ${UPDATE_STAMP})`;

/** Parse `apt-cache policy pkg...`: package → { installed, candidate } ('' for "(none)"). */
export function parseAptPolicy(out: string): Record<string, { installed: string; candidate: string }> {
  const res: Record<string, { installed: string; candidate: string }> = {};
  let cur = '';
  for (const line of out.split('\n')) {
    const head = /^(\S+):$/.exec(line);
    if (head) {
      cur = head[1]!;
      res[cur] = { installed: '', candidate: '' };
      continue;
    }
    const m = /^\s+(Installed|Candidate):\s+(\S+)/.exec(line);
    if (m && cur && res[cur]) {
      const v = m[2] === '(none)' ? '' : m[2]!;
      if (m[1] === 'Installed') res[cur].installed = v;
      else res[cur].candidate = v;
    }
  }
  return res;
}

export const APT_ARGS = argSpec<AptArgs>()('apt', {
  packages: z.array(z.string().regex(PKG, { error: (iss) => `invalid Debian package name ${JSON.stringify(iss.input)}` })).min(1),
  state: z.enum(['present', 'absent', 'latest']).default('present'),
  update_cache: z.union([z.boolean(), z.int().min(0)]).optional(),
  autostart: z.boolean().optional(),
  purge: z.boolean().optional(),
  installRecommends: z.boolean().optional(),
});

export function apt(input: AptArgs, options: StepOptions = {}): Operation {
  return APT_ARGS.build(input, (a) => aptOp(a, options));
}

function aptOp(a: z.output<typeof APT_ARGS.schema>, options: StepOptions): Operation {
  const state = a.state ?? 'present';
  const maxAge = typeof a.update_cache === 'number' ? a.update_cache : undefined;
  const pkgs = [...new Set(a.packages)];

  return defineOp({
    kind: 'apt',
    title: `apt ${state} ${pkgs.join(' ')}`,
    options,
    probe: () => {
      const s = [sh`echo %%dpkg; dpkg-query -W -f=${DPKG_FORMAT} -- ${pkgs}`];
      if (state === 'latest') s.push(sh`echo %%policy; LC_ALL=C apt-cache policy -- ${pkgs}`);
      if (maxAge !== undefined) s.push(`echo %%cache; ${memo(CACHE_AGE)}`);
      return { script: `(\n${s.join('\n')}\n) 2>/dev/null`, become: options.become };
    },
    plan: (_ctx, out): Plan => {
      const p = parts(out);
      const dpkg: Record<string, PackageInfo> = parseDpkgQuery(p.get('dpkg') ?? '');
      const changes: string[] = [];
      let update = false;
      let staleBy = '';
      if (maxAge !== undefined) {
        const c = keyValues(p.get('cache') ?? '');
        const now = parseInt(c.now ?? '', 10);
        const lists = parseInt(c.lists ?? '', 10);
        // apt-get update rewrites no list that did not change on the mirror: the stamp it leaves on success says
        // when the lists were last known current (without it, every run after an hour refreshed them again)
        const stamp = parseInt(c.stamp ?? '', 10);
        const fresh = Number.isFinite(stamp) ? Math.max(lists, stamp) : lists;
        // Stale lists are refreshed before an install, and for `latest` (the candidates depend on them).
        // With everything present they are left alone, like Ansible's cache_valid_time: a rerun the next day
        // must report no change on a converged host.
        const matters = (why: string) => {
          update = true;
          changes.push(`apt-get update (${why})`);
        };
        if (!Number.isFinite(lists)) matters('no package lists');
        else if (Number.isFinite(now) && now - fresh > maxAge) staleBy = `lists ${now - fresh} s old > ${maxAge} s`;
        if (staleBy && state === 'latest') matters(staleBy);
      }
      let install: string[] = [];
      let remove: string[] = [];
      if (state === 'present') {
        install = pkgs.filter((n) => !isInstalled(dpkg[n]));
        for (const n of install)
          changes.push(`install ${n}${dpkg[n] && dpkg[n].status.split(' ')[2] !== 'not-installed' ? ` (now: ${dpkg[n].status})` : ''}`);
      } else if (state === 'latest') {
        const pol = parseAptPolicy(p.get('policy') ?? '');
        for (const n of pkgs) {
          const cand = pol[n]?.candidate ?? '';
          const inst = isInstalled(dpkg[n]) ? dpkg[n]!.version : '';
          if (!inst) {
            install.push(n);
            changes.push(`install ${n}${cand ? ` ${cand}` : ''}`);
          } else if (cand && cand !== inst) {
            install.push(n);
            changes.push(`upgrade ${n} ${inst} -> ${cand}`);
          }
        }
      } else {
        // absent: installed (or half-installed) packages; with purge also config-files leftovers
        remove = pkgs.filter((n) => {
          const st = dpkg[n]?.status.split(' ')[2];
          if (!st || st === 'not-installed') return false;
          return st !== 'config-files' || !!a.purge;
        });
        for (const n of remove) changes.push(`${a.purge ? 'purge' : 'remove'} ${n} ${dpkg[n]!.version}`.trim());
      }
      if (staleBy && !update && install.length) {
        update = true;
        changes.unshift(`apt-get update (${staleBy})`);
      }
      if (!update && install.length === 0 && remove.length === 0) {
        const reason = {
          absent: 'packages already absent',
          latest: 'packages already at the latest version',
          present: 'packages already installed',
        }[state];
        return { changed: false, changes: [], result: { installed: [], removed: [] }, reason };
      }
      if (install.length && a.update_cache === true) update = true; // a number: only when stale (above)

      const lines: string[] = ['set -e', 'export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l'];
      if (install.length && a.autostart === false) {
        // policy-rc.d answers 101 ("action forbidden") to invoke-rc.d/deb-systemd-invoke: units are
        // installed (and enabled) but not started. An existing policy-rc.d is kept aside and restored.
        lines.push(
          'prc=/usr/sbin/policy-rc.d; saved=""',
          'if [ -e "$prc" ]; then saved="$prc.wpfarm-saved.$$"; mv -f "$prc" "$saved"; fi',
          `trap 'rm -f "$prc"; if [ -n "$saved" ]; then mv -f "$saved" "$prc"; fi' EXIT`,
          'printf \'#!/bin/sh\\nexit 101\\n\' > "$prc"; chmod 0755 "$prc"',
        );
      }
      // `apt-get update` takes /var/lib/apt/lists/lock without waiting (DPkg::Lock::Timeout covers the dpkg
      // lock only): while another apt (unattended-upgrades, apt-daily) holds it, wait and retry, for up to
      // 10 minutes like the dpkg lock. Any other failure is not retried.
      if (update) {
        lines.push(
          'ok=""; for i in $(seq 120); do',
          `  if out=$(${aptGetUpdate()} 2>&1); then ok=1; mkdir -p /var/lib/apt/periodic; touch ${UPDATE_STAMP}; break; fi`,
          `  case "$out" in *'Could not get lock'*) sleep 5;; *) break;; esac`,
          `done; if [ -z "$ok" ]; then printf '%s\\n' "$out" >&2; exit 100; fi`,
        );
      }
      // A conffile already changed on the host (a role may write its config before installing the package)
      // keeps the host's version instead of stopping on dpkg's interactive prompt.
      if (install.length) lines.push(aptGetInstall(install, a.installRecommends));
      if (remove.length) lines.push(sh`${APT} ${a.purge ? 'purge' : 'remove'} -- ${remove}`);
      return {
        changed: true,
        changes,
        apply: { script: lines.join('\n'), become: options.become },
        invalidates: ['packages', 'services'],
        result: { installed: install, removed: remove },
      };
    },
  });
}
