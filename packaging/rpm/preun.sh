# ecs-hostnet %preun (docs/packaging.md, "Scriptlets"): $1 is 0 on erase, 1 or more on an
# upgrade. On erase, when `ecs-hostnet install` ran beside this package, undo it with the
# package's binary while it is still there; if that fails, the erase stops (the binary stays).
state=/var/lib/ecs-hostnet/install.json
if [ "$1" -eq 0 ] && [ -f "$state" ] && grep -q '"package": true' "$state"; then
    if ! /usr/sbin/ecs-hostnet uninstall; then
        echo "ecs-hostnet: \`ecs-hostnet uninstall\` failed (above); the package stays installed: fix that, then erase it again" >&2
        exit 1
    fi
fi
# Whatever install.json says: the package's watcher never outlives the package's binary.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl stop ecs-hostnet-watch.service 2>/dev/null || :
fi
exit 0
