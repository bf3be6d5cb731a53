#include "isolation/cgroup.hpp"

#include "isolation/cgroup_internal.hpp"
#include "util/fs.hpp"
#include "util/text.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <signal.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace hearth::cgroup {

std::string_view mode_name(Mode mode) {
    switch (mode) {
    case Mode::v1:
        return "v1";
    case Mode::v2:
        return "v2";
    case Mode::hybrid:
        return "hybrid";
    case Mode::none:
        break;
    }
    return "none";
}

// ---------------------------------------------------------------------------
// Detection

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    auto octal = [](char c) { return c >= '0' && c <= '7'; };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) &&
            octal(s[i + 3])) {
            out.push_back(
                static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
            i += 3;
            continue;
        }
        out.push_back(s[i]);
    }
    return out;
}

// The part of `path` below the mount's root, or nullopt when the cgroup is
// not visible through this mount.
std::optional<std::string> visible_part(const std::string& root, const std::string& path) {
    if (root == "/" || root.empty()) return path;
    if (path == root) return std::string("/");
    if (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
        path[root.size()] == '/')
        return path.substr(root.size());
    return std::nullopt;
}

// Picks the best mount among candidates: writable, then one through which
// hearth's own cgroup is visible. Returns the index or -1.
int pick(const std::vector<const MountEntry*>& candidates, const std::optional<std::string>& own) {
    int best = -1;
    int best_score = -1;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        int score = 0;
        if (!candidates[i]->read_only) score += 2;
        if (own && visible_part(candidates[i]->root, *own)) score += 1;
        if (score > best_score) {
            best = static_cast<int>(i);
            best_score = score;
        }
    }
    return best;
}

std::string self_dir(const MountEntry& m, std::string_view prefix,
                     const std::optional<std::string>& own, std::string& notes) {
    std::string mount = detail::cgroup_path(prefix, m.point);
    if (!own) return mount;
    auto rel = visible_part(m.root, *own);
    if (!rel) {
        notes += (notes.empty() ? "" : "; ") + std::string("own cgroup ") + *own +
                 " not visible under " + m.point + ", using its root";
        return mount;
    }
    return detail::cgroup_path(mount, *rel);
}

} // namespace

bool has_token(std::string_view list, std::string_view token) {
    for (auto t : split(list, ','))
        if (t == token) return true;
    return false;
}

std::vector<MountEntry> parse_mountinfo(std::string_view text) {
    std::vector<MountEntry> out;
    for (auto line : split(text, '\n')) {
        std::vector<std::string_view> f;
        for (auto w : split(line, ' '))
            if (!w.empty()) f.push_back(w);
        // id parent dev root point options [optional...] - fstype source super
        auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
        if (f.size() < 6 || dash == f.end() || dash - f.begin() < 6 || f.end() - dash < 4) continue;
        MountEntry m;
        m.root = unescape(f[3]);
        m.point = unescape(f[4]);
        m.read_only = has_token(f[5], "ro");
        m.fstype = std::string(dash[1]);
        m.super_options = std::string(dash[3]);
        if (m.fstype == "cgroup" || m.fstype == "cgroup2") out.push_back(std::move(m));
    }
    return out;
}

std::vector<ProcCgroupEntry> parse_proc_cgroup(std::string_view text) {
    std::vector<ProcCgroupEntry> out;
    for (auto line : split(text, '\n')) {
        auto c1 = line.find(':');
        if (c1 == std::string_view::npos) continue;
        auto c2 = line.find(':', c1 + 1);
        if (c2 == std::string_view::npos) continue;
        out.push_back({std::string(line.substr(0, c1)),
                       std::string(line.substr(c1 + 1, c2 - c1 - 1)),
                       std::string(trim(line.substr(c2 + 1)))});
    }
    return out;
}

