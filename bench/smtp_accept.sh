#!/bin/bash
# SMTP acceptance benchmark: Pillarbox against Postfix, in the same run.
#
# Both servers listen on their own high port of 127.0.0.1 and are driven by
# Postfix's smtp-source: 2 KB messages, one new connection per message, with
# 20 parallel sessions and with 1 session. What is measured is durable
# acceptance: a 250 to the final dot only after the message is on disk
# (Pillarbox: message, envelope and queue directory fsynced; Postfix: the queue
# file fsynced by cleanup(8)). Postfix delivers to its `discard` transport, so
# it does its usual queue work but writes no mailbox; Pillarbox has no delivery
# agents running, so its queue only grows, and each of its runs starts from a
# fresh, empty spool. The figure that matters is the ratio of the two rates in
# the same run (see bench/README.md), never an absolute rate.
#
# Run as root from anywhere:   bench/smtp_accept.sh
# Environment (all optional):
#   N_MULTI=2000   messages in each 20-session run
#   N_SINGLE=500   messages in each 1-session run
#   SESSIONS=20    the parallel session count
#   RUNS=3         runs per side and session count (alternating; median kept)
#   PBX_PORT=52525 PF_PORT=52526   listening ports
#   BUILD=build-bench              Pillarbox release build directory (made here)
#   KEEP=1         keep the work directory (logs, configs) for inspection
#   PBX_LOG=1      run pillarbox-master with -f (log to a file: costs Pillarbox
#                  a write per log line that Postfix, without syslog here, skips)
#   MODE=maildir   measure SMTP → Maildir instead (bench/smtp_maildir.sh): both
#                  servers deliver every message into a Maildir (fsynced), and
#                  a run ends when the last message is in new/
#   MODE=relay     measure outbound relaying instead (bench/smtp_relay.sh): both
#                  servers accept mail for a foreign domain from a trusted
#                  client and relay it to one smtp-sink on loopback (relayhost
#                  [127.0.0.1]:SINK_PORT, no TLS); a run ends when the sink has
#                  counted the last message
#   SINK_PORT=52527  the sink's port (MODE=relay)
#   NO_BUILD=1     run the programs already in BUILD (a before/after pair of
#                  builds) without rebuilding them
#   PBX_CONF=      extra lines for Pillarbox's pillarbox.conf (a before/after
#                  pair with one build, e.g. PBX_CONF='maildir_batch_delay = 0')
#   PROFILE=1      after the table, untimed runs of each side: CPU time per
#                  message (in all and per program), and fsyncs per message by
#                  kind of file (strace)
#   PROFILE_ONLY=1 the profile runs without the table
#   SPOOL_FS=loop  where both servers' spools (and Maildirs) live, the same for
#                  both: `loop` (default) a file system made for this run only,
#                  ext4 with Debian's mkfs.ext4 defaults (a journal) mounted
#                  without `discard`, on a zero-filled image in /var/tmp behind
#                  a loop device (direct I/O); `loop-nojournal` the same made
#                  and mounted like this machine's /var/tmp (no journal,
#                  `discard`); `var-tmp` directly on /var/tmp, as before
#                  (its free-inode and discard history, and every other
#                  helper's files, come into the figures: bench/RESULTS.md).
#                  The loop file system is unmounted and removed at the end.
#   LOOP_MB=       the loop image's size (default: enough inodes for the runs)
set -euo pipefail

N_MULTI=${N_MULTI:-2000}
N_SINGLE=${N_SINGLE:-500}
SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-3}
PBX_PORT=${PBX_PORT:-52525}
PF_PORT=${PF_PORT:-52526}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build-bench}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
MODE=${MODE:-accept}
case $MODE in accept | maildir | relay) ;; *) echo "smtp_accept.sh: MODE is accept, maildir or relay" >&2; exit 1 ;; esac
SINK_PORT=${SINK_PORT:-52527}
DOMAIN=bench.test
# The recipient: a virtual user of Pillarbox's; for Postfix (MODE=maildir) a
# system account of that name, made here and removed at the end.
RCPT_USER=pbxbench
RCPT=$RCPT_USER@$DOMAIN
[ "$MODE" = relay ] && RCPT=$RCPT_USER@sink.test
SENDER=sender@$DOMAIN

