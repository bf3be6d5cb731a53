#include "launch/pex_info.hpp"

#include "launch/distributions.hpp"
#include "util/fs.hpp"
#include "util/text.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

namespace hearth {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// PEX-INFO grows by ~100 bytes per distribution; anything near this is not a
// pex.
constexpr std::uint64_t kMaxPexInfoBytes = 16u << 20;

// ---------------------------------------------------------------- PEX-INFO

std::string key_error(std::string_view key, std::string_view problem) {
    return "PEX-INFO: key '" + std::string(key) + "': " + std::string(problem);
}

std::string found(const json& v) {
    return std::string(", found ") + v.type_name();
}

const json* member(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

bool get_string(const json& obj, const char* key, std::string& out, std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_string()) {
        error = key_error(key, "must be a string" + found(*v));
        return false;
    }
    out = v->get_ref<const std::string&>();
    return true;
}

bool get_bool(const json& obj, const char* key, bool& out, std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_boolean()) {
        error = key_error(key, "must be a boolean" + found(*v));
        return false;
    }
    out = v->get<bool>();
    return true;
}

bool get_string_list(const json& obj, const char* key, std::vector<std::string>& out,
                     std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_array()) {
        error = key_error(key, "must be a list of strings" + found(*v));
        return false;
    }
    out.clear();
    for (size_t i = 0; i < v->size(); ++i) {
        const json& item = (*v)[i];
        if (!item.is_string()) {
            error = key_error(key, "item " + std::to_string(i) + " must be a string" + found(item));
            return false;
        }
        out.push_back(item.get_ref<const std::string&>());
    }
    return true;
}

bool get_string_map(const json& obj, const char* key,
                    std::vector<std::pair<std::string, std::string>>& out, std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_object()) {
        error = key_error(key, "must be an object of strings" + found(*v));
        return false;
    }
    out.clear();
    for (auto it = v->begin(); it != v->end(); ++it) {
        if (!it.value().is_string()) {
            error =
                key_error(key, "value of '" + it.key() + "' must be a string" + found(it.value()));
            return false;
        }
        out.emplace_back(it.key(), it.value().get_ref<const std::string&>());
    }
    return true;
}

