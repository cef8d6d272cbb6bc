// The lab tests run on the test tiers' own lab (profile "test" of scripts/lab/config.ts: its own containers,
// network, subnet, volumes, inventory and state under .wpfarm/test-lab), never on the user's lab. Imported by
// test/harness/lab-sites.ts before scripts/lab/config.ts is loaded; every lab test imports lab-sites.ts first.
const v = process.env.WPFARM_LAB;
if (v && v !== 'test') {
  throw new Error(`WPFARM_LAB=${v}: the lab tests run only on the test lab (WPFARM_LAB=test, their default), never on the user's lab`);
}
process.env.WPFARM_LAB = 'test';
