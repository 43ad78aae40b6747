#!/usr/bin/env python3
"""End-to-end comparison of `ibs backup`/`ibs restore` with the tools users
would pick instead, on the same data, in one run (see benches/compare/run.sh).

Corpora (built deterministically, fixed seeds, under $IBS_BENCH_DIR/corpora;
--corpora picks some):
  infra         ~1 GiB of realistic infrastructure state (issue #18): ~60 000
                JSON/XML documents of 1-60 KB (directory exports of users and
                groups, role assignments, plans, offers, subscriptions, service
                configurations) plus a minority of base64 secrets and PEM
                certificates (~12 % of the bytes); zstd -3 ~4.2x;
  real          ~1 GiB of real files copied from /usr/share and /usr/lib;
  infra-binary  the corpus generated before #18 (JSON/XML and random binary
                blobs in seven source folders; compresses only to ~80 %).

Tools, alternated run by run (A B C D, A B C D, ...), encryption on where the
tool has it: ibs (local directory target), tar | zstd -3 -T0 (the
compression-bound reference, no encryption), restic, Borg (zstd,3, repokey);
--tools picks some. Each backup goes to a fresh repository (a full backup, as
ibs always makes); each restore to a fresh directory. Wall time and peak RSS
from /usr/bin/time -v; medians of IBS_BENCH_RUNS (3; IBS_BENCH_COLD_RUNS for
the cold method, whose trees stay on disk until a corpus is done, then are
removed and the next corpus waits IBS_BENCH_SETTLE seconds, 180, for ext4).

Two methods (--mode warm|cold|both, default both; BENCHMARKING.md):
  cold  outputs on disk under $IBS_BENCH_DIR/runs/cold; before every timed
        command (untimed) `sync`, the page cache dropped (as root) and the
        command's input read once. What an operator sees: the disk's share.
  warm  every output (archive, repository, restored tree) on a tmpfs (a folder
        made under /dev/shm, or a tmpfs mounted as root, removed at the end);
        before every timed command only its input read once, untimed, right
        before it is timed (this machine reclaims page cache within seconds).
        The CPU work; stable. Restored trees are removed as soon as timed.
Then (cold method, infra corpus, unless --no-targets) ibs's own SMB upload of
a finished archive (target/release/examples/put: the streaming write path a
backup uses) against `smbclient put` of the same file to a loopback Samba
share, both encrypted, alternated after the same warm-up; the whole ibs backup
to the share beside them; and ibs backup and restore on each target (local
directory, loopback Samba, loopback Azurite) with their peak RSS.

The large case (IBS_BENCH_GIB above 1, e.g. 10; cold method, infra corpus):
ibs and tar|zstd to a local folder, then (unless --no-targets) ibs backup to
and restore from a loopback Samba share and Azurite, each restore removed
right after it was timed; written to benches/RESULTS-<N>GiB.md (or --out).

A reduced run, e.g. warm method, ibs and tar|zstd only, 256 MiB, elsewhere:
  IBS_BENCH_GIB=0.25 python3 benches/compare/compare.py --mode warm \
      --corpora infra --tools ibs,tar --out /tmp/results.md

Writes benches/RESULTS.md (or --out), benches/results/results.csv and
benches/results/throughput.png (the warm method's plot when it ran). Timings are never asserted: ratios are reported.
"""

import base64
import csv
import hashlib
import hmac
import multiprocessing
import textwrap
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
# restore removed right after it is timed (disk space); then ibs to and from
# SMB and Azure Blob (large_remote); written to benches/RESULTS-<N>GiB.md so
# the 1 GiB table stays.
LARGE = GIB > 1
RUNS = int(os.environ.get("IBS_BENCH_RUNS", "1" if LARGE else "3"))
# The cold method keeps every restored tree and repository of a corpus on disk
# until its last timing (ext4's slow creates after a bulk delete): fewer runs
# there when the disk is short (IBS_BENCH_COLD_RUNS, default IBS_BENCH_RUNS).
COLD_RUNS = int(os.environ.get("IBS_BENCH_COLD_RUNS", str(RUNS)))
# After a corpus's cold trees are removed, the next corpus waits this long
# (seconds) for ext4 to get over the bulk delete (BENCHMARKING.md).
SETTLE = int(os.environ.get("IBS_BENCH_SETTLE", "180"))
IBS = os.path.join(ROOT, "target", "release", "ibs")
# ibs's own SMB upload of one file (crates/storage-smb/examples/put.rs; run.sh builds it).
IBS_PUT = os.path.join(ROOT, "target", "release", "examples", "put")
PASSWORD = "bench-password-not-secret"
SOURCES = ["deployment-inputs", "identity", "federated-identity", "ca", "resource-manager", "key-vault", "rbac"]


