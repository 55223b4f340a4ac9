// commander, required by src/cli/main.ts. The build replaces this file's copy in dist/ with a bundle of it
// (scripts/bundle-vendor.mjs): one file to load instead of 7, for every command, `--version` included.
module.exports = require('commander');
