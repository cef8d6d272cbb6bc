// The image pipeline (.github/workflows/images.yml, issue 18 item 5) checked by a real GitHub Actions workflow
// validator: @action-validator/cli (mpalmer/action-validator compiled to WebAssembly: SchemaStore's workflow
// schema plus its own checks, e.g. `needs` naming jobs that exist). The validator accepts the workflow, and each
// broken edit of it is refused. Then what the workflow must do, read from the parsed file: build with the same
// `make images` as a workstation and the lab, scan with Trivy before any push, push to staging, deploy the staging
// site and promote with wpfarm's update playbook, secrets never interpolated into a script.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { repoRoot } from '../../roles/traefik/schema-check.ts';

const WORKFLOW = path.join(repoRoot, '.github/workflows/images.yml');
const text = readFileSync(WORKFLOW, 'utf8');

/** The validator's CLI from node_modules (a devDependency: @action-validator/cli 0.6.0 with @action-validator/core). */
function validatorCli(): string {
  try {
    return createRequire(import.meta.url).resolve('@action-validator/cli/cli.mjs');
  } catch {
    throw new Error('@action-validator/cli is not installed: it is a devDependency of wpfarm (npm ci installs it)');
  }
}

function validate(content: string): { code: number; out: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-workflow-'));
  try {
    // the file name decides workflow vs action: keep a workflow name
    const file = path.join(dir, 'images.yml');
    writeFileSync(file, content);
    const r = spawnSync(process.execPath, [validatorCli(), file], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
    return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the workflow passes the GitHub Actions validator', () => {
  const r = validate(text);
  assert.equal(r.code, 0, r.out);
});

test('a broken edit of the workflow fails the validator, with the place named', () => {
  const edits: Array<[string, string, RegExp]> = [
    [
      '    runs-on: ubuntu-24.04\n    timeout-minutes: 60\n    outputs:',
      '    runs_on: ubuntu-24.04\n    timeout-minutes: 60\n    outputs:',
      /\/jobs\/build/,
    ],
    ['timeout-minutes: 360', 'timeout-minutes: six hours', /\/jobs\/promote/],
    ['  workflow_dispatch:', '  workflow_dispatchh:', /\/on/],
    ['      - uses: actions/checkout@v4', '      - uses: actions/checkout@v4\n        run: echo both', /\/jobs\/build/],
    ['    needs: push-staging', '    needs: no-such-job', /unresolved job no-such-job/],
    ['permissions:\n  contents: read', 'permissions:\n  contents: readd', /\/permissions/],
    ['    environment: production', '    environment: [production]', /\/jobs\/promote/],
  ];
  for (const [from, to, where] of edits) {
    assert.ok(text.includes(from), `the workflow no longer contains ${JSON.stringify(from)}: update this test`);
    const r = validate(text.replace(from, to));
    assert.equal(r.code, 1, `accepted: ${JSON.stringify(to)}\n${r.out}`);
    assert.match(r.out, where, to);
  }
});

type Step = { name?: string; uses?: string; run?: string; env?: Record<string, string>; with?: Record<string, unknown>; if?: string };
type Job = { needs?: string | string[]; if?: string; environment?: string; steps: Step[] };
const wf = YAML.parse(text) as { on: Record<string, unknown>; permissions: Record<string, string>; jobs: Record<string, Job> };
const runs = (job: string): string => wf.jobs[job]!.steps.map((s) => s.run ?? '').join('\n');
const needs = (job: string): string[] => [wf.jobs[job]!.needs ?? []].flat();

test('build with `make images` (the lab and a workstation run the same target), Trivy before any push', () => {
  const build = wf.jobs.build!.steps;
  const make = build.findIndex((s) => /make -s images IMAGES_BASE=/.test(s.run ?? ''));
  const scan = build.findIndex((s) => /trivy image --exit-code 1 --severity HIGH,CRITICAL/.test(s.run ?? ''));
  assert.ok(make >= 0, 'the build job runs make images');
  assert.ok(scan > make, 'Trivy scans what was built');
  assert.ok(build.some((s) => s.uses?.startsWith('aquasecurity/setup-trivy@')));
  assert.doesNotMatch(runs('build'), /docker push/, 'nothing is pushed before the scan passed (push-staging needs build)');
  // the Makefile target runs the images CLI, the function the wp-site role builds with
  const r = spawnSync('make', ['-n', '-s', 'images', 'IMAGES_BASE=debian@sha256:0', 'IMAGES_REGISTRY=r.example:5000'], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /roles\/wp-site\/images\.ts --base debian@sha256:0 --registry r\.example:5000 --json/);
  const cli = readFileSync(path.join(repoRoot, 'roles/wp-site/images.ts'), 'utf8');
  const reconcile = readFileSync(path.join(repoRoot, 'roles/wp-site/reconcile.ts'), 'utf8');
  assert.match(cli, /await ensureSiteImages\(base/);
  assert.match(reconcile, /await ensureSiteImages\(/, 'the wp-site role builds through the same function');
});

test('staging, then production through the update playbook: canary, waves, an approval gate', () => {
  assert.deepEqual(needs('push-staging'), ['build']);
  assert.equal(wf.jobs['push-staging']!.if, "github.event_name != 'pull_request'", 'pull requests build and scan only');
  assert.match(runs('push-staging'), /docker push "\$REGISTRY\/\$ref"/);
  assert.deepEqual(needs('deploy-staging'), ['push-staging']);
  assert.match(runs('deploy-staging'), /npx tsx playbooks\/update\.ts --inventory "\$INVENTORY" --only "\$SITE"/);
  assert.match(runs('deploy-staging'), /curl -fsS/);
  assert.deepEqual(needs('promote').sort(), ['build', 'deploy-staging']);
  assert.equal(wf.jobs.promote!.environment, 'production');
  const promote = runs('promote');
  assert.match(promote, /npx tsx playbooks\/update\.ts --inventory "\$INVENTORY"\s+--canary 1 --wave-size 25% --max-failures 2/);
  assert.ok(promote.indexOf('docker push "$TO/$ref"') < promote.indexOf('playbooks/update.ts'), 'images copied before the update');
  assert.deepEqual(wf.permissions, { contents: 'read' });
});

test('secrets: never interpolated into a script, credential files private and removed', () => {
  for (const [name, job] of Object.entries(wf.jobs)) {
    for (const s of job.steps) {
      assert.doesNotMatch(s.run ?? '', /\$\{\{\s*(secrets|vars)\./, `${name}: ${s.name ?? s.run}: pass it through env:`);
    }
    const r = runs(name);
    if (r.includes('id_ed25519')) {
      assert.match(r, /umask 077/, `${name}: credential files 0600`);
      assert.ok(
        job.steps.some((s) => s.if === 'always()' && /rm -f \.env ~\/\.ssh\/id_ed25519/.test(s.run ?? '')),
        `${name}: removed`,
      );
    }
  }
});
