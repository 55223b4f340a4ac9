import { createHash } from 'node:crypto';
import type { FleetState } from '../fleet/monitor.js';
import type { Renderer } from '../runner/renderer.js';
import { escapeHtml as h } from './escape.js';
import type { HistoryEntry, RenderHistory } from './history.js';
import { describeOutcome, describeTrigger, membersText } from './history-text.js';

/**
 * The status page: one self-contained HTML document (inline style and script, no external asset), complete
 * without JavaScript. With it, the page replaces its `<main>` with each version the server pushes over
 * Server-Sent Events (`/events`). Everything shown from members, commands or peers is escaped here.
 */

/** What the page shows. */
export interface PageSources {
  renderer: Renderer;
  history?: RenderHistory;
  fleet?: FleetState;
}

/** History entries on the page, newest first; `/history` has all of them. */
export const PAGE_ENTRIES = 50;
/** Member names listed per source; the count is always complete. */
export const PAGE_MEMBERS = 100;
/** Characters of a diff shown per file (the page is sent whole on each update); `/history` has the rest. */
export const PAGE_DIFF_CHARS = 8192;

const STYLE = `
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#6e7781;--line:#d0d7de}
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 32px}
header{display:flex;gap:12px;align-items:baseline;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:12px 0}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600}code,pre{font:12px/1.4 ui-monospace,monospace}pre{margin:4px 0;padding:6px;overflow-x:auto;border:1px solid var(--line)}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
.add{color:var(--ok)}.del{color:var(--bad)}.hunk{color:var(--muted)}
details.entry{border-bottom:1px solid var(--line);padding:4px 0}summary{cursor:pointer}
tr.flagged td{background:rgba(207,34,46,.08)}
`;

const SCRIPT = `
(() => {
  const live = document.getElementById('live');
  const events = new EventSource('events');
  events.addEventListener('main', (e) => {
    const open = new Set([...document.querySelectorAll('details[open][id]')].map((d) => d.id));
    const next = document.createElement('template');
    next.innerHTML = e.data;
    document.querySelector('main').replaceWith(next.content);
    for (const id of open) document.getElementById(id)?.setAttribute('open', '');
  });
  events.onopen = () => { live.textContent = 'live'; live.className = 'ok'; };
  events.onerror = () => { live.textContent = 'reconnecting'; live.className = 'warn'; };
})();
`;