Layout detect(std::string_view mountinfo, std::string_view proc_self_cgroup,
              std::string_view mount_prefix) {
    Layout layout;
    auto mounts = parse_mountinfo(mountinfo);
    auto procs = parse_proc_cgroup(proc_self_cgroup);
    std::vector<std::string> read_only;

    std::optional<std::string> unified_own;
    for (const auto& p : procs)
        if (p.controllers.empty()) unified_own = p.path;

    std::vector<const MountEntry*> v2_mounts;
    for (const auto& m : mounts)
        if (m.fstype == "cgroup2") v2_mounts.push_back(&m);
    if (int i = pick(v2_mounts, unified_own); i >= 0) {
        const MountEntry& m = *v2_mounts[static_cast<std::size_t>(i)];
        if (m.read_only) {
            read_only.push_back(m.point);
        } else {
            layout.unified_mount = detail::cgroup_path(mount_prefix, m.point);
            layout.unified_self = self_dir(m, mount_prefix, unified_own, layout.reason);
        }
    }

    for (std::string_view controller : {"memory", "cpu", "cpuacct", "pids", "freezer"}) {
        std::optional<std::string> own;
        for (const auto& p : procs)
            if (has_token(p.controllers, controller)) own = p.path;
        std::vector<const MountEntry*> candidates;
        for (const auto& m : mounts)
            if (m.fstype == "cgroup" && has_token(m.super_options, controller))
                candidates.push_back(&m);
        int i = pick(candidates, own);
        if (i < 0) continue;
        const MountEntry& m = *candidates[static_cast<std::size_t>(i)];
        if (m.read_only) {
            read_only.push_back(m.point);
            continue;
        }
        V1Hierarchy h;
        for (auto opt : split(m.super_options, ','))
            if (opt != "rw" && opt != "ro" && opt.find('=') == std::string_view::npos &&
                !opt.empty())
                h.controllers += (h.controllers.empty() ? "" : ",") + std::string(opt);
        h.mount = detail::cgroup_path(mount_prefix, m.point);
        h.self = self_dir(m, mount_prefix, own, layout.reason);
        layout.v1.emplace(std::string(controller), std::move(h));
    }

    bool useful_v1 = layout.v1.count("memory") || layout.v1.count("cpu") || layout.v1.count("pids");
    bool unified = !layout.unified_mount.empty();
    if (useful_v1 && unified) {
        layout.mode = Mode::hybrid;
    } else if (useful_v1) {
        layout.mode = Mode::v1;
    } else if (unified) {
        layout.mode = Mode::v2;
        layout.v1.clear(); // cpuacct or freezer alone add nothing to v2
    } else {
        layout.mode = Mode::none;
        layout.v1.clear();
        if (!read_only.empty()) {
            layout.reason = "cgroup filesystem mounted read-only (" + read_only.front() + ")";
        } else {
            layout.reason = "no cgroup filesystem mounted";
        }
    }
    return layout;
}

// ---------------------------------------------------------------------------
// Values

std::uint64_t weight_to_shares(std::uint64_t weight) {
    std::uint64_t shares = weight * 1024 / 100;
    return std::clamp<std::uint64_t>(shares, 2, 262144);
}

std::uint64_t shares_to_weight(std::uint64_t shares) {
    std::uint64_t weight = shares * 100 / 1024;
    return std::clamp<std::uint64_t>(weight, 1, 10000);
}

std::uint64_t cpu_quota_us(double cpus) {
    if (!(cpus > 0) || !std::isfinite(cpus)) return 1000;
    double quota = std::round(cpus * static_cast<double>(cpu_period_us));
    if (quota < 1000) return 1000;
    if (quota > 1e15) return static_cast<std::uint64_t>(1e15);
    return static_cast<std::uint64_t>(quota);
}

std::string check_name(std::string_view name) {
    if (name.empty()) return "empty cgroup name";
    if (name.size() > 128) return "cgroup name longer than 128 characters";
    if (name == "." || name == "..") return "cgroup name cannot be '.' or '..'";
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@' || c == ':';
        if (!ok) return "cgroup name may only contain letters, digits and . _ - @ :";
    }
    return "";
}

// ---------------------------------------------------------------------------
// Cgroup

