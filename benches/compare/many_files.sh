#!/usr/bin/env bash
# Many small files (issue #21: memory flat in the number of entries).
#   IBS_MANY_FILES=1000000 bash benches/compare/many_files.sh
#   IBS_MANY_FILES=5000000 IBS_MANY_RUNS=1 IBS_MANY_METHODS=disk \
#       IBS_MANY_DISK_OUT=/mnt/ext4-1k bash benches/compare/many_files.sh
#   (the 5 M case as in benches/RESULTS.md: outputs on an ext4 with 1 KiB
#   blocks, as two restored 5 M trees at 4 KiB per file need 40 GB)
#
# Generates IBS_MANY_FILES small documents of infrastructure state (users,
# groups, role assignments, plans, offers, subscriptions as JSON/XML of
# 320 B to 1.3 KB, mean 800 B, compressing 4.3x with zstd -3; 1 000 per folder;
# fixed seeds) on disk under IBS_MANY_DIR, in chunks of 1 000 000 files
# (corpus/m0, m1, ...: the 5 M tree contains the 1 M tree, which is generated
# once). Then, per run and per method, each under /usr/bin/time -v (wall time,
# peak RSS = "Maximum resident set size"; for a pipeline the largest of its
# processes):
#   ibs backup --location OUT --cert K --source state=CORPUS
#   tar -cf - CORPUS | zstd -3 -T0 > out.tar.zst
#   ibs verify --location OUT ...
#   ibs restore --location OUT ... --to FRESH
#   zstd -d -c out.tar.zst | tar -xf - -C FRESH
# Tools alternate (odd runs: tar|zstd before ibs). Before every timed command,
# untimed: sync, then the command's input read once (the corpus through
# `tar | cat`, the archive with cat), because this machine reclaims page cache
# within seconds (a 4 KiB page per file: a 5 M tree does not fit, see
# IBS_MANY_WARM).
# Methods (IBS_MANY_METHODS, default "tmpfs disk"):
#   tmpfs  outputs (archives and restored trees) on /dev/shm: the CPU work.
#          tmpfs holds ~3 M inodes here, so each restored tree is removed right
#          after it was timed (a tmpfs delete does not slow later creates as
#          ext4's does).
#   disk   outputs on the disk beside the corpus: what an operator sees. A
#          restored tree is kept until the end (ext4 creates files slowly for
#          minutes after a bulk delete) unless the disk has no room for the next
#          one: then trees are removed and IBS_MANY_SETTLE seconds (300) waited,
#          and the output says so.
# ibs syncs what it wrote before it returns (the archive, the restored tree);
# tar and zstd do not: the `sync` right after each tar restore is timed apart
# and printed (+sync).
# Environment: IBS_MANY_FILES (1000000), IBS_MANY_RUNS (3), IBS_MANY_METHODS,
# IBS_MANY_DIR (/var/tmp/ibs-many), IBS_MANY_TMPFS (/dev/shm/ibs-many),
# IBS_MANY_DISK_OUT (the disk method's outputs, $IBS_MANY_DIR/out; e.g. an
# ext4 with 1 KiB blocks when the disk has no room for 4 KiB per restored file),
# IBS_MANY_TIMEOUT (seconds per step, 3600), IBS_MANY_KEEP=1 keeps the outputs,
# IBS_MANY_GENERATE_ONLY=1 stops after the corpus, IBS_MANY_WARM=0/1 (read the
# corpus before each backup; default: when it fits in half the RAM).
# Prints a markdown table and writes it to $IBS_MANY_DIR/results-<N>-<methods>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${IBS_MANY_FILES:-1000000}
RUNS=${IBS_MANY_RUNS:-3}
METHODS=${IBS_MANY_METHODS:-tmpfs disk}
WORK=${IBS_MANY_DIR:-/var/tmp/ibs-many}
TMPFS=${IBS_MANY_TMPFS:-/dev/shm/ibs-many}
STEP_TIMEOUT=${IBS_MANY_TIMEOUT:-3600}
SETTLE=${IBS_MANY_SETTLE:-300}
CHUNK=1000000
IBS=$ROOT/target/release/ibs
PASSWORD=bench-password-not-secret

