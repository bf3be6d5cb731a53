#include "launch/launch.hpp"

namespace hearth {

namespace {
constexpr const char* default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

LaunchPlan plan_launch(const LaunchInput& in) {
    LaunchPlan plan;
    const PexInfo& info = *in.source_info;

    std::map<std::string, std::string> env = {
        {"PATH", in.host_path.empty() ? default_path : in.host_path},
        {"HOME", in.host_home.empty() ? "/" : in.host_home},
        {"LANG", "C.UTF-8"},
        {"TMPDIR", in.scratch_dir},
        // Trees are read-only; without a writable cache every start would
        // recompile every imported module (FIELD-NOTES: 1.85 s vs 0.45 s).
        {"PYTHONPYCACHEPREFIX", in.pycache_dir},
        {"HEARTH_LOCATION", in.location},
        {"HEARTH_REVISION", in.revision_id},
    };
    // Pex semantics: inject_env only fills what is not set; the deploy's own
    // variables are the operator's explicit choice and override both.
    if (in.runtime == Runtime::native) apply_pex_environment(info, env);
    for (const auto& [k, v] : in.deploy_env)
        env[k] = v;

    std::vector<std::string>& argv = plan.argv;
    argv.push_back(in.python);
    if (in.runtime == Runtime::pex) {
        argv.push_back(in.source_tree);
        for (const auto& a : in.args)
            argv.push_back(a);
        env["PEX_PATH"] = in.deps_tree;
        env["PEX_ROOT"] = in.pex_root;
        if (in.module) env["PEX_MODULE"] = *in.module;
    } else {
        argv.push_back("-s");
        for (const auto& a : info.inject_python_args)
            argv.push_back(a);
        argv.push_back(in.boot_script);
        // inject_args belong to the pex's own entry point; an operator who
        // names another module gets exactly the arguments they gave.
        bool own_entry = !in.module.has_value();
        if (in.module) {
            argv.push_back("-m");
            argv.push_back(*in.module);
        } else if (!info.entry_point.empty()) {
            argv.push_back("-m");
            argv.push_back(info.entry_point);
        } else if (!info.script.empty()) {
            argv.push_back("--script");
            argv.push_back(info.script);
        } else {
            plan.error = "source PEX-INFO has no entry_point or script and the deploy names no "
                         "entry.module";
            return plan;
        }
        if (own_entry) {
            std::vector<std::string> injected;
            if (!expand_inject_args(info, env, injected, plan.error)) return plan;
            for (auto& a : injected)
                argv.push_back(std::move(a));
        }
        for (const auto& a : in.args)
            argv.push_back(a);
        std::string joined;
        for (const auto& p : in.sys_path) {
            if (p.find(':') != std::string::npos) {
                plan.error = "sys.path entry contains ':': " + p;
                return plan;
            }
            if (!joined.empty()) joined += ':';
            joined += p;
        }
        env["HEARTH_SYS_PATH"] = joined;
        env["HEARTH_INHERIT_PATH"] = std::string(to_string(info.inherit_path));
    }
    for (const auto& [k, v] : env)
        plan.env.push_back(k + "=" + v);
    return plan;
}

} // namespace hearth