def sh(cmd, env=None, cwd=None, check=True):
    r = subprocess.run(cmd, shell=True, env=env, cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit("command failed: %s\n%s%s" % (cmd, r.stdout, r.stderr))
    return r


def timed(cmd, env=None, cwd=None, warm=None, drop=True):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS in MiB,
    CPU use in % of one core).

    Every command starts from the same state (prepared untimed): file systems
    synced, so no command pays for writing back what the previous one left
    dirty (ibs syncs its own output before it reports success; tar, restic and
    Borg do not); the page cache dropped (as root), so no command competes with
    the kernel reclaiming the gigabytes the previous ones wrote (the cold
    method; `drop=False` for the warm one, whose outputs are on tmpfs); then its
    input `warm` (a folder or file) read once, right before the timing, so none
    reads a cold disk (this machine reclaims page cache within seconds)."""
    os.sync()
    if drop and os.geteuid() == 0:
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
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", r.stderr)
    return secs, rss, int(cpu.group(1)) if cpu else 0


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


# ---- realistic infrastructure state (issue #18) -----------------------------
# Directory exports, role assignments, plans/offers/subscriptions and service
# configurations as JSON/XML documents of 1-60 KB (mean ~18 KB: ~60 000 files
# per GiB), plus a minority of base64 secrets and PEM certificates (~12 % of the
# bytes, incompressible). zstd -3 of the concatenated files: ~4.2x.
STATE_SEED = 20261130
FIRST = ["anna", "ben", "chen", "dana", "eli", "fatima", "goran", "hana", "ivan", "jo", "kai", "lena",
         "mia", "nils", "omar", "petra", "quinn", "rui", "sara", "tomas"]
LAST = ["meyer", "schmidt", "nowak", "rossi", "garcia", "smith", "tanaka", "kim", "silva", "novak"]
DEPTS = ["Finance", "Operations", "Engineering", "Sales", "Support", "Legal", "Platform", "Security"]
ROLES = ["Owner", "Contributor", "Reader", "User Access Administrator", "Key Vault Secrets User",
         "Storage Blob Data Reader", "Network Contributor", "Monitoring Reader"]
REGIONS = ["westeurope", "northeurope", "eastus", "local", "redmond"]
SERVICES = ["Microsoft.Compute", "Microsoft.Storage", "Microsoft.Network", "Microsoft.KeyVault",
            "Microsoft.Sql", "Microsoft.Web", "Microsoft.Subscriptions"]


def stamp(r):
    return "2026-%02d-%02dT%02d:%02d:%02dZ" % (r.randrange(1, 13), r.randrange(1, 29), r.randrange(24),
                                               r.randrange(60), r.randrange(60))


def doc_users(r, n):
    users = []
    for i in range(r.randrange(10, 60)):
        f, l = r.choice(FIRST), r.choice(LAST)
        users.append({
            "objectId": guid(r), "objectType": "User", "userPrincipalName": "%s.%s%d@contoso.com" % (f, l, n * 100 + i),
            "displayName": "%s %s" % (f.title(), l.title()), "givenName": f.title(), "surname": l.title(),
            "department": r.choice(DEPTS), "accountEnabled": r.random() < 0.9, "usageLocation": "DE",
            "createdDateTime": stamp(r), "lastPasswordChangeDateTime": stamp(r),
            "memberOf": [guid(r) for _ in range(r.randrange(0, 5))], "etag": "W/\"%032x\"" % r.getrandbits(128),
            "onPremisesSecurityIdentifier": "S-1-5-21-%d-%d-%d-%d" % (r.getrandbits(32), r.getrandbits(32), r.getrandbits(32), r.randrange(1000, 99999)),
            "extensionAttributes": {"costCenter": "CC-%04d" % r.randrange(10000), "employeeType": "Employee"}})
    return "identity", "users-%06d.json" % n, json.dumps({"value": users, "@odata.nextLink": None}, indent=2)


def doc_groups(r, n):
    groups = [{"objectId": guid(r), "objectType": "Group",
               "displayName": "grp-%s-%d" % (r.choice(DEPTS).lower(), r.randrange(1000)),
               "description": "Members of the %s team" % r.choice(DEPTS), "securityEnabled": True,
               "mailEnabled": False, "createdDateTime": stamp(r),
               "members": [guid(r) for _ in range(r.randrange(1, 20))]} for _ in range(r.randrange(4, 24))]
    return "identity", "groups-%06d.json" % n, json.dumps({"value": groups}, indent=2)


def doc_roles(r, n):
    out = []
    for _ in range(r.randrange(10, 80)):
        sub = guid(r)
        out.append({"id": "/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments/%s" % (sub, guid(r)),
                    "type": "Microsoft.Authorization/roleAssignments", "name": guid(r),
                    "properties": {"roleDefinitionName": r.choice(ROLES), "roleDefinitionId": guid(r),
                                   "principalId": guid(r),
                                   "principalType": r.choice(["User", "Group", "ServicePrincipal"]),
                                   "scope": "/subscriptions/%s/resourceGroups/rg-%s-%03d" % (
                                       sub, r.choice(DEPTS).lower(), r.randrange(500)),
                                   "condition": None, "createdOn": stamp(r), "updatedOn": stamp(r),
                                   "createdBy": guid(r), "etag": "%032x" % r.getrandbits(128)}})
    return "rbac", "roleassignments-%06d.json" % n, json.dumps(out, indent=2)


def doc_plan(r, n):
    quotas = "\n".join('    <Quota service="%s" name="%s" limit="%d" />' % (
        r.choice(SERVICES), r.choice(["cores", "vms", "storageGB", "publicIPs", "vaults", "databases"]),
        r.randrange(1, 100000)) for _ in range(r.randrange(8, 60)))
    return "resource-manager", "plan-%06d.xml" % n, (
        '<?xml version="1.0" encoding="utf-8"?>\n<Plan xmlns="http://schemas.contoso.com/plans/2026">\n'
        '  <PlanId>%s</PlanId>\n  <Name>plan-%d</Name>\n  <DisplayName>Plan %d (%s)</DisplayName>\n'
        '  <State>%s</State>\n  <Region>%s</Region>\n  <Created>%s</Created>\n  <Quotas>\n%s\n  </Quotas>\n'
        '</Plan>\n') % (guid(r), n, n, r.choice(DEPTS), r.choice(["Public", "Private", "Decommissioned"]),
                        r.choice(REGIONS), stamp(r), quotas)


def doc_offer(r, n):
    plans = "\n".join('    <PlanLink planId="%s" addOn="%s" />' % (guid(r), str(r.random() < 0.3).lower())
                      for _ in range(r.randrange(2, 30)))
    return "resource-manager", "offer-%06d.xml" % n, (
        '<?xml version="1.0" encoding="utf-8"?>\n<Offer xmlns="http://schemas.contoso.com/offers/2026">\n'
        '  <OfferId>%s</OfferId>\n  <Name>offer-%d</Name>\n  <Description>%s offer for %s workloads</Description>\n'
        '  <State>Public</State>\n  <MaxSubscriptionsPerAccount>%d</MaxSubscriptionsPerAccount>\n'
        '  <BasePlans>\n%s\n  </BasePlans>\n</Offer>\n') % (
        guid(r), n, r.choice(["Standard", "Premium", "Developer"]), r.choice(DEPTS), r.randrange(1, 50), plans)


def doc_subscriptions(r, n):
    subs = [{"subscriptionId": guid(r), "displayName": "sub-%s-%d" % (r.choice(DEPTS).lower(), r.randrange(10000)),
             "owner": "%s@contoso.com" % r.choice(FIRST), "offerId": guid(r), "tenantId": guid(r),
             "state": r.choice(["Enabled", "Enabled", "Enabled", "Suspended", "Disabled"]),
             "createdDate": stamp(r), "region": r.choice(REGIONS),
             "quotas": [{"service": s, "limit": r.randrange(1, 5000), "used": r.randrange(0, 1000)}
                        for s in r.sample(SERVICES, r.randrange(1, len(SERVICES)))],
             "tags": {"env": r.choice(["prod", "test", "dev"]), "owner": r.choice(LAST)}}
            for _ in range(r.randrange(4, 30))]
    return "resource-manager", "subscriptions-%06d.json" % n, json.dumps({"value": subs}, indent=2)


def doc_service_config(r, n):
    svc = r.choice(["storage", "compute", "network", "keyvault", "sql", "portal", "adfs", "monitoring"])
    settings = "\n".join('      <Setting name="%s.%s" value="%s" />' % (
        svc, r.choice(["timeoutSeconds", "maxConnections", "retryCount", "endpoint", "logLevel", "cacheSizeMB",
                       "certificateThumbprint", "region", "replicaCount"]) + str(i),
        r.choice([str(r.randrange(1, 65536)), "https://%s.%s.contoso.com:%d/" % (svc, r.choice(REGIONS),
                                                                                   r.choice([443, 8443, 30024])),
                  r.choice(["Information", "Warning", "Verbose"]), "%040x" % r.getrandbits(160)]))
        for i in range(r.randrange(20, 120)))
    roles = "\n".join('    <Role name="%s-%d" instances="%d" vmSize="%s">\n%s\n    </Role>' % (
        svc, k, r.randrange(1, 8), r.choice(["Standard_D2s_v3", "Standard_F4s", "Standard_A4_v2"]), settings)
        for k in range(r.randrange(2, 6)))
    return "deployment-inputs", "%s-config-%06d.xml" % (svc, n), (
        '<?xml version="1.0" encoding="utf-8"?>\n<ServiceConfiguration serviceName="%s" version="1.%d.%d">\n'
        '  <Roles>\n%s\n  </Roles>\n</ServiceConfiguration>\n') % (svc, r.randrange(2000, 2500), r.randrange(100), roles)


def doc_secrets(r, n):
    secrets = [{"id": "https://vault-%d.vault.local/secrets/secret-%d/%032x" % (r.randrange(50), i, r.getrandbits(128)),
                "attributes": {"enabled": True, "created": r.randrange(1700000000, 1800000000),
                               "recoveryLevel": "Recoverable+Purgeable"},
                "contentType": "application/octet-stream",
                "value": base64.b64encode(r.randbytes(r.choice([32, 64, 256, 1024, 2048, 4096]))).decode()}
               for i in range(r.randrange(2, 14))]
    return "key-vault", "secrets-%06d.json" % n, json.dumps(secrets, indent=2)


def doc_certificate(r, n):
    def pem(nbytes):
        b = base64.b64encode(r.randbytes(nbytes)).decode()
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(b, 64)) + "\n-----END CERTIFICATE-----\n"
    return "ca", "cert-%06d.pem" % n, "".join(pem(r.randrange(900, 2000)) for _ in range(r.randrange(2, 6)))


# (weight, generator): documents per 100
STATE_KINDS = [(14, doc_users), (6, doc_groups), (16, doc_roles), (10, doc_plan), (6, doc_offer),
               (10, doc_subscriptions), (18, doc_service_config), (10, doc_secrets), (10, doc_certificate)]
_KIND_TABLE = [g for w, g in STATE_KINDS for _ in range(w)]


def state_document(n):
    """Document n: (source, file name, text); the same n gives the same bytes."""
    r = random.Random(STATE_SEED * 1000003 + n)
    return _KIND_TABLE[r.randrange(len(_KIND_TABLE))](r, n)


def build_state(dest, total):
    """~total bytes of realistic infrastructure state (fixed seed): documents
    generated in parallel, written in order until total, so the same total
    gives the same tree."""
    written, n = 0, 0
    made = set()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for source, name, body in pool.imap(state_document, range(1 << 40), chunksize=64):
            d = os.path.join(dest, source, "part-%03d" % (n // 1000))
            if d not in made:
                os.makedirs(d, exist_ok=True)
                made.add(d)
            data = body.encode()
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            written += len(data)
            n += 1
            if written >= total:
                pool.terminate()
                break
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


def tools(keys, only=None):
    """The tools measured: `only` (short names: ibs, tar, restic, borg), else
    all of them (ibs and tar|zstd only in the large case)."""
    if only is None and LARGE:
        only = ["ibs", "tar"]
    return [t for t in all_tools(keys) if only is None or t[0].split("|")[0] in only]


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


CORPORA = {
    # name: (directory under corpora/, builder, label in the tables)
    "infra": ("state", build_state, "infra state (realistic JSON/XML)"),
    "real": ("real", build_real, "real files (/usr)"),
    # The corpus this script generated before issue #18 (same seed, same bytes,
    # same directory), kept as a row: it compresses only to ~80 %.
    "infra-binary": ("infra", build_infra, "infra-binary (JSON/XML + random blobs)"),
}
MODES = {
    "cold": "cold cache, outputs on disk: synced, page cache dropped (as root), input read once untimed; "
            "what an operator sees (the disk's share)",
    "warm": "warm cache, outputs on tmpfs: input read once untimed right before each command, every output "
            "(archive, repository, restored tree) on tmpfs; the CPU work",
}


def parse_args():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["warm", "cold", "both"],
                    default=os.environ.get("IBS_BENCH_MODE", "cold" if LARGE else "both"),
                    help="warm: outputs on tmpfs, warm cache (CPU work); cold: outputs on disk, page cache "
                         "dropped (the disk); both (default; cold in the large case). Env IBS_BENCH_MODE.")
    ap.add_argument("--corpora", default=os.environ.get("IBS_BENCH_CORPORA", "infra" if LARGE else
                                                        "infra,real,infra-binary"),
                    help="comma list of %s (env IBS_BENCH_CORPORA)" % ", ".join(CORPORA))
    ap.add_argument("--tools", default=os.environ.get("IBS_BENCH_TOOLS", "all"),
                    help="comma list of ibs, tar, restic, borg or 'all' (env IBS_BENCH_TOOLS)")
    ap.add_argument("--out", default=None,
                    help="the markdown file written (default benches/RESULTS.md; results.csv and the plot "
                         "beside it in results/ only for the default)")
    ap.add_argument("--no-targets", action="store_true",
                    help="skip the SMB and Azure rows (they run only with the cold mode and the infra corpus)")
    a = ap.parse_args()
    a.modes = ["cold", "warm"] if a.mode == "both" else [a.mode]
    a.corpora = [c.strip() for c in a.corpora.split(",") if c.strip()]
    for c in a.corpora:
        if c not in CORPORA:
            ap.error("unknown corpus %s" % c)
    a.tools = None if a.tools == "all" else [t.strip() for t in a.tools.split(",")]
    return a


class Tmpfs:
    """A tmpfs folder for the warm mode's outputs: a folder made under
    /dev/shm (IBS_BENCH_TMPFS chooses another tmpfs parent) and removed at the
    end; where there is none, a tmpfs mounted (as root) on a folder under
    $IBS_BENCH_DIR, unmounted and removed at the end."""

    def __init__(self):
        import tempfile
        parent = os.environ.get("IBS_BENCH_TMPFS", "/dev/shm")
        self.mounted = False
        if os.path.isdir(parent) and fstype(parent) == "tmpfs":
            self.path = tempfile.mkdtemp(prefix="ibs-bench-", dir=parent)
        elif os.geteuid() == 0:
            self.path = tempfile.mkdtemp(prefix="tmpfs-", dir=WORK)
            avail = int(re.search(r"MemAvailable:\s+(\d+)", open("/proc/meminfo").read()).group(1)) * 1024
            sh("mount -t tmpfs -o size=%d,mode=0700 ibs-bench %s" % (avail * 3 // 4, shlex_quote(self.path)))
            self.mounted = True
        else:
            sys.exit("warm mode: no tmpfs at %s and not root (cannot mount one); set IBS_BENCH_TMPFS" % parent)

    def free(self):
        st = os.statvfs(self.path)
        avail = int(re.search(r"MemAvailable:\s+(\d+)", open("/proc/meminfo").read()).group(1)) * 1024
        # tmpfs pages are RAM: leave the page cache room for the corpus.
        return min(st.f_bavail * st.f_frsize, avail - (2 << 30))

    def close(self):
        if self.mounted:
            sh("umount %s" % shlex_quote(self.path), check=False)
        shutil.rmtree(self.path, ignore_errors=True)


def fstype(path):
    return sh("stat -f -c %%T %s" % shlex_quote(path), check=False).stdout.strip()


def measure(mode, corpora, keys, base, tool_filter, stats, tmpfs=None):
    """Backups (all runs, tools alternated) then restores of each corpus, in
    `mode`, outputs under `base`; returns the rows."""
    rows = []
    drop = mode == "cold"
    runs = RUNS if mode == "warm" else COLD_RUNS
    for i, (cname, cpath, files) in enumerate(corpora):
        if drop and i > 0 and not LARGE:
            # The previous corpus's trees were removed (disk space): let ext4 settle first.
            print("  waiting %d s for the file system after removing %s's trees" % (SETTLE, corpora[i - 1][0]),
                  flush=True)
            time.sleep(SETTLE)
        size = du(cpath)
        chosen = tools(keys, tool_filter)
        if tmpfs is not None:
            # every repository of every run (~ the zstd -3 size each) and one restored tree at a time
            need = int(runs * len(chosen) * 1.2 * size / stats[cname]["zstd3"] + 1.2 * size) + (256 << 20)
            if tmpfs.free() < need:
                sys.exit("warm mode: the tmpfs (or the RAM) has %.1f GiB free, %s needs ~%.1f GiB: lower "
                         "IBS_BENCH_GIB or IBS_BENCH_RUNS, or pass fewer --tools"
                         % (tmpfs.free() / (1 << 30), cname, need / (1 << 30)))
        runs_dir = os.path.join(base, cname)  # fresh: remove_trees() ran at the start
        results = {}
        for run in range(runs):
            for name, backup, restore, init, env in chosen:
                out = os.path.join(runs_dir, name.split()[0].replace("|", "-"), str(run))
                os.makedirs(out, exist_ok=True)
                if init:
                    sh(init(out), env=env)
                secs, rss, cpu = timed(backup(cpath, out), env=env, cwd=cpath, warm=cpath, drop=drop)
                results.setdefault(name, {"backup": [], "restore": [], "rss_b": [], "rss_r": [], "cpu_b": [],
                                          "cpu_r": [], "size": du(out)})
                results[name]["backup"].append(secs)
                results[name]["cpu_b"].append(cpu)
                results[name]["rss_b"].append(rss)
                print("  %s %s run %d %-16s backup %6.2f s  %4.0f MiB RSS" % (mode, cname, run, name, secs, rss),
                      flush=True)
        for run in range(runs):
            for name, backup, restore, init, env in chosen:
                out = os.path.join(runs_dir, name.split()[0].replace("|", "-"), str(run))
                dest = os.path.join(runs_dir, "restore-%s-%d" % (name.split()[0].replace("|", "-"), run))
                secs, rss, cpu = timed(restore(out, dest), env=env, warm=out, drop=drop)
                results[name]["cpu_r"].append(cpu)
                # On tmpfs a delete does not slow the next creates (ext4's does:
                # BENCHMARKING.md), and the RAM holds one restored tree at a time.
                if LARGE or tmpfs is not None:
                    shutil.rmtree(dest, ignore_errors=True)
                results[name]["restore"].append(secs)
                results[name]["rss_r"].append(rss)
                print("  %s %s run %d %-16s restore %6.2f s  %4.0f MiB RSS" % (mode, cname, run, name, secs, rss),
                      flush=True)
        ref = results.get("ibs") or next(iter(results.values()))
        ibs_b, ibs_r = statistics.median(ref["backup"]), statistics.median(ref["restore"])
        for name, r in results.items():
            b, rs = statistics.median(r["backup"]), statistics.median(r["restore"])
            rows.append({"mode": mode, "corpus": cname, "files": files, "source_bytes": size, "tool": name,
                         "backup_s": round(b, 3), "backup_min_s": round(min(r["backup"]), 3),
                         "backup_max_s": round(max(r["backup"]), 3), "backup_MBps": round(size / b / 1e6, 1),
                         "backup_vs_ibs": round(b / ibs_b, 2),
                         "restore_s": round(rs, 3), "restore_min_s": round(min(r["restore"]), 3),
                         "restore_max_s": round(max(r["restore"]), 3), "restore_MBps": round(size / rs / 1e6, 1),
                         "restore_vs_ibs": round(rs / ibs_r, 2),
                         "output_bytes": r["size"], "peak_rss_backup_MiB": round(max(r["rss_b"])),
                         "peak_rss_restore_MiB": round(max(r["rss_r"])),
                         "cpu_backup_pct": round(statistics.median(r["cpu_b"])),
                         "cpu_restore_pct": round(statistics.median(r["cpu_r"]))})
        # Each corpus's trees are removed once it is measured (the disk holds one corpus's).
        shutil.rmtree(runs_dir, ignore_errors=True)
    return rows


def main():
    args = parse_args()
    if (not LARGE and not args.no_targets and "cold" in args.modes and "infra" in args.corpora
            and not os.path.exists(IBS_PUT)):
        sys.exit("%s is missing (ibs's SMB upload, timed against smbclient put): cargo build --release "
                 "-p ibs-storage-smb --example put, or pass --no-targets" % IBS_PUT)
    os.makedirs(WORK, exist_ok=True)
    remove_trees()  # a previous, interrupted run's; before the corpora are built, not right before a timing
    print("building corpora %s in %s (%.2f GiB each) ..." % (",".join(args.corpora), WORK, GIB), flush=True)
    corpora = []
    for c in args.corpora:
        dirname, builder, _ = CORPORA[c]
        corpora.append((c, *corpus(dirname, builder)))
    keys = os.path.join(WORK, "keys")
    if not os.path.exists(keys + "/k.cer"):
        shutil.rmtree(keys, ignore_errors=True)
        os.makedirs(keys)
        open(keys + "/k.pw", "w").write(PASSWORD + "\n")
        sh("%s keygen --out %s --name k --password-file %s/k.pw" % (IBS, keys, keys))
    stats = {c: corpus_stats(p, f) for c, p, f in corpora}
    rows = []
    for mode in args.modes:
        if mode == "cold":
            rows += measure(mode, corpora, keys, os.path.join(WORK, "runs", "cold"), args.tools, stats)
        else:
            tmpfs = Tmpfs()
            try:
                print("warm mode: outputs on tmpfs %s" % tmpfs.path, flush=True)
                rows += measure(mode, corpora, keys, tmpfs.path, args.tools, stats, tmpfs)
            finally:
                tmpfs.close()
    cold_infra = [r for r in rows if r["mode"] == "cold" and r["corpus"] == "infra" and r["tool"] == "ibs"]
    if LARGE:
        remote = None
        if cold_infra and not args.no_targets:
            # The local rows first (kept if the remote part fails), then again with the remote ones.
            write_large(rows, stats, {"rows": [], "notes": ["the remote rows did not finish"]}, args, echo=False)
            cpath = next(p for c, p, f in corpora if c == "infra")
            remote = large_remote(cpath, keys, cold_infra[0]["output_bytes"])
        write_large(rows, stats, remote, args)
        remove_trees()
        return
    target_rows, smb, nbytes, status = [], {}, 0, ""
    if cold_infra and not args.no_targets:
        cpath = next(p for c, p, f in corpora if c == "infra")
        smb, nbytes, status, target_rows = targets(cpath, keys, cold_infra[0])
    write_results(rows, smb, nbytes, status, target_rows, stats, args)
    remove_trees()


def corpus_stats(path, files):
    """Files, bytes and the zstd -3 ratio of the files' concatenated contents."""
    size = int(sh("find %s -type f -printf '%%s\\n' | awk '{ s += $1 } END { print s }'" % shlex_quote(path)).stdout)
    z = int(sh("find %s -type f -print0 | sort -z | xargs -0 cat | zstd -3 -T0 -c | wc -c"
               % shlex_quote(path)).stdout)
    return {"files": files, "bytes": size, "zstd3": size / z}