die() {
    echo "smtp_accept.sh: $*" >&2
    exit 1
}
log() { echo "== $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (pillarbox-master and postfix need it)"

# ---- Postfix from Debian, never left running as the system MTA ---------------

if ! command -v smtp-source >/dev/null || ! command -v postfix >/dev/null; then
    log "installing postfix"
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null ||
        die "apt-get install postfix failed"
fi
# The package may have started the system instance (on port 25, /etc/postfix):
# stop it so that only our own instance runs. There is no systemd here, but
# stop it through systemd too where there is one.
if [ -d /run/systemd/system ]; then
    systemctl disable --now postfix >/dev/null 2>&1 || true
fi
if postfix status >/dev/null 2>&1; then
    log "stopping the system postfix instance"
    postfix stop >/dev/null 2>&1 || true
fi
PF_VERSION=$(postconf -h mail_version)

# ---- Pillarbox release build ---------------------------------------------------

if [ ! -f "$BUILD/build.ninja" ]; then
    log "meson setup $BUILD (release)"
    meson setup "$BUILD" "$SRC" --buildtype=release -Dtests=false >/dev/null ||
        die "meson setup failed"
fi
# A sanitizer or debug build would measure the instrumentation, not Pillarbox.
BUILD_TYPE=$(meson introspect --buildoptions "$BUILD" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["buildtype"], o["b_sanitize"])')
[ "$BUILD_TYPE" = "release none" ] ||
    die "$BUILD is not a plain release build ($BUILD_TYPE); use another BUILD="
log "building Pillarbox in $BUILD"
PROGRAMS="authd queue-manager smtpd"
[ "$MODE" = maildir ] && PROGRAMS="$PROGRAMS local-delivery"
[ "$MODE" = relay ] && PROGRAMS="$PROGRAMS remote-delivery"
targets=(master/pillarbox-master)
for prog in $PROGRAMS; do targets+=("$prog/$prog"); done
if [ "${NO_BUILD:-0}" = 1 ]; then
    log "NO_BUILD=1: using $BUILD as it is"
else
    ninja -C "$BUILD" -j2 "${targets[@]}" >/dev/null || die "build failed (ninja -C $BUILD)"
fi
"$SRC/packaging/create-users.sh" >/dev/null

SPOOL_FS=${SPOOL_FS:-loop}
case $SPOOL_FS in loop | loop-nojournal | var-tmp) ;; *) die "SPOOL_FS is loop, loop-nojournal or var-tmp" ;; esac
BASE=$(mktemp -d /var/tmp/pbx-bench.XXXXXX)
chmod 755 "$BASE"
LOOP_DEV=
WORK=$BASE
PBX_MASTER_PID=
# loop_fs_down: unmount and detach the run's file system (its processes are
# gone); a busy mount (a server still exiting) gets a few more tries.
loop_fs_down() {
    local _
    if mountpoint -q "$BASE/fs"; then
        for _ in $(seq 50); do
            umount "$BASE/fs" 2>/dev/null && break
            sleep 0.1
        done
    fi
    [ -n "$LOOP_DEV" ] && losetup -d "$LOOP_DEV" 2>/dev/null
    LOOP_DEV=
}
cleanup() {
    if declare -F sink_stop >/dev/null; then sink_stop; fi
    if [ -n "$PBX_MASTER_PID" ]; then
        kill -TERM "$PBX_MASTER_PID" 2>/dev/null || true
        wait "$PBX_MASTER_PID" 2>/dev/null || true
    fi
    if [ -f "$WORK/postfix/etc/main.cf" ]; then
        postfix -c "$WORK/postfix/etc" stop >/dev/null 2>&1 || true
    fi
    if [ "$MODE" = maildir ] && id "$RCPT_USER" >/dev/null 2>&1; then
        userdel "$RCPT_USER" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        # The logs and configs outlive the loop file system.
        if [ "$WORK" != "$BASE" ]; then
            cp -a "$P/master.log" "$BASE/" 2>/dev/null || true
            cp -a "$P/pillarbox.conf" "$F/etc" "$BASE/" 2>/dev/null || true
        fi
        loop_fs_down
        rm -f "$BASE/fs.img"
        echo "kept $BASE" >&2
    else
        loop_fs_down
        rm -rf "$BASE"
    fi
}
trap cleanup EXIT

