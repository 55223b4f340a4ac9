import { forTerminal } from './escape.js';
import type { HistoryEntry, Trigger } from './history.js';

/**
 * A history entry in words, for the status page and `rosterd history`. Member names and command output in
 * them are untrusted: the page escapes them as HTML, the terminal with {@link forTerminal}.
 */

/**
 * An entry's outcome in words, e.g. `written, reloaded (12 ms)` or `reload failed, rolled back`. Plain text:
 * the reason it may add is shown by the caller, escaped.
 */
export function describeOutcome(entry: HistoryEntry): string {
  const reload = entry.reload;
  const applied = reload === undefined ? '' : reload.path === 'runtime' ? 'applied through the runtime API' : 'reloaded';
  switch (entry.outcome) {
    case 'written':
      return reload ? `written, ${applied} (${reload.durationMs} ms)` : 'written';
    case 'unchanged':
      return reload ? `unchanged, ${applied} again (${reload.durationMs} ms)` : 'unchanged';
    case 'guarded':
      return 'refused by a guard';
    case 'check-failed':
      return 'refused by the check';
    case 'reload-failed':
      return `reload failed after ${reload?.durationMs ?? 0} ms${reload?.rolledBack ? ', rolled back' : ', new file left in place'}`;
    case 'failed':
      return 'failed';
  }
}

/**
 * Why an entry rendered, in words: `start`, `config reload`, `web: +2 (a, b) -1 (c) ~1 (d)`. Contains member
 * names: untrusted text, to be escaped by the caller for where it is shown.
 */
export function describeTrigger(trigger: Trigger): string {
  if (trigger.kind === 'start') return 'start';
  if (trigger.kind === 'config') return 'config reload';
  if (trigger.kind === 'none') return 'no member change';
  const list = (sign: string, names: string[], count: number): string[] =>
    count === 0 ? [] : [`${sign}${count} (${names.join(', ')}${count > names.length ? ', …' : ''})`];
  return trigger.sources
    .map((c) => [`${c.source}:`, ...list('+', c.joined, c.counts.joined), ...list('-', c.left, c.counts.left), ...list('~', c.changed, c.counts.changed)].join(' '))
    .join('; ');
}

/** `1 member`, `3 members`. */
export function membersText(count: number): string {
  return `${count} member${count === 1 ? '' : 's'}`;
}

/** One entry for a terminal: a header line, then indented details; every character a terminal acts on written out. */
export function formatEntry(entry: HistoryEntry, withDiff: boolean): string {
  const lines = [
    `${entry.at}  ${forTerminal(entry.template)}  ${describeOutcome(entry)}  ${membersText(entry.members)}  ${entry.durationMs} ms${entry.hash ? `  sha256:${entry.hash.slice(0, 12)}` : ''}`,
    `  trigger: ${forTerminal(describeTrigger(entry.trigger))}`,
  ];
  if (entry.reason !== undefined) lines.push(`  reason: ${forTerminal(entry.reason)}`);
  if (entry.reload) lines.push(`  ${entry.reload.ok ? 'reload' : 'failed reload'} (${entry.reload.path}): ${forTerminal(entry.reload.command)}${entry.reload.fallback ? `; ${forTerminal(entry.reload.fallback)}` : ''}`);
  for (const line of entry.output ?? []) lines.push(`  | ${forTerminal(line)}`);
  for (const file of entry.files ?? []) {
    lines.push(`  ${file.change} ${forTerminal(file.path)}${file.diffOmitted ? ` (diff ${file.diffOmitted})` : ''}`);
    if (withDiff && file.diff) for (const line of file.diff.replace(/\n$/, '').split('\n')) lines.push(`    ${forTerminal(line)}`);
  }
  return `${lines.join('\n')}\n`;
}

