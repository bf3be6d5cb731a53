#pragma once
// Event and log fan-out: the `event` notifications of events.subscribe and
// the `log` notifications of `logs --follow` (hearth-protocol(7)).
//
// Connections are held weakly: a closed one is dropped on the next
// publication, never kept alive by being subscribed. Local listeners (tests;
// later, the health checks) get every event's params too. Loop thread only;
// nothing here blocks (notify() only queues on the connection).

#include "control/control.hpp"
#include "daemon/deploy.hpp"
#include "launch/output.hpp"

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace hearth {

class Events {
public:
    // `location` "" = every location. Marks the connection a subscriber.
    void subscribe(const std::shared_ptr<control::Connection>& conn, std::string location);
    // `log` notifications of one revision's output from now on.
    void follow(const std::shared_ptr<control::Connection>& conn, std::string revision_id);
    // In-process listener: called with each event's params, in order. Kept
    // for the life of this object; must not throw.
    void listen(std::function<void(const nlohmann::json& params)> listener);

    // An `event` notification about `location` to its subscribers.
    void publish(const std::string& location, const nlohmann::json& params);
    // A `state` event for `rev` (previous: nullopt when just created).
    void publish_state(const Revision& rev, std::optional<State> previous);
    // A `progress` event of one artifact's download.
    void publish_progress(const Revision& rev, bool deps, std::uint64_t fetched,
                          std::optional<std::uint64_t> total);
    // A `log` notification of one output line to the revision's followers.
    void publish_log(const std::string& location, const std::string& revision_id,
                     const LogLine& line);

private:
    struct Subscriber {
        std::weak_ptr<control::Connection> conn;
        std::string location; // "" = all
    };
    struct Follower {
        std::weak_ptr<control::Connection> conn;
        std::string revision_id;
    };
    std::vector<Subscriber> subscribers_;
    std::vector<Follower> followers_;
    std::vector<std::function<void(const nlohmann::json&)>> listeners_;
};

} // namespace hearth
