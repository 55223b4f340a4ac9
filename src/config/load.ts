import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { createRequire } from 'node:module';
import type { Loader } from 'cosmiconfig';
import type { TransformOptions, TransformResult } from 'jiti';
import { ConfigError, RosterdError, TemplateError, type ConfigIssue } from '../errors.js';
import { compileTemplate, type CompiledTemplate } from '../render/engine.js';
import { isSource, type Source } from '../sources/types.js';
import type { ConfigExport } from './define.js';
import { formatPath, toConfigIssues } from './issues.js';
import { isHaproxyReload } from './reload.js';
import { configSchema, type FleetConfig, type ForEach, type HistoryConfig, type ParsedTemplate, type SourceConfig } from './schema.js';

/** A template after loading: absolute paths, defaults filled, text compiled. */
export interface ResolvedTemplate extends Omit<ParsedTemplate, 'name' | 'source' | 'contents' | 'sources'> {
  readonly name: string;
  /** Position in the config's `templates` list. */
  readonly index: number;
  /** The template file (absolute), when the template came from a file. */
  readonly source: string | undefined;
  /** The output file (absolute); for a fan-out, its directory. */
  readonly destination: string;
  /** A fan-out template (`forEach`): one file per item, each at its own rendered destination. */
  readonly fanOut: FanOutConfig | undefined;
  /** The sources that feed `members`, in config order. */
  readonly sources: readonly string[];
  readonly compiled: CompiledTemplate;
}

/** How a fan-out template names its files. */
export interface FanOutConfig {
  readonly forEach: ForEach;
  /**
   * The directory the files must stay in (absolute): the destination's directory part before its first `{{` or
   * `{%`. It is static, so a member's data can only choose a name below it.
   */
  readonly directory: string;
  /** The destination as written in the config, compiled: it renders each file's path (relative to the config's directory). */
  readonly destination: CompiledTemplate;
  /** The config's directory: a rendered destination is relative to it. */
  readonly baseDir: string;
  /** Destinations of the config's other templates inside `directory`: no item may write one. */
  readonly reserved: readonly string[];
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
  /** The render history (its `file` absolute). */
  readonly history: Readonly<HistoryConfig>;
  /** The fleet view over Serf (durations in ms). */
  readonly fleet: Readonly<FleetConfig>;
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
  // Without zod's JIT: a config is parsed once (and again on SIGHUP), and compiling a fast path for every object
  // schema the first time costs more than it saves (about 3 ms of every `validate` and `render --once`).
  const parsed = configSchema.safeParse(value, { jitless: true });
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
  const fanOutDirectories = new Map<string, number>();
  const templates: ResolvedTemplate[] = [];
  for (const [index, t] of config.templates.entries()) {
    const path = (key: string): string => formatPath(['templates', index, key]);
    const fanOut = fanOutDestination(t.destination, t.forEach, at);
    if (typeof fanOut === 'string') {
      issues.push({ path: path('destination'), message: fanOut });
      continue;
    }
    const destination = fanOut?.directory ?? at(t.destination);
    const name = t.name ?? (fanOut ? t.destination : basename(destination));
    const sameName = names.get(name);
    if (sameName !== undefined) {
      issues.push({ path: path('name'), message: `templates[${sameName}] is also named "${name}"; give each template a distinct "name"` });
    }
    names.set(name, index);
    if (fanOut) {
      const overlapping = [...fanOutDirectories].find(([other]) => within(destination, other) || within(other, destination));
      if (overlapping) {
        issues.push({ path: path('destination'), message: `templates[${overlapping[1]}] fans out into ${overlapping[0]}: two fan-outs cannot share a directory (each keeps a record of its files there)` });
      }
      fanOutDirectories.set(destination, index);
    } else {
      const sameDestination = destinations.get(destination);
      if (sameDestination !== undefined) {
        issues.push({ path: path('destination'), message: `templates[${sameDestination}] writes the same file ${destination}` });
      }
      destinations.set(destination, index);
    }
    let destinationTemplate: CompiledTemplate | undefined;
    if (fanOut) {
      try {
        // Always strict: an undefined variable in a path would put many items in one file.
        destinationTemplate = compileTemplate({ name, text: t.destination, file: `<${path('destination')}>`, root: where.baseDir, strict: true });
      } catch (err) {
        if (!RosterdError.is(err)) throw err;
        issues.push({ path: path('destination'), message: err.detail, ...excerptOf(err) });
        continue;
      }
    }

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
      issues.push({ path: path(source === undefined ? 'contents' : 'source'), message: err.detail, ...excerptOf(err) });
      continue;
    }
    const { name: _name, source: _source, contents: _contents, sources: selected, reload, ...rest } = t;
    const fanOutConfig = fanOut && destinationTemplate ? { forEach: fanOut.forEach, directory: fanOut.directory, baseDir: where.baseDir, destination: destinationTemplate, reserved: [] } : undefined;
    templates.push({ ...rest, reload: resolveReload(reload, at), name, index, source, destination, fanOut: fanOutConfig, sources: selected ?? allSources, compiled });
  }
  if (issues.length > 0) throw new ConfigError(issues, where.file);
  // Known once every template is read: the single destinations inside each fan-out's directory.
  const reserved = (t: ResolvedTemplate): ResolvedTemplate =>
    t.fanOut ? { ...t, fanOut: { ...t.fanOut, reserved: [...destinations.keys()].filter((d) => within(d, t.destination)) } } : t;
  const history = config.history.file === undefined ? config.history : { ...config.history, file: at(config.history.file) };
  return { file: where.file, baseDir: where.baseDir, sources, templates: templates.map(reserved), http: config.http, warnInterval: config.warnInterval, history, fleet: config.fleet };
}