def smb_puts(port, auth, archive, tag):
    """The two uploads of one archive file to the share: ibs's own (the
    streaming write path of a backup: examples/put.rs) and smbclient's."""
    return ("%s %s smb://127.0.0.1:%d/backup/put-%s/backup.ibs --credentials-file %s"
            % (IBS_PUT, shlex_quote(archive), port, tag, shlex_quote(auth)),
            "smbclient //127.0.0.1/backup -p %d --client-protection=encrypt -A %s -c 'put %s peer-%s.ibs'"
            % (port, shlex_quote(auth), archive, tag))


def targets(cpath, keys, infra):
    """ibs's SMB upload of an archive against smbclient put of the same file,
    and ibs on each target (local directory, Samba, Azurite); cold method.
    Returns (smb: median seconds of "upload", "smbclient" and "backup",
    archive bytes, smbstatus, target rows (what, backup s, restore s, peak RSS
    backup MiB, peak RSS restore MiB))."""
    port, proc, auth = samba(WORK)
    smb = {}
    try:
        local = os.path.join(WORK, "smb-local")
        shutil.rmtree(local, ignore_errors=True)
        os.makedirs(local + "/share")
        sh("%s backup --location %s/share --cert %s/k.cer %s --fqdn bench.local" % (IBS, local, keys, ibs_sources(cpath)))
        archive = sh("find %s/share -name backup.ibs" % local).stdout.split()[0]
        nbytes = os.path.getsize(archive)
        # The same warm-up for both uploads, untimed: one upload each.
        for cmd in smb_puts(port, auth, archive, "warmup"):
            timed(cmd, warm=archive)
        ibs_t, put_t, smbc_t, smb_restore_t = [], [], [], []
        rss = {"backup": [], "restore": []}
        restore_args = "--fqdn bench.local --pfx %s/k.pfx --password-file %s/k.pw" % (keys, keys)
        for run in range(RUNS):
            sh("mkdir -p %s/samba/share/ibs-%d" % (WORK, run))
            loc = "smb://127.0.0.1:%d/backup/ibs-%d" % (port, run)
            t, r, _ = timed("%s backup --location %s --credentials-file %s --cert %s/k.cer %s --fqdn bench.local"
                            % (IBS, loc, auth, keys, ibs_sources(cpath)), warm=cpath)
            ibs_t.append(t)
            rss["backup"].append(r)
            # The same archive file, ibs's upload then smbclient's (alternated run by run).
            ibs_put, peer_put = smb_puts(port, auth, archive, run)
            t, _, _ = timed(ibs_put, warm=archive)
            put_t.append(t)
            t, _, _ = timed(peer_put, warm=archive)
            smbc_t.append(t)
            print("  SMB run %d: ibs upload %.2f s, smbclient put %.2f s, ibs backup %.2f s"
                  % (run, put_t[-1], smbc_t[-1], ibs_t[-1]), flush=True)
            dest = os.path.join(WORK, "smb-restore-%d" % run)
            shutil.rmtree(dest, ignore_errors=True)
            t, r, _ = timed("%s restore --location %s --credentials-file %s %s --to %s"
                            % (IBS, loc, auth, restore_args, dest), warm="%s/samba/share/ibs-%d" % (WORK, run))
            smb_restore_t.append(t)
            rss["restore"].append(r)
        smb = {"upload": statistics.median(put_t), "smbclient": statistics.median(smbc_t),
               "backup": statistics.median(ibs_t)}
        status = sh("smbstatus --configfile=%s/samba/smb.conf -b" % WORK, check=False).stdout
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    smb_row = ("SMB (loopback Samba, encrypted)", smb["backup"], statistics.median(smb_restore_t),
               round(max(rss["backup"])), round(max(rss["restore"])))

    # The same backup and restore to Azure Blob storage (Azurite on loopback).
    az_port, az_proc, az_env = azurite(WORK)
    az_b, az_r, az_rss_b, az_rss_r = [], [], [], []
    try:
        for run in range(RUNS):
            loc = "az://bench/ibs-%d" % run
            t, r, _ = timed("%s backup --location %s --cert %s/k.cer %s --fqdn bench.local"
                            % (IBS, loc, keys, ibs_sources(cpath)), env=az_env, warm=cpath)
            az_b.append(t)
            az_rss_b.append(r)
            dest = os.path.join(WORK, "az-restore-%d" % run)
            shutil.rmtree(dest, ignore_errors=True)
            t, r, _ = timed("%s restore --location %s %s --to %s" % (IBS, loc, restore_args, dest), env=az_env)
            az_r.append(t)
            az_rss_r.append(r)
    finally:
        os.killpg(az_proc.pid, 9)
        az_proc.wait()
    target_rows = [("local directory", infra["backup_s"], infra["restore_s"], infra["peak_rss_backup_MiB"],
                    infra["peak_rss_restore_MiB"]), smb_row,
                   ("Azure Blob (loopback Azurite)", statistics.median(az_b), statistics.median(az_r),
                    round(max(az_rss_b)), round(max(az_rss_r)))]
    return smb, nbytes, status, target_rows


