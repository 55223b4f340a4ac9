import { isIP } from 'node:net';
import { isPlainWord, keywordValue, parseHaproxyConfig, type ConfigLine, type ConfigSection, type ServerLine } from './config.js';

/**
 * What a new HAProxy config changes in the servers of its backends, and whether HAProxy's runtime API can
 * apply that without a reload. Only `server` lines of backends that exist in both files may differ; every
 * other line, and the order of sections, must be the same word for word.
 */

/** A change to one server that the runtime API can make. */
export type ServerChange =
  | {
      kind: 'add';
      backend: string;
      name: string;
      /** The address word as written in the file (`10.0.0.5:8080`). */
      address: string;
      /** The keywords to give `add server`: built-in defaults of config servers, `default-server`, the line's own. */
      keywords: string[];
      /** `check` is on: the check must be enabled (`enable health`). */
      health: boolean;
      /** `agent-check` is on (`enable agent`). */
      agent: boolean;
      /** `disabled` is set: the server stays in maintenance. */
      disabled: boolean;
    }
  | { kind: 'remove'; backend: string; name: string }
  | { kind: 'update'; backend: string; name: string; host?: string; port?: number; weight?: number };

/** A server as the file describes it: what `show servers state` must show after a change. */
export interface DesiredServer {
  backend: string;
  name: string;
  /** The address, when it is an IP literal (a host name is resolved by HAProxy: not compared). */
  ip: string | undefined;
  port: number | undefined;
  weight: number;
}

/** The servers of every backend of a file. */
export interface DesiredState {
  servers: DesiredServer[];
  /** Every backend and listen section. */
  backends: Set<string>;
  /** Backends with servers no `server` line names (server-template, resolvers): not compared. */
  unverifiable: Set<string>;
}

/** The diff: the changes for the runtime API, or why a reload is needed. */
export type ServerDiff = { runtime: true; changes: ServerChange[] } | { runtime: false; reason: string };

/**
 * Keywords a server of the config file has by default and a server added at runtime does not: without them a
 * dynamic server keeps no idle connections to reuse (HAProxy 2.6). Written first, so the file's own win.
 */
const CONFIG_SERVER_DEFAULTS = ['pool-max-conn', '-1', 'pool-purge-delay', '5s'];
/** Algorithms the runtime API accepts servers for; hash-based ones only with `hash-type consistent`. */
const DYNAMIC_ALGORITHMS = new Set(['roundrobin', 'leastconn', 'first', 'random']);
const HASH_ALGORITHMS = new Set(['source', 'uri', 'url_param', 'hdr', 'rdp-cookie', 'hash']);

/** Compares two versions of a config file. */
export function diffServers(before: string, after: string): ServerDiff {
  const old = parseHaproxyConfig(before);
  const next = parseHaproxyConfig(after);
  if (!next.some((s) => s.kind === 'global')) return refuse('the file has no global section (only HAProxy\'s main file is changed at runtime)');
  if (old.length !== next.length) return refuse(`sections were added or removed (${old.length} → ${next.length})`);
  const changes: ServerChange[] = [];
  for (let i = 0; i < next.length; i++) {
    const a = old[i]!;
    const b = next[i]!;
    const title = sectionTitle(b);
    if (a.kind !== b.kind || !sameWords(a.args, b.args)) return refuse(`section ${sectionTitle(a)} became ${title}`);
    const changed = firstChangedLine(a.lines, b.lines);
    if (changed !== undefined) return refuse(`${title} changed outside its server lines (line ${changed})`);
    if (sameServers(a.servers, b.servers)) continue;
    const reason = runtimeRefusal(next, i);
    if (reason) return refuse(`${title}: ${reason}`);
    const diff = diffBackend(b.args[0]!, a.servers, b.servers, defaultServerWords(next, i));
    if (typeof diff === 'string') return refuse(`${title}: ${diff}`);
    changes.push(...diff);
  }
  // Capacity first: new servers take traffic before the leaving ones stop taking it.
  const order = { add: 0, update: 1, remove: 2 } as const;
  return { runtime: true, changes: changes.sort((x, y) => order[x.kind] - order[y.kind]) };
}

/** Every server of the file's backends, as `show servers state` should list it. */
export function desiredServers(text: string): DesiredState {
  const sections = parseHaproxyConfig(text);
  const servers: DesiredServer[] = [];
  const backends = new Set<string>();
  const unverifiable = new Set<string>();
  sections.forEach((section, i) => {
    if (section.kind !== 'backend' && section.kind !== 'listen') return;
    const backend = section.args[0];
    if (backend === undefined) return;
    backends.add(backend);
    if (section.lines.some((l) => l.words[0] === 'server-template')) unverifiable.add(backend);
    const defaults = defaultServerWords(sections, i);
    for (const server of section.servers) {
      const weight = Number(keywordValue([...defaults, ...server.keywords], 'weight') ?? 1);
      servers.push({ backend, name: server.name, ip: isIP(server.host) ? server.host : undefined, port: server.port, weight });
    }
  });
  return { servers, backends, unverifiable };
}

// --- internal ---

function refuse(reason: string): ServerDiff {
  return { runtime: false, reason };
}

function sectionTitle(section: ConfigSection): string {
  return [section.kind, ...section.args].join(' ') || 'the lines before the first section';
}

function sameWords(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((word, i) => word === b[i]);
}