// --- internal ---

/**
 * A fan-out template's directory, or why its destination is not a fan-out destination (and, without `forEach`,
 * why a destination must not look like one). Undefined for a plain destination.
 */
function fanOutDestination(destination: string, forEach: ForEach | undefined, at: (path: string) => string): { forEach: ForEach; directory: string } | string | undefined {
  const first = destination.search(/\{\{|\{%/);
  if (forEach === undefined) {
    return first === -1 ? undefined : 'holds a Liquid tag, but only a template with forEach renders its destination (forEach: member, or forEach: { groupBy: <tag> })';
  }
  if (first === -1) return 'with forEach, the destination must vary per item, e.g. out/{{ member.name | slug }}.conf';
  if (destination.endsWith('/')) return 'ends in "/": a destination names a file, e.g. out/{{ member.name | slug }}.conf';
  const slash = destination.lastIndexOf('/', first);
  if (slash <= 0 && !destination.startsWith('/')) {
    return 'the directory before the first {{ must be written out, e.g. out/{{ member.name | slug }}.conf: the files must stay inside it';
  }
  const directory = at(destination.slice(0, slash + 1));
  if (directory === resolve('/')) return 'the directory before the first {{ must not be the root directory';
  return { forEach, directory };
}

/** True when `path` is strictly inside `directory`. */
function within(path: string, directory: string): boolean {
  return path.startsWith(directory.endsWith(sep) ? directory : directory + sep);
}

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
    // Octal digits only (`440`): the digits were meant as the mode. Any other number (`384`) was a decimal mode.
    const digits = (/^[0-7]+$/.test(String(perms)) ? String(perms) : perms.toString(8)).padStart(4, '0');
    return [{ path: formatPath(['templates', index, 'perms']), message: `write the mode as a quoted octal string, e.g. "${digits}": a number is ambiguous in YAML and JSON` }];
  });
}

/**
 * jiti's own transform keeps its Babel bundle (1.5 MB of source, ~9 MB of heap) loaded for the life of the
 * process, where every major GC of a long-running daemon walks it. The same bundle, required here and let go
 * once the config is loaded, is garbage after that; a SIGHUP reload loads it again.
 */
function releasedTransform(): { run: (options: TransformOptions) => TransformResult; release: () => void } {
  // A require of its own, so that the loaded module is not kept as a child of a long-lived one.
  const require = createRequire(import.meta.url);
  // `jiti` resolves to lib/jiti.cjs; its transform is dist/babel.cjs, as jiti's own lazy loader finds it.
  const babelPath = join(dirname(require.resolve('jiti')), '..', 'dist', 'babel.cjs');
  let transform: ((options: TransformOptions) => TransformResult) | undefined;
  let before: typeof Error.prepareStackTrace;
  let installed: typeof Error.prepareStackTrace;
  return {
    run: (options) => {
      if (transform) return transform(options);
      before = Error.prepareStackTrace;
      transform = require(babelPath) as (options: TransformOptions) => TransformResult;
      try {
        return transform(options);
      } finally {
        installed = Error.prepareStackTrace;
      }
    },
    release: () => {
      if (!transform) return;
      delete require.cache[babelPath];
      // Babel installs its own stack trace formatter on its first transform, and that holds all of Babel: put
      // back the one before it, unless something replaced Babel's since.
      if (installed !== before && Error.prepareStackTrace === installed) Error.prepareStackTrace = before;
      transform = undefined;
    },
  };
}

