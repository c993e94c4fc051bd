#!/usr/bin/env bash
# Builds strata and mounts a demo filesystem at demo/mnt.
#
#   sudo ./scripts/demo.sh        (or, as root, ./scripts/demo.sh)
#
# Everything lives under the repository's demo/ directory (git-ignored):
#   demo/strata.toml   the config, generated from packaging/demo.toml
#   demo/demo.key      the 32-byte key (created once, mode 0600)
#   demo/hot/          the hot tier: encrypted, compressed segments and metadata
#   demo/cold/         a cold tier (a local directory standing in for an HDD array or NAS)
#   demo/policy.toml   the tiering policy, from packaging/policies/demo-policy.toml
#   demo/mnt/          the mount point
# Re-running it is safe: it keeps the existing filesystem, and says so if it is mounted.
# To start over: fusermount3 -u demo/mnt && rm -rf demo
#
# The demo config will later gain a local mirror (demo/mirror), so that mirroring can be
# watched on one machine too; see the commented section in packaging/demo.toml.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
demo="$repo/demo"
strata="$repo/build/release/cli/strata"

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() {
  printf 'demo: %s\n' "$*" >&2
  exit 1
}

# The mount table, not `mountpoint`, so that a dead FUSE mount ("Transport endpoint is not
# connected") is recognised too.
is_mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }

bash "$repo/scripts/setup.sh"

say "building the release preset"
cmake --preset release >/dev/null
cmake --build --preset release -j2
[[ -x "$strata" ]] || die "the build did not produce $strata"

mkdir -p "$demo/hot" "$demo/cold" "$demo/mnt"
if [[ ! -f "$demo/policy.toml" ]]; then
  cp "$repo/packaging/policies/demo-policy.toml" "$demo/policy.toml"
  say "wrote demo/policy.toml from packaging/policies/demo-policy.toml"
fi

config="$demo/strata.toml"
generated=$(sed "s|@DEMO_DIR@|${demo//|/\\|}|g" "$repo/packaging/demo.toml")
if [[ ! -f "$config" ]]; then
  printf '%s\n' "$generated" >"$config"
  say "wrote demo/strata.toml from packaging/demo.toml"
elif [[ "$(cat "$config")" != "$generated" ]]; then
  say "keeping your demo/strata.toml (it differs from packaging/demo.toml; rm -rf demo to start over)"
fi

if [[ ! -f "$demo/demo.key" ]]; then
  (umask 077 && head -c 32 /dev/urandom >"$demo/demo.key")
  say "created demo/demo.key (32 random bytes; without it the data cannot be read)"
fi
chmod 600 "$demo/demo.key"

if is_mounted "$demo/mnt"; then
  if stat "$demo/mnt" >/dev/null 2>&1; then
    say "already mounted at demo/mnt; to unmount: fusermount3 -u demo/mnt"
    exit 0
  fi
  say "demo/mnt is a dead mount (the daemon is gone); detaching it"
  fusermount3 -uz "$demo/mnt"
fi

first_mount=false
if [[ ! -e "$demo/hot/superblock" ]]; then
  say "creating the filesystem (strata mkfs demo/strata.toml)"
  "$strata" mkfs "$config"
  first_mount=true
fi

# Under sudo, let the invoking user in: allow_other lets other users reach the mount at all,
# default_permissions has the kernel enforce the usual mode bits.
mount_opts=()
if [[ $(id -u) -eq 0 && -n "${SUDO_UID:-}" ]]; then
  mount_opts=(-o "allow_other,default_permissions")
fi

say "mounting (strata mount demo/strata.toml demo/mnt${mount_opts[*]:+ ${mount_opts[*]}})"
"$strata" mount "$config" "$demo/mnt" "${mount_opts[@]}"
is_mounted "$demo/mnt" || die "strata mount returned, but demo/mnt is not mounted"

owner_hint=""
if [[ $first_mount == true && -n "${SUDO_UID:-}" ]]; then
  if chown "$SUDO_UID:${SUDO_GID:-}" "$demo/mnt"; then
    owner_hint=" (its root directory belongs to ${SUDO_USER:-uid $SUDO_UID})"
  fi
fi

sudo_prefix=""
[[ -n "${SUDO_UID:-}" ]] && sudo_prefix="sudo "

cat <<EOF

strata is mounted at $demo/mnt$owner_hint.

Try it:
  cp -r /usr/share/doc/fuse3 demo/mnt/ && ls -lR demo/mnt | head
  echo "hello" > demo/mnt/hello.txt && cat demo/mnt/hello.txt
  ls -l demo/hot          # what is stored: encrypted, compressed segments and metadata
  grep -r hello demo/hot  # finds nothing: names and contents are encrypted at rest

Tiering (demo/policy.toml: archive/** older than a day goes to the cold tier, demo/cold):
  mkdir demo/mnt/archive && cp -r /usr/share/doc/fuse3 demo/mnt/archive/
  ${sudo_prefix}build/release/cli/strata migrate demo/strata.toml --as-of +2d --dry-run   # what would move
  ${sudo_prefix}build/release/cli/strata migrate demo/strata.toml --as-of +2d             # as if 2 days had passed
  ${sudo_prefix}build/release/cli/strata migrate demo/strata.toml --status                # per-tier usage
  ls -l demo/cold                          # the moved files' (encrypted) segments
  head -3 demo/mnt/archive/fuse3/copyright # still read at the same path

Unmount:
  ${sudo_prefix}fusermount3 -u demo/mnt

Mount again later with: sudo ./scripts/demo.sh
EOF
