#include "daemon/download_sink.hpp"

namespace hearth {

DownloadSink::DownloadSink(const Store& store, std::size_t max_queued)
    : store_(store), max_queued_(max_queued), writer_(store.begin_blob()),
      thread_([this] { run(); }) {}

DownloadSink::~DownloadSink() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
}

void DownloadSink::run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
        changed_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        std::vector<char> chunk = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
        lock.unlock();
        bool ok = writer_.write(chunk.data(), chunk.size());
        lock.lock();
        busy_ = false;
        queued_ -= chunk.size();
        if (!ok) {
            failed_ = true;
            queue_.clear();
            queued_ = 0;
        }
        changed_.notify_all();
    }
}

void DownloadSink::wait_idle(std::unique_lock<std::mutex>& lock) const {
    changed_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

bool DownloadSink::write(const void* data, std::size_t size) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_ || !writer_.ok()) return false;
    changed_.wait(lock, [&] { return failed_ || queued_ + size <= max_queued_ || queued_ == 0; });
    if (failed_) return false;
    const char* bytes = static_cast<const char*>(data);
    queue_.emplace_back(bytes, bytes + size);
    queued_ += size;
    lock.unlock();
    changed_.notify_all();
    return true;
}

bool DownloadSink::reset() {
    std::unique_lock<std::mutex> lock(mutex_);
    wait_idle(lock);
    failed_ = false;
    writer_ = store_.begin_blob(); // the old writer deletes its temp file
    return writer_.ok();
}

std::string DownloadSink::error() const {
    std::unique_lock<std::mutex> lock(mutex_);
    wait_idle(lock);
    return writer_.error();
}

bool DownloadSink::finish() {
    std::unique_lock<std::mutex> lock(mutex_);
    wait_idle(lock);
    return !failed_;
}

} // namespace hearth
