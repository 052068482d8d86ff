# ecs-hostnet %preun (docs/packaging.md, "Scriptlets"): $1 is 0 on erase, 1 or more on an
# upgrade. On erase `ecs-hostnet uninstall --package-removal` reads install.json with the
# program's own parser: when `ecs-hostnet install` ran beside this package ("package": true)
# it undoes it with the package's binary while that binary is still there; no state, or a
# tarball install's: nothing. A state it cannot read, or an uninstall that fails: the erase
# stops (the binary stays) rather than leave an ecs.service drop-in running a deleted binary.
#
# Against Fedora's %systemd_preun (on erase: `systemctl --no-reload disable --now UNITS`): the
# `--now` half is kept (the watcher and the metrics timer and service are stopped when loaded from
# the package's unit files, whatever install.json says: they never outlive the package's binary;
# a tarball install's units of the same names keep running); `disable` is `uninstall`'s job,
# which removes the links install made and leaves those it did not make (a tarball install's,
# whose own `uninstall` still works).
if [ "$1" -eq 0 ]; then
    if ! /usr/sbin/ecs-hostnet uninstall --package-removal; then
        echo "ecs-hostnet: \`ecs-hostnet uninstall\` failed (above); the package stays installed: fix that, then erase it again" >&2
        exit 1
    fi
fi
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    for u in ecs-hostnet-watch.service ecs-hostnet-metrics.timer ecs-hostnet-metrics.service; do
        # Only units loaded from the package's own files: a tarball install's units (same
        # names, in /etc/systemd/system, running /usr/local/sbin/ecs-hostnet) keep running.
        if [ "$(systemctl show -p FragmentPath --value "$u" 2>/dev/null)" = "/usr/lib/systemd/system/$u" ]; then
            systemctl stop "$u" 2>/dev/null || :
        fi
    done
fi
exit 0
