#!/usr/bin/env bash
# The end-to-end comparison with tar|zstd, restic and Borg (and smbclient put
# against ibs's own SMB upload of the same archive), in one command from a
# fresh clone:
#   bash benches/compare/run.sh            # 1 GiB corpora, 3 runs per tool, both methods
#   bash benches/compare/run.sh --mode warm   # warm cache, outputs on tmpfs (CPU work)
#   bash benches/compare/run.sh --mode cold   # page cache dropped, outputs on disk
#   (further options: --corpora infra,real,infra-binary --tools ibs,tar,restic,borg
#    --out FILE --no-targets; see compare.py's docstring)
#   IBS_BENCH_GIB=10 bash benches/compare/run.sh   # the 10 GiB case (peak RSS):
#       infra corpus, ibs and tar|zstd to a local folder, then ibs to and from
#       loopback Samba and Azurite (--no-targets skips those); writes
#       benches/RESULTS-10GiB.md
# Environment: IBS_BENCH_DIR (default /var/tmp/ibs-bench; needs ~8× the corpus
# size free at 1 GiB, ~4× in the large case), IBS_BENCH_RUNS (3; 1 in the large
# case). Writes benches/RESULTS.md and benches/results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-deps.sh
missing=()
for p in restic borgbackup zstd gnuplot-nox time tar; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --release --locked -p ibs-cli
# ibs's own SMB upload of one file, timed against smbclient put (a build of its own:
# the example's dev-dependencies must not change the ibs binary's features).
cargo build --release --locked -p ibs-storage-smb --example put
exec /usr/bin/python3 benches/compare/compare.py "$@"
