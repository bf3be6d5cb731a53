# shellcheck shell=bash
# Sourced by the benches that start hearth: its cgroups go under a parent
# named for the run, never into the machine's own cgroups.
#
#   CG_PARENT      /hearth-bench-<bench name>-<pid> (pass as --cgroup-parent)
#   CG_MOUNTS      every read-write cgroup/cgroup2 mount point
#   MEMORY_MOUNT   where memory controller files are (v1 memory, else cgroup2)
#   UNIFIED_MOUNT  the cgroup2 mount ("" when there is none)
#   remove_bench_cgroups   kills by pid what is left in CG_PARENT (the bench
#                  started it) and removes its directories, deepest first;
#                  call from the bench's exit trap, after stopping hearth (a
#                  clean hearth exit has removed them already).

CG_PARENT=/hearth-bench-$(basename "$0" .sh)-$$
CG_MOUNTS=()
MEMORY_MOUNT=
UNIFIED_MOUNT=
while read -r line; do
    read -r -a lf <<<"${line%% - *}"
    read -r -a rf <<<"${line#* - }"
    case ",${lf[5]}," in *,ro,*) continue ;; esac
    case ${rf[0]} in
    cgroup2) CG_MOUNTS+=("${lf[4]}"); [ -n "$UNIFIED_MOUNT" ] || UNIFIED_MOUNT=${lf[4]} ;;
    cgroup)
        CG_MOUNTS+=("${lf[4]}")
        case ",${rf[2]}," in *,memory,*) MEMORY_MOUNT=${lf[4]} ;; esac
        ;;
    esac
done </proc/self/mountinfo
unset line lf rf
[ -n "$MEMORY_MOUNT" ] || MEMORY_MOUNT=$UNIFIED_MOUNT

remove_bench_cgroups() {
    local m d pid left
    for _ in $(seq 30); do
        left=0
        for m in "${CG_MOUNTS[@]}"; do
            [ -d "$m$CG_PARENT" ] || continue
            while read -r d; do
                while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$d/cgroup.procs" 2>/dev/null
                rmdir "$d" 2>/dev/null || left=1
            done < <(find "$m$CG_PARENT" -depth -type d)
        done
        [ "$left" = 0 ] && return 0
        sleep 0.1
    done
    echo "WARNING: could not remove $CG_PARENT from every hierarchy" >&2
}
