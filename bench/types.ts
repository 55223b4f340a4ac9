/** One table of the benchmark report. */
export interface BenchSection {
  title: string;
  rows: Record<string, string | number>[];
  notes?: string[];
}

/** Median of a list of numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The value below which `p` (0..1) of the sorted values fall (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Formats a table as Markdown. */
export function formatSection(section: BenchSection): string {
  const columns = [...new Set(section.rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: string | number | undefined): string => (v === undefined ? '' : typeof v === 'number' ? fmt(v) : v);
  const lines = [`### ${section.title}`, '', `| ${columns.join(' | ')} |`, `|${columns.map(() => '---').join('|')}|`];
  for (const row of section.rows) lines.push(`| ${columns.map((c) => cell(row[c])).join(' | ')} |`);
  for (const note of section.notes ?? []) lines.push('', note);
  return lines.join('\n') + '\n';
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}
