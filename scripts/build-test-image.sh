#!/usr/bin/env bash
# Build the image the session tests and the README's examples run: busybox-static's applets in
# an otherwise empty root file system, imported as vfd-test/busybox:latest. No registry is
# needed (none can be reached on a build machine without internet).
#   scripts/build-test-image.sh [IMAGE]
set -euo pipefail
image="${1:-vfd-test/busybox:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
busybox=/bin/busybox
if ! "$busybox" --list >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
    echo "build-test-image: $busybox is not busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,home,proc,sys,dev,root}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s /bin/busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
tar -C "$root" -c . | docker import \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$image" >/dev/null
echo "built $image"
