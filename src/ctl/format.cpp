#include "ctl/format.hpp"

#include "health/load_error.hpp"
#include "util/text.hpp"
#include "util/units.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace hearth::ctl {

using nlohmann::json;

std::string dump_compact(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string field(const json& j, const char* key, const std::string& dflt) {
    if (!j.is_object()) return dflt;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (it->is_string()) return it->get<std::string>();
    return dump_compact(*it);
}

bool flag(const json& j, const char* key) {
    if (!j.is_object()) return false;
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::optional<double> number(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
}

std::string one_line(std::string s) {
    for (auto& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

const json& object_member(const json& j, const char* key) {
    static const json empty = json::object();
    if (!j.is_object()) return empty;
    auto it = j.find(key);
    return it != j.end() && it->is_object() ? *it : empty;
}

std::optional<std::uint64_t> bytes_member(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    std::uint64_t v = 0;
    std::string why;
    if (it->is_number_float()) {
        double d = it->get<double>();
        if (!(d >= 0) || d >= 1.8e19) return std::nullopt;
        return static_cast<std::uint64_t>(d);
    }
    if (!parse_bytes(*it, v, why)) return std::nullopt;
    return v;
}

namespace {

std::size_t display_width(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

std::string cache_cell(const json& rev) {
    auto one = [&](const char* key) -> std::string {
        if (!rev.is_object()) return "-";
        auto it = rev.find(key);
        if (it == rev.end() || !it->is_object()) return "-";
        auto hit = it->find("cache_hit");
        if (hit == it->end() || !hit->is_boolean()) return "-";
        return hit->get<bool>() ? "hit" : "miss";
    };
    std::string d = one("deps"), s = one("source");
    if (d == "-" && s == "-") return "-";
    return d + "/" + s;
}

// Seconds for people: "0.25s", "4s" under a minute (two decimals at most),
// else format_duration's form.
std::string seconds_text(double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    if (seconds >= 60) return format_duration(seconds);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f", seconds);
    std::string s = buf;
    while (s.back() == '0')
        s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s + "s";
}

} // namespace

std::string compact_bytes(std::uint64_t bytes) {
    std::string s = format_bytes(bytes);
    auto sp = s.find(' ');
    if (sp != std::string::npos) s.erase(sp, 1);
    return s;
}

std::string mem_cell(const json& rev) {
    auto cur = bytes_member(object_member(rev, "cgroup"), "memory_current");
    auto lim = bytes_member(object_member(rev, "limits"), "memory");
    if (!cur && !lim) return "-";
    return (cur ? compact_bytes(*cur) : "-") + "/" + (lim ? compact_bytes(*lim) : "-");
}

std::string format_progress(const json& ev) {
    auto fetched = bytes_member(ev, "fetched_bytes");
    auto total = bytes_member(ev, "total_bytes");
    std::string s = field(ev, "artifact", "?") + " " + (fetched ? format_bytes(*fetched) : "?") +
                    "/" + (total ? format_bytes(*total) : "?");
    if (fetched && total && *total > 0) {
        auto pct = static_cast<unsigned>(
            std::min<long double>(100.0L, static_cast<long double>(*fetched) * 100.0L /
                                              static_cast<long double>(*total)));
        s += " (" + std::to_string(pct) + "%)";
    }
    return s;
}

std::string format_duration(double seconds) {
    if (!(seconds > 0)) return "0s";
    if (seconds > 1e12) seconds = 1e12;
    auto total = static_cast<long long>(seconds);
    long long d = total / 86400, h = (total / 3600) % 24, m = (total / 60) % 60, s = total % 60;
    char buf[64];
    if (total < 60)
        std::snprintf(buf, sizeof(buf), "%llds", s);
    else if (total < 3600)
        std::snprintf(buf, sizeof(buf), "%lldm%02llds", m, s);
    else if (total < 86400)
        std::snprintf(buf, sizeof(buf), "%lldh%02lldm", total / 3600, m);
    else
        std::snprintf(buf, sizeof(buf), "%lldd%02lldh", d, h);
    return buf;
}

std::optional<double> parse_timestamp(std::string_view ts) {
    // YYYY-MM-DDTHH:MM:SS[.fff...]Z
    auto digits = [&](std::size_t pos, std::size_t n) -> std::optional<int> {
        if (pos + n > ts.size()) return std::nullopt;
        int v = 0;
        for (std::size_t i = pos; i < pos + n; ++i) {
            if (ts[i] < '0' || ts[i] > '9') return std::nullopt;
            v = v * 10 + (ts[i] - '0');
        }
        return v;
    };
    if (ts.size() < 20 || ts[4] != '-' || ts[7] != '-' || (ts[10] != 'T' && ts[10] != 't') ||
        ts[13] != ':' || ts[16] != ':')
        return std::nullopt;
    auto Y = digits(0, 4), Mo = digits(5, 2), D = digits(8, 2), h = digits(11, 2),
         mi = digits(14, 2), s = digits(17, 2);
    if (!Y || !Mo || !D || !h || !mi || !s) return std::nullopt;
    if (*Mo < 1 || *Mo > 12 || *D < 1 || *D > 31 || *h > 23 || *mi > 59 || *s > 60)
        return std::nullopt;
    std::size_t pos = 19;
    double frac = 0;
    if (ts[pos] == '.') {
        ++pos;
        double scale = 0.1;
        std::size_t start = pos;
        while (pos < ts.size() && ts[pos] >= '0' && ts[pos] <= '9') {
            frac += (ts[pos] - '0') * scale;
            scale /= 10;
            ++pos;
        }
        if (pos == start) return std::nullopt;
    }
    if (pos + 1 != ts.size() || (ts[pos] != 'Z' && ts[pos] != 'z')) return std::nullopt;
    std::tm tm{};
    tm.tm_year = *Y - 1900;
    tm.tm_mon = *Mo - 1;
    tm.tm_mday = *D;
    tm.tm_hour = *h;
    tm.tm_min = *mi;
    tm.tm_sec = *s;
    time_t t = ::timegm(&tm);
    return static_cast<double>(t) + frac;
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> width;
    for (const auto& row : rows) {
        if (row.size() > width.size()) width.resize(row.size(), 0);
        for (std::size_t i = 0; i < row.size(); ++i)
            width[i] = std::max(width[i], display_width(row[i]));
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line.append(width[i] - display_width(row[i]) + 2, ' ');
        }
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line;
        out += '\n';
    }
    return out;
}

std::vector<std::vector<std::string>> status_rows(const json& status, double now) {
    std::vector<std::vector<std::string>> rows{{"LOCATION", "ID", "STATE", "PID", "UPTIME",
                                                "RUNTIME", "CACHE", "MEM", "RESTARTS", "REASON"}};
    if (!status.is_object()) return rows;
    auto locs = status.find("locations");
    if (locs == status.end() || !locs->is_array()) return rows;
    for (const json& loc : *locs) {
        std::string name = field(loc, "location");
        std::string active = field(loc, "active", "");
        const json* revs = nullptr;
        if (loc.is_object()) {
            auto it = loc.find("revisions");
            if (it != loc.end() && it->is_array()) revs = &*it;
        }
        if (!revs || revs->empty()) {
            rows.push_back({name, "-", "-", "-", "-", "-", "-", "-", "-", "-"});
            continue;
        }
        for (const json& rev : *revs) {
            std::string id = field(rev, "id");
            if (!active.empty() && id == active) id += "*";
            std::string state = field(rev, "state");
            std::string uptime = "-";
            if (state != "failed" && state != "stopped") {
                if (auto since = parse_timestamp(field(rev, "state_since", "")))
                    uptime = format_duration(now - *since);
            }
            rows.push_back({name, id, state, field(rev, "pid"), uptime, field(rev, "runtime"),
                            cache_cell(rev), mem_cell(rev), field(rev, "restarts"),
                            field(rev, "reason")});
        }
    }
    return rows;
}

std::vector<std::string> status_detail(const json& status, double now) {
    const json* locs = nullptr;
    if (status.is_object()) {
        auto it = status.find("locations");
        if (it != status.end() && it->is_array() && !it->empty()) locs = &*it;
    }
    if (!locs) return {};
    const json& loc = (*locs)[0];
    if (!loc.is_object() || !loc.contains("revisions") || !loc["revisions"].is_array() ||
        loc["revisions"].empty())
        return {};
    const json& revs = loc["revisions"];
    const std::string active = field(loc, "active", "");
    const json* rev = &revs[0];
    for (const json& r : revs)
        if (!active.empty() && field(r, "id", "") == active) rev = &r;
    const bool is_active = !active.empty() && field(*rev, "id", "") == active;

    std::vector<std::vector<std::string>> rows;
    auto add = [&](const char* label, std::string value) {
        rows.push_back({label, one_line(std::move(value))});
    };

    const std::string state = field(*rev, "state");
    std::string st = state;
    if (auto since = parse_timestamp(field(*rev, "state_since", "")))
        st += " for " + format_duration(now - *since);
    add("state", st);
    if (rev->contains("pid") && !(*rev)["pid"].is_null()) add("pid", field(*rev, "pid"));

    const json& cg = object_member(*rev, "cgroup");
    if (!cg.empty()) {
        std::vector<std::string> parts{field(cg, "driver", "?"), field(cg, "enforcement", "?")};
        std::string path = field(cg, "path", "");
        if (!path.empty()) parts.push_back(path);
        add("cgroup", join(parts, ", "));
        std::string cpu_set = field(cg, "cpu_set", "");
        if (!cpu_set.empty())
            add("cpu set", cpu_set + " (" + (flag(cg, "cpu_exclusive") ? "exclusive, " : "") +
                               field(cg, "cpu_set_by", "?") + ")");
        auto deg = cg.find("degraded");
        if (deg != cg.end() && deg->is_array())
            for (const json& d : *deg)
                add("degraded", d.is_string() ? d.get<std::string>() : dump_compact(d));
    }

    const json& lim = object_member(*rev, "limits");
    {
        std::vector<std::string> parts;
        for (const char* k : {"memory", "memory_high"})
            if (auto b = bytes_member(lim, k))
                parts.push_back(std::string(k) + " " + format_bytes(*b));
        for (const char* k : {"cpus", "cpu_weight", "cpu_slice_us", "pids"})
            if (lim.contains(k) && !lim[k].is_null())
                parts.push_back(std::string(k) + " " + field(lim, k));
        add("limits", parts.empty() ? "none" : join(parts, ", "));
    }

    {
        std::vector<std::string> parts;
        if (auto cur = bytes_member(cg, "memory_current")) {
            std::string m = "memory " + format_bytes(*cur);
            if (auto peak = bytes_member(cg, "memory_peak"))
                m += " (peak " + format_bytes(*peak) + ")";
            parts.push_back(m);
        }
        if (auto cpu = number(cg, "cpu_usage_usec"))
            parts.push_back("cpu " + seconds_text(*cpu / 1e6));
        if (cg.contains("pids_current") && !cg["pids_current"].is_null())
            parts.push_back("pids " + field(cg, "pids_current"));
        if (!parts.empty()) add("usage", join(parts, ", "));
    }

    if (rev->contains("restarts") && !(*rev)["restarts"].is_null()) {
        std::string policy = field(*rev, "restart", "");
        add("restarts",
            field(*rev, "restarts") + (policy.empty() ? "" : " (policy " + policy + ")"));
    }

    if (state == "backoff") {
        std::string next = field(*rev, "next_attempt_at", "");
        std::string b = next.empty() ? "waiting to restart" : "next attempt at " + next;
        if (auto at = parse_timestamp(next)) b += " (in " + format_duration(*at - now) + ")";
        if (auto secs = number(*rev, "backoff_s")) b += ", backoff " + seconds_text(*secs);
        add("backoff", b);
    }

    const std::string reason = field(*rev, "reason", "");
    if (!reason.empty()) {
        std::string f = reason;
        std::string msg = field(*rev, "message", "");
        if (!msg.empty()) f += ": " + msg;
        if (rev->contains("exit_code") && !(*rev)["exit_code"].is_null())
            f += " (exit code " + field(*rev, "exit_code") + ")";
        else if (rev->contains("signal") && !(*rev)["signal"].is_null())
            f += " (signal " + field(*rev, "signal") + ")";
        add(state == "failed" ? "failure" : "last failure", f);
    }

    const json& endpoint = object_member(*rev, "endpoint");
    if (!endpoint.empty())
        add("endpoint", "port " + field(endpoint, "port", "-") + ", runtime dir " +
                            field(endpoint, "runtime_dir", "-"));
    const json& ready = object_member(*rev, "readiness");
    if (!ready.empty()) {
        std::string r = field(ready, "state", "?") + " (" + field(ready, "kind", "?") + ")";
        if (auto left = number(ready, "deadline_in_ms"))
            r += ", deadline in " + seconds_text(*left / 1000);
        std::string progress = field(ready, "progress", "");
        if (!progress.empty()) r += ", progress: " + one_line(progress);
        add("readiness", r);
    }

    const json& oom = object_member(*rev, "oom");
    if (!oom.empty()) {
        std::string o = "killed by the " + field(oom, "source", "?");
        auto peak = bytes_member(oom, "peak");
        auto limit = bytes_member(oom, "limit");
        if (peak || limit)
            o += ": peak " + (peak ? format_bytes(*peak) : std::string("?")) + " of limit " +
                 (limit ? format_bytes(*limit) : std::string("?"));
        if (oom.contains("oom_kills") && !oom["oom_kills"].is_null())
            o += ", oom kills " + field(oom, "oom_kills");
        add("oom", o);
    }

    {
        std::vector<std::string> parts;
        for (const char* k : {"deps", "source"}) {
            const json& art = object_member(*rev, k);
            if (!art.contains("fetched_bytes")) continue;
            json ev = {{"artifact", k},
                       {"fetched_bytes", art["fetched_bytes"]},
                       {"total_bytes", art.contains("total_bytes") ? art["total_bytes"] : json()}};
            parts.push_back(format_progress(ev));
        }
        if (!parts.empty()) add("fetch", join(parts, ", "));
    }

    std::string user = field(*rev, "user", ""), group = field(*rev, "group", "");
    if (!user.empty() || !group.empty())
        add("user", (user.empty() ? "-" : user) + (group.empty() ? "" : ":" + group));
    const json& stop = object_member(*rev, "stop");
    if (!stop.empty()) {
        std::string sv = field(stop, "signal", "?");
        if (auto g = number(stop, "grace_s")) sv += ", grace " + seconds_text(*g);
        add("stop", sv);
    }

    std::vector<std::string> lines{field(*rev, "id") + (is_active ? " (active):" : " (newest):")};
    std::string table = format_table(rows);
    std::size_t start = 0;
    while (start < table.size()) {
        auto nl = table.find('\n', start);
        lines.push_back("  " + table.substr(start, nl - start));
        start = nl + 1;
    }
    // A load error, the way Python prints it.
    if (rev->contains("error") && (*rev)["error"].is_object()) {
        if (auto error = health::load_error_from_json((*rev)["error"])) {
            std::string text = health::render_traceback(*error);
            for (std::string_view line : split(text, '\n'))
                if (!line.empty()) lines.push_back("  " + std::string(line));
        }
    }
    return lines;
}

std::vector<std::vector<std::string>> cache_rows(const json& list, double now) {
    std::vector<std::vector<std::string>> rows{
        {"KIND", "SHA256", "SIZE", "LAST-USED", "PINNED-BY"}};
    if (!list.is_object() || !list.contains("entries") || !list["entries"].is_array()) return rows;
    for (const json& e : list["entries"]) {
        std::string sha = field(e, "sha256");
        if (sha.size() > 12) sha.resize(12);
        auto size = bytes_member(e, "bytes");
        std::string used = "-";
        if (auto ts = parse_timestamp(field(e, "last_used", "")))
            used = format_duration(now - *ts) + " ago";
        std::vector<std::string> pins;
        if (e.is_object() && e.contains("pinned_by") && e["pinned_by"].is_array())
            for (const json& x : e["pinned_by"])
                pins.push_back(x.is_string() ? x.get<std::string>() : dump_compact(x));
        rows.push_back({field(e, "kind"), sha, size ? compact_bytes(*size) : "-", used,
                        pins.empty() ? "-" : one_line(join(pins, ","))});
    }
    return rows;
}

std::string cache_total_line(const json& list) {
    auto used = bytes_member(list, "used_bytes");
    auto budget = bytes_member(list, "budget_bytes");
    std::size_t count = 0;
    std::uint64_t pinned = 0;
    if (list.is_object() && list.contains("entries") && list["entries"].is_array()) {
        for (const json& e : list["entries"]) {
            ++count;
            if (e.is_object() && e.contains("pinned_by") && e["pinned_by"].is_array() &&
                !e["pinned_by"].empty())
                pinned += bytes_member(e, "bytes").value_or(0);
        }
    }
    // hearth's own sum, when it sends one, also counts what entries share.
    if (auto p = bytes_member(list, "pinned_bytes")) pinned = *p;
    return "used " + (used ? format_bytes(*used) : std::string("?")) + " of budget " +
           (budget ? format_bytes(*budget) : std::string("?")) + " (" + std::to_string(count) +
           (count == 1 ? " entry, " : " entries, ") + format_bytes(pinned) + " pinned)";
}

std::vector<std::string> cache_gc_lines(const json& result) {
    std::vector<std::string> lines;
    if (result.is_object() && result.contains("evicted") && result["evicted"].is_array()) {
        for (const json& e : result["evicted"]) {
            std::string sha = field(e, "sha256");
            if (sha.size() > 12) sha.resize(12);
            auto b = bytes_member(e, "bytes");
            lines.push_back("evicted " + field(e, "kind") + " " + sha + " " +
                            (b ? format_bytes(*b) : std::string("?")));
        }
    }
    auto used = bytes_member(result, "used_bytes");
    std::string used_s = used ? format_bytes(*used) : std::string("?");
    if (lines.empty()) {
        lines.push_back("nothing to evict; used " + used_s);
    } else {
        auto freed = bytes_member(result, "freed_bytes");
        lines.push_back("freed " + (freed ? format_bytes(*freed) : std::string("?")) +
                        "; used now " + used_s);
    }
    // Why less than asked was freed (e.g. pinned objects exceed the target).
    const std::string message = field(result, "message", "");
    if (!message.empty()) lines.push_back(one_line(message));
    return lines;
}

std::string format_event(const json& event) {
    const std::string head =
        field(event, "ts") + " " + field(event, "location") + " " + field(event, "id");
    const std::string type = field(event, "type", "state");
    if (type == "progress") return one_line(head + " progress " + format_progress(event));
    if (type != "state") {
        std::string state = field(event, "state", "");
        return one_line(head + " " + type + (state.empty() ? "" : " " + state));
    }
    std::string line = head + " " + field(event, "previous") + " -> " + field(event, "state");
    std::string reason = field(event, "reason", ""), message = field(event, "message", "");
    if (!reason.empty()) line += " " + reason;
    if (!message.empty()) line += ": " + message;
    return one_line(std::move(line));
}

std::string format_log_line(const json& line) {
    return one_line(field(line, "ts") + " " + field(line, "stream") + " " +
                    field(line, "text", ""));
}

} // namespace hearth::ctl
