#include "daemon/prepare.hpp"

#include "launch/launch.hpp"
#include "launch/pex_info.hpp"
#include "util/fs.hpp"
#include "util/uv_util.hpp"

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace hearth {

namespace {

using Done = std::function<void(Result<LaunchPlanned, StepFailure>)>;

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v ? v : fallback;
}

// What one preparation carries from step to step.
struct Job {
    Runtime runtime;
    std::string id, location;
    std::string source_tree, deps_tree, scratch_dir;
    std::optional<std::string> module;
    std::vector<std::string> args;
    std::map<std::string, std::string> env;
    std::string cwd;
    Identity who;
    PexInfo source_info, deps_info;
    std::string python;
    PythonTarget target;
    Done done;

    void fail(const char* reason, std::string message) {
        done(StepFailure{reason, std::move(message)});
    }
};

// Picks the first interpreter both pex files accept; "" and sets `error`
// when none does.
const Interpreter* choose(const std::vector<Interpreter>& found, const Job& job,
                          StepFailure& error) {
    std::vector<Constraint> source_c, deps_c;
    std::string err;
    if (!parse_constraints(job.source_info.interpreter_constraints, source_c, err) ||
        !parse_constraints(job.deps_info.interpreter_constraints, deps_c, err)) {
        error = {reason::bad_archive, "interpreter_constraints: " + err};
        return nullptr;
    }
    for (const auto& interp : found)
        if (satisfies(interp, source_c) && satisfies(interp, deps_c)) return &interp;
    std::string have;
    for (const auto& i : found)
        have +=
            (have.empty() ? "" : ", ") + i.implementation + " " + i.version() + " (" + i.path + ")";
    std::string want = describe(source_c);
    if (!deps_c.empty()) want += (want.empty() ? "" : " and ") + describe(deps_c);
    error = {reason::no_interpreter, "no interpreter satisfies " +
                                         (want.empty() ? std::string("any constraint") : want) +
                                         "; found: " + (have.empty() ? "none" : have)};
    return nullptr;
}

// Thread pool: the scratch directory afresh and the user's bytecode cache.
// Returns the pycache directory, or a spawn_error.
Result<std::string, StepFailure> make_scratch(const std::string& scratch,
                                              const std::string& state_dir, const Identity& who) {
    if (Status removed = remove_all(scratch); !removed)
        return StepFailure{reason::spawn_error, removed.error().message};
    if (::mkdir(scratch.c_str(), 0700) < 0)
        return StepFailure{reason::spawn_error,
                           "cannot create " + scratch + ": " + errno_text(errno)};
    std::string pycache = state_dir + "/pycache";
    if (who.uid) {
        // An unprivileged environment owns its scratch directory and a
        // bytecode cache of its own: the shared one is root's.
        pycache += "/uid-" + std::to_string(*who.uid);
        if (Status made = make_dirs(pycache); !made)
            return StepFailure{reason::spawn_error, made.error().message};
        for (const std::string& dir : {scratch, pycache})
            if (::chown(dir.c_str(), *who.uid, who.gid.value_or(static_cast<gid_t>(-1))) < 0)
                return StepFailure{reason::spawn_error,
                                   "cannot chown " + dir + ": " + errno_text(errno)};
    }
    return pycache;
}

struct Composed {
    std::vector<std::string> sys_path;
    std::optional<StepFailure> failure;
    std::string pycache;
};

} // namespace

LaunchPreparer::LaunchPreparer(uv_loop_t* loop, Interpreters& interpreters, std::string state_dir,
                               std::string boot_script)
    : loop_(loop), interpreters_(interpreters), state_dir_(std::move(state_dir)),
      boot_script_(std::move(boot_script)) {}