def room(need):
    """Whether $IBS_BENCH_DIR's file system has `need` bytes free: (yes, free bytes)."""
    st = os.statvfs(WORK)
    free = st.f_bavail * st.f_frsize
    return free >= need, free


def large_remote(cpath, keys, archive_bytes):
    """The large case's remote rows (cold method): ibs backup to a loopback
    Samba share and restore from it, then the same with Azurite (in memory),
    IBS_BENCH_RUNS times each. Every restore goes to disk and is removed right
    after it was timed, and every restore waits IBS_BENCH_SETTLE seconds first
    (the previous restore's tree was just removed: ext4 creates files slowly
    for minutes after a bulk delete); the share's copies are removed before
    Azurite starts. Returns {"rows": [(what, backup s, restore s, peak RSS
    backup MiB, peak RSS restore MiB)], "notes": [...]}."""
    restore_args = "--fqdn bench.local --pfx %s/k.pfx --password-file %s/k.pw" % (keys, keys)
    # A restored tree takes what the corpus takes on disk (allocated blocks).
    tree = int(sh("du -s --block-size=1 %s" % shlex_quote(cpath)).stdout.split()[0])
    out = {"rows": [], "notes": []}

    def restore(what, cmd, dest, env=None, warm=None):
        print("  waiting %d s for the file system before the %s restore" % (SETTLE, what), flush=True)
        time.sleep(SETTLE)
        shutil.rmtree(dest, ignore_errors=True)
        t, r, _ = timed(cmd(dest), env=env, warm=warm)
        shutil.rmtree(dest, ignore_errors=True)
        print("  cold %s restore %6.2f s  %4.0f MiB RSS" % (what, t, r), flush=True)
        return t, r

    # SMB: the archive on the share and one restored tree beside the corpus.
    ok, free = room(tree + archive_bytes + (512 << 20))
    if not ok:
        out["notes"].append("SMB not run: %.1f GB free in %s, ~%.1f GB needed (a restored tree and the archive "
                            "on the share)" % (free / 1e9, WORK, (tree + archive_bytes + (512 << 20)) / 1e9))
    else:
        port, proc, auth = samba(WORK)
        b, r, rb, rr = [], [], [], []
        try:
            for run in range(RUNS):
                sh("mkdir -p %s/samba/share/ibs-%d" % (WORK, run))
                loc = "smb://127.0.0.1:%d/backup/ibs-%d" % (port, run)
                t, m, _ = timed("%s backup --location %s --credentials-file %s --cert %s/k.cer %s --fqdn bench.local"
                                % (IBS, loc, auth, keys, ibs_sources(cpath)), warm=cpath)
                b.append(t)
                rb.append(m)
                print("  cold SMB backup %6.2f s  %4.0f MiB RSS" % (t, m), flush=True)
                t, m = restore("SMB", lambda dest: "%s restore --location %s --credentials-file %s %s --to %s"
                               % (IBS, loc, auth, restore_args, dest), os.path.join(WORK, "smb-restore-%d" % run),
                               warm="%s/samba/share/ibs-%d" % (WORK, run))
                r.append(t)
                rr.append(m)
                shutil.rmtree("%s/samba/share/ibs-%d" % (WORK, run), ignore_errors=True)
        finally:
            os.killpg(proc.pid, 9)
            proc.wait()
            shutil.rmtree(os.path.join(WORK, "samba"), ignore_errors=True)
        out["rows"].append(("ibs to/from SMB (loopback Samba, encrypted)", statistics.median(b),
                            statistics.median(r), round(max(rb)), round(max(rr))))

    # Azure Blob: the archive in Azurite's memory, one restored tree on disk.
    ok, free = room(tree + (512 << 20))
    if not ok:
        out["notes"].append("Azure Blob not run: %.1f GB free in %s, ~%.1f GB needed (a restored tree)"
                            % (free / 1e9, WORK, (tree + (512 << 20)) / 1e9))
    else:
        az_port, az_proc, az_env = azurite(WORK)
        b, r, rb, rr = [], [], [], []
        try:
            for run in range(RUNS):
                loc = "az://bench/ibs-%d" % run
                t, m, _ = timed("%s backup --location %s --cert %s/k.cer %s --fqdn bench.local"
                                % (IBS, loc, keys, ibs_sources(cpath)), env=az_env, warm=cpath)
                b.append(t)
                rb.append(m)
                print("  cold Azure Blob backup %6.2f s  %4.0f MiB RSS" % (t, m), flush=True)
                t, m = restore("Azure Blob", lambda dest: "%s restore --location %s %s --to %s"
                               % (IBS, loc, restore_args, dest), os.path.join(WORK, "az-restore-%d" % run),
                               env=az_env)
                r.append(t)
                rr.append(m)
        finally:
            os.killpg(az_proc.pid, 9)
            az_proc.wait()
            shutil.rmtree(os.path.join(WORK, "azurite"), ignore_errors=True)
        out["rows"].append(("ibs to/from Azure Blob (Azurite, loopback, in memory)", statistics.median(b),
                            statistics.median(r), round(max(rb)), round(max(rr))))
    return out


