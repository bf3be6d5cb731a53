#include "init/procscan.hpp"

#include "util/fd.hpp"

#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <string>
#include <unistd.h>

namespace hearth {

namespace {

// Parses /proc/PID/stat. The command name may hold spaces and ')', so the
// fields are counted from the last ')'.
bool parse_stat(const char* text, ProcInfo& out) {
    const char* close = std::strrchr(text, ')');
    if (!close) return false;
    const char* p = close + 1;
    // Fields after the name: 3 state, 4 ppid, 5 pgrp, 6 session, ... 14 utime,
    // 15 stime, ... 24 rss (pages).
    int field = 2;
    unsigned long long values[25] = {};
    char state = '?';
    while (*p && field < 24) {
        while (*p == ' ')
            ++p;
        ++field;
        if (field == 3) {
            state = *p;
        } else {
            char* end = nullptr;
            values[field] = std::strtoull(p, &end, 10);
            if (end == p) return false;
        }
        while (*p && *p != ' ')
            ++p;
    }
    if (field < 24) return false;
    static const long page = ::sysconf(_SC_PAGESIZE);
    out.ppid = static_cast<pid_t>(values[4]);
    out.pgrp = static_cast<pid_t>(values[5]);
    out.session = static_cast<pid_t>(values[6]);
    out.cpu_ticks = values[14] + values[15];
    out.rss_bytes = values[24] * static_cast<unsigned long long>(page);
    out.zombie = state == 'Z' || state == 'X';
    return true;
}

} // namespace

std::vector<ProcInfo> scan_processes() {
    std::vector<ProcInfo> out;
    DIR* dir = ::opendir("/proc");
    if (!dir) return out;
    while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end != '\0') continue;
        std::string path = std::string("/proc/") + e->d_name + "/stat";
        Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) continue;
        char buf[1024];
        ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
        if (n <= 0) continue;
        buf[n] = '\0';
        ProcInfo info;
        info.pid = static_cast<pid_t>(pid);
        if (parse_stat(buf, info)) out.push_back(info);
    }
    ::closedir(dir);
    return out;
}

std::vector<ProcInfo> session_tree(const std::vector<ProcInfo>& all, pid_t session) {
    std::map<pid_t, const ProcInfo*> by_pid;
    for (const auto& p : all)
        by_pid[p.pid] = &p;
    std::map<pid_t, bool> member; // memo: pid -> in the tree
    auto in_tree = [&](pid_t pid, auto&& self, int depth) -> bool {
        if (pid <= 1 || depth > 4096) return false;
        if (auto it = member.find(pid); it != member.end()) return it->second;
        auto it = by_pid.find(pid);
        bool result = it != by_pid.end() &&
                      (it->second->session == session || self(it->second->ppid, self, depth + 1));
        member[pid] = result;
        return result;
    };
    std::vector<ProcInfo> out;
    for (const auto& p : all)
        if (!p.zombie && in_tree(p.pid, in_tree, 0)) out.push_back(p);
    return out;
}

} // namespace hearth
