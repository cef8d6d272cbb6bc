// Portainer's configuration through its HTTP API, idempotent: the administrator (initialised once), the
// Swarm environment (the agent endpoint), one team per site group, the teams' access policies on that
// environment, and a resource control per site stack giving its team access. Each step reads first and
// writes only what differs; a rerun changes nothing and creates no duplicate team or policy.
import type { PortainerClient } from '../../lib/cloud/portainer.ts';
import { agentUrl, stackResourceId, type PortainerSettings } from './config.ts';

export interface ConfigureReport {
  /** one line per change made (or, in check mode, that would be made) */
  changes: string[];
  /** notes for the operator (teams Portainer has that the inventory does not name, ...) */
  notes: string[];
  endpointId?: number;
  teams: Record<string, number>;
}

export async function configurePortainer(
  api: PortainerClient,
  s: PortainerSettings,
  adminPassword: string,
  opts: { check?: boolean } = {},
): Promise<ConfigureReport> {
  const report: ConfigureReport = { changes: [], notes: [], teams: {} };
  const change = (what: string) => report.changes.push(what);

  if (!(await api.adminExists())) {
    change(`initialise administrator ${s.adminUser}`);
    if (opts.check) return { ...report, notes: ['check mode: Portainer has no administrator yet; nothing else can be read'] };
    if (!(await api.initAdmin(s.adminUser, adminPassword))) report.notes.push('administrator was initialised meanwhile');
  }
  await api.login(s.adminUser, adminPassword);

  let endpoint = (await api.listEndpoints()).find((e) => e.Name === s.endpointName);
  if (!endpoint) {
    change(`create environment ${s.endpointName} (agent ${agentUrl()})`);
    if (!opts.check)
      endpoint = await api.createEndpoint({
        name: s.endpointName,
        type: 2,
        url: agentUrl(),
        tls: true,
        tlsSkipVerify: true,
        tlsSkipClientVerify: true,
      });
  } else if (endpoint.URL && endpoint.URL !== agentUrl()) {
    report.notes.push(`environment ${s.endpointName} points at ${endpoint.URL}, not ${agentUrl()} (left as is)`);
  }
  report.endpointId = endpoint?.Id;

  const existing = await api.listTeams();
  const byName = new Map(existing.map((t) => [t.Name, t.Id]));
  for (const team of Object.keys(s.siteGroups).sort()) {
    let id = byName.get(team);
    if (id === undefined) {
      change(`create team ${team}`);
      if (!opts.check) id = (await api.createTeam(team)).Id;
    }
    if (id !== undefined) report.teams[team] = id;
  }
  const unmanaged = existing.filter((t) => !(t.Name in s.siteGroups)).map((t) => t.Name);
  if (unmanaged.length) report.notes.push(`teams not in portainer_site_groups (left as they are): ${unmanaged.sort().join(', ')}`);

  if (endpoint) {
    // the managed teams' policies, beside whatever the UI added for other teams
    const current = endpoint.TeamAccessPolicies ?? {};
    const wanted: Record<string, { RoleId: number }> = {};
    for (const [k, v] of Object.entries(current)) wanted[k] = { RoleId: v.RoleId ?? 0 };
    const missing: string[] = [];
    for (const [team, id] of Object.entries(report.teams)) {
      if (current[String(id)]?.RoleId !== s.teamRoleId) missing.push(team);
      wanted[String(id)] = { RoleId: s.teamRoleId };
    }
    // in check mode a team still to be created has no id: its policy is a change as well
    for (const team of Object.keys(s.siteGroups)) if (!(team in report.teams)) missing.push(team);
    if (missing.length) {
      change(`access policies on ${s.endpointName} for ${[...new Set(missing)].sort().join(', ')} (role ${s.teamRoleId})`);
      if (!opts.check) await api.setTeamAccessPolicies(endpoint.Id, wanted);
    }
    for (const [team, sites] of Object.entries(s.siteGroups)) {
      const teamId = report.teams[team];
      for (const site of sites) {
        const resourceID = stackResourceId(endpoint.Id, site);
        if (opts.check || teamId === undefined) {
          // Portainer's API has no way to read a resource control back: check mode cannot tell, it says so
          report.notes.push(`check mode: resource control of stack ${resourceID} for team ${team} not verified`);
          continue;
        }
        const r = await api.createResourceControl({ resourceID, type: 'stack', teams: [teamId], administratorsOnly: false, public: false });
        if (r !== 'exists') change(`resource control: stack ${resourceID} → team ${team}`);
      }
    }
  }
  return report;
}
