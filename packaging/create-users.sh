#!/bin/sh
# Creates the system users and groups Pillarbox runs as (DESIGN §2). Idempotent:
# an existing user or group is left alone. Used by demo.sh and test.sh, and by
# hand on systems without systemd-sysusers (packaging/pillarbox.sysusers holds
# the same table for those with it; keep the two in step).
#
#   pbx-smtpd   smtpd, the inbound MTA (pre-auth SMTP parsing)
#   pbx-submit  submitd, the MSA (ports 587/465)
#   pbx-queue   queue-manager; owns the spool
#   pbx-remote  remote-delivery, the outbound MTA
#   pbx-auth    authd; reads the users file and the aliases
#   pbx-login   pop3-login and imap-login (pre-auth POP3/IMAP parsing)
#   pbx-vmail   owner of the virtual users' mailboxes
#   pbx-drop    group only: the setgid maildrop helper of sendmail(1)
#
# Every user is a system user with its own group, no home and no login shell.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "create-users.sh: must run as root" >&2
    exit 1
fi

nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin

add_group() {
    if ! getent group "$1" >/dev/null; then
        groupadd --system "$1"
        echo "create-users.sh: created group $1"
    fi
}

# add_user NAME COMMENT
add_user() {
    add_group "$1"
    if ! getent passwd "$1" >/dev/null; then
        useradd --system --gid "$1" --no-create-home --home-dir /nonexistent \
            --shell "$nologin" --comment "$2" "$1"
        echo "create-users.sh: created user $1"
    fi
}

add_user pbx-smtpd "Pillarbox smtpd"
add_user pbx-submit "Pillarbox submitd"
add_user pbx-queue "Pillarbox queue-manager"
add_user pbx-remote "Pillarbox remote-delivery"
add_user pbx-auth "Pillarbox authd"
add_user pbx-login "Pillarbox POP3/IMAP login"
add_user pbx-vmail "Pillarbox virtual mailboxes"
add_group pbx-drop
