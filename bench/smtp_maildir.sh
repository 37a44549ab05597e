#!/bin/bash
# SMTP → Maildir benchmark: Pillarbox against Postfix, in the same run.
# smtp_accept.sh with MODE=maildir: both servers accept over SMTP and deliver
# each message into the recipient's Maildir (file fsynced before it appears in
# new/); a run's time ends when its last message is in new/. Postfix delivers
# with local(8) and home_mailbox = Maildir/ to a system account made for the
# run; Pillarbox with local-delivery to a virtual user. Same options and
# environment as smtp_accept.sh (N_MULTI, N_SINGLE, SESSIONS, RUNS, KEEP...).
exec env MODE=maildir "$(dirname "${BASH_SOURCE[0]}")/smtp_accept.sh" "$@"