void LaunchPreparer::prepare(const Revision& rev, Done done) {
    auto job = std::make_shared<Job>();
    job->runtime = rev.spec.runtime;
    job->id = rev.id;
    job->location = rev.location;
    job->source_tree = rev.source.tree;
    job->deps_tree = rev.deps.tree;
    job->scratch_dir = rev.scratch_dir;
    job->module = rev.spec.module;
    job->args = rev.spec.args;
    job->env = rev.spec.env;
    job->cwd = rev.spec.cwd;
    job->who = rev.identity;
    job->done = std::move(done);
    std::string state_dir = state_dir_, boot_script = boot_script_;
    uv_loop_t* loop = loop_;
    Interpreters* interpreters = &interpreters_;

    // The last step, on the loop.
    auto plan = [state_dir, boot_script](std::shared_ptr<Job> j, Composed composed) {
        LaunchInput in;
        in.runtime = j->runtime;
        in.python = j->python;
        in.boot_script = boot_script;
        in.source_tree = j->source_tree;
        in.deps_tree = j->deps_tree;
        in.source_info = &j->source_info;
        in.sys_path = std::move(composed.sys_path);
        in.module = j->module;
        in.args = j->args;
        in.deploy_env = j->env;
        in.location = j->location;
        in.revision_id = j->id;
        in.scratch_dir = j->scratch_dir;
        in.pycache_dir = composed.pycache;
        in.pex_root = state_dir + "/pex-root";
        in.host_path = env_or("PATH", "");
        const Identity& who = j->who;
        in.host_home =
            who.uid ? (who.home.empty() ? j->scratch_dir : who.home) : env_or("HOME", "");
        LaunchPlan p = plan_launch(in);
        if (!p.error.empty()) return j->fail(reason::bad_archive, p.error);
        LaunchPlanned out;
        out.python = j->python;
        out.command = std::move(p.argv);
        out.env = std::move(p.env);
        out.cwd = j->cwd.empty() ? j->scratch_dir : j->cwd;
        j->done(std::move(out));
    };

    // sys.path (native) and the scratch directory, in one pool j.
    auto compose = [loop, state_dir, plan](std::shared_ptr<Job> j) {
        bool native = j->runtime == Runtime::native;
        run_blocking<Composed>(
            loop,
            [j, native, state_dir] {
                Composed c;
                if (native) {
                    std::vector<PexTree> trees = {{j->source_tree, &j->source_info},
                                                  {j->deps_tree, &j->deps_info}};
                    std::string error;
                    if (!build_sys_path(trees, j->target, c.sys_path, error)) {
                        c.failure = StepFailure{reason::bad_archive, error};
                        return c;
                    }
                }
                auto scratch = make_scratch(j->scratch_dir, state_dir, j->who);
                if (!scratch)
                    c.failure = scratch.error();
                else
                    c.pycache = *scratch;
                return c;
            },
            [j, plan](std::optional<Composed> c, std::string error) {
                if (!c) return j->fail(reason::bad_archive, "composing sys.path: " + error);
                if (c->failure) return j->fail(c->failure->reason, c->failure->message);
                plan(j, std::move(*c));
            });
    };

    run_blocking<std::string>(
        loop_,
        [job] {
            std::string err;
            if (!load_pex_info(job->source_tree, job->source_info, err)) return "source: " + err;
            if (!load_pex_info(job->deps_tree, job->deps_info, err)) return "deps: " + err;
            return std::string();
        },
        [job, interpreters, compose](std::optional<std::string> err, std::string error) {
            if (!err) return job->fail(reason::bad_archive, "reading PEX-INFO: " + error);
            if (!err->empty()) return job->fail(reason::bad_archive, *err);
            interpreters->with([job, compose](const std::vector<Interpreter>& found) {
                StepFailure failure;
                const Interpreter* chosen = choose(found, *job, failure);
                if (!chosen) return job->fail(failure.reason, failure.message);
                job->python = chosen->path;
                PythonTarget& t = job->target;
                t.major = chosen->major;
                t.minor = chosen->minor;
                t.micro = chosen->micro;
                utsname uts{};
                if (::uname(&uts) == 0) t.machine = uts.machine;
                t.implementation = chosen->implementation == "PyPy" ? "pypy" : "cpython";
                compose(job);
            });
        });
}

} // namespace hearth
