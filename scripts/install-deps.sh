#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Lanyard needs. Idempotent: does nothing when they
# are all present. Uses sudo when not root.
#   scripts/install-deps.sh          build dependencies (incl. samael's xmlsec feature)
#   scripts/install-deps.sh --test   plus the peers the test suite starts (PostgreSQL, OpenLDAP, haproxy)
#                                    and the tools that check deploy/ (podman, systemd)
set -euo pipefail

pkgs=(pkg-config libssl-dev libxml2-dev libxmlsec1-dev libclang-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(postgresql)
  pkgs+=(xmlsec1)  # the xmlsec1 CLI: pysaml2 (conformance/saml_idp.py) shells out to it
  pkgs+=(openssl)  # the openssl CLI: tests/api/slapd.rs makes the directory's CA and certificate
  pkgs+=(haproxy)  # the load balancer in front of the replicas in tests/api/replicas.rs
  # OpenLDAP: tests/api/slapd.rs starts a throwaway slapd and loads it with the ldap-utils
  # tools (ldapadd, ldapmodify, ...). Skipped when both are already there.
  if ! [[ -x /usr/sbin/slapd ]] || ! command -v ldapadd >/dev/null 2>&1; then pkgs+=(slapd ldap-utils); fi
  # Headless Chromium: the browser test (conformance/browser/) drives Lanyard's pages and
  # WebAuthn with its virtual authenticator, through npm playwright-core (which never
  # downloads a browser of its own here).
  pkgs+=(chromium)
  # Node.js runs the third-party conformance peers (openid-client, jose).
  if ! command -v node >/dev/null 2>&1; then pkgs+=(nodejs npm); fi
  # deploy/ (tests/api/deploy.rs): podman builds and runs the container image, with Debian's
  # runc (crun fails here: "cgroups in hybrid mode not supported"); mmdebstrap makes the
  # image's Debian base from packages, as no image registry is reachable; haproxy checks
  # the compose file's haproxy.cfg; systemd-analyze (package systemd) verifies the unit.
  pkgs+=(podman runc mmdebstrap haproxy systemd)
  # Python 3 with venv runs the Authlib peer (scripts/test makes conformance/.venv).
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then pkgs+=(python3 python3-venv); fi
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  if [[ " ${missing[*]} " == *" slapd "* ]]; then
    # No system slapd: the tests start their own, from a generated slapd.conf.
    echo 'slapd slapd/no_configuration boolean true' | "${sudo[@]}" debconf-set-selections
  fi
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
# Rust >= 1.89 (Cargo.toml's rust-version; the dependency tree needs it).
rust_minor="$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')"
if [[ "$rust_minor" =~ ^[0-9]+$ ]] && ((rust_minor < 89)); then
  echo "$(rustc --version) is too old: Lanyard needs Rust >= 1.89 (rustup update stable)" >&2
  exit 1
fi
# The conformance peers (openid-client 6, jose 6) need Node.js >= 20; Debian 12's
# nodejs package is 18.
if [[ "${1:-}" == "--test" ]]; then
  node_major="$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')"
  if ! [[ "$node_major" =~ ^[0-9]+$ ]] || ((node_major < 20)); then
    echo "Node.js $(node --version 2>/dev/null || echo '(none)') is too old: the conformance peers need Node.js >= 20" >&2
    echo "(Debian's nodejs package is 18; install Node.js 20 or later: the official binaries or NodeSource packages)" >&2
    exit 1
  fi
fi
