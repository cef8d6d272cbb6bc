// The HTML timeline of a run: one static file (inline CSS and SVG, no script, no network fetch), rendered
// purely from the run's JSON report. One lane per host, one bar per step coloured by outcome, a tick per
// round trip (remote command) under the bars, hatched parts for waiting (a run-once step another host ran,
// a host done early waiting for the slowest host of its role), and the slowest path outlined: per role, the
// host that finished last, i.e. the steps that set the run's wall time. Hover a bar: step, host, role,
// outcome, duration, reason or error (an SVG <title>).
//
// The report's times come from the run's event stream (lib/events.ts RunRecord): start/end of every step relative
// to the run's start, the role it belongs to, the time of each round trip per host.
import type { RoleTiming } from './events.ts';
import type { StepStatus } from './types.ts';

export type { RoleTiming };

export interface StepTiming {
  role: string;
  /** ms from the start of the run */
  startMs: number;
  endMs: number;
}

/** `run.json` → `run.html` (the timeline beside the JSON report). */
export function timelinePathFor(jsonFile: string): string {
  return jsonFile.replace(/\.json$/i, '') + '.html';
}

/** What the renderer reads from the JSON report (lib/play.ts writes it). */
export interface TimelineReport {
  name?: string;
  check?: boolean;
  exitCode?: number;
  wallMs?: number;
  startedAt?: string;
  roundTrips?: number;
  results: Array<
    Partial<StepTiming> & {
      host: string;
      step: string;
      kind?: string;
      status: StepStatus;
      ms: number;
      reason?: string;
      error?: string;
      changes?: string[];
    }
  >;
  roleTimes?: RoleTiming[];
  roundTripsAt?: Record<string, number[]>;
}