# The spool file system: both servers' spools in the same one (fairness). A
# fresh ext4 of our own takes out what /var/tmp's history puts into a run:
# that file system has no journal and is mounted with `discard`, and is shared
# with every other job of the machine (bench/RESULTS.md, "bimodal").
if [ "$SPOOL_FS" != var-tmp ]; then
    # Inodes: Debian's mkfs.ext4 makes one per 16 KiB; Pillarbox keeps two
    # files per message of every run (three with MODE=maildir), Postfix one
    # Maildir file per message (MODE=maildir). Twice that, at least 512 MiB.
    if [ -z "${LOOP_MB:-}" ]; then
        LOOP_MB=$(((RUNS * (N_MULTI + N_SINGLE) * 4 * 16 * 2) / 1024))
        [ "$LOOP_MB" -ge 512 ] || LOOP_MB=512
    fi
    log "making the spool file system ($SPOOL_FS, $LOOP_MB MiB, zero-filled)"
    # Zero-filled, not sparse: the image's blocks exist on /var/tmp before the
    # runs, so no run pays for allocating them there.
    dd if=/dev/zero of="$BASE/fs.img" bs=1M count="$LOOP_MB" conv=fsync status=none ||
        die "cannot write the $LOOP_MB MiB image $BASE/fs.img"
    LOOP_DEV=$(losetup --find --show --direct-io=on "$BASE/fs.img") ||
        die "losetup failed (is the loop module there?)"
    mkdir "$BASE/fs"
    if [ "$SPOOL_FS" = loop ]; then
        mkfs.ext4 -q -F "$LOOP_DEV" >/dev/null || die "mkfs.ext4 $LOOP_DEV failed"
        mount "$LOOP_DEV" "$BASE/fs" || die "mount $LOOP_DEV failed"
    else
        mkfs.ext4 -q -F -O ^has_journal "$LOOP_DEV" >/dev/null || die "mkfs.ext4 $LOOP_DEV failed"
        mount -o discard "$LOOP_DEV" "$BASE/fs" || die "mount $LOOP_DEV failed"
    fi
    WORK=$BASE/fs/work
    mkdir "$WORK"
    chmod 755 "$BASE/fs" "$WORK"
fi
SPOOL_FS_DESC="$SPOOL_FS: $(findmnt -n -o FSTYPE,OPTIONS -T "$WORK" | tr -s ' ')"
SPOOL_FS_DESC="$SPOOL_FS_DESC; $(findmnt -n -o SOURCE -T "$WORK")"

# rcpt_probe PORT: true when the server says 250 to RCPT TO:<$RCPT> (then RSET).
rcpt_probe() {
    python3 - "$1" "$SENDER" "$RCPT" <<'PY' 2>/dev/null
import smtplib, sys
try:
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5)
    s.helo("probe.bench.test")
    s.mail(sys.argv[2])
    code = s.rcpt(sys.argv[3])[0]
    s.rset()
    s.quit()
except Exception:
    sys.exit(1)
sys.exit(0 if code == 250 else 1)
PY
}

# ---- the Pillarbox instance -----------------------------------------------------

P=$WORK/pillarbox
mkdir -p "$P/libexec" "$P/tls" "$P/mail"
chmod 755 "$P" "$P/libexec" "$P/tls" "$P/mail"
chown pbx-vmail:pbx-vmail "$P/mail"
for prog in $PROGRAMS; do
    ln -s "$BUILD/$prog/$prog" "$P/libexec/$prog"
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$P/tls/key.pem" -out "$P/tls/cert.pem" 2>/dev/null
chmod 600 "$P/tls/key.pem"
HASH=$(echo bench | openssl passwd -6 -stdin)
# pbx_users HOME: the users file, with the user's mail under HOME.
pbx_users() {
    printf '%s:%s:%d:%d:%s:%s/Maildir/\n' "$RCPT_USER" "$HASH" "$(id -u pbx-vmail)" \
        "$(id -g pbx-vmail)" "$1" "$1" >"$P/users"
    chown root:pbx-auth "$P/users"
    chmod 640 "$P/users"
}
pbx_users "$P/mail/home.0"
printf 'postmaster: %s\n' "$RCPT_USER" >"$P/aliases"
chown root:pbx-auth "$P/aliases"
chmod 640 "$P/aliases"
DELIVERY=no REMOTE=no TRUSTED= RELAYHOST= COUNTED="queue/*.env"
case $MODE in
maildir) DELIVERY=yes COUNTED="Maildir/new/*" ;;
relay) REMOTE=yes TRUSTED=127.0.0.0/8 RELAYHOST="[127.0.0.1]:$SINK_PORT" COUNTED="messages at the sink" ;;
esac
cat >"$P/pillarbox.conf" <<EOF
# written by bench/smtp_accept.sh
myhostname = mail.$DOMAIN
domains = $DOMAIN
runtime_dir = $P/run
spool_dir = $P/spool
program_dir = $P/libexec
users_file = $P/users
aliases_file = $P/aliases
tls_cert_file = $P/tls/cert.pem
tls_key_file = $P/tls/key.pem
trusted_networks = $TRUSTED
relayhost = $RELAYHOST
remote_tls_level = none
smtp_listen = 127.0.0.1:$PBX_PORT
submission_listen =
submissions_listen =
pop3_listen =
pop3s_listen =
imap_listen =
imaps_listen =
local_delivery_enable = $DELIVERY
remote_delivery_enable = $REMOTE
# smtp-source opens up to 20 sessions at once from 127.0.0.1, the default
# per-client limit; Postfix exempts \$mynetworks from its own limit.
smtpd_max_connections_per_ip = 100
EOF
[ -n "${PBX_CONF:-}" ] && printf '%s\n' "$PBX_CONF" >>"$P/pillarbox.conf"

