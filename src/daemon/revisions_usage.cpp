// Usage counters of the revision state machine (revisions.hpp): sampled on
// the thread pool so that `status` never reads cgroupfs on the loop.

#include "daemon/revisions.hpp"
#include "util/log.hpp"

namespace hearth {

// ---- usage counters ------------------------------------------------------------------

void Revisions::read_usage_now(Revision& rev) {
    if (rev.ending || is_final(rev.state)) return;
    if (isolation_.is_none()) {
        if (rev.process_running) {
            cgroup::Usage u = isolation_.watchdog_usage(rev.id);
            if (u.memory_current) rev.usage = u;
        }
    } else if (rev.cgroup) {
        rev.usage = rev.cgroup->usage();
    }
    rev.usage_sampled_at = Clock::now();
}

void Revisions::sample_all() {
    if (sampling_) return; // cgroupfs is slow right now: do not pile up reads
    std::vector<std::string> ids;
    for (const auto& [name, loc] : locations_)
        for (const auto& rev : loc.revisions)
            if (is_live(rev->state) && !rev->ending && (rev->cgroup || rev->process_running))
                ids.push_back(rev->id);
    if (ids.empty()) return;
    sampling_ = true;
    sample_usage(std::move(ids), true);
}

void Revisions::sample_usage(std::vector<std::string> ids, bool periodic) {
    struct Sample {
        std::string id;
        std::shared_ptr<cgroup::Cgroup> cg;
        cgroup::Usage usage;
    };
    std::vector<Sample> samples;
    for (const auto& id : ids) {
        Revision* rev = find(id);
        if (!rev || rev->ending || is_final(rev->state)) continue;
        if (isolation_.is_none()) {
            // The watchdog's last scan, already in memory.
            if (rev->process_running) {
                cgroup::Usage u = isolation_.watchdog_usage(rev->id);
                if (u.memory_current) rev->usage = u;
                rev->usage_sampled_at = Clock::now();
            }
            continue;
        }
        if (rev->cgroup) samples.push_back({id, rev->cgroup, {}});
    }
    if (samples.empty()) {
        if (periodic) sampling_ = false;
        return;
    }
    auto shared = std::make_shared<std::vector<Sample>>(std::move(samples));
    run_blocking<bool>(
        loop_,
        [shared] {
            for (auto& s : *shared)
                s.usage = s.cg->usage();
            return true;
        },
        [this, shared, periodic](std::optional<bool> ok, std::string error) {
            if (periodic) sampling_ = false;
            if (!ok) {
                log::warn("cannot read usage counters", {{"error", error}});
                return;
            }
            auto now = Clock::now();
            for (auto& s : *shared) {
                Revision* r = find(s.id);
                // The same cgroup still, not the next start's nor a removed one.
                if (!r || r->ending || is_final(r->state) || r->cgroup != s.cg) continue;
                r->usage = s.usage;
                r->usage_sampled_at = now;
            }
        });
}

} // namespace hearth
