// Plan, then apply exactly that plan (like Terraform's plan/apply).
//
// `--plan-out plan.json` runs in check mode and records, from the run's event stream, per role, host and step:
// the planned change (its change lines, masked) and the sha256 of the probe output it was planned from, plus a
// fingerprint (sha256) of the run's inputs: the inventory files, the roles/playbooks/templates/files of this
// checkout, role files loaded by path, and the site records (`sites/` beside the first inventory file).
//
// `--apply plan.json` refuses (exit 4) when the inputs changed; then, before each role changes anything, it runs
// the role in check mode again and compares every step with the plan: a probe result that differs (the host
// changed since the plan), a step or host more or less, a different change: refused (exit 4), naming host and
// step, nothing of that role done. Then the role runs for real, and each step's change must still be the planned
// one (else that step fails). A host already changed by an earlier role of this run is compared by its planned
// change lines instead of its probe (an earlier role's change may legitimately alter what a later probe reads).
//
// Imperative tasks have no probe: they are recorded as `imperative` ("runs again at apply", said in the plan's
// output) and are not verified. Secrets never enter the plan: change lines pass mask(), probe output only as a hash.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { InputError } from './errors.ts';
import type { EventOf, Listener } from './events.ts';
import { mask } from './secrets.ts';
import type { StepStatus } from './types.ts';

export const PLAN_FORMAT_VERSION = 1;

export interface PlanStep {
  /** position of the role in the run (a playbook may run a role twice) */
  roleIndex: number;
  role: string;
  host: string;
  step: string;
  /** the n-th step of this title on this host in this role (1-based) */
  occurrence: number;
  stepKind: string;
  /** a task: no probe, runs again at apply, not verified */
  imperative: boolean;
  status: StepStatus;
  changed: boolean;
  changes: string[];
  /** sha256 of the probe output the change was planned from (operations) */
  probeSha256?: string;
}

export interface PlanFile {
  formatVersion: number;
  kind: 'wpfarm-plan';
  createdAt: string;
  playbook: string;
  command: string;
  inputs: { sha256: string; files: Record<string, string> };
  roles: Array<{ roleIndex: number; role: string; hosts: string[] }>;
  steps: PlanStep[];
}

/** Collects PlanSteps from a run's event stream. */
export class PlanRecorder {
  readonly steps: PlanStep[] = [];
  readonly roles: PlanFile['roles'] = [];
  private roleIndex: number;
  private readonly seen = new Map<string, number>();
  private readonly current = new Map<string, { step: string; stepKind: string; occurrence: number }>();
  private readonly planned = new Map<string, EventOf<'step.plan'>>();

  /** `firstRole`: the index the next role.start gets (a check pass of one role of an applying run) */
  constructor(firstRole = 0) {
    this.roleIndex = firstRole - 1;
  }

  /** occurrence of the step now running on `host` */
  occurrence(host: string): number | undefined {
    return this.current.get(host)?.occurrence;
  }

  get currentRole(): number {
    return this.roleIndex;
  }

  readonly listener: Listener = (e) => {
    switch (e.kind) {
      case 'role.start':
        this.roleIndex++;
        this.seen.clear();
        this.roles.push({ roleIndex: this.roleIndex, role: e.role, hosts: e.hosts });
        break;
      case 'step.start': {
        const k = `${e.host}\u0000${e.step}`;
        const n = (this.seen.get(k) ?? 0) + 1;
        this.seen.set(k, n);
        this.current.set(e.host, { step: e.step, stepKind: e.stepKind, occurrence: n });
        this.planned.delete(e.host);
        break;
      }
      case 'step.plan':
        // the last attempt's plan wins (retries plan again)
        if (!e.nested) this.planned.set(e.host, e);
        break;
      case 'step.end': {
        const cur = this.current.get(e.host);
        if (!cur || cur.step !== e.result.step) {
          // connect / prepare failures: no step of the role's list
          this.steps.push({
            roleIndex: this.roleIndex,
            role: e.role,
            host: e.host,
            step: e.result.step,
            occurrence: 1,
            stepKind: e.result.kind,
            imperative: false,
            status: e.result.status,
            changed: false,
            changes: [],
          });
          break;
        }
        const p = this.planned.get(e.host);
        this.current.delete(e.host);
        this.planned.delete(e.host);
        this.steps.push({
          roleIndex: this.roleIndex,
          role: e.role,
          host: e.host,
          step: cur.step,
          occurrence: cur.occurrence,
          stepKind: cur.stepKind,
          imperative: cur.stepKind === 'task',
          status: e.result.status,
          changed: e.result.status === 'changed',
          changes: e.result.changes,
          probeSha256: p?.probeSha256,
        });
        break;
      }
      default:
        break;
    }
  };
}

