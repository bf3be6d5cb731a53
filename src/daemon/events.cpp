#include "daemon/events.hpp"

namespace hearth {

using nlohmann::json;

void Events::subscribe(const std::shared_ptr<control::Connection>& conn, std::string location) {
    conn->set_subscriber(true);
    subscribers_.push_back({conn, std::move(location)});
}

void Events::follow(const std::shared_ptr<control::Connection>& conn, std::string revision_id) {
    conn->set_subscriber(true);
    followers_.push_back({conn, std::move(revision_id)});
}

void Events::listen(std::function<void(const json&)> listener) {
    listeners_.push_back(std::move(listener));
}

void Events::publish(const std::string& location, const json& params) {
    for (const auto& listener : listeners_)
        listener(params);
    std::erase_if(subscribers_, [&](const Subscriber& s) {
        auto conn = s.conn.lock();
        if (!conn || !conn->open()) return true;
        if (s.location.empty() || s.location == location) conn->notify("event", params);
        return false;
    });
}

void Events::publish_state(const Revision& rev, std::optional<State> previous) {
    json params = {{"ts", format_timestamp(rev.state_since)},
                   {"type", "state"},
                   {"location", rev.location},
                   {"id", rev.id},
                   {"state", state_name(rev.state)},
                   {"previous", previous ? json(state_name(*previous)) : json(nullptr)},
                   {"revision", rev.to_json()}};
    if (!rev.reason.empty()) params["reason"] = rev.reason;
    if (!rev.message.empty()) params["message"] = rev.message;
    publish(rev.location, params);
}

void Events::publish_progress(const Revision& rev, bool deps, std::uint64_t fetched,
                              std::optional<std::uint64_t> total) {
    publish(rev.location, {{"ts", format_timestamp(WallClock::now())},
                           {"type", "progress"},
                           {"location", rev.location},
                           {"id", rev.id},
                           {"state", state_name(rev.state)},
                           {"artifact", deps ? "deps" : "source"},
                           {"fetched_bytes", fetched},
                           {"total_bytes", total ? json(*total) : json(nullptr)}});
}

void Events::publish_log(const std::string& location, const std::string& revision_id,
                         const LogLine& line) {
    if (followers_.empty()) return;
    std::erase_if(followers_, [&](const Follower& f) {
        auto conn = f.conn.lock();
        if (!conn || !conn->open()) return true;
        if (f.revision_id == revision_id)
            conn->notify("log", {{"location", location},
                                 {"id", revision_id},
                                 {"ts", format_timestamp(line.time)},
                                 {"stream", line.stream == Stream::err ? "stderr" : "stdout"},
                                 {"text", line.text}});
        return false;
    });
}

} // namespace hearth
