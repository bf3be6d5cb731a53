#pragma once
// Garbage-collection planning for the artifact store: which cached objects
// to evict to get under a byte budget. Pure (no I/O) apart from
// default_store_budget(); the caller lists the cache (Store::list_cache()),
// knows what live revisions pin, plans here and then calls Store::evict()
// for each planned entry. Nothing here throws (allocation failure aside,
// which std::bad_alloc reports as for any container code).

#include "store/store.hpp"

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace hearth {

using ObjectKey = std::pair<ObjectKind, std::string>; // (kind, sha256 hex)

struct GcPlan {
    std::vector<CacheEntry> evict;  // least recently used first
    std::uint64_t used_before = 0;  // sum of every entry's bytes
    std::uint64_t used_after = 0;   // used_before minus the evicted bytes
    std::uint64_t pinned_bytes = 0; // sum of the pinned entries' bytes
    // used_after <= target. When false, `evict` holds every unpinned entry
    // (evicting all of them still leaves too much): apply it for cache.gc,
    // or treat the new object as not fitting and evict nothing.
    bool fits = true;
};

// Plans evictions until the sum of bytes is <= target_bytes: unpinned
// entries in least-recently-used order (equal last use: trees before blobs,
// as a tree can be rebuilt from its blob without a download; then larger
// first; then by digest, so plans are deterministic). Pinned entries are
// never in the plan. Entries need not be sorted. Pure and thread-safe.
GcPlan plan_gc(const std::vector<CacheEntry>& entries,
               const std::function<bool(const CacheEntry&)>& pinned, std::uint64_t target_bytes);
GcPlan plan_gc(const std::vector<CacheEntry>& entries, const std::set<ObjectKey>& pinned,
               std::uint64_t target_bytes);

// The default --store-max-bytes: half the size of the filesystem holding
// `dir` (statvfs f_blocks * f_frsize / 2). 0 if statvfs fails (the caller
// must then refuse to start or ask for an explicit budget, not evict
// everything). Blocking (one statvfs); never throws.
std::uint64_t default_store_budget(const std::string& dir) noexcept;

} // namespace hearth