const COLORS: Record<StepStatus, string> = {
  ok: '#3fa34d',
  changed: '#e0a100',
  failed: '#d62828',
  skipped: '#6c9bd2',
  unreachable: '#7b2cbf',
};

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function dur(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

/** The slowest path: per role, the host whose last step ended last. Returns "role\0host" keys. */
export function slowestPath(report: TimelineReport): Set<string> {
  const lastEnd = new Map<string, { host: string; end: number }>();
  for (const r of report.results) {
    if (r.endMs === undefined || r.role === undefined) continue;
    const cur = lastEnd.get(r.role);
    if (!cur || r.endMs > cur.end) lastEnd.set(r.role, { host: r.host, end: r.endMs });
  }
  return new Set([...lastEnd.entries()].map(([role, v]) => `${role}\u0000${v.host}`));
}

/** Render the report as one self-contained HTML page. Pure. */
export function renderTimeline(report: TimelineReport): string {
  return [...renderTimelinePieces(report)].join('');
}

/**
 * The page of renderTimeline() in pieces (a piece per SVG element), to be written as they come: at 500 hosts the
 * page is ~6 MB, built whole ~25 MB more at the run's peak of memory. Pure.
 */
export function* renderTimelinePieces(report: TimelineReport): Generator<string> {
  // a result without its times or role gets defaults (a copy); the run's own results have them (no copy)
  type Timed = TimelineReport['results'][number] & StepTiming;
  const results = report.results.map((r) =>
    r.startMs !== undefined && r.endMs !== undefined && r.role !== undefined
      ? (r as Timed)
      : { ...r, startMs: r.startMs ?? 0, endMs: r.endMs ?? r.ms, role: r.role ?? '' },
  );
  // lanes in the order the roles listed their hosts (inventory order), then any other host of a result
  const lanes = new Set<string>();
  for (const h of (report.roleTimes ?? []).flatMap((r) => r.hosts)) lanes.add(h);
  for (const r of results) lanes.add(r.host);
  const hosts = [...lanes];
  const roles = report.roleTimes ?? [];
  let total = Math.max(1, report.wallMs ?? 0, ...roles.map((r) => r.endMs));
  // each host's results, in order, found once (filtering all results per host was hosts x results: 5.75 M at 500 hosts)
  const byHost = new Map<string, typeof results>();
  for (const r of results) {
    total = Math.max(total, r.endMs);
    const list = byHost.get(r.host);
    if (list) list.push(r);
    else byHost.set(r.host, [r]);
  }
  const crit = slowestPath({ ...report, results });

  const LABEL = 150;
  const PLOT = 1060;
  const LANE = 34;
  const TOP = 46;
  const x = (ms: number) => LABEL + (ms / total) * PLOT;
  const w = (ms: number) => Math.max(1.5, (ms / total) * PLOT);
  const height = TOP + hosts.length * LANE + 30;

  // the SVG's elements, one per piece (joined by newlines below)
  function* svg(): Generator<string> {
    // role bands and names
    for (const [i, ro] of roles.entries()) {
      yield `<rect class="role-band" x="${x(ro.startMs).toFixed(1)}" y="${TOP - 18}" width="${w(ro.endMs - ro.startMs).toFixed(1)}" ` +
        `height="${hosts.length * LANE + 18}" fill="${i % 2 ? '#f4f6f8' : '#eaeef2'}">` +
        `<title>${esc(`role ${ro.role}: ${dur(ro.endMs - ro.startMs)}`)}</title></rect>`;
      yield `<text class="role-name" x="${(x(ro.startMs) + 3).toFixed(1)}" y="${TOP - 5}">${esc(ro.role)}</text>`;
    }
    // time axis
    const stepMs =
      [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 600_000].find((s) => total / s <= 10) ??
      3_600_000;
    for (let t = 0; t <= total; t += stepMs) {
      yield `<line class="grid" x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${TOP - 18}" y2="${height - 22}"/>`;
      yield `<text class="tick" x="${x(t).toFixed(1)}" y="${height - 8}">${esc(dur(t))}</text>`;
    }
    for (const [i, host] of hosts.entries()) {
      const y = TOP + i * LANE;
      yield `<g class="lane" data-host="${esc(host)}">`;
      yield `<text class="host" x="${LABEL - 8}" y="${y + LANE / 2 + 4}">${esc(host)}</text>`;
      yield `<line class="lane-line" x1="${LABEL}" x2="${LABEL + PLOT}" y1="${y + LANE - 1}" y2="${y + LANE - 1}"/>`;
      // waiting for the slowest host of the role: from this host's last step to the role's end
      const own = byHost.get(host) ?? [];
      for (const ro of roles) {
        let last = Number.NEGATIVE_INFINITY;
        for (const r of own) if (r.role === ro.role) last = Math.max(last, r.endMs);
        if (last === Number.NEGATIVE_INFINITY) continue;
        if (ro.endMs - last > total / 200) {
          yield `<rect class="wait" x="${x(last).toFixed(1)}" y="${y + 11}" width="${w(ro.endMs - last).toFixed(1)}" ` +
            'height="8" fill="url(#hatch)">' +
            `<title>${esc(`${host} waits ${dur(ro.endMs - last)} for the slowest host of role ${ro.role}`)}</title></rect>`;
        }
      }
      for (const r of own) {
        const span = Math.max(0, r.endMs - r.startMs);
        const waited = Math.max(0, span - r.ms);
        const critical = crit.has(`${r.role}\u0000${r.host}`);
        const detail = r.error
          ? `\nerror: ${r.error}`
          : r.reason
            ? `\nreason: ${r.reason}`
            : r.changes?.length
              ? `\n${r.changes.slice(0, 8).join('\n')}`
              : '';
        const wait = waited > 1 ? ` (+ ${dur(waited)} waiting)` : '';
        const title = `${r.step}\nhost ${r.host} · role ${r.role} · ${r.status}\n${dur(r.ms)}${wait}${detail}`;
        const cls = `bar status-${r.status}${critical ? ' critical' : ''}`;
        yield `<g class="${cls}" data-status="${r.status}" data-step="${esc(r.step)}" data-host="${esc(r.host)}" ` +
          `data-ms="${Math.round(r.ms)}">` +
          `<title>${esc(title)}</title>`;
        if (waited > 1)
          yield `<rect class="waited" x="${x(r.startMs).toFixed(1)}" y="${y + 6}" width="${w(waited).toFixed(1)}" ` +
            'height="18" fill="url(#hatch)"/>';
        const minWidth = r.status === 'failed' || r.status === 'unreachable' ? 12 : 0;
        yield `<rect x="${x(r.startMs + waited).toFixed(1)}" y="${y + 6}" width="${Math.max(minWidth, w(span - waited)).toFixed(1)}" ` +
          `height="18" rx="2" fill="${COLORS[r.status]}"/>`;
        if (r.status === 'failed' || r.status === 'unreachable') {
          yield `<text class="mark" x="${(x(r.startMs + waited) + 2).toFixed(1)}" y="${y + 19}">✖</text>`;
        }
        yield '</g>';
      }
      for (const t of report.roundTripsAt?.[host] ?? []) {
        yield `<line class="rt" x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${y + 26}" y2="${y + 31}"/>`;
      }
      yield '</g>';
    }
  }
  const counts = Object.fromEntries((Object.keys(COLORS) as StepStatus[]).map((s) => [s, results.filter((r) => r.status === s).length]));
  const legend = (Object.keys(COLORS) as StepStatus[])
    .map((s) => `<span class="key"><i style="background:${COLORS[s]}"></i>${s} ${counts[s]}</span>`)
    .join('');
  const slow = [...results].sort((a, b) => b.ms - a.ms).slice(0, 8);
  const slowRows = slow
    .map(
      (r) => `<tr><td>${esc(dur(r.ms))}</td><td>${esc(r.host)}</td><td>${esc(r.role)}</td><td>${esc(r.step)}</td><td>${r.status}</td></tr>`,
    )
    .join('');
  const pathRows = [...crit]
    .map((k) => k.split('\u0000'))
    .map(([role, host]) => {
      const ro = roles.find((x2) => x2.role === role);
      return `<tr><td>${esc(role!)}</td><td>${esc(host!)}</td><td>${ro ? esc(dur(ro.endMs - ro.startMs)) : ''}</td></tr>`;
    })
    .join('');
  const title = `wpfarm ${report.name ?? 'run'}${report.check ? ' (check)' : ''}`;
  const meta =
    `started ${report.startedAt ?? '?'} · wall ${dur(report.wallMs ?? total)} · ${hosts.length} host(s), ${results.length} step(s), ` +
    `${report.roundTrips ?? '?'} round trips · exit ${report.exitCode ?? '?'}`;
  yield `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${esc(title)}</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#1d2733;background:#fff}
h1{font-size:17px;margin:0 0 4px}.meta{color:#5a6978;margin-bottom:8px}
.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px;border-radius:2px}
svg text{font:12px system-ui,sans-serif}.host{text-anchor:end;fill:#1d2733;font-weight:600}.role-name{fill:#5a6978;font-size:11px}
.tick{text-anchor:middle;fill:#8a97a4;font-size:10px}.grid{stroke:#d5dbe1;stroke-width:.5}.lane-line{stroke:#e3e7eb}
.rt{stroke:#1d2733;stroke-width:1}.mark{fill:#fff;font-size:11px;font-weight:700}
.bar.critical rect[rx]{stroke:#111;stroke-width:2}.bar:hover rect{opacity:.75}
table{border-collapse:collapse;margin-top:10px}td,th{padding:2px 10px 2px 0;text-align:left}th{color:#5a6978;font-weight:600}
</style></head><body>
<h1>${esc(title)}</h1>
<div class="meta">${esc(meta)}</div>
<div class="legend">${legend}<span class="key">▮ outlined: slowest path</span><span class="key">┃ tick: round trip</span>
<span class="key">▨ waiting</span></div>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="${LABEL + PLOT + 20}" height="${height}"
 viewBox="0 0 ${LABEL + PLOT + 20} ${height}">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="6" height="6" fill="#f2f4f6"/><line x1="0" y1="0" x2="0" y2="6" stroke="#9aa6b2" stroke-width="2"/></pattern></defs>
`;
  let first = true;
  for (const p of svg()) {
    yield first ? p : `\n${p}`;
    first = false;
  }
  yield `
</svg>
<h2 style="font-size:14px;margin:14px 0 0">Slowest path (the host that finished each role last)</h2>
<table><tr><th>role</th><th>host</th><th>role time</th></tr>${pathRows}</table>
<h2 style="font-size:14px;margin:14px 0 0">Slowest steps</h2>
<table><tr><th>time</th><th>host</th><th>role</th><th>step</th><th>outcome</th></tr>${slowRows}</table>
</body></html>
`;
}
