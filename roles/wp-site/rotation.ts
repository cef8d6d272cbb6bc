// The architecture's rotation policy: every site's DB password and WordPress keys/salts rotate at
// least every 90 days (rotate-secrets.ts). Pure.
export const ROTATION_DAYS = 90;

export function rotationStatus(rotated: string | undefined, now = new Date()): { ageDays: number | null; due: boolean; text: string } {
  const t = rotated ? Date.parse(rotated) : NaN;
  if (!Number.isFinite(t)) return { ageDays: null, due: true, text: 'unknown age: rotate' };
  const ageDays = Math.floor((now.getTime() - t) / 86_400_000);
  const due = ageDays >= ROTATION_DAYS;
  return {
    ageDays,
    due,
    text: due ? `${ageDays} d: DUE (policy ${ROTATION_DAYS} d)` : `${ageDays} d (due in ${ROTATION_DAYS - ageDays} d)`,
  };
}

/** The DB user of the next version: rotation alternates between two users so that running tasks keep
 *  working with the old password until the new tasks replaced them (MariaDB has no dual passwords). */
export function nextDbUser(base: string, current: string | undefined): string {
  return current === base || current === undefined ? `${base}_b` : base;
}