# Every run gets a new spool directory (and, with MODE=maildir, a new home with
# an empty Maildir); all are removed at the end only. On
# ext4 without a journal (this machine's /var/tmp, SPOOL_FS=var-tmp or
# loop-nojournal), allocating an inode skips every inode deleted in the last
# minute or five (recently_deleted()), so removing the previous run's
# thousands of files right before a run would slow its file creations down,
# and the cost would depend on the order of the runs.
RUN_SEQ=0
PBX_SPOOL=

pbx_start() {
    RUN_SEQ=$((RUN_SEQ + 1))
    PBX_SPOOL=$P/spool.$RUN_SEQ
    rm -rf "$P/run"
    install -d -m 700 -o pbx-queue -g pbx-queue "$PBX_SPOOL"
    MAILDIR=$P/mail/home.$RUN_SEQ/Maildir
    install -d -m 700 -o pbx-vmail -g pbx-vmail "$P/mail/home.$RUN_SEQ" "$MAILDIR" \
        "$MAILDIR/cur" "$MAILDIR/new" "$MAILDIR/tmp"
    pbx_users "$P/mail/home.$RUN_SEQ"
    sed -i "s|^spool_dir = .*|spool_dir = $PBX_SPOOL|" "$P/pillarbox.conf"
    local flags=()
    [ "${PBX_LOG:-0}" = 1 ] && flags=(-f)
    "$BUILD/master/pillarbox-master" "${flags[@]}" -c "$P/pillarbox.conf" \
        >>"$P/master.log" 2>&1 </dev/null &
    PBX_MASTER_PID=$!
    # The master binds the port before its children run, and smtpd may greet
    # before authd or the queue-manager listen (RCPT then gets a 451): wait
    # until a RCPT for the user is accepted and the enqueue socket exists.
    local _
    for _ in $(seq 300); do
        if [ -S "$P/run/queue/enqueue.sock" ] && rcpt_probe "$PBX_PORT"; then return 0; fi
        kill -0 "$PBX_MASTER_PID" 2>/dev/null || die "pillarbox-master exited (log: $P/master.log)"
        sleep 0.1
    done
    die "Pillarbox does not accept RCPT TO:<$RCPT> on port $PBX_PORT (log: $P/master.log)"
}

pbx_stop() {
    kill -TERM "$PBX_MASTER_PID"
    wait "$PBX_MASTER_PID" || true
    PBX_MASTER_PID=
}

pbx_queued() {
    find "$PBX_SPOOL/queue" -maxdepth 1 -name '*.env' | wc -l
}

# ---- the Postfix instance -------------------------------------------------------

F=$WORK/postfix
mkdir -p "$F/etc" "$F/data"
chown postfix "$F/data"
if [ "$MODE" = maildir ]; then
    # Postfix's local(8) delivers to system accounts, as the account, into
    # home_mailbox; the home changes with every run (pf_start).
    id "$RCPT_USER" >/dev/null 2>&1 && die "a user $RCPT_USER exists already; remove it first"
    useradd --system --no-create-home --home-dir "$F/home.0" --shell /usr/sbin/nologin "$RCPT_USER"
    PF_DELIVERY="local_transport = local
home_mailbox = Maildir/"
elif [ "$MODE" = relay ]; then
    PF_DELIVERY="local_transport = discard
default_transport = smtp
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = none"
else
    PF_DELIVERY="local_transport = discard"
fi
cat >"$F/etc/main.cf" <<EOF
# written by bench/smtp_accept.sh
compatibility_level = 3.6
queue_directory = $F/spool.0
data_directory = $F/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = $DOMAIN
mydestination = $DOMAIN
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Unknown users are refused at RCPT, as Pillarbox's smtpd does through authd.
local_recipient_maps = hash:$F/etc/recipients
alias_maps =
alias_database =
smtpd_banner = \$myhostname ESMTP
biff = no
# MODE=accept: deliver nothing; everything goes to discard(8), after the queue
# file was fsynced by cleanup(8) and before any mailbox write. MODE=maildir:
# local(8) into ~/Maildir/ (it fsyncs the file before the rename into new/).
default_transport = discard
$PF_DELIVERY
relay_transport = discard
virtual_transport = discard
EOF
printf '%s x\n' "$RCPT_USER" >"$F/etc/recipients"
postmap "$F/etc/recipients"
# Only what the SMTP path and the queue need; no chroot (Pillarbox's smtpd
# chroots, but a chroot costs nothing per message).
cat >"$F/etc/master.cf" <<EOF
# written by bench/smtp_accept.sh
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
EOF

