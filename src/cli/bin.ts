#!/usr/bin/env node
import { catchEarlySignals } from './early-signals.js';
import { lazyImport } from '../lazy-import.js';

// Before anything else is loaded: a SIGHUP or SIGTERM during start-up must not kill the daemon.
catchEarlySignals();
const { main } = await lazyImport<typeof import('./main.js')>('./main.js', import.meta.url);
const code = await main(process.argv.slice(2));
// The daemon's handles are closed by now; exit explicitly anyway so a stray handle in a plugged-in source
// cannot keep a finished `render --once` alive.
process.exit(code);