for p in zstd tar time; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p"
    }
done
[ -x "$IBS" ] || cargo build --release --locked -p ibs-cli
mkdir -p "$WORK"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- corpus ---------------------------------------------------------------
gen_chunk() { # gen_chunk DIR COUNT SEED
    timeout "$STEP_TIMEOUT" python3 - "$@" <<'EOF'
import json, os, random, sys
from multiprocessing import Pool

dest, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
PER = 1000
ROLES = ["Owner", "Contributor", "Reader", "User Access Administrator", "Key Vault Secrets User",
         "Storage Blob Data Reader", "Network Contributor", "Monitoring Reader"]
REGIONS = ["westeurope", "northeurope", "eastus", "local", "redmond"]
FIRST = ["anna", "ben", "chen", "dana", "eli", "fatima", "goran", "hana", "ivan", "jo", "kai", "lena",
         "mia", "nils", "omar", "petra", "quinn", "rui", "sara", "tomas"]
LAST = ["meyer", "schmidt", "nowak", "rossi", "garcia", "smith", "tanaka", "kim", "silva", "novak"]
DEPTS = ["Finance", "Operations", "Engineering", "Sales", "Support", "Legal", "Platform", "Security"]
SERVICES = ["Microsoft.Compute", "Microsoft.Storage", "Microsoft.Network", "Microsoft.KeyVault",
            "Microsoft.Sql", "Microsoft.Web", "Microsoft.Subscriptions"]


def guid(r):
    return "%08x-%04x-%04x-%04x-%012x" % (r.getrandbits(32), r.getrandbits(16), r.getrandbits(16),
                                          r.getrandbits(16), r.getrandbits(48))


def stamp(r):
    return "2026-%02d-%02dT%02d:%02d:%02dZ" % (r.randrange(1, 13), r.randrange(1, 29), r.randrange(24),
                                               r.randrange(60), r.randrange(60))


def user(r, i):
    f, l = r.choice(FIRST), r.choice(LAST)
    return "json", json.dumps({
        "objectId": guid(r), "objectType": "User", "userPrincipalName": "%s.%s%d@contoso.com" % (f, l, i),
        "displayName": "%s %s" % (f.title(), l.title()), "givenName": f.title(), "surname": l.title(),
        "mail": "%s.%s%d@contoso.com" % (f, l, i), "department": r.choice(DEPTS), "accountEnabled": r.random() < 0.9,
        "usageLocation": "DE", "createdDateTime": stamp(r), "lastPasswordChangeDateTime": stamp(r),
        "memberOf": [guid(r) for _ in range(r.randrange(0, 6))],
        "extensionAttributes": {"costCenter": "CC-%04d" % r.randrange(10000), "employeeType": "Employee"},
    }, indent=2)


def group(r, i):
    return "json", json.dumps({
        "objectId": guid(r), "objectType": "Group", "displayName": "grp-%s-%d" % (r.choice(DEPTS).lower(), i),
        "description": "Members of the %s team" % r.choice(DEPTS), "securityEnabled": True,
        "mailEnabled": False, "createdDateTime": stamp(r),
        "members": [guid(r) for _ in range(r.randrange(1, 25))],
    }, indent=2)


def role_assignment(r, i):
    sub = guid(r)
    return "json", json.dumps({
        "id": "/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments/%s" % (sub, guid(r)),
        "type": "Microsoft.Authorization/roleAssignments", "name": guid(r),
        "properties": {"roleDefinitionName": r.choice(ROLES), "roleDefinitionId": guid(r),
                       "principalId": guid(r), "principalType": r.choice(["User", "Group", "ServicePrincipal"]),
                       "scope": "/subscriptions/%s/resourceGroups/rg-%s-%03d" % (sub, r.choice(DEPTS).lower(),
                                                                                 r.randrange(500)),
                       "createdOn": stamp(r), "updatedOn": stamp(r), "createdBy": guid(r)},
    }, indent=2)


def plan(r, i):
    quotas = "\n".join('    <Quota service="%s" name="%s" limit="%d"/>' % (
        r.choice(SERVICES), r.choice(["cores", "vms", "storageGB", "publicIPs", "vaults", "databases"]),
        r.randrange(1, 100000)) for _ in range(r.randrange(2, 14)))
    return "xml", ('<?xml version="1.0" encoding="utf-8"?>\n<Plan xmlns="http://schemas.contoso.com/plans/2026">\n'
                   '  <PlanId>%s</PlanId>\n  <Name>plan-%d</Name>\n  <DisplayName>Plan %d (%s)</DisplayName>\n'
                   '  <State>%s</State>\n  <Region>%s</Region>\n  <Created>%s</Created>\n  <Quotas>\n%s\n  </Quotas>\n'
                   '</Plan>\n') % (guid(r), i, i, r.choice(DEPTS), r.choice(["Public", "Private", "Decommissioned"]),
                                   r.choice(REGIONS), stamp(r), quotas)


def offer(r, i):
    plans = "\n".join("    <PlanLink planId=\"%s\" addOn=\"%s\"/>" % (guid(r), str(r.random() < 0.3).lower())
                      for _ in range(r.randrange(1, 8)))
    return "xml", ('<?xml version="1.0" encoding="utf-8"?>\n<Offer xmlns="http://schemas.contoso.com/offers/2026">\n'
                   '  <OfferId>%s</OfferId>\n  <Name>offer-%d</Name>\n  <Description>%s offer for %s workloads'
                   '</Description>\n  <State>Public</State>\n  <MaxSubscriptionsPerAccount>%d'
                   '</MaxSubscriptionsPerAccount>\n  <BasePlans>\n%s\n  </BasePlans>\n</Offer>\n') % (
        guid(r), i, r.choice(["Standard", "Premium", "Developer"]), r.choice(DEPTS), r.randrange(1, 50), plans)


def subscription(r, i):
    return "json", json.dumps({
        "subscriptionId": guid(r), "displayName": "sub-%s-%d" % (r.choice(DEPTS).lower(), i),
        "owner": "%s@contoso.com" % r.choice(FIRST), "offerId": guid(r), "tenantId": guid(r),
        "state": r.choice(["Enabled", "Enabled", "Enabled", "Suspended", "Disabled"]),
        "delegatedProviderSubscriptionId": guid(r), "createdDate": stamp(r), "region": r.choice(REGIONS),
        "quotas": [{"service": s, "limit": r.randrange(1, 5000), "used": r.randrange(0, 1000)}
                   for s in r.sample(SERVICES, r.randrange(1, len(SERVICES)))],
        "tags": {"env": r.choice(["prod", "test", "dev"]), "owner": r.choice(LAST)},
    }, indent=2)


KINDS = [("users", user), ("groups", group), ("roleassignments", role_assignment), ("plans", plan),
         ("offers", offer), ("subscriptions", subscription)]


def folder(d):
    r = random.Random(seed * 1000003 + d)
    kind, fn = KINDS[d % len(KINDS)]
    path = os.path.join(dest, "%s-%04d" % (kind, d))
    os.makedirs(path, exist_ok=True)
    n = min(PER, count - d * PER)
    size = 0
    for i in range(n):
        ext, body = fn(r, d * PER + i)
        b = body.encode()
        with open(os.path.join(path, "%s-%07d.%s" % (kind[:-1], d * PER + i, ext)), "wb") as f:
            f.write(b)
        size += len(b)
    return size


if __name__ == "__main__":
    os.makedirs(dest, exist_ok=True)
    with Pool(os.cpu_count()) as p:
        total = sum(p.imap_unordered(folder, range((count + PER - 1) // PER), chunksize=4))
    print(total)
EOF
}

corpus() { # echoes the source directory for N files, generating what is missing
    local chunks=$(( (N + CHUNK - 1) / CHUNK )) want k dir stamp
    if [ "$chunks" -gt 1 ] && [ $((N % CHUNK)) -ne 0 ]; then
        echo "IBS_MANY_FILES above $CHUNK must be a multiple of it" >&2; exit 2
    fi
    for ((k = 0; k < chunks; k++)); do
        want=$CHUNK; [ "$chunks" -eq 1 ] && want=$N
        dir=$WORK/corpus/m$k
        stamp=$WORK/corpus-m$k.done # outside the tree, which is backed up
        if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
            log "generating $want files in $dir"
            rm -rf "$dir" "$stamp"
            gen_chunk "$dir" "$want" "$k" > /dev/null
            echo "$want" > "$stamp"
        fi
    done
    if [ "$chunks" -eq 1 ]; then
        echo "$WORK/corpus/m0"
    else
        for d in "$WORK"/corpus/m*; do # the tree holds exactly the chunks asked for
            [ -d "$d" ] || continue
            k=${d##*/m}; [ "$k" -lt "$chunks" ] || { echo "$d: remove it (or move it away) for N=$N" >&2; exit 2; }
        done
        echo "$WORK/corpus"
    fi
}

# ---- timing ---------------------------------------------------------------
warm() { # reads a command's input once, untimed
    sync
    if [ "$1" = "$SRC" ] && [ "$WARM_SRC" != 1 ]; then return; fi
    if [ -d "$1" ]; then tar -C "$1" -cf - . | cat > /dev/null; else cat "$1" > /dev/null; fi
}

# timed NAME CMD... : wall seconds and peak RSS (MiB) into $T_S / $T_RSS
timed() {
    local name=$1; shift
    local err; err=$(mktemp)
    if ! timeout "$STEP_TIMEOUT" /usr/bin/time -v "$@" 2> "$err" > /dev/null; then
        cat "$err" >&2; echo "$name failed (or timed out after $STEP_TIMEOUT s)" >&2; exit 1
    fi
    T_S=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$err")
    T_RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$err")
    rm -f "$err"
}

record() { # record METHOD STEP RUN SECONDS RSS
    echo "$1,$2,$3,$4,$5" >> "$CSV"
    log "$(printf '%-5s run %d %-14s %8.2f s %7.1f MiB' "$1" "$3" "$2" "$4" "$5")"
}

room_for_tree() { # enough free blocks and inodes on $1's file system for one more restored tree?
    local avail_k iavail
    avail_k=$(df -Pk "$1" | awk 'NR == 2 { print $4 }')
    iavail=$(df -Pi "$1" | awk 'NR == 2 { print $4 }')
    [ "$avail_k" -gt $(( (N * $(stat -f -c %S "$1") + BYTES) / 1024 + 1024 * 1024 )) ] && [ "$iavail" -gt $(( N * 11 / 10 + 100000 )) ]
}

restore_dest() { # restore_dest METHOD OUTROOT NAME RUN: a fresh directory, with room made if needed
    local method=$1 out=$2 name=$3 run=$4
    if [ "$method" = disk ] && ! room_for_tree "$out"; then
        log "disk: no room for another restored tree: removing the previous ones, then waiting $SETTLE s"
        echo "note: $method run $run $name: previous restored trees removed for room, then ${SETTLE} s waited" >> "$NOTES"
        rm -rf "$out"/restore-*
        sync; fstrim "$out" 2> /dev/null || true
        sleep "$SETTLE"
    fi
    echo "$out/restore-$name-$run"
}

# ---- main -----------------------------------------------------------------
SRC=$(corpus)
FILES=$(find "$SRC" -type f | wc -l)
BYTES=$(du -sb --apparent-size "$SRC" | cut -f1)
CORPUS_K=$(du -sk "$SRC" | cut -f1)
log "corpus $SRC: $FILES files, $BYTES bytes ($CORPUS_K KiB allocated)"
[ "${IBS_MANY_GENERATE_ONLY:-0}" != 1 ] || exit 0
# The corpus is read once before each backup only when its pages fit in half
# the RAM: a 5 M-file tree takes 20 GB of page cache (a 4 KiB page per file),
# so reading it first only evicts itself, and both tools read it from disk.
MEM_K=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)
WARM_SRC=${IBS_MANY_WARM:-$([ "$CORPUS_K" -lt $((MEM_K / 2)) ] && echo 1 || echo 0)}
KEYS=$WORK/keys
if [ ! -f "$KEYS/k.cer" ]; then
    rm -rf "$KEYS"; mkdir -p "$KEYS"
    echo "$PASSWORD" > "$KEYS/k.pw"
    "$IBS" keygen --out "$KEYS" --name k --password-file "$KEYS/k.pw" > /dev/null
fi
TAG=$N-${METHODS// /-}
CSV=$WORK/results-$TAG.csv
NOTES=$WORK/notes-$TAG.txt
echo "method,step,run,seconds,rss_mib" > "$CSV"
: > "$NOTES"
[ "$WARM_SRC" = 1 ] || echo "corpus ($CORPUS_K KiB allocated) not read before the backups: it does not fit in the page cache; both tools read it from disk" >> "$NOTES"
PFX=(--pfx "$KEYS/k.pfx" --password-file "$KEYS/k.pw")

for method in $METHODS; do
    case $method in
        tmpfs) OUT=$TMPFS/$N ;;
        disk) OUT=${IBS_MANY_DISK_OUT:-$WORK/out}/$N ;;
        *) echo "unknown method $method" >&2; exit 2 ;;
    esac
    rm -rf "$OUT"; mkdir -p "$OUT"
    for ((run = 0; run < RUNS; run++)); do
        IBSLOC=$OUT/ibs-$run TAR=$OUT/tar-$run
        mkdir -p "$IBSLOC" "$TAR"
        ibs_backup() {
            warm "$SRC"; timed "ibs backup" "$IBS" backup --location "$IBSLOC" --cert "$KEYS/k.cer" --source "state=$SRC"
            record "$method" "ibs backup" "$run" "$T_S" "$T_RSS"
        }
        tar_backup() {
            warm "$SRC"; timed "tar|zstd" bash -c 'tar -C "$1" -cf - . | zstd -3 -T0 -q -o "$2"' _ "$SRC" "$TAR/out.tar.zst"
            record "$method" "tar|zstd" "$run" "$T_S" "$T_RSS"
        }
        ibs_restore() {
            local dest; dest=$(restore_dest "$method" "$OUT" ibs "$run")
            mkdir -p "$dest"; warm "$IBSLOC"
            timed "ibs restore" "$IBS" restore --location "$IBSLOC" "${PFX[@]}" --to "$dest"
            record "$method" "ibs restore" "$run" "$T_S" "$T_RSS"
            if [ "$run" -eq 0 ]; then # untimed: the tree against the source (catches a partial restore)
                local got; got=$(find "$dest" -type f | wc -l)
                echo "$method ibs restore run 0: $got files restored (source $FILES)" >> "$NOTES"
                [ "$got" -eq "$FILES" ] || log "WARNING: ibs restored $got files of $FILES"
            fi
            [ "$method" != tmpfs ] || rm -rf "$dest"
        }
        tar_restore() {
            local dest; dest=$(restore_dest "$method" "$OUT" tar "$run")
            mkdir -p "$dest"; warm "$TAR/out.tar.zst"
            timed "zstd -d|tar -x" bash -c 'zstd -d -c -q "$1" | tar -C "$2" -xf -' _ "$TAR/out.tar.zst" "$dest"
            record "$method" "zstd -d|tar -x" "$run" "$T_S" "$T_RSS"
            timed "sync" sync
            record "$method" "+sync" "$run" "$T_S" "$T_RSS"
            [ "$method" != tmpfs ] || rm -rf "$dest"
        }
        if [ $((run % 2)) -eq 0 ]; then ibs_backup; tar_backup; else tar_backup; ibs_backup; fi
        warm "$IBSLOC"; timed "ibs verify" "$IBS" verify --location "$IBSLOC" "${PFX[@]}"
        record "$method" "ibs verify" "$run" "$T_S" "$T_RSS"
        if [ $((run % 2)) -eq 0 ]; then ibs_restore; tar_restore; else tar_restore; ibs_restore; fi
        echo "$method ibs-archive-bytes $(du -sb "$IBSLOC" | cut -f1) tar-zst-bytes $(stat -c %s "$TAR/out.tar.zst")" >> "$NOTES"
    done
    [ "${IBS_MANY_KEEP:-0}" = 1 ] || [ "$method" != tmpfs ] || rm -rf "$OUT"
done

# ---- table ----------------------------------------------------------------
python3 - "$CSV" "$NOTES" "$FILES" "$BYTES" "$RUNS" > "$WORK/results-$TAG.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
notes, files, size, runs = open(sys.argv[2]).read(), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def vals(m, step, key):
    return [float(r[key]) for r in rows if r["method"] == m and r["step"] == step]
def cell(m, step):
    s, rss = vals(m, step, "seconds"), vals(m, step, "rss_mib")
    if not s:
        return "–"
    rng = " (%.1f–%.1f)" % (min(s), max(s)) if len(s) > 1 else ""
    return "%.0f MiB, %.1f s%s" % (max(rss), statistics.median(s), rng)
print("%d files, %.0f MB (apparent), median of %s run(s) (min–max), peak RSS the largest of the runs\n" % (files, size / 1e6, runs))
print("| method | ibs backup | tar \\| zstd -3 -T0 | ibs verify | ibs restore | zstd -d \\| tar -x (+ sync) | backup time tar ÷ ibs | restore time tar(+sync) ÷ ibs |")
print("| --- | --- | --- | --- | --- | --- | ---: | ---: |")
for m in dict.fromkeys(r["method"] for r in rows):
    ib, tb = vals(m, "ibs backup", "seconds"), vals(m, "tar|zstd", "seconds")
    ir, tr, sy = vals(m, "ibs restore", "seconds"), vals(m, "zstd -d|tar -x", "seconds"), vals(m, "+sync", "seconds")
    # ratios run by run (same run), then the median
    rb = statistics.median(t / i for t, i in zip(tb, ib))
    rr = statistics.median(t / i for t, i in zip(tr, ir))
    rrs = statistics.median((t + s) / i for t, s, i in zip(tr, sy, ir))
    print("| %s | %s | %s | %s | %s | %s (+%.1f s) | %.2f | %.2f (%.2f) |" % (
        m, cell(m, "ibs backup"), cell(m, "tar|zstd"), cell(m, "ibs verify"), cell(m, "ibs restore"),
        cell(m, "zstd -d|tar -x"), statistics.median(sy), rb, rr, rrs))
print()
print("MB/s (median, source bytes): " + "; ".join(
    "%s: ibs backup %.0f, tar|zstd %.0f, ibs verify %.0f, ibs restore %.0f, zstd -d|tar -x %.0f" % (
        m, *(size / 1e6 / statistics.median(vals(m, st, "seconds")) for st in
             ["ibs backup", "tar|zstd", "ibs verify", "ibs restore", "zstd -d|tar -x"]))
    for m in dict.fromkeys(r["method"] for r in rows)))
print()
print("```\n" + notes.strip() + "\n```")
EOF
cat "$WORK/results-$TAG.md"
if [ "${IBS_MANY_KEEP:-0}" != 1 ]; then
    log "removing outputs"
    rm -rf "$WORK/out/$N" "$TMPFS/$N"
fi
