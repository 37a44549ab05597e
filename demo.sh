#!/usr/bin/env bash
# demo.sh: build Pillarbox and run it on 127.0.0.1 for the mail domain
# example.test, with two virtual users (alice and bob, password "demo").
# Run as root on Debian 12:   ./demo.sh      (Ctrl-C stops it)
#
# What it does, every run (a rerun reuses what is there: mail, certificate):
#   1. installs the missing build packages (packaging/install-deps.sh);
#   2. builds into build/ (optimised, no sanitizers);
#   3. creates the system users (packaging/create-users.sh);
#   4. writes the demo instance into demo/: pillarbox.conf, users, aliases,
#      a self-signed certificate, the spool, the Maildirs and libexec/ (the
#      program_dir: links to the built programs);
#   5. runs pillarbox-master in the foreground, logs on the terminal.
#
# Options:
#   --no-run     set everything up, print how to start it, do not start it
#                (also DEMO_NO_RUN=1)
# Environment, for tests and the curious:
#   PBX_BUILD_DIR         build directory (default: build)
#   PBX_DEMO_DIR          instance directory (default: demo)
#   PBX_DEMO_RUNTIME_DIR  runtime directory (default: /run/pillarbox-demo)
#   PBX_JOBS              parallel compile jobs (default: the number of CPUs)
#   PBX_DEMO_SKIP_BUILD=1 use the build directory as it is (no meson/ninja)
#
# The programs other than the master run as unprivileged users, so the
# instance must sit where any user may traverse. When demo/ is not (the tree
# is, say, under /root), the instance goes to /var/lib/pillarbox-demo and
# demo/ becomes a symbolic link to it.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cd "$SRC"

NO_RUN=${DEMO_NO_RUN:-0}
for arg in "$@"; do
    case $arg in
    --no-run | --check) NO_RUN=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "demo.sh: unknown argument '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

