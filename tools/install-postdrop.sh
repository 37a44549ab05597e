#!/bin/sh
# Makes postdrop(8) setgid pbx-drop (mode 2755) after `meson install`. When
# the group does not exist yet, or we may not change the group (a DESTDIR
# install by a non-root packager), postdrop stays 0755 without the setgid
# bit and this says how to finish: sendmail then still works while the
# queue-manager runs, and postdrop refuses to run setgid to any other group.
set -u
file="${DESTDIR:-}$1"
if getent group pbx-drop >/dev/null 2>&1 && chgrp pbx-drop "$file" 2>/dev/null &&
    chmod 2755 "$file"; then
    echo "postdrop: $file is setgid pbx-drop (2755)"
else
    echo "WARNING: $file is not setgid pbx-drop (the group is missing, or this install"
    echo "  may not change the file's group). Once the group exists (create-users.sh or"
    echo "  systemd-sysusers), as root: chgrp pbx-drop $1 && chmod 2755 $1"
fi
exit 0