pf_start() {
    RUN_SEQ=$((RUN_SEQ + 1))
    PF_SPOOL=$F/spool.$RUN_SEQ
    mkdir -p "$PF_SPOOL"
    postconf -c "$F/etc" -e "queue_directory = $PF_SPOOL"
    if [ "$MODE" = maildir ]; then
        MAILDIR=$F/home.$RUN_SEQ/Maildir
        install -d -m 700 -o "$RCPT_USER" "$F/home.$RUN_SEQ"
        usermod -d "$F/home.$RUN_SEQ" "$RCPT_USER"
    fi
    postfix -c "$F/etc" check >/dev/null 2>&1 || true  # creates the queue directories
    postfix -c "$F/etc" start >/dev/null 2>&1 || die "postfix -c $F/etc start failed"
    local _
    for _ in $(seq 300); do
        rcpt_probe "$PF_PORT" && return 0
        sleep 0.1
    done
    die "Postfix does not accept RCPT TO:<$RCPT> on port $PF_PORT"
}

pf_stop() {
    postfix -c "$F/etc" stop >/dev/null 2>&1 || true
    local _
    for _ in $(seq 100); do
        [ -f "$PF_SPOOL/pid/master.pid" ] || return 0
        kill -0 "$(tr -d ' ' <"$PF_SPOOL/pid/master.pid")" 2>/dev/null || return 0
        sleep 0.1
    done
}

# ---- the runs -------------------------------------------------------------------

# delivered: messages in $MAILDIR/new (MODE=maildir), or counted by the sink
# (MODE=relay).
delivered() {
    if [ "$MODE" = relay ]; then
        tr '\r' '\n' <"$BASE/sink.out" 2>/dev/null | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 |
            grep . || echo 0
    else
        find "$MAILDIR/new" -maxdepth 1 -type f 2>/dev/null | wc -l
    fi
}

# MODE=relay: a new smtp-sink for each run, counting messages.
SINK_PID=
sink_start() {
    [ "$MODE" = relay ] || return 0
    : >"$BASE/sink.out"
    smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 256 >"$BASE/sink.out" 2>&1 &
    SINK_PID=$!
    sleep 0.3
}
sink_stop() {
    [ -n "$SINK_PID" ] || return 0
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=
}

# run_source PORT SESSIONS COUNT: prints the wall-clock seconds smtp-source took
# (MODE=maildir: until the COUNT-th message is in the Maildir's new/).
# Without -d, smtp-source disconnects after each message: one connection each.
run_source() {
    local t0 t1 _
    t0=$(date +%s.%N)
    smtp-source -s "$2" -l 2048 -m "$3" -f "$SENDER" -t "$RCPT" -M client.$DOMAIN \
        "127.0.0.1:$1" >"$BASE/source.out" 2>&1 ||
        die "smtp-source against port $1 failed: $(tail -3 "$BASE/source.out")"
    if [ "$MODE" != accept ]; then
        for _ in $(seq 6000); do
            [ "$(delivered)" -ge "$3" ] && break
            sleep 0.05
        done
        [ "$(delivered)" -ge "$3" ] || die "only $(delivered) of $3 messages were delivered ($MODE)"
    fi
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'
}

# The disk under /var/tmp (and under the loop image): its writes, flushes and
# discards during each run, whoever made them, go into the run's line. Other
# jobs' file removals show up there as discards (this machine mounts
# /var/tmp with `discard`).
HOST_DISK=$(basename "$(findmnt -n -o SOURCE -T /var/tmp)")
# (/proc/diskstats: writes, ms writing, flushes, ms flushing, discards.)
disk_snap() {
    awk -v d="$HOST_DISK" '$3 == d { print $8, $11, $19, $20, $15; f = 1 }
        END { if (!f) print 0, 0, 0, 0, 0 }' /proc/diskstats
}
# disk_delta BEFORE AFTER: the writes, flushes and discards between two
# snapshots, with the device's mean time per write and per flush.
disk_delta() {
    echo "$1 $2" | awk '{ w = $6 - $1; f = $8 - $3
        printf "writes=%d (%.2f ms) flushes=%d (%.2f ms) discards=%d", w, w ? ($7 - $2) / w : 0,
            f, f ? ($9 - $4) / f : 0, $10 - $5 }'
}

