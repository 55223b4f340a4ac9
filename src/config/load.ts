import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { basename, dirname, resolve } from 'node:path';
import { cosmiconfig, type Loader } from 'cosmiconfig';
import { createJiti } from 'jiti';
import { ConfigError, RosterdError, type ConfigIssue } from '../errors.js';
import { compileTemplate, type CompiledTemplate } from '../render/engine.js';
import { isSource, type Source } from '../sources/types.js';
import type { ConfigExport } from './define.js';
import { formatPath, toConfigIssues } from './issues.js';
import { configSchema, isHaproxyReload, type ParsedTemplate, type SourceConfig } from './schema.js';

/** A template after loading: absolute paths, defaults filled, text compiled. */
export interface ResolvedTemplate extends Omit<ParsedTemplate, 'name' | 'source' | 'contents' | 'sources'> {
  readonly name: string;
  /** Position in the config's `templates` list. */
  readonly index: number;
  /** The template file (absolute), when the template came from a file. */
  readonly source: string | undefined;
  /** The output file (absolute). */
  readonly destination: string;
  /** The sources that feed `members`, in config order. */
  readonly sources: readonly string[];
  readonly compiled: CompiledTemplate;
}

/** A validated config: what the runner, the daemon and `render --once` work from. Nothing in it is raw input. */
export interface ResolvedConfig {
  /** The config file, when the config came from one. */
  readonly file: string | undefined;
  /** The directory relative paths were resolved against. */
  readonly baseDir: string;
  /** Source configs (paths absolute) or `Source` objects plugged in by a library user, by name. */
  readonly sources: Readonly<Record<string, SourceConfig | Source>>;
  readonly templates: readonly ResolvedTemplate[];
  /** The status endpoint, when enabled. */
  readonly http: { readonly listen: string } | undefined;
  /** How often (ms) to warn while a template waits for a source's first snapshot. */
  readonly warnInterval: number;
}

/** Where `loadConfig()` looks when no file is given, in this order, in the working directory only. */
export const CONFIG_SEARCH_PLACES = [
  'renderer.config.ts',
  'renderer.config.mts',
  'renderer.config.js',
  'renderer.config.mjs',
  'renderer.config.cjs',
  'renderer.config.yaml',
  'renderer.config.yml',
  'renderer.config.json',
  '.rendererrc',
  '.rendererrc.yaml',
  '.rendererrc.yml',
  '.rendererrc.json',
  'package.json',
] as const;

/**
 * Loads and validates a config, and compiles its templates.
 * - no argument: searches the working directory (`CONFIG_SEARCH_PLACES`);
 * - a path: loads that file (TypeScript, JavaScript, YAML or JSON);
 * - an object (or a function returning one): validates it; relative paths resolve against `baseDir`
 *   (default: the working directory).
 * Throws a `ConfigError` listing every problem at once.
 */
export async function loadConfig(
  input?: string | ConfigExport,
  options: { cwd?: string; baseDir?: string } = {},
): Promise<ResolvedConfig> {
  const cwd = options.cwd ?? process.cwd();
  if (typeof input === 'string' || input === undefined) {
    const { file, value } = await readConfigFile(input === undefined ? undefined : resolve(cwd, input), cwd);
    return resolveConfig(value, { file, baseDir: dirname(file) });
  }
  const value = typeof input === 'function' ? await input() : input;
  return resolveConfig(value, { baseDir: options.baseDir ?? cwd });
}

