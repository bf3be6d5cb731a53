#include "launch/distributions.hpp"

#include "launch/wheel_tags.hpp"
#include "util/fs.hpp"
#include "util/text.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

namespace hearth {

namespace fs = std::filesystem;

namespace {

// METADATA and WHEEL are read for their header block, .layout.json whole;
// none comes near this in a real wheel.
constexpr std::uint64_t kMaxSmallFileBytes = 4u << 20;

bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

// Names of the entries of `dir` (empty on error), sorted for determinism.
std::vector<std::string> list_dir(const fs::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    while (!ec && it != end) {
        names.push_back(it->path().filename().string());
        it.increment(ec);
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string normal_string(const fs::path& p) {
    std::string s = p.lexically_normal().string();
    while (s.size() > 1 && s.back() == '/')
        s.pop_back();
    return s;
}

struct Dist {
    std::string wheel;
    std::string fingerprint;
    WheelName name;
    fs::path base;                    // chroot or unpacked wheel directory
    std::vector<std::string> entries; // absolute sys.path entries
    fs::path metadata;                // METADATA file (may not exist)
    bool metadata_loaded = false;
    std::vector<Requirement> requires_dist;
};

bool load_chroot(const fs::path& base, Dist& d, std::string& error) {
    if (!is_dir(base)) {
        error = base.string() + ": distribution directory missing from the extracted tree";
        return false;
    }
    const fs::path layout_path = base / ".layout.json";
    InstalledWheelLayout layout;
    if (is_file(layout_path)) {
        auto text = read_file(layout_path.string(), kMaxSmallFileBytes);
        if (!text) {
            error = text.error().message;
            return false;
        }
        if (!parse_layout_json(*text, layout_path.string(), layout, error)) return false;
    } else {
        // Chroots from pex releases before .layout.json were importable at
        // their root, which is also what pex assumes when the key is absent.
        layout.sys_path_entries = {"."};
    }
    for (const auto& rel : layout.sys_path_entries)
        d.entries.push_back(normal_string(base / rel));
    if (!layout.record_relpath.empty()) {
        d.metadata = base / fs::path(layout.record_relpath).parent_path() / "METADATA";
    } else {
        for (const auto& n : list_dir(base))
            if (n.size() > 10 && n.compare(n.size() - 10, 10, ".dist-info") == 0) {
                d.metadata = base / n / "METADATA";
                break;
            }
    }
    return true;
}

bool load_unpacked_wheel(const fs::path& base, Dist& d, std::string& error) {
    if (!is_dir(base)) {
        error = base.string() + ": raw wheel was not unpacked into the tree";
        return false;
    }
    std::string dist_info, data;
    for (const auto& n : list_dir(base)) {
        if (n.size() > 10 && n.compare(n.size() - 10, 10, ".dist-info") == 0 &&
            (dist_info.empty() || n == d.name.name_version + ".dist-info"))
            dist_info = n;
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".data") == 0 &&
            (data.empty() || n == d.name.name_version + ".data"))
            data = n;
    }
    bool root_is_purelib = true;
    if (!dist_info.empty()) {
        d.metadata = base / dist_info / "METADATA";
        if (auto wheel_text =
                read_file((base / dist_info / "WHEEL").string(), kMaxSmallFileBytes)) {
            std::istringstream lines(*wheel_text);
            for (std::string line; std::getline(lines, line);) {
                if (starts_with_ci(line, "Root-Is-Purelib:"))
                    root_is_purelib = starts_with_ci(trim(line.substr(16)), "true");
            }
        }
    }
    d.entries.push_back(normal_string(base));
    if (!data.empty()) {
        // pex installs the other lib kind into the chroot's stash and lists
        // it after the root (pex/pep_427.py install_wheel_chroot); the
        // unpacked wheel keeps both under <name>-<ver>.data/.
        const char* first = root_is_purelib ? "purelib" : "platlib";
        const char* second = root_is_purelib ? "platlib" : "purelib";
        for (const char* kind : {first, second})
            if (is_dir(base / data / kind)) d.entries.push_back(normal_string(base / data / kind));
    }
    return true;
}

void load_requires_dist(Dist& d) {
    if (d.metadata_loaded) return;
    d.metadata_loaded = true;
    if (d.metadata.empty()) return;
    auto text = read_file(d.metadata.string(), kMaxSmallFileBytes);
    if (!text) return; // no Requires-Dist to follow; the distribution still counts
    std::istringstream lines(*text);
    std::string current;
    auto flush = [&] {
        if (starts_with_ci(current, "Requires-Dist:")) {
            Requirement r;
            if (parse_requirement(std::string_view(current).substr(14), r))
                d.requires_dist.push_back(std::move(r));
        }
        current.clear();
    };
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) break; // end of the header block; the body is the description
        if (line[0] == ' ' || line[0] == '\t') {
            current += ' ';
            current += trim(line);
            continue;
        }
        flush();
        current = line;
    }
    flush();
}

