#!/usr/bin/env bash
# Installs everything the tests need (Debian packages and npm packages), then runs the whole check:
# type-check, lint, and every test against real serf, haproxy, dnsmasq, etcd, nginx and chromium on 127.0.0.1, and
# the images of docker/ built and run with podman.
# Ends with one plain line: "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

# podman: runc (crun fails here with cgroups in hybrid mode), netavark + aardvark-dns (container names
# resolve on a network, as with Compose; iptables for its port forwarding, iproute2 to pin its bridge's MAC
# address), debootstrap (the base images are made locally: no image registry). chromium: the status page is
# tested in a real headless browser (playwright-core drives it and downloads none of its own).
packages=(serf haproxy dnsmasq-base etcd-server etcd-client openssl procps wrk nginx chromium
  podman runc netavark aardvark-dns iptables iproute2 debootstrap debian-archive-keyring)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

npm ci
npm run typecheck
npm run lint

status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.vitest.json || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".vitest.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed`);
'
exit "$status"