bool parse_pex_info_json(const json& doc, PexInfo& info, std::string& error) {
    if (!doc.is_object()) {
        error = "PEX-INFO: must be a JSON object" + found(doc);
        return false;
    }
    if (!get_string(doc, "entry_point", info.entry_point, error)) return false;
    if (!get_string(doc, "script", info.script, error)) return false;
    if (!info.entry_point.empty() && !info.script.empty()) {
        error = "PEX-INFO: keys 'entry_point' and 'script' are both set; pex allows only one";
        return false;
    }
    if (!info.entry_point.empty()) {
        EntryPoint ep;
        std::string why;
        if (!parse_entry_point(info.entry_point, ep, why)) {
            error = key_error("entry_point", why);
            return false;
        }
    }
    if (!get_string_map(doc, "distributions", info.distributions, error)) return false;
    for (const auto& [name, fingerprint] : info.distributions) {
        if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
            name.find('\0') != std::string::npos) {
            error = key_error("distributions", "invalid wheel name '" + name + "'");
            return false;
        }
    }

    if (const json* reqs = member(doc, "requirements")) {
        if (!reqs->is_array()) {
            error = key_error("requirements", "must be a list of strings" + found(*reqs));
            return false;
        }
        for (size_t i = 0; i < reqs->size(); ++i) {
            const json& r = (*reqs)[i];
            // pex < 0.8 stored [requirement, repo, dynamic] triples; pex still reads them.
            if (r.is_array() && r.size() == 3 && r[0].is_string()) {
                info.requirements.push_back(r[0].get_ref<const std::string&>());
            } else if (r.is_string()) {
                info.requirements.push_back(r.get_ref<const std::string&>());
            } else {
                error = key_error("requirements",
                                  "item " + std::to_string(i) + " must be a string" + found(r));
                return false;
            }
        }
    }

    if (const json* ih = member(doc, "inherit_path")) {
        if (ih->is_boolean()) {
            info.inherit_path = ih->get<bool>() ? InheritPath::prefer : InheritPath::none;
        } else if (ih->is_string()) {
            const auto& s = ih->get_ref<const std::string&>();
            if (s.empty() || s == "false")
                info.inherit_path = InheritPath::none;
            else if (s == "prefer")
                info.inherit_path = InheritPath::prefer;
            else if (s == "fallback")
                info.inherit_path = InheritPath::fallback;
            else {
                error =
                    key_error("inherit_path",
                              "must be \"false\", \"prefer\" or \"fallback\", found \"" + s + "\"");
                return false;
            }
        } else {
            error = key_error("inherit_path", "must be a string or boolean" + found(*ih));
            return false;
        }
    }

    if (!get_string_list(doc, "interpreter_constraints", info.interpreter_constraints, error))
        return false;
    if (!get_string_map(doc, "inject_env", info.inject_env, error)) return false;
    if (!get_string_list(doc, "inject_args", info.inject_args, error)) return false;
    if (!get_string_list(doc, "inject_python_args", info.inject_python_args, error)) return false;
    if (!get_bool(doc, "strip_pex_env", info.strip_pex_env, error)) return false;
    if (!get_bool(doc, "deps_are_wheel_files", info.deps_are_wheel_files, error)) return false;
    if (!get_string(doc, "pex_hash", info.pex_hash, error)) return false;
    if (!get_string(doc, "code_hash", info.code_hash, error)) return false;

    if (!get_string_list(doc, "pex_paths", info.pex_path, error)) return false;
    if (info.pex_path.empty()) {
        std::string legacy;
        if (!get_string(doc, "pex_path", legacy, error)) return false;
        size_t start = 0;
        while (!legacy.empty() && start <= legacy.size()) {
            size_t colon = legacy.find(':', start);
            if (colon == std::string::npos) colon = legacy.size();
            if (colon > start) info.pex_path.push_back(legacy.substr(start, colon - start));
            start = colon + 1;
        }
    }

    if (const json* bp = member(doc, "build_properties")) {
        if (!bp->is_object()) {
            error = key_error("build_properties", "must be an object" + found(*bp));
            return false;
        }
        if (const json* ver = member(*bp, "pex_version"); ver && ver->is_string())
            info.pex_version = ver->get_ref<const std::string&>();
    }
    return true;
}

bool is_placeholder(char c) {
    return c == '{' || c == '}';
}

bool expand_one(const std::string& arg, const std::map<std::string, std::string>& env,
                std::string& out, std::string& why) {
    out.clear();
    for (size_t i = 0; i < arg.size(); ++i) {
        const char c = arg[i];
        if (!is_placeholder(c)) {
            out += c;
            continue;
        }
        if (i + 1 < arg.size() && arg[i + 1] == c) {
            out += c;
            ++i;
            continue;
        }
        if (c == '}') {
            why = "single '}' encountered";
            return false;
        }
        const size_t close = arg.find('}', i + 1);
        if (close == std::string::npos) {
            why = "single '{' encountered";
            return false;
        }
        const std::string field = arg.substr(i + 1, close - i - 1);
        std::string name;
        constexpr std::string_view dot = "pex.env.", bracket = "pex.env[";
        if (field.compare(0, dot.size(), dot) == 0) {
            name = field.substr(dot.size());
            if (name.empty() || name.find_first_of(".[!:") != std::string::npos) name.clear();
        } else if (field.compare(0, bracket.size(), bracket) == 0 && field.back() == ']') {
            name = field.substr(bracket.size(), field.size() - bracket.size() - 1);
            if (name.find_first_of("[]") != std::string::npos) name.clear();
        }
        if (name.empty()) {
            why = "unsupported replacement field '{" + field + "}' (pex supports {pex.env.NAME})";
            return false;
        }
        if (auto it = env.find(name); it != env.end()) out += it->second;
        i = close;
    }
    return true;
}

} // namespace

// ===================================================================== API

std::string_view to_string(InheritPath value) noexcept {
    switch (value) {
    case InheritPath::prefer:
        return "prefer";
    case InheritPath::fallback:
        return "fallback";
    case InheritPath::none:
        break;
    }
    return "false";
}