/** The Content-Security-Policy of the page: its own inline script and style only, and nothing else. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${createHash('sha256').update(SCRIPT).digest('base64')}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

/** The whole page. */
export function renderPage(sources: PageSources, version: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>rosterd</title><style>${STYLE}</style>
<noscript><meta http-equiv="refresh" content="10"></noscript></head>
<body><header><h1>rosterd</h1><span class="muted">${h(version)}</span><span id="live" class="muted">static</span></header>
${renderMain(sources)}
<script>${SCRIPT}</script></body></html>
`;
}

/** The page's `<main>`: what changes, and what `/events` pushes. */
export function renderMain(sources: PageSources): string {
  return `<main>${sourcesSection(sources.renderer)}${templatesSection(sources)}${fleetSection(sources.fleet)}${historySection(sources.history)}</main>`;
}

// --- internal ---

function sourcesSection(renderer: Renderer): string {
  const types = renderer.currentConfig.sources;
  const rows = renderer.sourceStatus().map((s) => {
    const config = types[s.name];
    const type = config && 'type' in config ? config.type : 'custom';
    const state = s.up ? '<span class="ok">up</span>' : s.members === undefined && !s.lastError ? '<span class="warn">starting</span>' : '<span class="bad">down</span>';
    const members =
      s.members === undefined
        ? '<span class="muted">none yet</span>'
        : `<details id="members-${h(s.name)}"><summary>${s.members.length}</summary>${memberList(s.members.map((m) => m.name))}</details>`;
    return `<tr><td>${h(s.name)}</td><td>${h(type)}</td><td>${state}</td><td>${members}</td><td>${time(s.lastSnapshotAt)}</td><td>${s.lastError ? `<span class="bad">${h(s.lastError.message)}</span>` : ''}</td></tr>`;
  });
  return `<section id="sources"><h2>Sources</h2><table><thead><tr><th>source</th><th>type</th><th>state</th><th>members</th><th>last good look</th><th>last error</th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`;
}

function memberList(names: readonly string[]): string {
  const shown = names.slice(0, PAGE_MEMBERS).map((n) => `<li>${h(n)}</li>`);
  const more = names.length > PAGE_MEMBERS ? `<li class="muted">and ${names.length - PAGE_MEMBERS} more</li>` : '';
  return `<ul>${shown.join('')}${more}</ul>`;
}

function templatesSection({ renderer, history }: PageSources): string {
  const rows = renderer.templateStatus().map((t) => {
    const summary = history?.summary(t.template) ?? {};
    const state = t.rendering
      ? '<span class="warn">rendering</span>'
      : t.pending
        ? '<span class="warn">pending</span>'
        : t.lastError
          ? '<span class="bad">failing</span>'
          : t.ready
            ? '<span class="ok">ok</span>'
            : '<span class="muted">waiting</span>';
    const last = summary.last ? `${time(Date.parse(summary.last.at))} <span class="${outcomeClass(summary.last)}">${h(summary.last.outcome)}</span>` : '';
    const change = summary.lastChange ? time(Date.parse(summary.lastChange.at)) : '';
    const hash = summary.lastChange?.hash ?? summary.last?.hash;
    return `<tr><td>${h(t.template)}</td><td><code>${h(t.destination)}</code></td><td>${state}</td><td>${last}</td><td>${change}</td><td>${hash ? `<code title="${h(hash)}">${h(hash.slice(0, 12))}</code>` : ''}</td><td>${t.lastError ? `<span class="bad">${h(t.lastError.message)}</span>` : ''}</td></tr>`;
  });
  return `<section id="templates"><h2>Templates</h2><table><thead><tr><th>template</th><th>destination</th><th>state</th><th>last render</th><th>last change</th><th>hash</th><th>last error</th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`;
}

function fleetSection(fleet: FleetState | undefined): string {
  const body = ((): string => {
    if (fleet?.source === undefined) return '<p class="muted">no Serf source, no fleet</p>';
    const error = fleet.lastError ? `<p class="bad">last survey failed: ${h(fleet.lastError)}</p>` : '';
    const view = fleet.view;
    if (!view) return `${error}<p class="muted">no survey yet (through source ${h(fleet.source)})</p>`;
    const names = view.templates.map((t) => t.template);
    const head = `<tr><th>rosterd</th>${names.map((n) => `<th>${h(n)}</th>`).join('')}</tr>`;
    const nodes = view.nodes.map((node) => {
      const cells = names.map((name) => {
        const t = node.templates.find((x) => x.template === name);
        if (!t) return `<td class="bad">${node.valid ? 'not served' : 'invalid answer'}</td>`;
        const css = t.state === 'ok' ? 'ok' : 'bad';
        return `<td class="${css}">${h(t.state)}${t.hash ? ` <code>${h(t.hash.slice(0, 12))}</code>` : ''}${t.members === undefined ? '' : ` · ${membersText(t.members)}`}</td>`;
      });
      const self = node.node === fleet.self ? ' <span class="muted">(this rosterd)</span>' : '';
      return `<tr class="${node.flagged ? 'flagged' : ''}"><td>${h(node.node)}${self}${node.flagged ? ' <span class="bad">disagrees</span>' : ''}</td>${cells.join('')}</tr>`;
    });
    const majority = names.length === 0 ? '' : `<tr><td class="muted">majority</td>${view.templates.map((t) => `<td>${t.majority ? `<code>${h(t.majority.slice(0, 12))}</code>` : `<span class="bad">${t.split ? 'split' : 'not served by most'}</span>`} · ${t.ok} ok, ${t.differing} differ, ${t.lagging} lag</td>`).join('')}</tr>`;
    return `${error}<p class="muted">surveyed ${time(view.askedAt)} through source ${h(fleet.source)}; lag after ${view.lagMs / 1000} s</p><table><thead>${head}</thead><tbody>${nodes.join('')}${majority}</tbody></table>`;
  })();
  return `<section id="fleet"><h2>Fleet</h2>${body}</section>`;
}

function historySection(history: RenderHistory | undefined): string {
  if (!history) return '<section id="history"><h2>History</h2><p class="muted">no history kept</p></section>';
  const entries = history.entries({ limit: PAGE_ENTRIES }).reverse();
  const body = entries.length === 0 ? '<p class="muted">no render yet</p>' : entries.map(entryHtml).join('');
  return `<section id="history"><h2>History</h2>${body}</section>`;
}

function entryHtml(entry: HistoryEntry): string {
  const reason = entry.reason ? `<p class="${outcomeClass(entry)}">${h(entry.reason)}</p>` : '';
  const output = entry.output ? `<p class="muted">last output lines:</p><pre>${h(entry.output.join('\n'))}</pre>` : '';
  const reload = entry.reload ? `<p>${entry.reload.ok ? 'reload' : 'failed reload'} (${h(entry.reload.path)}): <code>${h(entry.reload.command)}</code>${entry.reload.fallback ? `, ${h(entry.reload.fallback)}` : ''}</p>` : '';
  const files = (entry.files ?? []).map(
    (f) =>
      `<p><code>${h(f.path)}</code> ${h(f.change)}${f.hash ? ` <code>${h(f.hash.slice(0, 12))}</code>` : ''}${f.diffOmitted ? ` <span class="muted">(diff ${h(f.diffOmitted)})</span>` : ''}</p>${f.diff ? diffHtml(f.diff, entry.template) : ''}`,
  );
  return `<details class="entry" id="entry-${entry.seq}"><summary>${time(Date.parse(entry.at))} <strong>${h(entry.template)}</strong> <span class="${outcomeClass(entry)}">${h(describeOutcome(entry))}</span> · ${h(describeTrigger(entry.trigger))} · ${membersText(entry.members)} · ${entry.durationMs} ms</summary>${reason}${output}${reload}${files.join('')}</details>`;
}

function diffHtml(diff: string, template: string): string {
  const cut = diff.length > PAGE_DIFF_CHARS ? diff.slice(0, diff.lastIndexOf('\n', PAGE_DIFF_CHARS) + 1) : diff;
  const more = cut.length < diff.length ? `<p class="muted">${diff.length - cut.length} more characters in <a href="history?template=${encodeURIComponent(template)}">/history</a></p>` : '';
  const lines = cut.split('\n').map((line) => {
    const css = line.startsWith('@@') || line.startsWith('--- ') || line.startsWith('+++ ') ? 'hunk' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : '';
    return css ? `<span class="${css}">${h(line)}</span>` : h(line);
  });
  return `<pre>${lines.join('\n')}</pre>${more}`;
}

function outcomeClass(entry: HistoryEntry): string {
  return entry.outcome === 'written' || entry.outcome === 'unchanged' ? 'ok' : 'bad';
}

/** A time in UTC, to the second: absolute, so that the page changes only when the state does. */
function time(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return '<span class="muted">never</span>';
  const iso = new Date(ms).toISOString();
  return `<time datetime="${iso}">${iso.slice(0, 19).replace('T', ' ')}</time>`;
}
