#!/usr/bin/env bash
# make demo-clean: removes everything `make demo` or `make demo-vm-per-url`
# could have created, even after a crash or a SIGKILL: what a killed
# sandbox left (`jitsu-sandbox clean`: its domains, libvirtd and virtlogd,
# every process left in its namespaces, the namespaces, /etc/netns entries;
# never another libvirtd), /tmp/jitsu-demo.* dirs listed in /run/jitsu-demo,
# and /run/jitsu-demo. Idempotent; refuses while a sandbox runs.
# Images under /var/lib/jitsu/images/ and built binaries are kept; pass
# --images to also remove /var/lib/jitsu/images/vm-per-url.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/demo/lib.sh
. scripts/demo/lib.sh
jd_require_root demo-clean
make --no-print-directory bin/jitsu-sandbox >/dev/null
"$JD_SANDBOX_BIN" clean
jd_cleanup
if [ "${1:-}" = --images ]; then rm -rf /var/lib/jitsu/images/vm-per-url; fi
echo "demo-clean: nothing of the demo is left"
