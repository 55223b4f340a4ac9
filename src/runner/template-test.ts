import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import type { ResolvedConfig, ResolvedTemplate } from '../config/load.js';
import { RosterdError, TemplateRunError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Member } from '../members/model.js';
import { unifiedDiff } from '../output/diff.js';
import { MANIFEST_NAME } from '../output/prune.js';
import { buildContext } from '../render/context.js';
import { RenderSandbox } from '../render/sandbox.js';
import { readMemberFile } from '../sources/member-file.js';
import { createSnapshotGate } from '../sources/snapshot.js';
import { runCheck } from './check.js';
import type { RefusedItem } from './events.js';
import { renderFanOut } from './fan-out.js';
import { guardRefusal } from './guards.js';

/**
 * `rosterd test`: every template rendered from fixture member files instead of the live sources, each output
 * checked (the template's `check` on a candidate in a temporary directory) and compared with a golden file.
 * Nothing is installed and nothing is reloaded; the destinations are not even read.
 *
 * Fixtures: `<fixtures>/<source name>.yaml` (or `.yml`, `.json`), in the member file format, read by the `file`
 * source's reader and passed through the same member gate as live snapshots. Golden files:
 * `<fixtures>/expected/<the destination relative to the config's directory>`; a destination outside that
 * directory maps to its absolute path without the leading `/` (`/etc/haproxy/haproxy.cfg` →
 * `expected/etc/haproxy/haproxy.cfg`).
 */

/** What `testTemplates` does besides comparing. */
export interface TemplateTestOptions {
  /** The fixtures directory. */
  fixtures: string;
  /** Write the golden files of outputs that differ (and remove those of fan-out files no longer rendered). */
  update: boolean;
  logger: Logger;
}

/** One output of a template, or one golden file without an output. */
export interface OutputVerdict {
  template: string;
  /** The golden file's path under `<fixtures>/expected/`. */
  golden: string;
  /**
   * `match`; `differs` (see `diff`; no golden file counts as empty and `diff` starts at `/dev/null`); `updated`
   * (differed, golden file written); `checkFailed` (see `error`); `unexpected`: a golden file in a fan-out's
   * directory that no file of the render matches; `removed`: such a file, removed by `update`.
   */
  status: 'match' | 'differs' | 'updated' | 'checkFailed' | 'unexpected' | 'removed';
  /** From the golden file to the rendered output (`--- a/<golden>`, `+++ b/<golden>`). */
  diff?: string;
  error?: RosterdError;
}

/** The outcome of `testTemplates`. */
export interface TemplateTestReport {
  outputs: OutputVerdict[];
  /** Templates that rendered nothing to compare: a render error or a guard's refusal. */
  failures: { template: string; error: RosterdError }[];
  /** Fan-out items whose destination was refused (they have no output). */
  refused: (RefusedItem & { template: string })[];
}

/**
 * Renders every template of `config` from the fixtures and compares each output with its golden file. Throws
 * an `E_USAGE` error when a source has no fixture (or an unreadable one), or two outputs map to one golden file.
 */