namespace {
// Writes `value` in decimal with one write(2). 0 or errno. Async-signal-safe.
int write_decimal(const char* path, unsigned long value, bool plain) noexcept {
    char rev[24], buf[24];
    std::size_t len = 0;
    do {
        rev[len++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value && len < sizeof rev);
    for (std::size_t i = 0; i < len; ++i)
        buf[i] = rev[len - 1 - i];
    int fd = ::open(path, O_WRONLY | O_CLOEXEC | (plain ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0) return errno;
    int err = 0;
    ssize_t n = ::write(fd, buf, len);
    if (n < 0)
        err = errno;
    else if (static_cast<std::size_t>(n) != len)
        err = EIO;
    ::close(fd);
    return err;
}
} // namespace

int Cgroup::place(pid_t pid, std::size_t* failed) const noexcept {
    for (std::size_t i = 0; i < procs_.size(); ++i)
        if (int err = write_decimal(procs_[i].c_str(), static_cast<unsigned long>(pid), plain_)) {
            if (failed) *failed = i;
            return err;
        }
    return 0;
}

int Cgroup::place_self(bool in_unified) const noexcept {
    for (const auto& tasks : self_tasks_)
        if (int err = write_decimal(tasks.c_str(), 0, plain_)) return err;
    if (!in_unified && !unified_procs_.empty())
        return write_decimal(unified_procs_.c_str(), static_cast<unsigned long>(::getpid()),
                             plain_);
    return 0;
}

// ---------------------------------------------------------------------------
// OomWatch

std::string OomWatch::add(const Cgroup& cgroup) {
    remove(cgroup.name());
    Entry entry;
    entry.source = cgroup.oom_source();
    if (entry.source.kind == OomSource::Kind::none) return "no memory cgroup to watch";
    if (!fd_) return "OOM watch unavailable";
    entry.last = read(entry.source);
    std::string error = arm(entry);
    if (!error.empty()) return error;
    entries_.emplace(cgroup.name(), std::move(entry));
    return "";
}

void OomWatch::remove(const std::string& name) {
    auto it = entries_.find(name);
    if (it == entries_.end()) return;
    disarm(it->second);
    entries_.erase(it);
}

std::vector<OomChange> OomWatch::check() {
    drain();
    std::vector<OomChange> changes;
    for (auto& [name, entry] : entries_) {
        OomCounters now = read(entry.source);
        // A cgroup that vanished reads as all-nullopt: keep the last values
        // rather than report a bogus change.
        if (!now.oom_kill && !now.oom && !now.limit_hits && !now.under_oom) continue;
        if (now == entry.last) continue;
        changes.push_back({name, entry.last, now});
        entry.last = now;
    }
    return changes;
}

// ---------------------------------------------------------------------------
// Driver

std::vector<std::string> Driver::remove_own_directories() const {
    std::vector<std::string> stayed;
    // Deepest first: a parent empties only once its children are gone.
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
        // Not recursive: anything inside (a revision cgroup that outlived
        // its revision) is not hearth's to throw away unseen.
        if (int err = detail::remove_dir(*it, created_plain_, false, 0))
            stayed.push_back(*it + ": " + errno_text(err));
    }
    return stayed;
}

nlohmann::json Driver::describe() const {
    Enforcement e = enforcement();
    nlohmann::json j;
    j["driver"] = std::string(mode_name(mode()));
    j["enforcement"] = std::string(e.name());
    j["degraded"] = e.degraded;
    j["envs"] = envs_directories();
    j["cpu_sets"] = cpusets() ? "cpuset" : "affinity";
    return j;
}

namespace {

// `..` would let --cgroup-parent leave the hierarchy.
bool parent_ok(std::string_view parent) {
    for (auto part : split(parent, '/'))
        if (part == "..") return false;
    return true;
}

} // namespace

std::unique_ptr<Driver> open(const Layout& layout, const Config& config) {
    if (config.force_none) return detail::make_none("cgroups disabled by configuration");
    if (!parent_ok(config.parent))
        return detail::make_none("invalid cgroup parent '" + config.parent +
                                 "': '..' is not allowed");
    std::string error;
    std::unique_ptr<Driver> driver;
    switch (layout.mode) {
    case Mode::none:
        return detail::make_none(layout.reason);
    case Mode::v2:
        driver = detail::make_v2(layout, config, error);
        break;
    case Mode::v1:
    case Mode::hybrid:
        driver = detail::make_v1(layout, config, error);
        break;
    }
    if (!driver)
        return detail::make_none(std::string(mode_name(layout.mode)) +
                                 " cgroups unusable: " + error);
    return driver;
}

std::unique_ptr<Driver> open(const Config& config) {
    if (config.force_none) return detail::make_none("cgroups disabled by configuration");
    auto mountinfo = read_file(config.mountinfo_path);
    if (!mountinfo)
        return detail::make_none("cannot read " + config.mountinfo_path + ": " +
                                 errno_text(mountinfo.error().sys_errno));
    auto self = read_file(config.proc_cgroup_path);
    if (!self)
        return detail::make_none("cannot read " + config.proc_cgroup_path + ": " +
                                 errno_text(self.error().sys_errno));
    return open(detect(*mountinfo, *self, config.mount_prefix), config);
}

// ---------------------------------------------------------------------------
// Shared helpers

namespace detail {

std::string check_create(const std::string& name, const Limits& limits) {
    if (std::string why = check_name(name); !why.empty()) return why;
    if (limits.cpu_weight && (*limits.cpu_weight < 1 || *limits.cpu_weight > 10000))
        return "cpu weight must be 1..10000";
    if (limits.cpu_quota && !(*limits.cpu_quota > 0)) return "cpu quota must be positive";
    return "";
}

int write_file(const std::string& path, std::string_view data, bool plain) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (plain ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0) return errno;
    int err = 0;
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0)
        err = errno;
    else if (static_cast<std::size_t>(n) != data.size())
        err = EIO;
    ::close(fd);
    return err;
}