const keyOf = (s: Pick<PlanStep, 'host' | 'step' | 'occurrence'>) => `${s.host}\u0000${s.step}\u0000${s.occurrence}`;

// ---------------------------------------------------------------------------------------------
// Inputs

const SKIP_DIRS = new Set(['node_modules', '.git', '.wpfarm']);

function walk(path: string, out: string[]): void {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  if (st.isDirectory()) {
    for (const n of readdirSync(path).sort()) if (!SKIP_DIRS.has(n) && !n.startsWith('.')) walk(join(path, n), out);
  } else if (st.isFile()) out.push(path);
}

/** The files a plan depends on, absolute: what `inputsOf` fingerprints. */
export function planInputFiles(o: { inventoryFiles: string[]; codeRoot: string; roleFiles?: string[] }): string[] {
  const files: string[] = [];
  for (const f of o.inventoryFiles) walk(resolve(f), files);
  const first = o.inventoryFiles[0];
  if (first) walk(join(dirname(resolve(first)), 'sites'), files);
  for (const d of ['roles', 'playbooks', 'templates', 'files']) walk(join(o.codeRoot, d), files);
  for (const f of o.roleFiles ?? []) walk(resolve(f), files);
  return [...new Set(files)];
}

/** sha256 per file (paths relative to cwd when inside it) and one sha256 over all of them. */
export function inputsOf(files: string[]): PlanFile['inputs'] {
  const out: Record<string, string> = {};
  for (const f of files) {
    const rel = relative(process.cwd(), f);
    out[rel.startsWith('..') ? f : rel] = createHash('sha256').update(readFileSync(f)).digest('hex');
  }
  const all = createHash('sha256');
  for (const [k, v] of Object.entries(out).sort(([a], [b]) => a.localeCompare(b))) all.update(`${k}\u0000${v}\n`);
  return { sha256: all.digest('hex'), files: out };
}

