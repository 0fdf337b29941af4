#!/bin/sh
# labbot's activity reporter (docs/idle.md), run every 5 minutes by labbot-activity.timer.
#
# Sends labbot four numbers about this server, and nothing else: the 1-minute load average
# (/proc/loadavg), the busy share of all CPUs and the network bytes in and out (all interfaces
# but lo) since the last report (/proc/stat, /proc/net/dev), and how many sessions are logged
# in (`who`). A number it cannot read is sent as null: labbot counts it as unknown, never idle.
# Turn it off on this server with: systemctl disable --now labbot-activity.timer
set -u

proc=${LABBOT_PROC:-/proc}
state_dir=${STATE_DIRECTORY:-/var/lib/labbot}
state=$state_dir/activity.state
period=${LABBOT_PERIOD:-300}
longest=86400 # an interval longer than a day says nothing about the last five minutes
: "${LABBOT_ACTIVITY_URL:?is not set}" "${LABBOT_ACTIVITY_TOKEN:?is not set}"

number() {
    case $1 in
    '' | *[!0-9.]* | *.*.*) echo null ;;
    *) echo "$1" ;;
    esac
}

now=$(date +%s)
load=$(number "$(awk '{ print $1; exit }' "$proc/loadavg" 2>/dev/null)")
# cpu user nice system idle iowait irq softirq steal: busy is all but idle and iowait
cpu=$(awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9; printf "%.0f %.0f\n", busy, busy + $5 + $6; exit }' \
    "$proc/stat" 2>/dev/null)
net=$(awk -F: 'NR > 2 { name = $1; gsub(/[ \t]/, "", name); split($2, f, " ")
        if (name != "lo") total += f[1] + f[9] }
    END { if (NR > 2) printf "%.0f\n", total }' "$proc/net/dev" 2>/dev/null)
sessions=$(number "$(${LABBOT_WHO:-who} 2>/dev/null | wc -l | tr -d ' ')")
busy=$(number "${cpu% *}")
total=$(number "${cpu#* }")
net=$(number "$net")

interval=$period cpu_busy=null net_bytes=null
if [ -r "$state" ] && read -r t0 b0 c0 n0 <"$state"; then
    set -- $(awk -v t="$now" -v b="$busy" -v c="$total" -v n="$net" \
        -v t0="$t0" -v b0="$b0" -v c0="$c0" -v n0="$n0" -v period="$period" -v longest="$longest" '
        BEGIN {
            interval = t - t0; cpu = "null"; bytes = "null"
            if (interval <= 0 || interval > longest) { print period, cpu, bytes; exit }
            if (b != "null" && b0 != "null" && c - c0 > 0 && b >= b0) {
                share = (b - b0) / (c - c0); if (share > 1) share = 1
                cpu = sprintf("%.4f", share)
            }
            # a counter that went back (a reboot, a driver reloaded) gives no figure
            if (n != "null" && n0 != "null" && n >= n0) bytes = sprintf("%.0f", n - n0)
            print interval, cpu, bytes
        }')
    interval=$1 cpu_busy=$2 net_bytes=$3
fi
mkdir -p "$state_dir"
printf '%s %s %s %s\n' "$now" "$busy" "$total" "$net" >"$state.new" && mv "$state.new" "$state"

body=$(printf '{"interval_s":%s,"load_1m":%s,"cpu_busy":%s,"net_bytes":%s,"sessions":%s}' \
    "$interval" "$load" "$cpu_busy" "$net_bytes" "$sessions")
# The token goes to curl on its standard input, not its command line, which other users see.
printf 'header = "Authorization: Bearer %s"\n' "$LABBOT_ACTIVITY_TOKEN" |
    curl --config - --silent --show-error --fail --max-time 20 --output /dev/null \
        --header 'Content-Type: application/json' --data-binary "$body" "$LABBOT_ACTIVITY_URL"