/** Validates a raw config value (from a file or an object) and resolves it. */
export async function resolveConfig(value: unknown, where: { file?: string; baseDir: string }): Promise<ResolvedConfig> {
  const parsed = configSchema.safeParse(value);
  const rawIssues = [...protoKeys(value), ...(where.file !== undefined && isDataFile(where.file) ? numericModes(value) : [])];
  if (!parsed.success || rawIssues.length > 0) {
    const issues = parsed.success ? [] : toConfigIssues(parsed.error, configSchema, value);
    throw new ConfigError([...issues, ...rawIssues], where.file);
  }
  const config = parsed.data;
  const at = (p: string): string => resolve(where.baseDir, p);

  const sources: Record<string, SourceConfig | Source> = {};
  for (const [name, source] of Object.entries(config.sources)) {
    sources[name] = 'type' in source ? resolveSourcePaths(source, at) : source;
  }

  const issues: ConfigIssue[] = [];
  const allSources = Object.keys(config.sources);
  const names = new Map<string, number>();
  const destinations = new Map<string, number>();
  const templates: ResolvedTemplate[] = [];
  for (const [index, t] of config.templates.entries()) {
    const path = (key: string): string => formatPath(['templates', index, key]);
    const destination = at(t.destination);
    const name = t.name ?? basename(destination);
    const sameName = names.get(name);
    if (sameName !== undefined) {
      issues.push({ path: path('name'), message: `templates[${sameName}] is also named "${name}"; give each template a distinct "name"` });
    }
    names.set(name, index);
    const sameDestination = destinations.get(destination);
    if (sameDestination !== undefined) {
      issues.push({ path: path('destination'), message: `templates[${sameDestination}] writes the same file ${destination}` });
    }
    destinations.set(destination, index);

    const source = t.source === undefined ? undefined : at(t.source);
    let text: string;
    let file: string;
    if (source === undefined) {
      text = t.contents ?? '';
      file = `<inline ${formatPath(['templates', index, 'contents'])}>`;
    } else {
      file = source;
      try {
        text = await readFile(source, 'utf8');
      } catch (err) {
        issues.push({ path: path('source'), message: `cannot read template ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
        continue;
      }
    }
    let compiled: CompiledTemplate;
    try {
      compiled = compileTemplate({ name, text, file, root: source === undefined ? where.baseDir : dirname(source), strict: t.strict });
    } catch (err) {
      if (!RosterdError.is(err)) throw err;
      issues.push({ path: path(source === undefined ? 'contents' : 'source'), message: err.detail });
      continue;
    }
    const { name: _name, source: _source, contents: _contents, sources: selected, reload, ...rest } = t;
    templates.push({ ...rest, reload: resolveReload(reload, at), name, index, source, destination, sources: selected ?? allSources, compiled });
  }
  if (issues.length > 0) throw new ConfigError(issues, where.file);
  return { file: where.file, baseDir: where.baseDir, sources, templates, http: config.http, warnInterval: config.warnInterval };
}

// --- internal ---

/** `rosterd`, `rosterd/serf` and `rosterd/haproxy` as this copy's own modules (built `.js`, or `.ts` when run from source). */
function selfAliases(): Record<string, string> {
  const own = (path: string): string => {
    const js = fileURLToPath(new URL(`${path}.js`, import.meta.url));
    return existsSync(js) ? js : js.replace(/\.js$/, '.ts');
  };
  return { 'rosterd/serf': own('../serf/index'), 'rosterd/haproxy': own('../haproxy/index'), rosterd: own('../index') };
}

/** The paths a source config holds (a member file; etcd's TLS and password files), made absolute. */
function resolveSourcePaths(source: SourceConfig, at: (path: string) => string): SourceConfig {
  if (source.type === 'file') return { ...source, path: at(source.path) };
  if (source.type !== 'etcd') return source;
  const resolved = { ...source };
  if (source.auth?.passwordFile !== undefined) resolved.auth = { ...source.auth, passwordFile: at(source.auth.passwordFile) };
  if (source.tls !== undefined) {
    const { ca, cert, key } = source.tls;
    resolved.tls = { ...(ca && { ca: at(ca) }), ...(cert && { cert: at(cert) }), ...(key && { key: at(key) }) };
  }
  return resolved;
}

/** The HAProxy reloader's socket and pid file are paths too: relative to the config file. */
function resolveReload(reload: ParsedTemplate['reload'], at: (path: string) => string): ParsedTemplate['reload'] {
  if (!isHaproxyReload(reload)) return reload;
  const { masterSocket, pidFile, stateFile, ...rest } = reload.haproxy;
  return {
    haproxy: {
      ...rest,
      masterSocket: at(masterSocket),
      ...(pidFile === undefined ? {} : { pidFile: at(pidFile) }),
      ...(stateFile === undefined ? {} : { stateFile: at(stateFile) }),
    },
  };
}

/**
 * A key named `__proto__` (JSON and YAML make it an ordinary key) would vanish silently: the schema builds
 * plain objects, where assigning it sets the prototype instead, so a source or a tag filter of that name would
 * not exist. Such a key is refused wherever it is, with its path.
 */
function protoKeys(value: unknown, path: PropertyKey[] = [], seen = new WeakSet<object>()): ConfigIssue[] {
  if (typeof value !== 'object' || value === null || isSource(value) || seen.has(value)) return [];
  seen.add(value);
  const issues: ConfigIssue[] = [];
  if (Object.hasOwn(value, '__proto__')) {
    issues.push({ path: formatPath([...path, '__proto__']), message: '"__proto__" cannot be a name here (JavaScript objects reserve it); choose another' });
  }
  for (const [key, child] of Object.entries(value)) issues.push(...protoKeys(child, [...path, Array.isArray(value) ? Number(key) : key], seen));
  return issues;
}

/** YAML, JSON and extension-less files: configs written as data rather than code. */
function isDataFile(file: string): boolean {
  return !/\.[cm]?[jt]s$/.test(file);
}

/**
 * In a YAML or JSON config a numeric `perms` is ambiguous: YAML 1.2 reads `0644` as the decimal 644, and a
 * `440` written as in chmod would be installed as mode 0670. Only a quoted octal string is accepted there.
 */
function numericModes(value: unknown): ConfigIssue[] {
  const templates = (value as { templates?: unknown } | null)?.templates;
  if (!Array.isArray(templates)) return [];
  return templates.flatMap((t: unknown, index) => {
    const perms = (t as { perms?: unknown } | null)?.perms;
    if (typeof perms !== 'number') return [];
    const digits = String(perms).padStart(4, '0');
    return [{ path: formatPath(['templates', index, 'perms']), message: `write the mode as a quoted octal string, e.g. "${digits}": a number is ambiguous in YAML and JSON` }];
  });
}

async function readConfigFile(file: string | undefined, cwd: string): Promise<{ file: string; value: unknown }> {
  // jiti loads TypeScript and JavaScript configs on Node 20 without a temp file next to them, with no
  // module cache (so that a SIGHUP reload sees the edited file), and resolves `import ... from 'rosterd'`
  // to this very copy of rosterd, wherever the config lives (a global install has no node_modules there).
  const jiti = createJiti(import.meta.url, { moduleCache: false, fsCache: false, alias: selfAliases() });
  const loadCode: Loader = async (path) => {
    try {
      return await jiti.import(path, { default: true });
    } catch (err) {
      const reason = (err as Error).message.replace(/\s*\n\s*/g, ' ');
      throw new ConfigError([{ path: '', message: `cannot load the config: ${reason}` }], path, { cause: err });
    }
  };
  const explorer = cosmiconfig('renderer', {
    searchStrategy: 'none',
    searchPlaces: [...CONFIG_SEARCH_PLACES],
    loaders: { '.ts': loadCode, '.mts': loadCode, '.cts': loadCode, '.js': loadCode, '.mjs': loadCode, '.cjs': loadCode },
    cache: false,
  });
  let result;
  try {
    result = file === undefined ? await explorer.search(cwd) : await explorer.load(file);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? 'config file not found' : (err as Error).message.replace(/^(?:YAMLException|Error): /, '');
    throw new ConfigError([{ path: '', message }], file, { cause: err });
  }
  if (result === null) {
    throw new ConfigError([{ path: '', message: `no config file found in ${cwd} (looked for ${CONFIG_SEARCH_PLACES.join(', ')}); pass -c FILE` }]);
  }
  if (result.isEmpty) throw new ConfigError([{ path: '', message: 'the config file is empty' }], result.filepath);
  let value: unknown = result.config;
  if (typeof value === 'function') value = await (value as () => unknown)();
  return { file: result.filepath, value };
}