def remove_trees():
    """Removes every repository, restored tree and share copy of this run.
    Only at the end: after a bulk delete this machine's ext4 creates files
    several times slower for minutes (see BENCHMARKING.md), which would slow
    whichever restore came next."""
    for name in os.listdir(WORK):
        if name in ("runs", "samba", "smb-local", "azurite") or name.startswith(("smb-restore-", "az-restore-")):
            shutil.rmtree(os.path.join(WORK, name), ignore_errors=True)


MANY_FILES_SECTION = "## Many small files"


def write_results(rows, smb, nbytes, status, target_rows, stats, args):
    default_out = args.out is None
    path = args.out or os.path.join(ROOT, "benches", "RESULTS.md")
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    if default_out:
        out_dir = os.path.join(ROOT, "benches", "results")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        # The plot: the warm method if it ran (the CPU work), else the cold one.
        plot_mode = "warm" if "warm" in modes else modes[0]
        prow = [r for r in rows if r["mode"] == plot_mode]
        cnames = list(dict.fromkeys(r["corpus"] for r in prow))
        dat = os.path.join(out_dir, "throughput.dat")
        with open(dat, "w") as f:
            f.write("# tool %s\n" % " ".join("%s_%s" % (c, k) for k in ("backup", "restore") for c in cnames))
            for tool in dict.fromkeys(r["tool"] for r in prow):
                get = lambda c, k: next((r[k] for r in prow if r["tool"] == tool and r["corpus"] == c), 0)
                f.write('"%s" %s\n' % (tool, " ".join(str(get(c, k + "_MBps")) for k in ("backup", "restore")
                                                     for c in cnames)))
        png = os.path.join(out_dir, "throughput.png")
        series = ", ".join(("'%s' using %d%s title '%s %s'" % (dat if i == 0 else "", i + 2,
                                                               ":xtic(1)" if i == 0 else "", c, k))
                           for i, (k, c) in enumerate((k, c) for k in ("backup", "restore") for c in cnames))
        sh("""gnuplot -e "set terminal png size 1000,500; set output '%s'; set style data histograms; \
set style histogram clustered gap 1; set style fill solid 0.8 border -1; set ylabel 'MB/s of source data'; \
set title 'ibs vs tar|zstd, restic, Borg (%s method, median of %d runs)'; set key top right; set yrange [0:*]; \
plot %s" """ % (png, plot_mode, RUNS, series))
        os.remove(dat)
    cpu = re.search(r"model name\s*: (.+)", open("/proc/cpuinfo").read()).group(1)
    mem = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024
    versions = {t: sh(c, check=False).stdout.strip().splitlines()[0] if sh(c, check=False).stdout.strip() else "?"
                for t, c in [("restic", "restic version"), ("borg", "borg --version"), ("zstd", "zstd --version"),
                             ("tar", "tar --version")]}
    lines = ["# Benchmark results", "",
             "Produced by `%sbash benches/compare/run.sh --mode %s` on %s. Machine: %s, %d cores, %d MiB RAM, %s. "
             "Median of %s runs per tool (min–max in the CSV), tools alternated; each backup a full one into a fresh "
             "repository, each restore into a fresh directory. ibs syncs what it wrote before it returns (the "
             "archive at commit, the restored tree at the end), the other tools do not. "
             "Ratios are to ibs (backup/restore time of the tool ÷ ibs's: > 1 means ibs is faster)."
             % ("".join("%s=%s " % (k, os.environ[k]) for k in ("IBS_BENCH_COLD_RUNS", "IBS_BENCH_SETTLE")
                        if k in os.environ), args.mode, time.strftime("%Y-%m-%d"), cpu, os.cpu_count(), mem, sh("uname -sr").stdout.strip(),
                ", ".join("%d (%s)" % (RUNS if m == "warm" else COLD_RUNS, m) for m in modes)),
             "",
             "Versions: " + "; ".join("%s: %s" % kv for kv in versions.items()), "",
             "Corpora (fixed seeds; zstd -3 ratio of the files' concatenated contents):", ""]
    for c, st in stats.items():
        lines.append("- **%s** — %s: %d files, %d MB, zstd -3 %.2f×"
                     % (c, CORPORA[c][2], st["files"], st["bytes"] // 1000000, st["zstd3"]))
    for mode in modes:
        title = {"warm": "Warm cache, outputs on tmpfs (the CPU work)",
                 "cold": "Cold cache, outputs on disk (what an operator sees)"}[mode]
        lines += ["", "## %s" % title, "", "Method: %s. %s" % (MODES[mode], {
            "warm": "Each restored tree removed right after it was timed (a tmpfs delete does not slow later "
                    "creates); repositories removed after the corpus's restores.",
            "cold": "A corpus's repositories and restored trees removed only after its last timing, and the next "
                    "corpus started %d s later (this ext4 creates files slowly for minutes after a bulk delete)."
                    % SETTLE}[mode]), "",
                  "| corpus | tool | backup MB/s | time ÷ ibs | restore MB/s | time ÷ ibs | output MB "
                  "| peak RSS backup / restore MiB |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            if r["mode"] != mode:
                continue
            lines.append("| %s (%d files, %d MB) | %s | %.1f | %.2f | %.1f | %.2f | %.1f | %d / %d |" % (
                r["corpus"], r["files"], r["source_bytes"] // 1000000, r["tool"].replace("|", "\\|"), r["backup_MBps"],
                r["backup_vs_ibs"], r["restore_MBps"], r["restore_vs_ibs"], r["output_bytes"] / 1e6,
                r["peak_rss_backup_MiB"], r["peak_rss_restore_MiB"]))
    lines += targets_section(rows, modes, smb, target_rows)
    if smb:
        lines += ["", "## SMB export (loopback Samba, encrypted session; cold method)", "",
                  "The same archive file (the infra corpus's, %d MB) uploaded by ibs's own SMB upload "
                  "(`target/release/examples/put`: the streaming write path of a backup — the target opened as "
                  "the controller opens it, SMB 3 encryption requested, 4 MiB writes, pieces of 256 KiB through a "
                  "queue of 8, hashed with SHA-256, written under a temporary name and renamed at commit) and by "
                  "`smbclient put --client-protection=encrypt`, alternated run by run after one untimed upload "
                  "each; each command's input read once, untimed, right before it. The whole ibs backup to the "
                  "share (capture, compression and encryption of the source as well) beside them, for reference."
                  % (nbytes // 1000000), "",
                  "| what | median s | MB/s of archive (%d MB) |" % (nbytes // 1000000), "| --- | ---: | ---: |"]
        for what, key in SMB_ROWS:
            lines.append("| %s | %.2f | %.1f |" % (what, smb[key], nbytes / smb[key] / 1e6))
        lines += ["", "ibs SMB upload ÷ smbclient put, throughput ratio: %.2f (the same bytes). Whole ibs backup "
                  "÷ smbclient put of its archive: %.2f (not the same work: the backup also reads, compresses and "
                  "encrypts the source)." % (smb["smbclient"] / smb["upload"], smb["smbclient"] / smb["backup"])]
        if target_rows:
            # What the share costs ibs: its SMB backup less its local one (same corpus, cold method).
            upload = smb["backup"] - target_rows[0][1]
            lines += ["", "The share's own cost: ibs backs up to SMB in %.2f s and to a local folder in %.2f s, so "
                      "the share adds %.2f s (the upload overlaps the capture); smbclient put of the same archive "
                      "bytes alone takes %.2f s." % (smb["backup"], target_rows[0][1], upload, smb["smbclient"])]
    if target_rows:
        size = stats["infra"]["bytes"]
        lines += ["", "## ibs on each storage target (infra corpus, %d MB; cold method)" % (size // 1000000), "",
                  "| target | backup median s | backup MB/s | restore median s | restore MB/s "
                  "| peak RSS backup / restore MiB |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for what, b, r, rss_b, rss_r in target_rows:
            lines.append("| %s | %.2f | %.1f | %.2f | %.1f | %d / %d |"
                         % (what, b, size / b / 1e6, r, size / r / 1e6, rss_b, rss_r))
    if default_out:
        lines += ["", "![throughput](results/throughput.png)", "", "CSV: [results/results.csv](results/results.csv)"]
    lines.append("")
    # The many-small-files section (benches/compare/many_files.sh) is kept.
    old = open(path).read() if os.path.exists(path) else ""
    kept = old[old.find(MANY_FILES_SECTION):] if MANY_FILES_SECTION in old else ""
    open(path, "w").write("\n".join(lines) + ("\n" + kept if kept else ""))
    print("\n".join(lines))


# Issue #18's targets: (what, tool, "backup" or "restore", least ratio of the
# tool's time to ibs's). The CPU target is checked on ibs's own row.
TARGETS = [("backup ≥ 1.0× tar | zstd -3 -T0", "tar|zstd -3 -T0", "backup", 1.0),
           ("restore ≥ 1.0× zstd -d | tar -x", "tar|zstd -3 -T0", "restore", 1.0),
           ("backup ≥ 3× restic", "restic", "backup", 3.0),
           ("restore ≥ 2× restic", "restic", "restore", 2.0),
           ("backup ≥ 6× Borg", "borg", "backup", 6.0)]


# The SMB export's rows: (what, key of targets()'s smb).
SMB_ROWS = [("ibs SMB upload of the archive (ibs's streaming upload, examples/put)", "upload"),
            ("smbclient put of the same archive", "smbclient"),
            ("whole ibs backup to SMB (capture+compress+encrypt+upload)", "backup")]


def targets_section(rows, modes, smb, target_rows=()):
    """The issue #18 targets, met or not, per method and corpus."""
    lines = ["", "## Targets (issue #18)", "",
             "Ratio = the other tool's time ÷ ibs's (> 1: ibs faster). Backup CPU use is ibs's median "
             "(/usr/bin/time's \"Percent of CPU\"; 200 % = both cores).", "",
             "| method | corpus | target | measured | met |", "| --- | --- | --- | ---: | --- |"]
    for mode in modes:
        for corpus in dict.fromkeys(r["corpus"] for r in rows if r["mode"] == mode):
            mine = {r["tool"]: r for r in rows if r["mode"] == mode and r["corpus"] == corpus}
            for what, tool, op, least in TARGETS:
                if tool in mine and "ibs" in mine:
                    got = mine[tool][op + "_vs_ibs"]
                    lines.append("| %s | %s | %s | %.2f | %s |" % (mode, corpus, what.replace("|", "\\|"), got,
                                                                 "met" if got >= least else "**not met**"))
            if "ibs" in mine:
                cpu = mine["ibs"]["cpu_backup_pct"]
                lines.append("| %s | %s | backup CPU use ≥ 185 %% | %d %% | %s |" % (
                    mode, corpus, cpu, "met" if cpu >= 185 else "**not met**"))
    # Every ibs backup and restore: local rows and each storage target's.
    rss = [max(r["peak_rss_backup_MiB"], r["peak_rss_restore_MiB"]) for r in rows if r["tool"] == "ibs"]
    rss += [max(t[3], t[4]) for t in target_rows]
    if rss:
        lines.append("| all | all | ibs peak RSS ≤ 128 MiB (local, SMB and Azure Blob backups and restores) "
                     "| %d MiB | %s |" % (max(rss), "met" if max(rss) <= 128 else "**not met**"))
    if smb:
        ratio = smb["smbclient"] / smb["upload"]
        lines.append("| cold | infra | SMB backup ≥ 0.8× smbclient put (ibs's SMB upload of the archive ÷ "
                     "smbclient put of the same file, throughput) | %.2f | %s |"
                     % (ratio, "met" if ratio >= 0.8 else "**not met**"))
        lines.append("| cold | infra | whole ibs backup to SMB ÷ smbclient put of its archive, throughput "
                     "(capture+compress+encrypt+upload vs upload; not the same work) | %.2f | for reference |"
                     % (smb["smbclient"] / smb["backup"]))
    return lines


def write_large(rows, stats, remote, args, echo=True):
    """The large case's tables: benches/RESULTS-<N>GiB.md (or --out). `remote`
    is large_remote()'s answer, or None when the remote part did not run."""
    path = args.out or os.path.join(ROOT, "benches", "RESULTS-%gGiB.md" % GIB)
    lines = ["# Benchmark results, %g GiB case (peak RSS)" % GIB, "",
             "Produced by `%sIBS_BENCH_GIB=%g bash benches/compare/run.sh` on %s (%s, %d cores). "
             "ibs and the tar|zstd reference to a local folder, median of %d run(s); each restore into a fresh "
             "directory, removed after it was timed. Methods: %s. The target: ibs's peak RSS under 128 MiB at "
             "1 GiB and at 10 GiB, local and remote (issue #18)."
             % ("".join("%s=%s " % (k, os.environ[k]) for k in ("IBS_BENCH_RUNS", "IBS_BENCH_SETTLE")
                        if k in os.environ), GIB, time.strftime("%Y-%m-%d"), sh("uname -sr").stdout.strip(),
                os.cpu_count(), RUNS, "; ".join("%s = %s" % (m, MODES[m]) for m in dict.fromkeys(r["mode"] for r in rows))),
             ""]
    for c, st in stats.items():
        lines.append("Corpus %s — %s: %d files, %d MB, zstd -3 %.2f×."
                     % (c, CORPORA[c][2], st["files"], st["bytes"] // 1000000, st["zstd3"]))
    lines += ["", "| method | corpus | tool | backup s | backup MB/s | restore s | restore MB/s | output MB "
              "| peak RSS backup / restore MiB |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %d / %d |" % (
            r["mode"], r["corpus"], r["tool"].replace("|", "\\|"), r["backup_s"], r["backup_MBps"], r["restore_s"], r["restore_MBps"],
            r["output_bytes"] / 1e6, r["peak_rss_backup_MiB"], r["peak_rss_restore_MiB"]))
    peaks = [max(r["peak_rss_backup_MiB"], r["peak_rss_restore_MiB"]) for r in rows if r["tool"] == "ibs"]
    if remote is not None:
        size = stats["infra"]["bytes"]
        lines += ["", "## ibs to and from remote targets (cold method)", "",
                  "ibs backup of the same corpus to a loopback Samba share (SMB 3, encrypted session) and to "
                  "Azurite (Azure Blob emulator on loopback, blobs in its memory), then a restore from each to "
                  "disk; each command synced first, the page cache dropped and its input read once (the share's "
                  "archive; Azurite's is in its memory); each restore waited %d s for the file system (the "
                  "previous restored tree had just been removed) and its tree was removed right after it was "
                  "timed; the share's copy removed before Azurite started. Peak RSS is the ibs process's "
                  "(/usr/bin/time -v), not the server's." % SETTLE, "",
                  "| target | backup s | backup MB/s | restore s | restore MB/s | peak RSS backup / restore MiB |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for what, b, r, rss_b, rss_r in remote["rows"]:
            lines.append("| %s | %.1f | %.1f | %.1f | %.1f | %d / %d |"
                         % (what, b, size / b / 1e6, r, size / r / 1e6, rss_b, rss_r))
            peaks.append(max(rss_b, rss_r))
        for note in remote["notes"]:
            lines += ["", "Note: %s." % note]
    if peaks:
        where = "local, SMB and Azure Blob backups and restores" if remote and remote["rows"] else \
            "local backups and restores"
        lines += ["", "ibs peak RSS (%s): %d MiB (%s 128 MiB)."
                  % (where, max(peaks), "under" if max(peaks) < 128 else "NOT under")]
    lines.append("")
    open(path, "w").write("\n".join(lines))
    if echo:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
