#!/bin/bash
# interpreter_constraints nobody satisfies (CPython>=9.0, in the source or
# in the deps pex): failed with reason no_interpreter and a message naming
# the constraint and listing the interpreters found. A constraint that the
# offered python meets deploys fine.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
pyver=$("$PYTHON" -c 'import platform; print(platform.python_version())')
pex_edit "$FIX/source-py9.pex" "$SAMPLE_SOURCE" 'info["interpreter_constraints"] = ["CPython>=9.0"]'
pex_edit "$FIX/deps-py9.pex" "$SAMPLE_DEPS" 'info["interpreter_constraints"] = ["CPython>=9.0"]'
pex_edit "$FIX/source-py3.pex" "$SAMPLE_SOURCE" 'info["interpreter_constraints"] = ["CPython>=3.0,<4"]'

for side in source deps; do
    if [ "$side" = source ]; then
        deploy_failed "py9-$side" --deps "$SAMPLE_DEPS" --source "$FIX/source-py9.pex"
    else
        deploy_failed "py9-$side" --deps "$FIX/deps-py9.pex" --source "$SAMPLE_SOURCE"
    fi
    assert_eq no_interpreter "$(jget "$DEPLOY_REV" "j['reason']")" "$side: reason"
    msg=$(jget "$DEPLOY_REV" "j['message']")
    assert_contains "$msg" "CPython>=9.0" "$side: message (the constraint)"
    assert_contains "$msg" "$pyver" "$side: message (the interpreter found)"
    assert_contains "$msg" "$PYTHON" "$side: message (the interpreter found)"
    assert_contains "$DEPLOY_ERR" "no_interpreter" "$side: hearthctl deploy --wait stderr"
    assert_eq null "$(jget "$DEPLOY_REV" "j.get('pid')")" "$side: pid"
done

deploy_ready py3 --deps "$SAMPLE_DEPS" --source "$FIX/source-py3.pex"
assert_eq "$PYTHON" "$(jget "$DEPLOY_REV" "j['python']")" "python chosen for CPython>=3.0,<4"

finish_deploy_hearth