# The spool file system's own journal commits and flushes (SPOOL_FS=loop*):
# jbd2's transaction count (/proc/fs/jbd2/<dev>-8/info, journal only) and the
# loop device's flush requests (/sys/block/<dev>/stat, field 16). Unlike the
# host disk's figures, only the two servers' spools are on it, so these count
# what each server's commit protocol asks of the file system (load does not
# change them much).
spool_snap() {
    local dev tx=0 fl=0
    if [ -n "$LOOP_DEV" ]; then
        dev=$(basename "$LOOP_DEV")
        [ -r "/proc/fs/jbd2/$dev-8/info" ] && tx=$(awk 'NR == 1 { print $1 }' "/proc/fs/jbd2/$dev-8/info")
        fl=$(awk '{ print $16 }' "/sys/block/$dev/stat")
    fi
    echo "$tx $fl"
}
# spool_delta BEFORE AFTER COUNT: journal commits and flushes per message.
spool_delta() {
    [ -n "$LOOP_DEV" ] || return 0
    echo "$1 $2" | awk -v n="$3" '{ printf " spool: commits=%.2f flushes=%.2f per message", ($3 - $1) / n, ($4 - $2) / n }'
}

# tree_pids ROOT: ROOT and every process below it.
tree_pids() {
    local frontier=$1 next p c
    echo "$1"
    while [ -n "$frontier" ]; do
        next=
        for p in $frontier; do
            for c in $(pgrep -P "$p"); do
                echo "$c"
                next="$next $c"
            done
        done
        frontier=$next
    done
}

# tree_ticks ROOT: CPU clock ticks (user + system, reaped children included)
# of the process tree.
tree_ticks() {
    local p total=0 f
    for p in $(tree_pids "$1"); do
        f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # shellcheck disable=SC2086
        set -- $f
        total=$((total + ${12} + ${13} + ${14} + ${15}))
    done
    echo "$total"
}

# tree_cpu ROOT: "user system" clock ticks of the process tree (reaped
# children included).
tree_cpu() {
    local p u=0 y=0 f
    for p in $(tree_pids "$1"); do
        f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # shellcheck disable=SC2086
        set -- $f
        u=$((u + ${12} + ${14}))
        y=$((y + ${13} + ${15}))
    done
    echo "$u $y"
}

