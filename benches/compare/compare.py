#!/usr/bin/env python3
"""End-to-end comparison of `ibs backup`/`ibs restore` with the tools users
would pick instead, on the same data, in one run (see benches/compare/run.sh).

Corpora (built deterministically, fixed seed, under $IBS_BENCH_DIR):
  infra  ~1 GiB of infrastructure state: JSON/XML documents (directory objects,
         subscriptions/plans/offers, role assignments, vault secrets as random
         base64) and some binary blobs, in seven source folders;
  real   ~1 GiB of real files copied from /usr/share and /usr/lib.

Tools, alternated run by run (A B C D, A B C D, ...), encryption on where the
tool has it: ibs (local directory target), tar | zstd -3 -T0 (the
compression-bound reference, no encryption), restic, Borg (zstd,3, repokey).
Each backup goes to a fresh repository (a full backup, as ibs always makes);
each restore to a fresh directory; before every timed command (untimed) `sync`,
the page cache dropped and the command's input read once (see timed()).
Wall time and peak RSS from /usr/bin/time -v.
Then ibs backup to a loopback Samba share against `smbclient put` of the same
bytes, both encrypted, and ibs backup and restore on each target (local
directory, loopback Samba, loopback Azurite) of the infra corpus.

Writes benches/RESULTS.md, benches/results/results.csv and
benches/results/throughput.png. Timings are never asserted: ratios are reported.
"""

import base64
import csv
import hashlib
import hmac
import urllib.request
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.environ.get("IBS_BENCH_DIR", "/var/tmp/ibs-bench")
GIB = float(os.environ.get("IBS_BENCH_GIB", "1"))
# The large case (IBS_BENCH_GIB above 1, e.g. 10) is about peak RSS: the infra
# corpus only (this machine's /usr holds less than 10 GiB of real files), ibs
# and the tar|zstd reference only, one run unless IBS_BENCH_RUNS says more, each
# restore removed right after it is timed (disk space), no SMB/Azure rows;
# written to benches/RESULTS-<N>GiB.md so the 1 GiB table stays.
LARGE = GIB > 1
RUNS = int(os.environ.get("IBS_BENCH_RUNS", "1" if LARGE else "3"))
IBS = os.path.join(ROOT, "target", "release", "ibs")
PASSWORD = "bench-password-not-secret"
SOURCES = ["deployment-inputs", "identity", "federated-identity", "ca", "resource-manager", "key-vault", "rbac"]


