import type { ResolvedTemplate } from '../config/load.js';

/**
 * The guards of a render: `minMembers` and `maxShrink`. They refuse a render whose members look like a
 * source failing rather than a fleet changing, and the previous file stays.
 */

/**
 * Why the guards refuse a render, or undefined. `maxShrink` compares with the members this process
 * last installed for the template, so it does not apply to the first render.
 */
export function guardRefusal(template: Pick<ResolvedTemplate, 'minMembers' | 'maxShrink'>, members: ReadonlySet<string>, last: ReadonlySet<string> | undefined): string | undefined {
  if (members.size < template.minMembers) {
    return `only ${members.size} member(s), fewer than minMembers ${template.minMembers}; keeping the previous file`;
  }
  if (template.maxShrink !== undefined && last && last.size > 0) {
    let gone = 0;
    for (const id of last) if (!members.has(id)) gone++;
    const fraction = gone / last.size;
    if (fraction > template.maxShrink) {
      return `${gone} of ${last.size} member(s) would disappear at once (${Math.round(fraction * 100)}% > maxShrink ${Math.round(template.maxShrink * 100)}%); keeping the previous file`;
    }
  }
  return undefined;
}