namespace {

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr == s.data()) return std::nullopt;
    return v;
}

} // namespace

std::optional<std::uint64_t> read_u64(const std::string& path) {
    auto text = read_file(path);
    if (!text) return std::nullopt;
    std::string_view t = trim(*text);
    return parse_u64(t.substr(0, t.find_first_of(" \n")));
}

std::optional<std::uint64_t> keyed_value(std::string_view text, std::string_view key) {
    for (auto line : split(text, '\n')) {
        line = trim(line);
        auto space = line.find(' ');
        if (space == std::string_view::npos || line.substr(0, space) != key) continue;
        return parse_u64(trim(line.substr(space + 1)));
    }
    return std::nullopt;
}

std::optional<std::uint64_t> read_keyed(const std::string& path, std::string_view key) {
    auto text = read_file(path);
    if (!text) return std::nullopt;
    return keyed_value(*text, key);
}

std::vector<pid_t> read_pids(const std::string& procs_path) {
    std::vector<pid_t> out;
    auto text = read_file(procs_path);
    if (!text) return out;
    for (auto line : split(*text, '\n')) {
        auto v = parse_u64(trim(line));
        if (v && *v > 0) out.push_back(static_cast<pid_t>(*v));
    }
    return out;
}

bool exists(const std::string& path) {
    return ::access(path.c_str(), F_OK) == 0;
}

int make_fresh_dir(const std::string& path, bool plain) {
    if (::mkdir(path.c_str(), 0755) == 0) return 0;
    if (errno != EEXIST) return errno;
    if (int err = remove_dir(path, plain, true, 50)) return err;
    return ::mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
}

std::vector<std::string> list_dirs(const std::string& path) {
    std::vector<std::string> out;
    DIR* d = ::opendir(path.c_str());
    if (!d) return out;
    while (dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n == "." || n == "..") continue;
        bool dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st {};
            dir = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                  S_ISDIR(st.st_mode);
        }
        if (dir) out.emplace_back(n);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

