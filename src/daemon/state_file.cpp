#include "daemon/state_file.hpp"

#include "daemon/deploy.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/text.hpp"
#include "util/uv_util.hpp"

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace hearth {

using nlohmann::json;

namespace {

// state.json holds the deploy params of every location; far below this.
constexpr std::uint64_t max_state_file_bytes = 256ull << 20;

Error invalid(std::string message) {
    return Error{Errc::invalid_argument, 0, std::move(message)};
}

std::string utc_stamp(std::chrono::system_clock::time_point now) {
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
}

} // namespace

json desired_state_to_json(const DesiredState& state) {
    json locations = json::object();
    for (const auto& [name, loc] : state.locations)
        locations[name] = json{{"params", loc.params}, {"stopped", loc.stopped}};
    return json{{"version", state_file_version}, {"locations", std::move(locations)}};
}

Result<DesiredState> desired_state_from_json(const json& doc) {
    if (!doc.is_object()) return invalid("expected a JSON object");
    auto version = doc.find("version");
    if (version == doc.end() || !version->is_number_integer())
        return invalid("\"version\" is missing or not an integer");
    if (version->get<std::int64_t>() != state_file_version)
        return invalid("version " + version->dump() + " is not supported (expected " +
                       std::to_string(state_file_version) + ")");
    auto locations = doc.find("locations");
    if (locations == doc.end() || !locations->is_object())
        return invalid("\"locations\" is missing or not an object");
    DesiredState state;
    for (const auto& [name, entry] : locations->items()) {
        const std::string where = "locations." + name;
        if (!valid_location_name(name)) return invalid(where + ": invalid location name");
        if (!entry.is_object()) return invalid(where + ": expected an object");
        auto params = entry.find("params");
        if (params == entry.end() || !params->is_object())
            return invalid(where + ".params: missing or not an object");
        auto stopped = entry.find("stopped");
        if (stopped != entry.end() && !stopped->is_boolean())
            return invalid(where + ".stopped: expected true or false");
        DesiredLocation loc;
        loc.params = *params;
        loc.stopped = stopped != entry.end() && stopped->get<bool>();
        state.locations.emplace(name, std::move(loc));
    }
    return state;
}

std::string state_file_path(const std::string& state_dir) {
    return path_join(state_dir, "state.json");
}

Status write_state_file(const std::string& state_dir, const DesiredState& state) {
    std::string text =
        desired_state_to_json(state).dump(2, ' ', false, json::error_handler_t::replace);
    text += '\n';
    return write_file_atomic(state_file_path(state_dir), text, 0600);
}

LoadedState load_state_file(const std::string& state_dir,
                            std::chrono::system_clock::time_point now) {
    LoadedState out;
    const std::string path = state_file_path(state_dir);
    auto text = read_file(path, max_state_file_bytes);
    if (!text && text.error().code == Errc::not_found) return out;
    out.found = true;
    if (!text) {
        out.problem = text.error().message;
    } else {
        json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded()) {
            out.problem = text->empty() ? "the file is empty" : "not valid JSON";
        } else {
            auto parsed = desired_state_from_json(doc);
            if (parsed) {
                out.state = std::move(*parsed);
                return out;
            }
            out.problem = parsed.error().message;
        }
    }
    std::string aside = path + ".corrupt-" + utc_stamp(now);
    for (int i = 1; ::access(aside.c_str(), F_OK) == 0 && i < 1000; ++i)
        aside = path + ".corrupt-" + utc_stamp(now) + "-" + std::to_string(i);
    if (::rename(path.c_str(), aside.c_str()) == 0) {
        out.set_aside = aside;
        log::error("state file unusable, set aside; starting with no locations",
                   {{"path", path}, {"problem", out.problem}, {"moved_to", aside}});
    } else {
        int err = errno;
        log::error("state file unusable and could not be set aside; starting with no locations",
                   {{"path", path}, {"problem", out.problem}, {"error", errno_text(err)}});
    }
    return out;
}

json redact_env(const json& params) {
    if (!params.is_object()) return params;
    auto it = params.find("env");
    if (it == params.end()) return params;
    json out = params;
    json names = json::array();
    if (it->is_object()) {
        std::vector<std::string> keys;
        for (const auto& item : it->items())
            keys.push_back(item.key());
        std::sort(keys.begin(), keys.end());
        for (auto& k : keys)
            names.push_back(std::move(k));
    }
    // Anything but an object (a malformed request) shows no values either.
    out["env"] = std::move(names);
    return out;
}

// ---- StateWriter --------------------------------------------------------------

struct StateWriter::Shared {
    uv_loop_t* loop;
    std::string state_dir;
    Snapshot snapshot;
    bool alive = true;
    bool writing = false;
    bool dirty = false;
    std::uint64_t writes = 0;
    std::optional<Error> last_error;
    std::vector<std::function<void()>> waiters;
};

namespace {

void run_waiters(std::vector<std::function<void()>> waiters) {
    for (auto& w : waiters) {
        try {
            w();
        } catch (const std::exception& e) {
            log::error("state flush callback failed", {{"error", e.what()}});
        }
    }
}

} // namespace

StateWriter::StateWriter(uv_loop_t* loop, std::string state_dir, Snapshot snapshot)
    : shared_(std::make_shared<Shared>()) {
    shared_->loop = loop;
    shared_->state_dir = std::move(state_dir);
    shared_->snapshot = std::move(snapshot);
}

StateWriter::~StateWriter() {
    shared_->alive = false;
}

void StateWriter::changed() {
    if (shared_->writing) {
        shared_->dirty = true;
        return;
    }
    start_write();
}

void StateWriter::start_write() {
    auto s = shared_;
    // A function object that can restart itself from the completion, which
    // may run after this StateWriter is gone (then `alive` is false).
    struct Starter {
        static void start(const std::shared_ptr<Shared>& s) {
            s->writing = true;
            s->dirty = false;
            DesiredState snap;
            try {
                snap = s->snapshot();
            } catch (const std::exception& e) {
                // Write nothing rather than an incomplete state.
                s->writing = false;
                ++s->writes;
                s->last_error =
                    Error{Errc::io, 0, std::string("state snapshot failed: ") + e.what()};
                log::error("state file not written", {{"error", s->last_error->message}});
                finish(s);
                return;
            }
            run_blocking<Status>(
                s->loop,
                [dir = s->state_dir, snap = std::move(snap)] {
                    return write_state_file(dir, snap);
                },
                [s](std::optional<Status> st, std::string error) {
                    if (!s->alive) return;
                    s->writing = false;
                    ++s->writes;
                    if (st && *st) {
                        s->last_error.reset();
                    } else {
                        s->last_error = st ? st->error() : Error{Errc::io, 0, error};
                        log::error("state file not written",
                                   {{"path", state_file_path(s->state_dir)},
                                    {"error", s->last_error->message}});
                    }
                    finish(s);
                });
        }
        static void finish(const std::shared_ptr<Shared>& s) {
            if (s->dirty) {
                start(s);
                return;
            }
            run_waiters(std::exchange(s->waiters, {}));
        }
    };
    Starter::start(s);
}

void StateWriter::flush(std::function<void()> done) {
    if (idle()) {
        done();
        return;
    }
    shared_->waiters.push_back(std::move(done));
}

bool StateWriter::idle() const {
    return !shared_->writing && !shared_->dirty;
}

std::uint64_t StateWriter::writes() const {
    return shared_->writes;
}

const std::optional<Error>& StateWriter::last_error() const {
    return shared_->last_error;
}

} // namespace hearth