bool parse_pex_info(std::string_view text, PexInfo& out, std::string& error) {
    try {
        json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded()) {
            error = "PEX-INFO: not valid JSON";
            return false;
        }
        PexInfo info;
        if (!parse_pex_info_json(doc, info, error)) return false;
        out = std::move(info);
        return true;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        error = std::string("PEX-INFO: ") + e.what();
        return false;
    }
}

bool load_pex_info(const std::string& tree, PexInfo& out, std::string& error) {
    const std::string path = path_join(tree, "PEX-INFO");
    auto text = read_file(path, kMaxPexInfoBytes);
    if (!text) {
        error = text.error().message;
        return false;
    }
    if (!parse_pex_info(*text, out, error)) {
        error = path + ": " + error;
        return false;
    }
    return true;
}

bool parse_entry_point(std::string_view spec, EntryPoint& out, std::string& error) {
    // pex/dist_metadata.py parse_entry_point.
    std::string_view s = trim(spec);
    if (auto bracket = s.find('['); bracket != std::string_view::npos)
        s = trim(s.substr(0, bracket));
    const auto colon = s.find(':');
    std::string module(trim(s.substr(0, colon)));
    std::string attrs(colon == std::string_view::npos ? std::string_view()
                                                      : trim(s.substr(colon + 1)));
    if (module.empty() || (colon != std::string::npos && attrs.empty())) {
        error =
            "invalid entry point '" + std::string(spec) + "': expected module or module:function";
        return false;
    }
    auto dotted_ok = [](const std::string& v) {
        if (v.front() == '.' || v.back() == '.' || v.find("..") != std::string::npos) return false;
        return std::all_of(v.begin(), v.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                   static_cast<unsigned char>(c) >= 0x80;
        });
    };
    if (!dotted_ok(module) || (!attrs.empty() && !dotted_ok(attrs))) {
        error = "invalid entry point '" + std::string(spec) + "': not a dotted Python name";
        return false;
    }
    out.module = std::move(module);
    out.attrs = std::move(attrs);
    return true;
}

bool parse_layout_json(std::string_view text, std::string_view origin, InstalledWheelLayout& out,
                       std::string& error) {
    const std::string where(origin);
    try {
        json doc = json::parse(text.begin(), text.end(), nullptr, false);
        if (doc.is_discarded()) {
            error = where + ": not valid JSON";
            return false;
        }
        if (!doc.is_object()) {
            error = where + ": must be a JSON object" + found(doc);
            return false;
        }
        InstalledWheelLayout layout;
        auto str = [&](const char* key, std::string& dst, bool required) {
            const json* v = member(doc, key);
            if (!v) {
                if (required) error = where + ": key '" + key + "' is missing";
                return !required;
            }
            if (!v->is_string() || (required && v->get_ref<const std::string&>().empty())) {
                error = where + ": key '" + key + "' must be a non-empty string" + found(*v);
                return false;
            }
            dst = v->get_ref<const std::string&>();
            return true;
        };
        // pex/installed_wheel.py InstalledWheel.load requires both.
        if (!str("stash_dir", layout.stash_dir, true)) return false;
        if (!str("record_relpath", layout.record_relpath, true)) return false;
        if (!str("fingerprint", layout.fingerprint, false)) return false;
        if (const json* v = member(doc, "root_is_purelib")) {
            if (!v->is_boolean()) {
                error = where + ": key 'root_is_purelib' must be a boolean" + found(*v);
                return false;
            }
            layout.root_is_purelib = v->get<bool>();
        }
        const json* entries = member(doc, "sys_path_entries");
        if (!entries) {
            layout.sys_path_entries = {"."};
        } else {
            if (!entries->is_array()) {
                error =
                    where + ": key 'sys_path_entries' must be a list of strings" + found(*entries);
                return false;
            }
            for (const auto& e : *entries) {
                if (!e.is_string()) {
                    error = where + ": key 'sys_path_entries' must be a list of strings, item" +
                            found(e);
                    return false;
                }
                std::string rel = e.get<std::string>();
                if (rel.empty()) rel = ".";
                const fs::path p(rel);
                bool escapes = p.is_absolute();
                for (const auto& part : p)
                    if (part == "..") escapes = true;
                if (escapes) {
                    error = where;
                    error.append(": sys_path_entries item '")
                        .append(rel)
                        .append("' leaves the chroot");
                    return false;
                }
                layout.sys_path_entries.push_back(std::move(rel));
            }
        }
        out = std::move(layout);
        return true;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        error = where + ": " + e.what();
        return false;
    }
}