// The distributions of one tree in pex's activation order.
class TreeResolver {
public:
    TreeResolver(const PexTree& tree, const PythonTarget& target) : tree_(tree), target_(target) {}

    bool run(std::vector<Dist>& out, std::string& error) {
        const PexInfo& info = *tree_.info;
        const fs::path root(tree_.root);
        for (const auto& [wheel, fingerprint] : info.distributions) {
            Dist d;
            d.wheel = wheel;
            d.fingerprint = fingerprint;
            d.name = parse_wheel_name(wheel);
            if (!d.name.ok) d.name.project = normalize_project_name(wheel);
            bool ok = info.deps_are_wheel_files
                          ? load_unpacked_wheel(root / ".hearth" / "wheels" / wheel, d, error)
                          : load_chroot(root / ".deps" / wheel, d, error);
            if (!ok) return false;
            dists_.push_back(std::move(d));
        }
        choose_per_project();

        // Roots as pex/environment.py _root_requirements_iter groups them:
        // one per project in first-seen order, extras merged.
        std::vector<Requirement> roots;
        for (const auto& text : info.requirements) {
            Requirement r;
            if (!parse_requirement(text, r)) continue;
            if (!marker_applies(r.marker, {}, target_)) continue;
            auto same = std::find_if(roots.begin(), roots.end(),
                                     [&](const Requirement& x) { return x.project == r.project; });
            if (same == roots.end()) {
                roots.push_back(std::move(r));
            } else {
                same->extras.insert(same->extras.end(), r.extras.begin(), r.extras.end());
                std::sort(same->extras.begin(), same->extras.end());
                same->extras.erase(std::unique(same->extras.begin(), same->extras.end()),
                                   same->extras.end());
            }
        }
        for (const auto& r : roots)
            resolve(r.project, r.extras);

        // Distributions no requirement reaches (markers we could not rule
        // out, hand-made pexes): pex leaves them inactive; hearth appends them
        // after the resolved ones so they cannot shadow anything that is.
        for (const auto& entry : chosen_) {
            if (std::find(order_.begin(), order_.end(), entry.second) == order_.end())
                unreached_.push_back(entry.second);
        }
        std::sort(unreached_.begin(), unreached_.end());
        for (size_t i : order_)
            out.push_back(dists_[i]);
        for (size_t i : unreached_)
            out.push_back(dists_[i]);
        return true;
    }

private:
    void choose_per_project() {
        for (size_t i = 0; i < dists_.size(); ++i) {
            const std::string& project = dists_[i].name.project;
            auto it = chosen_.find(project);
            if (it == chosen_.end()) {
                chosen_.emplace(project, i);
                continue;
            }
            const int current = wheel_tag_rank(dists_[it->second].wheel, target_);
            const int candidate = wheel_tag_rank(dists_[i].wheel, target_);
            if (candidate > current) it->second = i;
        }
    }

    void resolve(const std::string& project, const std::vector<std::string>& extras) {
        // pex/environment.py _resolve_requirement: a key already resolved with
        // a superset of these extras satisfies the requirement.
        for (const auto& [p, e] : resolved_keys_) {
            if (p == project && std::includes(e.begin(), e.end(), extras.begin(), extras.end()))
                return;
        }
        auto it = chosen_.find(project);
        if (it == chosen_.end()) return; // not in this pex: nothing to activate
        resolved_keys_.emplace_back(project, extras);
        const size_t index = it->second;
        if (std::find(order_.begin(), order_.end(), index) == order_.end()) order_.push_back(index);
        load_requires_dist(dists_[index]);
        const std::vector<Requirement>& deps = dists_[index].requires_dist;
        for (const auto& dep : deps) {
            if (!marker_applies(dep.marker, extras, target_)) continue;
            resolve(dep.project, dep.extras);
        }
    }

    const PexTree& tree_;
    const PythonTarget& target_;
    std::vector<Dist> dists_;
    std::map<std::string, size_t> chosen_;
    std::vector<std::pair<std::string, std::vector<std::string>>> resolved_keys_;
    std::vector<size_t> order_;
    std::vector<size_t> unreached_;
};

} // namespace

bool walk_distributions(const PexTree& tree, const PythonTarget& target, TreeActivation& out,
                        std::string& error) {
    std::vector<Dist> dists;
    TreeResolver resolver(tree, target);
    if (!resolver.run(dists, error)) return false;
    TreeActivation result;
    result.root = normal_string(tree.root);
    for (Dist& d : dists)
        result.distributions.push_back(
            ActiveDistribution{std::move(d.wheel), std::move(d.fingerprint), std::move(d.entries)});
    out = std::move(result);
    return true;
}

} // namespace hearth
