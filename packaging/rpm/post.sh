# ecs-hostnet %post (docs/packaging.md, "Scriptlets"): $1 is 1 on install, 2 or more on an
# upgrade. Enables and starts nothing (`ecs-hostnet install` does); tells systemd about the unit
# files and restarts a running watcher on the new binary.
#
# Against Fedora's systemd macros (systemd's src/rpm/macros.systemd.in, systemd >= 249):
# %systemd_post runs `systemctl --no-reload preset` on a first install, which would enable the
# units wherever a preset policy says `enable`: deliberately left out, the units are enabled by
# `ecs-hostnet install` only (as netavark's package ships its units). %systemd_postun_with_restart
# marks units for a restart at the end of an upgrade; the try-restart below does that for the
# watcher (the metrics timer starts the new binary at its next run by itself). The daemon-reload
# is also what systemd's file triggers do on Fedora/AL2023; here for rpm databases without them.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 2 ]; then
        systemctl try-restart ecs-hostnet-watch.service || :
    fi
fi