def sh(cmd, env=None, cwd=None, check=True):
    r = subprocess.run(cmd, shell=True, env=env, cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit("command failed: %s\n%s%s" % (cmd, r.stdout, r.stderr))
    return r


def timed(cmd, env=None, cwd=None, warm=None):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS in MiB).

    Every command starts from the same state (prepared untimed): file systems
    synced, so no command pays for writing back what the previous one left
    dirty (ibs syncs its own output before it reports success; tar, restic and
    Borg do not); the page cache dropped (as root), so no command competes with
    the kernel reclaiming the gigabytes the previous ones wrote; then its input
    `warm` (a folder or file) read once, so none reads a cold disk."""
    os.sync()
    if os.geteuid() == 0:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    if warm:
        if os.path.isdir(warm):
            sh("tar -C %s -cf - . | cat > /dev/null" % shlex_quote(warm))
        else:
            sh("cat %s > /dev/null" % shlex_quote(warm))
    r = sh("/usr/bin/time -v bash -c %s" % shlex_quote(cmd), env=env, cwd=cwd)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.+)", r.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return secs, rss


def shlex_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def du(path):
    return int(sh("du -sb %s" % shlex_quote(path)).stdout.split()[0])


def guid(rng):
    return "%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(16),
                                          rng.getrandbits(16), rng.getrandbits(48))


def build_infra(dest, total):
    """~total bytes of JSON/XML state and blobs in seven sources (fixed seed)."""
    rng = random.Random(20261122)
    written, n = 0, 0
    roles = ["Owner", "Contributor", "Reader", "User Access Administrator"]
    while written < total:
        source = SOURCES[n % len(SOURCES)]
        d = os.path.join(dest, source, "part-%03d" % (n // 500))
        os.makedirs(d, exist_ok=True)
        kind = n % 10
        if kind < 3:
            docs = [{"objectId": guid(rng), "userPrincipalName": "user%d@contoso.com" % rng.getrandbits(20),
                     "displayName": "User %d" % i, "groups": [guid(rng) for _ in range(3)],
                     "enabled": bool(rng.getrandbits(1))} for i in range(120)]
            body, ext = json.dumps(docs, indent=1), "json"
        elif kind < 5:
            body = json.dumps([{"subscriptionId": guid(rng), "offer": "offer-%d" % rng.randrange(40),
                                "plan": "plan-%d" % rng.randrange(100), "quota": {"cores": rng.randrange(4, 4096),
                                "vms": rng.randrange(1, 1000), "storageGB": rng.randrange(10, 100000)}}
                               for _ in range(150)], indent=1)
            ext = "json"
        elif kind < 7:
            body = "\n".join('<RoleAssignment principal="%s" role="%s" scope="/subscriptions/%s/resourceGroups/rg%d"/>'
                             % (guid(rng), rng.choice(roles), guid(rng), rng.randrange(500)) for _ in range(200))
            body, ext = "<?xml version=\"1.0\"?>\n<Assignments>\n" + body + "\n</Assignments>\n", "xml"
        elif kind < 9:
            body = json.dumps([{"name": "secret-%d" % i, "vault": "vault-%d" % rng.randrange(50),
                                "value": base64.b64encode(rng.randbytes(96)).decode()} for i in range(100)], indent=1)
            ext = "json"
        else:
            body, ext = rng.randbytes(rng.randrange(64 << 10, 1 << 20)), "bin"
        path = os.path.join(d, "doc-%06d.%s" % (n, ext))
        with open(path, "wb") as f:
            f.write(body.encode() if isinstance(body, str) else body)
        written += len(body)
        n += 1
    return n


def build_real(dest, total):
    """Copies regular files from /usr/share and /usr/lib until ~total bytes."""
    copied, n = 0, 0
    for top in ["/usr/share", "/usr/lib"]:
        for dirpath, dirnames, filenames in sorted(os.walk(top)):
            dirnames.sort()
            for name in sorted(filenames):
                src = os.path.join(dirpath, name)
                if os.path.islink(src) or not os.path.isfile(src):
                    continue
                rel = os.path.relpath(src, "/usr")
                dst = os.path.join(dest, rel.split("/", 1)[0], rel.split("/", 1)[1])
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                try:
                    shutil.copyfile(src, dst)
                except OSError:
                    continue
                copied += os.path.getsize(dst)
                n += 1
                if copied >= total:
                    return n
    return n


def corpus(name, builder):
    if GIB != 1:
        name = "%s-%gGiB" % (name, GIB)
    path = os.path.join(WORK, "corpora", name)
    stamp = path + ".done"
    if not os.path.exists(stamp):
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        files = builder(path, int(GIB * (1 << 30)))
        open(stamp, "w").write(str(files))
    return path, int(open(stamp).read())


def ibs_sources(path):
    return " ".join("--source %s=%s" % (d, shlex_quote(os.path.join(path, d)))
                    for d in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, d)))


def tools(keys):
    if LARGE:
        return [t for t in all_tools(keys) if t[0] in ("ibs", "tar|zstd -3 -T0")]
    return all_tools(keys)


def all_tools(keys):
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, BORG_PASSPHRASE=PASSWORD,
               BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
    ibs_loc = lambda out: out + "/share"
    return [
        ("ibs",
         lambda src, out: "mkdir -p %s/share && %s backup --location %s/share --cert %s/k.cer %s --fqdn bench.local"
                          % (out, IBS, out, keys, ibs_sources(src)),
         lambda out, dest: "%s restore --location %s --fqdn bench.local --pfx %s/k.pfx --password-file %s/k.pw --to %s"
                           % (IBS, ibs_loc(out), keys, keys, dest),
         None, env),
        ("tar|zstd -3 -T0",
         lambda src, out: "mkdir -p %s && tar -C %s -cf - . | zstd -3 -T0 -q -o %s/backup.tar.zst" % (out, src, out),
         lambda out, dest: "mkdir -p %s && zstd -dc %s/backup.tar.zst | tar -C %s -xf -" % (dest, out, dest),
         None, env),
        ("restic",
         lambda src, out: "restic -q -r %s/repo backup ." % out,
         lambda out, dest: "restic -q -r %s/repo restore latest --target %s" % (out, dest),
         lambda out: "restic -q -r %s/repo init" % out, env),
        ("borg",
         lambda src, out: "borg create --compression zstd,3 %s/repo::run ." % out,
         lambda out, dest: "mkdir -p %s && cd %s && borg extract %s/repo::run" % (dest, dest, out),
         lambda out: "borg init --encryption=repokey-blake2 %s/repo" % out, env),
    ]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def samba(work):
    """Starts smbd on loopback with its own config; returns (port, process, auth file)."""
    root = os.path.join(work, "samba")
    shutil.rmtree(root, ignore_errors=True)
    for d in ["private", "lock", "state", "cache", "pid", "ncalrpc", "log", "share"]:
        os.makedirs(os.path.join(root, d))
    port = free_port()
    user = sh("id -un").stdout.strip()
    conf = os.path.join(root, "smb.conf")
    open(conf, "w").write("""[global]
  server role = standalone server
  interfaces = lo
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  private dir = {r}/private
  lock directory = {r}/lock
  state directory = {r}/state
  cache directory = {r}/cache
  pid directory = {r}/pid
  ncalrpc dir = {r}/ncalrpc
  log file = {r}/log/%m.log
  passdb backend = tdbsam:{r}/private/passdb.tdb
  server min protocol = SMB3
  server smb encrypt = desired
  map to guest = never
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
[backup]
  path = {r}/share
  read only = no
