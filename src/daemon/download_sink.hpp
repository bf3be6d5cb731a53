#pragma once
// A download's sink that keeps the disk and the hash off the loop.
//
// curl hands a transfer's body to write() on the loop thread, 16 KiB at a
// time. Writing it to the temp file and hashing it there costs the loop tens
// of microseconds a chunk, and page-cache writeback stalls of tens of
// milliseconds (measured: a quarter to a third of the loop at 1 Gbit/s).
// This sink only copies the chunk into a queue on the loop; its own thread
// writes and hashes (BlobWriter). The queue is bounded (max_queued bytes):
// when the disk falls that far behind, write() waits for it, which is the
// cost every chunk had before, now paid only by a disk slower than the
// network.
//
// Threading: write(), reset() and error() on the loop (the FetchSink
// contract); finish() and then writer() on any thread but the sink's own
// (the commit runs on the thread pool). reset() and error() wait for the
// queue to drain (at most max_queued bytes of writing): retries and
// failures only. The destructor stops the thread, dropping what is queued.

#include "store/fetch.hpp"
#include "store/store.hpp"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hearth {

class DownloadSink final : public FetchSink {
public:
    static constexpr std::size_t default_max_queued = std::size_t{8} << 20;

    // `store` must outlive the sink. Starts the writer thread.
    explicit DownloadSink(const Store& store, std::size_t max_queued = default_max_queued);
    ~DownloadSink() override;
    DownloadSink(const DownloadSink&) = delete;
    DownloadSink& operator=(const DownloadSink&) = delete;

    // FetchSink. write() returns false once a write has failed (error()).
    bool write(const void* data, std::size_t size) override;
    bool reset() override;
    std::string error() const override;

    // Waits until every queued byte is written; false if a write failed
    // (the writer is then dead and its commit() reports why).
    bool finish();
    // After finish(): the writer, to commit (or to ask failure_status()).
    BlobWriter& writer() noexcept { return writer_; }

private:
    void run();
    void wait_idle(std::unique_lock<std::mutex>& lock) const;

    const Store& store_;
    const std::size_t max_queued_;
    BlobWriter writer_; // the worker's while busy_ or the queue is not empty
    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::deque<std::vector<char>> queue_;
    std::size_t queued_ = 0;
    bool busy_ = false;   // the worker is writing a chunk it took
    bool failed_ = false; // a write failed; the queue was dropped
    bool stop_ = false;
    std::thread thread_; // last: started once everything above exists
};

} // namespace hearth