bool build_sys_path(const std::vector<PexTree>& trees, const PythonTarget& target,
                    std::vector<std::string>& out, std::string& error) {
    try {
        for (const auto& t : trees) {
            if (!t.info) {
                error = "build_sys_path: tree '" + t.root + "' has no PexInfo";
                return false;
            }
            if (!fs::path(t.root).is_absolute()) {
                error = "build_sys_path: tree root '" + t.root + "' is not absolute";
                return false;
            }
        }
        // Replays pex/environment.py PEXEnvironment._activate for the main
        // tree, then each PEX_PATH tree: a tree's root goes to the head of
        // sys.path (the main root is already there as the script directory),
        // then each distribution entry is appended, or inserted at the head
        // when that tree's own inherit_path is fallback. The same wheel (name
        // and fingerprint: pex's install location) is activated once.
        std::vector<std::string> head, tail;
        std::set<std::string> seen;
        auto add_head = [&](const std::string& e) {
            if (std::find(head.begin(), head.end(), e) == head.end() &&
                std::find(tail.begin(), tail.end(), e) == tail.end())
                head.insert(head.begin(), e);
        };
        auto add_tail = [&](const std::string& e) {
            if (std::find(head.begin(), head.end(), e) == head.end() &&
                std::find(tail.begin(), tail.end(), e) == tail.end())
                tail.push_back(e);
        };
        for (const PexTree& t : trees) {
            TreeActivation walk;
            if (!walk_distributions(t, target, walk, error)) return false;
            add_head(walk.root);
            const bool fallback = t.info->inherit_path == InheritPath::fallback;
            for (const auto& d : walk.distributions) {
                if (!seen.insert(d.wheel + '\0' + d.fingerprint).second) continue;
                for (const auto& e : d.entries) {
                    if (fallback)
                        add_head(e);
                    else
                        add_tail(e);
                }
            }
        }
        // The main root must stay the last head entry: hearth_boot.py finds the
        // head's end by its PEX-INFO and puts PYTHONPATH (prefer) before it.
        std::vector<std::string> result = std::move(head);
        result.insert(result.end(), tail.begin(), tail.end());
        out = std::move(result);
        return true;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        error = std::string("build_sys_path: ") + e.what();
        return false;
    }
}

bool build_sys_path(const std::string& tree, const PexInfo& info, std::vector<std::string>& out,
                    std::string& error) {
    return build_sys_path({PexTree{tree, &info}}, PythonTarget{}, out, error);
}

void apply_pex_environment(const PexInfo& info, std::map<std::string, std::string>& env) {
    // pex/pex.py PEX._execute: _clean_environment, then os.environ.setdefault.
    if (info.strip_pex_env) {
        for (auto it = env.begin(); it != env.end();) {
            if (it->first.rfind("PEX_", 0) == 0)
                it = env.erase(it);
            else
                ++it;
        }
    }
    for (const auto& [name, value] : info.inject_env)
        env.emplace(name, value);
}

bool expand_inject_args(const PexInfo& info, const std::map<std::string, std::string>& env,
                        std::vector<std::string>& out, std::string& error) {
    std::vector<std::string> result;
    result.reserve(info.inject_args.size());
    for (size_t i = 0; i < info.inject_args.size(); ++i) {
        std::string expanded, why;
        if (!expand_one(info.inject_args[i], env, expanded, why)) {
            error = "PEX-INFO: key 'inject_args': item " + std::to_string(i) + " ('" +
                    info.inject_args[i] + "'): " + why;
            return false;
        }
        result.push_back(std::move(expanded));
    }
    out = std::move(result);
    return true;
}

} // namespace hearth
