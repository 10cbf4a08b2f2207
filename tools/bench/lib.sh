# Shared pieces of the benchmarks in tools/bench (sourced, not run).

# The qemu-img oracles the benchmarks time instar against (tools/install-oracles.sh installs both).
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img

# write_half_allocated FILE: a 1 GiB raw file with every other 64 KiB cluster random data and the
# rest holes (the most runs and L2 entries for that much data once converted to qcow2).
write_half_allocated() {
  python3 - "$1" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(1 << 30)
    for i in range(0, 1 << 30, 128 << 10):
        f.seek(i)
        f.write(os.urandom(64 << 10))
PY
}
