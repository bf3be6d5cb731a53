#include "store/store_gc.hpp"

#include <algorithm>
#include <sys/statvfs.h>

namespace hearth {

GcPlan plan_gc(const std::vector<CacheEntry>& entries,
               const std::function<bool(const CacheEntry&)>& pinned, std::uint64_t target_bytes) {
    GcPlan plan;
    std::vector<const CacheEntry*> candidates;
    for (const CacheEntry& e : entries) {
        plan.used_before += e.bytes;
        if (pinned && pinned(e)) {
            plan.pinned_bytes += e.bytes;
        } else {
            candidates.push_back(&e);
        }
    }
    plan.used_after = plan.used_before;
    if (plan.used_after > target_bytes) {
        std::sort(candidates.begin(), candidates.end(),
                  [](const CacheEntry* a, const CacheEntry* b) {
                      if (a->last_used != b->last_used) return a->last_used < b->last_used;
                      if (a->kind != b->kind) return a->kind == ObjectKind::tree;
                      if (a->bytes != b->bytes) return a->bytes > b->bytes;
                      return a->sha256 < b->sha256;
                  });
        for (const CacheEntry* e : candidates) {
            if (plan.used_after <= target_bytes) break;
            plan.evict.push_back(*e);
            plan.used_after -= e->bytes;
        }
    }
    plan.fits = plan.used_after <= target_bytes;
    return plan;
}

GcPlan plan_gc(const std::vector<CacheEntry>& entries, const std::set<ObjectKey>& pinned,
               std::uint64_t target_bytes) {
    return plan_gc(
        entries,
        [&pinned](const CacheEntry& e) { return pinned.count(ObjectKey(e.kind, e.sha256)) != 0; },
        target_bytes);
}

std::uint64_t default_store_budget(const std::string& dir) noexcept {
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) != 0) return 0;
    return static_cast<std::uint64_t>(vfs.f_blocks) * static_cast<std::uint64_t>(vfs.f_frsize) / 2;
}

} // namespace hearth
