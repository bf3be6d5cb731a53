#pragma once
// HTTP(S) downloads of deploy sources, on the libuv loop.
//
// libcurl's multi interface is driven by the daemon's loop: curl tells us
// which sockets to watch (uv_poll handles) and when to wake it (a uv_timer),
// and we call curl_multi_socket_action when either fires. No thread per
// download, no blocking: every byte is handed to the caller's sink from the
// loop thread as it arrives, so a BlobWriter hashes the blob while it is
// downloaded and nothing is read twice.
//
// Secrets: presigned object-store URLs carry their credentials in the query
// string (and a URL may carry userinfo). Nothing this file logs or returns
// contains them: every URL shown goes through redact_url(), and curl's own
// error text is scrubbed of them as well.
//
// Threading: a Fetcher, its handles and its callbacks belong to the loop
// thread. Nothing here blocks. No exception escapes into libuv or libcurl;
// an exception thrown by a caller's callback is caught and logged (from a
// sink it fails the transfer).

#include "store/store.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <uv.h>

namespace hearth {

// `url` without its query, fragment and userinfo:
// "https://u:p@host:8443/a/b.pex?X-Amz-Signature=..#f" -> "https://host:8443/a/b.pex".
// Not a validator: garbage in gives redacted garbage out. When in doubt
// (an '@' before the first '/' after the scheme, even past a '?') it drops
// more rather than less. Never throws except std::bad_alloc.
std::string redact_url(std::string_view url);

// Why a fetch failed.
enum class FetchErrorKind {
    none,        // success
    http_status, // the server answered with a non-2xx status (5xx are retried first)
    timeout,     // connect timeout or no bytes for stall_timeout (retried first)
    too_large,   // Content-Length or the bytes received exceed max_bytes
    network,     // connection/TLS/protocol error; retried unless it cannot help
    cancelled,   // FetchHandle::cancel()
    sink,        // the sink refused bytes or could not reset (e.g. ENOSPC)
    invalid_url, // not an http(s) URL curl can parse
};

const char* fetch_error_kind_name(FetchErrorKind k) noexcept;

struct FetchOptions {
    std::chrono::milliseconds connect_timeout{10'000};
    // Fails an attempt when no byte (header or body) has arrived for this
    // long, counted from the start of the attempt or the last byte. Checked
    // by our own timer rather than CURLOPT_LOW_SPEED_*: curl averages speed
    // over a window of seconds, so a stall after a burst would take several
    // seconds longer to notice, and its granularity is whole seconds.
    std::chrono::milliseconds stall_timeout{30'000};
    // 0 = unlimited. A Content-Length above it fails before any body byte;
    // without one, the transfer fails as soon as the total would exceed it.
    std::uint64_t max_bytes = std::uint64_t{4} << 30;
    long max_redirects = 5; // 0 = do not follow redirects
    // Attempts in all, the first included (1 = no retry). Retried: connection
    // errors, timeouts, truncated bodies and HTTP 5xx. Never: 4xx, too_large,
    // sink, cancelled, TLS verification failures, bad URLs.
    unsigned max_attempts = 4;
    // Delay before retry n (n >= 1) is retry_delay * 2^(n-1), at most
    // retry_delay_max.
    std::chrono::milliseconds retry_delay{500};
    std::chrono::milliseconds retry_delay_max{8'000};
    // Minimum time between two progress callbacks of one transfer.
    std::chrono::milliseconds progress_interval{250};
    // false: ignore http_proxy/https_proxy/all_proxy from the environment
    // (health probes of 127.0.0.1 must reach the revision itself).
    bool use_proxy = true;
};

// Where the body goes. Called on the loop thread only, never concurrently,
// never after done has been called.
class FetchSink {
public:
    virtual ~FetchSink() = default;
    // Appends body bytes of the current attempt. False fails the transfer
    // with kind `sink` (not retried); error() then says why.
    virtual bool write(const void* data, std::size_t size) = 0;
    // Called before every retry (never before the first attempt): forget all
    // bytes written so far, the next write() starts the body again. False
    // fails the transfer with kind `sink`.
    virtual bool reset() = 0;
    // Why write() or reset() failed; "" if unknown.
    virtual std::string error() const { return {}; }
};

// A sink that streams into a new blob of `store` (hashing as it writes);
// reset() starts a fresh BlobWriter, dropping the old temp file. After a
// successful fetch the caller commits: `sink->writer().commit(hex, redact_url(url))`.
// The store must outlive the sink.
class BlobSink final : public FetchSink {
public:
    explicit BlobSink(const Store& store);
    bool write(const void* data, std::size_t size) override;
    bool reset() override;
    std::string error() const override;
    BlobWriter& writer() noexcept { return writer_; }

private:
    const Store& store_;
    BlobWriter writer_;
};

struct FetchProgress {
    std::uint64_t bytes = 0; // body bytes received by the current attempt
    std::uint64_t total = 0; // Content-Length when total_known
    bool total_known = false;
    unsigned attempt = 1;
};

struct FetchResult {
    FetchErrorKind kind = FetchErrorKind::none;
    // "" on success. Otherwise names the redacted URL, the HTTP status or
    // the curl error, and the attempt count, e.g.
    // "GET http://host/a.pex: HTTP 404 (1 attempt)".
    std::string message;
    long http_status = 0;      // last HTTP status seen, 0 if none
    unsigned attempts = 0;     // attempts started
    std::uint64_t bytes = 0;   // body bytes the last attempt wrote to the sink
    std::string url;           // redact_url(the requested URL)
    std::string effective_url; // redacted URL of the last response (after redirects)
    bool ok() const noexcept { return kind == FetchErrorKind::none; }
};

using FetchProgressFn = std::function<void(const FetchProgress&)>;
using FetchDoneFn = std::function<void(const FetchResult&)>;

namespace detail {
struct FetchTransfer;
}

// Names one transfer started by Fetcher::start(). Copyable; dropping it does
// not cancel anything. Loop thread only.
class FetchHandle {
public:
    FetchHandle() = default;
    // Stops the transfer: the sink is not called again, and done runs with
    // kind `cancelled`. Called from outside the Fetcher's callbacks (or from
    // a done callback), done runs before cancel() returns. Called from a sink
    // or progress callback, the transfer stops when that callback returns and
    // done runs before control returns to the loop. Returns false (and does
    // nothing) if the transfer had already finished or the Fetcher is gone.
    bool cancel() noexcept;
    // True until done has been called (or the Fetcher destroyed).
    bool active() const noexcept;

private:
    friend class Fetcher;
    std::weak_ptr<detail::FetchTransfer> transfer_;
};

class Fetcher {
public:
    // Calls curl_global_init() the first time one is constructed in the
    // process. That call is not thread-safe in the libcurl versions we
    // support, so construct the first Fetcher on the loop thread before any
    // other thread could use curl (hearth never does). Throws
    // std::runtime_error if curl cannot be initialised.
    explicit Fetcher(uv_loop_t* loop);
    // Abandons transfers still in flight WITHOUT calling their done
    // callbacks (they may refer to objects being torn down); their sinks are
    // released. Must not run inside one of this Fetcher's callbacks. The poll
    // and timer handles close asynchronously: keep running the loop afterwards
    // until it has no handles left, as with every libuv handle.
    ~Fetcher();
    Fetcher(const Fetcher&) = delete;
    Fetcher& operator=(const Fetcher&) = delete;

    // Starts a GET of `url` (http:// or https:// only). Never blocks and never
    // calls any callback before returning: even an immediate failure is
    // reported on a later loop turn. `done` is called exactly once (unless
    // the Fetcher is destroyed first); after it, neither the sink nor
    // `progress` (may be empty) is called again. The Fetcher keeps `sink`
    // until done has returned.
    FetchHandle start(std::string url, const FetchOptions& options, std::shared_ptr<FetchSink> sink,
                      FetchProgressFn progress, FetchDoneFn done);

    // Transfers started and not yet done.
    std::size_t in_flight() const noexcept;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace hearth
