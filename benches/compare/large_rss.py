#!/usr/bin/env python3
"""Peak RSS of ibs at 10 GiB on every target, on a disk too small for the
large case of compare.py (issue #18: "peak RSS stays <= 128 MiB at 10 GiB",
SMB and Azure Blob restores included).

    IBS_BENCH_GIB=10 python3 benches/compare/large_rss.py

The realistic corpus (compare.py's "infra", 10 GiB: ~600 000 small files,
~12 GB on disk) is built once under $IBS_BENCH_DIR (default
/var/tmp/ibs-bench). Then, each under /usr/bin/time -v, one run each, with
the page cache dropped and the input read once first (compare.py's `timed`):
ibs backup to a local folder on disk, to a loopback Samba share (encrypted)
and to Azurite (in memory); and a restore of each into a tmpfs (/dev/shm:
a restored tree would not fit on the disk beside the corpus; tmpfs pages
written by ibs are not in its RSS, and the archive is still read from the
target). Prints one Markdown table; nothing else is written. Needs ~15 GB
free on the disk and ~14 GB of RAM for the tmpfs and Azurite.
"""
import os
import shutil
import sys

os.environ.setdefault("IBS_BENCH_GIB", "10")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def main():
    keys = os.path.join(compare.WORK, "keys")
    if not os.path.exists(keys + "/k.cer"):
        sys.exit("no keys in %s: run benches/compare/run.sh once first (it makes them)" % keys)
    name, builder, _ = compare.CORPORA["infra"]
    cpath, files = compare.corpus(name, builder)
    sources = compare.ibs_sources(cpath)
    restore_args = "--fqdn bench.local --pfx %s/k.pfx --password-file %s/k.pw" % (keys, keys)
    tmpfs = compare.Tmpfs()
    rows = []

    def run(what, backup_loc, restore_loc, env=None, extra=""):
        t, rss, cpu = compare.timed("%s backup --location %s %s --cert %s/k.cer %s --fqdn bench.local"
                                    % (compare.IBS, backup_loc, extra, keys, sources), env=env, warm=cpath)
        print("  %s backup %.1f s %d MiB" % (what, t, rss), flush=True)
        dest = os.path.join(tmpfs.path, "restore")
        shutil.rmtree(dest, ignore_errors=True)
        tr, rssr, _ = compare.timed("%s restore --location %s %s %s --to %s"
                                    % (compare.IBS, restore_loc, extra, restore_args, dest), env=env)
        restored = int(compare.sh("find %s -type f | wc -l" % dest).stdout)
        shutil.rmtree(dest, ignore_errors=True)
        print("  %s restore %.1f s %d MiB, %d files" % (what, tr, rssr, restored), flush=True)
        rows.append((what, t, rss, tr, rssr, restored))

    try:
        local = os.path.join(compare.WORK, "large-local")
        shutil.rmtree(local, ignore_errors=True)
        os.makedirs(local)
        run("local folder (disk)", local, local)
        shutil.rmtree(local, ignore_errors=True)

        port, proc, auth = compare.samba(compare.WORK)
        try:
            compare.sh("mkdir -p %s/samba/share/large" % compare.WORK)
            loc = "smb://127.0.0.1:%d/backup/large" % port
            run("SMB (loopback Samba, encrypted)", loc, loc, extra="--credentials-file %s" % auth)
        finally:
            os.killpg(proc.pid, 9)
            proc.wait()
            shutil.rmtree(os.path.join(compare.WORK, "samba"), ignore_errors=True)

        az_port, az_proc, az_env = compare.azurite(compare.WORK)
        try:
            run("Azure Blob (Azurite, in memory)", "az://bench/large", "az://bench/large", env=az_env)
        finally:
            os.killpg(az_proc.pid, 9)
            az_proc.wait()
            shutil.rmtree(os.path.join(compare.WORK, "azurite"), ignore_errors=True)
    finally:
        tmpfs.close()

    print()
    print("Corpus: %d files, %.0f MB." % (files, int(compare.sh("du -sb --apparent-size %s" % cpath).stdout.split()[0]) / 1e6))
    print()
    print("| target | backup s | peak RSS backup MiB | restore s (into tmpfs) | peak RSS restore MiB | files restored |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for what, t, rss, tr, rssr, n in rows:
        print("| %s | %.1f | %d | %.1f | %d | %d |" % (what, t, rss, tr, rssr, n))
    peak = max(max(r[2], r[4]) for r in rows)
    print()
    print("ibs peak RSS at %g GiB: %d MiB (%s 128 MiB)." % (compare.GIB, peak, "under" if peak <= 128 else "NOT under"))


if __name__ == "__main__":
    main()