/** What changed between the plan's inputs and now: "changed x", "added y", "removed z". */
export function inputChanges(planned: PlanFile['inputs'], now: PlanFile['inputs']): string[] {
  if (planned.sha256 === now.sha256) return [];
  const out: string[] = [];
  for (const [f, h] of Object.entries(now.files)) {
    if (!(f in planned.files)) out.push(`added ${f}`);
    else if (planned.files[f] !== h) out.push(`changed ${f}`);
  }
  for (const f of Object.keys(planned.files)) if (!(f in now.files)) out.push(`removed ${f}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The plan file

export function buildPlan(o: { playbook: string; command: string; inputs: PlanFile['inputs']; recorder: PlanRecorder }): PlanFile {
  return {
    formatVersion: PLAN_FORMAT_VERSION,
    kind: 'wpfarm-plan',
    createdAt: new Date().toISOString(),
    playbook: o.playbook,
    command: mask(o.command),
    inputs: o.inputs,
    roles: o.recorder.roles,
    steps: o.recorder.steps.map((s) => ({ ...s, changes: s.changes.map(mask) })),
  };
}

/** Write the plan (0600, atomically); every string passes mask() once more. */
export function writePlan(file: string, plan: PlanFile): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${mask(JSON.stringify(plan, null, 2))}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Read and check a plan file; bad input names the file. */
export function readPlan(file: string): PlanFile {
  if (!existsSync(file)) throw new InputError(`--apply: no plan file ${file}`);
  let p: PlanFile;
  try {
    p = JSON.parse(readFileSync(file, 'utf8')) as PlanFile;
  } catch (e) {
    throw new InputError(`${file}: not a plan (${(e as Error).message})`);
  }
  if (p?.kind !== 'wpfarm-plan' || !Array.isArray(p.steps) || !p.inputs?.files) throw new InputError(`${file}: not a wpfarm plan`);
  if (p.formatVersion !== PLAN_FORMAT_VERSION) {
    throw new InputError(`${file}: plan format ${String(p.formatVersion)}, this wpfarm reads ${PLAN_FORMAT_VERSION}: plan again`);
  }
  return p;
}

/** The plan's summary for the console: changes per host, and the imperative steps that run again at apply. */
export function describePlan(plan: PlanFile, file: string): string {
  const changes = plan.steps.filter((s) => s.changed);
  const hosts = new Set(changes.map((s) => s.host));
  const lines = [`plan: ${changes.length} change(s) on ${hosts.size} host(s) written to ${file}`];
  for (const s of changes) lines.push(`  ~ ${s.host}  ${s.step}${s.changes.length ? `: ${s.changes.join('; ')}` : ''}`);
  const imperative = plan.steps.filter((s) => s.imperative && s.status !== 'skipped');
  if (imperative.length) {
    lines.push(`  ${imperative.length} imperative step(s) (tasks, no probe): they run again at apply and are not verified:`);
    for (const s of imperative) lines.push(`  ! ${s.host}  ${s.step}`);
  }
  lines.push(`apply exactly this plan: the same command with --apply ${file}`);
  return mask(lines.join('\n'));
}

/** Refusal when the run's inputs changed since the plan (exit 4). */
export function checkInputs(plan: PlanFile, now: PlanFile['inputs'], file: string): void {
  const diff = inputChanges(plan.inputs, now);
  if (diff.length) {
    const shown = diff.slice(0, 10).join(', ') + (diff.length > 10 ? `, and ${diff.length - 10} more` : '');
    throw new InputError(`${file}: the inventory, roles or site records changed since the plan (${shown}): plan again`);
  }
}

/**
 * Compare a check pass of one role (at apply) with the plan's steps for that role; a list of refusals, each
 * naming host and step. `changedHosts`: hosts an earlier role of this run changed (compared by change lines).
 */
export function compareRole(plan: PlanFile, roleIndex: number, role: string, now: PlanStep[], changedHosts: Set<string>): string[] {
  const planned = plan.steps.filter((s) => s.roleIndex === roleIndex);
  const pr = plan.roles.find((r) => r.roleIndex === roleIndex);
  if (!pr) return [`role ${role}: the plan has no role #${roleIndex + 1} (it planned ${plan.roles.map((r) => r.role).join(', ')})`];
  if (pr.role !== role) return [`role #${roleIndex + 1}: the plan has ${pr.role}, this run ${role}`];
  const out: string[] = [];
  const byKey = new Map(planned.map((s) => [keyOf(s), s]));
  const seen = new Set<string>();
  for (const s of now) {
    const k = keyOf(s);
    seen.add(k);
    const p = byKey.get(k);
    const where = `host ${s.host}, step '${s.step}'`;
    if (!p) {
      out.push(`${where}: not in the plan`);
      continue;
    }
    if (p.imperative || s.imperative) continue;
    if (
      p.status !== s.status &&
      (p.status === 'skipped' || s.status === 'skipped' || s.status === 'failed' || s.status === 'unreachable')
    ) {
      out.push(`${where}: planned ${p.status}, now ${s.status}`);
      continue;
    }
    if (p.probeSha256 && s.probeSha256 && p.probeSha256 !== s.probeSha256 && !changedHosts.has(s.host)) {
      out.push(`${where}: the host changed since the plan (its probe result differs)`);
      continue;
    }
    if (p.changed !== s.changed || p.changes.join('\n') !== s.changes.join('\n')) {
      const what = (x: PlanStep) => (x.changed ? x.changes.join('; ') || 'a change' : 'no change');
      out.push(`${where}: planned ${what(p)}, now ${what(s)}`);
    }
  }
  for (const p of planned) if (!seen.has(keyOf(p))) out.push(`host ${p.host}, step '${p.step}': in the plan, not in this run`);
  return out;
}

/**
 * At apply, during the real pass: a step may change only what the plan said changes, else it fails with this
 * message. (Change lines are not compared here: an operation describes a change it makes after an earlier step
 * really ran in other words than the check pass, which only assumed it, e.g. "with parents". The check pass
 * before the role compared them, probe by probe.)
 */
export function guardMessage(p: PlanStep | undefined, e: EventOf<'step.plan'>): string | undefined {
  const where = `host ${e.host}, step '${e.step}'`;
  if (!p) return `apply refused: ${where} is not in the plan`;
  if (p.imperative || !e.changed || p.changed) return undefined;
  return `apply refused: ${where}: the plan has no change here, now ${e.changes.join('; ') || 'a change'}`;
}

export function planStepFor(plan: PlanFile, roleIndex: number, host: string, step: string, occurrence: number): PlanStep | undefined {
  return plan.steps.find((s) => s.roleIndex === roleIndex && s.host === host && s.step === step && s.occurrence === occurrence);
}
