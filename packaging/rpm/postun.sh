# ecs-hostnet %postun (docs/packaging.md, "Scriptlets"): $1 is 0 on erase. rpm has no purge:
# a modified configuration is kept as config.toml.rpmsave (rpm's rule); the state and run
# folders go. The package's own folders (%dir in the spec) are removed by rpm when empty.
if [ "$1" -eq 0 ]; then
    # An install state still there belongs to an install the scriptlets did not undo (a
    # tarball install beside the package): kept, so that its `uninstall` still works.
    [ -f /var/lib/ecs-hostnet/install.json ] || rm -rf /var/lib/ecs-hostnet
    rm -rf /run/ecs-hostnet
fi
# What Fedora's %systemd_postun leaves to systemd's file triggers; harmless where they run too.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
exit 0
