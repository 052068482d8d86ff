# ecs-hostnet %postun (docs/packaging.md, "Scriptlets"): $1 is 0 on erase. rpm has no purge:
# a modified configuration is kept as config.toml.rpmsave (rpm's rule); the state and run
# folders go.
if [ "$1" -eq 0 ]; then
    # An install state still there belongs to an install the scriptlets did not undo (a
    # tarball install beside the package): kept, so that its `uninstall` still works.
    [ -f /var/lib/ecs-hostnet/install.json ] || rm -rf /var/lib/ecs-hostnet
    rm -rf /run/ecs-hostnet
    # Folders rpm does not own (the spec lists files only): removed when empty.
    rmdir /etc/ecs-hostnet /usr/share/doc/ecs-hostnet 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
exit 0
