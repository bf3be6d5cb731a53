#pragma once
// The store-job scheduler: every copy, download, extraction and garbage
// collection the daemon asks of the store (store.hpp).
//
// - Single flight: one job per object ("blob:<hex>", "tree:<hex>") however
//   many revisions need it; every waiter gets the one outcome.
// - The GC runs alone: jobs that arrive while it runs wait for it (a job
//   could otherwise find a tree as a hit that the GC is deleting), and it
//   starts only when no job is in flight (a tree a job publishes must be
//   counted). It never evicts what a live revision or a running job uses
//   (pins(), plus the jobs in flight).
// - Downloads go through one Fetcher on the loop, created by the first
//   http(s) artifact; their progress is reported through on_progress.
//
// Loop thread only. Copying, hashing, extracting, listing and evicting run on
// libuv's thread pool (run_blocking); the store outlives every job because
// the daemon keeps the loop running until blocking_jobs_in_flight() is 0.

#include "daemon/options.hpp"
#include "daemon/seams.hpp"
#include "store/fetch.hpp"
#include "store/store.hpp"
#include "store/store_gc.hpp"

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <uv.h>
#include <vector>

namespace hearth {

class StoreJobs final : public Artifacts {
public:
    // `store` must be open (or be opened by open()); `options` outlives this.
    StoreJobs(uv_loop_t* loop, Store& store, const Options& options);
    ~StoreJobs() override;
    StoreJobs(const StoreJobs&) = delete;
    StoreJobs& operator=(const StoreJobs&) = delete;

    // Sizes the budget (--store-max-bytes, else half the filesystem).
    // Returns "" or an error message. Blocking (start-up only).
    std::string size_budget();

    // Objects live revisions use; set by the daemon before any job runs.
    std::function<std::set<ObjectKey>()> pins;
    // A download of the blob `hex` made progress (every attempt, and a last
    // time with `done` set).
    std::function<void(const std::string& hex, const FetchProgress& progress)> on_progress;

    // Artifacts (seams.hpp).
    void store_blob(const ArtifactSpec& artifact, ArtifactDone done) override;
    void store_tree(const std::string& sha256, ArtifactDone done) override;
    void make_room(std::function<void(bool fits, std::string message)> done) override;
    void collect() override;

    struct GcOutcome {
        GcPlan plan;
        bool applied = false; // the plan's evictions were made
        std::uint64_t freed = 0;
        std::string error;
    };
    // Queues a collection down to `target` bytes; `force` applies the plan
    // even when it cannot reach the target (an operator's cache.gc). `done`
    // on the loop once it ran.
    void run_gc(std::uint64_t target, bool force, std::function<void(const GcOutcome&)> done);
    // The cache's entries (thread pool); `done(entries, "")` or
    // `done(nullopt, error)` on the loop. Updates used/pinned figures.
    void list(std::function<void(std::optional<std::vector<CacheEntry>>, std::string error)> done);

    std::uint64_t budget() const { return budget_; }
    std::uint64_t used() const { return used_; }     // as of the last GC or list
    std::uint64_t pinned() const { return pinned_; } // likewise
    void set_figures(std::uint64_t used, std::uint64_t pinned) {
        used_ = used;
        pinned_ = pinned;
    }

private:
    using JobStarter = std::function<void(std::function<void(StoreResult)>)>;
    struct GcRequest {
        std::uint64_t target;
        bool force;
        std::function<void(const GcOutcome&)> done;
    };

    void shared_job(const std::string& key, JobStarter start, const char* failure_reason,
                    ArtifactDone done);
    JobStarter blocking_job(std::function<StoreResult()> work);
    void finish_job(const std::string& key, const char* failure_reason, StoreResult result);
    void download(const std::string& url, const std::string& hex,
                  std::function<void(StoreResult)> finished);
    std::set<ObjectKey> pinned_objects() const;
    void start_gc();

    uv_loop_t* loop_;
    Store& store_;
    const Options& options_;
    std::map<std::string, std::vector<ArtifactDone>> inflight_; // "blob:<hex>" / "tree:<hex>"
    std::unique_ptr<Fetcher> fetcher_;
    std::uint64_t budget_ = 0;
    std::uint64_t used_ = 0;
    std::uint64_t pinned_ = 0;
    bool gc_running_ = false;
    std::vector<GcRequest> gc_queue_;
    std::vector<std::function<void()>> deferred_; // jobs waiting for the GC
};

} // namespace hearth