async function readConfigFile(file: string | undefined, cwd: string): Promise<{ file: string; value: unknown }> {
  // jiti loads TypeScript and JavaScript configs on Node 20 without a temp file next to them, with no
  // module cache (so that a SIGHUP reload sees the edited file), and resolves `import ... from 'rosterd'`
  // to this very copy of rosterd, wherever the config lives (a global install has no node_modules there).
  // It is loaded for such a config only: a YAML or JSON one does without it.
  const loadCode: Loader = async (path) => {
    try {
      const { createJiti } = await import('jiti');
      const transform = releasedTransform();
      const jiti = createJiti(import.meta.url, { moduleCache: false, fsCache: false, alias: selfAliases(), transform: transform.run });
      try {
        return await jiti.import(path, { default: true });
      } finally {
        transform.release();
      }
    } catch (err) {
      const reason = (err as Error).message.replace(/\s*\n\s*/g, ' ');
      throw new ConfigError([{ path: '', message: `cannot load the config: ${reason}` }], path, { cause: err });
    }
  };
  // The YAML parser the file source uses too (cosmiconfig's own would be a second copy), loaded for YAML only.
  const loadYaml: Loader = async (path, content) => {
    const { default: yaml } = await import('js-yaml');
    try {
      return yaml.load(content);
    } catch (err) {
      // As cosmiconfig says it.
      (err as Error).message = `YAML Error in ${path}:\n${(err as Error).message}`;
      throw err;
    }
  };
  // A YAML file given by name (`-c renderer.config.yaml`, the quickstart's and most containers' way) is read
  // here: cosmiconfig's eight modules and its look for a meta config took ~10 ms of every `render --once`. What
  // this does not read the way cosmiconfig would (a `$import`, a document that is not a mapping) goes to it.
  if (file !== undefined && /\.ya?ml$/.test(file) && basename(file).replace(/\.ya?ml$/, '') !== 'package') {
    const filepath = resolve(file);
    try {
      const contents = await readFile(filepath, 'utf8');
      // As cosmiconfig: a blank file is empty.
      const value = contents.trim() === '' ? undefined : await loadYaml(filepath, contents);
      if (value === undefined) throw new ConfigError([{ path: '', message: 'the config file is empty' }], filepath);
      if (typeof value === 'object' && value !== null && !Array.isArray(value) && !Object.hasOwn(value, '$import')) return { file: filepath, value };
    } catch (err) {
      throw readFailure(err, file);
    }
  }
  // Required, not imported: an ES module imports a CommonJS package only after scanning its source for names.
  const { cosmiconfig } = createRequire(import.meta.url)('cosmiconfig') as typeof import('cosmiconfig');
  const explorer = cosmiconfig('renderer', {
    searchStrategy: 'none',
    searchPlaces: [...CONFIG_SEARCH_PLACES],
    loaders: { '.ts': loadCode, '.mts': loadCode, '.cts': loadCode, '.js': loadCode, '.mjs': loadCode, '.cjs': loadCode, '.yaml': loadYaml, '.yml': loadYaml, noExt: loadYaml },
    cache: false,
  });
  let result;
  try {
    result = file === undefined ? await explorer.search(cwd) : await explorer.load(file);
  } catch (err) {
    throw readFailure(err, file);
  }
  if (result === null) {
    throw new ConfigError([{ path: '', message: `no config file found in ${cwd} (looked for ${CONFIG_SEARCH_PLACES.join(', ')}); pass -c FILE` }]);
  }
  if (result.isEmpty) throw new ConfigError([{ path: '', message: 'the config file is empty' }], result.filepath);
  let value: unknown = result.config;
  if (typeof value === 'function') value = await (value as () => unknown)();
  return { file: result.filepath, value };
}

/** A config file that cannot be read or parsed, as a config error. */
function readFailure(err: unknown, file: string | undefined): ConfigError {
  if (err instanceof ConfigError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const message = code === 'ENOENT' ? 'config file not found' : (err as Error).message.replace(/^(?:YAMLException|Error): /, '');
  return new ConfigError([{ path: '', message }], file, { cause: err });
}

/** A template error's source excerpt, as a config issue carries it. */
function excerptOf(error: RosterdError): { excerpt?: string } {
  return error instanceof TemplateError && error.excerpt !== undefined ? { excerpt: error.excerpt } : {};
}