abspath() { case $1 in /*) echo "$1" ;; *) echo "$SRC/$1" ;; esac }
BUILD=$(abspath "${PBX_BUILD_DIR:-build}")
DEMO_LINK=$(abspath "${PBX_DEMO_DIR:-demo}")
RUNTIME_DIR=${PBX_DEMO_RUNTIME_DIR:-/run/pillarbox-demo}
FALLBACK_DIR=/var/lib/pillarbox-demo
DOMAIN=example.test
USERS=(alice bob)
PASSWORD=demo
# Listener key, port, the program serving it, what it is. A key is written
# only when the schema has it.
LISTENERS=(
    "smtp_listen 10025 smtpd SMTP, the inbound MTA"
    "submission_listen 10587 submitd submission, STARTTLS + AUTH"
    "submissions_listen 10465 submitd submission, implicit TLS + AUTH"
    "pop3_listen 10110 pop3-login POP3, STLS"
    "pop3s_listen 10995 pop3-login POP3 over TLS"
    "imap_listen 10143 imap-login IMAP, STARTTLS"
    "imaps_listen 10993 imap-login IMAP over TLS"
)
# Programs the master starts: name and its directory in the build tree.
PROGRAMS=(authd:authd queue-manager:queue-manager local-delivery:local-delivery
    remote-delivery:remote-delivery smtpd:smtpd submitd:submitd
    pop3-login:pop3d pop3d:pop3d imap-login:imapd imapd:imapd)

say() { printf 'demo.sh: %s\n' "$*"; }
die() {
    printf 'demo.sh: error: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run me as root (the master binds ports and drops privileges)"

# 1. Packages.
packaging/install-deps.sh || die "could not install the build dependencies"

# 2. Build (PBX_DEMO_SKIP_BUILD=1: use the build as it is; the tests do).
if [ "${PBX_DEMO_SKIP_BUILD:-0}" = 1 ]; then
    [ -d "$BUILD" ] || die "$BUILD does not exist"
elif [ ! -f "$BUILD/build.ninja" ]; then
    say "configuring $BUILD"
    meson setup "$BUILD" --buildtype=debugoptimized -Dtests=false >/dev/null ||
        die "meson setup failed (see $BUILD/meson-logs/meson-log.txt)"
fi
if [ "${PBX_DEMO_SKIP_BUILD:-0}" != 1 ]; then
    say "building in $BUILD"
    ninja -C "$BUILD" -j "${PBX_JOBS:-$(nproc)}" || die "the build failed (see the errors above)"
fi

# 3. Users.
packaging/create-users.sh

# 4. The instance.

# True when an unprivileged user can reach $1 (every ancestor searchable).
reachable() {
    local d=$1
    while [ ! -e "$d" ]; do d=$(dirname "$d"); done
    setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$d"
}

if [ -L "$DEMO_LINK" ]; then
    INSTANCE=$(readlink -f "$DEMO_LINK")
elif reachable "$DEMO_LINK"; then
    INSTANCE=$DEMO_LINK
else
    INSTANCE=$FALLBACK_DIR
    if [ -e "$DEMO_LINK" ]; then
        say "$DEMO_LINK cannot be reached by unprivileged users; using $INSTANCE (not linked: $DEMO_LINK exists)"
    else
        ln -s "$INSTANCE" "$DEMO_LINK"
        say "$(dirname "$DEMO_LINK") cannot be reached by unprivileged users; the instance is in $INSTANCE ($DEMO_LINK links to it)"
    fi
fi
reachable "$INSTANCE" || die "$INSTANCE is not reachable by unprivileged users; set PBX_DEMO_DIR"
[ ${#RUNTIME_DIR} -le 60 ] || die "PBX_DEMO_RUNTIME_DIR is too long for Unix socket paths"

CONF=$INSTANCE/pillarbox.conf
VMAIL_UID=$(id -u pbx-vmail)
VMAIL_GID=$(id -g pbx-vmail)

install -d -m 0755 -o root -g root "$INSTANCE" "$INSTANCE/tls" "$INSTANCE/mail" "$RUNTIME_DIR"
# The spool as pillarbox-spool(5) wants it (its subdirectories come at start).
install -d -m 0710 -o pbx-queue -g pbx-drop "$INSTANCE/spool"

if [ ! -s "$INSTANCE/tls/cert.pem" ] || [ ! -s "$INSTANCE/tls/key.pem" ]; then
    say "creating a self-signed certificate for localhost and $DOMAIN"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -days 3650 -subj "/CN=localhost" \
            -addext "subjectAltName=DNS:localhost,DNS:$DOMAIN,DNS:mail.$DOMAIN,IP:127.0.0.1" \
            -keyout "$INSTANCE/tls/key.pem" -out "$INSTANCE/tls/cert.pem" 2>/dev/null
    ) || die "openssl could not create the certificate"
    chmod 0644 "$INSTANCE/tls/cert.pem"
fi

for u in "${USERS[@]}"; do
    install -d -m 0700 -o pbx-vmail -g pbx-vmail "$INSTANCE/mail/$u" "$INSTANCE/mail/$u/Maildir" \
        "$INSTANCE/mail/$u/Maildir/cur" "$INSTANCE/mail/$u/Maildir/new" "$INSTANCE/mail/$u/Maildir/tmp"
done

# The users file (pillarbox-users(5)): name:crypt-hash:uid:gid:home:mailbox,
# a mailbox ending in / is a Maildir. Kept when it exists (you may add users).
if [ ! -s "$INSTANCE/users" ]; then
    {
        echo "# Demo users of example.test (pillarbox-users(5)); the password is \"$PASSWORD\"."
        for u in "${USERS[@]}"; do
            hash=$(openssl passwd -6 "$PASSWORD")
            echo "$u:$hash:$VMAIL_UID:$VMAIL_GID:$INSTANCE/mail/$u:$INSTANCE/mail/$u/Maildir/"
        done
    } >"$INSTANCE/users.tmp"
    mv "$INSTANCE/users.tmp" "$INSTANCE/users"
fi
chown root:pbx-auth "$INSTANCE/users"
chmod 0640 "$INSTANCE/users"

if [ ! -s "$INSTANCE/aliases" ]; then
    printf '# Demo aliases (pillarbox-aliases(5)).\npostmaster: alice\nabuse: alice\n' \
        >"$INSTANCE/aliases"
fi
chown root:pbx-auth "$INSTANCE/aliases"
chmod 0640 "$INSTANCE/aliases"

# program_dir: links to the built programs, or copies when the build tree is
# out of reach of unprivileged users (the sessions are executed as the mail
# user). Rebuilt every run so that it matches the build.
LIBEXEC=$INSTANCE/libexec
rm -rf "$LIBEXEC"
install -d -m 0755 "$LIBEXEC"
BUILT=()
MISSING=()
for entry in "${PROGRAMS[@]}"; do
    name=${entry%%:*}
    bin=$BUILD/${entry#*:}/$name
    if [ -x "$bin" ] && [ -f "$bin" ]; then
        if reachable "$bin"; then
            ln -s "$bin" "$LIBEXEC/$name"
        else
            install -m 0755 "$bin" "$LIBEXEC/$name"
        fi
        BUILT+=("$name")
    else
        MISSING+=("$name")
    fi
done

# The configuration: only keys this version knows (services add theirs as
# they land), so that the demo keeps working while the suite grows.
have_key() { grep -q "{\"$1\"," common/config/schema.cpp; }
PORTS=()
{
    echo "# Written by demo.sh at every run: edit demo.sh, not this file."
    echo "myhostname = mail.$DOMAIN"
    echo "domains = $DOMAIN"
    echo "runtime_dir = $RUNTIME_DIR"
    echo "spool_dir = $INSTANCE/spool"
    have_key program_dir && echo "program_dir = $LIBEXEC"
    echo "users_file = $INSTANCE/users"
    echo "aliases_file = $INSTANCE/aliases"
    echo "tls_cert_file = $INSTANCE/tls/cert.pem"
    echo "tls_key_file = $INSTANCE/tls/key.pem"
    echo "# Nobody relays without AUTH."
    echo "trusted_networks ="
    echo "minimal_backoff_time = 60s"
    for l in "${LISTENERS[@]}"; do
        read -r key port _ <<<"$l"
        have_key "$key" && echo "$key = 127.0.0.1:$port"
    done
} >"$CONF.tmp"
mv "$CONF.tmp" "$CONF"
for l in "${LISTENERS[@]}"; do
    read -r key port prog what <<<"$l"
    have_key "$key" || continue
    if [ -e "$LIBEXEC/$prog" ]; then
        PORTS+=("$port  $what ($prog)")
    else
        PORTS+=("$port  $what ($prog: not built yet)")
    fi
done

TOOL=$BUILD/tools/pillarbox
if [ -x "$TOOL" ]; then
    "$TOOL" config check -c "$CONF" >/dev/null || {
        "$TOOL" config check -c "$CONF" || true
        die "the generated configuration does not pass 'pillarbox config check'"
    }
fi

# 5. Tell, then run.
cat <<EOT

Pillarbox demo for $DOMAIN, on 127.0.0.1
  instance     $INSTANCE  (config: $CONF)
  mailboxes    ${USERS[*]/#/$INSTANCE/mail/}  (Maildir, owned by pbx-vmail)
  users        ${USERS[*]/%/@$DOMAIN}, password "$PASSWORD"
  certificate  $INSTANCE/tls/cert.pem (self-signed, localhost / $DOMAIN)
  programs     ${BUILT[*]:-none}
EOT
[ ${#MISSING[@]} -eq 0 ] || echo "  not built yet (skipped by the master): ${MISSING[*]}"
echo "  ports:"
for p in "${PORTS[@]}"; do echo "    $p"; done
cat <<EOT

Try it, from another terminal:
  # deliver a message to alice over SMTP, then look at her Maildir
  swaks --server 127.0.0.1:10025 --from someone@example.org --to alice@$DOMAIN
  ls $INSTANCE/mail/alice/Maildir/new/
  # submit as alice (STARTTLS + AUTH PLAIN), or with implicit TLS on 10465 (AUTH LOGIN)
  swaks --server 127.0.0.1 --port 10587 --tls --auth PLAIN --auth-user alice \\
        --auth-password $PASSWORD --from alice@$DOMAIN --to bob@$DOMAIN
  swaks --server 127.0.0.1 --port 10465 --tlsc --auth LOGIN --auth-user alice \\
        --auth-password $PASSWORD --from alice@$DOMAIN --to bob@$DOMAIN
  # refused: relay without AUTH (530), a wrong password (535), a forged sender (553)
  swaks --server 127.0.0.1 --port 10587 --tls --from alice@$DOMAIN --to someone@example.org
  swaks --server 127.0.0.1 --port 10587 --tls --auth PLAIN --auth-user alice \\
        --auth-password wrong --from alice@$DOMAIN --to bob@$DOMAIN
  swaks --server 127.0.0.1 --port 10587 --tls --auth PLAIN --auth-user alice \\
        --auth-password $PASSWORD --from bob@$DOMAIN --to bob@$DOMAIN
  # add a user (the password is asked for)
  $TOOL -c $CONF user add carol --home $INSTANCE/mail/carol
  # read bob's mail over POP3S (995-style) and POP3 with STLS (110-style), and IMAPS
  python3 -c 'import poplib,ssl; p=poplib.POP3_SSL("127.0.0.1",10995,context=ssl._create_unverified_context()); p.user("bob"); p.pass_("$PASSWORD"); print(p.stat())'
  python3 -c 'import poplib,ssl; p=poplib.POP3("127.0.0.1",10110); p.stls(context=ssl._create_unverified_context()); p.user("bob"); p.pass_("$PASSWORD"); print(p.list())'
  openssl s_client -connect 127.0.0.1:10993 -quiet -crlf   # then: a LOGIN bob $PASSWORD
  # the supervisor
  $TOOL -c $CONF status
EOT

if [ "$NO_RUN" = 1 ]; then
    echo
    say "set up; not started (--no-run). Start it with:"
    echo "  $BUILD/master/pillarbox-master -f -c $CONF"
    exit 0
fi

MASTER=$BUILD/master/pillarbox-master
[ -x "$MASTER" ] || die "$MASTER was not built"
echo
say "starting pillarbox-master in the foreground; Ctrl-C stops it"
echo
exec "$MASTER" -f -c "$CONF"
