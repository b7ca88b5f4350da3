#!/usr/bin/env bash
# The system paths for the interop checks that run real system programs:
# Debian's cron (which runs /usr/sbin/sendmail, a path it has built in, and
# reads root's crontab) and mailsend with HOME unset (which reads
# /etc/mailsend/config.toml).
#
#   system.sh start SYS BIN OWNER_PID   SYS holds config.toml and crontab (made by run.sh)
#   system.sh exec SYS 600|644 -- CMD   CMD sees SYS's config as /etc/mailsend/config.toml,
#                                       at that mode
#   system.sh stop OWNER_PID            stop cron, put every system path back (only
#                                       what OWNER_PID's run, or a dead run, set up)
#
# Two ways, chosen by `start` and written to SYS/status:
#   namespace  (preferred) cron and each `exec` run in a private mount namespace.
#              Each sees SYS's config as /etc/mailsend; cron also sees mailsend as
#              /usr/sbin/sendmail, SYS's crontab as root's (spool), an empty
#              /etc/crontab and /etc/cron.d (no system jobs) and a private /run
#              (crond.pid, crond.reboot). The host's files are never changed: at
#              most an empty /etc/mailsend directory is made as a mount point.
#              Other processes (a system cron, a concurrent `cargo test`, which
#              would read /etc/mailsend/config.toml too) see nothing.
#   divert     (when mount namespaces are not allowed, or INTEROP_SYSTEM_MODE=divert)
#              /usr/sbin/sendmail, /etc/mailsend and root's crontab are replaced for
#              the run, originals kept beside them or in the state directory.
#
# Either way, what must be undone is recorded in $STATE before it is done, and
# `stop` undoes it. A run killed with SIGKILL leaves $STATE behind; the next
# `start` finds its owner dead and undoes it first. $STATE is also the lock: a
# second run while the first is alive gets an error, not a tangle.
set -euo pipefail

STATE=${INTEROP_SYSTEM_STATE:-/var/tmp/mailsend-interop-system}
SPOOL=/var/spool/cron/crontabs
CRON_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin # systemd's default

die() { echo "system.sh: $*" >&2; exit 1; }

# /proc/PID/stat field 22: the start time, so a recycled PID is never taken for ours.
starttime() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null || true; }
alive() { # PID STARTTIME
    [ -n "$1" ] && [ -n "$2" ] && [ "$(starttime "$1")" = "$2" ]
}

# ---------------------------------------------------------------- undo
stop_cron() {
    local pid start
    [ -f "$STATE/cron.pid" ] || return 0
    read -r pid start < "$STATE/cron.pid" || true
    if alive "$pid" "$start"; then
        # cron was started with setsid: its group holds the daemon and the jobs and
        # mailers it forked.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 30); do
            alive "$pid" "$start" || break
            sleep 0.1
        done
        if alive "$pid" "$start"; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$STATE/cron.pid"
}

restore() {
    [ -d "$STATE" ] || return 0
    stop_cron
    # divert: /usr/sbin/sendmail
    if [ -e /usr/sbin/sendmail.mailsend-interop ] || [ -L /usr/sbin/sendmail.mailsend-interop ]; then
        mv -fT /usr/sbin/sendmail.mailsend-interop /usr/sbin/sendmail # atomic, over our symlink
    elif [ -f "$STATE/sendmail.absent" ] && [ -L /usr/sbin/sendmail ]; then
        rm -f /usr/sbin/sendmail
    fi
    # divert: /etc/mailsend
    if [ -f "$STATE/etc-mailsend.installed" ]; then
        rm -rf /etc/mailsend
    fi
    if [ -e /etc/mailsend.mailsend-interop ] && [ ! -e /etc/mailsend ]; then
        mv -T /etc/mailsend.mailsend-interop /etc/mailsend
    fi
    # divert: root's crontab
    if [ -f "$STATE/crontab.root" ]; then
        cp -a "$STATE/crontab.root" "$SPOOL/.root.mailsend-interop"
        mv -fT "$SPOOL/.root.mailsend-interop" "$SPOOL/root"
        touch "$SPOOL" # a running cron rereads the spool when its mtime changes
    elif [ -f "$STATE/crontab.absent" ]; then
        rm -f "$SPOOL/root"
        touch "$SPOOL"
    fi
    # divert: files our cron created in /run
    for f in crond.pid crond.reboot; do
        if [ -f "$STATE/$f.absent" ]; then rm -f "/run/$f"; fi
    done
    # namespace: mount points made on the host
    if [ -f "$STATE/created" ]; then
        while read -r path; do
            if [ -d "$path" ]; then
                rmdir "$path" 2>/dev/null || true # only if still empty
            elif [ -f "$path" ] && [ ! -s "$path" ]; then
                rm -f "$path"
            fi
        done < "$STATE/created"
    fi
    rm -rf "$STATE"
}

