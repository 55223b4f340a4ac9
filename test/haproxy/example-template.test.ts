import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/render/context.js';
import { compileTemplate, renderTemplate } from '../../src/render/engine.js';
import { sanitizeMembers } from '../../src/sources/snapshot.js';
import { HAPROXY_BIN } from '../helpers/haproxy.js';
import { tempDir } from '../helpers/tmp.js';

const TEMPLATE = fileURLToPath(new URL('../../examples/haproxy-serf/haproxy.cfg.liquid', import.meta.url));
const execFileAsync = promisify(execFile);

/** The lab's template, rendered from hostile member data, read as HAProxy reads it. */
describe('examples/haproxy-serf/haproxy.cfg.liquid', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let config: string;
  beforeAll(async () => {
    dir = await tempDir();
    const raw = [
      { name: 'web 1', address: '127.0.0.1', port: 9001, tags: { role: 'web', port: '9001' } },
      { name: 'web"2', address: '127.0.0.1', port: 9002, tags: { role: 'web', port: '9002', weight: 'backup' } },
      { name: 'web&3', address: '127.0.0.1', port: 9003, tags: { role: 'web', port: '9003', weight: '50' } },
      { name: 'web/4', address: '127.0.0.1', port: 9004, tags: { role: 'web', port: '9004', note: 'bind *:22' } },
      { name: 'lb', address: '127.0.0.1', tags: { role: 'lb' } },
    ];
    const members = sanitizeMembers(raw, 'cluster').members;
    const text = await readFile(TEMPLATE, 'utf8');
    const compiled = compileTemplate({ name: 'haproxy', text, file: TEMPLATE, strict: true });
    const env = { LAB_DIR: dir.path, LAB_HTTP_PORT: '18001', LAB_STATS_PORT: '18002' };
    config = await renderTemplate(compiled, buildContext(new Map([['cluster', members]]), ['cluster'], Object.keys(env), env));
    await writeFile(join(dir.path, 'haproxy.cfg'), config);
  });
  afterAll(async () => dir.cleanup());

  it('keeps reloads seamless: idle-close-on-response and hard-stop-after', () => {
    expect(config).toMatch(/^\s+option idle-close-on-response$/m);
    expect(config).toMatch(/^\s+hard-stop-after \d+s$/m);
  });

  it('takes no bind line from member data, and gives each web member one safe server line', () => {
    expect(config.match(/^\s+bind .*$/gm)).toEqual(['    bind 127.0.0.1:18001', '    bind 127.0.0.1:18002']);
    const servers = config.match(/^\s+server .*$/gm) ?? [];
    expect(servers).toHaveLength(4);
    for (const line of servers) expect(line).toMatch(/^ {4}server [A-Za-z0-9_.:-]+ 127\.0\.0\.1:900\d( weight \d+)?$/);
    // A weight tag that is not a number cannot add a keyword such as `backup`.
    expect(config).not.toContain('backup');
  });

  it('is a config HAProxy accepts', async () => {
    const { stdout } = await execFileAsync(HAPROXY_BIN, ['-c', '-f', join(dir.path, 'haproxy.cfg')]);
    expect(stdout).toContain('Configuration file is valid');
  });
});
