// Helpers to define operations (see lib/types.ts: probe → plan → apply unless check).
import type { Connection, Operation, Plan, Probe, StepContext, StepOptions, Task, TaskOutcome } from '../types.ts';

export interface OpDef {
  kind: string;
  title: string;
  options?: StepOptions;
  probe(ctx: StepContext): Probe | null;
  plan(ctx: StepContext, probeOutput: string): Plan | Promise<Plan>;
}

export function defineOp(def: OpDef): Operation {
  return {
    kind: def.kind,
    title: def.options?.name ?? def.title,
    options: def.options ?? {},
    probe: def.probe,
    plan: def.plan,
  };
}

/** An imperative step. It must report changes honestly and respect ctx.check itself. */
export function task(title: string, run: (ctx: StepContext) => Promise<TaskOutcome | void>, options: StepOptions = {}): Task {
  return { kind: 'task', title: options.name ?? title, options, run };
}

export const unchanged = (result?: unknown): Plan => ({ changed: false, changes: [], result });

/** The context's connection; a context from hostContext() learns it asynchronously, so open it if needed. */
export async function connOf(ctx: StepContext): Promise<Connection> {
  try {
    return ctx.conn;
  } catch {
    await ctx.exec(':');
    return ctx.conn;
  }
}