stop() { # OWNER_PID: never undo the state of another run that is still alive
    local opid ostart
    [ -d "$STATE" ] || return 0
    read -r opid ostart < "$STATE/owner" 2>/dev/null || true
    if [ "${opid:-}" != "$1" ] && alive "${opid:-}" "${ostart:-}"; then
        return 0
    fi
    restore
}

# ---------------------------------------------------------------- namespace helpers
mount_point() { # PATH dir|file: create a missing mount point, recorded for `restore`
    if [ "$2" = dir ] && [ ! -d "$1" ]; then
        echo "$1" >> "$STATE/created"
        mkdir -m 0755 "$1"
    elif [ "$2" = file ] && [ ! -e "$1" ]; then
        echo "$1" >> "$STATE/created"
        install -m 0644 /dev/null "$1"
    fi
}


# ---------------------------------------------------------------- start
start() {
    local sys=$1 bin=$2 owner=$3 mode pid
    if [ ! -f "$sys/config.toml" ] || [ ! -f "$sys/crontab" ]; then
        die "$sys/config.toml or $sys/crontab missing"
    fi
    [ -x "$bin" ] || die "$bin is not executable"
    if [ -d "$STATE" ]; then
        local opid ostart
        read -r opid ostart < "$STATE/owner" 2>/dev/null || true
        if alive "${opid:-}" "${ostart:-}"; then
            die "another interop run (pid $opid) is using the system paths ($STATE)"
        fi
        echo "# system.sh: undoing what a killed run (pid ${opid:-?}) left behind in $STATE"
        restore
    fi
    mkdir "$STATE" || die "cannot create $STATE (a concurrent run?)"
    echo "$owner $(starttime "$owner")" > "$STATE/owner"

    # The config twice: mode 600 (what cron and the HOME-unset check use) and 644.
    install -d -m 0755 "$sys/view" "$sys/view/etc-600" "$sys/view/etc-644"
    install -m 0600 "$sys/config.toml" "$sys/view/etc-600/config.toml"
    install -m 0644 "$sys/config.toml" "$sys/view/etc-644/config.toml"

    mode=${INTEROP_SYSTEM_MODE:-}
    if [ -z "$mode" ]; then
        mode=divert
        if unshare --mount --propagation private mount --bind "$sys/view" "$sys/view" 2>/dev/null; then
            mode=namespace
        fi
    fi
    echo "$mode" > "$STATE/mode"
    echo "mode=$mode" > "$sys/status"

    case $mode in
    namespace)
        mount_point /etc/mailsend dir
        ;;
    divert)
        if [ -e /etc/mailsend ] || [ -L /etc/mailsend ]; then
            mv -T /etc/mailsend /etc/mailsend.mailsend-interop
        fi
        : > "$STATE/etc-mailsend.installed"
        install -d -m 0755 /etc/mailsend
        install -m 0600 "$sys/config.toml" /etc/mailsend/config.toml
        ;;
    *) die "INTEROP_SYSTEM_MODE must be namespace or divert, not $mode" ;;
    esac

    if ! command -v cron >/dev/null || ! command -v crontab >/dev/null; then
        echo "cron=not installed" >> "$sys/status"
        return 0
    fi
    install -d -m 1730 -g crontab "$sys/view/spool"
    install -d -m 0755 "$sys/view/cron.d"
    install -m 0644 /dev/null "$sys/view/crontab"
    case $mode in
    namespace)
        mount_point /usr/sbin/sendmail file
        mount_point "$SPOOL" dir
        mount_point /etc/cron.d dir
        mount_point /etc/crontab file
        # setsid: a process group of its own, stopped as a whole. unshare and the
        # script exec, so $! is the cron daemon itself.
        setsid unshare --mount --propagation private "$0" _ns-cron "$sys" "$bin" \
            </dev/null >"$sys/cron.log" 2>&1 &
        pid=$!
        ;;
    divert)
        if [ -e /usr/sbin/sendmail ] || [ -L /usr/sbin/sendmail ]; then
            mv -T /usr/sbin/sendmail /usr/sbin/sendmail.mailsend-interop
        else
            : > "$STATE/sendmail.absent"
        fi
        ln -s "$bin" /usr/sbin/sendmail
        if [ -f "$SPOOL/root" ]; then
            cp -a "$SPOOL/root" "$STATE/crontab.root"
        else
            : > "$STATE/crontab.absent"
        fi
        crontab "$sys/crontab"
        for f in crond.pid crond.reboot; do
            [ -e "/run/$f" ] || : > "$STATE/$f.absent"
        done
        setsid env -i PATH="$CRON_PATH" cron -f -L 15 </dev/null >"$sys/cron.log" 2>&1 &
        pid=$!
        ;;
    esac
    echo "$pid $(starttime "$pid")" > "$STATE/cron.pid"
    echo "cron_started=$(date +%s)" >> "$sys/status"
    sleep 0.5
    if alive "$pid" "$(cut -d' ' -f2 "$STATE/cron.pid")"; then
        echo "cron=running pid $pid" >> "$sys/status"
    elif [ "$mode" = divert ] && grep -q "can't lock" "$sys/cron.log"; then
        # A system cron holds /run/crond.pid; it rereads root's crontab within a minute.
        echo "cron=system daemon (ours could not lock /run/crond.pid)" >> "$sys/status"
    else
        echo "cron=failed: $(tr '\n' ' ' < "$sys/cron.log")" >> "$sys/status"
    fi
}

