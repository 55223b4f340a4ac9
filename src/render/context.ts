import { compareMembers, type Member } from '../members/model.js';

/** What a template sees. */
interface RenderContext {
  /** Members of the template's sources, merged and sorted by name, address and port. */
  members: Member[];
  /** Members per source, by source name. */
  sources: Record<string, Member[]>;
  /** The environment variables the template's `env` allow-list names, and nothing else. */
  env: Record<string, string>;
}

/**
 * Builds a template's context from the current snapshots. Sorting here (not only in each source) keeps
 * the merged list deterministic: the same membership always renders byte-identical output.
 */
export function buildContext(
  snapshots: ReadonlyMap<string, readonly Member[]>,
  sourceNames: readonly string[],
  envNames: readonly string[],
  environment: NodeJS.ProcessEnv = process.env,
): RenderContext {
  const sources: Record<string, Member[]> = {};
  const members: Member[] = [];
  for (const name of sourceNames) {
    const list = [...(snapshots.get(name) ?? [])];
    sources[name] = list;
    // One by one: `push(...list)` passes every member as an argument and overflows the stack from ~125,000.
    for (const member of list) members.push(member);
  }
  members.sort(compareMembers);
  const env: Record<string, string> = {};
  for (const name of envNames) {
    const value = environment[name];
    if (value !== undefined) env[name] = value;
  }
  return { members, sources, env };
}
