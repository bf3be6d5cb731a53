#include "daemon/store_jobs.hpp"

#include "daemon/download_sink.hpp"
#include "store/extract.hpp"
#include "util/log.hpp"
#include "util/units.hpp"
#include "util/uv_util.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

namespace hearth {

namespace {

StoreResult pool_failure(std::string error) {
    StoreResult failed;
    failed.status = StoreStatus::io_error;
    failed.error = std::move(error);
    return failed;
}

// The store reports ENOSPC, EDQUOT and the byte budget as no_space.
bool is_no_space(const StoreResult& r) {
    return r.status == StoreStatus::no_space;
}

double ms_since(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
        .count();
}

} // namespace

StoreJobs::StoreJobs(uv_loop_t* loop, Store& store, const Options& options)
    : loop_(loop), store_(store), options_(options) {}

StoreJobs::~StoreJobs() = default;

std::string StoreJobs::size_budget() {
    budget_ = options_.store_max_bytes.value_or(default_store_budget(options_.state_dir));
    if (budget_ == 0)
        return "cannot size the store budget of " + options_.state_dir + "; pass --store-max-bytes";
    return {};
}

void StoreJobs::shared_job(const std::string& key, JobStarter start, const char* failure_reason,
                           ArtifactDone done) {
    auto& waiters = inflight_[key];
    waiters.push_back(std::move(done));
    if (waiters.size() > 1) return; // the running job answers everyone
    auto run = [this, key, start = std::move(start), failure_reason]() mutable {
        start([this, key, failure_reason](StoreResult r) {
            finish_job(key, failure_reason, std::move(r));
        });
    };
    if (gc_running_) {
        deferred_.push_back(std::move(run));
        return;
    }
    run();
}

void StoreJobs::finish_job(const std::string& key, const char* failure_reason, StoreResult r) {
    {
        auto node = inflight_.extract(key);
        ArtifactOutcome out;
        out.ok = r.ok();
        out.reason = failure_reason;
        out.message = r.error;
        out.status.cache_hit = r.hit;
        out.status.bytes = r.bytes;
        out.status.tree = r.path;
        if (r.status == StoreStatus::digest_mismatch)
            out.reason = reason::digest_mismatch;
        else if (is_no_space(r))
            out.reason = reason::no_space;
        for (auto& cb : node.mapped())
            cb(out);
    }
    if (inflight_.empty() && !gc_queue_.empty()) start_gc();
}

StoreJobs::JobStarter StoreJobs::blocking_job(std::function<StoreResult()> work) {
    return [this, work = std::move(work)](std::function<void(StoreResult)> finished) {
        run_blocking<StoreResult>(loop_, work,
                                  [finished](std::optional<StoreResult> r, std::string error) {
                                      finished(r ? std::move(*r) : pool_failure(std::move(error)));
                                  });
    };
}

void StoreJobs::store_blob(const ArtifactSpec& artifact, ArtifactDone done) {
    std::string hex = artifact.sha256;
    if (artifact.url.empty()) {
        std::string src = artifact.path;
        shared_job("blob:" + hex,
                   blocking_job([this, src, hex] { return store_.import_file(src, hex); }),
                   reason::fetch_error, std::move(done));
        return;
    }
    // A digest the store has is never downloaded again, whatever the URL.
    // (A stat on the loop: brief, and it saves a pool round trip per deploy.)
    if (store_.has_blob(hex)) {
        ArtifactOutcome out;
        out.ok = true;
        out.status.cache_hit = true;
        out.status.tree = store_.blob_path(hex);
        done(std::move(out));
        return;
    }
    std::string url = artifact.url;
    shared_job(
        "blob:" + hex,
        [this, url, hex](std::function<void(StoreResult)> finished) {
            download(url, hex, std::move(finished));
        },
        reason::fetch_error, std::move(done));
}

void StoreJobs::download(const std::string& url, const std::string& hex,
                         std::function<void(StoreResult)> finished) {
    if (!fetcher_) {
        try {
            fetcher_ = std::make_unique<Fetcher>(loop_);
        } catch (const std::exception& e) {
            return finished(pool_failure(std::string("cannot start downloads: ") + e.what()));
        }
    }
    FetchOptions fo;
    fo.connect_timeout = std::chrono::milliseconds(timer_ms(options_.fetch_connect_timeout_s));
    fo.stall_timeout = std::chrono::milliseconds(timer_ms(options_.fetch_stall_timeout_s));
    // A blob bigger than the whole store budget can never be kept: refuse it
    // at its Content-Length (or its first byte too many) as no_space, rather
    // than download it all, then evict it.
    bool budget_caps = budget_ < options_.fetch_max_bytes;
    fo.max_bytes = std::min(options_.fetch_max_bytes, budget_);
    fo.max_attempts = options_.fetch_attempts;
    // Written and hashed off the loop (download_sink.hpp).
    auto sink = std::make_shared<DownloadSink>(store_);
    std::string shown = redact_url(url);
    log::info("download started", {{"url", shown}, {"sha256", hex}});
    auto started = std::chrono::steady_clock::now();
    auto progress = [this, hex](const FetchProgress& p) {
        if (on_progress) on_progress(hex, p);
    };
    auto on_done = [this, sink, hex, shown, started, budget_caps, progress,
                    finished = std::move(finished)](const FetchResult& r) {
        if (!r.ok()) {
            StoreResult failed = pool_failure(r.message);
            // Only a failed write stops the sink: then it is idle, and asking
            // it does not wait on the disk.
            if (r.kind == FetchErrorKind::sink) {
                if (std::string sink_error = sink->error(); !sink_error.empty()) {
                    failed.error += ": " + sink_error;
                    failed.status = sink->writer().failure_status();
                    failed.sys_errno = sink->writer().sys_errno();
                }
            }
            if (r.kind == FetchErrorKind::too_large && budget_caps) {
                failed.status = StoreStatus::no_space;
                failed.error += " (the store budget, --store-max-bytes)";
            }
            log::warn("download failed", {{"url", shown}, {"error", failed.error}});
            return finished(std::move(failed));
        }
        progress(FetchProgress{r.bytes, r.bytes, true, r.attempts});
        log::info("download finished", {{"url", shown},
                                        {"bytes", r.bytes},
                                        {"attempts", r.attempts},
                                        {"ms", ms_since(started)}});
        // The sink finishes writing and hashing, then the commit fsyncs and
        // renames (a dead writer's commit reports its error).
        run_blocking<StoreResult>(
            loop_,
            [sink, hex, shown] {
                sink->finish();
                return sink->writer().commit(hex, shown);
            },
            [finished](std::optional<StoreResult> c, std::string error) {
                finished(c ? std::move(*c) : pool_failure(std::move(error)));
            });
    };
    fetcher_->start(url, fo, sink, progress, std::move(on_done));
}

void StoreJobs::store_tree(const std::string& hex, ArtifactDone done) {
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    ExtractLimits limits;
    limits.max_entries = options_.extract_max_entries;
    limits.max_ratio = options_.extract_max_ratio;
    limits.max_bytes = options_.extract_max_bytes.value_or(16ULL << 30);
    // An archive bigger than the whole store budget is not hostile, it does
    // not fit: the extractor reports the budget as no_space (sys_errno 0),
    // like any deploy that cannot fit. An explicit --extract-max-bytes keeps
    // its meaning as the archive safety limit alone.
    if (!options_.extract_max_bytes) limits.budget_bytes = budget_;
    shared_job("tree:" + hex, blocking_job([this, hex, threads, limits] {
                   StoreResult r = store_.ensure_tree(hex, limits, threads);
                   if (r.status == StoreStatus::no_space && r.sys_errno == 0)
                       r.error += " (the store budget; raise --store-max-bytes)";
                   return r;
               }),
               reason::bad_archive, std::move(done));
}

std::set<ObjectKey> StoreJobs::pinned_objects() const {
    std::set<ObjectKey> out = pins ? pins() : std::set<ObjectKey>{};
    for (const auto& [key, waiters] : inflight_) {
        auto colon = key.find(':');
        out.emplace(key.compare(0, colon, "tree") == 0 ? ObjectKind::tree : ObjectKind::blob,
                    key.substr(colon + 1));
    }
    return out;
}

void StoreJobs::run_gc(std::uint64_t target, bool force,
                       std::function<void(const GcOutcome&)> done) {
    gc_queue_.push_back({target, force, std::move(done)});
    // Jobs in flight finish first (they are pinned, but a tree they publish
    // must be counted); finish_job starts the GC when the last ends.
    if (!gc_running_ && inflight_.empty()) start_gc();
}

void StoreJobs::start_gc() {
    if (gc_running_ || gc_queue_.empty()) return;
    gc_running_ = true;
    // One request per pass, each planned afresh: requests differ in target
    // and in whether a plan that cannot reach it is applied anyway.
    GcRequest request = std::move(gc_queue_.front());
    gc_queue_.erase(gc_queue_.begin());
    auto pins_now = pinned_objects();
    std::uint64_t target = request.target;
    bool force = request.force;
    run_blocking<GcOutcome>(
        loop_,
        [this, target, force, pins_now] {
            GcOutcome out;
            out.plan = plan_gc(store_.list_cache(), pins_now, target);
            // A plan that does not fit is applied only on request (cache.gc):
            // for a deploy, evicting everything else would not help.
            if (!out.plan.fits && !force) return out;
            for (const auto& e : out.plan.evict) {
                StoreResult r = store_.evict(e.kind, e.sha256);
                if (!r.ok() && out.error.empty()) out.error = r.error;
                out.freed += r.bytes;
            }
            out.applied = true;
            return out;
        },
        [this, request = std::move(request)](std::optional<GcOutcome> out,
                                             std::string error) mutable {
            gc_running_ = false;
            GcOutcome result = out ? std::move(*out) : GcOutcome{};
            if (!out) result.error = error;
            if (out) {
                used_ = result.plan.used_before - (result.applied ? result.freed : 0);
                pinned_ = result.plan.pinned_bytes;
            }
            if (result.applied && !result.plan.evict.empty())
                log::info("store garbage collected", {{"evicted", result.plan.evict.size()},
                                                      {"freed_bytes", result.freed},
                                                      {"used_bytes", used_},
                                                      {"budget_bytes", budget_}});
            if (!result.error.empty())
                log::warn("store garbage collection", {{"error", result.error}});
            auto deferred = std::move(deferred_);
            deferred_.clear();
            for (auto& job : deferred)
                job();
            request.done(result);
            if (!gc_queue_.empty() && inflight_.empty()) start_gc();
        });
}

void StoreJobs::make_room(std::function<void(bool fits, std::string message)> done) {
    run_gc(budget_, false, [this, done = std::move(done)](const GcOutcome& outcome) {
        if (outcome.plan.fits) return done(true, {});
        done(false, "the store budget of " + format_bytes(budget_) +
                        " cannot hold this revision: objects in use need " +
                        format_bytes(outcome.plan.pinned_bytes) +
                        " (raise --store-max-bytes or stop other locations)");
    });
}

void StoreJobs::collect() {
    run_gc(budget_, false, [](const GcOutcome&) {});
}

void StoreJobs::list(
    std::function<void(std::optional<std::vector<CacheEntry>>, std::string error)> done) {
    run_blocking<std::vector<CacheEntry>>(
        loop_, [this] { return store_.list_cache(); }, std::move(done));
}

} // namespace hearth