# Inside the namespace: the mounts, root's crontab, then cron as systemd starts
# it (no HOME, no USER, PATH only).
ns_cron() {
    local sys=$1 bin=$2
    mount -t tmpfs -o mode=0755 mailsend-interop-run /run # crond.pid, crond.reboot stay private
    [ -L /var/run ] || mount -t tmpfs -o mode=0755 mailsend-interop-run /var/run
    mount --bind "$sys/view/etc-600" /etc/mailsend
    mount --bind "$bin" /usr/sbin/sendmail
    mount --bind "$sys/view/spool" "$SPOOL"
    mount --bind "$sys/view/cron.d" /etc/cron.d
    mount --bind "$sys/view/crontab" /etc/crontab
    crontab "$sys/crontab"
    exec env -i PATH="$CRON_PATH" cron -f -L 15
}

# ---------------------------------------------------------------- exec
exec_in() { # SYS 600|644 CMD...
    local sys=$1 perm=$2 mode rc
    shift 2
    [ "${1:-}" = -- ] && shift
    mode=$(cat "$STATE/mode" 2>/dev/null) || die "not started"
    case $perm in 600 | 644) ;; *) die "mode must be 600 or 644" ;; esac
    if [ "$mode" = namespace ]; then
        exec unshare --mount --propagation private "$0" _ns-exec "$sys" "$perm" "$@"
    fi
    # divert: the real file, at the mode asked for, for the length of CMD.
    chmod "$perm" /etc/mailsend/config.toml
    rc=0
    "$@" || rc=$?
    chmod 600 /etc/mailsend/config.toml
    return $rc
}

ns_exec() {
    local sys=$1 perm=$2
    shift 2
    mount --bind "$sys/view/etc-$perm" /etc/mailsend
    exec "$@"
}

case ${1:-} in
start) shift; start "$@" ;;
exec) shift; exec_in "$@" ;;
stop) shift; stop "${1:-}" ;;
_ns-cron) shift; ns_cron "$@" ;;
_ns-exec) shift; ns_exec "$@" ;;
*) echo "usage: $0 start SYS BIN OWNER_PID | exec SYS 600|644 -- CMD... | stop OWNER_PID" >&2; exit 64 ;;
esac
