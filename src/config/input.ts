import type { SourceInput } from '../sources/registry.js';
import type { Source } from '../sources/types.js';
import type { DurationInput } from './fields.js';
import type { CommandInput, HaproxyReloadInput } from './reload.js';

/**
 * The config as a user writes it, documented key by key for hover help in `renderer.config.ts`. The
 * schema (`schema.ts`) is the truth; these interfaces say the same in a form whose JSDoc survives into the
 * published declarations, and test/config/input-types.test.ts checks that they equal `z.input` of the schema.
 */

/** A rosterd config: where members come from and what to render from them. */
export interface RosterdConfig {
  /**
   * Where members come from: name → `{ type: "file" | "serf" | "dns" | "etcd", … }` or a `Source` object.
   * A name becomes `sources.<name>` in templates, log fields and metric labels.
   */
  sources: Record<string, SourceInput | Source>;
  /** What to render: at least one template. */
  templates: TemplateInput[];
  /** The status endpoint (the status page, `/health`, `/ready`, `/metrics`, `/history`, `/fleet`). Default: off. */
  http?: {
    /** `host:port`, `[::1]:port`, or `:port` for every interface. @default "127.0.0.1:9465" */
    listen?: string;
  };
  /** How often to warn while a template waits for a source's first snapshot (at least 100ms). @default "10s" */
  warnInterval?: DurationInput;
  /** The render history, served by the status endpoint and, when `file` is given, written there. */
  history?: {
    /** Renders kept in memory per template (1–10,000). @default 100 */
    entries?: number;
    /** The largest diff kept per render, in bytes; 0 keeps none. @default 65536 */
    maxDiffBytes?: number;
    /** A JSON-lines file every render is appended to, relative to the config file. Default: none. */
    file?: string;
    /** Size in bytes at which the file is rotated to `<file>.1` (at least 4096). @default 10485760 */
    maxFileBytes?: number;
    /** Rotated files kept (`<file>.1` … `<file>.N`, 0–100); 0 starts the file afresh. @default 1 */
    keepFiles?: number;
  };
  /** The fleet view: what this rosterd tells its peers over Serf, and how it compares them. */
  fleet?: {
    /** The Serf sources answer the `rosterd-fleet` query with this rosterd's content hashes. @default true */
    answer?: boolean;
    /** Only rosterds of the same group answer each other: one group per set of load balancers that render alike. @default "default" */
    group?: string;
    /** With the status endpoint on: how often the daemon surveys its peers (at least 1s). @default "15s" */
    interval?: DurationInput;
    /** A rosterd that has differed from the majority for longer than this lags. @default "30s" */
    lag?: DurationInput;
    /** How long a survey waits for answers (at most 60s). @default "2s" */
    timeout?: DurationInput;
  };
}

/** One template of a config. */
export interface TemplateInput {
  /** Names the template in logs, events and metrics; unique. Default: the destination's file name. */
  name?: string;
  /** A Liquid template file, relative to the config file. Exactly one of `source` and `contents`. */
  source?: string;
  /** An inline Liquid template. Exactly one of `source` and `contents`. */
  contents?: string;
  /**
   * The file to write, relative to the config file; parents are created. With `forEach`, a Liquid template
   * rendered per item (`out/{{ member.name | slug }}.conf`).
   */
  destination: string;
  /** Fan-out: one file per member (`"member"`), or per value of a tag (`{ groupBy: "zone" }`). Default: one file. */
  forEach?: 'member' | { groupBy: string };
  /** Fan-out: remove the files of members or groups that are gone, only files this template wrote. @default false */
  prune?: boolean;
  /** Which sources feed `members` (merged) and `sources.<name>`. Default: all of them. */
  sources?: string[];
  /** Environment variables the template may read as `env.NAME`. Nothing else is exposed. @default [] */
  env?: string[];
  /**
   * Quiescence: render once changes have been quiet for `min`, at the latest `max` (default 4 × `min`) after
   * the first change; `false` renders as soon as a snapshot changes. The first render never waits. @default false
   */
  wait?: { min: DurationInput; max?: DurationInput } | false;
  /** Mode of the written file (`"0644"`, quoted in YAML and JSON). Default: the existing file's, else 0644. */
  perms?: number | string;
  /** Owner of the written file (needs root or CAP_CHOWN). Default: the existing file's owner. */
  uid?: number;
  /** Group of the written file. Default: the existing file's group. */
  gid?: number;
  /** Keep the previous file as `<destination>.bak`. @default false */
  backup?: boolean;
  /** Refuse to render with fewer members than this; the previous file stays. @default 0 */
  minMembers?: number;
  /** Refuse a render that drops more than this fraction (0–1) of the members last installed. Default: off. */
  maxShrink?: number;
  /** Runs on the candidate file before it is installed (argv without a shell, or a `sh -c` string); a failure means no install. */
  check?: CommandInput;
  /** Runs after the install: a command, or `{ haproxy: { masterSocket } }` for the confirmed HAProxy reload. A failure restores the previous file. */
  reload?: CommandInput | HaproxyReloadInput;
  /** Limit for each `check` and `reload`; the command's process group is killed after it. @default "30s" */
  timeout?: DurationInput;
  /** On a failed reload, put the previous file back. @default true */
  rollback?: boolean;
  /** An undefined variable or unknown filter is an error, not an empty string. @default true */
  strict?: boolean;
}