""".format(port=port, r=root))
    sh("printf '%s\\n%s\\n' | smbpasswd -c %s -s -a %s" % (PASSWORD, PASSWORD, conf, user))
    proc = subprocess.Popen(["smbd", "--foreground", "--no-process-group", "--configfile=" + conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    auth = os.path.join(root, "auth")
    open(auth, "w").write("username = %s\npassword = %s\n" % (user, PASSWORD))
    return port, proc, auth


AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite(work):
    """Starts Azurite's blob service on loopback (telemetry off, in memory); returns (port, process, env)."""
    binary = os.path.join(ROOT, "tools", "azurite", "node_modules", ".bin", "azurite-blob")
    port = free_port()
    root = os.path.join(work, "azurite")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    proc = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--disableTelemetry",
                             "--inMemoryPersistence", "--skipApiVersionCheck", "--silent"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    endpoint = "http://127.0.0.1:%d/%s" % (port, AZ_ACCOUNT)
    # Create the container: one Shared Key-signed PUT.
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    to_sign = "PUT\n" + "\n" * 11 + "x-ms-date:%s\nx-ms-version:2021-08-06\n/%s/%s/bench\nrestype:container" % (
        date, AZ_ACCOUNT, AZ_ACCOUNT)
    sig = base64.b64encode(hmac.new(base64.b64decode(AZ_KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
    # No body: urllib would add a Content-Type, which is signed.
    req = urllib.request.Request(endpoint + "/bench?restype=container", method="PUT", headers={
        "Content-Length": "0", "x-ms-date": date, "x-ms-version": "2021-08-06",
        "Authorization": "SharedKey %s:%s" % (AZ_ACCOUNT, sig)})
    urllib.request.urlopen(req, timeout=10).close()
    env = dict(os.environ, AZURE_STORAGE_ACCOUNT_NAME=AZ_ACCOUNT, AZURE_STORAGE_ACCOUNT_KEY=AZ_KEY,
               AZURE_STORAGE_ENDPOINT=endpoint, AZURE_ALLOW_HTTP="true")
    return port, proc, env


def main():
    os.makedirs(WORK, exist_ok=True)
    remove_trees()  # a previous, interrupted run's; before the corpora are built, not right before a timing
    print("building corpora in %s (%.1f GiB each) ..." % (WORK, GIB), flush=True)
    corpora = [("infra", *corpus("infra", build_infra))]
    if not LARGE:
        corpora.append(("real", *corpus("real", build_real)))
    keys = os.path.join(WORK, "keys")
    if not os.path.exists(keys + "/k.cer"):
        shutil.rmtree(keys, ignore_errors=True)
        os.makedirs(keys)
        open(keys + "/k.pw", "w").write(PASSWORD + "\n")
        sh("%s keygen --out %s --name k --password-file %s/k.pw" % (IBS, keys, keys))
    rows = []
    runs_dir = os.path.join(WORK, "runs")
    shutil.rmtree(runs_dir, ignore_errors=True)
    for cname, cpath, files in corpora:
        size = du(cpath)
        results = {}
        for run in range(RUNS):
            for name, backup, restore, init, env in tools(keys):
                out = os.path.join(runs_dir, cname, name.split()[0].replace("|", "-"), str(run))
                os.makedirs(out, exist_ok=True)
                if init:
                    sh(init(out), env=env)
                secs, rss = timed(backup(cpath, out), env=env, cwd=cpath, warm=cpath)
                results.setdefault(name, {"backup": [], "restore": [], "rss_b": [], "rss_r": [], "size": du(out)})
                results[name]["backup"].append(secs)
                results[name]["rss_b"].append(rss)
                print("  %s run %d %-16s backup %6.1f s  %4.0f MiB RSS" % (cname, run, name, secs, rss), flush=True)
        for run in range(RUNS):
            for name, backup, restore, init, env in tools(keys):
                out = os.path.join(runs_dir, cname, name.split()[0].replace("|", "-"), str(run))
                dest = os.path.join(runs_dir, cname, "restore-%s-%d" % (name.split()[0].replace("|", "-"), run))
                secs, rss = timed(restore(out, dest), env=env, warm=out)
                if LARGE:
                    shutil.rmtree(dest, ignore_errors=True)
                results[name]["restore"].append(secs)
                results[name]["rss_r"].append(rss)
                print("  %s run %d %-16s restore %6.1f s  %4.0f MiB RSS" % (cname, run, name, secs, rss), flush=True)
        ibs_b = statistics.median(results["ibs"]["backup"])
        ibs_r = statistics.median(results["ibs"]["restore"])
        for name, r in results.items():
            b, rs = statistics.median(r["backup"]), statistics.median(r["restore"])
            rows.append({"corpus": cname, "files": files, "source_bytes": size, "tool": name,
                         "backup_s": round(b, 2), "backup_MBps": round(size / b / 1e6, 1),
                         "backup_vs_ibs": round(b / ibs_b, 2),
                         "restore_s": round(rs, 2), "restore_MBps": round(size / rs / 1e6, 1),
                         "restore_vs_ibs": round(rs / ibs_r, 2),
                         "output_bytes": r["size"], "peak_rss_backup_MiB": round(max(r["rss_b"])),
                         "peak_rss_restore_MiB": round(max(r["rss_r"]))})
        if LARGE:
            shutil.rmtree(os.path.join(runs_dir, cname), ignore_errors=True)
    if LARGE:
        write_large(rows)
        return

    # SMB export: ibs backup to a loopback Samba share vs smbclient put of the same bytes.
    port, proc, auth = samba(WORK)
    smb_rows = []
    try:
        cname, cpath, _ = corpora[0]
        local = os.path.join(WORK, "smb-local")
        shutil.rmtree(local, ignore_errors=True)
        os.makedirs(local + "/share")
        sh("%s backup --location %s/share --cert %s/k.cer %s --fqdn bench.local" % (IBS, local, keys, ibs_sources(cpath)))
        archive = sh("find %s/share -name backup.ibs" % local).stdout.split()[0]
        nbytes = os.path.getsize(archive)
        ibs_t, smbc_t, smb_restore_t = [], [], []
        restore_args = "--fqdn bench.local --pfx %s/k.pfx --password-file %s/k.pw" % (keys, keys)
        for run in range(RUNS):
            sh("mkdir -p %s/samba/share/ibs-%d" % (WORK, run))
            loc = "smb://127.0.0.1:%d/backup/ibs-%d" % (port, run)
            t, _ = timed("%s backup --location %s --credentials-file %s --cert %s/k.cer %s --fqdn bench.local"
                         % (IBS, loc, auth, keys, ibs_sources(cpath)), warm=cpath)
            ibs_t.append(t)
            t, _ = timed("smbclient //127.0.0.1/backup -p %d --client-protection=encrypt -A %s -c 'put %s peer-%d.ibs'"
                         % (port, auth, archive, run), warm=archive)
            smbc_t.append(t)
            dest = os.path.join(WORK, "smb-restore-%d" % run)
            shutil.rmtree(dest, ignore_errors=True)
            t, _ = timed("%s restore --location %s --credentials-file %s %s --to %s" % (IBS, loc, auth, restore_args, dest),
                         warm="%s/samba/share/ibs-%d" % (WORK, run))
            smb_restore_t.append(t)
        smb_rows = [("ibs backup to SMB (capture+compress+encrypt+upload)", statistics.median(ibs_t)),
                    ("smbclient put of the same archive bytes", statistics.median(smbc_t))]
        status = sh("smbstatus --configfile=%s/samba/smb.conf -b" % WORK, check=False).stdout
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()

    # The same backup and restore to Azure Blob storage (Azurite on loopback).
    az_port, az_proc, az_env = azurite(WORK)
    az_b, az_r = [], []
    try:
        for run in range(RUNS):
            loc = "az://bench/ibs-%d" % run
            t, _ = timed("%s backup --location %s --cert %s/k.cer %s --fqdn bench.local"
                         % (IBS, loc, keys, ibs_sources(cpath)), env=az_env, warm=cpath)
            az_b.append(t)
            dest = os.path.join(WORK, "az-restore-%d" % run)
            shutil.rmtree(dest, ignore_errors=True)
            t, _ = timed("%s restore --location %s %s --to %s" % (IBS, loc, restore_args, dest), env=az_env)
            az_r.append(t)
    finally:
        os.killpg(az_proc.pid, 9)
        az_proc.wait()
    infra = next(r for r in rows if r["corpus"] == "infra" and r["tool"] == "ibs")
    size = infra["source_bytes"]
    target_rows = [("local directory", infra["backup_s"], infra["restore_s"]),
                   ("SMB (loopback Samba, encrypted)", statistics.median(ibs_t), statistics.median(smb_restore_t)),
                   ("Azure Blob (loopback Azurite)", statistics.median(az_b), statistics.median(az_r))]
    write_results(rows, smb_rows, nbytes, status, target_rows, size)
    remove_trees()


def remove_trees():
    """Removes every repository and restored tree of this run. Only at the
    end: after a bulk delete this machine's ext4 creates files several times
    slower for minutes (see BENCHMARKING.md), which would slow whichever
    restore came next."""
    for name in os.listdir(WORK):
        if name == "runs" or name.startswith(("smb-restore-", "az-restore-")):
            shutil.rmtree(os.path.join(WORK, name), ignore_errors=True)


MANY_FILES_SECTION = "## Many small files"


def write_results(rows, smb_rows, nbytes, status, target_rows, size):
    out_dir = os.path.join(ROOT, "benches", "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    dat = os.path.join(out_dir, "throughput.dat")
    with open(dat, "w") as f:
        f.write("tool infra_backup real_backup infra_restore real_restore\n")
        for tool in dict.fromkeys(r["tool"] for r in rows):
            get = lambda c, k: next(r[k] for r in rows if r["tool"] == tool and r["corpus"] == c)
            f.write('"%s" %s %s %s %s\n' % (tool, get("infra", "backup_MBps"), get("real", "backup_MBps"),
                                            get("infra", "restore_MBps"), get("real", "restore_MBps")))
    png = os.path.join(out_dir, "throughput.png")
    sh("""gnuplot -e "set terminal png size 900,500; set output '%s'; set style data histograms; \
set style histogram clustered gap 1; set style fill solid 0.8 border -1; set ylabel 'MB/s of source data'; \
set title 'ibs vs tar|zstd, restic, Borg (median of %d runs)'; set key top right; set yrange [0:*]; \
plot '%s' using 2:xtic(1) title 'infra backup', '' using 3 title 'real backup', '' using 4 title 'infra restore', \
'' using 5 title 'real restore'" """ % (png, RUNS, dat))
    os.remove(dat)
    cpu = re.search(r"model name\s*: (.+)", open("/proc/cpuinfo").read()).group(1)
    mem = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024
    versions = {t: sh(c, check=False).stdout.strip().splitlines()[0] if sh(c, check=False).stdout.strip() else "?"
                for t, c in [("restic", "restic version"), ("borg", "borg --version"), ("zstd", "zstd --version"),
                             ("tar", "tar --version")]}
    lines = ["# Benchmark results", "",
             "Produced by `bash benches/compare/run.sh` on %s. Machine: %s, %d cores, %d MiB RAM, %s. "
             "Median of %d runs per tool, tools alternated; each backup a full one into a fresh repository, each restore "
             "into a fresh directory, all removed only after the last timing (this ext4 creates files slowly for minutes "
             "after a bulk delete). Before every timed command (untimed): file systems synced, page cache dropped, the "
             "command's input (corpus or repository) read once. ibs syncs what it wrote "
             "before it returns (the archive at commit, the restored tree at the end), the other tools do not. "
             "Ratios are to ibs (backup/restore time of the tool ÷ ibs's: > 1 means ibs is faster)."
             % (time.strftime("%Y-%m-%d"), cpu, os.cpu_count(), mem, sh("uname -sr").stdout.strip(), RUNS), "",
             "Versions: " + "; ".join("%s: %s" % kv for kv in versions.items()), "",
             "| corpus | tool | backup MB/s | time ÷ ibs | restore MB/s | time ÷ ibs | output MB | peak RSS backup / restore MiB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append("| %s (%d files, %d MB) | %s | %.1f | %.2f | %.1f | %.2f | %.1f | %d / %d |" % (
            r["corpus"], r["files"], r["source_bytes"] // 1000000, r["tool"], r["backup_MBps"], r["backup_vs_ibs"],
            r["restore_MBps"], r["restore_vs_ibs"], r["output_bytes"] / 1e6, r["peak_rss_backup_MiB"],
            r["peak_rss_restore_MiB"]))
    lines += ["", "## SMB export (loopback Samba, encrypted session)", "",
              "| what | median s | MB/s of archive (%d MB) |" % (nbytes // 1000000), "| --- | ---: | ---: |"]
    for what, secs in smb_rows:
        lines.append("| %s | %.2f | %.1f |" % (what, secs, nbytes / secs / 1e6))
    if smb_rows:
        lines += ["", "ibs / smbclient throughput ratio: %.2f (ibs also reads, compresses and encrypts the source)."
                  % (smb_rows[1][1] / smb_rows[0][1])]
    lines += ["", "## ibs on each storage target (infra corpus, %d MB)" % (size // 1000000), "",
              "| target | backup median s | backup MB/s | restore median s | restore MB/s |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for what, b, r in target_rows:
        lines.append("| %s | %.2f | %.1f | %.2f | %.1f |" % (what, b, size / b / 1e6, r, size / r / 1e6))
    lines += ["", "![throughput](results/throughput.png)", "", "CSV: [results/results.csv](results/results.csv)", ""]
    path = os.path.join(ROOT, "benches", "RESULTS.md")
    # The many-small-files section (benches/compare/many_files.sh) is kept.
    old = open(path).read() if os.path.exists(path) else ""
    kept = old[old.find(MANY_FILES_SECTION):] if MANY_FILES_SECTION in old else ""
    open(path, "w").write("\n".join(lines) + ("\n" + kept if kept else ""))
    print("\n".join(lines))


def write_large(rows):
    """The large case's table: benches/RESULTS-<N>GiB.md."""
    name = "RESULTS-%gGiB.md" % GIB
    r0 = rows[0]
    lines = ["# Benchmark results, %g GiB case (peak RSS)" % GIB, "",
             "Produced by `IBS_BENCH_GIB=%g bash benches/compare/run.sh` on %s (%s, %d cores). Infra corpus only, "
             "ibs and the tar|zstd reference only, median of %d run(s); each restore into a fresh directory, removed "
             "after it was timed; every timed command starts synced, with the page cache dropped and its input read "
             "once. The target: ibs's peak RSS under 128 MiB at 1 GiB and at 10 GiB."
             % (GIB, time.strftime("%Y-%m-%d"), sh("uname -sr").stdout.strip(), os.cpu_count(), RUNS), "",
             "Corpus: %d files, %d MB." % (r0["files"], r0["source_bytes"] // 1000000), "",
             "| tool | backup s | backup MB/s | restore s | restore MB/s | output MB | peak RSS backup / restore MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %d / %d |" % (
            r["tool"], r["backup_s"], r["backup_MBps"], r["restore_s"], r["restore_MBps"], r["output_bytes"] / 1e6,
            r["peak_rss_backup_MiB"], r["peak_rss_restore_MiB"]))
    ibs = next(r for r in rows if r["tool"] == "ibs")
    peak = max(ibs["peak_rss_backup_MiB"], ibs["peak_rss_restore_MiB"])
    lines += ["", "ibs peak RSS: %d MiB (%s 128 MiB)." % (peak, "under" if peak < 128 else "NOT under"), ""]
    open(os.path.join(ROOT, "benches", name), "w").write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
