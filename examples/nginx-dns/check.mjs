#!/usr/bin/env node
/**
 * rosterd's `check` for an nginx include file: tests the whole nginx config as it would be with the candidate
 * installed, without touching the running one.
 *
 *   node check.mjs -p PREFIX -c MAIN_CONFIG [-e ERROR_LOG] CANDIDATE
 *
 * `nginx -t` only tests a whole config, and the installed main config still includes the *old* file. So this
 * copies MAIN_CONFIG into a fresh directory beside it, puts CANDIDATE next to the copy under the name the main
 * config includes it by (the destination's file name, from $ROSTERD_DESTINATION, which rosterd sets), and runs
 * `nginx -t -q -p PREFIX -c <copy> -e ERROR_LOG` (default PREFIX/logs/error.log): the flags the running
 * nginx was started with. The main config must include that file by a
 * relative path (relative paths in `include` are relative to the config's own directory), and nothing else
 * by a relative path. nginx's messages are passed on with the copy's paths replaced by the candidate's, and
 * its exit code is this script's.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string', short: 'p' },
    config: { type: 'string', short: 'c' },
    'error-log': { type: 'string', short: 'e' },
  },
});
const [candidate] = positionals;
const destination = process.env.ROSTERD_DESTINATION;
if (!values.prefix || !values.config || !candidate || !destination) {
  console.error('usage: ROSTERD_DESTINATION=FILE node check.mjs -p PREFIX -c MAIN_CONFIG [-e ERROR_LOG] CANDIDATE');
  process.exit(2);
}
const included = basename(destination);
const main = readFileSync(values.config, 'utf8');
if (!new RegExp(`^\\s*include\\s+${included.replaceAll('.', '\\.')}\\s*;`, 'm').test(main)) {
  console.error(`${values.config} does not include ${included} by a relative path: there is nothing to test the candidate in`);
  process.exit(2);
}

const scratch = mkdtempSync(join(dirname(values.config), '.check-'));
try {
  const copy = join(scratch, basename(values.config));
  copyFileSync(values.config, copy);
  copyFileSync(candidate, join(scratch, included));
  const errorLog = values['error-log'] ?? join(values.prefix, 'logs', 'error.log');
  const nginx = spawnSync('nginx', ['-t', '-q', '-p', values.prefix, '-c', copy, '-e', errorLog], { encoding: 'utf8' });
  if (nginx.error) throw nginx.error;
  const output = `${nginx.stdout}${nginx.stderr}`.replaceAll(join(scratch, included), candidate).replaceAll(copy, values.config);
  process.stderr.write(output);
  process.exitCode = nginx.status ?? 1;
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
