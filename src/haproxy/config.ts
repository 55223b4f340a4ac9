/**
 * Just enough of HAProxy's configuration language to tell what a new file changes in the servers of its
 * backends: sections, their lines as words, and per backend its `balance`, `hash-type`, `default-server` and
 * `server` lines. It does not expand environment variables or judge keywords: `haproxy -c` does that.
 */

/** One line of a section, split into words as written (quotes and escapes kept). */
export interface ConfigLine {
  /** 1-based line number in the file. */
  line: number;
  words: string[];
}

/** A `server` line of a backend or listen section. */
export interface ServerLine extends ConfigLine {
  name: string;
  /** The address as written before the port: an IP or a host name (brackets of `[v6]:port` removed). */
  host: string;
  /** The port, when the address has one. */
  port: number | undefined;
  /** The words after the address (`check`, `weight 10`, ...). */
  keywords: string[];
}

/** A section: `global`, `defaults`, `frontend`, `backend`, `listen`, and the others. */
export interface ConfigSection {
  /** The section keyword (`backend`). */
  kind: string;
  /** The words after it (`web`, or `web from tcp-defaults`). */
  args: string[];
  line: number;
  /** Every line but `server` lines. */
  lines: ConfigLine[];
  /** `server` lines (only in backend and listen sections). */
  servers: ServerLine[];
}

/** Keywords that open a section (HAProxy 2.6 and later). */
const SECTION_KEYWORDS = new Set([
  'global',
  'defaults',
  'frontend',
  'backend',
  'listen',
  'resolvers',
  'peers',
  'userlist',
  'mailers',
  'program',
  'http-errors',
  'ring',
  'cache',
  'fcgi-app',
  'log-forward',
  'crt-store',
  'traces',
]);

/** Sections that hold servers. */
const PROXIES_WITH_SERVERS = new Set(['backend', 'listen']);

/** Parses a config into its sections. Lines before the first section are kept in a section of kind `''`. */
export function parseHaproxyConfig(text: string): ConfigSection[] {
  const sections: ConfigSection[] = [];
  let current: ConfigSection = { kind: '', args: [], line: 0, lines: [], servers: [] };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const words = splitWords(lines[i]!);
    if (words.length === 0) continue;
    const line = i + 1;
    const [keyword, ...rest] = words as [string, ...string[]];
    if (SECTION_KEYWORDS.has(keyword)) {
      if (current.kind !== '' || current.lines.length > 0) sections.push(current);
      current = { kind: keyword, args: rest, line, lines: [], servers: [] };
      continue;
    }
    const server = keyword === 'server' && PROXIES_WITH_SERVERS.has(current.kind) ? parseServerLine(words, line) : undefined;
    if (server) current.servers.push(server);
    else current.lines.push({ line, words });
  }
  if (current.kind !== '' || current.lines.length > 0) sections.push(current);
  return sections;
}

/**
 * Splits a line into words the way HAProxy's parser does: blanks separate words, `#` starts a comment unless
 * it is quoted or escaped, and quotes and backslash escapes stay part of the word (they are not undone).
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      word += c;
      if (c === '\\' && quote === '"' && i + 1 < line.length) word += line[++i];
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '\\' && i + 1 < line.length) {
      word += c + line[++i];
    } else if (c === '"' || c === "'") {
      quote = c;
      word += c;
    } else if (c === '#') {
      break;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      if (word !== '') words.push(word);
      word = '';
    } else {
      word += c;
    }
  }
  if (word !== '') words.push(word);
  return words;
}

/**
 * True when a word means the same to the config parser and to the runtime API: no quotes, escapes,
 * environment variables, comment or command separators, nothing outside printable ASCII.
 */
export function isPlainWord(word: string): boolean {
  return /^[\x21-\x7e]+$/.test(word) && !/["'\\$#;]/.test(word);
}

/** The last value given to a keyword in a list of words (`weight 10 ... weight 20` → `20`). */
export function keywordValue(words: readonly string[], keyword: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < words.length - 1; i++) if (words[i] === keyword) value = words[i + 1];
  return value;
}

function parseServerLine(words: string[], line: number): ServerLine | undefined {
  const [, name, address, ...keywords] = words;
  if (name === undefined || address === undefined) return undefined;
  const { host, port } = splitAddress(address);
  return { line, words, name, host, port, keywords };
}

/**
 * `10.0.0.1:80` → host and port, as HAProxy reads them: the port is what follows the last colon (`fd00::1:80`
 * is `fd00::1` port 80); `[fd00::1]:80` too. No digits after the last colon: no port.
 */
function splitAddress(address: string): { host: string; port: number | undefined } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(address);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] === undefined ? undefined : Number(bracketed[2]) };
  const match = /^(.*):(\d+)$/.exec(address);
  return match ? { host: match[1]!, port: Number(match[2]) } : { host: address, port: undefined };
}
