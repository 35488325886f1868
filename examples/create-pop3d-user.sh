#!/bin/sh
# Creates the unprivileged user authpop runs as (popd -U, default _pop3d):
# no login, no shell, home /var/empty (also authpop's chroot, popd -C).
# Does nothing when the user exists.
set -eu
id _pop3d >/dev/null 2>&1 && exit 0
case "$(uname -s)" in
OpenBSD)
	# Class "popd" from login.conf; the group is named like the user.
	useradd -L popd -c "popd unprivileged user" -d /var/empty \
	    -s /sbin/nologin -g =uid _pop3d
	;;
*)
	install -d -m 755 /var/empty
	useradd --system --user-group --no-create-home --home-dir /var/empty \
	    --shell /usr/sbin/nologin --comment "popd unprivileged user" _pop3d
	;;
esac