int remove_dir(const std::string& path, bool plain, bool recursive, int busy_ms) {
    if (recursive)
        for (const auto& sub : list_dirs(path))
            remove_dir(cgroup_path(path, sub), plain, true, busy_ms);
    if (plain) {
        // A fake tree holds real files; cgroupfs directories never need this.
        if (DIR* d = ::opendir(path.c_str())) {
            while (dirent* e = ::readdir(d))
                if (e->d_type != DT_DIR) ::unlinkat(::dirfd(d), e->d_name, 0);
            ::closedir(d);
        }
    }
    auto start = std::chrono::steady_clock::now();
    for (;;) {
        if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return 0;
        int err = errno;
        // EBUSY: the last task is still leaving (exit in progress) or a
        // css is still going offline; it clears within milliseconds.
        if (err != EBUSY ||
            std::chrono::steady_clock::now() - start > std::chrono::milliseconds(busy_ms))
            return err;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

std::string cgroup_path(std::string_view parent, std::string_view child) {
    std::string out(parent);
    while (out.size() > 1 && out.back() == '/')
        out.pop_back();
    while (!child.empty() && child.front() == '/')
        child.remove_prefix(1);
    while (!child.empty() && child.back() == '/')
        child.remove_suffix(1);
    if (child.empty()) return out.empty() ? std::string("/") : out;
    if (out.empty() || out.back() != '/') out += '/';
    out += child;
    return out;
}

namespace {

void collect_pids(const std::string& dir, std::set<pid_t>& out, int depth = 0) {
    for (pid_t p : read_pids(cgroup_path(dir, "cgroup.procs")))
        out.insert(p);
    if (depth < 16)
        for (const auto& sub : list_dirs(dir))
            collect_pids(cgroup_path(dir, sub), out, depth + 1);
}

void nap(int& ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    ms = std::min(ms * 2, 20);
}

} // namespace

KillResult kill_all(const std::string& unified, const std::string& freezer,
                    const std::vector<std::string>& membership, bool plain,
                    std::chrono::milliseconds timeout) {
    KillResult result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    const pid_t self = ::getpid();
    auto is_empty = [&] {
        if (!unified.empty()) {
            auto populated = read_keyed(cgroup_path(unified, "cgroup.events"), "populated");
            if (populated && *populated != 0) return false;
        }
        std::set<pid_t> pids;
        for (const auto& dir : membership)
            collect_pids(dir, pids);
        return pids.empty();
    };
    auto note = [&](const std::string& what, int err) {
        if (result.error.empty()) result.error = what + ": " + errno_text(err);
    };

    if (!unified.empty() && exists(cgroup_path(unified, "cgroup.kill"))) {
        // The kernel kills every process, and forks racing with it, in one go.
        result.method = "cgroup.kill";
        int ms = 1;
        for (;;) {
            ++result.rounds;
            if (int err = write_file(cgroup_path(unified, "cgroup.kill"), "1", plain)) {
                note("write cgroup.kill", err);
                break;
            }
            if ((result.empty = is_empty())) return result;
            // Kills are asynchronous; wait for the exits before writing again.
            for (int i = 0; i < 10 && std::chrono::steady_clock::now() < deadline; ++i) {
                nap(ms);
                if ((result.empty = is_empty())) return result;
            }
            if (std::chrono::steady_clock::now() >= deadline) return result;
        }
        // cgroup.kill refused: fall through to the slow path.
    }

    // Freeze so nothing forks between reading the pids and killing them.
    std::string freeze_file;
    std::string frozen_on;
    std::string thawed_on;
    if (!unified.empty() && exists(cgroup_path(unified, "cgroup.freeze"))) {
        freeze_file = cgroup_path(unified, "cgroup.freeze");
        frozen_on = "1";
        thawed_on = "0";
    } else if (!freezer.empty() && exists(cgroup_path(freezer, "freezer.state"))) {
        freeze_file = cgroup_path(freezer, "freezer.state");
        frozen_on = "FROZEN";
        thawed_on = "THAWED";
    }
    result.method = freeze_file.empty() ? "signal" : "freezer";
    int ms = 1;
    for (;;) {
        ++result.rounds;
        bool frozen = false;
        if (!freeze_file.empty()) {
            if (int err = write_file(freeze_file, frozen_on, plain)) {
                note("write " + freeze_file, err);
            } else {
                frozen = true;
                // Freezing completes asynchronously; a task in an
                // uninterruptible sleep can hold it up, so wait only briefly.
                for (int i = 0; i < 50; ++i) {
                    bool done = false;
                    if (frozen_on == "1") {
                        auto f = read_keyed(cgroup_path(unified, "cgroup.events"), "frozen");
                        done = !f || *f == 1;
                    } else {
                        auto s = read_file(freeze_file);
                        done = !s || trim(*s) != "FREEZING";
                    }
                    if (done) break;
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
            }
        }
        std::set<pid_t> pids;
        for (const auto& dir : membership)
            collect_pids(dir, pids);
        for (pid_t p : pids) {
            if (p <= 1 || p == self) continue;
            if (::kill(p, SIGKILL) < 0 && errno != ESRCH) note("kill " + std::to_string(p), errno);
        }
        // SIGKILL takes effect once the tasks run again.
        if (frozen)
            if (int err = write_file(freeze_file, thawed_on, plain))
                note("write " + freeze_file, err);
        if ((result.empty = is_empty())) return result;
        if (std::chrono::steady_clock::now() >= deadline) return result;
        nap(ms);
        if ((result.empty = is_empty())) return result;
        if (std::chrono::steady_clock::now() >= deadline) return result;
    }
}

OomCounters read_oom_v2(const std::string& memory_events) {
    OomCounters c;
    auto text = read_file(memory_events);
    if (!text) return c;
    c.oom_kill = keyed_value(*text, "oom_kill");
    c.oom = keyed_value(*text, "oom");
    c.limit_hits = keyed_value(*text, "max");
    return c;
}

OomCounters read_oom_v1(const std::string& memory_dir) {
    OomCounters c;
    if (auto text = read_file(cgroup_path(memory_dir, "memory.oom_control"))) {
        c.oom_kill = keyed_value(*text, "oom_kill"); // absent before 4.13
        if (auto u = keyed_value(*text, "under_oom")) c.under_oom = *u != 0;
    }
    c.limit_hits = read_u64(cgroup_path(memory_dir, "memory.failcnt"));
    return c;
}

} // namespace detail

} // namespace hearth::cgroup
