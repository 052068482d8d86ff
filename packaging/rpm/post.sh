# ecs-hostnet %post (docs/packaging.md, "Scriptlets"): $1 is 1 on install, 2 or more on an
# upgrade. Enables and starts nothing (`ecs-hostnet install` does); tells systemd about the unit
# files and restarts a running watcher on the new binary.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 2 ]; then
        systemctl try-restart ecs-hostnet-watch.service || :
    fi
fi
