/**
 * Every rosterd option, with its default. Copy this file to `renderer.config.ts` (found automatically in
 * the working directory) or pass it with `rosterd -c FILE`. YAML and JSON configs take the same keys.
 *
 * Durations are milliseconds or text: '500ms', '2s', '1m', '1m30s'.
 * Relative paths resolve against the directory of this file.
 */
import { defineConfig } from 'rosterd';

export default defineConfig({
  // Where members come from, by name. A template's `members` merges the sources it lists.
  // Names start with a letter or "_" and hold letters, digits, "_" and "-".
  sources: {
    // A member file (JSON by `.json` extension, YAML otherwise), watched for changes:
    // a list of { name, address, port?, tags?, status? }, or { members: [...] }.
    seeds: {
      type: 'file',
      path: './members.yaml', // required
    },

    // A Serf agent's RPC interface (plain TCP, loopback unless you know better).
    cluster: {
      type: 'serf',
      rpcAddr: '127.0.0.1:7373', // default '127.0.0.1:7373'
      authKey: process.env.SERF_RPC_AUTH, // the agent's rpc_auth; sent only when set, never logged
      tags: { role: 'web' }, // keep members whose tags match these regular expressions (whole value); default: all
      status: ['alive'], // statuses to keep; default ['alive'] (others: 'leaving', 'left', 'failed')
      portTag: 'port', // the tag that holds a member's port; default 'port'
      monitor: true, // read the member list as soon as the agent's log shows a membership change; default true
      resyncDelay: '20ms', // wait after a log line or member event before the member list is re-read; default 20ms
      refreshInterval: '1s', // poll the member list at most this often (less on big clusters); false: off; default 1s
      connectTimeout: '5s', // default 5s
    },

    // DNS: SRV records (one member per target, port from the record), or A/AAAA records.
    web: {
      type: 'dns',
      name: '_http._tcp.web.example', // required
      record: 'SRV', // 'SRV' | 'A' | 'AAAA'; default 'SRV'
      servers: ['127.0.0.1:5353'], // default: the system's resolvers
      // port: 8080, // A and AAAA only: the members' port (SRV records carry their own); default none
      interval: '5s', // poll period (a shorter positive TTL is honoured); default 5s
      timeout: '2s', // per query; default 2s
    },

    // etcd: one member per key under a prefix; the value is a JSON object { address, port?, tags?, status?, name? }
    // (name defaults to the key after the prefix). Web nodes add themselves with `rosterd announce`.
    registry: {
      type: 'etcd',
      endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379', 'https://10.0.0.3:2379'], // requests fail over between them; default ['http://127.0.0.1:2379']
      prefix: '/services/web/', // required; every key under it is a member
      auth: {
        username: 'rosterd',
        passwordFile: './etcd.password', // read at each (re)connection, a trailing newline ignored...
        // password: process.env.ETCD_PASSWORD, // ...or inline (exactly one of the two; never logged); default: no auth
      },
      tls: { ca: './tls/etcd-ca.pem', cert: './tls/rosterd.pem', key: './tls/rosterd-key.pem' }, // default: no TLS (https:// endpoints use the system's roots)
      requestTimeout: '5s', // each read, and the confirmation of a watch; default 5s
    },
  },

  templates: [
    {
      name: 'haproxy', // names the template in logs, events and metrics; default: the destination's file name
      source: './haproxy.cfg.liquid', // a Liquid template file...
      // contents: 'inline {{ members | size }}', // ...or an inline template (exactly one of the two)
      destination: '/etc/haproxy/haproxy.cfg', // required; parent directories are created
      sources: ['cluster'], // which sources feed `members`; default: all, merged
      env: ['DATACENTER'], // environment variables the template may read as env.NAME; default: none

      // Quiescence, as consul-template: render once changes have been quiet for `min`, and at the latest
      // `max` after the first change (default 4 × min). Default: off (render as soon as a snapshot changes).
      // The first render after start never waits.
      wait: { min: '200ms', max: '2s' },

      perms: 0o644, // file mode; default: keep the existing file's mode, else 0644. In YAML write '0644' (quoted)
      // uid: 0, gid: 0, // owner; default: keep the existing file's owner
      backup: true, // keep the previous file as <destination>.bak; default false

      minMembers: 1, // fewer members than this: keep the previous file and report; default 0
      maxShrink: 0.5, // refuse a render that drops more than this fraction of the members at once; default off

      // Runs on the candidate file before it is installed; a failure means it is not installed.
      // An argv array runs without a shell; a string runs with `sh -c`.
      // Placeholders: {{candidate}} (check only) and {{destination}}; also $ROSTERD_CANDIDATE, $ROSTERD_DESTINATION.
      check: ['haproxy', '-c', '-f', '{{candidate}}'], // not -q: it hides the reason of a failure too

      // Runs after the install. Templates rendered together that share the same reload run it once.
      // A command (argv or string), or the built-in HAProxy reloader, which confirms through `show proc`
      // on the master CLI that a new worker took over:
      // (method 'signal' sends SIGUSR2 to the master instead; its pid comes from pidFile, else from `show proc`).
      // bindGuard refuses a candidate that adds a bind on an address in use: such a reload freezes the listeners.
      // runtime: changes to server lines of existing backends go through the runtime API (no reload); the rest reloads.
      // drainTimeout: runtime mode, how long a removed server's sessions may take before it reloads instead.
      // stateFile: `show servers state` is written there before each reload (HAProxy's server-state-file).
      reload: {
        haproxy: { masterSocket: '/run/haproxy-master.sock', method: 'cli', bindGuard: true, runtime: false, drainTimeout: '10s', stateFile: '/run/haproxy-state' },
      },
      // reload: { haproxy: { masterSocket: '/run/haproxy-master.sock', method: 'signal', pidFile: '/run/haproxy.pid' } },
      // reload: ['systemctl', 'reload', 'nginx'],

      timeout: '30s', // for check and reload; on timeout the command's whole process group is killed; default 30s
      rollback: true, // on a failed reload, put the previous file back; default true
      strict: true, // an undefined variable or unknown filter is an error, not an empty string; default true
    },

    // A fan-out: one file per member (forEach: 'member') or per value of a tag (forEach: { groupBy: 'site' }).
    // The destination is then a Liquid template, rendered for each item; its directory part before the first
    // {{ is fixed (here /etc/nginx/sites), and a rendered destination that leaves it, is empty, ends in "/",
    // passes a symlink or collides with another is refused (that item gets no file; the others go on).
    // The template sees `member` (one member; `members` stays every member), or `group` (the tag's value) with
    // `members` and `sources` holding that group's members. Each file is checked and installed like a single
    // output (only when it changed); one reload follows for all of them.
    {
      name: 'sites',
      source: './site.conf.liquid',
      destination: '/etc/nginx/sites/{{ group | slug }}.conf', // relative destinations resolve against this file's directory
      forEach: { groupBy: 'site' }, // or 'member'; default: none (one file)
      prune: true, // remove the files of groups or members that are gone (only files this template wrote, listed in
      // /etc/nginx/sites/.rosterd-manifest.json); minMembers and maxShrink count those removals too; default false
      check: ['/usr/local/bin/check-nginx-site', '{{candidate}}'], // once per changed file; {{destination}} is that file
      reload: ['systemctl', 'reload', 'nginx'], // once per batch, whatever the number of files; {{destination}} is the directory
    },
  ],

  // The status endpoint: the status page at /, /health, /ready, /metrics (Prometheus), /history and /fleet (JSON).
  // Off unless given (or --listen). Bind it to the loopback or a management network: it shows member names.
  http: { listen: '127.0.0.1:9465' }, // default listen address when the block is given: 127.0.0.1:9465

  // The render history: per template, the last renders (why, how each ended, a diff of what was installed),
  // served by /history, the status page and `rosterd history`; kept while the endpoint or `file` is on.
  history: {
    entries: 100, // renders kept in memory per template; default 100
    maxDiffBytes: 65536, // diff bytes kept per render, all its files together; 0 keeps none; default 64 KiB
    file: '/var/log/rosterd/history.jsonl', // also append every render there, one JSON object a line; default none
    maxFileBytes: 10485760, // rotate the file to history.jsonl.1 at this size; default 10 MiB
    keepFiles: 1, // rotated files kept (.1 … .N); 0 starts the file afresh; default 1
  },

  // The fleet view (needs a serf source). Every rosterd answers its peers' `rosterd-fleet` Serf query with the
  // content hash, member count and age of each template it has in place; `rosterd fleet`, /metrics and the
  // status page compare them. A rosterd that differs from the majority for longer than `lag` lags.
  fleet: {
    answer: true, // answer the query; default true
    group: 'default', // only rosterds of one group are compared: one per set of load balancers that render alike; default 'default'
    interval: '15s', // with the status endpoint on: how often the daemon surveys the fleet (at least 1s); default 15s
    timeout: '2s', // how long a survey waits for answers (at most 60s); default 2s
    lag: '30s', // differing from the majority for longer than this is lagging; default 30s
  },

  // How often to warn while a template waits for a source's first snapshot; default 10s.
  warnInterval: '10s',


});
