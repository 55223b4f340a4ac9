import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, copyFile, mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * Podman for tests that build and run `docker/` without a Docker engine or an image registry.
 *
 * Every podman command of a run reads one containers.conf written by the run (`CONTAINERS_CONF`), which
 * holds the settings this kind of machine needs: the `runc` runtime (crun fails with cgroups in hybrid mode),
 * lower ulimits (podman's defaults exceed what the machine allows), and the netavark network backend, whose
 * aardvark-dns resolves container names as Compose's DNS does. Base images are made locally: Debian bookworm
 * from debootstrap, trimmed like `debian:bookworm-slim`, and on top of it the host's own Node, npm and CA
 * bundle (npm reaches its registry through a proxy that only that bundle trusts).
 *
 * One more setting is made on the host: netavark 1.4 leaves a network's bridge to take the lowest MAC address
 * of its ports, so the bridge's address changes when a container with a lower one joins, and every container
 * that had the old one in its ARP cache loses its traffic through the gateway (DNS, replies on a published
 * port) for 30 to 60 s, until that entry expires (fixed upstream in late 2023: containers/netavark#833). `run()`
 * therefore pins the bridge's address (`ip link set dev <bridge> address <its own address>`) once the first
 * container has brought the bridge up.
 *
 * Everything a run makes carries its name: containers, networks and images are `<run>-…`, and every image,
 * the intermediate ones of a multi-stage build included, has the label `rosterd-test.run=<run>`, so that
 * `cleanup()` removes exactly what the run made, whatever state it was left in.
 */

const execFileAsync = promisify(execFile);

/** The podman binary: `$PODMAN_BIN`, else `podman` from the PATH. */
export const PODMAN_BIN = process.env.PODMAN_BIN ?? 'podman';
/** Where debootstrap fetches Debian from: `$ROSTERD_TEST_DEBIAN_MIRROR`, else deb.debian.org. */
export const DEBIAN_MIRROR = process.env.ROSTERD_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
/**
 * Set `ROSTERD_TEST_KEEP_BASE_IMAGES=1` to keep the two base images after a run and reuse them in the next
 * (they are then named `localhost/rosterd-test-base-*` and rebuilt when the host's Node, npm or CA bundle
 * changed). Without it every run makes its own and removes them, as CI does.
 */
export const KEEP_BASE_IMAGES = process.env.ROSTERD_TEST_KEEP_BASE_IMAGES === '1';

const RUN_LABEL = 'rosterd-test.run';
/** The names of kept base images (`KEEP_BASE_IMAGES`). */
const KEPT_BASE = 'localhost/rosterd-test-base';
const isKeptBase = (image: string): boolean => image.startsWith(`${KEPT_BASE}-`);
const INPUTS_LABEL = 'rosterd-test.base-inputs';
const CONTAINERS_CONF = `# Written by rosterd's tests for their own podman commands.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "netavark"

[engine]
runtime = "runc"
`;

/** The base images for `docker/Dockerfile`'s `NODE_IMAGE` and `RUNTIME_IMAGE` build arguments. */
export interface BaseImages {
  /** Debian bookworm, trimmed like `debian:bookworm-slim`. */
  runtime: string;
  /** `runtime` plus Node and npm in /usr/local, like `node:20-bookworm-slim`, and the host's CA bundle. */
  node: string;
  /** False when kept images from an earlier run were reused. */
  built: boolean;
  /** Seconds spent making them (0 when reused). */
  seconds: number;
}

/** One test run's podman: its settings, its names, and what it made. */
export interface Podman {
  /** The run's name: the prefix of everything it makes. */
  readonly prefix: string;
  /** Runs `podman ARGS` with the run's settings; rejects with podman's stderr when it fails. */
  exec(args: readonly string[], options?: { timeout?: number }): Promise<string>;
  /** Makes (or reuses, see `KEEP_BASE_IMAGES`) the base images. */
  baseImages(): Promise<BaseImages>;
  /**
   * `podman build --network host` of one target of a Dockerfile, tagged `localhost/<run>-<target>`, with the
   * run's label on every image it commits. Resolves with the tag and podman's output.
   */
  build(options: { context: string; file: string; target: string; args?: Record<string, string>; timeout?: number }): Promise<{ image: string; output: string }>;
  /** The layers of an image, bottom first. */
  layers(image: string): Promise<string[]>;
  /** An image's size in bytes, as `podman images` reports it. */
  size(image: string): Promise<number>;
  /** `podman network create <run>-<name>`; resolves with the network's name. */
  network(name: string): Promise<string>;
  /** `podman run -d --name <run>-<name> ARGS`; resolves with the container's name. */
  run(name: string, args: readonly string[]): Promise<string>;
  /** A container's output so far (`podman logs`), or the reason it cannot be read. */
  logs(container: string): Promise<string>;
  /** Removes every container, network and image of the run, then its settings. Tolerates what is already gone. */
  cleanup(): Promise<void>;
}

/**
 * Starts a run: writes its containers.conf into `dir` (a temporary directory the caller owns; base images are
 * made in it too).
 */
export async function createPodman(dir: string): Promise<Podman> {
  const run = `rosterd-test-${process.pid}-${Date.now().toString(36)}`;
  const conf = join(dir, 'containers.conf');
  await writeFile(conf, CONTAINERS_CONF);
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const containers = new Set<string>();
  const networks = new Set<string>();
  /** Networks whose bridge's MAC address is pinned. */
  const pinned = new Set<string>();
  const named = new Set<string>();

  const exec = async (args: readonly string[], { timeout = 120_000 } = {}): Promise<string> => {
    try {
      const { stdout } = await execFileAsync(PODMAN_BIN, args, { env, timeout, maxBuffer: 64 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      const { stderr, stdout, message } = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`podman ${args.join(' ')} failed: ${(stderr || message).trim()}${stdout ? `\n--- output ---\n${stdout.slice(-4000)}` : ''}`, { cause: err });
    }
  };
  const exists = (kind: 'image' | 'network' | 'container', name: string): Promise<boolean> =>
    exec([kind, 'exists', name]).then(
      () => true,
      () => false,
    );
  const imageLabel = async (image: string, label: string): Promise<string | undefined> => {
    const out = await exec(['image', 'inspect', '--format', `{{index .Labels "${label}"}}`, image]).catch(() => '');
    return out.trim() || undefined;
  };

  const pinBridgeAddress = async (network: string): Promise<void> => {
    const bridge = (await exec(['network', 'inspect', '--format', '{{.NetworkInterface}}', network])).trim();
    const sys = `/sys/class/net/${bridge}`;
    // addr_assign_type 3: set by hand, which the kernel then keeps (1: random, following the ports).
    if ((await readFile(`${sys}/addr_assign_type`, 'utf8')).trim() !== '3') {
      await command('ip', ['link', 'set', 'dev', bridge, 'address', (await readFile(`${sys}/address`, 'utf8')).trim()], 10_000);
    }
    pinned.add(network);
  };

  const baseImages = async (): Promise<BaseImages> => {
    const inputs = await baseInputs();
    const prefix = KEEP_BASE_IMAGES ? KEPT_BASE : `localhost/${run}-base`;
    const runtime = `${prefix}-debian:bookworm`;
    const node = `${prefix}-node:20-bookworm`;
    if (KEEP_BASE_IMAGES && (await imageLabel(node, INPUTS_LABEL)) === inputs.digest && (await exists('image', runtime))) {
      return { runtime, node, built: false, seconds: 0 };
    }
    // Kept images made from other inputs go first, so that no untagged copy is left behind.
    if (KEEP_BASE_IMAGES) for (const image of [node, runtime]) if (await exists('image', image)) await exec(['rmi', '-f', image]);
    const started = Date.now();
    const label = KEEP_BASE_IMAGES ? `${INPUTS_LABEL}=${inputs.digest}` : `${RUN_LABEL}=${run}`;
    const work = join(dir, 'base');
    await rm(work, { recursive: true, force: true });
    const rootfs = join(work, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    // minbase: essential packages and apt, which the Dockerfile's `apt-get install` needs.
    await command('debootstrap', ['--variant=minbase', 'bookworm', rootfs, DEBIAN_MIRROR], 600_000);
    await slimDown(rootfs);
    const tarball = join(work, 'rootfs.tar');
    await command('tar', ['-C', rootfs, '-cf', tarball, '.'], 120_000);
    await rm(rootfs, { recursive: true, force: true });
    named.add(runtime);
    await exec(['import', '--change', `LABEL ${label}`, '--change', 'CMD ["bash"]', tarball, runtime], { timeout: 300_000 });
    await rm(tarball, { force: true });

    // The host's Node where the official image has it, npm beside it, and the CA bundle npm needs.
    const context = join(work, 'node');
    await mkdir(context, { recursive: true });
    await copyFile(inputs.node, join(context, 'node'));
    await cp(inputs.npm, join(context, 'npm'), { recursive: true, verbatimSymlinks: true });
    await copyFile(inputs.caBundle, join(context, 'ca-certificates.crt'));
    await writeFile(
      join(context, 'Containerfile'),
      `FROM ${runtime}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
`,
    );
    named.add(node);
    await exec(['build', '--label', label, '-t', node, context], { timeout: 300_000 });
    await rm(work, { recursive: true, force: true });
    return { runtime, node, built: true, seconds: (Date.now() - started) / 1000 };
  };

  const podman: Podman = {
    prefix: run,
    exec,
    baseImages,
    async build({ context, file, target, args = {}, timeout = 600_000 }) {
      const image = `localhost/${run}-${target}`;
      named.add(image);
      const buildArgs = Object.entries(args).flatMap(([key, value]) => ['--build-arg', `${key}=${value}`]);
      const output = await exec(['build', '--network', 'host', '--label', `${RUN_LABEL}=${run}`, '-f', file, '--target', target, ...buildArgs, '-t', image, context], { timeout });
      return { image, output };
    },
    async layers(image) {
      return JSON.parse(await exec(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', image])) as string[];
    },
    async size(image) {
      return Number((await exec(['image', 'inspect', '--format', '{{.Size}}', image])).trim());
    },
    async network(name) {
      const network = `${run}-${name}`;
      networks.add(network);
      await exec(['network', 'create', '--label', `${RUN_LABEL}=${run}`, network]);
      return network;
    },
    async run(name, args) {
      const container = `${run}-${name}`;
      containers.add(container);
      await exec(['run', '-d', '--name', container, '--label', `${RUN_LABEL}=${run}`, ...args]);
      for (const network of networks) if (!pinned.has(network) && args.includes(network)) await pinBridgeAddress(network);
      return container;
    },
    async logs(container) {
      // The container's stdout and stderr come back on podman's own.
      try {
        const { stdout, stderr } = await execFileAsync(PODMAN_BIN, ['logs', container], { env, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
        return stderr ? `${stdout}--- stderr ---\n${stderr}` : stdout;
      } catch (err) {
        return `(no logs: ${(err as Error).message})`;
      }
    },
    async cleanup() {
      const problems: string[] = [];
      const attempt = (what: Promise<unknown>): Promise<void> => what.then(
        () => undefined,
        (err: Error) => void problems.push(err.message),
      );
      // By label as well as by name: a container started by hand while debugging a run is the run's too.
      const labelled = (list: string[]): Promise<string[]> =>
        exec([...list, '--filter', `label=${RUN_LABEL}=${run}`]).then(
          (out) => out.split('\n').filter(Boolean),
          () => [],
        );
      for (const container of new Set([...containers, ...(await labelled(['ps', '-a', '--format', '{{.Names}}']))])) {
        // A container that is stopping as it is removed makes `rm` fail ("container state improper"): try again,
        // and count it as left behind only when it is still there.
        for (let tries = 1; await exists('container', container); tries++) {
          const removed = await exec(['rm', '-f', '-t', '2', container], { timeout: 60_000 }).then((): true => true, (err: Error) => err);
          if (removed !== true && tries === 3) {
            problems.push(removed.message);
            break;
          }
          if (removed !== true) await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
      for (const network of new Set([...networks, ...(await labelled(['network', 'ls', '--format', '{{.Name}}']))])) {
        if (await exists('network', network)) await attempt(exec(['network', 'rm', '-f', network]));
      }
      // Named images first (kept base images are only named, and stay), then every image with the run's label.
      for (const image of named) if (!(KEEP_BASE_IMAGES && isKeptBase(image)) && (await exists('image', image))) await attempt(exec(['rmi', '-f', image]));
      const leftovers = await labelled(['images', '-a', '-q']);
      if (leftovers.length > 0) await attempt(exec(['rmi', '-f', ...new Set(leftovers)]));
      await rm(join(dir, 'base'), { recursive: true, force: true });
      if (problems.length > 0) throw new Error(`podman clean-up of ${run} left something behind:\n${problems.join('\n')}`);
    },
  };
  return podman;
}

/** The host's Node binary, npm and CA bundle, and a digest of them (a kept base image is rebuilt when it changes). */
async function baseInputs(): Promise<{ node: string; npm: string; caBundle: string; digest: string }> {
  const node = await realpath(process.execPath);
  // npm lives in lib/node_modules beside bin/ in every layout Node installs with (tarball, Debian package, nvm).
  const npm = resolve(dirname(node), '..', 'lib', 'node_modules', 'npm');
  const caBundle = '/etc/ssl/certs/ca-certificates.crt';
  const hash = createHash('sha256');
  hash.update(`${process.version}\n${DEBIAN_MIRROR}\n${CONTAINERS_CONF}\n`);
  hash.update(await readFile(join(npm, 'package.json')));
  hash.update(await readFile(caBundle));
  return { node, npm, caBundle, digest: hash.digest('hex').slice(0, 16) };
}

/**
 * Trims a debootstrap root file system the way `debian:bookworm-slim` is trimmed: no package lists, no
 * downloaded packages, no documentation, man pages or translations, and dpkg told to skip them in every later
 * install too (206 MB → 82 MB).
 */
async function slimDown(rootfs: string): Promise<void> {
  await writeFile(
    join(rootfs, 'etc/dpkg/dpkg.cfg.d/slim'),
    ['path-exclude /usr/share/doc/*', 'path-include /usr/share/doc/*/copyright', 'path-exclude /usr/share/man/*', 'path-exclude /usr/share/info/*', 'path-exclude /usr/share/locale/*', 'path-include /usr/share/locale/locale.alias', ''].join('\n'),
  );
  await writeFile(
    join(rootfs, 'etc/apt/apt.conf.d/slim'),
    ['DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };', 'Dir::Cache::pkgcache "";', 'Dir::Cache::srcpkgcache "";', ''].join('\n'),
  );
  await command('sh', [
    '-c',
    `cd "$1" && rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* usr/share/man/* usr/share/info/* \
 && find usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete && find usr/share/doc -mindepth 1 -type d -empty -delete \
 && find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +`,
    'slim',
    rootfs,
  ], 60_000);
}

async function command(file: string, args: string[], timeout: number): Promise<void> {
  try {
    await execFileAsync(file, args, { timeout, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const { stderr, stdout, message } = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${message}\n${(stderr || stdout || '').slice(-4000)}`, { cause: err });
  }
}
