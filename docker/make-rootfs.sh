#!/bin/sh
# make-rootfs.sh ROOT BINARY...: lays out a root file system for a FROM-scratch image: the given
# binaries from /out, exactly the shared libraries they link (Debian's, found by ldd, so it works
# on any architecture), CA certificates, /tmp, and the unprivileged user `app` (1000:1000).
# Debian slim alone is 75 MB; this is a few MB plus the binaries.
set -eu
root=$1
shift
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/app" "$root/tmp"
chmod 1777 "$root/tmp"
for b in "$@"; do
    cp "/out/$b" "$root/usr/local/bin/"
done
for lib in $(cd /out && ldd "$@" | grep -o '/[^ ]*' | sort -u); do
    cp -L --parents "$lib" "$root"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
echo 'app:x:1000:1000:app:/app:/nonexistent' > "$root/etc/passwd"
echo 'app:x:1000:' > "$root/etc/group"
chown 1000:1000 "$root/app"
