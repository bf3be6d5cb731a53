#!/bin/bash
# user/group: a revision deployed with user nobody (group nogroup) runs as
# nobody's uid and that gid, real and effective, without root's supplementary
# groups (status and /proc agree). It cannot create files in its store trees
# (deps and source), nor signal hearth (kill(hearth, 0) -> EPERM, hearth
# being PID 1 of the namespace and its parent). Its cgroup still holds it.
# A revision without `user` runs as hearth (root) and is reported without.
# Then a hearth started with --user nobody --group GROUP runs a deploy that
# names no user as nobody, with the same store protections.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups
need_cmd getent
NOBODY_UID=$(getent passwd nobody | cut -d: -f3)
[ -n "$NOBODY_UID" ] || skip "no user nobody"
GROUP=nogroup
NOGROUP_GID=$(getent group nogroup | cut -d: -f3)
if [ -z "$NOGROUP_GID" ]; then
    GROUP=nobody
    NOGROUP_GID=$(getent group nobody | cut -d: -f3)
fi
[ -n "$NOGROUP_GID" ] || skip "no group nogroup or nobody"

start_cg_hearth --grace 1
make_workloads

# identity_of LOCATION ID: the JSON the identity workload printed.
identity_of() {
    local text
    text=$(logs_text "$1" "$2")
    sed -n 's/^stdout identity {/{/p' <<<"$text" | head -n 1
}
has_identity() { [ -n "$(identity_of "$1" "$2")" ]; }

deploy_args identity deps_module=greet
deploy_ready who "${DARGS[@]}" --user nobody --group "$GROUP" --restart never --min-uptime 0.3
wait_until 10 "the identity report of who-1" has_identity who who-1
id=$(identity_of who who-1)
note "identity: $id"
assert_eq "$NOBODY_UID $NOBODY_UID $NOGROUP_GID $NOGROUP_GID" \
    "$(jget "$id" "'%s %s %s %s' % (j['uid'], j['euid'], j['gid'], j['egid'])")" "uid euid gid egid"
assert_eq false "$(jget "$id" "0 in j['groups']")" "root's group among the supplementary groups ($(jget "$id" "j['groups']"))"
w=$(jget "$id" "j['write_deps']")
assert_ne ok "$w" "creating a file in the deps tree ($(jget "$id" "j['deps_dir']"))"
assert_match "$w" '^(EACCES|EROFS|EPERM)$' "error creating a file in the deps tree"
assert_match "$(jget "$id" "j['write_source']")" '^(EACCES|EROFS|EPERM)$' "error creating a file in the source tree ($(jget "$id" "j['source_dir']"))"
assert_eq 1 "$(jget "$id" "j['ppid']")" "parent pid (hearth, PID 1)"
assert_eq EPERM "$(jget "$id" "j['kill_parent']")" "kill(hearth, 0)"
assert_eq EPERM "$(jget "$id" "j['kill_1']")" "kill(1, 0)"
if [ "$(jget "$id" "j['write_cwd']")" != ok ]; then
    note "the revision cannot write its own cwd $(jget "$id" "j['cwd']"): $(jget "$id" "j['write_cwd']")"
fi

rev=$(rev_json who who-1)
assert_eq "nobody $GROUP" "$(jget "$rev" "'%s %s' % (j.get('user'), j.get('group'))")" "status user and group"
hp=$(host_pid "$(jget "$rev" "j['pid']")")
[ -n "$hp" ] || fail "no host pid for who-1"
read -r -a uids <<<"$(proc_status_field "$hp" Uid)"
read -r -a gids <<<"$(proc_status_field "$hp" Gid)"
assert_eq "$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID" "${uids[*]}" "/proc/$hp/status Uid (real effective saved fs)"
assert_eq "$NOGROUP_GID $NOGROUP_GID $NOGROUP_GID $NOGROUP_GID" "${gids[*]}" "/proc/$hp/status Gid"
assert_eq 0000000000000000 "$(proc_status_field "$hp" CapEff)" "/proc/$hp/status CapEff"
if command -v ps >/dev/null; then
    assert_eq nobody "$(ps -o user= -p "$hp" | tr -d ' ')" "ps user"
fi
name=$(basename "$(jget "$rev" "j['cgroup']['path']")")
while read -r d; do
    grep -qxF "$hp" "$d/cgroup.procs" || fail "who-1 ($hp) is not in $d/cgroup.procs"
done < <(cg_env_dirs "$name")
ctl_ok stop who

# Without user: hearth's own (root here), no user field. (No write probe:
# root would succeed and touch the store.)
deploy_args identity deps_module=greet probe=0
deploy_ready root "${DARGS[@]}" --restart never --min-uptime 0.3
wait_until 10 "the identity report of root-1" has_identity root root-1
id=$(identity_of root root-1)
assert_eq "0 0" "$(jget "$id" "'%s %s' % (j['uid'], j['gid'])")" "uid and gid without user"
assert_eq null "$(rev_get root root-1 "json.dumps(r.get('user'))")" "status user without user"
ctl_ok stop root
finish_deploy_hearth

# hearth's --user/--group: the default for deploys that name no user.
start_cg_hearth --grace 1 --user nobody --group "$GROUP"
deploy_args identity deps_module=greet
deploy_ready dflt "${DARGS[@]}" --restart never --min-uptime 0.3
wait_until 10 "the identity report of dflt-1" has_identity dflt dflt-1
id=$(identity_of dflt dflt-1)
assert_eq "$NOBODY_UID $NOGROUP_GID" "$(jget "$id" "'%s %s' % (j['uid'], j['gid'])")" "uid and gid from hearth's --user/--group"
assert_match "$(jget "$id" "j['write_deps']")" '^(EACCES|EROFS|EPERM)$' "error creating a file in the deps tree (default user)"
assert_eq "nobody $GROUP" "$(rev_get dflt dflt-1 "'%s %s' % (r.get('user'), r.get('group'))")" "status user and group (default)"
ctl_ok stop dflt
finish_deploy_hearth