# tree_switches ROOT: context switches (voluntary: the thread slept, waiting
# for I/O or another process) of every thread of the process tree. Each is a
# wake-up, which on a loaded machine waits for a core: the count says how
# much a side's latency depends on the load. Threads that exited during a run
# are not counted.
tree_switches() {
    local p
    for p in $(tree_pids "$1"); do
        cat /proc/"$p"/task/*/status 2>/dev/null
    done | awk '$1 == "voluntary_ctxt_switches:" { v += $2 } END { print v + 0 }'
}

# tree_ticks_by_pid ROOT: "pid comm ticks" for every process of the tree
# (ticks: user + system, reaped children included).
tree_ticks_by_pid() {
    local p f comm
    for p in $(tree_pids "$1"); do
        f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        comm=$(tr -d ' ' <"/proc/$p/comm" 2>/dev/null) || continue
        # shellcheck disable=SC2086
        set -- $f
        echo "$p $comm $((${12} + ${13} + ${14} + ${15}))"
    done
}

# per_program BEFORE AFTER COUNT: CPU ms per message by program name (a
# process that started during the run counts from 0; one that exited is in
# its parent's reaped-children time).
per_program() {
    awk -v n="$3" -v hz="$(getconf CLK_TCK)" '
        FNR == NR { before[$1] = $3; next }
        { t[$2] += $3 - (($1 in before) ? before[$1] : 0) }
        END { for (c in t) if (t[c] > 0) printf "              %-18s %6.3f ms/message\n", c, t[c] * 1000 / hz / n }' \
        "$1" "$2" | sort -k2,2gr
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

RESULTS=$BASE/results
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)

if [ "${PROFILE_ONLY:-0}" != 1 ]; then
for sessions in "$SESSIONS" 1; do
    if [ "$sessions" = 1 ]; then n=$N_SINGLE; else n=$N_MULTI; fi
    for run in $(seq "$RUNS"); do
        # Alternate which side goes first so that neither always gets the
        # warmer (or the quieter) half of the machine's time.
        if [ $((run % 2)) = 1 ]; then order="pillarbox postfix"; else order="postfix pillarbox"; fi
        for side in $order; do
            sink_start
            if [ "$side" = pillarbox ]; then
                pbx_start
                d0=$(disk_snap) c0=$(tree_cpu "$PBX_MASTER_PID") w0=$(tree_switches "$PBX_MASTER_PID") j0=$(spool_snap)
                secs=$(run_source "$PBX_PORT" "$sessions" "$n")
                d1=$(disk_snap) c1=$(tree_cpu "$PBX_MASTER_PID") w1=$(tree_switches "$PBX_MASTER_PID") j1=$(spool_snap)
                if [ "$MODE" != accept ]; then
                    queued=$(delivered)
                    pbx_stop
                    [ "$queued" = "$n" ] || die "Pillarbox: $n accepted, $queued delivered ($MODE)"
                else
                    queued=$(pbx_queued)
                    pbx_stop
                    [ "$queued" = "$n" ] || die "Pillarbox lost mail: $n accepted, $queued envelopes in queue/"
                fi
            else
                pf_start
                pf_root=$(tr -d ' ' <"$PF_SPOOL/pid/master.pid")
                d0=$(disk_snap) c0=$(tree_cpu "$pf_root") w0=$(tree_switches "$pf_root") j0=$(spool_snap)
                secs=$(run_source "$PF_PORT" "$sessions" "$n")
                d1=$(disk_snap) c1=$(tree_cpu "$pf_root") w1=$(tree_switches "$pf_root") j1=$(spool_snap)
                if [ "$MODE" != accept ]; then queued=$(delivered); else queued="-"; fi
                pf_stop
            fi
            sink_stop
            rate=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
            disk="$(disk_delta "$d0" "$d1")$(spool_delta "$j0" "$j1" "$n")"
            # CPU ms per message of the server's processes during the run,
            # user + system: system time is where a file system's own cost
            # shows (bench/RESULTS.md: ext4 without a journal).
            cpu=$(echo "$c0 $c1" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" '{
                printf "cpu=%.2f+%.2f", ($3 - $1) * 1000 / hz / n, ($4 - $2) * 1000 / hz / n }')
            cpu="$cpu sleeps=$(awk -v a="$w0" -v b="$w1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')"
            load=$(cut -d' ' -f1 /proc/loadavg)
            printf '%s %s %s %s %s %s %s load=%s %s %s: %s\n' "$sessions" "$n" "$run" "$side" "$secs" \
                "$rate" "$queued" "$load" "$cpu" "$HOST_DISK" "$disk" >>"$RESULTS"
            printf '%-9s sessions=%-2s run=%s messages=%-5s %8.3f s %8.1f msg/s  %s=%s load=%s %s %s: %s\n' \
                "$side" "$sessions" "$run" "$n" "$secs" "$rate" "$COUNTED" "$queued" \
                "$load" "$cpu" "$HOST_DISK" "$disk" >&2
        done
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')   nproc: $(nproc)   load average before: $LOAD_BEFORE   after: $LOAD_AFTER"
echo "spools: $SPOOL_FS_DESC"
echo "postfix $PF_VERSION; Pillarbox $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo '?') ($BUILD, release); $RUNS runs per side, median; $(($(date +%s) - START)) s in all"
echo
echo "mode: $MODE"
printf '| sessions | messages | Pillarbox msg/s | Postfix msg/s | ratio | Pillarbox %s after each run |\n' "$COUNTED"
printf '|---:|---:|---:|---:|---:|---|\n'
for sessions in "$SESSIONS" 1; do
    if [ "$sessions" = 1 ]; then n=$N_SINGLE; else n=$N_MULTI; fi
    pbx=$(awk -v s="$sessions" '$1 == s && $4 == "pillarbox" { print $6 }' "$RESULTS" | median)
    pf=$(awk -v s="$sessions" '$1 == s && $4 == "postfix" { print $6 }' "$RESULTS" | median)
    envs=$(awk -v s="$sessions" '$1 == s && $4 == "pillarbox" { printf "%s%s", sep, $7; sep = ", " }' "$RESULTS")
    ratio=$(awk -v a="$pbx" -v b="$pf" 'BEGIN { printf "%.2f", a / b }')
    printf '| %s | %s | %s | %s | %s | %s (of %s) |\n' "$sessions" "$n" "$pbx" "$pf" "$ratio" "$envs" "$n"
done
echo
echo "all runs (sessions messages run side seconds msg/s $COUNTED, load, the server's CPU ms/message user+system, its threads' voluntary context switches per message, the host disk's I/O during the run, and the spool file system's journal commits and flushes per message):"
sed 's/^/    /' "$RESULTS"
fi  # PROFILE_ONLY

[ "${PROFILE:-0}" = 1 ] || [ "${PROFILE_ONLY:-0}" = 1 ] || exit 0

# ---- PROFILE=1: where the time goes (untimed runs, not part of the table) -------

side_start() {
    if [ "$1" = pillarbox ]; then
        pbx_start
        ROOT=$PBX_MASTER_PID PORT=$PBX_PORT
    else
        pf_start
        ROOT=$(tr -d ' ' <"$PF_SPOOL/pid/master.pid") PORT=$PF_PORT
    fi
}
side_stop() { if [ "$1" = pillarbox ]; then pbx_stop; else pf_stop; fi; }

# profile SIDE SESSIONS COUNT: one run measuring CPU time per message, then one
# under strace counting the fsyncs per message and their latency, by kind of file.
profile() {
    local side=$1 sessions=$2 n=$3 t0 t1 secs out=$BASE/strace.$1.$2 args=() p st
    sink_start
    side_start "$side"
    t0=$(tree_ticks "$ROOT")
    tree_ticks_by_pid "$ROOT" >"$BASE/ticks.before"
    secs=$(run_source "$PORT" "$sessions" "$n")
    sleep 1 # Postfix's discard of the last messages belongs to the run
    t1=$(tree_ticks "$ROOT")
    tree_ticks_by_pid "$ROOT" >"$BASE/ticks.after"
    awk -v side="$side" -v s="$sessions" -v n="$n" -v secs="$secs" -v a="$t0" -v b="$t1" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN {
            printf "%-9s sessions=%-2s %5d messages: %7.1f msg/s, CPU %.2f ms/message (all its processes)\n",
                side, s, n, n / secs, (b - a) * 1000 / hz / n }'
    per_program "$BASE/ticks.before" "$BASE/ticks.after" "$n"
    side_stop "$side"
    sink_stop

    sink_start
    side_start "$side"
    for p in $(tree_pids "$ROOT"); do args+=(-p "$p"); done
    # -ff: one file per thread, so that fsyncs overlapping in several threads
    # are never split into "<unfinished ...>" and "<... resumed>" lines (which
    # the count below would take for two calls).
    strace -ff -qq -y -T -e trace=fsync,fdatasync,syncfs,sync,rename,renameat,renameat2,link,linkat \
        -o "$out" "${args[@]}" &
    st=$!
    sleep 1
    secs=$(run_source "$PORT" "$sessions" "$n")
    kill -INT "$st"
    wait "$st" || true
    side_stop "$side"
    sink_stop
    echo "$side, under strace:"
    # fsync(10</path/to/file>) = 0 <0.001234>: the kind of file from its path;
    # then per kind, latencies sorted, for the median and the 90th percentile.
    awk '/^(fsync|fdatasync|syncfs|sync)\(/ {
            path = $0; sub(/^[^<]*</, "", path); sub(/>.*/, "", path)
            lat = $NF; gsub(/[<>]/, "", lat)
            if (path ~ /\.env\.tmp/) kind = "envelope-file"
            else if (path ~ /\/Maildir\/new$/) kind = "maildir-new/"
            else if (path ~ /\/Maildir\/tmp\//) kind = "maildir-file"
            else if (path ~ /\/(queue|incoming|active|deferred)$/) kind = "queue-directory"
            else kind = "message-file"
            print kind, lat
        }' "$out".* | sort -k1,1 -k2,2g | awk -v side="$side" -v n="$n" -v secs="$secs" '
        function flush() {
            if (m == 0) return
            i90 = int(m * 0.9)
            if (i90 < 1) i90 = 1
            printf "          %-14s %5d calls (%.2f/message)  mean %.2f ms  median %.2f ms  p90 %.2f ms\n",
                kind, m, m / n, sum * 1000 / m, v[int((m + 1) / 2)] * 1000, v[i90] * 1000
        }
        $1 != kind { flush(); kind = $1; m = 0; sum = 0 }
        { v[++m] = $2; sum += $2; total += $2; calls++ }
        END {
            flush()
            printf "          all: %d fsync calls, %.2f per message, %.1f s in fsync of the %.1f s run (%.1f msg/s under strace)\n",
                calls, calls / n, total, secs, n / secs
        }'
    # Renames and links (a Maildir delivery links tmp/ to new/, or renames).
    awk -v n="$n" '/^(rename|renameat|renameat2|link|linkat)\(/ {
            call = $0; sub(/\(.*/, "", call); c[call]++ }
        END { for (k in c) printf "          %-14s %5d calls (%.2f/message)\n", k, c[k], c[k] / n }' "$out".* | sort
}

echo
echo "profile (PROFILE=1; untimed runs, figures under strace are slowed by it):"
for sessions in "$SESSIONS" 1; do
    if [ "$sessions" = 1 ]; then n=$((N_SINGLE < 200 ? N_SINGLE : 200)); else n=$((N_MULTI < 400 ? N_MULTI : 400)); fi
    for side in pillarbox postfix; do
        profile "$side" "$sessions" "$n"
    done
done