export async function testTemplates(config: ResolvedConfig, options: TemplateTestOptions): Promise<TemplateTestReport> {
  const snapshots = await readFixtures(config, options.fixtures, options.logger);
  const expected = join(options.fixtures, 'expected');
  const report: TemplateTestReport = { outputs: [], failures: [], refused: [] };
  const sandbox = new RenderSandbox();
  const candidates = await mkdtemp(join(tmpdir(), 'rosterd-test-'));
  try {
    const rendered: { template: ResolvedTemplate; golden: string; destination: string; content: string }[] = [];
    for (const template of config.templates) {
      try {
        const outputs = await renderOutputs(template, snapshots, sandbox);
        report.refused.push(...outputs.refused.map((r) => ({ ...r, template: template.name })));
        const refusal = guardRefusal(template, new Set(outputs.members.map((m) => `${m.source}/${m.name}`)), undefined);
        if (refusal) throw new TemplateRunError('E_GUARD', template.name, refusal);
        for (const file of outputs.files) rendered.push({ template, destination: file.destination, content: file.content, golden: goldenPath(config.baseDir, file.destination) });
      } catch (err) {
        if (!RosterdError.is(err)) throw err;
        report.failures.push({ template: template.name, error: err });
      }
    }
    const goldens = new Map<string, string>();
    for (const output of rendered) {
      const other = goldens.get(output.golden);
      if (other !== undefined) throw new RosterdError('E_USAGE', `${output.destination} and ${other} have the same golden file expected/${output.golden}`);
      goldens.set(output.golden, output.destination);
    }

    for (const output of rendered) {
      const { template, golden, destination, content } = output;
      const candidate = join(candidates, golden);
      await mkdir(dirname(candidate), { recursive: true });
      await writeFile(candidate, content, { mode: template.perms ?? 0o644 });
      const failure = await runCheck(template, { candidate, destination, cwd: dirname(candidate) }, options.logger.child({ template: template.name }));
      if (failure) {
        report.outputs.push({ template: template.name, golden, status: 'checkFailed', error: failure });
        continue;
      }
      const goldenFile = join(expected, golden);
      const before = await readFile(goldenFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (before === content) {
        report.outputs.push({ template: template.name, golden, status: 'match' });
        continue;
      }
      const diff = unifiedDiff(golden, before, content);
      if (options.update) {
        await mkdir(dirname(goldenFile), { recursive: true });
        await writeFile(goldenFile, content);
      }
      report.outputs.push({ template: template.name, golden, status: options.update ? 'updated' : 'differs', diff });
    }

    // A fan-out's golden files that no output of this render matches: a member or group that should be there.
    for (const template of config.templates) {
      if (!template.fanOut || report.failures.some((f) => f.template === template.name)) continue;
      for (const golden of await filesUnder(join(expected, goldenPath(config.baseDir, template.fanOut.directory)), expected)) {
        if (goldens.has(golden) || golden.endsWith(`${sep}${MANIFEST_NAME}`)) continue;
        if (options.update) await unlink(join(expected, golden));
        report.outputs.push({ template: template.name, golden, status: options.update ? 'removed' : 'unexpected' });
      }
    }
    return report;
  } finally {
    await sandbox.close();
    await rm(candidates, { recursive: true, force: true });
  }
}

/**
 * Where an output's golden file lives under `expected/`: the destination relative to the config's directory,
 * or, outside it, the absolute path without its leading `/`.
 */
export function goldenPath(baseDir: string, destination: string): string {
  const inside = relative(baseDir, destination);
  return inside !== '' && !inside.startsWith(`..${sep}`) && inside !== '..' ? inside : destination.replace(/^\/+/, '');
}

// --- internal ---

/** The fixture file names looked for, per source, in this order. */
const FIXTURE_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** Reads one fixture per source the templates use, each through the member gate. */
async function readFixtures(config: ResolvedConfig, fixtures: string, logger: Logger): Promise<Map<string, readonly Member[]>> {
  const needed = [...new Set(config.templates.flatMap((t) => t.sources))];
  const missing = needed.filter((source) => !FIXTURE_EXTENSIONS.some((ext) => existsSync(join(fixtures, source + ext))));
  if (missing.length > 0) {
    const looked = (source: string): string => FIXTURE_EXTENSIONS.map((ext) => source + ext).join(', ');
    throw new RosterdError('E_USAGE', `no fixture in ${fixtures} for ${missing.map((source) => `source "${source}" (looked for ${looked(source)})`).join('; ')}`);
  }
  const snapshots = new Map<string, readonly Member[]>();
  for (const source of needed) {
    const file = FIXTURE_EXTENSIONS.map((ext) => join(fixtures, source + ext)).find((path) => existsSync(path))!;
    let raw: unknown[];
    try {
      raw = await readMemberFile(source, file);
    } catch (err) {
      throw new RosterdError('E_USAGE', `fixture: ${(err as Error).message}`, { cause: err });
    }
    const log = logger.child({ source });
    const gate = createSnapshotGate(
      source,
      (members) => snapshots.set(source, members),
      (dropped) => log.warn({ member: dropped.member, reason: dropped.reason }, `member ${dropped.member} dropped: ${dropped.reason}`),
    );
    gate(raw);
  }
  return snapshots;
}

/** A template's outputs, rendered in the render process: one file, or a fan-out's files. */
async function renderOutputs(
  template: ResolvedTemplate,
  snapshots: ReadonlyMap<string, readonly Member[]>,
  sandbox: RenderSandbox,
): Promise<{ members: Member[]; files: { destination: string; content: string }[]; refused: RefusedItem[] }> {
  if (template.fanOut) return renderFanOut({ ...template, fanOut: template.fanOut }, snapshots, sandbox);
  const context = buildContext(snapshots, template.sources, template.env);
  return { members: context.members, files: [{ destination: template.destination, content: await sandbox.render(template.compiled, context) }], refused: [] };
}

/** Every regular file below `directory`, as paths relative to `base`. */
async function filesUnder(directory: string, base: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => relative(base, join(e.parentPath, e.name)));
}