/** The line number (in the new file) of the first line that differs, or undefined when none does. */
function firstChangedLine(a: readonly ConfigLine[], b: readonly ConfigLine[]): number | undefined {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (!a[i] || !b[i] || !sameWords(a[i]!.words, b[i]!.words)) return (b[i] ?? b.at(-1))?.line ?? a[i]?.line;
  }
  return undefined;
}

function sameServers(a: readonly ServerLine[], b: readonly ServerLine[]): boolean {
  return a.length === b.length && a.every((server, i) => sameWords(server.words, b[i]!.words));
}

/** The `defaults` section a proxy inherits from: the last one before it. */
function defaultsOf(sections: readonly ConfigSection[], index: number): ConfigSection | undefined {
  for (let i = index - 1; i >= 0; i--) if (sections[i]!.kind === 'defaults') return sections[i];
  return undefined;
}

/** Why the runtime API cannot take servers in this backend, or undefined. */
function runtimeRefusal(sections: readonly ConfigSection[], index: number): string | undefined {
  const section = sections[index]!;
  if (section.args.length !== 1) return 'a backend that inherits from named defaults (`from`) is reloaded';
  const defaults = defaultsOf(sections, index);
  const setting = (keyword: string): string[] | undefined =>
    [...(defaults?.lines ?? []), ...section.lines].filter((l) => l.words[0] === keyword).at(-1)?.words.slice(1);
  const balance = setting('balance') ?? ['roundrobin'];
  const algorithm = (balance[0] ?? '').replace(/\(.*$/, '');
  if (DYNAMIC_ALGORITHMS.has(algorithm)) return undefined;
  if (HASH_ALGORITHMS.has(algorithm) && setting('hash-type')?.[0] === 'consistent') return undefined;
  return `balance ${balance.join(' ')}${HASH_ALGORITHMS.has(algorithm) ? ' without hash-type consistent' : ''} takes no servers at runtime`;
}

/** The `default-server` words a server of this proxy gets: its defaults section's, then its own. */
function defaultServerWords(sections: readonly ConfigSection[], index: number): string[] {
  const lines = [...(defaultsOf(sections, index)?.lines ?? []), ...sections[index]!.lines];
  return lines.filter((l) => l.words[0] === 'default-server').flatMap((l) => l.words.slice(1));
}

function diffBackend(backend: string, before: readonly ServerLine[], after: readonly ServerLine[], defaults: readonly string[]): ServerChange[] | string {
  if (!isPlainWord(backend) || backend.includes('/')) return 'its name cannot be given to the runtime API';
  const oldByName = byName(before);
  const newByName = byName(after);
  if (typeof oldByName === 'string') return oldByName;
  if (typeof newByName === 'string') return newByName;
  const changes: ServerChange[] = [];
  for (const [name, server] of newByName) {
    const previous = oldByName.get(name);
    const unsupported = [...server.words, ...(previous ? [] : defaults)].find((word) => !isPlainWord(word));
    if (unsupported !== undefined) return `server ${name}: ${JSON.stringify(unsupported)} is not sent to the runtime API as it is`;
    if (!previous) {
      if (!isIP(server.host) || server.port === undefined) return `server ${name}: only an IP address with a port can be added at runtime`;
      const keywords = [...CONFIG_SERVER_DEFAULTS, ...defaults, ...server.keywords];
      changes.push({
        kind: 'add',
        backend,
        name,
        address: server.words[2]!,
        keywords,
        health: keywords.lastIndexOf('check') > keywords.lastIndexOf('no-check'),
        agent: keywords.lastIndexOf('agent-check') > keywords.lastIndexOf('no-agent-check'),
        disabled: keywords.lastIndexOf('disabled') > keywords.lastIndexOf('enabled'),
      });
      continue;
    }
    if (!sameWords(withoutWeight(previous.keywords), withoutWeight(server.keywords))) return `server ${name}: keywords other than weight changed`;
    const update: Extract<ServerChange, { kind: 'update' }> = { kind: 'update', backend, name };
    if (previous.host !== server.host || previous.port !== server.port) {
      if (!isIP(server.host) || server.port === undefined) return `server ${name}: only an IP address with a port can be set at runtime`;
      update.host = server.host;
      update.port = server.port;
    }
    const weightBefore = keywordValue([...defaults, ...previous.keywords], 'weight') ?? '1';
    const weightAfter = keywordValue([...defaults, ...server.keywords], 'weight') ?? '1';
    if (weightAfter !== weightBefore) {
      if (!/^\d+$/.test(weightAfter)) return `server ${name}: weight ${weightAfter} is not a number`;
      update.weight = Number(weightAfter);
    }
    if (update.host !== undefined || update.weight !== undefined) changes.push(update);
  }
  for (const name of oldByName.keys()) {
    if (newByName.has(name)) continue;
    if (!isPlainWord(name)) return `server ${JSON.stringify(name)} cannot be named to the runtime API`;
    changes.push({ kind: 'remove', backend, name });
  }
  return changes;
}

function byName(servers: readonly ServerLine[]): Map<string, ServerLine> | string {
  const map = new Map<string, ServerLine>();
  for (const server of servers) {
    if (server.name.includes('/')) return `server ${JSON.stringify(server.name)} cannot be named to the runtime API`;
    if (map.has(server.name)) return `server ${server.name} is declared twice`;
    map.set(server.name, server);
  }
  return map;
}

function withoutWeight(words: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] === 'weight') i++;
    else out.push(words[i]!);
  }
  return out;
}
