"""The Dovecot configuration of the POP3 and IMAP benchmarks (pop3_retr.py,
imap_mixed.py, imap_idle.py): one instance of its own under `work`, on
127.0.0.1:`port` without TLS, plain LOGIN/USER allowed, every user with the
same sha512-crypt password in a passwd-file, mail in Maildirs under `homes`
(default `work`/home) owned by `vmail` — the same users, passwords and
Maildir shape as the Pillarbox side."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402


def write(work, protocol, port, vmail, users, password, extra="", homes=None):
    """Writes `work`/dovecot.conf for `protocol` ("pop3" or "imap") and the
    passwd-file of `users`; returns the configuration's path."""
    passwd = os.path.join(work, "passwd")
    with open(passwd, "w") as f:
        for u in users:
            f.write("%s:%s\n" % (u, harness.password_hash(password)))
    os.chmod(passwd, 0o644)
    conf = os.path.join(work, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("""
base_dir = {w}/run
state_dir = {w}/state
log_path = {w}/dovecot.log
protocols = {p}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{h}/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {w}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={h}/%u
}}
service {p}-login {{
  inet_listener {p} {{
    port = {port}
  }}
  inet_listener {p}s {{
    port = 0
  }}
}}
{extra}
""".format(w=work, p=protocol, h=homes or os.path.join(work, "home"), port=port,
           uid=vmail.pw_uid, gid=vmail.pw_gid, extra=extra))
    return conf
